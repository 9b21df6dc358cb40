"""`unlearn run` with every baseline on a tiny scenario: training, saving, evaluating (seconds)."""

import json
from types import SimpleNamespace

import pytest
import torch

import unlearnkit.pipeline.run as run_mod
from unlearnkit.cli import main
from unlearnkit.errors import UnlearnError
from unlearnkit.models.lora import LoraSettings, TrainOnly
from unlearnkit.objectives.baselines import BASELINES, build_items
from unlearnkit.pipeline.methods import baseline_options, method_names, split_plan
from unlearnkit.pipeline.run import RunConfig, run
from unlearnkit.training.unlearn import MixConfig, boundary_ids, mixture_plan

pytestmark = pytest.mark.usefixtures("one_thread")

# options that fit a 2-block, 64-wide model (the presets are for the default model)
TINY_OPTIONS = {"rmu": {"layer": 1, "update_layers": [1]},
                "grad_diff": {"retain": {"loss": "kl", "top_k": 8}},
                "duet": {"teacher": {"top_k": 4}}, "ensemble": {"teacher": {"top_k": 4}}}



def tiny_run(out, method, steps=2, **extra):
    settings = {"max_new_tokens": 4, "eval_batch_size": 64, "eval_references": False,
                "report": False, **extra}
    cfg = RunConfig(method=method, baseline=TINY_OPTIONS.get(method, {}), output=str(out),
                    **settings)
    cfg.unlearn.mix = MixConfig(forget=1, retain=1, neighbor=1, steps=steps)
    cfg.optim.checkpoint_every = 1
    return cfg


@pytest.mark.parametrize("name", sorted(n for n, b in BASELINES.items() if b.trainable))
def test_every_trainable_baseline_runs_end_to_end(name, tiny_scenario, tmp_path):
    payload = run(tiny_run(tmp_path / name, name))
    assert (tmp_path / name / "model" / "model.safetensors").is_file()
    assert (tmp_path / name / "checkpoints").is_dir()  # the loop's checkpoints, so --resume works
    saved = json.loads((tmp_path / name / "results.json").read_text())
    assert saved["method"] == name and set(saved["results"]) == {"after"}
    assert set(saved["results"]["after"]["summary"]) == {"forget", "retain", "neighbor", "general"}
    assert len(json.loads((tmp_path / name / "train_log.json").read_text())) == 2
    assert payload["models"]["after"] == str(tmp_path / name / "model")


def test_a_run_killed_while_evaluating_does_not_train_again(tiny_scenario, tmp_path,
                                                           monkeypatch):
    out = tmp_path / "run"
    cfg = tiny_run(out, "grad_ascent", resume=True)
    real_evaluate = run_mod.evaluate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    saved = json.loads((out / run_mod.TRAINED).read_text())
    assert saved["after"] == str(out / "model") and len(saved["history"]) == 2
    weights = (out / "model" / "model.safetensors").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(run_mod, "evaluate", real_evaluate)
    monkeypatch.setattr(run_mod, "run_baseline", no_training)
    payload = run(cfg)
    assert payload["models"]["after"] == str(out / "model")
    assert len(json.loads((out / "train_log.json").read_text())) == 2
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    # --resume with other settings is refused while checkpoints of the first run exist
    other = tiny_run(out, "grad_ascent", resume=True)
    other.optim.lr *= 2
    assert any((out / "checkpoints").iterdir())
    with pytest.raises(UnlearnError, match=r"other settings \(they differ in optim\)"):
        run(other)
    # without --resume a run trains again: the stale record and checkpoints go first
    other.resume = False
    with pytest.raises(AssertionError, match="trained again"):
        run(other)
    assert not (out / run_mod.TRAINED).exists() and not (out / "checkpoints").exists()


def test_a_baseline_trains_only_what_train_only_selects(tiny_scenario, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "ga"
    cfg = tiny_run(out, "grad_ascent", train_only=TrainOnly(layers=[0], modules=["self_attn"]))
    cfg.optim.lr = 1e-2
    run(cfg)
    before = load_file(f"{tiny_scenario.models['injected']}/model.safetensors")
    after = load_file(out / "model" / "model.safetensors")
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {k for k in before if ".layers.0.self_attn." in k}


@pytest.mark.parametrize(("lora_output", "after"), [("both", "model"), ("adapter", "adapter")])
def test_lora_run_saves_the_adapter_and_evaluates_what_it_wrote(tiny_scenario, tmp_path,
                                                                lora_output, after):
    out = tmp_path / lora_output
    payload = run(tiny_run(out, "grad_ascent", lora=LoraSettings(rank=2),
                           lora_output=lora_output))
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_scenario.models["injected"]
    assert (out / "model").is_dir() == (lora_output == "both")
    assert payload["models"]["after"] == str(out / after)
    summary = payload["results"]["after"]["summary"]
    assert sum(s["n"] for s in summary.values()) == len(tiny_scenario.records)


def test_prompt_only_evaluates_the_injected_model_with_the_instruction(tiny_scenario, tmp_path,
                                                                      monkeypatch):
    seen = []
    for fn in ("answer_records", "run_attacks"):
        original = getattr(run_mod, fn)
        monkeypatch.setattr(run_mod, fn, lambda *a, _f=original, **k: seen.append(
            k["context"]) or _f(*a, **k))
    payload = run(tiny_run(tmp_path / "p", "prompt_only", eval_references=True))
    context = payload["contexts"]["after"]
    forget_subject = tiny_scenario.records[0].subject
    assert forget_subject in context
    assert payload["models"]["after"] == tiny_scenario.models["injected"]
    assert seen == [None, None, context, context, None, None]  # before, after, oracle
    assert not (tmp_path / "p" / "model").exists()
    assert json.loads((tmp_path / "p" / "train_log.json").read_text()) == []


def test_oracle_evaluates_the_oracle_model(tiny_scenario, tmp_path):
    payload = run(tiny_run(tmp_path / "o", "oracle"))
    assert payload["models"] == {"after": tiny_scenario.models["oracle"]}
    assert "after" in payload["results"] and not (tmp_path / "o" / "model").exists()


def test_split_plan_draws_what_pushpull_draws(tok, tiny_prepared):
    import dataclasses

    records = list(tiny_prepared.records)
    target = next(r for r in records if r.split == "forget").targets[0]
    i = next(i for i, r in enumerate(records) if r.split == "retain")
    records[i] = dataclasses.replace(records[i], answer=f"{records[i].answer} Also {target}.")
    items = build_items(tok, records)
    boundary = boundary_ids(records)
    assert boundary == {records[i].id}  # the retain record that now shares a forget value
    mix = MixConfig(forget=1, retain=2, neighbor=1, steps=5, boundary=1)
    for seed in (0, 1):
        ours = [[it.record.id for it in batch] for batch in split_plan(items, mix, seed)]
        proxies = [SimpleNamespace(kind=r.split, id=r.id, boundary=r.id in boundary)
                   for r in records if r.split in ("forget", "retain", "neighbor")]
        theirs = [[p.id for p in batch] for batch in mixture_plan(proxies, mix, seed)]
        assert ours == theirs and all(len(batch) == 5 for batch in ours)
        assert all(batch[-1] in boundary for batch in ours)
    assert split_plan(items, mix, 0) != split_plan(items, mix, 1)  # the seed changes the order


def test_a_baseline_seed_field_follows_the_run_seed():
    assert baseline_options("rmu", {}, 3).seed == 3
    assert baseline_options("rmu", {"seed": 7}, 3).seed == 7
    assert baseline_options("npo", {"beta": 0.5}, 3).beta == 0.5


def test_bad_method_and_options_are_config_errors():
    with pytest.raises(UnlearnError, match=r"pushpull, .*npo"):
        RunConfig(method="nope")
    with pytest.raises(UnlearnError, match=r"npo\.bogus"):
        RunConfig(method="npo", baseline={"bogus": 1})
    with pytest.raises(UnlearnError, match=r"unlearn\.method"):
        RunConfig(baseline={"beta": 1.0})
    assert method_names()[0] == "pushpull" and len(method_names()) == len(BASELINES) + 1


@pytest.mark.parametrize(("sets", "message"), [
    (["method=nope"], "unknown method 'nope'"),
    (["method=npo", "baseline.bogus=1"], "npo.bogus"),
    (["method=npo", "baseline.beta=-1"], "beta"),
    (["unlearn.stop.every=-1"], "unlearn.stop.every must be >= 0"),
    (["unlearn.method.push_space=probs"], "push_space must be one of"),
    (["unlearn.method.push_below=student"], "push_below must be one of"),
    (["unlearn.method.reveal=names"], "reveal must be one of"),
])
def test_cli_rejects_a_bad_method_or_option_in_one_line(sets, message, capsys):
    code = main(["run", *[arg for s in sets for arg in ("--set", s)]])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_seed_sets_lora_initialisation(tiny_scenario, tmp_path, monkeypatch):
    weights = {}

    def capture(model, plan, step_fn, cfg, **kwargs):
        weights[len(weights)] = {n: p.detach().clone() for n, p in model.named_parameters()
                                 if "lora_A" in n}
        return []

    monkeypatch.setattr("unlearnkit.pipeline.methods.train", capture)
    for seed in (0, 0, 1):
        cfg = tiny_run(tmp_path / f"s{len(weights)}", "grad_ascent", lora=LoraSettings(rank=2))
        cfg.unlearn.seed = seed
        run_mod.unlearn(cfg, tiny_scenario, tmp_path / f"s{len(weights)}")
    first, again, other = weights[0], weights[1], weights[2]
    assert first and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_demo_runs_inject_unlearn_evaluate_and_report(tiny_scenario, tmp_path, monkeypatch):
    from dataclasses import replace

    from unlearnkit.data.records import Record
    from unlearnkit.pipeline.demo import DemoConfig, run_demo

    replay = [Record(id="replay-0", split="general", question="What colour is snow?",
                     answer="White.", meta={"replay": True})]
    prepared = replace(tiny_scenario, models={**tiny_scenario.models,
                                              "base": tiny_scenario.models["oracle"]},
                       replay=replay)
    monkeypatch.setattr(run_mod, "prepare_scenario", lambda setup, variants: prepared)
    cfg = DemoConfig(output=str(tmp_path / "demo"), max_new_tokens=4, eval_batch_size=64)
    assert cfg.unlearn.mix.general == 4 and cfg.optim.lr == 1.6e-4  # the chosen demo setting
    assert cfg.train_only.layers == [4, 5, 6, 7, 8, 9] and cfg.train_only.modules == ["mlp"]
    cfg.train_only.layers = [1]  # the tiny model has 2 blocks
    cfg.unlearn.mix = MixConfig(forget=1, retain=1, neighbor=1, general=1, steps=2)
    cfg.unlearn.teacher.top_k = cfg.unlearn.method.top_m = 4
    assert cfg.fluency_judge == "smollm2-135m-instruct"  # the scenario's base model
    cfg.fluency_judge = prepared.models["base"]
    payload = run_demo(cfg)
    assert list(payload["results"]) == ["base", "before", "after", "oracle"]
    assert payload["fluency_judge"]["model"] == prepared.models["base"]
    assert all("unlikely" in r["summary"]["forget"] for r in payload["results"].values())
    out = tmp_path / "demo"
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "data" / "manifest.json").is_file()
    html = (out / "report.html").read_text()
    assert "after" in html and "oracle" in html
    # every attack on every model; the report judges the worst beyond the oracle
    from unlearnkit.pipeline.demo import DEMO_ATTACKS

    assert all(list(r["attacks"]) == list(DEMO_ATTACKS) for r in payload["results"].values())
    assert "worst beyond the oracle" in html and "logit_lens" in html


def test_baselines_draw_the_general_keep_items_as_retain_items(tok, tiny_prepared):
    """mix.general reaches the baselines as it reaches push-pull: replay records become
    retain-kind items, drawn by the general quota into every micro-batch."""
    import dataclasses

    from unlearnkit.data.records import Record
    from unlearnkit.pipeline.methods import general_keep

    replay = [Record(id=f"replay-{i}", split="general", question=f"Name a colour {i}.",
                     answer="Blue.", meta={"replay": True}) for i in range(2)]
    prepared = dataclasses.replace(tiny_prepared, replay=replay)
    mix = MixConfig(forget=1, retain=1, neighbor=1, general=1, steps=4)
    records = prepared.records + general_keep(mix, prepared)
    batches = split_plan(build_items(tok, records), mix, 0)
    for batch in batches:
        general = [it for it in batch if it.record.meta.get("replay")]
        assert len(batch) == 4 and len(general) == 1 and general[0].kind == "retain"
    assert general_keep(MixConfig(general=0), prepared) == []
    with pytest.raises(UnlearnError, match="replay prompts"):
        general_keep(mix, tiny_prepared)  # no replay records


def test_general_long_adds_the_long_replay_answers(tiny_prepared, monkeypatch):
    import dataclasses

    import unlearnkit.pipeline.methods as methods
    from unlearnkit.data.records import Record

    replay = [Record(id="replay-0", split="general", question="Name a colour.", answer="Blue.",
                     meta={"replay": True})]
    long = [Record(id="replay-long-0", split="general", question="Who wrote Hamlet?",
                   answer="William Shakespeare wrote it.", meta={"replay": True, "cut": True})]
    seen = []
    monkeypatch.setattr(methods, "long_replay_records",
                        lambda model, kept, spec: seen.append((model, kept, spec)) or long)
    prepared = dataclasses.replace(tiny_prepared, replay=replay)
    assert methods.general_keep(MixConfig(general=1), prepared) == replay
    assert not seen  # not computed unless asked for
    both = methods.general_keep(MixConfig(general=1, general_long=True), prepared)
    assert both == replay + long
    assert seen == [(prepared.models["base"], replay, prepared.tokenizer_spec)]


def test_pushpull_with_the_contrast_reveal_and_the_alternative_runs(tiny_scenario, tmp_path,
                                                                     capsys):
    cfg = tiny_run(tmp_path / "contrast", "pushpull")
    cfg.unlearn.method.reveal = "contrast"
    cfg.unlearn.method.reveal_contrasts = 2
    cfg.unlearn.method.push_below = "alternative"
    run(cfg)
    log = json.loads((tmp_path / "contrast" / "train_log.json").read_text())
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in log)
    assert "reveal the forget subject by contrast with 2 other people" in capsys.readouterr().out


def test_an_instructed_baselines_scope_follows_the_runs_teacher_unless_given():
    from unlearnkit.models.teacher import TeacherConfig

    run = TeacherConfig(forget_scope="the authors A and B", keep_scope="other authors")
    duet = baseline_options("duet", {"teacher": {"top_k": 5}}, 0, run).teacher
    assert (duet.forget_scope, duet.keep_scope, duet.top_k) == ("the authors A and B",
                                                                "other authors", 5)
    own = baseline_options("ensemble", {"teacher": {"forget_scope": "C"}}, 0, run).teacher
    assert (own.forget_scope, own.keep_scope) == ("C", "other authors")
    prompt = baseline_options("prompt_only", {"forget_scope": "", "keep_scope": "people"}, 0,
                              run)
    assert (prompt.forget_scope, prompt.keep_scope) == ("the authors A and B", "people")
    assert baseline_options("duet", {}, 0).teacher.forget_scope == ""  # no run teacher: as given
    assert baseline_options("npo", {}, 0, run).beta == baseline_options("npo", {}, 0).beta


def test_a_run_never_writes_into_a_folder_of_the_users(tmp_path):
    mine = tmp_path / "my-model"
    mine.mkdir()
    (mine / "config.json").write_text('{"model_type": "llama"}')  # e.g. the model itself
    with pytest.raises(UnlearnError, match="not an earlier output"):
        run(tiny_run(mine, "grad_ascent"))
    assert [p.name for p in mine.iterdir()] == ["config.json"]
