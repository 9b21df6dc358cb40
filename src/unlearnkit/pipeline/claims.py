"""Which process trains which bench run: a lock on ``<run>/.claim``.

Several `unlearn bench` (or `unlearn tune`) processes started on the same config share its
runs: one per GPU (``CUDA_VISIBLE_DEVICES``), or one per core (``OMP_NUM_THREADS=1``). A
process takes a run by holding the lock (:func:`unlearnkit.fsutil.locked`) on the run folder's
``.claim`` file for as long as it trains it, and skips runs another process holds. A killed
worker's lock goes with its process: the next process to reach the run takes it and resumes
from its last checkpoint. Under `accelerate launch` (``WORLD_SIZE`` > 1) every process of the
launch trains every run together, so claims are off there. Over NFS, ``flock`` is emulated
with POSIX locks (Linux >= 2.6.12).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from unlearnkit.fsutil import holder_of, locked

CLAIM = ".claim"


@contextlib.contextmanager
def claimed(folder: str | Path) -> Iterator[bool]:
    """Hold the run folder's claim for the block. Yields True when this process holds it,
    False when another live process does (the block must then leave the run alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under accelerate launch: the processes
        yield True  # train each run together (DDP), so none may skip a run another holds
        return
    with locked(Path(folder) / CLAIM, wait=False) as mine:
        yield mine


def holder(folder: str | Path) -> str:
    """Who holds (or last held) the run, for messages: ``host <name>, process <pid>``."""
    return holder_of(Path(folder) / CLAIM)
