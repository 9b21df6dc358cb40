"""What the benchmark scripts share: the model (the default one, or the tiny random one), the
scenario records they train and score on, and the cache folder.

``--tiny`` swaps in :mod:`unlearnkit.models.tiny` (a 2-block random Llama, character tokenizer)
and a small scenario, and points ``UNLEARNKIT_CACHE`` at a temporary folder so that the tiny
model's teacher and reference caches never land in the user's cache. It checks that a script
runs end to end in seconds; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

# CPU benchmarks: the loop's accelerator would move the model to a GPU if it saw one, and the
# FLOP/s would then be compared with the CPU's matmul peak.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@dataclass
class Setup:
    tiny: bool
    tokenizer: Any
    records: list  # the scenario people's records (forget, retain, neighbour)
    model_id: str  # what the teacher and reference caches are keyed by

    @property
    def name(self) -> str:
        return "tiny random Llama (2 blocks, width 64)" if self.tiny else "smollm2-135m-instruct"

    def load(self):
        """A fresh fp32 model in eval mode (training changes it in place: load one per run)."""
        if self.tiny:
            from unlearnkit.models.tiny import tiny_model

            return tiny_model(len(self.tokenizer))
        from unlearnkit.models.loader import load_model

        return load_model()[0]


def silence_progress() -> None:
    """No progress bars from the training loop and the teacher (they would interleave with the
    table; a bar update costs microseconds, nothing next to a step)."""
    from tqdm.auto import tqdm

    import unlearnkit.models.teacher_cache as teacher_cache
    import unlearnkit.training.loop as loop

    def silent(*args, **kwargs):
        kwargs["disable"] = True
        return tqdm(*args, **kwargs)

    loop.tqdm = teacher_cache.tqdm = silent


def make_setup(tiny: bool) -> Setup:
    """The default model's set-up, or with ``tiny`` the tiny one (on one thread: a tiny model
    runs faster on one, and does not fight a busy machine for its cores)."""
    import torch

    from unlearnkit.cli import _quiet_libraries
    from unlearnkit.data.scenario import build_scenario

    _quiet_libraries()
    silence_progress()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft on transformers 5
    if tiny:
        from unlearnkit.models.tiny import tiny_tokenizer

        torch.set_num_threads(1)
        cache = tempfile.mkdtemp(prefix="unlearnkit-bench-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        os.environ["UNLEARNKIT_CACHE"] = cache
        records = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
        return Setup(True, tiny_tokenizer(), records, "tiny")
    from unlearnkit.models.loader import DEFAULT_MODEL, load_tokenizer
    from unlearnkit.training.inject import model_identity

    return Setup(False, load_tokenizer(DEFAULT_MODEL), build_scenario().records,
                 model_identity(DEFAULT_MODEL))


@dataclass
class InjectedRun:
    """A run config's injected model (the unlearning's starting point) and its forget items,
    with the teacher summaries from the run's cache."""

    model: Any
    tokenizer: Any
    prepared: Any  # unlearnkit.pipeline.run.prepare's result
    records: list  # the records the teacher cache is keyed by (with general keep items)
    forget: list  # the forget items (unlearnkit.objectives.pushpull.Example)


def injected_run(cfg) -> InjectedRun:
    """Prepare a RunConfig as `unlearn run` does and build its forget items on the injected
    model (the teacher cache's key needs the general keep items, so they are built too)."""
    from unlearnkit.models.loader import load_model
    from unlearnkit.pipeline.methods import general_keep
    from unlearnkit.pipeline.run import prepare
    from unlearnkit.training.inject import model_identity
    from unlearnkit.training.unlearn import build_examples

    prepared = prepare(cfg)
    start = prepared.models["injected"]
    model, tokenizer = load_model(start)
    records = prepared.records + general_keep(cfg.unlearn.mix, prepared)
    examples = build_examples(model, tokenizer, records, cfg.unlearn.teacher,
                              model_identity(start))
    forget = [e for e in examples if e.true_input is not None]
    return InjectedRun(model, tokenizer, prepared, records, forget)


def models_parser(doc: str, models_nargs: str, config_help: str) -> argparse.ArgumentParser:
    """The command line of a script that reads trained model folders next to a run config's
    injected model: ``MODEL...`` (``models_nargs``) and ``--config``."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs=models_nargs, help="trained model folders (a run's "
                        "model/)")
    parser.add_argument("--config", default="configs/demo.yaml", help=config_help)
    return parser
