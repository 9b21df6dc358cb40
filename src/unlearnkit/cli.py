"""The ``unlearn`` command: a thin shell over the Python API.

User errors (:class:`~unlearnkit.errors.UnlearnError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from unlearnkit.errors import UnlearnError

Handler = Callable[[argparse.Namespace], int | None]


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


def _add(sub, name: str, handler: Handler, help_text: str, config: str = "optional"):
    p = sub.add_parser(name, help=help_text, description=help_text)
    if config == "required":
        p.add_argument("config", help="YAML config file (see configs/)")
    elif config == "optional":
        p.add_argument("config", nargs="?", help="YAML config file (default: built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set inject.epochs=3 (repeatable)")
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearn",
        description="unlearnkit: make an LLM forget a target while keeping everything else.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    data = sub.add_parser("data", help="data tools (standardize)", description="Data tools.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _add(data_sub, "standardize", cmd_standardize,
         "standardise source files into one chat-QA dataset folder", "required")
    _add(sub, "inject", cmd_inject,
         "teach the base model the built-in scenario (the 'before' model) and train the oracle")
    run_parser = _add(sub, "run", cmd_run, "unlearn: teacher cache, push-pull training, evaluation")
    run_parser.add_argument("--resume", action="store_true",
                            help="continue a killed run from its last checkpoint")
    _add(sub, "demo", cmd_demo,
         "run the whole pipeline on the built-in scenario with the default model")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        _quiet_libraries()
        return int(args.handler(args) or 0)
    except UnlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
