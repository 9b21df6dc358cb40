"""Atomic file and folder writes: an output is either complete or absent, never half-written;
and an exclusive lock between processes that work on the same outputs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no locks, every process works as if alone
    fcntl = None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``.

    On an exception the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def locked(path: str | Path, *, wait: bool) -> Iterator[bool]:
    """An exclusive lock on the file ``path`` (created if missing) for the block. With
    ``wait``, block until the holder lets go (saying once who it is) and yield True; without,
    yield whether the lock was free. The lock is ``flock``'s: the operating system drops it
    when its process ends, so a killed holder leaves nothing stale. The file stays afterwards
    (removing it would let two processes lock two different files of one name) and names the
    host and process that last held it."""
    path = Path(path)
    if fcntl is None:
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            print(f"waiting for {holder_of(path)}, which holds {path}", flush=True)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
            fh.flush()
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def holder_of(path: str | Path) -> str:
    """Who holds (or last held) the lock file ``path``: ``host <name>, process <pid>``."""
    try:
        owner = json.loads(Path(path).read_text(encoding="utf-8"))
        return f"host {owner['host']}, process {owner['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
