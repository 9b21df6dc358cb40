"""Pipelines composing the layers: scenario models, the demo, full runs."""
