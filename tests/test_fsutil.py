import pytest

from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import atomic_dir, atomic_write_text


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("killed half-way")
    assert (target / "a.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind


def test_atomic_dir_never_replaces_the_users_folders(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work / "sub")
    for target in ("", ".", "..", str(work), str(tmp_path)):  # here, or a folder above
        with pytest.raises(UnlearnError, match="current folder"), atomic_dir(target) as tmp:
            (tmp / "x").write_text("x")
    with pytest.raises(UnlearnError, match="is a file"), atomic_dir(work / "notes.txt"):
        pass
    with pytest.raises(UnlearnError, match="cannot create"), atomic_dir(work / "notes.txt" / "o"):
        pass
    # a folder of the user's (no marker of an earlier output) is kept; an earlier output is not
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "draft.md").write_text("keep me")
    with pytest.raises(UnlearnError, match="not an earlier output"), \
            atomic_dir(theirs, expect=("manifest.json",)):
        pass
    assert (theirs / "draft.md").read_text() == "keep me"
    assert (work / "notes.txt").read_text() == "mine" and (work / "sub").is_dir()
    earlier = tmp_path / "data"
    earlier.mkdir()
    (earlier / "manifest.json").write_text("{}")
    with atomic_dir(earlier, expect=("manifest.json",)) as tmp:
        (tmp / "manifest.json").write_text('{"new": 1}')
    assert (earlier / "manifest.json").read_text() == '{"new": 1}'
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty, expect=("manifest.json",)) as tmp:
        (tmp / "a").write_text("a")
    assert (empty / "a").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "empty", "theirs", "work"]


def test_atomic_write_text(tmp_path):
    atomic_write_text(tmp_path / "d" / "f.json", "{}")
    assert (tmp_path / "d" / "f.json").read_text() == "{}"
    assert len(list((tmp_path / "d").iterdir())) == 1


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    atomic_write_text(tmp_path / "r.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~mask
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "a").write_text("a")
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask


def test_locked_waits_for_the_holder_or_says_it_is_taken(tmp_path, capsys, lock_holder):
    import time

    from unlearnkit.fsutil import holder_of, locked

    lock = tmp_path / "x.lock"
    child = lock_holder(lock, 1.5)
    with locked(lock, wait=False) as mine:
        assert not mine and holder_of(lock).endswith(f"process {child.pid}")
    start = time.monotonic()
    with locked(lock, wait=True) as mine:
        assert mine and time.monotonic() - start > 0.5  # it waited for the child
        assert "waiting for host" in capsys.readouterr().out


def test_an_injection_another_process_is_training_is_waited_for_not_repeated(
        tiny_folder, cache_dir, monkeypatch, lock_holder):
    import unlearnkit.training.inject as inject
    from unlearnkit.data.records import Record

    records = [Record(id="p1", split="forget", question="Who?", answer="Ann")]
    cfg = inject.InjectConfig(replay=False)
    target = cache_dir / "inject" / (
        "injected-" + inject.cache_key(str(tiny_folder), cfg, records, "injected"))
    monkeypatch.setattr(inject, "_train_injected",
                        lambda *a: pytest.fail("trained a model another process made"))
    lock_holder(target.with_name(f".{target.name}.lock"), 1.0, then_write=target)
    assert inject.build_injected(str(tiny_folder), records, "injected", cfg) == target


def test_held_elsewhere_sees_another_process_holding_the_lock(tmp_path, lock_holder):
    from unlearnkit.fsutil import building, held_elsewhere

    target = tmp_path / "entry"
    assert not held_elsewhere(target)  # no lock file yet: nobody builds it (none is made)
    assert not target.with_name(".entry.lock").exists()
    with building(target):
        pass
    assert not held_elsewhere(target)  # the file is left, nobody holds it
    child = lock_holder(target.with_name(".entry.lock"), 1.0)
    assert held_elsewhere(target)
    child.wait()
    assert not held_elsewhere(target)


def test_a_second_process_trains_the_model_the_first_is_not_training(
        tiny_folder, cache_dir, monkeypatch, lock_holder):
    """Two bench workers on one thread each train the two models one at a time: the second
    trains the oracle while the first holds the injected model's lock, not after it."""
    import unlearnkit.training.inject as inject
    from unlearnkit.data.records import Record

    records = [Record(id="p1", split="forget", question="Who?", answer="Ann"),
               Record(id="p2", split="retain", question="Who else?", answer="Bo")]
    cfg = inject.InjectConfig(replay=False, processes=1)
    injected = inject._target(str(tiny_folder), records, "injected", cfg)
    trained = []

    def train(model_name, data, variant, cfg, target, tokenizer_spec=None):
        assert not (injected / "inject.json").exists(), "waited for the other process first"
        trained.append(variant)
        target.mkdir(parents=True)
        (target / "inject.json").write_text("{}")
        return target

    monkeypatch.setattr(inject, "_train_injected", train)
    lock_holder(injected.with_name(f".{injected.name}.lock"), 2.0, then_write=injected)
    folders = inject.build_variants(str(tiny_folder), records, ["injected", "oracle"], cfg)
    assert trained == ["oracle"] and folders["injected"] == injected
    assert list(folders) == ["injected", "oracle"] and (folders["oracle"] / "inject.json").is_file()


def at_once(fn, n: int) -> tuple[list, list]:
    """Run ``fn()`` in ``n`` threads at once; (their results, the exceptions they raised)."""
    import threading

    results, errors = [], []

    def call():
        try:
            results.append(fn())
        except Exception as exc:  # a failure in a thread is reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_processes_building_one_cache_entry_take_turns(tmp_path):
    """Four builders of one entry at once (threads, each opening the lock itself, as processes
    do): one builds it, the others wait and find it built; none fails."""
    import time

    from unlearnkit.fsutil import building

    target, builds = tmp_path / "cache" / "entry", []
    target.parent.mkdir()

    def builder():
        if not (target / "done").is_file():
            with building(target):
                if not (target / "done").is_file():
                    builds.append(1)
                    time.sleep(0.3)
                    with atomic_dir(target) as tmp:
                        (tmp / "done").write_text("x")

    _, errors = at_once(builder, 4)
    assert errors == [] and builds == [1] and (target / "done").read_text() == "x"


def test_the_teacher_cache_is_computed_once_by_concurrent_runs(tok, cache_dir, monkeypatch):
    """Two runs (the ranks of `accelerate launch`, or bench workers) needing the same teacher
    cache at once: one computes it, the other reads it (they used to replace each other's
    folder, and one failed with 'Directory not empty')."""
    import time

    import unlearnkit.training.unlearn as unlearn
    from unlearnkit.data.scenario import build_scenario
    from unlearnkit.models.teacher import TeacherConfig
    from unlearnkit.models.tiny import tiny_model

    records = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    model, computed = tiny_model(len(tok)), []
    compute = unlearn._compute_teacher

    def slow_compute(*args):
        computed.append(1)
        time.sleep(0.3)
        return compute(*args)

    monkeypatch.setattr(unlearn, "_compute_teacher", slow_compute)
    results, errors = at_once(lambda: unlearn.build_examples(
        model, tok, records, TeacherConfig(top_k=3), "tiny"), 2)
    assert errors == [] and computed == [1] and len(results) == 2
    a, b = ([(e.record_id, e.pull_top.indices.tolist()) for e in r] for r in results)
    assert a == b
