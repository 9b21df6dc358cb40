"""Evaluation layer: batched generation and scoring, metrics, attacks."""
