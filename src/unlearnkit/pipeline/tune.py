"""`unlearn tune CONFIG`: the same sweep for every method on a validation setup.

Every method of a bench config (``bench``: its path) gets the same grid of `unlearn run`
settings (``grid``: dotted key -> values, e.g. ``optim.lr: [1.0e-5, 2.0e-5, 4.0e-5]``), run on
a validation setup (``validation``: overrides of the bench's ``run``; by default the built-in
scenario with another seed, i.e. other people, so nothing is tuned on the people the bench
reports; ``attacks: [prefill]`` there runs the score's attack alone and drops the bench's
options of the others) with ``seeds``. The budget is equal by construction: the same grid,
steps, quotas and seeds for every method. Methods that do not train (prompt_only, oracle)
have nothing to tune.

Per method the grid point with the highest selection score is kept: the mean of the
leaderboard's four objectives (:func:`unlearnkit.report.leaderboard.objective_scores`:
forget = 1 - forget accuracy, utility = mean of retain and general accuracy, boundary =
neighbour accuracy, robustness = 1 - prefill attack success) over the seeds' mean metrics.
Where the sweep measures only some (TOFU has no neighbours) forgetting (forget, robustness)
and keeping (utility, boundary) still weigh half each: the score is the mean of the two
halves' means, which is the four objectives' mean when all are measured. A tie keeps the
earlier point. Writes ``<output>/tune.json`` (every point's metrics, score and
the choices), the sweep's own leaderboard, and ``<output>/tuned-bench.yaml``: the bench config
with each method's chosen settings under its ``run`` key, ready for ``unlearn bench``.
``methods`` (default: all) names the bench labels to tune, e.g. a row added to a tuned bench:
the others keep their settings, and ``tuned-bench.yaml`` changes only the named rows.
``grids`` gives a method (by its bench label) its own grid in place of ``grid``, with as many
points (an equal budget): for a method whose working range lies elsewhere, e.g. RMU, which
trains three MLPs towards activation targets and needs learning rates far above the others'.
``extend`` (default 1) brackets the choices, by the same rule for every method: a method whose
best point lies at its grid's smallest or largest value of a numeric key gets one point beyond
it (the next value of the grid's geometric step when its values are positive, else its linear
step; the other keys held at their chosen values), and the choice is made again; at most
``extend`` such rounds. ``apply_to`` names further bench configs (e.g. TOFU's) that get the
same choices, method by method label, as ``<output>/tuned-<file name>``: the settings are
tuned once, on the built-in scenario's validation people, and carried to the other setups
unchanged.

``cap_at_oracle`` (default off, as the recorded tunes were made): the sweep also evaluates the
oracle on the validation setup (a model never trained on its forget set), and each point's
forget accuracy and prefill attack success count as at least the oracle's in the score
(:func:`capped_means`). Forgetting past what the oracle does cannot be told apart from
breaking the model around the target, and without the cap the score rewards it: on TOFU it
chose rates that forget to 0% in word salad (docs/RESULTS.md, "A tune that does not reward
forgetting beyond the oracle"). ``tune.json`` then keeps the oracle's metrics and every
point's raw metrics beside its capped score.

``utility_fluency`` (default off): utility in the score also averages the share of forget
answers in language (neither degenerate nor, with the bench's ``fluency_judge``, unlikely;
METHOD.md's utility includes fluency), as the bench's option of the same name does.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from unlearnkit.config import deep_merge, from_dict, load_yaml, set_path
from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import atomic_write_text
from unlearnkit.pipeline.bench import BenchConfig, BenchMethod, run_bench, trains
from unlearnkit.pipeline.run import RunConfig
from unlearnkit.report.leaderboard import (
    OBJECTIVES,
    capped_means,
    objective_scores,
    reference_means,
)

ORACLE = "oracle"


def _default_validation() -> dict[str, Any]:
    return {"setup": {"scenario": {"seed": 1}}}


def _default_grid() -> dict[str, list[Any]]:
    return {"optim.lr": [1.0e-5, 2.0e-5, 4.0e-5]}


def _check_grid(name: str, grid: Any) -> None:
    if not isinstance(grid, dict) or not grid or any(
            not isinstance(v, list) or not v for v in grid.values()):
        raise UnlearnError(f"{name} needs at least one key with a non-empty list of values, "
                           "e.g. {optim.lr: [1.0e-5, 2.0e-5]}")


@dataclass
class TuneConfig:
    """``bench``: the bench config whose methods are tuned; ``validation``: overrides of its
    ``run`` that make the validation setup; ``grid``: dotted `unlearn run` keys -> values."""

    bench: str = "configs/bench-scenario.yaml"
    validation: dict[str, Any] = field(default_factory=_default_validation)
    grid: dict[str, list[Any]] = field(default_factory=_default_grid)
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # label -> own grid
    methods: list[str] = field(default_factory=list)  # labels to tune (empty: every one)
    seeds: list[int] = field(default_factory=lambda: [0])
    output: str = "runs/tune"
    apply_to: list[str] = field(default_factory=list)
    extend: int = 1  # rounds of one point beyond a choice at its grid's edge (0: none)
    cap_at_oracle: bool = False  # forgetting past the validation oracle's earns nothing
    # utility averages the share of forget answers in language, as the bench's
    # utility_fluency does (judged by the bench's fluency_judge when it has one)
    utility_fluency: bool = False

    def grid_for(self, label: str) -> dict[str, list[Any]]:
        """The grid of the method with bench label ``label``: its own, or the shared one."""
        return self.grids.get(label, self.grid)

    def __post_init__(self) -> None:
        if not self.validation:
            raise UnlearnError("tune.validation is empty: tuning would run on the data the "
                               "bench reports; set e.g. validation: {setup: {scenario: {seed: "
                               "1}}}")
        _check_grid("tune.grid", self.grid)
        for label, grid in self.grids.items():
            _check_grid(f"tune.grids.{label}", grid)
            if len(grid_points(grid)) != len(grid_points(self.grid)):
                raise UnlearnError(
                    f"tune.grids.{label} has {len(grid_points(grid))} points and tune.grid "
                    f"{len(grid_points(self.grid))}: give every method the same number of "
                    "points (an equal tuning budget)")
        if not isinstance(self.extend, int) or isinstance(self.extend, bool) or self.extend < 0:
            raise UnlearnError(f"tune.extend is {self.extend!r}: give the number of rounds "
                               "that add a point beyond a choice at its grid's edge (0 for none)")
        names = ["bench.yaml", *(Path(p).name for p in self.apply_to)]  # tuned-bench.yaml
        if len(set(names)) != len(names):
            raise UnlearnError(f"tune.apply_to: file names {names[1:]} repeat or are "
                               "bench.yaml; each is written as tuned-<file name> beside "
                               "tuned-bench.yaml, so give them distinct names")


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` as nested override mappings, in the grid's order."""
    keys = list(grid)
    return [_nested(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


def _nested(pairs) -> dict[str, Any]:
    """(dotted key, value) pairs as one nested override mapping."""
    point: dict[str, Any] = {}
    for key, value in pairs:
        set_path(point, key.split("."), value, f"tune.grid key {key!r}")
    return point


def point_label(label: str, point: dict[str, Any]) -> str:
    """A folder-safe row label: ``npo--lr-4e-05``."""
    parts = [f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in _flatten(point)]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "--".join([label, *parts]))


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


# the score weighs forgetting and keeping equally, whichever of their objectives are measured
SIDES = (("forget", "robustness"), ("utility", "boundary"))


def selection_score(means: dict[str, float | None],
                    objectives: Sequence[str] = OBJECTIVES, fluency: bool = False
                    ) -> float | None:
    """The mean of two halves, forgetting (1 - forget, robustness) and keeping (utility,
    boundary), each the mean of its ``objectives`` (default: all four, when the score is the
    four objectives' mean); None when one of ``objectives`` is missing or a half has none.
    ``fluency``: utility with the share of forget answers in language (objective_scores)."""
    scores = objective_scores(means, fluency)
    if any(scores[k] is None for k in objectives):
        return None
    halves = [[scores[k] for k in side if k in objectives] for side in SIDES]
    if not all(halves):
        return None
    return statistics.fmean(statistics.fmean(h) for h in halves)


def measured_objectives(means: Sequence[dict[str, float | None]]) -> list[str]:
    """The objectives some grid point measures: a setup without neighbours (TOFU) is scored on
    the other three, as its leaderboard's Pareto front is."""
    return [k for k in OBJECTIVES if any(objective_scores(m)[k] is not None for m in means)]


def sweep_config(cfg: TuneConfig, bench: BenchConfig,
                 extra: dict[str, list[dict]] | None = None) -> tuple[BenchConfig, list[tuple]]:
    """The sweep as a bench config on the validation setup, and (method, point, label) rows;
    ``extra``: bench label -> points run after its grid's (the edges' extensions)."""
    merged = deep_merge(asdict(bench.run), cfg.validation)
    if "attacks" in cfg.validation:  # the bench's options of attacks the sweep drops go too
        merged["attack_options"] = {k: v for k, v in merged["attack_options"].items()
                                    if k in merged["attacks"]}
    run = from_dict(RunConfig, merged, "validation")
    if asdict(run.setup) == asdict(bench.run.setup) and asdict(run.data) == asdict(bench.run.data):
        raise UnlearnError("tune.validation leaves the bench's setup and data unchanged: "
                           "tuning would run on the data the bench reports")
    trained = [m for m in bench.methods if trains(m)]  # others: no tuning
    for key, names in (("methods", cfg.methods), ("grids", cfg.grids)):
        if unknown := sorted(set(names) - {m.label for m in trained}):
            raise UnlearnError(f"tune.{key} names {unknown}, which are not labels of methods "
                               f"that train in {cfg.bench}: use one of "
                               f"{sorted(m.label for m in trained)}")
    if cfg.methods:
        trained = [m for m in trained if m.label in cfg.methods]
    rows, methods = [], []
    for method in trained:
        points = grid_points(cfg.grid_for(method.label)) + (extra or {}).get(method.label, [])
        for point in points:
            label = point_label(method.label, point)
            methods.append(BenchMethod(method.name, label=label, preset=method.preset,
                                       options=method.options,
                                       run=deep_merge(method.run, point)))
            rows.append((method, point, label))
    if not methods:
        raise UnlearnError("the bench config has no method that trains: nothing to tune")
    if cfg.cap_at_oracle:  # evaluated once on the validation setup, not tuned
        oracle = next((m for m in bench.methods if m.name == ORACLE), BenchMethod(ORACLE))
        methods.append(replace(oracle, seeds=None))  # the sweep's seeds, not the bench's
    judged = {"fluency_judge": bench.fluency_judge, "utility_fluency": True} \
        if cfg.utility_fluency else {}
    sweep = BenchConfig(methods=methods, seeds=list(cfg.seeds), run=run, output=cfg.output,
                        confidence=bench.confidence, title=f"Tuning sweep: {bench.title}",
                        keep_models=bench.keep_models, **judged)
    return sweep, rows


def choose(rows: list[tuple], results: dict[str, dict],
           oracle: dict[str, float | None] | None = None, fluency: bool = False
           ) -> dict[str, dict]:
    """Per method label: its grid points' scores and the chosen point (first best); with the
    ``oracle``'s mean metrics, scores of :func:`capped_means`; ``fluency``: utility counts the
    share of forget answers in language."""
    out: dict[str, dict] = {}
    means = {label: {k: v["mean"] for k, v in results[label]["metrics"].items()}
             for _, _, label in rows}
    objectives = measured_objectives(list(means.values()))
    for method, point, label in rows:
        entry = out.setdefault(method.label, {"method": method.name, "points": []})
        entry["points"].append({"point": point, "label": label, "means": means[label],
                                "score": selection_score(capped_means(means[label], oracle),
                                                         objectives, fluency)})
    for entry in out.values():
        scored = [p for p in entry["points"] if p["score"] is not None]
        best = max(scored, key=lambda p: p["score"]) if scored else None
        entry["chosen"] = best["point"] if best else None
    return out


def oracle_means(board: list[dict]) -> dict[str, float | None]:
    """The oracle row's mean metrics in a sweep's leaderboard."""
    if (means := reference_means(board)) is None:
        raise UnlearnError("tune.cap_at_oracle: the sweep has no oracle result on the "
                           "validation setup, so there is nothing to cap forgetting at")
    return means


def edge_keys(point: dict[str, Any] | None, grid: dict[str, list[Any]]) -> list[str]:
    """The numeric grid keys whose chosen value is the smallest or largest of the grid's: the
    best may lie beyond, and the grid wants extending there."""
    chosen = dict(_flatten(point or {}))
    out = []
    for key, values in grid.items():
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if key in chosen and numeric and len(set(values)) > 1 and (
                chosen[key] in (min(values), max(values))):
            out.append(key)
    return out


def tried_values(points: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, list]:
    """Per grid key, the values ``points`` (a method's grid and extension points) tried."""
    flat = [dict(_flatten(p)) for p in points]
    return {key: [f[key] for f in flat if key in f] for key in keys}


def step_beyond(value: Any, values: Sequence[Any]) -> Any | None:
    """The next value past ``value``, the smallest or largest of ``values``: one geometric step
    (the ratio to its neighbour) when all values are positive, else one linear step; integers
    stay integers. None when there is no step (a single value, or a step that rounds away)."""
    ordered = sorted(set(values))
    if len(ordered) < 2 or value not in (ordered[0], ordered[-1]):
        return None
    neighbour = ordered[1] if value == ordered[0] else ordered[-2]
    geometric = ordered[0] > 0
    new = value * (value / neighbour) if geometric else value + (value - neighbour)
    if all(isinstance(v, int) for v in ordered):
        new = round(new)
        return None if new == value or (geometric and new <= 0) else new
    return float(f"{new:.6g}")  # 2e-05, not 2.0000000000000002e-05, in labels and configs


def extension_points(chosen: dict[str, Any] | None, at_edge: Sequence[str],
                     tried: dict[str, list]) -> list[dict[str, Any]]:
    """One point beyond ``chosen`` per key of ``at_edge`` (the other keys as chosen)."""
    flat = dict(_flatten(chosen or {}))
    beyond = ((key, step_beyond(flat[key], tried[key])) for key in at_edge)
    return [_nested({**flat, key: new}.items()) for key, new in beyond if new is not None]


def tuned_bench_yaml(bench_path: str, choices: dict[str, dict]) -> str:
    """The bench config file with each tuned method's chosen point under its ``run`` key."""
    data = load_yaml(bench_path)
    for entry in data.get("methods") or []:
        label = entry.get("label") or entry.get("name")
        chosen = choices.get(label, {}).get("chosen")
        if chosen:
            entry["run"] = deep_merge(entry.get("run") or {}, chosen)
    head = (f"# {bench_path} with the settings `unlearn tune` chose per method on the "
            "validation setup\n# (tune.json beside this file has every point's scores).\n")
    return head + yaml.safe_dump(data, sort_keys=False)


def run_tune(cfg: TuneConfig) -> dict[str, dict] | None:
    """The sweep, the choices and the tuned bench configs; None (nothing chosen or written)
    while other processes still train some of the sweep's runs."""
    bench = from_dict(BenchConfig, load_yaml(cfg.bench), "bench")
    for path in cfg.apply_to:  # fail before hours of training, not after
        from_dict(BenchConfig, load_yaml(path), f"tune.apply_to {path}")
    extra: dict[str, list[dict]] = {}
    for round_ in range(cfg.extend + 1):
        sweep, rows = sweep_config(cfg, bench, extra)
        board = run_bench(sweep)
        if board is None:
            return None
        results = {row["label"]: row for row in board}
        oracle = oracle_means(board) if cfg.cap_at_oracle else None
        choices = choose(rows, results, oracle, cfg.utility_fluency)
        grown: list[str] = []
        for label, entry in choices.items():
            tried = tried_values([p["point"] for p in entry["points"]], list(cfg.grid_for(label)))
            entry["at_edge"] = edge_keys(entry["chosen"], tried)
            if round_ < cfg.extend and (beyond := extension_points(
                    entry["chosen"], entry["at_edge"], tried)):
                extra.setdefault(label, []).extend(beyond)
                grown.append(point_label(label, beyond[0]) + (
                    f" (+{len(beyond) - 1})" if len(beyond) > 1 else ""))
        if not grown:
            break
        print(f"tune: extension round {round_ + 1} of at most {cfg.extend}, beyond a choice at "
              f"the edge: {', '.join(grown)}")
    out = Path(cfg.output)
    atomic_write_text(out / "tune.json", json.dumps(
        {"config": asdict(cfg), "choices": choices,
         **({"oracle": oracle} if oracle else {})}, indent=1))
    atomic_write_text(out / "tuned-bench.yaml", tuned_bench_yaml(cfg.bench, choices))
    written = [out / "tuned-bench.yaml"]
    for path in cfg.apply_to:
        written.append(out / f"tuned-{Path(path).name}")
        atomic_write_text(written[-1], tuned_bench_yaml(path, choices))
    for label, entry in choices.items():
        scores = ", ".join(f"{point_label('', p['point']).lstrip('-')}: "
                           + ("-" if p["score"] is None else f"{p['score']:.3f}")
                           for p in entry["points"])
        edge = (f"; at the edge of what it tried in {', '.join(entry['at_edge'])}: the best "
                "may lie beyond, extend the grid or raise tune.extend"
                if entry["at_edge"] else "")
        print(f"{label}: chose {entry['chosen']} ({scores}){edge}")
    print(f"wrote {out / 'tune.json'}, " + ", ".join(str(p) for p in written))
    return choices
