"""Training layer: the accelerate loop, checkpoints, and the scenario injection."""
