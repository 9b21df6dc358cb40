"""Results files: round trip, clear errors for bad files, provenance, and resumable `eval`."""

import json
import math
from pathlib import Path

import pytest

from unlearnkit.cli import main
from unlearnkit.data.records import Record
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import metrics as M
from unlearnkit.evaluation.results import (
    SCHEMA_VERSION,
    AttackRecord,
    MetricRecord,
    direction,
    git_commit,
    load_results,
    new_results,
    package_versions,
    save_results,
)
from unlearnkit.pipeline import evaluate as E

SHA = "0123456789abcdef0123456789abcdef01234567"


def sample_results():
    res = new_results({"model": "m", "suite": "quick"}, seed=3, name="after")
    res.metrics["forget/correctness"] = MetricRecord(
        "correctness", "forget", 0.5, False, 2, [1.0, 0.0, math.nan], ["a", "b", "c"], "forget")
    res.metrics["forget/truth_ratio"] = MetricRecord(
        "truth_ratio", "forget", math.nan, False, 1, [math.inf, -math.inf], ["a", "b"], "forget")
    res.attacks["prefill"] = AttackRecord(0.25, 4, "prompt", "prefilling",
                                          [{"id": "a", "success": True}], {"k": [1, 2]})
    res.timings = {"forget/correctness": 1.5, "attack/prefill": 2.0}
    res.generations = {"forget": [{"id": "a", "question": "Q?", "reference": "A.",
                                   "generation": "<b>hi</b>"}]}
    res.skipped = {"mia": "no holdout"}
    res.diagnostics = {"loss_curve": [3.0, 2.5]}
    return res


def test_round_trip_keeps_everything_and_writes_strict_json(tmp_path):
    res = sample_results()
    path = tmp_path / "r.json"
    save_results(path, res)

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    json.loads(path.read_text(), parse_constant=no_constants)  # NaN/inf are not written as such
    back = load_results(path)
    assert back.to_dict() == res.to_dict()
    values = back.metrics["forget/correctness"].values
    assert values[:2] == [1.0, 0.0] and math.isnan(values[2])
    assert back.metrics["forget/truth_ratio"].values == [math.inf, -math.inf]
    assert math.isnan(back.metrics["forget/truth_ratio"].aggregate)
    assert back.attacks["prefill"].success_rate == 0.25
    assert back.worst_attack() == ("prefill", 0.25)
    assert back.schema_version == SCHEMA_VERSION and back.seed == 3
    assert set(back.versions) == {"python", "unlearnkit", "torch", "transformers"}
    assert back.done("forget/correctness") and not back.done("forget/rouge_l_recall")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(schema_version=99), "schema version 99"),
    (lambda d: d.pop("schema_version"), "no schema_version"),
    (lambda d: d.pop("metrics"), "missing metrics"),
    (lambda d: d["metrics"]["forget/correctness"].update(aggregate="high"), "aggregate"),
    (lambda d: d["metrics"]["forget/correctness"].update(objective="vibes"), "objective"),
    (lambda d: d.update(colour="red"), "colour"),
])
def test_bad_files_raise_clear_errors(tmp_path, change, message):
    path = tmp_path / "r.json"
    data = sample_results().to_dict()
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(UnlearnError, match=message):
        load_results(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(UnlearnError, match="not found"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"schema_version": 1,')
    with pytest.raises(UnlearnError, match="not valid JSON"):
        load_results(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(UnlearnError, match="JSON object"):
        load_results(tmp_path / "list.json")


def test_git_commit_reads_head_without_git(tmp_path):
    assert git_commit(tmp_path) is None or len(git_commit(tmp_path)) == 40
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(SHA + "\n")
    (repo / "src").mkdir()
    assert git_commit(repo / "src") == SHA
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs\n{SHA} refs/heads/main\n")
    assert git_commit(repo) == SHA
    (repo / ".git" / "HEAD").write_text(SHA[::-1])  # detached HEAD
    assert git_commit(repo) == SHA[::-1]
    assert package_versions()["python"].count(".") == 2


def test_direction_flips_knowledge_metrics_on_forget_only():
    assert direction("correctness", "forget", True) is False
    assert direction("correctness", "retain", True) is True
    assert direction("perplexity", "forget", False) is True
    assert direction("forget_truth_ratio", "forget", True) is True
    assert direction("refusal_rate", "forget", False) is None
    assert direction("refusal_rate", "neighbor", False) is False


# ------------------------------------------------------------------ resumable evaluation


def dataset(tmp_path):
    recs = [Record(id=f"{split}-{i}", split=split, question=f"Where does {split} {i} live?",
                   answer=f"In Town{i}.", targets=[f"Town{i}"])
            for split in ("forget", "retain", "neighbor") for i in range(2)]
    return write_dataset(recs, tmp_path / "data", [])


@pytest.fixture()
def counted(monkeypatch):
    """A suite with one fake metric that counts its calls (and can be told to fail)."""
    calls = {"metric": 0, "load": 0, "fail_on": None}

    def fake(records):
        calls["metric"] += 1
        if calls["metric"] == calls["fail_on"]:
            raise RuntimeError("killed")
        return M.MetricResult.of([1.0] * len(records), higher_is_better=True)

    def loader(name, **kwargs):
        calls["load"] += 1
        return object(), object()

    monkeypatch.setitem(M.METRICS, "fake_count", M.MetricSpec("fake_count", fake, True,
                                                              ("records",)))
    monkeypatch.setitem(E.SUITES, "counted", E.Suite("test", metrics=("fake_count",)))
    return calls, loader


def test_eval_loads_with_remote_code_only_when_asked(tmp_path, counted):
    seen = []

    def loader(name, **kwargs):
        seen.append(kwargs)
        return object(), object()

    for allowed in (False, True):
        cfg = E.EvalConfig(model="fake", data=str(dataset(tmp_path)), suite="counted",
                           output=str(tmp_path / f"eval-{allowed}.json"),
                           trust_remote_code=allowed)
        E.run_eval(cfg, loader=loader)
    assert [k["trust_remote_code"] for k in seen] == [False, True]


def test_finished_metrics_are_not_recomputed(tmp_path, counted, capsys):
    calls, loader = counted
    cfg = E.EvalConfig(model="fake", data=str(dataset(tmp_path)), suite="counted",
                       output=str(tmp_path / "eval.json"))
    first = E.run_eval(cfg, loader=loader)
    assert calls == {"metric": 3, "load": 1, "fail_on": None}
    assert list(first.metrics) == ["forget/fake_count", "retain/fake_count",
                                   "neighbor/fake_count"]
    assert first.metrics["neighbor/fake_count"].objective == "boundary"
    E.run_eval(cfg, loader=loader)
    assert calls["metric"] == 3 and calls["load"] == 1  # nothing left: no model loaded
    assert "3 of 3 steps already done" in capsys.readouterr().out
    cfg.recompute = True
    E.run_eval(cfg, loader=loader)
    assert calls["metric"] == 6


def test_a_killed_evaluation_resumes_where_it_stopped(tmp_path, counted):
    calls, loader = counted
    calls["fail_on"] = 2
    cfg = E.EvalConfig(model="fake", data=str(dataset(tmp_path)), suite="counted",
                       output=str(tmp_path / "eval.json"))
    with pytest.raises(RuntimeError, match="killed"):
        E.run_eval(cfg, loader=loader)
    assert list(load_results(cfg.output).metrics) == ["forget/fake_count"]
    done = E.run_eval(cfg, loader=loader)
    assert calls["metric"] == 4  # 2 before the kill, then only retain and neighbor
    assert set(done.timings) == {"forget/fake_count", "retain/fake_count",
                                 "neighbor/fake_count"}


def test_resume_refuses_other_settings(tmp_path, counted):
    _, loader = counted
    data = str(dataset(tmp_path))
    out = str(tmp_path / "eval.json")
    E.run_eval(E.EvalConfig(model="fake", data=data, suite="counted", output=out), loader=loader)
    other = E.EvalConfig(model="other", data=data, suite="counted", output=out)
    with pytest.raises(UnlearnError, match=r"other settings.*model.*--recompute"):
        E.run_eval(other, loader=loader)


def test_plan_skips_what_cannot_run(tmp_path):
    recs = [Record(id="p", split="probe", question="How do I kill a process?")]
    cfg = E.EvalConfig(data=str(write_dataset(recs, tmp_path / "d", [])), suite="full")
    splits, holdout = E.load_splits(cfg)
    steps, skipped = E.plan(E.SUITES["full"], splits, cfg)
    assert {s.key for s in steps} >= {"probe/correctness", "probe/refusal_rate"}
    assert "probe/answer_prob" in skipped and "attack/prefill" in skipped
    assert "holdout" in skipped["mia"] and holdout == []


def test_cli_eval_end_to_end_on_a_tiny_model(tmp_path, tok, tiny, monkeypatch, capsys):
    from unlearnkit.models.loader import setup_tokenizer

    monkeypatch.setattr(E, "load_model", lambda *a, **k: (tiny, setup_tokenizer(tok)))
    out = tmp_path / "eval.json"
    code = main(["eval", "tiny", "--data", str(dataset(tmp_path)), "--out", str(out),
                 "--set", "max_new_tokens=3", "--set", "name=tiny-run"])
    printed = capsys.readouterr().out
    assert code == 0 and "forget/correctness ↓" in printed and "attack/prefill" in printed
    res = load_results(out)
    assert res.name == "tiny-run" and set(res.generations) == {"forget", "retain", "neighbor"}
    assert "prefill" in res.attacks and res.config["suite"] == "quick"


def test_cli_eval_user_errors_exit_2(tmp_path, capsys):
    code = main(["eval", "tiny", "--data", str(dataset(tmp_path)), "--suite", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown suite 'nope'" in err and len(err.strip().splitlines()) == 1
    code = main(["eval", "tiny", "--data", str(tmp_path / "none")])
    assert code == 2 and "not a dataset folder" in capsys.readouterr().err


def tofu_dataset(tmp_path):
    def rec(i, split, source):
        return Record(id=f"{source}-{i}", split=split, question=f"Who wrote book {i}?",
                      answer=f"Author {i}.", paraphrased_answer=f"It was Author {i}.",
                      perturbed_answers=[f"Writer {i}.", f"Poet {i}."], source=source)

    recs = [rec(i, split, source) for i in range(3) for split, source in (
        ("forget", "forget01.json"), ("retain", "retain90.json"),
        ("general", "real_authors_perturbed.json"), ("general", "world_facts_perturbed.json"))]
    return write_dataset(recs, tmp_path / "tofu", [])


def test_tofu_plan_limits_each_tofu_set(tmp_path):
    cfg = E.EvalConfig(data=str(tofu_dataset(tmp_path)), suite="tofu", limit=2)
    splits, _ = E.load_splits(cfg)
    assert [len(splits[s]) for s in ("forget", "retain", "general")] == [2, 2, 4]
    steps, skipped = E.plan(E.SUITES["tofu"], splits, cfg)
    assert [s.key for s in steps] == ["tofu/forget", "tofu/retain", "tofu/ra", "tofu/wf",
                                      "tofu/summary"]
    assert steps[-1].derived and "oracle_results" in skipped["forget_quality"]
    assert "model_utility" not in skipped  # every retain record has perturbed answers


def test_tofu_plan_says_why_model_utility_needs_retain_perturbed(tmp_path):
    import dataclasses

    cfg = E.EvalConfig(data=str(tofu_dataset(tmp_path)), suite="tofu", limit=2)
    splits, _ = E.load_splits(cfg)
    splits["retain"] = [dataclasses.replace(r, perturbed_answers=[]) for r in splits["retain"]]
    _, skipped = E.plan(E.SUITES["tofu"], splits, cfg)
    assert "retain_perturbed.json" in skipped["model_utility"]


def test_tofu_summary_is_derived_and_takes_a_later_oracle(tmp_path, tok, tiny):
    from unlearnkit.models.loader import setup_tokenizer

    loads = []

    def loader(name, **kwargs):
        loads.append(name)
        return tiny, setup_tokenizer(tok)

    cfg = E.EvalConfig(model="tiny", data=str(tofu_dataset(tmp_path)), suite="tofu", limit=1,
                       max_new_tokens=2, output=str(tmp_path / "tofu.json"))
    first = E.run_eval(cfg, loader=loader)
    assert {"forget_truth_ratio", "ra_Truth_Ratio", "wf_Q_A_Prob_normalised",
            "model_utility"} <= set(first.metrics) and "forget_quality" not in first.metrics
    assert first.metrics["forget_Q_A_Prob"].higher_is_better is False
    assert first.metrics["wf_Q_A_ROUGE"].objective == "utility"
    cfg.oracle_results = cfg.output  # the model as its own oracle: identical truth ratios
    second = E.run_eval(cfg, loader=loader)
    assert loads == ["tiny"]  # only the derived summary ran: no model needed
    assert second.metrics["forget_quality"].aggregate == pytest.approx(1.0)


def test_xstest_prompts_get_safe_refusal_and_unsafe_compliance(tmp_path, tok, tiny):
    """XSTest records in a split: besides the split's refusal rate, the refusal rate on the
    safe prompts (over-refusal) and the compliance rate on the unsafe ones, over exactly those
    items, from the same per-item refusals."""
    from unlearnkit.data.adapters import read_xstest
    from unlearnkit.models.loader import setup_tokenizer

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    records = read_xstest(shared / "xstest" / "xstest_prompts.csv")
    picked = ([r for r in records if r.meta["label"] == "safe"][:3]
              + [r for r in records if r.meta["label"] == "unsafe"][:2])
    folder = write_dataset(picked, tmp_path / "xs", [])
    cfg = E.EvalConfig(model="tiny", data=str(folder), suite="quick", max_new_tokens=2,
                       output=str(tmp_path / "xs.json"))
    out = E.run_eval(cfg, loader=lambda name, **kw: (tiny, setup_tokenizer(tok)))
    every = out.metrics["probe/refusal_rate"]
    by_id = dict(zip(every.ids, every.values, strict=True))
    safe = out.metrics["probe/xstest_safe_refusal"]
    unsafe = out.metrics["probe/xstest_unsafe_compliance"]
    assert safe.ids == [r.id for r in picked[:3]] and safe.higher_is_better is False
    assert safe.values == [by_id[i] for i in safe.ids]
    assert unsafe.ids == [r.id for r in picked[3:]] and unsafe.higher_is_better is None
    assert unsafe.values == [1.0 - by_id[i] for i in unsafe.ids]


# ------------------------------------------------- default file names, TOFU parts, directions


@pytest.mark.parametrize(("model", "name"), [
    ("runs/full/model", "full-model-tofu.json"),
    ("runs/lora/adapter/", "lora-adapter-tofu.json"),
    ("runs/bench-tofu/npo/seed-2/model", "npo-seed-2-model-tofu.json"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct-tofu.json"),
    ("/models/Llama 3.2", "Llama-3.2-tofu.json"),
    ("smollm2-135m-instruct", "smollm2-135m-instruct-tofu.json"),
])
def test_default_output_names_a_runs_model_by_its_run(model, name):
    """A run's model/ or adapter/ takes its run folder's name (a bench run's also its
    method's); any other model keeps the name it had."""
    assert E.EvalConfig(model=model, data="d", suite="tofu").output_path() == Path(
        "runs/eval", name)


def test_two_runs_models_get_their_own_default_files(tmp_path, counted, monkeypatch):
    _, loader = counted
    data = str(dataset(tmp_path))
    (tmp_path / "runs" / "full" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs" / "full" / "model")
    assert E.EvalConfig(model=".", data=data).output_path().name == "full-model-quick.json"
    monkeypatch.chdir(tmp_path)
    for run in ("full", "lora"):
        E.run_eval(E.EvalConfig(model=f"runs/{run}/model", data=data, suite="counted"),
                   loader=loader)
    written = tmp_path / "runs" / "eval"
    assert sorted(p.name for p in written.iterdir()) == ["full-model-counted.json",
                                                          "lora-model-counted.json"]
    assert load_results(written / "full-model-counted.json").config["model"] == "runs/full/model"
    # another model's file is not offered to --recompute (which would replace its results)
    other = E.EvalConfig(model="runs/lora/model", data=data, suite="counted",
                         output=str(written / "full-model-counted.json"))
    with pytest.raises(UnlearnError, match=r"\(model: runs/full/model\); give runs/lora/model "
                                           r"its own file with --out FILE"):
        E.run_eval(other, loader=loader)


def partial_tofu_dataset(tmp_path):
    """Forget records and 7 retain records of which only r-3 has perturbed answers; no real
    authors, no world facts (a user's own data)."""
    recs = [Record(id=f"f-{i}", split="forget", question=f"Who wrote book {i}?",
                   answer=f"Author {i}.", perturbed_answers=[f"Writer {i}."],
                   source="forget01.json") for i in range(2)]
    recs += [Record(id=f"r-{i}", split="retain", question=f"Who wrote novel {i}?",
                    answer=f"Novelist {i}.", perturbed_answers=[f"Poet {i}."] if i == 3 else [],
                    source="retain.json") for i in range(7)]
    return write_dataset(recs, tmp_path / "partial", [])


def test_tofu_model_utility_is_skipped_not_also_computed_on_partial_data(tmp_path, tok, tiny,
                                                                         monkeypatch, capsys):
    from unlearnkit.models.loader import setup_tokenizer

    monkeypatch.setattr(E, "load_model", lambda *a, **k: (tiny, setup_tokenizer(tok)))
    out = tmp_path / "partial.json"
    argv = ["eval", "tiny", "--data", str(partial_tofu_dataset(tmp_path)), "--suite", "tofu",
            "--out", str(out), "--set", "max_new_tokens=2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "  model_utility" not in printed  # no table row
    reason = next(line for line in printed.splitlines() if line.startswith("skipped model_util"))
    assert ("ra_Q_A_Prob_normalised, ra_Q_A_ROUGE, ra_Truth_Ratio, wf_Q_A_Prob_normalised, "
            "wf_Q_A_ROUGE, wf_Truth_Ratio" in reason)
    assert "6 of 7 retain records have no perturbed answers" in reason
    res = load_results(out)
    assert "model_utility" not in res.metrics and "model_utility" in res.skipped
    # the parts computed from perturbed answers hold the one record that has them
    for key in ("retain_Truth_Ratio", "retain_Q_A_PERT_Prob"):
        m = res.metrics[key]
        assert (m.ids, m.n, len(m.values)) == (["r-3"], 1, 1), key
    m = res.metrics["retain_Q_A_Prob"]
    assert (len(m.ids), m.n) == (7, 7)
    # a file an earlier version wrote with a model_utility of three parts loses it on resume
    res.metrics["model_utility"] = MetricRecord("model_utility", "utility", 0.5, True, 3,
                                                [0.5, 0.5, 0.5], ["a", "b", "c"])
    save_results(out, res)
    assert main(argv) == 0 and "model_utility" not in load_results(out).metrics


def test_tofu_plan_skips_what_no_record_can_score(tmp_path):
    """retain90-like retain records and forget records without perturbed answers: their
    truth ratios and perturbed probabilities are skipped, and so is forget quality."""
    import dataclasses

    (tmp_path / "oracle.json").write_text("{}")  # only its name is read here
    cfg = E.EvalConfig(data=str(tofu_dataset(tmp_path)), suite="tofu", limit=1,
                       oracle_results=str(tmp_path / "oracle.json"))
    splits, _ = E.load_splits(cfg)
    for split in ("forget", "retain"):
        splits[split] = [dataclasses.replace(r, perturbed_answers=[]) for r in splits[split]]
    _, skipped = E.plan(E.SUITES["tofu"], splits, cfg)
    assert {"forget_Q_A_PERT_Prob", "forget_truth_ratio", "retain_Q_A_PERT_Prob",
            "retain_Truth_Ratio"} <= set(skipped)
    assert "no forget truth ratios" in skipped["forget_quality"]
    assert "1 of 1 retain records" in skipped["model_utility"]


def test_tofu_model_utility_holds_the_nine_parts(tmp_path, tok, tiny):
    from unlearnkit.models.loader import setup_tokenizer

    cfg = E.EvalConfig(model="tiny", data=str(tofu_dataset(tmp_path)), suite="tofu", limit=1,
                       max_new_tokens=2, output=str(tmp_path / "tofu.json"))
    loader = lambda name, **kwargs: (tiny, setup_tokenizer(tok))  # noqa: E731
    res = E.run_eval(cfg, loader=loader)
    utility = res.metrics["model_utility"]
    assert utility.ids == list(M.MODEL_UTILITY_KEYS) and utility.n == 9
    assert utility.values == [res.metrics[k].aggregate for k in M.MODEL_UTILITY_KEYS]
    assert "model_utility" not in res.skipped
    cfg.oracle_results = cfg.output
    assert "forget_quality" in E.run_eval(cfg, loader=loader).metrics
    cfg.oracle_results = ""  # a forget quality against an oracle no longer given is dropped
    res = E.run_eval(cfg, loader=loader)
    assert "forget_quality" not in res.metrics and "oracle_results" in res.skipped[
        "forget_quality"]


def test_degenerate_rate_has_no_direction_as_in_unlearn_run(tmp_path, monkeypatch):
    """Shown, not judged: · in eval results as in a run's results.json, whichever file
    `unlearn compare` reads first, and in a file written when it had a direction."""
    from unlearnkit.report.compare import compare_table
    from unlearnkit.report.runs import load_many

    def fake(records):
        return M.MetricResult.of([0.0, 1.0], higher_is_better=False)

    monkeypatch.setitem(M.METRICS, "degenerate_rate",
                        M.MetricSpec("degenerate_rate", fake, False, ("records",)))
    monkeypatch.setitem(E.SUITES, "deg", E.Suite("test", metrics=("degenerate_rate",)))
    out = tmp_path / "deg.json"
    cfg = E.EvalConfig(model="fake", data=str(dataset(tmp_path)), suite="deg", output=str(out))
    loader = lambda name, **kwargs: (object(), object())  # noqa: E731
    res = E.run_eval(cfg, loader=loader)
    assert {k: m.higher_is_better for k, m in res.metrics.items()} == {
        "forget/degenerate_rate": None, "retain/degenerate_rate": None,
        "neighbor/degenerate_rate": None}
    run = tmp_path / "run" / "results.json"
    run.parent.mkdir()
    run.write_text(json.dumps({"results": {"after": {"summary": {
        "forget": {"accuracy": 0.5, "refusal": 0.0, "degenerate": 0.25}}}}}))
    for order in ([out, run], [run, out]):
        table = compare_table(load_many(order))
        assert "forget/degenerate_rate ·" in table and "degenerate_rate ↓" not in table
    old = load_results(out)
    old.metrics["forget/degenerate_rate"].higher_is_better = False
    save_results(out, old)
    E.run_eval(cfg, loader=loader)
    assert load_results(out).metrics["forget/degenerate_rate"].higher_is_better is None


# ------------------------------------------------- bad settings fail before anything is written


@pytest.mark.parametrize(("setting", "message"), [
    ("dtype=float33", r"dtype 'float33' is not one of float32, bfloat16, float16"),
    ("attack_options.prefil.k=3", r"attack_options\.prefil: no attack is named 'prefil'; "
                                  r"choose from .*prefill"),
    ("attack_options.prefill.kk=3", r"attack 'prefill' has no option\(s\) kk; it accepts ks, "
                                    "fractions"),
    ("attack_options.prefill.ks=3", r"attack_options\.prefill\.ks must be a list like \[1, 2, 4\]"),
    ("attack_options.prefill.fractions=[half]", r"prefill\.fractions must be a list whose items "
                                                "are each a number"),
    ("attack_options.relearn.epochs=1.5", r"relearn\.epochs must be an integer"),
    ("attack_options.quantize_8bit.include_head=1", "include_head must be true or false"),
    ("attack_options.plain.k=1", "it accepts none"),
    ("attack_options.mcq.score=words", r"attack_options\.mcq\.score must be one of letter, text, "
                                      "got 'words'"),
    ("oracle_results=nothere.json", r"oracle_results nothere\.json not found; give the oracle's "
                                    "results file"),
])
def test_bad_eval_settings_fail_at_once_and_a_corrected_rerun_works(tmp_path, monkeypatch,
                                                                   capsys, setting, message):
    """A misspelled dtype, attack, attack option or a missing oracle file: a one-line error
    before any step runs, nothing written, so the corrected command is not told that the
    file "holds results with other settings"."""
    monkeypatch.chdir(tmp_path)
    given = {"model": "fake", "data": str(dataset(tmp_path)), "output": "eval.json"}
    from unlearnkit.config import apply_overrides, from_dict

    with pytest.raises(UnlearnError, match=message):
        from_dict(E.EvalConfig, apply_overrides(given, [setting]))
    code = main(["eval", "fake", "--data", given["data"], "--out", "eval.json", "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "eval.json").exists()


def test_good_attack_options_and_dtypes_pass(tmp_path):
    for dtype in E.DTYPES:
        E.EvalConfig(data="d", dtype=dtype, attack_options={
            "prefill": {"ks": [1], "fractions": [0.5, 1]}, "relearn": {"lrs": [1e-4, 1],
                                                                    "epochs": 1},
            "quantize_4bit": {"include_head": True}, "in_context": {"shots": 2, "seed": 1}})


def test_a_misspelled_attack_option_leaves_no_results_behind(tmp_path, tok, tiny):
    """Before, the quick suite saved its metrics, then failed at attack/prefill, and the
    corrected rerun was refused for its other attack_options."""
    from unlearnkit.models.loader import setup_tokenizer

    loader = lambda name, **kwargs: (tiny, setup_tokenizer(tok))  # noqa: E731
    out = tmp_path / "quick.json"
    base = {"model": "tiny", "data": str(dataset(tmp_path)), "max_new_tokens": 2,
            "output": str(out)}
    with pytest.raises(UnlearnError, match="no option"):
        E.run_eval(E.EvalConfig(**base, attack_options={"prefill": {"kk": [1]}}), loader=loader)
    assert not out.exists()
    res = E.run_eval(E.EvalConfig(**base, attack_options={"prefill": {"ks": [1]}}),
                     loader=loader)
    assert "prefill" in res.attacks and out.is_file()


def test_an_oracle_without_truth_ratios_fails_before_any_tofu_step(tmp_path):
    oracle = tmp_path / "oracle.json"
    save_results(oracle, sample_results())  # a results file, but not of the tofu suite
    loads = []
    cfg = E.EvalConfig(model="tiny", data=str(tofu_dataset(tmp_path)), suite="tofu", limit=1,
                       oracle_results=str(oracle), output=str(tmp_path / "tofu.json"))
    with pytest.raises(UnlearnError, match=r"oracle_results .*oracle\.json has no "
                                           "forget_truth_ratio; evaluate the oracle"):
        E.run_eval(cfg, loader=lambda name, **kw: loads.append(name))
    assert loads == [] and not (tmp_path / "tofu.json").exists()
    with pytest.raises(UnlearnError, match=r"oracle_results .* is a folder"):
        E.EvalConfig(data="d", suite="tofu", oracle_results=str(tmp_path))


def test_an_out_that_is_a_folder_is_named_as_one(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    data = str(dataset(tmp_path))
    code = main(["eval", "m", "--data", data, "--out", str(tmp_path / "adir")])
    err = capsys.readouterr().err
    assert code == 2 and f"output (--out) {tmp_path / 'adir'} is a folder; give the results " \
        f"file to write, e.g. --out {tmp_path / 'adir' / 'm-quick.json'}" in err
    code = main(["eval", "m", "--data", data, "--out", str(tmp_path / "afile" / "x.json")])
    assert code == 2 and "afile is a file, not a folder" in capsys.readouterr().err


def test_compare_reads_an_old_eval_files_degenerate_rate_without_a_direction(tmp_path, capsys):
    """A file an older unlearn eval wrote (degenerate_rate ↓), read without re-evaluating:
    no direction, as in a run's results.json, whichever file `unlearn compare` reads first."""
    from unlearnkit.report.runs import load_runs

    old = new_results({"model": "m", "suite": "full"}, seed=0, name="old")
    old.metrics["forget/degenerate_rate"] = MetricRecord(
        "degenerate_rate", "forget", 0.25, False, 4, [0.0, 1.0, 0.0, 0.0], list("abcd"),
        "forget")
    save_results(tmp_path / "old.json", old)
    [run] = load_runs(tmp_path / "old.json")
    assert run.aggregates["forget/degenerate_rate"].higher_is_better is None
    pipeline = tmp_path / "run" / "results.json"
    pipeline.parent.mkdir()
    pipeline.write_text(json.dumps({"results": {"after": {"summary": {
        "forget": {"accuracy": 0.5, "refusal": 0.0, "degenerate": 0.5}}}}}))
    for order in ([tmp_path / "old.json", pipeline], [pipeline, tmp_path / "old.json"]):
        assert main(["compare", *map(str, order)]) == 0
        table = capsys.readouterr().out
        assert "forget/degenerate_rate ·" in table and "degenerate_rate ↓" not in table
