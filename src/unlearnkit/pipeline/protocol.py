"""`unlearn run`'s last stage, when asked: a benchmark's own protocol (an ``unlearn eval``
suite: tofu, muse, wmdp, ...) on the run's evaluated models, from a dataset folder of the
benchmark's evaluation sets, so that one command gives the figures a paper reports.

The oracle goes first: its results file is the reference of TOFU's forget quality and MUSE's
PrivLeak for the others. Each model's results go to ``<output>/protocol/<name>.json``, written
after each step as ``unlearn eval`` writes them, so a run resumed after a kill here continues
them; a run started afresh starts them afresh (its models are new).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unlearnkit.errors import UnlearnError

if TYPE_CHECKING:
    from unlearnkit.pipeline.run import RunConfig

# the order the models are read in: the references first
ORDER = ("oracle", "base", "before", "after")


@dataclass
class ProtocolConfig:
    """``suite``: an ``unlearn eval`` suite ("": no protocol stage); ``data``: the dataset
    folder of the benchmark's evaluation sets (``unlearn data standardize``); ``limit``: at
    most this many records of each part (0: all), as ``unlearn eval``'s. ``quantize``: also
    read each model with its linear weights rounded to this many bits (``unlearn eval``'s
    ``quantize``, per ``quantize_group`` inputs), into ``<name>-<bits>bit.json``; 0: not."""

    suite: str = ""
    data: str = ""
    limit: int = 0
    quantize: int = 0
    quantize_group: int = 0

    def __post_init__(self) -> None:
        from unlearnkit.pipeline.evaluate import SUITES

        if not self.suite and not self.data:
            return
        if not self.suite or not self.data:
            raise UnlearnError("protocol needs both suite (an unlearn eval suite, e.g. muse) and "
                               "data (the dataset folder of the benchmark's evaluation sets); "
                               f"got suite {self.suite!r} and data {self.data!r}")
        if self.suite not in SUITES:
            raise UnlearnError(f"protocol.suite {self.suite!r} is not one of {', '.join(SUITES)}")
        if not Path(self.data).is_dir():
            raise UnlearnError(f"protocol.data {self.data} is not a folder; standardise the "
                               "evaluation sets first (unlearn data standardize CONFIG)")
        if self.limit < 0:
            raise UnlearnError(f"protocol.limit must be >= 0 (0: all), got {self.limit}")
        if self.quantize and not 2 <= self.quantize <= 16:
            raise UnlearnError(f"protocol.quantize is a number of bits in [2, 16] (0: full "
                               f"precision only), got {self.quantize}")
        if self.quantize_group < 0 or (self.quantize_group and not self.quantize):
            raise UnlearnError(f"protocol.quantize_group is the inputs per scale of "
                               f"protocol.quantize (>= 0, and only with it set), got "
                               f"{self.quantize_group}")


def run_protocol(cfg: RunConfig, models: dict[str, str], out: Path) -> dict[str, str]:
    """The protocol's results file of each evaluated model, by name (oracle first)."""
    from unlearnkit.pipeline.evaluate import EvalConfig, run_eval

    folder = out / "protocol"
    if not cfg.resume and folder.exists():
        shutil.rmtree(folder)  # another run's models: nothing to continue
    files: dict[str, str] = {}
    names = sorted(models, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    bits = cfg.protocol.quantize
    for name in names:
        reference = files.get("oracle", "") if name != "oracle" else ""
        readings = [(name, 0)] + ([(f"{name}-{bits}bit", bits)] if bits else [])
        for label, quantize in readings:
            ecfg = EvalConfig(
                model=models[name], data=cfg.protocol.data, suite=cfg.protocol.suite,
                limit=cfg.protocol.limit, output=str(folder / f"{label}.json"),
                name=f"{label}, {cfg.protocol.suite}", oracle_results=reference,
                batch_size=cfg.eval_batch_size, device=cfg.device,
                trust_remote_code=cfg.data.trust_remote_code, tokenizer=cfg.data.tokenizer,
                chat_template=cfg.data.chat_template, refusal=cfg.refusal,
                correct_rouge_threshold=cfg.correct_rouge_threshold, quantize=quantize,
                quantize_group=cfg.protocol.quantize_group if quantize else 0)
            print(f"\nprotocol {cfg.protocol.suite}: {label} ({models[name]})")
            run_eval(ecfg)
            files[label] = ecfg.output
    return files
