"""Atomic writes leave either the old output or the new one, never a half."""

import pytest

from hybrid.io import atomic_path, write_json


def test_atomic_file_replaces_only_on_success(tmp_path):
    out = tmp_path / "a.json"
    write_json(out, {"v": 1})
    with pytest.raises(ValueError):
        with atomic_path(out) as tmp:
            tmp.write_text("{partial")
            raise ValueError("fail mid-way")
    assert out.read_text().strip().startswith("{") and '"v": 1' in out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_replaces_existing_dir(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_atomic_path_without_output_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x"):
            pass
    assert list(tmp_path.iterdir()) == []
