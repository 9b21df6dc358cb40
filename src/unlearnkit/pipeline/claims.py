"""Which process trains which bench run: a lock on ``<run>/.claim``.

Several `unlearn bench` (or `unlearn tune`) processes started on the same config share its
runs: one per GPU (``CUDA_VISIBLE_DEVICES``), or one per core (``OMP_NUM_THREADS=1``). A
process takes a run by holding an exclusive ``flock`` on the run folder's ``.claim`` file for
as long as it trains it, and skips runs another process holds. The operating system drops the
lock when its process ends, so a killed worker leaves nothing stale: the next process to reach
the run takes it and resumes from its last checkpoint. The file itself stays (removing it
would let two processes lock two different files of the same name); it names the host and
process that last held it. Over NFS, ``flock`` is emulated with POSIX locks (Linux >= 2.6.12).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no shared runs, every run is this process's own
    fcntl = None

CLAIM = ".claim"


@contextlib.contextmanager
def claimed(folder: str | Path) -> Iterator[bool]:
    """Hold the run folder's claim for the block. Yields True when this process holds it,
    False when another live process does (the block must then leave the run alone)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield True
        return
    with open(folder / CLAIM, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
            fh.flush()
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def holder(folder: str | Path) -> str:
    """Who holds (or last held) the run, for messages: ``host <name>, process <pid>``."""
    try:
        owner = json.loads((Path(folder) / CLAIM).read_text(encoding="utf-8"))
        return f"host {owner['host']}, process {owner['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
