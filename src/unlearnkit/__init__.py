"""unlearnkit: multi-objective LLM unlearning (push-pull top-K logit distillation)."""

__version__ = "0.1.0"
