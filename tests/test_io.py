"""Atomic writes leave either the old output or the new one, never a half, and never
delete what is not theirs."""

import json

import pytest

import hybrid.io
from hybrid.errors import HybridError
from hybrid.io import (
    atomic_path,
    check_output,
    iter_jsonl,
    output_dir,
    output_lock,
    write_json,
    write_text,
)


def test_atomic_file_replaces_only_on_success(tmp_path):
    out = tmp_path / "a.json"
    write_json(out, {"v": 1})
    with pytest.raises(ValueError):
        with atomic_path(out) as tmp:
            tmp.write_text("{partial")
            raise ValueError("fail mid-way")
    assert out.read_text().strip().startswith("{") and '"v": 1' in out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_atomic_dir_replaces_an_earlier_output(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(hybrid.io, "_exchange", lambda a, b: False)
    out = tmp_path / "d"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "gone.txt").write_text("old")
    with atomic_path(out, replaceable=["gone.txt"]) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def test_a_users_directory_is_never_replaced_or_deleted(tmp_path):
    """The data-loss case: a file output over a directory, and a directory output over a
    directory holding things the new output does not write."""
    runs = tmp_path / "runs"
    (runs / "train" / "model").mkdir(parents=True)
    (runs / "train" / "model" / "w.bin").write_bytes(b"weights")
    (runs / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    with pytest.raises(HybridError, match="exists and is a directory, not a file"):
        write_text(runs, "batches")
    with pytest.raises(HybridError, match=r"other content \(notes.txt, train\)"):
        with atomic_path(runs) as tmp:
            tmp.mkdir()
            (tmp / "pairs.parquet").write_text("x")
    with pytest.raises(HybridError, match="other content"):
        with output_dir(runs, ["pairs.parquet"]):
            raise AssertionError("refused before the body runs")
    assert _snapshot(tmp_path) == before


def test_a_directory_never_replaces_a_file(tmp_path):
    f = tmp_path / "x.npy"
    f.write_bytes(b"data")
    with pytest.raises(HybridError, match="is a file, not a directory"):
        with atomic_path(f) as tmp:
            tmp.mkdir()
    assert f.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_output_dir_swaps_the_whole_set(tmp_path):
    out = tmp_path / "set"
    with output_dir(out, ["a", "b", "meta.json"]) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with output_dir(out, ["a", "b", "meta.json"]) as tmp:
            (tmp / "a").write_text("2")
            raise KeyboardInterrupt  # Ctrl-C half-way: the old set stays whole
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a": "1", "b": "1"}
    with output_dir(out, ["a", "b", "meta.json"]) as tmp:
        (tmp / "a").write_text("3")
        (tmp / "meta.json").write_text("{}")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a": "3", "meta.json": "{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_check_output_names_the_problem(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    with pytest.raises(HybridError, match=r"^--out .*/d: is a directory \(expected a file\)$"):
        check_output(tmp_path / "d", "file", what="--out")
    with pytest.raises(HybridError, match="exists and is not a directory"):
        check_output(tmp_path / "f", "dir", what="--out")
    with pytest.raises(HybridError, match=r"/f is not a directory"):
        check_output(tmp_path / "f" / "a" / "b.json", "file", what="--out")
    assert check_output(tmp_path / "new" / "deeper", "dir") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # the probe left nothing


def test_a_second_writer_of_the_same_output_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o"
    with output_lock(out):
        with pytest.raises(HybridError, match=r"another command \(pid \d+\) is writing it"):
            with output_dir(out, ["a"]):
                pass
        with output_lock(tmp_path / "other"):
            pass  # another output is not blocked
    with output_lock(out):
        pass  # released
    assert not out.exists()


def test_json_errors_are_whole_sentences(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n{"b": "open\n')
    with pytest.raises(HybridError, match=r":2: not valid JSON \(Unterminated string starting at column 7\)$"):
        list(iter_jsonl(p))
    p.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(HybridError, match="not UTF-8 text"):
        list(iter_jsonl(p))
    assert json.loads('{"a": 1}') == {"a": 1}


def test_atomic_path_without_output_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x"):
            pass
    assert list(tmp_path.iterdir()) == []
