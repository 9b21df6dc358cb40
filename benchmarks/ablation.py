"""The method's ablation on one setup: which term or choice buys what.

Usage: python benchmarks/ablation.py [--config configs/demo.yaml] [--only a,b] [KEY=VALUE ...]
Runs `unlearn run` once per variant (same config, seed and data; KEY=VALUE overrides apply to
all) into runs/ablation/<variant>, then prints one Markdown table: forget / neighbour / retain /
general accuracy, refusal on retain and neighbour, and the prefill attack's success.

Variants (METHOD.md's terms): full (pull + push + adversarial prefill, unified data);
pull_only; pull_push (no prefill); raw (the forget set as its raw biographies instead of chat
QA); adv_pull (also pull toward the teacher after each prefill). Models the runs share (before,
oracle) are evaluated once (the evaluation cache).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.config import load_config
from unlearnkit.pipeline.run import SPLIT_ORDER, RunConfig, run

VARIANTS = {
    "full": [],
    "pull_only": ["unlearn.method.push=false", "unlearn.method.prefill=false"],
    "pull_push": ["unlearn.method.prefill=false"],
    "raw": ["unlearn.forget_format=raw"],
    "adv_pull": ["unlearn.method.adv_pull=true"],
}


def row(name: str, results: dict, seconds: float) -> str:
    summary = results["summary"]
    acc = [f"{summary[s]['accuracy']:.1%}" if s in summary else "-" for s in SPLIT_ORDER]
    refusal = [f"{summary[s]['refusal']:.1%}" if s in summary else "-"
               for s in ("retain", "neighbor")]
    return (f"| {name} | " + " | ".join(acc + refusal)
            + f" | {results['prefill_attack']:.0%} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    _quiet_libraries()
    print(f"machine: {describe()}\nconfig: {args.config} {' '.join(args.overrides)}")
    header = ("| variant | " + " | ".join(SPLIT_ORDER)
              + " | refusal retain | refusal neighbor | prefill attack | seconds |")
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    references = {}
    for name in args.only.split(","):
        out = f"output=runs/ablation/{name}"
        cfg = load_config(RunConfig, args.config, [*args.overrides, *VARIANTS[name], out,
                                                    "eval_base=false", "report=false"])
        start = time.time()
        payload = run(cfg)
        lines.append(row(name, payload["results"]["after"], time.time() - start))
        references |= {k: v for k, v in payload["results"].items() if k != "after"}
        print("\n".join(lines), flush=True)
    for name, results in references.items():
        lines.append(row(f"*{name}*", results, 0))
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
