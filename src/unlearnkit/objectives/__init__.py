"""Objectives: pure loss functions (fp32, masked to response positions), one file per method."""
