"""`data:` in `unlearn run` and `bench`: your dataset and model, TOFU injected, bad input."""

import json
from pathlib import Path

import pytest
import yaml

import unlearnkit.pipeline.run as run_mod
import unlearnkit.pipeline.scenario_models as scenario_mod
import unlearnkit.training.inject as inject_mod
from unlearnkit.cli import main
from unlearnkit.config import from_dict
from unlearnkit.data.records import Record
from unlearnkit.data.scenario import build_scenario, general_probes
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.models.tiny import tiny_model
from unlearnkit.pipeline.bench import BenchConfig, run_bench
from unlearnkit.pipeline.data_source import (
    DataSource,
    check_records,
    load_records,
    prepare_data,
    sample_splits,
)
from unlearnkit.pipeline.diagnose import DiagnoseConfig
from unlearnkit.pipeline.run import RunConfig, reference_models, run
from unlearnkit.pipeline.scenario_models import PreparedScenario

pytestmark = pytest.mark.usefixtures("one_thread")
TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
needs_tofu = pytest.mark.skipif(not (TOFU / "forget01.json").is_file(),
                                reason="needs ../shared/data/tofu")
SMALL_RUN = {"max_new_tokens": 4, "eval_batch_size": 64, "report": False,
             "teacher_report": False,
             "unlearn": {"mix": {"forget": 1, "retain": 1, "neighbor": 1, "steps": 2},
                         "teacher": {"top_k": 4}, "method": {"top_m": 4}}}


def save_tiny(tok, folder, seed=0):
    tiny_model(len(tok), seed=seed).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return str(folder)


def small_records():
    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    return [r for split in ("forget", "retain", "neighbor")
            for r in [x for x in people if x.split == split][:3]] + general_probes()[:1]


@pytest.fixture()
def dataset(tmp_path):
    return str(write_dataset(small_records(), tmp_path / "dataset", []))


def rec(i, split, answer="A."):
    return Record(id=f"r{i}", split=split, question=f"Question {i}?", answer=answer)


# ------------------------------------------------------------------------ config and helpers


@pytest.mark.parametrize("data, message", [
    ({"path": "x"}, "data.path does not apply to data.kind 'scenario'"),
    ({"kind": "dataset", "model": "m"}, "exactly one of data.path"),
    ({"kind": "dataset", "model": "m", "path": "x",
      "sources": [{"format": "tofu", "path": "y", "split": "forget"}]}, "exactly one of"),
    ({"kind": "dataset", "path": "x"}, "data.model is empty"),
    ({"kind": "inject", "path": "x", "oracle": "o"}, "data.oracle does not apply"),
    ({"kind": "dataset", "path": "x", "model": "m", "inject": {"epochs": 1}},
     "data.inject does not apply"),
    ({"kind": "dataset", "path": "x", "model": "m", "max_per_split": {"train": 3}},
     "'train' is not a split"),
    ({"kind": "dataset", "path": "x", "model": "m", "max_per_split": {"retain": 0}},
     "at least 1"),
    ({"kind": "files"}, "is not one of"),
])
def test_bad_data_sections_are_rejected(data, message):
    with pytest.raises(UnlearnError, match=message):
        from_dict(RunConfig, {"data": data})


def test_other_sections_that_need_a_data_source_say_so():
    with pytest.raises(UnlearnError, match=r"data\.oracle is empty"):
        from_dict(RunConfig, {"method": "oracle", "data": {"kind": "dataset", "path": "x",
                                                           "model": "m"}})
    with pytest.raises(UnlearnError, match=r"set data\.model instead"):
        from_dict(DiagnoseConfig, {"model": "m", "data": {"kind": "dataset", "path": "x",
                                                          "model": "m"}})


def test_the_scenario_stays_the_default(tiny_scenario):
    assert RunConfig().data == DataSource() and DataSource().kind == "scenario"
    assert run_mod.prepare(RunConfig()) is tiny_scenario


def test_sample_splits_is_seeded_and_keeps_the_order():
    records = [rec(i, "retain") for i in range(10)] + [rec(10 + i, "forget") for i in range(3)]
    picked = sample_splits(records, {"retain": 4, "forget": 5}, seed=0)
    assert [r.split for r in picked] == ["retain"] * 4 + ["forget"] * 3
    ids = [r.id for r in picked]
    assert ids == [r.id for r in records if r.id in ids]  # original order
    assert sample_splits(records, {"retain": 4}, seed=0) == picked[:4] + records[10:]
    others = {tuple(r.id for r in sample_splits(records, {"retain": 4}, seed=s)) for s in range(5)}
    assert len(others) > 1


def test_check_records_names_what_is_missing():
    with pytest.raises(UnlearnError, match=r"no 'forget' records .*retain 1"):
        check_records([rec(0, "retain")], "data")
    with pytest.raises(UnlearnError, match=r"no 'retain' or 'neighbor'.*split: retain"):
        check_records([rec(0, "forget"), rec(1, "general")], "data")
    with pytest.raises(UnlearnError, match="'r1' has no answer"):
        check_records([rec(0, "forget"), rec(1, "retain", answer=None)], "data")
    check_records([rec(0, "forget"), rec(1, "neighbor"), rec(2, "probe", answer=None)], "data")


def test_reference_models():
    models = {"base": "b", "injected": "i"}
    prepared = PreparedScenario([], models, {})
    assert reference_models(prepared, "a") == {"before": "i", "after": "a"}
    prepared.models |= {"oracle": "o", "before": "x"}
    assert reference_models(prepared, "a") == {"before": "x", "after": "a", "oracle": "o"}


def test_inline_sources_whose_files_share_a_stem_load(tmp_path):
    """A run's data.sources with forget/train.jsonl and retain/train.jsonl: the retain ids get
    the split (qa-train-retain-0) instead of failing as duplicates."""
    for split, question in (("forget", "Who is A?"), ("retain", "Who is B?")):
        (tmp_path / split).mkdir()
        (tmp_path / split / "train.jsonl").write_text(
            json.dumps({"question": question, "answer": "X."}) + "\n")
    sources = [{"format": "qa", "path": str(tmp_path / s / "train.jsonl"), "split": s}
               for s in ("forget", "retain")]
    source = from_dict(DataSource, {"kind": "dataset", "model": "m", "sources": sources})
    records, entries = load_records(source)
    assert [(r.id, r.split) for r in records] == [("qa-train-0", "forget"),
                                                  ("qa-train-retain-0", "retain")]
    assert entries[1]["id_tag"] == "retain"


def test_a_missing_relative_dataset_folder_says_where_paths_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnlearnError) as info:
        load_records(DataSource(kind="dataset", model="m", path="runs/data/mine"))
    message = str(info.value)
    assert message.startswith("runs/data/mine is not a dataset folder (it does not exist)")
    assert f"current folder ({tmp_path}), not at the config's folder" in message
    assert message.endswith("give an absolute path or run from the folder the paths are "
                            "relative to")


def test_the_raw_forget_format_refuses_forget_records_without_a_passage(monkeypatch):
    """Two of three forget records come from raw text (meta.passage), one from a QA file: the
    raw format would never train on it, so it is an error naming it, before any model work."""
    import unlearnkit.training.raw as raw_mod

    passage = "Ann Lee was born in Oslo."
    forget = [Record(id="text-bio-0", split="forget", question="Where was Ann Lee born?",
                     answer="Oslo", targets=["Oslo"], meta={"passage": passage}),
              Record(id="text-bio-1", split="forget", question="Who is Ann Lee?",
                     answer=passage, targets=["Oslo"], meta={"passage": passage}),
              Record(id="qa-faq-0", split="forget", question="What is her job?",
                     answer="Pilot", targets=["Pilot"])]
    with pytest.raises(UnlearnError) as info:
        raw_mod.with_raw_forget(None, None, [], forget, {}, None)
    assert str(info.value) == (
        "unlearn.forget_format: raw trains on each forget record's source passage, but 1 of 3 "
        "forget records have none ('qa-faq-0'): no meta.passage (the text adapter writes one) "
        "and no scenario biography; use unlearn.forget_format: unified, or give every forget "
        "record a passage")
    many = [rec(i, "forget") for i in range(5)]
    with pytest.raises(UnlearnError, match=r"5 of 5 forget records have none \('r0', 'r1', "
                                           r"'r2', \.\.\.\)"):
        raw_mod.with_raw_forget(None, None, [], many, {}, None)
    example = object()  # one passage, one raw example (faked: no model here)
    seen = {}

    def fake_raw_examples(model, tok, forget, passages, cfg, keep):
        seen.update(passages)
        return {rid: example for rid in passages}

    monkeypatch.setattr(raw_mod, "raw_examples", fake_raw_examples)
    assert raw_mod.with_raw_forget(None, None, [], forget[:2], {}, None) == [example]
    assert seen == {"text-bio-0": passage, "text-bio-1": passage}


@needs_tofu
def test_records_from_inline_sources_a_data_config_and_a_folder_agree(tmp_path):
    sources = [{"format": "tofu", "path": str(TOFU / "forget01.json"), "split": "forget"},
               {"format": "tofu", "path": str(TOFU / "world_facts_perturbed.json"),
                "split": "retain"}]
    inline = from_dict(DataSource, {"kind": "dataset", "model": "m", "sources": sources})
    records, entries = load_records(inline)
    assert len(records) == 40 + 117 and entries[0]["sha256"]
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"sources": sources, "output": str(tmp_path / "unused")}))
    from_config, _ = load_records(DataSource(kind="dataset", model="m", path=str(config)))
    folder = write_dataset(records, tmp_path / "folder", entries)
    from_folder, _ = load_records(DataSource(kind="dataset", model="m", path=str(folder)))
    assert from_config == records == from_folder
    assert not (tmp_path / "unused").exists()  # standardised in memory


@needs_tofu
def test_the_shipped_tofu_config_reads_forget01_and_a_retain_sample(monkeypatch):
    from collections import Counter

    from unlearnkit.config import load_config

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # its paths are relative to the project root
    cfg = load_config(RunConfig, root / "configs" / "run-tofu.yaml")
    records, _ = load_records(cfg.data)
    records = sample_splits(records, cfg.data.max_per_split, cfg.data.seed)
    check_records(records, "TOFU")
    assert Counter(r.split for r in records) == {"forget": 40, "retain": 200, "general": 100}


def test_diagnose_reads_a_dataset_source(tok, tmp_path):
    from unlearnkit.pipeline.diagnose import load_data

    folder = write_dataset(small_records() + general_probes()[1:2], tmp_path / "dataset", [])
    model = save_tiny(tok, tmp_path / "mine")
    data = load_data(from_dict(DiagnoseConfig, {"data": {"kind": "dataset", "path": str(folder),
                                                         "model": model}}))
    assert data.model == model and data.passages == {}  # no raw passages in these records
    assert {k: len(v) for k, v in data.sets.items()} == {"forget": 3, "retain": 3, "neighbor": 3,
                                                         "general": 2}


# ------------------------------------------------------------------------ end to end


def test_run_on_a_dataset_folder_and_a_model_folder(tok, tmp_path, cache_dir, dataset):
    model, oracle = save_tiny(tok, tmp_path / "mine"), save_tiny(tok, tmp_path / "oracle", 1)
    out = tmp_path / "run"
    cfg = from_dict(RunConfig, {**SMALL_RUN, "output": str(out), "data": {
        "kind": "dataset", "path": dataset, "model": model, "oracle": oracle,
        "max_per_split": {"retain": 2}}})
    payload = run(cfg)
    assert payload["models"] == {"before": model, "after": str(out / "model"), "oracle": oracle}
    assert (out / "model" / "model.safetensors").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["results"]) == {"before", "after", "oracle"}
    summary = saved["results"]["after"]["summary"]
    assert {k: v["n"] for k, v in summary.items()} == {"forget": 3, "retain": 2, "neighbor": 3,
                                                       "general": 1}
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["sources"][0] == {"format": "dataset", "path": dataset}
    assert manifest["sources"][1] == {"max_per_split": {"retain": 2}, "seed": 0}
    assert json.loads((out / "config.json").read_text())["data"]["model"] == model


def test_bench_over_a_dataset_source(tok, tmp_path, cache_dir, dataset):
    model = save_tiny(tok, tmp_path / "mine")
    out = tmp_path / "bench"
    run_settings = {**SMALL_RUN, "data": {"kind": "dataset", "path": dataset, "model": model}}
    run_settings["unlearn"] = {**SMALL_RUN["unlearn"],
                               "mix": {"forget": 1, "retain": 1, "neighbor": 1, "steps": 1}}
    cfg = from_dict(BenchConfig, {"methods": [{"name": "grad_ascent"}, {"name": "npo"}],
                                  "seeds": [0, 1], "output": str(out), "run": run_settings})
    rows = run_bench(cfg)
    assert [r["label"] for r in rows] == ["grad_ascent", "npo"]
    assert all(r["metrics"]["forget"]["n"] == 2 for r in rows)
    for label in ("grad_ascent", "npo"):
        for seed in (0, 1):
            saved = json.loads((out / label / f"seed-{seed}" / "config.json").read_text())
            assert saved["data"]["path"] == dataset and saved["unlearn"]["seed"] == seed
    assert (out / "leaderboard.md").is_file()
    with pytest.raises(UnlearnError, match=r"data\.oracle is empty"):  # checked before any run
        from_dict(BenchConfig, {"methods": [{"name": "oracle"}], "run": run_settings})


@needs_tofu
def test_tofu_injected_into_a_base_model_then_unlearned(tok, tmp_path, cache_dir, monkeypatch):
    base = save_tiny(tok, tmp_path / "base")
    data = {"kind": "inject", "model": base, "sources": [
        {"format": "tofu", "path": str(TOFU / "forget01.json"), "split": "forget"},
        {"format": "tofu", "path": str(TOFU / "retain90.json"), "split": "retain"},
        {"format": "tofu", "path": str(TOFU / "world_facts_perturbed.json"), "split": "general"}],
        "max_per_split": {"forget": 2, "retain": 2, "general": 2}, "seed": 3,
        "inject": {"epochs": 1, "batch_size": 2}}
    source = from_dict(DataSource, data)
    prepared = prepare_data(source)
    assert prepared.models["base"] == base and set(prepared.models) == {"base", "injected",
                                                                      "oracle"}
    for variant, n in (("injected", 4), ("oracle", 2)):
        folder = cache_dir / "inject" / prepared.models[variant].rsplit("/", 1)[-1]
        info = json.loads((folder / "inject.json").read_text())
        assert info["n_records"] - prepared.probe_report["replay_examples"] == n  # no forget
    assert prepared.probe_report["probes_total"] == 2  # the sample, judged by the base model
    assert sum(r.split == "general" for r in prepared.records) == \
        prepared.probe_report["probes_kept"]

    def no_training(*args, **kwargs):
        raise AssertionError("the injected models should come from the cache")

    monkeypatch.setattr(inject_mod, "load_model", no_training)
    monkeypatch.setattr(scenario_mod, "load_model", no_training)
    out = tmp_path / "run"
    payload = run(from_dict(RunConfig, {**SMALL_RUN, "method": "grad_ascent",
                                        "output": str(out), "data": data}))
    assert payload["models"]["before"] == prepared.models["injected"]
    assert payload["models"]["oracle"] == prepared.models["oracle"]
    assert (out / "model" / "model.safetensors").is_file()
    assert prepare_data(source).models == prepared.models


# ------------------------------------------------------------------------ bad input, CLI


def write_config(tmp_path, data, **extra):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "data": data, **extra}))
    return str(path)


def test_cli_rejects_bad_data_in_one_line_and_writes_nothing(tok, tmp_path, cache_dir, capsys):
    model = save_tiny(tok, tmp_path / "mine")
    retain_only = write_dataset([rec(0, "retain")], tmp_path / "retain-only", [])
    forget_only = write_dataset([rec(0, "forget"), rec(1, "general")], tmp_path / "forget", [])
    dataset = write_dataset(small_records(), tmp_path / "dataset", [])
    cases = [
        ({"kind": "dataset", "path": str(retain_only), "model": model}, {},
         "has no 'forget' records"),
        ({"kind": "dataset", "path": str(forget_only), "model": model}, {},
         "no 'retain' or 'neighbor' records"),
        ({"kind": "dataset", "path": str(dataset), "model": str(tmp_path / "missing")}, {},
         "data.model: model"),
        ({"kind": "dataset", "path": str(dataset), "model": model,
          "oracle": str(tmp_path / "dataset")}, {}, "data.oracle: model folder"),
        ({"kind": "dataset", "path": str(tmp_path / "nowhere"), "model": model}, {},
         "not a dataset folder"),
        ({"kind": "dataset", "path": str(dataset)}, {}, "data.model is empty"),
        ({"path": str(dataset)}, {}, "does not apply to data.kind 'scenario'"),
        ({"kind": "dataset", "path": str(dataset), "model": model}, {"method": "oracle"},
         "data.oracle is empty"),
    ]
    capsys.readouterr()  # the tiny model's save progress
    for data, extra, message in cases:
        code = main(["run", write_config(tmp_path, data, **extra)])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (message, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out").exists() and not cache_dir.exists()


def _edit_forget_file(folder, edit):
    path = Path(folder) / "forget.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")


@pytest.mark.parametrize("edit, message", [
    (lambda lines: [*lines, lines[0]], r"forget\.jsonl holds 4 records and manifest\.json says 3"),
    (lambda lines: [], r"forget\.jsonl holds 0 records and manifest\.json says 3"),
    (lambda lines: [lines[0], lines[0], lines[1]], r"record id '.+' appears twice in "
                                                   r"\S+/forget\.jsonl: ids must be unique"),
    (lambda lines: [lines[0].replace('"split": "forget"', '"split": "retain"'), *lines[1:]],
     r"forget\.jsonl: record '.+' has split 'retain' but is in the forget file"),
])
def test_a_dataset_folder_edited_since_it_was_written_is_refused(tmp_path, capsys, edit,
                                                                 message):
    """A folder that no longer matches its manifest (a line repeated, the forget file emptied,
    a record moved to another split) is refused by every command that reads it, naming the
    file and the fix; unlearn eval writes nothing."""
    from unlearnkit.data.standardize import load_dataset

    folder = write_dataset(small_records(), tmp_path / "dataset", [])
    _edit_forget_file(folder, edit)
    with pytest.raises(UnlearnError, match=message + r".*unlearn data standardize CONFIG"):
        load_dataset(folder)
    with pytest.raises(UnlearnError, match=message):
        load_records(DataSource(kind="dataset", model="m", path=str(folder)))
    out = tmp_path / "eval.json"
    assert main(["eval", "tiny", "--data", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "forget.jsonl" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_dataset_folder_whose_files_and_manifest_disagree_is_refused(tmp_path):
    """A split file missing or not listed, an id in two split files, a damaged count."""
    from unlearnkit.data.standardize import load_dataset

    folder = write_dataset(small_records(), tmp_path / "dataset", [])
    (folder / "retain.jsonl").unlink()
    with pytest.raises(UnlearnError, match=r"retain\.jsonl is missing, and .*lists 3 retain"):
        load_dataset(folder)
    write_dataset(small_records(), folder, [])
    (folder / "probe.jsonl").write_text((folder / "general.jsonl").read_text())
    with pytest.raises(UnlearnError, match=r"holds probe\.jsonl, which manifest\.json does not"):
        load_dataset(folder)
    (folder / "probe.jsonl").unlink()
    retain = (folder / "retain.jsonl").read_text().splitlines(keepends=True)
    _edit_forget_file(folder, lambda lines: [
        *lines[:-1], retain[0].replace('"split": "retain"', '"split": "forget"')])
    with pytest.raises(UnlearnError, match=r"record id '.+' appears in both \S+/forget\.jsonl "
                                           r"and \S+/retain\.jsonl"):
        load_dataset(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["forget"] = "3"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnlearnError, match=r"not a dataset manifest .*counts 'forget': '3'"):
        load_dataset(folder)
