"""`unlearn compare` and `unlearn report` on small synthetic results files of both kinds.

The browser test renders the report in headless Chromium, fails on console errors, checks the
screenshot is not blank and keeps it at test-artifacts/report.png. Without /usr/bin/chromium
it is skipped, except when CI is set (there it fails: run `make report-deps`).
"""

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from unlearnkit.cli import main
from unlearnkit.data.records import Record
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.results import (
    AttackRecord,
    MetricRecord,
    direction,
    new_results,
    objective_of,
    save_results,
)
from unlearnkit.report.build import lineup, pick, render_report, write_report
from unlearnkit.report.compare import compare_table
from unlearnkit.report.plots import pareto_front
from unlearnkit.report.runs import load_many, load_runs, objective_score

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def write_eval(path, name, acc, *, attacks, generation, diagnostics=None):
    """A results file with correctness and refusal on three splits (``acc[split]``)."""
    res = new_results({"model": f"models/{name}", "suite": "quick"}, seed=0, name=name)
    for split, value in acc.items():
        for metric, v, hib in (("correctness", value, True), ("refusal_rate", 0.1, False)):
            res.metrics[f"{split}/{metric}"] = MetricRecord(
                metric, objective_of(split), v, direction(metric, split, hib), 2,
                [float(v >= 0.5)] * 2, [f"{split}-0", f"{split}-1"], split)
    res.attacks = {k: AttackRecord(v, 2, "prompt", k) for k, v in attacks.items()}
    res.generations = {"forget": [{"id": "forget-0", "question": "Where was Ada born?",
                                   "reference": "In Paris.", "generation": generation}]}
    res.diagnostics = diagnostics
    save_results(path, res)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    return {
        "before": write_eval(d / "before.json", "before",
                             {"forget": 0.9, "retain": 0.9, "neighbor": 0.8},
                             attacks={"prefill": 0.9, "paraphrase": 0.8},
                             generation="Ada was born in Paris."),
        "a": write_eval(d / "run-a.json", "push-pull", {"forget": 0.1, "retain": 0.85,
                                                        "neighbor": 0.7},
                        attacks={"prefill": 0.3, "paraphrase": 0.1}, generation=XSS,
                        diagnostics={"steps": 120, "final_loss": 0.4321,
                                     "note": "<b>bold</b>", "curve": [3.1, 2.0, 1.2]}),
        "b": write_eval(d / "run-b.json", "", {"forget": 0.4, "retain": 0.5, "neighbor": 0.3},
                        attacks={"prefill": 0.6, "paraphrase": 0.2},
                        generation="I don't know."),
        "oracle": write_eval(d / "oracle.json", "oracle",
                             {"forget": 0.0, "retain": 0.9, "neighbor": 0.8},
                             attacks={"prefill": 0.05, "paraphrase": 0.0},
                             generation="I have no information about Ada."),
    }


@pytest.fixture(scope="module")
def report(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report([files["a"], files["b"]], out, before=files["before"], oracle=files["oracle"])
    return out


def pipeline_results(path, generation="Paris!"):
    """A results.json as pipeline/run.py writes it (before / after / oracle)."""
    def model(acc, prefill):
        summary = {s: {"accuracy": a, "refusal": 0.0, "n": 2} for s, a in acc.items()}
        items = [{"id": "person-0-birth_town", "split": "forget", "generation": generation,
                  "correct": True, "refused": False}]
        return {"summary": summary, "items": items, "prefill_attack": prefill}

    payload = {"models": {}, "seconds": 1.0, "diagnostics": {"kl": 0.1}, "results": {
        "before": model({"forget": 1.0, "retain": 0.9, "general": 1.0}, 1.0),
        "after": model({"forget": 0.0, "retain": 0.8, "general": 0.9}, 0.5),
        "oracle": model({"forget": 0.0, "retain": 0.9, "general": 1.0}, 0.0)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


# ------------------------------------------------------------------------ runs, compare


def test_pipeline_results_adapter(tmp_path):
    ada = Record(id="person-0-birth_town", split="forget", question="Where was Ada born?",
                 answer="In Paris.")
    write_dataset([ada], tmp_path / "myrun" / "data", [])  # unlearn demo writes one there
    runs = load_runs(pipeline_results(tmp_path / "myrun" / "results.json"))
    assert [(r.label, r.role) for r in runs] == [
        ("myrun/before", "before"), ("myrun/after", "run"), ("myrun/oracle", "oracle")]
    after = runs[1]
    agg = after.aggregates["forget/correctness"]
    assert (agg.value, agg.higher_is_better, agg.objective) == (0.0, False, "forget")
    assert after.aggregates["general/refusal_rate"].objective == "utility"
    assert after.attacks == {"prefill": 0.5} and after.value("attack/worst_case") == 0.5
    gen = after.generations["person-0-birth_town"]
    assert (gen["generation"], gen["question"], gen["reference"], gen["correct"]) == (
        "Paris!", "Where was Ada born?", "In Paris.", True)
    assert after.diagnostics == {"kl": 0.1} and runs[0].diagnostics is None
    assert objective_score(after, "forget") == 1.0  # 1 - accuracy; refusal has no direction
    assert objective_score(after, "robustness") == 0.5


def test_unknown_files_are_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(UnlearnError, match="neither"):
        load_runs(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"results": {"after": {"items": []}}}')
    with pytest.raises(UnlearnError, match="summary"):
        load_runs(tmp_path / "y.json")


def test_compare_table_marks_direction_and_best(files):
    runs = load_many([files["before"], files["a"], files["b"]])
    assert [r.label for r in runs] == ["before", "push-pull", "run-b"]  # name, else file stem
    table = compare_table(runs)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "before", "push-pull", "run-b"]
    row = next(line for line in lines if "forget/correctness" in line)
    assert "↓" in row and row.split()[-3:] == ["0.900", "0.100*", "0.400"]
    row = next(line for line in lines if "retain/correctness" in line)
    assert "↑" in row and "0.900*" in row
    assert "forget/refusal_rate ·" in table and "attack/worst_case ↓" in table
    assert next(line for line in lines if "forget/refusal_rate" in line).count("*") == 0


def test_compare_cli(files, tmp_path, capsys):
    assert main(["compare", str(files["a"]), str(pipeline_results(tmp_path / "p" /
                                                                   "results.json"))]) == 0
    out = capsys.readouterr().out
    assert "push-pull" in out and "p/after" in out and "general/correctness" in out
    assert main(["compare", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1


def test_pareto_front_by_hand():
    points = [(0.9, 0.2), (0.5, 0.5), (0.4, 0.4), (0.2, 0.9), (0.5, 0.3), (0.9, 0.2)]
    # (0.4, 0.4) and (0.5, 0.3) are dominated by (0.5, 0.5); the duplicates both stay
    assert pareto_front(points) == [3, 1, 0, 5]


# ------------------------------------------------------------------------------- report


def test_report_structure_and_escaping(report):
    html = report.read_text(encoding="utf-8")
    for section in ("runs", "summary", "objective-forget", "objective-utility",
                    "objective-boundary", "objective-robustness", "tradeoffs", "attacks",
                    "examples", "diagnostics"):
        assert f'id="{section}"' in html, section
    assert XSS not in html and ESCAPED in html
    assert "<script" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert not re.search(r"https?://", html)  # nothing external
    heads = re.findall(r"<th><span class=\"swatch\"[^>]*></span>([^<]*)<div", html)
    assert heads[:4] == ["before", "push-pull", "run-b", "oracle"]
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == 6  # four objectives, two trade-off plots
    for src in images:
        assert src.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(images[-1].split(",", 1)[1])))
    assert png.size[0] > 200
    assert "paraphrase" in html and "90% (prefill)" in html and "worst case" in html
    assert "Where was Ada born?" in html and "In Paris." in html
    # on the forget split stating the answer is the failure (before), not stating it the goal
    assert 'class="tag leak">states the answer' in html
    assert 'class="tag safe">does not state it' in html
    assert "final_loss" in html and "0.432" in html


def test_report_from_pipeline_results_assigns_roles(tmp_path):
    src = pipeline_results(tmp_path / "demo" / "results.json", generation=XSS)
    columns = lineup(load_many([src]))
    assert [(c.label, c.role) for c in columns] == [
        ("demo/before", "before"), ("demo/after", "run"), ("demo/oracle", "oracle")]
    html = render_report(columns)
    assert ESCAPED in html and XSS not in html
    assert 'id="diagnostics"' in html and "kl" in html


def test_report_without_diagnostics_or_attacks(files, tmp_path):
    src = write_eval(tmp_path / "plain.json", "plain", {"forget": 0.5}, attacks={},
                     generation="x")
    html = render_report(lineup(load_many([src])))
    assert 'id="diagnostics"' not in html and "No attacks in these results." in html


def test_report_cli_and_errors(files, tmp_path, capsys):
    out = tmp_path / "r.html"
    code = main(["report", str(files["a"]), "--before", str(files["before"]), "--out", str(out),
                 "--title", "My <title>"])
    assert code == 0 and out.is_file() and "My &lt;title&gt;" in out.read_text()
    both = pipeline_results(tmp_path / "x" / "results.json")
    assert pick(both, "before").label == "x/before"  # the model its file marks as before
    data = json.loads(both.read_text())
    data["results"] = {"base": data["results"]["after"], "other": data["results"]["after"]}
    both.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["report", str(files["a"]), "--before", str(both), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "several models" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ browser


def require_chromium():
    if CHROMIUM.is_file():
        return
    if os.environ.get("CI"):
        pytest.fail("CI is set but /usr/bin/chromium is missing: run `make report-deps`")
    pytest.skip("headless Chromium not installed (/usr/bin/chromium); `make report-deps` "
                "installs it")


def screenshot(page: Path, png: Path, profile: Path, size: str = "1200,2000") -> list[str]:
    """Render ``page`` in headless Chromium into ``png``; return the console-error lines."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
           f"--window-size={size}", "--enable-logging=stderr", "--v=0", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines()
            if "Uncaught" in line or "ERROR:CONSOLE" in line]


def test_missing_chromium_skips_locally_but_fails_in_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium()


def test_console_error_check_catches_errors(tmp_path):
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>notDefined();</script></body></html>")
    errors = screenshot(page, tmp_path / "broken.png", tmp_path / "profile", "400,300")
    assert errors and "notDefined" in errors[0]


def test_report_renders_in_headless_chromium(report, tmp_path):
    require_chromium()
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    png = artifacts / "report.png"
    png.unlink(missing_ok=True)
    errors = screenshot(report, png, tmp_path / "profile")
    assert not errors, errors
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 2000)
    extrema = image.getextrema()
    assert any(low != high for low, high in extrema), "the screenshot is one flat colour"
    colours = image.resize((120, 200)).getcolors(maxcolors=120 * 200)
    assert len(colours) > 20, "the screenshot has almost no content"


def test_clashing_labels_take_the_folders_above_then_a_count(tmp_path):
    from unlearnkit.report.runs import Run, unique_labels

    def run(path):
        return Run(label="seed-0/after", source=tmp_path / path / "results.json")

    runs = unique_labels([run("scen/rmu/seed-0"), run("scen/npo/seed-0"), Run("other", tmp_path)])
    assert [r.label for r in runs] == ["rmu/seed-0/after", "npo/seed-0/after", "other"]
    runs = unique_labels([run("scen/rmu/seed-0"), run("tofu/rmu/seed-0")])
    assert [r.label for r in runs] == ["scen/rmu/seed-0/after", "tofu/rmu/seed-0/after"]
    runs = unique_labels([run("tofu/rmu/seed-0"), run("tofu/rmu/seed-0")])  # the same file
    assert [r.label for r in runs] == ["seed-0/after", "seed-0/after #2"]


def test_a_folder_is_refused_naming_the_file_to_pass(files, tmp_path):
    """A folder of results files, a model folder: the message says what to pass instead."""
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "a-quick.fluency_judge.json").write_text("{}")  # unlearn eval's judge cache
    with pytest.raises(UnlearnError, match=r"is a folder, not a results file; pass results "
                                           r"files by name$"):
        load_runs(folder)
    (folder / "a-quick.json").write_bytes(Path(files["a"]).read_bytes())
    with pytest.raises(UnlearnError, match=r"by name, e\.g\. .*eval/a-quick\.json$"):
        load_runs(folder)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(UnlearnError, match=r"evaluate it first \(unlearn eval .*model --data"):
        load_many([files["a"], model])
