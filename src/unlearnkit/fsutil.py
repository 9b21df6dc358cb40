"""Atomic file and folder writes: an output is either complete or absent, never half-written;
and an exclusive lock between processes that work on the same outputs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from unlearnkit.errors import UnlearnError

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


def check_replaceable(target: str | Path, expect: Sequence[str] = ()) -> Path:
    """Refuse, before any work, an output folder that writing would destroy or cannot make.

    Never replaced: the current folder, a folder above it, the home folder, a file. With
    ``expect`` (file names), an existing non-empty folder is replaced only if it holds one of
    them, i.e. it is an earlier output of the same kind (a dataset's ``manifest.json``, a model's
    ``config.json``), never a folder of the user's. Returns ``target`` as a Path.
    """
    target = Path(target)
    here, where = Path.cwd().resolve(), target.resolve()
    if where == here or where in here.parents or where == Path.home().resolve():
        raise UnlearnError(f"refusing to write an output folder over {str(target) or '.'!r} "
                           f"({where}: the current folder, a folder above it or the home "
                           "folder): name a new folder for the output")
    if target.exists() and not target.is_dir():
        raise UnlearnError(f"the output {target} is a file, not a folder: name a folder")
    if expect and target.is_dir() and any(target.iterdir()) \
            and not any((target / name).exists() for name in expect):
        raise UnlearnError(f"the output folder {target} exists and is not an earlier output of "
                           f"this kind (it has no {' or '.join(expect)}): unlearnkit replaces "
                           "only its own outputs; name another folder or remove it yourself")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnlearnError(f"cannot create the folder {target.parent} for the output "
                           f"({exc.strerror}): name a writable folder") from None
    if not os.access(target.parent, os.W_OK):
        raise UnlearnError(f"cannot write in {target.parent}: name a writable folder")
    return target


@contextmanager
def atomic_dir(target: str | Path, *, expect: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``.

    On an exception the temporary folder is removed and ``target`` is left as it was.
    ``target`` is checked first (:func:`check_replaceable`, with ``expect``).
    """
    target = check_replaceable(target, expect)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


T = TypeVar("T")


def built_once(target: str | Path, find: Callable[[], T | None], build: Callable[[], T]) -> T:
    """The cache entry ``target``: what ``find()`` returns when the entry is there (None when
    it is not), else what ``build()`` returns, built under the entry's lock (:func:`building`)
    after looking once more: of the processes that would build it at once, one builds it and
    the others find it built."""
    if (found := find()) is not None:
        return found
    with building(target):
        if (found := find()) is not None:
            return found
        return build()


@contextmanager
def building(target: str | Path) -> Iterator[None]:
    """Hold, for the block, the lock of the cache entry ``target`` (a file beside it): the
    processes that would build the same entry (the ranks of `accelerate launch`, bench
    workers) take turns, so one builds it and the others, checking again inside the block,
    find it built. Without it two of them replaced each other's folder, and one failed."""
    with locked(_lock_file(target), wait=True):
        yield


def _lock_file(target: str | Path) -> Path:
    """The lock file of the cache entry ``target``: a hidden file beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def held_elsewhere(target: str | Path) -> bool:
    """Whether another process holds the lock of the cache entry ``target`` now (is building
    it, :func:`building`). A glance: the holder may let go the moment after."""
    path = _lock_file(target)
    if fcntl is None or not path.is_file():
        return False
    with open(path, encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


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
