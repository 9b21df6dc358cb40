from pathlib import Path

import pytest

from unlearnkit.config import load_config
from unlearnkit.data.standardize import DataConfig
from unlearnkit.pipeline.bench import BenchConfig
from unlearnkit.pipeline.demo import DemoConfig
from unlearnkit.pipeline.run import RunConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"demo.yaml": DemoConfig, "data-tofu.yaml": DataConfig, "run-scenario.yaml": RunConfig,
         "bench-scenario.yaml": BenchConfig}  # bench: preset paths relative to the project root


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_preset_validates(name):
    assert name in KINDS, f"add {name} to KINDS so it is validated"
    load_config(KINDS[name], CONFIGS / name)
