from pathlib import Path

import pytest

from unlearnkit.config import load_config
from unlearnkit.data.standardize import DataConfig
from unlearnkit.pipeline.bench import BenchConfig, run_config
from unlearnkit.pipeline.demo import DemoConfig
from unlearnkit.pipeline.run import RunConfig
from unlearnkit.pipeline.tune import TuneConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"demo.yaml": DemoConfig, "data-tofu.yaml": DataConfig,
         "data-tofu-eval.yaml": DataConfig, "run-scenario.yaml": RunConfig,
         "bench-scenario.yaml": BenchConfig,  # bench: preset paths relative to the project root
         "run-tofu.yaml": RunConfig, "bench-tofu.yaml": BenchConfig,
         "gpu/tofu-llama-3.2-1b.yaml": RunConfig, "gpu/muse-books-llama-3.2-3b.yaml": RunConfig,
         "gpu/wmdp-cyber-zephyr-7b.yaml": RunConfig, "gpu/data-muse-books.yaml": DataConfig,
         "gpu/data-muse-books-eval.yaml": DataConfig, "gpu/data-wmdp-cyber.yaml": DataConfig,
         "gpu/data-wmdp-cyber-eval.yaml": DataConfig,
         "tune-scenario.yaml": TuneConfig, "data-tofu-val.yaml": DataConfig,
         "tune-tofu.yaml": TuneConfig, "bench-tofu-capped.yaml": BenchConfig,
         "bench-scenario-capped.yaml": BenchConfig, "bench-tofu-fluent.yaml": BenchConfig,
         "bench-scenario-holdout.yaml": BenchConfig, "bench-scenario-attacks.yaml": BenchConfig,
         "bench-tofu-attacks.yaml": BenchConfig,
         "bench-scenario-relearn.yaml": BenchConfig,
         "tune-scenario-relearn.yaml": TuneConfig}
PRESETS = sorted(str(p.relative_to(CONFIGS)) for pattern in ("*.yaml", "gpu/*.yaml")
                 for p in CONFIGS.glob(pattern))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name, monkeypatch):
    """Loading checks every key and value; nothing is read from the hub or the data paths."""
    assert name in KINDS, f"add {name} to KINDS so it is validated"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_config(KINDS[name], CONFIGS / name)


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("gpu/") and
                                  KINDS[n] is RunConfig])
def test_gpu_presets_train_in_bf16_from_a_dataset_folder(name):
    cfg = load_config(RunConfig, CONFIGS / name)
    assert cfg.optim.mixed_precision == "bf16" and cfg.data.kind == "dataset"
    assert cfg.data.model.count("/") == 1  # a hub id
    written = {load_config(DataConfig, CONFIGS / n).output for n in PRESETS
               if KINDS[n] is DataConfig}
    assert cfg.data.path in written, "its dataset folder comes from a shipped data config"


def test_make_demo_runs_what_configs_demo_yaml_says():
    """`unlearn demo` without a config (what `make demo` runs) equals configs/demo.yaml."""
    from unlearnkit.config import to_dict

    assert to_dict(DemoConfig()) == to_dict(load_config(DemoConfig, CONFIGS / "demo.yaml"))


def test_the_tune_preset_sweeps_every_trained_method_of_its_bench_on_other_people(monkeypatch):
    """configs/tune-scenario.yaml: every method of configs/bench-scenario.yaml that trains,
    five learning rates each (RMU its own five), on the scenario with seed 1 (the bench reports
    seed 0)."""
    from unlearnkit.config import from_dict as build
    from unlearnkit.config import load_yaml
    from unlearnkit.pipeline.tune import sweep_config

    monkeypatch.chdir(CONFIGS.parent)  # the bench path is relative to the project root
    tune = load_config(TuneConfig, CONFIGS / "tune-scenario.yaml")
    bench = build(BenchConfig, load_yaml(tune.bench))
    sweep, rows = sweep_config(tune, bench)
    trained = [m.label for m in bench.methods if m.name not in ("prompt_only", "oracle")]
    assert len(sweep.methods) == 5 * len(trained) == 5 * 16  # push-pull five times: push sets
    assert sweep.run.setup.scenario.seed == 1 and bench.run.setup.scenario.seed == 0
    assert {m.label for m, _, _ in rows} == set(trained)
    runs = {m.label: run_config(sweep, m, 0) for m in sweep.methods}
    assert runs["pushpull--lr-4e-05"].unlearn.method.top_m == 0  # the true token alone
    assert runs["pushpull-m20--lr-4e-05"].unlearn.method.top_m == 20  # METHOD.md's
    assert runs["pushpull-m20--lr-4e-05"].optim.lr == 4e-5
    assert runs["rmu--lr-0.008"].optim.lr == 8e-3 and "rmu--lr-8e-05" not in runs
    mlp = runs["pushpull-mlp--lr-0.00064"]  # its own grid: the common one times 4
    assert mlp.optim.lr == 6.4e-4 and "pushpull-mlp--lr-1e-05" not in runs
    assert mlp.train_only.layers == [4, 5, 6, 7, 8, 9] and mlp.train_only.modules == ["mlp"]
    npf = runs["pushpull-mlp-npf--lr-0.00064"]  # the same grid, without the forget pull
    assert npf.train_only == mlp.train_only and not npf.unlearn.method.pull_forget
    assert mlp.unlearn.method.pull_forget
    assert tune.apply_to == []  # TOFU's rates come from configs/tune-tofu.yaml
    tofu = build(BenchConfig, load_yaml(CONFIGS / "bench-tofu.yaml"))
    assert {m.label for m in bench.methods} == {m.label for m in tofu.methods}


def test_the_relearn_tune_sweeps_its_two_new_rows_alone_on_the_prefill_attack(monkeypatch):
    """configs/tune-scenario-relearn.yaml: the MLPs of every block and every module of blocks
    4-9, five rates each, on other people, without the relearning bench's costly attacks."""
    from unlearnkit.config import from_dict as build
    from unlearnkit.config import load_yaml
    from unlearnkit.pipeline.tune import sweep_config

    monkeypatch.chdir(CONFIGS.parent)
    tune = load_config(TuneConfig, CONFIGS / "tune-scenario-relearn.yaml")
    bench = build(BenchConfig, load_yaml(tune.bench))
    sweep, rows = sweep_config(tune, bench)
    assert {m.label for m, _, _ in rows} == {"pushpull-mlp-every", "pushpull-b49"}
    assert len(sweep.methods) == 10 and sweep.run.setup.scenario.seed == 1
    assert sweep.run.attacks == ["prefill"] and "relearn" in bench.run.attacks
    runs = {m.label: run_config(sweep, m, 0) for m in sweep.methods}
    every = runs["pushpull-mlp-every--lr-0.00032"]
    assert every.train_only.layers == [] and every.train_only.modules == ["mlp"]
    b49 = runs["pushpull-b49--lr-0.00064"]
    assert b49.train_only.layers == [4, 5, 6, 7, 8, 9] and b49.train_only.modules == []
    assert every.unlearn.method.top_m == b49.unlearn.method.top_m == 0
