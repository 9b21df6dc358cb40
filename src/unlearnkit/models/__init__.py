"""Model layer: loading (default GGUF model, local folders, hub ids), tiny test models."""
