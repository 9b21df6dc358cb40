import subprocess
import sys

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
