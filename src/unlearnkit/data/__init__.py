"""Data layer: one chat-QA record type, adapters from source formats, rendering."""
