from dataclasses import dataclass, field
from typing import Literal

import pytest

from unlearnkit.config import apply_overrides, from_dict, load_config
from unlearnkit.errors import UnlearnError


@dataclass
class Inner:
    lr: float = 1e-4
    steps: int = 10
    mode: Literal["full", "lora"] = "full"
    names: list[str] = field(default_factory=list)
    k: int | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"


def test_defaults_nested_values_and_int_to_float():
    cfg = from_dict(Outer, {"inner": {"lr": 1, "names": ["a"], "k": 3}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.names == ["a"] and cfg.inner.k == 3 and cfg.name == "x"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"lr": "fast"}}, "inner.lr: expected a number"),
        ({"inner": {"steps": 1.5}}, "inner.steps: expected an integer"),
        ({"inner": {"steps": True}}, "inner.steps: expected an integer"),
        ({"inner": {"mode": "half"}}, "inner.mode: 'half' is not one of"),
        ({"inner": {"names": "a"}}, "inner.names: expected a list"),
        ({"inner": {"oops": 1}}, "unknown config key inner.oops"),
        ({"typo": 1}, "unknown config key typo"),
        ({"inner": 3}, "inner: expected a mapping"),
    ],
)
def test_bad_values_name_their_key(data, message):
    with pytest.raises(UnlearnError, match=message.replace("(", r"\(")):
        from_dict(Outer, data)


def test_dotted_overrides_parse_yaml_scalars():
    data = apply_overrides({"inner": {"lr": 1.0}}, ["inner.lr=2e-5", "inner.names=[a, b]",
                                                    "name=hello", "inner.k=null"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.lr == 2e-5 and cfg.inner.names == ["a", "b"] and cfg.name == "hello"
    assert cfg.inner.k is None


def test_overrides_reach_sections_keyed_by_dotted_paths():
    # a tune's grid is keyed by the dotted paths it sweeps
    data = {"grid": {"optim.lr": [1e-5]}, "grids": {"rmu": {"optim.lr": [1e-3]}},
            "validation": {"setup": {}}}
    apply_overrides(data, ["grid.optim.lr=[2e-5, 4e-5]", "grid.unlearn.seed=[0, 1]",
                           "grids.rmu.optim.lr=[8e-3]", "validation.setup.seed=3"])
    assert data == {"grid": {"optim.lr": [2e-5, 4e-5], "unlearn.seed": [0, 1]},
                    "grids": {"rmu": {"optim.lr": [8e-3]}},
                    "validation": {"setup": {"seed": 3}}}


def test_a_choice_yaml_reads_as_a_boolean_is_taken_as_its_word(tmp_path):
    from unlearnkit.pipeline.run import RunConfig

    # YAML 1.1 reads `no` as False: in a file and on the command line it means the choice "no"
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  mixed_precision: no\n")
    assert load_config(RunConfig, path).optim.mixed_precision == "no"
    cfg = load_config(RunConfig, None, ["optim.mixed_precision=bf16", "optim.mixed_precision=no"])
    assert cfg.optim.mixed_precision == "no"
    # a boolean no choice spells is still refused, naming the choices
    with pytest.raises(UnlearnError, match=r"optim\.mixed_precision: True is not one of 'no'"):
        load_config(RunConfig, None, ["optim.mixed_precision=yes"])


def test_override_without_equals_is_rejected():
    with pytest.raises(UnlearnError, match=r"key\.sub=value"):
        apply_overrides({}, ["inner.lr"])


def test_load_config_from_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  steps: 5\n")
    assert load_config(Outer, path, ["inner.mode=lora"]).inner == Inner(steps=5, mode="lora")
    path.write_text("inner: [unclosed\n")
    with pytest.raises(UnlearnError, match="not valid YAML"):
        load_config(Outer, path)
    with pytest.raises(UnlearnError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")


@dataclass
class WithCustomDefault:
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5, steps=7))


def test_partial_section_updates_the_fields_default_not_the_classes():
    cfg = from_dict(WithCustomDefault, {"inner": {"steps": 9}})
    assert cfg.inner.lr == 0.5 and cfg.inner.steps == 9
    cfg = from_dict(WithCustomDefault, apply_overrides({}, ["inner.mode=lora"]))
    assert cfg.inner == Inner(lr=0.5, steps=7, mode="lora")


def test_yaml_errors_give_the_line_and_mixed_unknown_keys_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(UnlearnError, match=r"bad.yaml is not valid YAML at line 2, column 2"):
        load_config(Outer, bad, [])
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("1: a\nfoo: b\n")
    with pytest.raises(UnlearnError, match="unknown config key 1, foo"):
        load_config(Outer, mixed, [])


@pytest.mark.parametrize(("override", "message"), [
    ("eval_batch_size=0", "eval_batch_size must be at least 1"),
    ("max_new_tokens=-5", "max_new_tokens must be at least 1"),
    ("unlearn.mix.forget=-1", "quotas must be >= 0"),
    ("unlearn.mix.steps=0", "mix.steps must be at least 1"),
    ("device=tpu", "not a torch device"),
])
def test_run_settings_are_checked_when_the_config_loads(override, message):
    from unlearnkit.pipeline.run import RunConfig

    with pytest.raises(UnlearnError, match=message):
        from_dict(RunConfig, apply_overrides({}, [override]))


@pytest.mark.parametrize(("overrides", "message"), [
    (["unlearn.mix.forget=0", "unlearn.mix.retain=0", "unlearn.mix.neighbor=0"],
     r"unlearn\.mix quotas are all 0: every micro-batch would be empty"),
    (["unlearn.mix.forget=0"], r"unlearn\.mix\.forget must be >= 1 forget items per micro-batch, "
                               r"got 0: without them training unlearns nothing"),
    (["unlearn.method.margin=-1"], r"unlearn\.method\.margin must be >= 0, got -1"),
    (["unlearn.method.beta=-0.5"], r"unlearn\.method\.beta must be >= 0"),
    (["unlearn.method.delta=0"], r"unlearn\.method\.delta \(the pull's Huber threshold\) must "
                                 r"be > 0"),
    (["unlearn.method.top_m=-1"], r"unlearn\.method\.top_m must be >= 0"),
    (["unlearn.method.prefill_candidates=[]"], r"prefill_candidates must be a non-empty list "
                                               r"of prefill lengths >= 1 token.*got \[\]"),
    (["unlearn.method.prefill_candidates=[0]"], r"prefill_candidates .* got \[0\]"),
    (["unlearn.method.prefill_refresh=-1"], r"prefill_refresh must be >= 1 .* got -1"),
    (["unlearn.method.prefill_refresh=0"], r"prefill_refresh must be >= 1"),
    (["unlearn.teacher.guidance=-5"], r"teacher\.guidance must be >= 0 \(the instruction's "
                                      r"weight w in z_plain \+ w \(z_instr - z_plain\).*-5"),
    (["unlearn.teacher.max_new_tokens=0"], r"teacher\.max_new_tokens must be >= 1, got 0"),
    (["unlearn.teacher.template_boost=-1"], r"teacher\.template_boost must be >= 0"),
])
def test_unlearning_settings_out_of_range_are_refused_when_the_config_loads(overrides, message):
    from unlearnkit.pipeline.run import RunConfig

    with pytest.raises(UnlearnError, match=message):
        load_config(RunConfig, None, overrides)


@pytest.mark.parametrize("overrides", [
    ["unlearn.mix.retain=0", "unlearn.mix.neighbor=0"],  # forget items alone
    ["unlearn.teacher.guidance=0"],  # the model without the instruction (an ablation)
    ["unlearn.teacher.guidance=0.5"], ["unlearn.method.margin=0"], ["unlearn.method.top_m=0"],
    ["unlearn.method.prefill_candidates=[3]", "unlearn.method.prefill_refresh=1"],
    ["method=oracle"], ["method=prompt_only"],
])
def test_the_edges_of_the_valid_ranges_load(overrides):
    from unlearnkit.pipeline.run import RunConfig

    load_config(RunConfig, None, overrides)


def test_every_shipped_config_still_loads(monkeypatch):
    """Every YAML under configs/ that holds a run config (`unlearn run`, demo, bench, and a
    tune's sweep of its bench) passes the range checks; the accelerate and baseline presets
    and the data configs are other kinds of file."""
    from pathlib import Path

    from unlearnkit.config import load_yaml
    from unlearnkit.pipeline.bench import BenchConfig
    from unlearnkit.pipeline.demo import DemoConfig
    from unlearnkit.pipeline.run import RunConfig
    from unlearnkit.pipeline.tune import TuneConfig, sweep_config

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # presets and benches are named relative to the repository
    loaded = []
    for path in sorted((root / "configs").rglob("*.yaml")):
        data = load_yaml(path)
        if "accelerate" in path.parts or "baselines" in path.parts or "sources" in data:
            continue
        if "grid" in data:
            tune = from_dict(TuneConfig, data, str(path))
            sweep_config(tune, from_dict(BenchConfig, load_yaml(tune.bench), tune.bench))
        elif "methods" in data:
            from_dict(BenchConfig, data, str(path))
        else:
            from_dict(DemoConfig if path.name == "demo.yaml" else RunConfig, data, str(path))
        loaded.append(path.name)
    assert {"run-scenario.yaml", "run-tofu.yaml", "bench-scenario.yaml", "demo.yaml",
            "tune-tofu.yaml", "tofu-llama-3.2-1b.yaml"} <= set(loaded)


@pytest.mark.parametrize(("override", "message"), [
    ("inject.batch_size=0", r"inject\.batch_size must be at least 1, got 0"),
    ("inject.epochs=-1", r"inject\.epochs must be at least 1, got -1"),
    ("inject.epochs=0", r"inject\.epochs must be at least 1, got 0"),
    ("inject.freeze_lower_layers=-1", r"inject\.freeze_lower_layers must be >= 0"),
])
def test_injection_settings_are_checked_first_when_the_config_loads(override, message):
    from unlearnkit.pipeline.scenario_models import ScenarioSetup

    with pytest.raises(UnlearnError, match=message):
        load_config(ScenarioSetup, None, [override])
