import pytest

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
