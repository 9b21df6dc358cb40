"""`unlearn run`'s training stage end to end on a tiny model folder (offline, seconds)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from unlearnkit.data.scenario import build_scenario
from unlearnkit.models.tiny import tiny_model
from unlearnkit.pipeline.run import RunConfig, train_unlearning


def small_config(out, steps=4):
    cfg = RunConfig(output=str(out))
    cfg.unlearn.mix.steps = steps
    cfg.unlearn.mix.forget = cfg.unlearn.mix.retain = cfg.unlearn.mix.neighbor = 1
    cfg.unlearn.teacher.top_k = 4
    cfg.unlearn.method.top_m = 4
    cfg.optim.checkpoint_every = 2
    cfg.unlearn.method.prefill_refresh = 1  # the prefill state must survive the kill too
    return cfg


def test_train_unlearning_writes_a_model_and_resumes(tiny_folder, tmp_path, cache_dir):
    records = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    out = tmp_path / "run"
    folder, history = train_unlearning(small_config(out), str(tiny_folder), records, out)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert len(history) == 4 and {"pull", "push", "adv"} <= set(history[0])
    assert (out / "checkpoints").is_dir()
    report = json.loads((out / "teacher_report.json").read_text())
    assert set(report["summary"]) == {"forget", "retain", "neighbor"}
    assert report["problems"]  # a random tiny model does not refuse: the run says so
    # a run killed after its step-2 checkpoint resumes to the same weights
    killed = tmp_path / "killed"
    cfg = small_config(killed)
    cfg.teacher_report = False
    train_unlearning(cfg, str(tiny_folder), records, killed)
    for extra in (killed / "checkpoints").glob("step-*"):
        if extra.name != "step-0000002":
            import shutil

            shutil.rmtree(extra)
    cfg.resume = True
    train_unlearning(cfg, str(tiny_folder), records, killed)
    a = load_file(folder / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2


def test_models_in_the_cache_are_evaluated_once(tok, tmp_path, cache_dir, monkeypatch):
    import unlearnkit.pipeline.run as run_mod

    inside = cache_dir / "inject" / "injected-0123"
    tiny_model(len(tok)).save_pretrained(inside, safe_serialization=True)
    tok.save_pretrained(inside)
    people = build_scenario(n_people=5, n_forget=1, neighbors_per_forget=1).records
    records = [r for r in people if r.split == "forget"][:2] + [r for r in people
                                                                if r.split == "retain"][:2]
    cfg = RunConfig(max_new_tokens=4)
    first = run_mod.evaluate({"before": str(inside)}, records, cfg)
    assert len(list((cache_dir / "eval").glob("*.json"))) == 1

    def no_loading(path, **options):
        raise AssertionError(f"{path} was evaluated again")

    monkeypatch.setattr(run_mod, "load_model", no_loading)
    again = run_mod.evaluate({"before": str(inside)}, records, cfg)
    assert again["before"]["items"] == first["before"]["items"]
    with pytest.raises(AssertionError, match="evaluated again"):  # other settings: a new key
        run_mod.evaluate({"before": str(inside)}, records, RunConfig(max_new_tokens=5))
