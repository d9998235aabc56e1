"""Atomic outputs: nothing half-written, nothing of the user's deleted.

Every file or directory the tool produces is first written under a temporary name in
the same parent directory, then renamed into place, so an interrupted or failed step
leaves either the old output or the new one, complete.

- `atomic_path(path)`: a temporary path for one file or one directory; a directory is
  swapped in with one `renameat2(RENAME_EXCHANGE)` where the filesystem has it (else two
  renames, the old one restored if the second fails). It never replaces something of the
  other kind, and replaces an existing directory only when every entry of it is one the new
  output writes too (or is named in `replaceable`): a user's directory is refused with one
  line, never deleted.
- `output_dir(out, replaceable)`: a whole command's output directory (several files), built
  in a temporary directory and swapped in at the end: readers see the old set or the new set.
- `check_output(path, kind)`: the checks a command runs on its output path before any work.
- `output_lock(path)`: held while a command writes `path`; a second command writing the same
  path fails at once with one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from hybrid.errors import HybridError
from hybrid.hashing import sha256_file  # noqa: F401 - re-exported: its home is hybrid.hashing

_RENAME_EXCHANGE = 2
_LIBC = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2); False where unsupported."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
            _LIBC.renameat2  # noqa: B018  (raises AttributeError without it)
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    at_fdcwd = -100
    rc = _LIBC.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _kind(p: Path) -> str | None:
    if p.is_symlink():
        return "link"
    if p.is_dir():
        return "directory"
    if p.exists():
        return "file"
    return None


def _check_replaceable(final: Path, new: Path, replaceable: Iterable[str] = ()) -> None:
    """Refuse (HybridError) to put `new` in place of an existing `final` of the other kind, or
    of a directory holding entries the new output neither writes nor names in `replaceable`."""
    old, kind = _kind(final), _kind(new)
    if old is None:
        return
    if old != kind and not (old == "link" and kind == "file"):
        raise HybridError(f"{final}: exists and is a {old}, not a {kind}; nothing was "
                          f"written (remove it or choose another path)")
    if kind == "directory":
        _refuse_foreign(final, set(os.listdir(final)) - set(os.listdir(new)) - set(replaceable))


def _refuse_foreign(final: Path, foreign: set[str]) -> None:
    if foreign:
        shown = sorted(foreign)
        shown = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
        raise HybridError(f"{final}: an existing directory with other content ({shown}); "
                          f"nothing was written (choose a new or empty directory, or one this "
                          f"command wrote)")


def _swap_in(target: Path, final: Path) -> None:
    """Put `target` at `final`; an old directory at `final` ends up at `target`'s place."""
    if final.is_dir() and not final.is_symlink():
        if _exchange(target, final):
            return
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        try:
            target.rename(final)
        except BaseException:
            old.rename(final)
            raise
        old.rename(target)
    else:
        target.replace(final)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replaceable: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success put it in place of `path`.

    Works for files and directories (whatever the body creates). An existing `path` is
    replaced only once the new one is complete, and only by the same kind; an existing
    directory only if each of its entries is also in the new one or named in `replaceable`
    (else HybridError, `path` untouched). On any exception the temporary path is removed and
    `path` is left as it was.
    """
    final = Path(path)
    check_output(final, "any")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"atomic_path: nothing was written for {final}")
        _check_replaceable(final, target, replaceable)
        _swap_in(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def output_dir(out: str | os.PathLike, names: Iterable[str]) -> Iterator[Path]:
    """A command's output directory: yields an empty temporary directory to write every file
    into; on success it replaces `out` as a whole (see `atomic_path`), under
    `output_lock(out)`. `names`: every entry the command may write. An existing `out` must be
    a directory holding nothing else (checked before the body runs, and again at the swap)."""
    out = Path(out)
    names = set(names)
    check_output(out, "dir", names=names)
    with output_lock(out), atomic_path(out, names) as tmp:
        tmp.mkdir()
        yield tmp


def check_output(path: str | os.PathLike, kind: Literal["file", "dir", "any"] = "file",
                 what: str | None = None, names: Iterable[str] | None = None) -> Path:
    """`path` as a Path if a command may write it, else HybridError in one line: an existing
    path of the other kind, a parent that is not a directory, a place that is not writable,
    or (for a directory output whose entries are `names`) an existing directory holding
    anything else. Run before any work, so a bad `--out` costs nothing. `what` names the
    option."""
    p = Path(path).expanduser()
    name = f"{what} {p}" if what else str(p)
    old = _kind(p)
    if kind == "file" and old == "directory":
        raise HybridError(f"{name}: is a directory (expected a file)")
    if kind == "dir" and old not in (None, "directory"):
        raise HybridError(f"{name}: exists and is not a directory")
    if kind == "dir" and old == "directory" and names is not None:
        _refuse_foreign(p, set(os.listdir(p)) - set(names))
    parent = p.parent
    while not parent.exists():
        if parent.is_symlink():
            raise HybridError(f"{name}: {parent} is a dangling link")
        parent = parent.parent
    if not parent.is_dir():
        raise HybridError(f"{name}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hybrid-probe-", dir=p.parent if p.parent.is_dir() else parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HybridError(f"{name}: cannot write in {parent} ({exc.strerror})") from None
    return p


@contextlib.contextmanager
def build_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for building `target` (a cache entry), waiting while another
    process or thread holds it: a lock file `.<name>.lock` beside `target`, opened anew by
    each call, so flock serializes threads of one process as well as processes. Callers
    check again under the lock whether the entry was built meanwhile."""
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on output `path` (a lock file in the cache, keyed by the
    resolved path, so the user's directories get no extra files); a second holder fails at
    once with one line naming the path."""
    import fcntl

    from hybrid.paths import cache_dir

    key = hashlib.sha256(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:32]
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{key}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise HybridError(f"{path}: another command (pid {holder}) is writing it; wait "
                              f"for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def json_error(exc: json.JSONDecodeError, line: bool = True) -> str:
    """A JSON parse error as one complete phrase: "Unterminated string starting at line 1
    column 5" (json's own `msg` ends in "at" for some errors and leaves the place to the
    caller)."""
    msg = exc.msg.rstrip(": ")
    where = (f"line {exc.lineno} " if line else "") + f"column {exc.colno}"
    return f"{msg} {where}" if msg.endswith(" at") else f"{msg} at {where}"


def read_utf8(path: str | os.PathLike) -> tuple[bytes, str]:
    """(bytes, text) of a whole UTF-8 file (a leading BOM dropped from the text); a one-line
    HybridError for a missing or unreadable file, an empty (or blank) one, or bytes that
    are not UTF-8."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise HybridError(f"{path}: no such file") from None
    except OSError as exc:
        raise HybridError(f"{path}: cannot read ({exc.strerror})") from None
    if not raw.strip():
        raise HybridError(f"{path}: empty file")
    try:
        return raw, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HybridError(f"{path}: not UTF-8 (invalid byte at offset {exc.start})") from None


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield (line number, line without its line end) for each non-blank line of a UTF-8
    text file (JSONL, TSV, TREC run and qrels files); bytes that are not UTF-8 raise
    HybridError `{path}: not UTF-8 text (byte N)`."""
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield n, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise HybridError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value) for each non-blank line of a UTF-8 JSONL file.

    A line that is not JSON raises HybridError `{path}:{n}: not valid JSON (...)`; checking
    the value's shape is the caller's.
    """
    for n, line in iter_lines(path):
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise HybridError(f"{path}:{n}: not valid JSON ({json_error(exc, line=False)})") from None


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented UTF-8 JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n",
                       encoding="utf-8")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` as UTF-8, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_parquet(path: str | os.PathLike, table) -> Path:
    """Write a pyarrow Table (or pandas DataFrame) as Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)
