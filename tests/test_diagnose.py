"""`unlearn diagnose`: geometry by hand, gradients, pooling, and the command end to end."""

import json
import math

import pytest
import torch

from unlearnkit.cli import main
from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX, collate, render
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.geometry import (
    cosine_distance,
    cosine_matrix,
    frechet_distance,
    mean_std,
    mmd2_linear,
)
from unlearnkit.evaluation.gradients import block_of, flat_grad, select_params
from unlearnkit.evaluation.hidden import layer_indices, pooled_hidden
from unlearnkit.models.tiny import tiny_model
from unlearnkit.pipeline.diagnose import gradient_summary, sample_ids, to_batch
from unlearnkit.report.build import write_report
from unlearnkit.training.raw import render_raw

R = 1 / math.sqrt(2)


def test_cosine_matrix_by_hand():
    # rows: e1, 2 e2, -3 e1, e1 + e2 -> cosines 0/1/-1 between the axes, 1/sqrt2 with the diagonal
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    expect = torch.tensor([[1, 0, -1, R], [0, 1, 0, R], [-1, 0, 1, -R], [R, R, -R, 1]],
                          dtype=torch.float64)
    torch.testing.assert_close(cosine_matrix(g), expect)


def test_a_zero_gradient_has_no_direction():
    sim = cosine_matrix(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert sim[0, 0] == 1 and sim[1].isnan().all() and sim[:, 1].isnan().all()


def test_mean_std_over_batches():
    mean, std = mean_std(torch.tensor([[1.0, -1.0], [3.0, -1.0]]))  # population std: 1 and 0
    torch.testing.assert_close(mean, torch.tensor([2.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(std, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_cosine_distance_of_the_means_by_hand():
    x = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # mean (1, 1)
    y = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # mean (0, 2): cos = 2 / (sqrt2 * 2) = 1/sqrt2
    assert cosine_distance(x, y) == pytest.approx(1 - R)
    assert cosine_distance(x, -x) == pytest.approx(2.0)


def test_mmd2_linear_by_hand():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # x.x off-diagonal: 1*3 = 3 (mean 3); y.y off-diagonal: 1; x.y: all 0 -> 3 + 1 - 0 = 4
    # (the biased estimate, ||(2, 0) - (0, 1)||^2 = 5, also counts x_i.x_i and y_i.y_i)
    assert mmd2_linear(x, y) == pytest.approx(4.0)
    assert mmd2_linear(y, x) == pytest.approx(4.0)
    assert math.isnan(mmd2_linear(x[:1], y))


def test_frechet_distance_by_hand():
    # 1-D: x = {0, 2}: mean 1, var 2 (n-1); y = {3, 5}: mean 4, var 2
    # -> (1-4)^2 + 2 + 2 - 2 sqrt(2 * 2) = 9
    assert frechet_distance(torch.tensor([[0.0], [2.0]]), torch.tensor([[3.0], [5.0]])) == (
        pytest.approx(9.0))
    # 2-D: x = {+-e1, +-e2}: mean 0, cov (2/3) I; y = 2x + e1: mean e1, cov (8/3) I
    # -> 1 + 2 (sqrt(8/3) - sqrt(2/3))^2 = 1 + 2 * 2/3 = 7/3
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    y = 2 * x + torch.tensor([1.0, 0.0])
    assert frechet_distance(x, y) == pytest.approx(7 / 3)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_matches_the_matrix_square_root_formula():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 4, generator=gen), torch.randn(5, 4, generator=gen) * 2 + 1
    sx, sy = torch.cov(x.double().T), torch.cov(y.double().T)
    vals, vecs = torch.linalg.eigh(sx)
    half = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(half @ sy @ half).clamp(min=0).sqrt().sum()
    expect = (x.mean(0) - y.mean(0)).double().square().sum() + sx.trace() + sy.trace() - 2 * cross
    assert frechet_distance(x, y) == pytest.approx(float(expect), rel=1e-6)


def test_flat_grad_by_hand():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor(0.5))
    unused = torch.nn.Parameter(torch.ones(3))
    y = w @ torch.tensor([3.0, 4.0]) + b  # 11.5
    # d(y^2)/dw = 2y x = (69, 92); d/db = 2y = 23; the unused parameter gets zeros
    g = flat_grad(y**2, [w, b, unused])
    torch.testing.assert_close(g, torch.tensor([69.0, 92.0, 23.0, 0.0, 0.0, 0.0]))
    assert g.dtype == torch.float32
    assert flat_grad(torch.tensor(1.0), [w, b]).tolist() == [0.0, 0.0, 0.0]


def test_select_params_keeps_the_upper_blocks(tok):
    model = tiny_model(len(tok))  # 2 blocks: model.layers.0 and model.layers.1
    assert block_of("model.layers.12.mlp.up_proj.weight") == 12
    assert block_of("transformer.h.3.attn.c_attn.weight") == 3
    assert block_of("model.embed_tokens.weight") is None
    upper = select_params(model, 1)
    assert upper and all(".layers.1." in n for n, _ in upper)
    assert len(select_params(model, 0)) == len(list(model.parameters()))
    assert len(select_params(model, 5)) == sum(block_of(n) is not None
                                               for n, _ in model.named_parameters())
    with pytest.raises(UnlearnError, match="grad_blocks=0"):
        select_params(torch.nn.Linear(2, 2), 1)


def test_layer_indices():
    assert layer_indices(30, []) == [15, 30]
    assert layer_indices(30, [-1, 0, 10, -31]) == [0, 10, 30]
    with pytest.raises(UnlearnError, match="out of range"):
        layer_indices(2, [3])


def test_pooled_hidden_is_the_mean_over_response_positions(tok):
    model = tiny_model(len(tok))
    short, long = render(tok, "Q?", "Yes."), render(tok, "A longer question?", "A longer answer.")
    pooled = pooled_hidden(model, [short, long], 0, [1, 2])
    alone = pooled_hidden(model, [short], 0, [1, 2], pool="all")
    with torch.no_grad():
        hidden = model(torch.tensor([short.input_ids]), output_hidden_states=True).hidden_states
    start = short.response_start
    for layer in (1, 2):
        torch.testing.assert_close(pooled[layer][0], hidden[layer][0, start:].mean(0))
        torch.testing.assert_close(alone[layer][0], hidden[layer][0].mean(0))
    # the short item was padded in its batch, so padding does not leak into its mean
    batch = collate([short, long], 0)
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]


def test_render_raw_labels_every_token_but_the_first(tok):
    item = render_raw(tok, "Ada was born.")
    assert item.input_ids == tok("Ada was born.", add_special_tokens=False)["input_ids"]
    assert item.labels == [IGNORE_INDEX, *item.input_ids[1:]] and item.response_start == 1
    teacher = render_raw(tok, "Ada was born.", prefix="Forget Ada.\n\n")
    n = len(teacher.input_ids) - len(item.input_ids)
    assert teacher.input_ids[n:] == item.input_ids and teacher.response_start == n + 1
    # the teacher's response positions line up with the student's
    assert len(teacher.input_ids) - teacher.response_start == len(item.input_ids) - 1


def test_batches_and_raw_batches():
    recs = {s: [Record(id=f"{s}{i}", split=s, question="Q?", answer="A.") for i in range(5)]
            for s in ("forget", "retain", "neighbor")}
    ids = sample_ids(recs, 3, 2, seed=0)
    assert ids == sample_ids(recs, 3, 2, seed=0) and len(ids) == 3
    assert all(len(b[s]) == 2 and len(set(b[s])) == 2 for b in ids for s in b)
    shared, other = object(), object()  # two forget records from one raw passage appear once
    batch = to_batch({"forget": ["f0", "f1", "f2"], "retain": ["r"], "neighbor": []},
                     {"r": "R"}, {"f0": shared, "f1": shared, "f2": other})
    assert batch == {"forget": [shared, other], "retain": ["R"], "neighbor": []}


def test_gradient_summary_by_hand():
    terms = ["forget_push", "retain_pull", "neighbor_pull", "ga_forget", "nll_retain"]
    cos = [[1, -0.2, 0.4, 0, 0], [-0.2, 1, 0, 0, 0], [0.4, 0, 1, 0, 0], [0, 0, 0, 1, -0.7],
           [0, 0, 0, -0.7, 1]]
    out = gradient_summary({"terms": terms, "cosine_mean": cos})
    assert out["naive ga_forget~nll_retain"] == -0.7
    assert out["push-pull forget~keep mean"] == pytest.approx(0.1)  # (-0.2 + 0.4) / 2
    assert out["push-pull forget~keep min"] == -0.2
    assert out["push-pull forget~keep negative share"] == 0.5


def tiny_args(folder, out):
    sets = {"model": folder, "setup.scenario.n_people": 6, "setup.scenario.n_forget": 2,
            "setup.scenario.neighbors_per_forget": 1, "unlearn.teacher.top_k": 4,
            "unlearn.method.top_m": 4, "batches": 2, "batch_size": 2, "max_items": 4,
            "grad_blocks": 1, "output": out,
            # the plain keep context is self-distillation: its pull has no gradient at the
            # starting model, so its cosines are undefined; the instructed one has one
            "unlearn.teacher.keep_context": "instructed"}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def test_diagnose_end_to_end_on_a_tiny_model(tiny_folder, tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    assert main(["diagnose", *tiny_args(tiny_folder, out)]) == 0
    printed = capsys.readouterr().out
    assert "gradient cosines, unified" in printed and "unified vs raw" in printed
    diag = json.loads((out / "diagnose.json").read_text())
    assert {"model", "parameters", "layers", "sets", "conditions", "config"} <= set(diag)
    assert diag["layers"] == [1, 2] and diag["sets"]["forget_raw"] == 2
    assert set(diag["conditions"]) == {"unified", "raw"}
    for cond in diag["conditions"].values():
        grads = cond["gradients"]
        cos = torch.tensor([[math.nan if v is None else v for v in row]
                            for row in grads["cosine_mean"]], dtype=torch.float64)
        n = len(grads["terms"])
        assert cos.shape == (n, n) and grads["batches"] == 2
        torch.testing.assert_close(cos, cos.T, equal_nan=True)
        assert all(abs(float(cos[i, i]) - 1) < 1e-6 for i in range(n)
                   if grads["grad_norm"][grads["terms"][i]])
        assert "naive ga_forget~nll_retain" in cond["summary"]
        assert {"forget~retain", "neighbor~general"} <= set(cond["representations"]["2"])
    # the HTML report of the run folder shows the tables, escaped
    diag["model"] = "<b>tiny</b>"
    (out / "diagnose.json").write_text(json.dumps(diag))
    summary = {"forget": {"accuracy": 0.5, "refusal": 0.0}}
    (out / "results.json").write_text(json.dumps({"results": {"after": {"summary": summary}}}))
    html = write_report([out / "results.json"], tmp_path / "r.html").read_text()
    assert 'id="diagnostics"' in html and "unified vs raw forget set" in html
    assert "&lt;b&gt;tiny&lt;/b&gt;" in html and "<b>tiny" not in html


def test_diagnose_applies_the_contrast_reveal(tiny_folder, tmp_path, cache_dir, capsys):
    """With ``unlearn.method.reveal: contrast`` the push's gradient is measured on the tokens
    the training would push (the contrast runs on the measured model, as in `unlearn run`)."""
    out = tmp_path / "contrast"
    args = [*tiny_args(tiny_folder, out), "--set", "unlearn.method.reveal=contrast",
            "--set", "unlearn.method.reveal_contrasts=2"]
    assert main(["diagnose", *args]) == 0
    printed = capsys.readouterr().out
    assert "reveal the forget subject by contrast with 2 other people" in printed
    assert (out / "diagnose.json").is_file()


def test_diagnose_user_errors_exit_2(capsys):
    assert main(["diagnose", "--set", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key nope" in err and len(err.strip().splitlines()) == 1
    assert main(["diagnose", "--set", "terms=[forget_push, bogus]"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("override", "message"), [
    ("device=tpu9", "device 'tpu9' is not a torch device"),
    ("grad_blocks=-1", r"grad_blocks must be >= 0 \(the upper N transformer blocks; 0: every "
                       r"parameter\), got -1"),
])
def test_diagnose_settings_are_checked_when_the_config_loads(override, message):
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.diagnose import DiagnoseConfig

    with pytest.raises(UnlearnError, match=message):
        load_config(DiagnoseConfig, None, [override])


def test_diagnose_refuses_an_output_it_cannot_write_before_any_work(tmp_path, monkeypatch,
                                                                    capsys):
    import unlearnkit.pipeline.diagnose as diagnose_mod

    def no_work(cfg):
        raise AssertionError("the data was loaded before the output was checked")

    monkeypatch.setattr(diagnose_mod, "load_data", no_work)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["diagnose", "--set", f"output={afile}"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["diagnose", "--set", f"output={mine}"]) == 2
    err = capsys.readouterr().err
    assert "is not an earlier output of this kind (it has no diagnose.json or results.json)" in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and afile.read_text() == "mine"
    # an earlier diagnose's folder, a run's folder (the report shows diagnose.json beside its
    # results.json) and a new one pass the check
    for name, marker in (("again", "diagnose.json"), ("run", "results.json"), ("new", None)):
        folder = tmp_path / name
        if marker:
            folder.mkdir()
            (folder / marker).write_text("{}")
        with pytest.raises(AssertionError, match="the data was loaded"):
            diagnose_mod.run_diagnose(diagnose_mod.DiagnoseConfig(output=str(folder)))
