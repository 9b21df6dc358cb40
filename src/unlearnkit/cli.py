"""The ``unlearn`` command: a thin shell over the Python API.

User errors (:class:`~unlearnkit.errors.UnlearnError`) print one line and exit with code 2.
`bench` and `tune` exit with code 3 when they end with runs that other processes still train
(:mod:`unlearnkit.pipeline.claims`): nothing was wrong, but the leaderboard is not written yet.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from unlearnkit.errors import UnlearnError

Handler = Callable[[argparse.Namespace], int | None]
EXIT_UNFINISHED = 3  # bench / tune: other processes still train some runs


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def cmd_standardize(args: argparse.Namespace) -> None:
    from unlearnkit.config import load_config
    from unlearnkit.data.standardize import DataConfig, load_dataset, standardize

    cfg = load_config(DataConfig, args.config, args.set)
    folder = standardize(cfg)
    counts = {}
    for rec in load_dataset(folder):
        counts[rec.split] = counts.get(rec.split, 0) + 1
    print(f"wrote {folder}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def cmd_inject(args: argparse.Namespace) -> None:
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.scenario_models import ScenarioSetup, prepare_scenario

    cfg = load_config(ScenarioSetup, args.config, args.set)
    setup = prepare_scenario(cfg)
    for name, path in setup.models.items():
        print(f"{name}: {path}")


def cmd_demo(args: argparse.Namespace) -> None:
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, args.config, args.set)
    run_demo(cfg)


def cmd_run(args: argparse.Namespace) -> None:
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.run import RunConfig, run

    cfg = load_config(RunConfig, args.config, args.set)
    if args.resume:
        cfg.resume = True
    run(cfg)


def cmd_bench(args: argparse.Namespace) -> int | None:
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.bench import BenchConfig, partial_bench, run_bench

    cfg = load_config(BenchConfig, args.config, args.set)
    if args.partial:
        partial_bench(cfg)
        return None
    if run_bench(cfg) is None:
        return EXIT_UNFINISHED


def cmd_tune(args: argparse.Namespace) -> int | None:
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.tune import TuneConfig, run_tune

    if run_tune(load_config(TuneConfig, args.config, args.set)) is None:
        return EXIT_UNFINISHED


def cmd_diagnose(args: argparse.Namespace) -> None:
    from unlearnkit.config import load_config
    from unlearnkit.pipeline.diagnose import DiagnoseConfig, run_diagnose

    run_diagnose(load_config(DiagnoseConfig, args.config, args.set))


def cmd_eval(args: argparse.Namespace) -> None:
    from unlearnkit.config import apply_overrides, from_dict
    from unlearnkit.pipeline.evaluate import EvalConfig, run_eval
    from unlearnkit.report.compare import compare_table
    from unlearnkit.report.runs import from_results

    given = {"model": args.model, "data": args.data, "suite": args.suite,
             "output": args.out or "", "recompute": args.recompute}
    cfg = from_dict(EvalConfig, apply_overrides(given, args.set))
    results = run_eval(cfg)
    print("\n" + compare_table([from_results(results, cfg.output_path())]))
    for step, reason in results.skipped.items():
        print(f"skipped {step}: {reason}")
    print(f"wrote {cfg.output_path()}")


def cmd_refusal_agreement(args: argparse.Namespace) -> None:
    from unlearnkit.config import apply_overrides, from_dict
    from unlearnkit.evaluation.metrics import agreement_lines, validate_refusal_detector
    from unlearnkit.evaluation.refusal_judge import RefusalConfig, build_judge
    from unlearnkit.models.loader import pick_device

    given = apply_overrides({}, args.set)
    if set(given) - {"refusal"}:
        raise UnlearnError(f"unknown setting(s) {sorted(set(given) - {'refusal'})}; give "
                           "refusal.KEY=VALUE, the keys of unlearn eval's refusal section")
    cfg = from_dict(RefusalConfig, given.get("refusal"), prefix="refusal")
    judge = build_judge(cfg, device=pick_device(""))
    report = validate_refusal_detector(args.files, judge)
    print(f"refusal detector mode {report['mode']} against XSTest's human labels")
    print("\n".join(agreement_lines(report)))
    if getattr(judge, "asked", 0):
        print(f"judge asked about {judge.asked} completions; {judge.unparsed} replies were no "
              "verdict (the patterns decided those)")


def cmd_compare(args: argparse.Namespace) -> None:
    from unlearnkit.report.compare import compare_table
    from unlearnkit.report.runs import load_many

    print(compare_table(load_many(args.runs)))


def cmd_report(args: argparse.Namespace) -> None:
    from unlearnkit.report.build import write_report

    out = write_report(args.runs, args.out, before=args.before, oracle=args.oracle,
                       title=args.title)
    print(f"wrote {out}")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _add(sub, name: str, handler: Handler, help_text: str, config: str = "optional"):
    p = sub.add_parser(name, help=help_text, description=help_text)
    if config == "required":
        p.add_argument("config", help="YAML config file (see configs/)")
    elif config == "optional":
        p.add_argument("config", nargs="?", help="YAML config file (default: built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted key, e.g. --set "
                        "section.key=value (repeatable; the keys are this command's config's)")
    p.set_defaults(handler=handler)
    return p


def _add_eval(sub) -> None:
    p = _add(sub, "eval", cmd_eval, "evaluate a model on a dataset folder into a results file "
             "(resumable)", "none")
    p.add_argument("model", metavar="MODEL",
                   help="the default model's name, a local model folder (a run's model/ or "
                        "adapter/, not the run folder) or a hub id")
    p.add_argument("--data", required=True, metavar="DATASET_FOLDER",
                   help="dataset folder written by unlearn data standardize")
    p.add_argument("--suite", default="quick",
                   help="quick: correctness and refusal per split + prefill attack; full: every "
                        "metric per split + all attacks + MIA; tofu: the TOFU protocol; muse: "
                        "the MUSE protocol (KnowMem, VerbMem, PrivLeak); wmdp: multiple-choice "
                        "accuracy as lm-evaluation-harness scores WMDP and MMLU")
    p.add_argument("--out", metavar="FILE",
                   help="results file (default runs/eval/<model>-<suite>.json, <model> the "
                        "folder's name, with its run's before a run's model/ or adapter/: "
                        "runs/full/model -> runs/eval/full-model-<suite>.json)")
    p.add_argument("--recompute", action="store_true",
                   help="recompute steps already in the results file")


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of results files",
                       description="Write a self-contained HTML report of results files.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="results file of unlearn eval, or results.json of unlearn demo/run")
    p.add_argument("--out", default="report.html", metavar="FILE",
                   help="HTML file to write (default report.html)")
    p.add_argument("--before", metavar="FILE", help="results of the model before unlearning")
    p.add_argument("--oracle", metavar="FILE",
                   help="results of the oracle (trained without the forget data)")
    p.add_argument("--title", default="Unlearning report", help="the report's title")
    p.set_defaults(handler=cmd_report)


def _add_refusal_agreement(sub) -> None:
    p = sub.add_parser(
        "refusal-agreement", help="agreement of the refusal detector with XSTest's human labels",
        description="Agreement of the refusal detector (--set refusal.mode=patterns|judge|"
                    "either|both and the judge: --set refusal.judge_model=MODEL, or --set "
                    "refusal.base_url=URL --set refusal.api_model=NAME [--set "
                    "refusal.api_key_env=VAR]) with XSTest's human labels.")
    p.add_argument("files", nargs="+", metavar="CSV",
                   help="XSTest completions with final_label, e.g. "
                        "../shared/data/xstest/completions_*.csv")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a refusal setting, e.g. --set refusal.mode=either (repeatable)")
    p.set_defaults(handler=cmd_refusal_agreement)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearn",
        description="unlearnkit: make an LLM forget a target while keeping everything else.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    data = sub.add_parser("data", help="data tools (standardize)", description="Data tools.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(handler=lambda _args: _usage(data))  # `unlearn data` alone
    _add(data_sub, "standardize", cmd_standardize,
         "standardise source files into one chat-QA dataset folder", "required")
    _add(sub, "inject", cmd_inject,
         "teach the base model the built-in scenario (the 'before' model) and train the oracle")
    run_parser = _add(sub, "run", cmd_run, "unlearn: teacher cache, push-pull training (or a "
                      "baseline: --set method=NAME), evaluation")
    run_parser.add_argument("--resume", action="store_true",
                            help="continue a killed run from its last checkpoint")
    bench = _add(sub, "bench", cmd_bench, "run methods x seeds on the built-in scenario (or "
                 "run.data) and write a leaderboard with confidence intervals (resumable; "
                 "several processes may share one bench, exit code 3 while others still train)",
                 "required")
    bench.add_argument("--partial", action="store_true",
                       help="train nothing: write leaderboard-partial.{md,json,html} from the "
                            "runs finished so far, listing the missing ones")
    _add(sub, "tune", cmd_tune, "the same sweep for every method of a bench config on a "
         "validation setup; writes the tuned bench config (resumable and shareable as bench)",
         "required")
    _add(sub, "diagnose", cmd_diagnose,
         "measure gradient conflicts between the loss terms and distances between the sets' "
         "hidden states, with the forget set unified (chat QA) and raw")
    _add(sub, "demo", cmd_demo,
         "run the whole pipeline on the built-in scenario with the default model")
    _add_eval(sub)
    compare = sub.add_parser("compare", help="print the aggregates of results files side by side",
                             description="Print the aggregates of results files side by side.")
    compare.add_argument("runs", nargs="+", metavar="RUN",
                         help="results file of unlearn eval, or results.json of unlearn demo/run")
    compare.set_defaults(handler=cmd_compare)
    _add_report(sub)
    _add_refusal_agreement(sub)
    return parser


def _check_config_path(config: str | None) -> None:
    """A folder given where a command takes its YAML config file is named as a folder (the
    config loader would only say that no config file is there)."""
    if config and os.path.isdir(config):
        raise UnlearnError(f"{config} is a folder, not a config file; give the command's "
                           "YAML config file (examples in configs/)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        _check_config_path(getattr(args, "config", None))
        _quiet_libraries()
        return int(args.handler(args) or 0)
    except UnlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user named that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        close_process_group()


def close_process_group() -> None:
    """Leave the process group of `accelerate launch` before the process exits. The training
    loop leaves it open (saving needs it after training), and a gloo or NCCL group left to
    the interpreter's exit can abort the process ("terminate called without an active
    exception"), which fails the whole launch. Leaving is local: a process that is done (the
    others while the main one evaluates) waits for nobody."""
    dist = sys.modules.get("torch.distributed")  # never imports torch for a command without it
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
