"""Push-pull unlearning of a tiny model folder under `accelerate launch` (2 CPU processes).

Usage: python unlearn_two.py TINY_FOLDER OUT_FOLDER {ddp,fsdp2}

Runs ``train_unlearning`` (teacher cache, contrast-free push, adversarial prefill refreshed
every step through the model itself, the accelerate loop, saving) with DDP or with FSDP2
(:mod:`fsdp2`); the test compares the two saved models.
"""

import json
import sys
from pathlib import Path

import torch
from fsdp2 import patch_loop

from unlearnkit.data.scenario import build_scenario
from unlearnkit.pipeline.run import RunConfig, train_unlearning


def main(tiny: str, out: str, mode: str) -> None:
    if mode == "fsdp2":
        patch_loop()
    torch.manual_seed(0)
    cfg = RunConfig(output=out)
    cfg.teacher_report = False
    cfg.unlearn.mix.steps = 3
    cfg.unlearn.mix.forget = cfg.unlearn.mix.retain = cfg.unlearn.mix.neighbor = 2
    cfg.unlearn.teacher.top_k = 4
    cfg.unlearn.method.top_m = 4
    cfg.unlearn.method.prefill_refresh = 1
    cfg.optim.lr = 1e-3
    records = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    folder, history = train_unlearning(cfg, tiny, records, Path(out))
    from accelerate import PartialState

    if PartialState().is_main_process:
        (Path(out) / "done.json").write_text(json.dumps({
            "folder": str(folder), "processes": PartialState().num_processes,
            "history": history}))


if __name__ == "__main__":
    main(*sys.argv[1:])
