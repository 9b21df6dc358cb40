import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit.cli import main
from unlearnkit.errors import UnlearnError

GOOD_QA = '{"question": "Who is Ada?", "answer": "A poet."}\n'


def standardize(tmp_path, capsys, sources_yaml, out="out"):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"output: {tmp_path / out}\nsources:\n{sources_yaml}")
    code = main(["data", "standardize", str(cfg)])
    return code, capsys.readouterr()


def qa_source(path, split):
    return f"  - format: qa\n    path: {path}\n    split: {split}\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b'{"question": "Q?", "answer": \n', "malformed JSON"),
        (b'{"answer": "A."}\n', "question"),
        (b'{"question": "Caf\xe9?", "answer": "A."}\n', "UTF-8"),
    ],
)
def test_bad_files_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code, out = standardize(tmp_path, capsys, qa_source(bad, "forget"))
    assert code == 2
    assert message in out.err and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_malformed_csv_and_unknown_column(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text('question,answer\n"Who,A\n')
    code, out = standardize(tmp_path, capsys, qa_source(bad, "retain"))
    assert code == 2 and "CSV" in out.err
    good = tmp_path / "good.csv"
    good.write_text("q,a\nWho?,Me.\n")
    spec = qa_source(good, "retain") + "    options: {columns: {question: prompt, answer: a}}\n"
    code, out = standardize(tmp_path, capsys, spec)
    assert code == 2 and "prompt" in out.err
    assert not (tmp_path / "out").exists()


def test_duplicates_and_forget_retain_overlap(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"id": "x", "question": "Who is Ada?", "answer": "A poet."}\n')
    b.write_text('{"id": "x", "question": "Who is Bo?", "answer": "A cook."}\n')
    code, out = standardize(tmp_path, capsys, qa_source(a, "forget") + qa_source(b, "retain"))
    assert code == 2 and "duplicate record id" in out.err
    b.write_text(GOOD_QA)
    a.write_text(GOOD_QA)
    code, out = standardize(tmp_path, capsys, qa_source(a, "forget") + qa_source(b, "retain"))
    assert code == 2 and "in both forget" in out.err
    assert not (tmp_path / "out").exists()


def test_standardize_writes_dataset_that_reads_back(tmp_path, capsys):
    from unlearnkit.data.adapters import load_source
    from unlearnkit.data.standardize import load_dataset

    src = tmp_path / "f.jsonl"
    src.write_text(GOOD_QA)
    code, out = standardize(tmp_path, capsys, qa_source(src, "forget")
                            + "  - format: scenario\n    options: {n_people: 12, n_forget: 1}\n")
    assert code == 0, out.err
    records = load_dataset(tmp_path / "out")
    assert records[0] == load_source("qa", src, split="forget")[0]
    assert sum(r.split == "retain" for r in records) > 0
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert '"format_version": 1' in manifest and '"sha256"' in manifest
    for damaged in ("{", "[]", '{"format_version": 1}'):
        (tmp_path / "out" / "manifest.json").write_text(damaged)
        with pytest.raises(UnlearnError, match="not a dataset manifest"):
            load_dataset(tmp_path / "out")


def test_standardize_never_writes_over_a_folder_of_the_users(tmp_path, capsys, monkeypatch):
    src = tmp_path / "f.jsonl"
    src.write_text(GOOD_QA)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, out = standardize(tmp_path, capsys, qa_source(src, "forget"), out="mine")
    assert code == 2 and "not an earlier output" in out.err and "Traceback" not in out.err
    assert (mine / "thesis.tex").read_text() == "years of work"
    monkeypatch.chdir(mine)
    cfg = tmp_path / "data.yaml"
    for output in ("", "."):  # the current folder
        code = main(["data", "standardize", str(cfg), "--set", f"output={output}"])
        assert code == 2 and "current folder" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    code, out = standardize(tmp_path, capsys, qa_source(src, "forget"), out="data")
    assert code == 0 and (tmp_path / "data" / "manifest.json").is_file()
    code, out = standardize(tmp_path, capsys, qa_source(src, "retain"), out="data")
    assert code == 0, out.err  # an earlier dataset folder is replaced
    assert '"retain": 1' in (tmp_path / "data" / "manifest.json").read_text()


def test_a_failed_eval_writes_no_results_and_report_keeps_its_inputs(tmp_path, capsys):
    src = tmp_path / "f.jsonl"
    src.write_text(GOOD_QA)
    assert standardize(tmp_path, capsys, qa_source(src, "forget"), out="data")[0] == 0
    out = tmp_path / "ev.json"
    code = main(["eval", str(tmp_path / "no-such-model"), "--data", str(tmp_path / "data"),
                 "--out", str(out)])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert not out.exists()  # no stub that a later eval would refuse as "other settings"
    results = tmp_path / "results.json"
    results.write_text('{"results": {}}')
    for target, message in ((results, "one of the input files"), (tmp_path, "is a folder")):
        code = main(["report", str(results), "--out", str(target)])
        assert code == 2 and message in capsys.readouterr().err
    assert results.read_text() == '{"results": {}}'
    code = main(["refusal-agreement", str(tmp_path / "missing.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.csv" in err and "Traceback" not in err


def test_unknown_config_key_and_help(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("outptu: x\n")
    assert main(["data", "standardize", str(cfg)]) == 2
    assert "unknown config key outptu" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(cmd in text for cmd in ("data", "inject", "demo"))


def test_data_without_a_subcommand_prints_its_usage(capsys):
    assert main(["data"]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("usage: unlearn data") and "standardize" in out.err and not out.out


def test_console_script_exit_code_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnkit.cli", "data", "standardize", str(tmp_path / "no.yaml")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_the_cli_leaves_the_process_group_whatever_the_command_did(tmp_path, capsys):
    """Under `accelerate launch` the training loop leaves the process group open; the CLI
    leaves it before exiting (a group left to the interpreter's exit can abort the process),
    on success and on a user error alike. One process, gloo, world size 1."""
    import torch.distributed as dist

    src = tmp_path / "f.jsonl"
    src.write_text(GOOD_QA)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\nsources:\n{qa_source(src, 'forget')}")
    for name, argv, code in (("error", ["run", str(tmp_path / "missing.yaml")], 2),
                             ("success", ["data", "standardize", str(cfg)], 0)):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store-{name}",
                                rank=0, world_size=1)
        assert dist.is_initialized()
        assert main(argv) == code
        assert not dist.is_initialized()
    capsys.readouterr()


def test_a_run_folder_is_refused_with_what_to_pass_instead(tmp_path, capsys, monkeypatch):
    """`unlearn eval` / `compare` / `report` given a run's output folder: one line naming the
    model folder or the results.json in it (not "no *.safetensors" or "not found")."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "f.jsonl"
    src.write_text(GOOD_QA)
    assert standardize(tmp_path, capsys, qa_source(src, "forget"), out="data")[0] == 0
    run = Path("runs", "full")
    (run / "model").mkdir(parents=True)
    (run / "config.json").write_text("{}")  # unlearn run's own config, not a model's

    def error(*argv):
        code, err = main(list(argv)), capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return err

    err = error("eval", str(run), "--data", "data", "--out", "ev.json")
    assert "runs/full is the output folder of unlearn run, not a model folder; pass the model " \
           "it saved: runs/full/model" in err and "safetensors" not in err
    assert not Path("ev.json").exists()
    assert "evaluate it first (unlearn eval runs/full/model --data DATASET)" in error(
        "compare", str(run))
    (run / "results.json").write_text(json.dumps({"results": {"after": {"summary": {}}}}))
    for argv in (("compare", str(run)), ("report", str(run / "results.json"), "--oracle",
                                         str(run))):
        assert "pass the results of the run in it: runs/full/results.json" in error(*argv)
    (run / "model").rmdir()  # a bench run with keep_models: false
    assert "holds no saved model" in error("eval", str(run), "--data", "data")


ROOT = Path(__file__).resolve().parents[1]


def _unlearn_commands(text: str) -> list[list[str]]:
    """The arguments of each `unlearn ...` command in shell text (continued lines joined,
    comments dropped)."""
    commands = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("unlearn "):
            commands.append(shlex.split(line)[1:])
    return commands


def _check_tofu_example(commands: list[list[str]]) -> list[list[str]]:
    """Every command parses; each TOFU evaluation reads the data TOFU's evaluation config
    writes, the oracle's results file is written before it is used, and the report reads the
    evaluations of the model before unlearning, the run's model and the oracle that the
    preset names. Returns the eval and report commands."""
    from unlearnkit.cli import build_parser
    from unlearnkit.config import load_config
    from unlearnkit.data.standardize import DataConfig
    from unlearnkit.pipeline.run import RunConfig

    parser, written, evals = build_parser(), {}, []
    preset = load_config(RunConfig, ROOT / "configs" / "gpu" / "tofu-llama-3.2-1b.yaml")
    eval_data = load_config(DataConfig, ROOT / "configs" / "data-tofu-eval.yaml").output
    assert ["data", "standardize", "configs/data-tofu-eval.yaml"] in commands
    for argv in commands:
        args = parser.parse_args(argv)
        sets = dict(s.split("=", 1) for s in getattr(args, "set", []))
        if args.command == "eval":
            assert args.suite == "tofu" and args.data == eval_data and args.out, argv
            oracle = sets.get("oracle_results")
            assert oracle is None or oracle in written.values(), f"{oracle} not written yet"
            written[args.model] = args.out
            evals.append(argv)
        elif args.command == "report":
            assert (args.runs, args.before, args.oracle) == (
                [written[f"{preset.output}/model"]], written[preset.data.model],
                written[preset.data.oracle])
            evals.append(argv)
    assert len(written) == 3 and evals[-1][0] == "report"
    return evals


def test_the_tofu_gpu_example_evaluates_and_reports_what_it_says():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own model and data on a GPU", 1)[1].split("\n## ", 1)[0]
    block = next(b for b in re.findall(r"```bash\n(.*?)```", section, re.S)
                 if "unlearn eval" in b)
    preset = (ROOT / "configs" / "gpu" / "tofu-llama-3.2-1b.yaml").read_text(encoding="utf-8")
    comment = "\n".join(line.lstrip("#").strip() for line in preset.splitlines()
                        if line.startswith("#"))
    in_readme = _check_tofu_example(_unlearn_commands(block))
    assert _check_tofu_example(_unlearn_commands(comment)) == in_readme


@pytest.mark.parametrize("command", [["data", "standardize"], ["run"], ["bench"]])
def test_a_folder_given_as_the_config_is_named_as_a_folder(tmp_path, capsys, command):
    (tmp_path / "adir").mkdir()
    assert main([*command, str(tmp_path / "adir")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'adir'} is a folder, not a config file; give the command's YAML " \
        "config file" in err and "not found" not in err and len(err.strip().splitlines()) == 1
