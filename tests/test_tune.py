"""`unlearn tune`: the grid, the selection score and the tuned bench config (no training:
`run_once` is replaced by metrics that depend on the settings)."""

import json

import pytest
import yaml

import unlearnkit.pipeline.bench as bench_mod
from unlearnkit.config import from_dict
from unlearnkit.errors import UnlearnError
from unlearnkit.pipeline import tune
from unlearnkit.pipeline.bench import BenchConfig, BenchMethod


def test_grid_points_are_the_product_in_order():
    points = tune.grid_points({"optim.lr": [1e-5, 2e-5], "unlearn.mix.steps": [3]})
    assert points == [{"optim": {"lr": 1e-5}, "unlearn": {"mix": {"steps": 3}}},
                      {"optim": {"lr": 2e-5}, "unlearn": {"mix": {"steps": 3}}}]
    assert tune.point_label("npo", points[1]) == "npo--lr-2e-05--steps-3"


def test_selection_score_by_hand():
    """forget 1 - 0.2 = 0.8; utility (0.9 + 0.7) / 2 = 0.8; boundary 0.8; robustness 0.9."""
    means = {"forget": 0.2, "retain": 0.9, "general": 0.7, "neighbor": 0.8, "prefill": 0.1,
             "keep_refusal": 0.0}
    assert tune.selection_score(means) == pytest.approx(0.825)
    assert tune.selection_score({**means, "prefill": None}) is None


def test_a_sweep_without_neighbours_weighs_forgetting_and_keeping_half_each():
    """TOFU has no neighbour split: forgetting (0.8 + 0.9) / 2 = 0.85, keeping = utility
    0.8, score (0.85 + 0.8) / 2 = 0.825 (the plain mean of three would be 0.8333 and count
    forgetting twice); a point that misses an objective the others measure scores None."""
    tofu = {"forget": 0.2, "retain": 0.9, "general": 0.7, "neighbor": None, "prefill": 0.1}
    assert tune.measured_objectives([tofu, {**tofu, "prefill": None}]) == [
        "forget", "utility", "robustness"]
    objectives = tune.measured_objectives([tofu])
    assert tune.selection_score(tofu, objectives) == pytest.approx(0.825)
    assert tune.selection_score({**tofu, "prefill": None}, objectives) is None
    assert tune.selection_score(tofu) is None  # all four asked for
    assert tune.selection_score(tofu, ["forget", "robustness"]) is None  # no keeping half


def _fake_result(forget, retain=0.95, neighbor=0.9):
    """What a fake `run_once` returns: forget accuracy = prefill attack success = ``forget``,
    general 0.9, no refusals, 10 items per split."""
    summary = {s: {"accuracy": a, "refusal": 0.0, "n": 10} for s, a in
               (("forget", forget), ("retain", retain), ("neighbor", neighbor),
                ("general", 0.9))}
    return {"results": {"after": {"summary": summary, "prefill_attack": forget}}}


def _bench_file(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "methods": [{"name": "pushpull"}, {"name": "npo", "options": {"beta": 0.5}},
                    {"name": "prompt_only"}],
        "seeds": [0, 1, 2], "output": str(tmp_path / "bench"),
        "run": {"optim": {"lr": 2.0e-5}}}))
    return path


def test_validation_must_change_the_data_and_untrained_methods_are_skipped(tmp_path):
    bench = BenchConfig(methods=[BenchMethod("pushpull"), BenchMethod("prompt_only")])
    with pytest.raises(UnlearnError, match="unchanged"):
        tune.sweep_config(tune.TuneConfig(validation={"optim": {"lr": 1e-5}}), bench)
    with pytest.raises(UnlearnError, match="empty"):
        tune.TuneConfig(validation={})
    sweep, _ = tune.sweep_config(tune.TuneConfig(output=str(tmp_path)), bench)
    assert [m.label for m in sweep.methods] == [
        "pushpull--lr-1e-05", "pushpull--lr-2e-05", "pushpull--lr-4e-05"]
    assert sweep.run.setup.scenario.seed == 1 and sweep.seeds == [0]
    cfg = bench_mod.run_config(sweep, sweep.methods[2], 0)
    assert cfg.optim.lr == 4e-5 and cfg.setup.scenario.seed == 1


def test_edge_keys_are_the_numeric_keys_chosen_at_their_smallest_or_largest_value():
    grid = {"optim.lr": [1e-5, 2e-5, 4e-5], "unlearn.mix.steps": [30], "x.mode": ["a", "b"]}
    assert tune.edge_keys({"optim": {"lr": 1e-5}, "x": {"mode": "b"}}, grid) == ["optim.lr"]
    assert tune.edge_keys({"optim": {"lr": 2e-5}, "unlearn": {"mix": {"steps": 30}}}, grid) == []
    assert tune.edge_keys(None, grid) == []  # nothing chosen


def test_a_method_can_have_its_own_grid_of_as_many_points(tmp_path):
    bench = BenchConfig(methods=[BenchMethod("pushpull"), BenchMethod("rmu"),
                                 BenchMethod("prompt_only")])
    own = {"rmu": {"optim.lr": [2.5e-4, 5e-4, 1e-3]}}
    sweep, rows = tune.sweep_config(tune.TuneConfig(output=str(tmp_path), grids=own), bench)
    assert [m.label for m in sweep.methods] == [
        "pushpull--lr-1e-05", "pushpull--lr-2e-05", "pushpull--lr-4e-05",
        "rmu--lr-0.00025", "rmu--lr-0.0005", "rmu--lr-0.001"]
    assert bench_mod.run_config(sweep, sweep.methods[5], 0).optim.lr == 1e-3
    assert [point for _, point, _ in rows][3] == {"optim": {"lr": 2.5e-4}}
    with pytest.raises(UnlearnError, match="same number of points"):
        tune.TuneConfig(grids={"rmu": {"optim.lr": [1e-3, 2e-3]}})
    with pytest.raises(UnlearnError, match="non-empty"):
        tune.TuneConfig(grids={"rmu": {"optim.lr": []}})
    for label in ("npo", "prompt_only"):  # not in the bench; does not train
        with pytest.raises(UnlearnError, match=f"names \\['{label}'\\]"):
            tune.sweep_config(tune.TuneConfig(grids={label: {"optim.lr": [1, 2, 3]}}), bench)


def test_tune_methods_sweeps_only_the_named_rows_and_names_an_unknown_one(tmp_path):
    """A row added to a tuned bench is tuned alone: the other rows run no point."""
    bench = BenchConfig(methods=[BenchMethod("pushpull"), BenchMethod("npo"),
                                 BenchMethod("pushpull", label="pushpull-mlp"),
                                 BenchMethod("prompt_only")])
    cfg = tune.TuneConfig(output=str(tmp_path), methods=["pushpull-mlp"],
                          grids={"pushpull-mlp": {"optim.lr": [4e-5, 8e-5, 1.6e-4]}})
    sweep, rows = tune.sweep_config(cfg, bench)
    assert [m.label for m in sweep.methods] == [
        "pushpull-mlp--lr-4e-05", "pushpull-mlp--lr-8e-05", "pushpull-mlp--lr-0.00016"]
    assert {method.label for method, _, _ in rows} == {"pushpull-mlp"}
    for label in ("pushpull-every", "prompt_only"):  # not in the bench; does not train
        with pytest.raises(UnlearnError, match=f"tune.methods names \\['{label}'\\]"):
            tune.sweep_config(tune.TuneConfig(methods=[label]), bench)


def test_a_row_with_fewer_seeds_is_tuned_and_the_sweep_runs_the_tunes_seeds(tmp_path):
    """A bench row's own ``seeds`` do not stop it being tuned (it trains), and neither it nor
    the oracle brings the bench's seeds into the sweep, which runs the tune's."""
    bench = from_dict(BenchConfig, {"methods": [{"name": "npo", "seeds": [0]},
                                                {"name": "oracle", "seeds": [2]}],
                                    "seeds": [0, 1, 2]}, "bench")
    cfg = tune.TuneConfig(output=str(tmp_path), seeds=[7], cap_at_oracle=True,
                          grids={"npo": {"optim.lr": [1e-5, 2e-5, 4e-5]}})
    sweep, rows = tune.sweep_config(cfg, bench)
    assert [m.label for m, _, _ in rows] == ["npo"] * 3
    assert [(m.name, m.seeds) for m in sweep.methods] == [("npo", None)] * 3 + [("oracle", None)]
    assert sweep.seeds == [7]


def test_validation_attacks_drop_the_benchs_options_of_the_attacks_it_leaves_out(tmp_path):
    """A bench that measures relearning tunes on the prefill attack alone: the relearning
    attack's options go with it, not into an error; without validation attacks they stay."""
    bench = from_dict(BenchConfig, {
        "methods": [{"name": "pushpull"}],
        "run": {"attacks": ["prefill", "relearn"], "attack_options": {"relearn": {"splits": 4}}}},
        "bench")
    cfg = tune.TuneConfig(output=str(tmp_path),
                          validation={"setup": {"scenario": {"seed": 1}}, "attacks": ["prefill"]})
    sweep, _ = tune.sweep_config(cfg, bench)
    assert sweep.run.attacks == ["prefill"] and sweep.run.attack_options == {}
    sweep, _ = tune.sweep_config(tune.TuneConfig(output=str(tmp_path)), bench)
    assert sweep.run.attack_options == {"relearn": {"splits": 4}}


def test_tune_picks_each_methods_best_point_and_writes_the_tuned_bench(tmp_path, monkeypatch,
                                                                       capsys):
    """Fake runs: push-pull scores best at lr 4e-5 (0.906 against 0.756 and 0.556); NPO at
    2e-5, since at 4e-5 it wrecks retain and neighbours (score 0.6125 < 0.756).
    Every point runs on the validation scenario with the method's own options."""
    seen = []

    def fake_run_once(cfg):
        seen.append((cfg.method, cfg.optim.lr, cfg.setup.scenario.seed, cfg.baseline))
        lr = cfg.optim.lr
        forget = {1e-5: 0.8, 2e-5: 0.4, 4e-5: 0.1}[lr]
        if cfg.method == "npo" and lr == 4e-5:  # wrecked
            return _fake_result(forget, retain=0.1, neighbor=0.2)
        return _fake_result(forget)

    monkeypatch.setattr(bench_mod, "run_once", fake_run_once)
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "tune"),
                          extend=0)
    choices = tune.run_tune(cfg)
    assert choices["pushpull"]["chosen"] == {"optim": {"lr": 4e-5}}
    assert choices["npo"]["chosen"] == {"optim": {"lr": 2e-5}}
    # 4e-5 is the largest of the grid's rates: the best may lie beyond; 2e-5 is inside
    assert choices["pushpull"]["at_edge"] == ["optim.lr"] and choices["npo"]["at_edge"] == []
    lines = {ln.split(":")[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "at the edge of what it tried in optim.lr" in lines["pushpull"]
    assert "edge" not in lines["npo"]
    assert "prompt_only" not in choices
    assert len(seen) == 6 and {s[2] for s in seen} == {1}  # 2 methods x 3 points, seed-1 data
    assert all(s[3] == {"beta": 0.5} for s in seen if s[0] == "npo")
    tuned = yaml.safe_load((tmp_path / "tune" / "tuned-bench.yaml").read_text())
    by_name = {m["name"]: m for m in tuned["methods"]}
    assert by_name["pushpull"]["run"] == {"optim": {"lr": 4e-5}}
    assert by_name["npo"]["run"] == {"optim": {"lr": 2e-5}}
    assert "run" not in by_name["prompt_only"] and tuned["seeds"] == [0, 1, 2]
    loaded = BenchConfig(**{k: v for k, v in tuned.items() if k not in ("methods", "run")},
                         methods=[BenchMethod(**m) for m in tuned["methods"]])
    assert bench_mod.run_config(loaded, loaded.methods[1], 0).optim.lr == 2e-5
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert len(saved["choices"]["npo"]["points"]) == 3
    assert (tmp_path / "tune" / "leaderboard.md").is_file()


def test_tune_chooses_nothing_while_another_process_trains_a_point(tmp_path, monkeypatch):
    """A sweep run held by another process: the other points run, nothing is chosen or
    written; once it is released the tune finishes."""
    from unlearnkit.pipeline.claims import claimed

    trained = []

    def fake_run_once(cfg):
        trained.append(cfg.output)
        summary = {s: {"accuracy": 0.5, "refusal": 0.0, "n": 10}
                   for s in ("forget", "retain", "neighbor", "general")}
        return {"results": {"after": {"summary": summary, "prefill_attack": 0.5}}}

    monkeypatch.setattr(bench_mod, "run_once", fake_run_once)
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "tune"))
    held = tmp_path / "tune" / "npo--lr-2e-05" / "seed-0"
    with claimed(held) as mine:
        assert mine and tune.run_tune(cfg) is None
    assert len(trained) == 5 and str(held) not in trained
    assert not (tmp_path / "tune" / "tune.json").exists()
    assert not (tmp_path / "tune" / "tuned-bench.yaml").exists()
    assert tune.run_tune(cfg) is not None  # the fake runs leave no results: all 6 again
    assert (tmp_path / "tune" / "tuned-bench.yaml").is_file()


def test_apply_to_carries_the_choices_to_other_bench_configs(tmp_path, monkeypatch):
    """The choices made on the validation scenario, written into a second bench config by
    label; a method that config lacks is ignored, one the tune did not choose is left as is."""
    def fake_run_once(cfg):
        return _fake_result({1e-5: 0.8, 2e-5: 0.4, 4e-5: 0.1}[cfg.optim.lr])

    monkeypatch.setattr(bench_mod, "run_once", fake_run_once)
    other = tmp_path / "bench-tofu.yaml"
    other.write_text(yaml.safe_dump({
        "methods": [{"name": "pushpull", "run": {"optim": {"weight_decay": 0.1}}},
                    {"name": "grad_ascent"}],
        "seeds": [0, 1, 2], "output": str(tmp_path / "tofu")}))
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "tune"),
                          apply_to=[str(other)], extend=0)
    tune.run_tune(cfg)
    tuned = yaml.safe_load((tmp_path / "tune" / "tuned-bench-tofu.yaml").read_text())
    by_name = {m["name"]: m for m in tuned["methods"]}
    assert by_name["pushpull"]["run"] == {"optim": {"weight_decay": 0.1, "lr": 4e-5}}
    assert "run" not in by_name["grad_ascent"]
    assert tuned["output"] == str(tmp_path / "tofu")


def test_apply_to_is_checked_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_mod, "run_once", lambda cfg: pytest.fail("trained"))
    bad = tmp_path / "other.yaml"
    bad.write_text(yaml.safe_dump({"methods": [{"name": "pushpull"}], "sedes": [0]}))
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), apply_to=[str(bad)])
    with pytest.raises(UnlearnError, match="sedes"):
        tune.run_tune(cfg)
    with pytest.raises(UnlearnError, match=r"repeat or are bench\.yaml"):
        tune.TuneConfig(apply_to=["a/bench.yaml"])
    with pytest.raises(UnlearnError, match="repeat"):
        tune.TuneConfig(apply_to=["a/x.yaml", "b/x.yaml"])


def test_choose_picks_by_the_objectives_a_setup_without_neighbours_measures():
    """Two TOFU points. lr 1: forgetting (0.5 + 0.6) / 2 = 0.55, keeping 0.9, score 0.725;
    lr 2: forgetting (0.9 + 0.9) / 2 = 0.9, keeping 0.7, score 0.8."""
    from unlearnkit.pipeline.bench import BenchMethod

    def metrics(**means):
        return {"metrics": {k: {"mean": v} for k, v in means.items()}}

    method = BenchMethod("npo")
    rows = [(method, {"optim": {"lr": 1}}, "npo--lr-1"), (method, {"optim": {"lr": 2}},
                                                         "npo--lr-2")]
    results = {
        "npo--lr-1": metrics(forget=0.5, retain=0.9, general=0.9, neighbor=None, prefill=0.4),
        "npo--lr-2": metrics(forget=0.1, retain=0.7, general=0.7, neighbor=None, prefill=0.1)}
    entry = tune.choose(rows, results)["npo"]
    assert [p["score"] for p in entry["points"]] == pytest.approx([0.725, 0.8])
    assert entry["chosen"] == {"optim": {"lr": 2}}


def test_step_beyond_takes_the_grids_own_step_past_its_edge():
    assert tune.step_beyond(1.6e-4, [4e-5, 8e-5, 1.6e-4]) == 3.2e-4  # geometric, x2
    assert tune.step_beyond(4e-5, [4e-5, 8e-5, 1.6e-4]) == 2e-5  # not 2.0000000000000002e-05
    assert tune.step_beyond(1e-3, [1e-3, 1e-2]) == 1e-4  # x10 down
    assert tune.step_beyond(0.0, [0.0, 0.5, 1.0]) == -0.5  # a value <= 0: linear
    assert tune.step_beyond(30, [30, 60]) == 15 and tune.step_beyond(60, [30, 60]) == 120
    assert tune.step_beyond(1, [1, 2]) is None  # 0.5 rounds to 0: no positive integer below
    assert tune.step_beyond(2e-5, [2e-5]) is None  # one value: no step
    assert tune.step_beyond(2e-5, [1e-5, 2e-5, 4e-5]) is None  # inside


def test_extend_brackets_a_choice_at_the_edge_for_every_method_alike(tmp_path, monkeypatch,
                                                                    capsys):
    """Push-pull's score rises to lr 8e-5 and falls after it (forget 0.8, 0.4, 0.1, 0.0, 0.0
    with retain 0.95 up to 8e-5 and 0.3 at 1.6e-4): with extend=2 it gets 8e-5 (still the
    edge of what it tried), then 1.6e-4, and keeps 8e-5, inside. NPO's best, 2e-5, is inside
    its grid from the start: it gets no extra point. With extend=1 push-pull stops at 8e-5,
    reported as still at the edge."""
    trained = []

    def fake_run_once(cfg):
        lr = cfg.optim.lr
        trained.append((cfg.method, lr))
        forget = {1e-5: 0.8, 2e-5: 0.4, 4e-5: 0.1, 8e-5: 0.0, 1.6e-4: 0.0}[lr]
        if (cfg.method == "npo" and lr == 4e-5) or lr == 1.6e-4:  # wrecked
            return _fake_result(forget, retain=0.3, neighbor=0.3)
        return _fake_result(forget)

    monkeypatch.setattr(bench_mod, "run_once", fake_run_once)
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "tune"),
                          extend=2)
    choices = tune.run_tune(cfg)
    assert choices["pushpull"]["chosen"] == {"optim": {"lr": 8e-5}}
    assert choices["pushpull"]["at_edge"] == []
    assert [p["label"] for p in choices["pushpull"]["points"]][3:] == [
        "pushpull--lr-8e-05", "pushpull--lr-0.00016"]
    assert len(choices["npo"]["points"]) == 3 and choices["npo"]["at_edge"] == []
    # (the fake runs write no results, so each round runs its points again: compare sets)
    assert set(trained) == {("pushpull", lr) for lr in (1e-5, 2e-5, 4e-5, 8e-5, 1.6e-4)} | {
        ("npo", lr) for lr in (1e-5, 2e-5, 4e-5)}
    tuned = yaml.safe_load((tmp_path / "tune" / "tuned-bench.yaml").read_text())
    assert tuned["methods"][0]["run"] == {"optim": {"lr": 8e-5}}
    rounds = [ln for ln in capsys.readouterr().out.splitlines() if "extension round" in ln]
    assert rounds == ["tune: extension round 1 of at most 2, beyond a choice at the edge: "
                      "pushpull--lr-8e-05",
                      "tune: extension round 2 of at most 2, beyond a choice at the edge: "
                      "pushpull--lr-0.00016"]
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert saved["config"]["extend"] == 2 and len(saved["choices"]["pushpull"]["points"]) == 5
    once = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "once"),
                           extend=1)
    choices = tune.run_tune(once)
    assert choices["pushpull"]["chosen"] == {"optim": {"lr": 8e-5}}
    assert choices["pushpull"]["at_edge"] == ["optim.lr"]
    assert "raise tune.extend" in capsys.readouterr().out
    with pytest.raises(UnlearnError, match=r"tune\.extend"):
        tune.TuneConfig(extend=-1)


def test_capped_means_by_hand():
    """The oracle forgets to 0.15 and the attack recovers 0.175 from it: a point at forget
    0.0 / prefill 0.05 counts as 0.15 / 0.175, one at 0.3 / 0.4 is above both and unchanged."""
    oracle = {"forget": 0.15, "prefill": 0.175, "retain": 1.0}
    low = {"forget": 0.0, "retain": 0.6, "general": 0.6, "neighbor": None, "prefill": 0.05}
    assert tune.capped_means(low, oracle) == {**low, "forget": 0.15, "prefill": 0.175}
    high = {**low, "forget": 0.3, "prefill": 0.4}
    assert tune.capped_means(high, oracle) == high
    assert tune.capped_means(low, None) == low
    assert tune.capped_means({**low, "prefill": None}, oracle)["prefill"] is None
    # a TOFU point (no neighbours): plain, forgetting (1 + 0.95) / 2 = 0.975, keeping
    # (0.56 + 0.6) / 2 = 0.58, score 0.7775; capped, forgetting (0.85 + 0.825) / 2 = 0.8375,
    # score 0.70875
    pp = {"forget": 0.0, "retain": 0.56, "general": 0.6, "neighbor": None, "prefill": 0.05}
    objectives = tune.measured_objectives([pp])
    assert tune.selection_score(pp, objectives) == pytest.approx(0.7775)
    assert tune.selection_score(tune.capped_means(pp, oracle), objectives) == pytest.approx(
        0.70875)


def test_a_capped_tune_evaluates_the_oracle_once_and_stops_rewarding_forgetting_below_it(
        tmp_path, monkeypatch):
    """Fake runs as above (forget = prefill success; keeping ((0.95 + 0.9) / 2 + 0.9) / 2 =
    0.9125); the oracle forgets to 0.4. Plain, push-pull picks 4e-5 (forget 0.1: score
    (0.9 + 0.9125) / 2 = 0.90625); capped, 4e-5 counts as forget 0.4 and ties with 2e-5 at
    (0.6 + 0.9125) / 2 = 0.75625, so the first, 2e-5, is kept; NPO keeps 2e-5."""
    seen = []

    def fake_run_once(cfg):
        seen.append(cfg.method)
        if cfg.method == "oracle":
            return _fake_result(0.4)
        forget = {1e-5: 0.8, 2e-5: 0.4, 4e-5: 0.1}[cfg.optim.lr]
        if cfg.method == "npo" and cfg.optim.lr == 4e-5:
            return _fake_result(forget, retain=0.1, neighbor=0.2)
        return _fake_result(forget)

    monkeypatch.setattr(bench_mod, "run_once", fake_run_once)
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "tune"),
                          extend=0, cap_at_oracle=True)
    choices = tune.run_tune(cfg)
    assert seen.count("oracle") == 1 and len(seen) == 7
    assert choices["pushpull"]["chosen"] == {"optim": {"lr": 2e-5}}
    assert choices["npo"]["chosen"] == {"optim": {"lr": 2e-5}}
    assert "oracle" not in choices
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert saved["oracle"]["forget"] == pytest.approx(0.4)
    points = saved["choices"]["pushpull"]["points"]
    assert points[2]["means"]["forget"] == pytest.approx(0.1)  # raw metrics kept
    assert [p["score"] for p in points] == pytest.approx([0.55625, 0.75625, 0.75625])


def test_a_capped_tune_without_an_oracle_result_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_mod, "run_once", lambda cfg: _fake_result(
        None if cfg.method == "oracle" else 0.2))
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "tune"),
                          extend=0, cap_at_oracle=True)
    with pytest.raises(UnlearnError, match="no oracle result"):
        tune.run_tune(cfg)


def test_a_tune_with_utility_fluency_stops_choosing_a_rate_that_forgets_in_loops(
        tmp_path, monkeypatch):
    """Forget = prefill success 0.8 / 0.4 / 0.3 at 1e-5 / 2e-5 / 4e-5; push-pull's forget
    answers at 4e-5 are loops. Plain (keeping ((0.95 + 0.9) / 2 + 0.9) / 2 = 0.9125): 4e-5
    scores (0.7 + 0.9125) / 2 = 0.80625 against 2e-5's 0.75625. With fluency, utility is
    (0.95 + 0.9 + share in language) / 3: 2e-5 (0.6 + (0.95 + 0.9) / 2) / 2 = 0.7625, 4e-5
    (0.7 + ((0.95 + 0.9 + 0) / 3 + 0.9) / 2) / 2 = 0.7291667: 2e-5 is chosen. NPO answers in
    sentences at every rate and keeps 4e-5 either way."""
    def fake_run_once(cfg):
        forget = {1e-5: 0.8, 2e-5: 0.4, 4e-5: 0.3}[cfg.optim.lr]
        result = _fake_result(forget)
        loops = cfg.method == "pushpull" and cfg.optim.lr == 4e-5
        text = "or or or or or or" if loops else "I never heard of that person, sorry."
        result["results"]["after"]["items"] = [
            {"id": f"f{i}", "split": "forget", "generation": text, "refused": False}
            for i in range(10)]
        return result

    monkeypatch.setattr(bench_mod, "run_once", fake_run_once)
    plain = tune.run_tune(tune.TuneConfig(bench=str(_bench_file(tmp_path)),
                                          output=str(tmp_path / "plain"), extend=0))
    assert plain["pushpull"]["chosen"] == {"optim": {"lr": 4e-5}}
    cfg = tune.TuneConfig(bench=str(_bench_file(tmp_path)), output=str(tmp_path / "fluent"),
                          extend=0, utility_fluency=True)
    sweep, _ = tune.sweep_config(cfg, from_dict(BenchConfig, yaml.safe_load(
        _bench_file(tmp_path).read_text())))
    assert sweep.utility_fluency and sweep.fluency_judge == ""  # the bench's (none here)
    choices = tune.run_tune(cfg)
    assert choices["pushpull"]["chosen"] == {"optim": {"lr": 2e-5}}
    assert [p["score"] for p in choices["pushpull"]["points"]] == pytest.approx(
        [0.5625, 0.7625, 0.7291667])
    assert choices["npo"]["chosen"] == {"optim": {"lr": 4e-5}}


def test_the_tune_table_reads_the_recorded_sweep_and_bolds_each_choice(monkeypatch, capsys):
    """benchmarks/tune_table.py on the committed records of configs/tune-scenario.yaml's
    `pushpull-mlp` points: 1.6e-4 is chosen, as docs/RESULTS.md records (results carry
    per-attack mappings since the twenty-fourth session; the table reads past them)."""
    import runpy
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "argv", ["tune_table.py", str(root / "results/tune-scenario")])
    runpy.run_path(str(root / "benchmarks/tune_table.py"), run_name="__main__")
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| pushpull-mlp |")]
    assert len(rows) == 5 and [r for r in rows if "**" in r] == [
        next(r for r in rows if r.startswith("| pushpull-mlp | 0.00016 |"))]
