"""The oracle: no loss; the model fine-tuned without the forget set (the gold standard).

It is built by :func:`unlearnkit.pipeline.scenario_models.prepare_scenario` (variant
"oracle" of :mod:`unlearnkit.training.inject`: the same injection run minus the forget
people). This entry is metadata only: it says where the model comes from, and
:func:`oracle_model` picks it out of ``PreparedScenario.models``.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import UnlearnError
from unlearnkit.objectives.baselines.common import check
from unlearnkit.objectives.baselines.registry import register_baseline


@dataclass
class OracleConfig:
    """Which entry of ``PreparedScenario.models`` is the oracle."""

    variant: str = "oracle"

    def __post_init__(self) -> None:
        check(bool(self.variant.strip()), "oracle.variant must name a scenario model")


@register_baseline("oracle", config=OracleConfig, trainable=False,
                   source="unlearnkit.pipeline.scenario_models.prepare_scenario",
                   models_key="oracle", paper="retraining without the forget set (TOFU)")
def oracle_model(cfg: OracleConfig, models: dict[str, str]) -> str:
    """The oracle's model name or folder from ``PreparedScenario.models``."""
    if cfg.variant not in models:
        raise UnlearnError(f"no {cfg.variant!r} model among {sorted(models)}; set data.oracle "
                           "to a model trained without the forget set, or use data.kind "
                           "scenario or inject, which train one")
    return models[cfg.variant]
