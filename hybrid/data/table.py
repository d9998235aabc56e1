"""The parallel QA table out of core: a memory-mapped Arrow file and a compact sampler index.

`PairsTable.open(path)` reads `pairs.parquet` (schema in `hybrid.data.pairs`) once per content:
it validates it in record batches with pyarrow.compute (the rules and one-line messages of
`hybrid.data.pairs.validate_pairs`, naming the 0-based row) and writes, atomically
(`hybrid.io.atomic_path`), a cache directory `cache_dir()/pairs/<sha256 of the file>[:32]/`:

| file | content |
| --- | --- |
| `table.arrow` | Arrow IPC file, the 7 columns in canonical types, record batches of `ROWS_PER_BATCH` rows (row r is row r of pairs.parquet) |
| `ids.arrow` | one record batch: the distinct (dataset, xling_id) ids' xling_id, sorted by (dataset, xling_id): code k is row k |
| `id_ptr.npy` | int64 (ids + 1): the rows of id k are entries `id_ptr[k]:id_ptr[k+1]` of the next two |
| `id_lang.npy` | int16 (rows): language codes of those rows, ascending |
| `id_row.npy` | int64 (rows): their row numbers in table.arrow |
| `id_hash.npy` | uint64 (ids): blake2b-64 of "dataset/xling_id", big-endian (validation split) |
| `meta.json` | datasets and languages (sorted; codes are positions), ds_start, row counts |

Every process on a node maps the same files (one page cache): the texts are never loaded
into Python objects; `texts(rows)` and `batch(...)` fetch only the rows a batch needs. Codes
are ranks in sorted order, so ids sorted as strings are ids sorted by code; the ids of
dataset d are codes `ds_start[d]:ds_start[d+1]`.

`PairsIndex` is what the sampler reads: the arrays above plus an optional id mask (the
validation split); `index_from_frame(df)` builds one from a DataFrame with the same code.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from hybrid.data.pairs import PAIRS_SCHEMA
from hybrid.errors import HybridError
from hybrid.langs import validate_lang
from hybrid.paths import check_data_path, validate_name

ROWS_PER_BATCH = 1 << 16
TABLE_VERSION = 1  # part of the cache key: bump when the derived format changes
TEXT_COLUMNS = ("dataset", "xling_id", "lang", "question", "positive")
ARROW_SCHEMA = PAIRS_SCHEMA  # the Parquet table's schema, one home: hybrid.data.pairs
_INDEX_ARRAYS = ("id_ptr", "id_lang", "id_row", "id_hash")


# ------------------------------------------------------------------------- validation
def _first(mask) -> int | None:
    """Index of the first true entry of a boolean Arrow array (nulls count as false)."""
    i = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if i < 0 else i


def validate_batch(rb: pa.RecordBatch, where: str, offset: int) -> pa.RecordBatch:
    """One record batch of a pairs file, checked and cast to `ARROW_SCHEMA` (missing optional
    columns filled). Rows are numbered from `offset`; the first bad row (and within it the
    first bad field, in `validate_pairs`'s order) raises HybridError in one line."""
    n = rb.num_rows
    errors: list[tuple[int, int, str]] = []  # (row, order within a row, message)
    cols: dict[str, pa.Array] = {}
    for k, name in enumerate(TEXT_COLUMNS):
        a = rb.column(name)
        if pa.types.is_dictionary(a.type):
            a = a.dictionary_decode()
        if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
            bad = 0 if n else None  # every value is a non-string (or null)
        else:
            a = a.cast(pa.string())
            bad = _first(pc.or_kleene(pc.is_null(a), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(a)), 0)))
        if bad is not None:
            errors.append((bad, k, f"{name} must be a non-empty string, got {a[bad].as_py()!r}"))
        else:
            cols[name] = a
    if "lang" in cols:
        for code in pc.unique(cols["lang"]).to_pylist():
            try:
                validate_lang(code)
            except HybridError as exc:
                i = pc.index(cols["lang"], code).as_py()
                errors.append((i, 5, str(exc)))
    ctx = rb.column("context") if "context" in rb.schema.names else pa.nulls(n, pa.string())
    if pa.types.is_dictionary(ctx.type):
        ctx = ctx.dictionary_decode()
    if pa.types.is_null(ctx.type):
        ctx = pa.nulls(n, pa.string())
    elif pa.types.is_string(ctx.type) or pa.types.is_large_string(ctx.type):
        ctx = ctx.cast(pa.string())
    else:
        bad = _first(pc.is_valid(ctx))
        if bad is not None:
            errors.append((bad, 6, f"context must be a string or null, got {ctx[bad].as_py()!r}"))
    hn = rb.column("hard_negatives") if "hard_negatives" in rb.schema.names else pa.nulls(n, pa.list_(pa.string()))
    if pa.types.is_null(hn.type):
        hn = pa.nulls(n, pa.list_(pa.string()))
    if pa.types.is_list(hn.type) or pa.types.is_large_list(hn.type):
        vt = hn.type.value_type
        if pa.types.is_null(vt) and pc.sum(pc.list_value_length(hn)).as_py() in (None, 0):
            hn = pa.nulls(n, pa.list_(pa.string())) if hn.null_count == n else hn.cast(pa.list_(pa.string()))
        if pa.types.is_string(hn.type.value_type) or pa.types.is_large_string(hn.type.value_type):
            flat = pc.list_flatten(hn)
            if flat.null_count:
                row_of = pc.list_parent_indices(hn)
                bad = int(pc.min(pc.filter(row_of, pc.is_null(flat))).as_py())
                errors.append((bad, 7, f"hard_negatives must be a list of strings, got {hn[bad].as_py()!r}"))
            else:
                hn = hn.cast(pa.list_(pa.string()))
                if hn.null_count:  # null -> []
                    hn = pc.if_else(pc.is_null(hn), pa.scalar([], pa.list_(pa.string())), hn)
        else:
            bad = _first(pc.greater(pc.fill_null(pc.list_value_length(hn), 0), 0))
            if bad is not None:
                errors.append((bad, 7, f"hard_negatives must be a list of strings, got {hn[bad].as_py()!r}"))
    else:
        bad = _first(pc.is_valid(hn))
        if bad is not None:
            errors.append((bad, 7, f"hard_negatives must be a list of strings, got {hn[bad].as_py()!r}"))
    if errors:
        i, _, msg = min(errors)
        raise HybridError(f"{where}: row {offset + i}: {msg}")
    return pa.RecordBatch.from_arrays([*(cols[c] for c in TEXT_COLUMNS), ctx, hn], schema=ARROW_SCHEMA)


def check_columns(names: list[str], where: str) -> None:
    """The column rules of `validate_pairs`: required present, nothing unknown."""
    from hybrid.data.pairs import PAIRS_COLUMNS, REQUIRED_COLUMNS

    missing = [c for c in ["dataset", *REQUIRED_COLUMNS] if c not in names]
    if missing:
        raise HybridError(f"{where}: missing column(s) {', '.join(missing)} "
                          f"(need {', '.join(REQUIRED_COLUMNS)}; optional context, hard_negatives)")
    extra = [c for c in names if c not in PAIRS_COLUMNS]
    if extra:
        raise HybridError(f"{where}: unknown column(s) {', '.join(map(str, extra))}")


# ----------------------------------------------------------------------------- index
@dataclass(frozen=True)
class PairsIndex:
    """The sampler's view of a table: no Python object per row or id.

    datasets, langs: sorted names (a code is a position). ds_start: int64 (datasets + 1).
    id_ptr: int64 (ids + 1); id_lang (int16), id_row (int64): per id, its rows' language codes
    ascending and their row numbers. id_names: Arrow strings, xling_id of each id code.
    id_hash: uint64 per id (blake2b-64 of "dataset/xling_id"). keep: bool per id or None (all):
    the ids this view holds (a validation split keeps or drops whole ids)."""

    datasets: list[str]
    langs: list[str]
    ds_start: np.ndarray
    id_ptr: np.ndarray
    id_lang: np.ndarray
    id_row: np.ndarray
    id_names: pa.Array
    id_hash: np.ndarray
    keep: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Rows in this view."""
        if self.keep is None:
            return len(self.id_row)
        return int(np.diff(self.id_ptr)[self.keep].sum())

    def ids_of(self, d: int) -> np.ndarray:
        """Id codes of dataset `d` in this view, ascending."""
        ids = np.arange(self.ds_start[d], self.ds_start[d + 1], dtype=np.int64)
        return ids if self.keep is None else ids[self.keep[ids]]

    def langs_of(self, code: int) -> np.ndarray:
        """Language codes of id `code`, ascending."""
        return self.id_lang[self.id_ptr[code]:self.id_ptr[code + 1]]

    def name(self, code: int) -> str:
        return self.id_names[int(code)].as_py()

    def code(self, dataset: str, xling_id: str) -> int:
        """The id code of (dataset, xling_id); KeyError if absent."""
        d = self.datasets.index(dataset) if dataset in self.datasets else -1
        if d < 0:
            raise KeyError((dataset, xling_id))
        lo, hi = int(self.ds_start[d]), int(self.ds_start[d + 1])
        names = _Names(self.id_names, lo, hi)
        i = bisect.bisect_left(names, xling_id)
        if i == len(names) or names[i] != xling_id:
            raise KeyError((dataset, xling_id))
        return lo + i

    def row(self, code: int, lang: str) -> int:
        """The row of id `code` in language `lang`; KeyError if it has none."""
        lg = self.langs.index(lang) if lang in self.langs else -1
        s, e = int(self.id_ptr[code]), int(self.id_ptr[code + 1])
        j = s + int(np.searchsorted(self.id_lang[s:e], lg))
        if lg < 0 or j >= e or self.id_lang[j] != lg:
            raise KeyError((code, lang))
        return int(self.id_row[j])

    def subset(self, keep: np.ndarray) -> PairsIndex:
        """This view restricted to the ids where `keep` (bool per id) is true."""
        keep = keep if self.keep is None else keep & self.keep
        return replace(self, keep=keep)


class _Names:
    """A sorted range of an Arrow string array as a sequence (for bisect)."""

    def __init__(self, arr: pa.Array, lo: int, hi: int):
        self.arr, self.lo, self.hi = arr, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: int) -> str:
        return self.arr[self.lo + i].as_py()


def _blake64(keys: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big")
                     for k in keys], dtype=np.uint64)


def build_index(dataset, xling_id, lang, where: str) -> PairsIndex:
    """The compact index of three aligned Arrow string columns (non-null; chunked or not).

    Raises HybridError naming `where` and the row for a bad language code or dataset name
    and for a repeated (dataset, xling_id, lang) (the first repeat, as pandas' `duplicated`)."""
    n = len(dataset)
    datasets = sorted(pc.unique(dataset).to_pylist())
    for ds in datasets:
        validate_name(ds, where=f"{where}: dataset")
    langs = sorted(pc.unique(lang).to_pylist())
    for lg in langs:
        try:
            validate_lang(lg)
        except HybridError as exc:
            raise HybridError(f"{where}: row {pc.index(lang, lg).as_py()}: {exc}") from None
    ds_code = pc.index_in(dataset, pa.array(datasets, pa.string())).to_numpy().astype(np.int64)
    lang_code = pc.index_in(lang, pa.array(langs, pa.string())).to_numpy().astype(np.int64)
    xid_sorted = pc.take(uniq := pc.unique(xling_id), pc.sort_indices(uniq))
    del uniq
    x_code = pc.index_in(xling_id, xid_sorted).to_numpy().astype(np.int64)
    pair_key = ds_code * len(xid_sorted) + x_code
    del x_code
    id_keys, id_code = np.unique(pair_key, return_inverse=True)
    del pair_key
    id_names = pc.take(xid_sorted, pa.array(id_keys % len(xid_sorted)))
    ds_start = np.searchsorted(id_keys // len(xid_sorted), np.arange(len(datasets) + 1)).astype(np.int64)
    del id_keys, xid_sorted
    key = id_code.astype(np.int64) * len(langs) + lang_code
    del id_code
    order = np.argsort(key, kind="stable")
    skey = key[order]
    dup = np.flatnonzero(skey[1:] == skey[:-1])
    if len(dup):
        i = int(order[1:][dup].min())
        k = (dataset[i].as_py(), xling_id[i].as_py(), lang[i].as_py())
        raise HybridError(f"{where}: row {i}: duplicate (dataset, xling_id, lang) {k}")
    n_ids = len(id_names)
    id_ptr = np.searchsorted(skey // len(langs), np.arange(n_ids + 1)).astype(np.int64)
    id_lang = (skey % len(langs)).astype(np.int16)
    del skey, key
    hashes = np.empty(n_ids, dtype=np.uint64)
    for d, ds in enumerate(datasets):  # in chunks: no list of all ids at once
        for s in range(int(ds_start[d]), int(ds_start[d + 1]), ROWS_PER_BATCH):
            e = min(s + ROWS_PER_BATCH, int(ds_start[d + 1]))
            hashes[s:e] = _blake64([f"{ds}/{x}" for x in id_names[s:e].to_pylist()])
    assert len(order) == n
    return PairsIndex(datasets, langs, ds_start, id_ptr, id_lang, order.astype(np.int64),
                      id_names, hashes)


def index_from_frame(df, where: str = "pairs table") -> PairsIndex:
    """`build_index` over a DataFrame's dataset, xling_id and lang columns (as str)."""
    missing = {"dataset", "xling_id", "lang"} - set(df.columns)
    if missing:
        raise HybridError(f"{where}: missing columns {', '.join(sorted(missing))}")
    if len(df) == 0:
        raise HybridError(f"{where}: no rows")
    cols = [pa.array(df[c].astype(str).tolist(), pa.string()) for c in ("dataset", "xling_id", "lang")]
    return build_index(*cols, where=where)


# ----------------------------------------------------------------------------- table
def _map_random(path: Path) -> pa.Buffer:
    """`path` mapped read-only as an Arrow buffer, advised MADV_RANDOM: a batch touches a few
    scattered rows, and the kernel's readahead would otherwise fault in (and count in this
    process's RSS) up to the whole file after a few dozen batches."""
    import mmap

    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)
    return pa.py_buffer(mm)


class _PreadRows:
    """Single values of table.arrow's non-null text columns read with os.pread at the file
    offsets of their Arrow buffers (offsets, then bytes): a row costs 2-3 small reads per
    column and no mapped page, so RSS does not grow with the rows a process visits (touching
    the map would fault in up to 64 KB around every access, the whole file after a few
    dozen batches). The buffer positions come from the record batches of the map (metadata
    only)."""

    COLUMNS = ("question", "positive", "hard_negatives")

    def __init__(self, path: Path, batches: list[pa.RecordBatch], base: int):
        self.fd = os.open(path, os.O_RDONLY)
        self.pos: list[dict[str, tuple[int, ...]]] = []
        for rb in batches:
            cols = {}
            for c in self.COLUMNS:
                bufs = rb.column(c).buffers()  # string: validity, offsets, data; list: + child's
                cols[c] = tuple(b.address - base if b is not None else -1 for b in bufs)
            self.pos.append(cols)

    def __del__(self):
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)

    def _offsets(self, at: int, i: int, n: int = 2) -> tuple[int, ...]:
        return struct.unpack(f"<{n}i", os.pread(self.fd, 4 * n, at + 4 * i))

    def _string(self, offsets_at: int, data_at: int, i: int) -> str:
        s, e = self._offsets(offsets_at, i)
        return os.pread(self.fd, e - s, data_at + s).decode("utf-8") if e > s else ""

    def value(self, k: int, o: int, column: str):
        p = self.pos[k][column]
        if column != "hard_negatives":
            return self._string(p[1], p[2], o)
        s, e = self._offsets(p[1], o)
        if e == s:
            return []
        offs = self._offsets(p[3], s, e - s + 1)
        data = os.pread(self.fd, offs[-1] - offs[0], p[4] + offs[0])
        return [data[a - offs[0]:b - offs[0]].decode("utf-8") for a, b in zip(offs[:-1], offs[1:], strict=True)]


def _empty_lists(rb: pa.RecordBatch) -> int:
    """Rows of `rb` with no hard negatives."""
    return int(pc.sum(pc.equal(pc.list_value_length(rb.column("hard_negatives")), 0)).as_py() or 0)


def _pairs_file(path: str | Path) -> Path:
    p = check_data_path(path, what="--pairs")
    f = p / "pairs.parquet" if p.is_dir() else p
    if not f.is_file():
        raise HybridError(f"{f}: no pairs table; run `hybrid data pairs`")
    return f


def table_cache_dir(sha256: str) -> Path:
    from hybrid.paths import cache_dir

    return cache_dir() / "pairs" / f"v{TABLE_VERSION}-{sha256[:32]}"


def derive(f: Path, out: Path) -> None:
    """Write the cache directory `out` (see the module docstring) from pairs file `f`,
    validating it on the way; atomic: `out` appears complete or not at all."""
    from hybrid.io import atomic_path, write_json

    where = str(f)
    try:
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering kept every row group read alive
        names = pf.schema_arrow.names
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise HybridError(f"{f}: unreadable Parquet ({str(exc).splitlines()[0]})") from None
    check_columns(names, where)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        rows = 0
        empty_negs = 0
        with pa.OSFile(str(tmp / "table.arrow"), "wb") as sink, ipc.new_file(sink, ARROW_SCHEMA) as w:
            try:
                batches = pf.iter_batches(batch_size=ROWS_PER_BATCH)
                for rb in batches:
                    rb = validate_batch(rb, where, rows)
                    w.write_batch(rb)
                    rows += rb.num_rows
                    empty_negs += _empty_lists(rb)
            except HybridError:
                raise
            except Exception as exc:
                raise HybridError(f"{f}: unreadable Parquet ({str(exc).splitlines()[0]})") from None
        if rows == 0:
            raise HybridError(f"{f}: no rows")
        t = ipc.open_file(pa.memory_map(str(tmp / "table.arrow"))).read_all()
        idx = build_index(t.column("dataset"), t.column("xling_id"), t.column("lang"), where)
        del t
        with pa.OSFile(str(tmp / "ids.arrow"), "wb") as sink, \
                ipc.new_file(sink, pa.schema([("xling_id", pa.string())])) as w:
            w.write_batch(pa.record_batch([idx.id_names], names=["xling_id"]))  # one chunk: no copy
        for name in _INDEX_ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(idx, name))
        write_json(tmp / "meta.json", {
            "version": TABLE_VERSION, "source": str(f), "rows": rows, "ids": len(idx.id_names),
            "datasets": idx.datasets, "langs": idx.langs, "ds_start": idx.ds_start.tolist(),
            "rows_per_batch": ROWS_PER_BATCH, "rows_without_hard_negatives": empty_negs})


class PairsTable:
    """A validated pairs table: record batches of `ROWS_PER_BATCH` rows in `ARROW_SCHEMA`
    (memory-mapped from the cache by `open`, in memory for `from_frame`) and its `PairsIndex`.

    `texts(rows, column)`, `batch(batch, hard, seed)`, `to_pandas()`. Opening a table whose
    cache exists costs a sha256 of the file and a few maps; the first open validates and
    derives it."""

    def __init__(self, batches: list[pa.RecordBatch], index: PairsIndex, meta: dict,
                 source: Path | None = None):
        self._batches, self.index, self.meta, self.source = batches, index, meta, source
        self._rpb = int(meta.get("rows_per_batch", ROWS_PER_BATCH))
        self._pread: _PreadRows | None = None

    @classmethod
    def from_cache(cls, cache: Path, source: Path | None = None) -> PairsTable:
        """Map a cache directory written by `derive`."""
        meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        mapped = _map_random(cache / "table.arrow")
        reader = ipc.open_file(pa.BufferReader(mapped))
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        ids = ipc.open_file(pa.memory_map(str(cache / "ids.arrow"))).read_all().column("xling_id")
        # mapped read-only; plain ndarray views of the maps (np.memmap's indexing is slower)
        arrays = {n: np.load(cache / f"{n}.npy", mmap_mode="r").view(np.ndarray) for n in _INDEX_ARRAYS}
        index = PairsIndex(meta["datasets"], meta["langs"], np.array(meta["ds_start"], dtype=np.int64),
                           arrays["id_ptr"], arrays["id_lang"], arrays["id_row"],
                           ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0), arrays["id_hash"])
        table = cls(batches, index, meta, source)
        table._pread = _PreadRows(cache / "table.arrow", batches, mapped.address)
        return table

    @classmethod
    def from_frame(cls, df, where: str = "pairs table") -> PairsTable:
        """An in-memory table from a DataFrame in the pairs schema, validated by the same rules
        (for small tables built in a process, e.g. tests)."""
        import pandas as pd

        check_columns([str(c) for c in df.columns], where)
        df = pd.DataFrame(df).reset_index(drop=True)
        batches, rows, empty = [], 0, 0
        for s in range(0, max(len(df), 1), ROWS_PER_BATCH):
            part = df.iloc[s:s + ROWS_PER_BATCH]
            try:
                rb = pa.RecordBatch.from_pandas(part, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # mixed Python types: row-wise rules
                from hybrid.data.pairs import validate_pairs

                validate_pairs(df, where)
                raise HybridError(f"{where}: columns of mixed types ({str(exc).splitlines()[0]})") from None
            rb = validate_batch(rb, where, rows)
            batches.append(rb)
            rows += rb.num_rows
            empty += _empty_lists(rb)
        t = pa.Table.from_batches(batches, ARROW_SCHEMA)
        index = build_index(t.column("dataset"), t.column("xling_id"), t.column("lang"), where)
        return cls(batches, index, {"rows": rows, "rows_without_hard_negatives": empty,
                                    "rows_per_batch": ROWS_PER_BATCH})

    @classmethod
    def open(cls, path: str | Path) -> PairsTable:
        """The table of `path` (a directory holding pairs.parquet, or the file), validated,
        derived into the cache on first use. HybridError for a missing, unreadable or
        invalid file."""
        from hybrid.hashing import sha256_file

        f = _pairs_file(path)
        cache = table_cache_dir(sha256_file(f))
        if not (cache / "meta.json").is_file():
            derive(f, cache)
        return cls.from_cache(cache, f)

    def __len__(self) -> int:
        return int(self.meta["rows"])

    @property
    def rows_without_hard_negatives(self) -> int:
        return int(self.meta["rows_without_hard_negatives"])

    def row(self, r: int, columns=("question", "positive", "hard_negatives")) -> tuple:
        """Values of row `r` (Python objects) for `columns`; read with pread from a cached
        table (no page of the map is touched), else from the Arrow batches."""
        k, o = divmod(r, self._rpb)
        if self._pread is not None and all(c in _PreadRows.COLUMNS for c in columns):
            return tuple(self._pread.value(k, o, c) for c in columns)
        rb = self._batches[k]
        return tuple(rb.column(c)[o].as_py() for c in columns)

    def texts(self, rows, column: str) -> list:
        """Values of `column` at the given row numbers, in order."""
        return [self.row(int(r), (column,))[0] for r in rows]

    def batch(self, batch, hard: int, seed: int) -> tuple[list[str], list[str], list[str]]:
        """Questions, positives, and `hard` hard negatives per pair of `batch`
        (`hybrid.sampling.Batch`), drawn with a generator seeded by (seed, step), repeating
        when a row has fewer. The same texts and draws as the former in-memory `Texts`."""
        ix = self.index
        rng = np.random.default_rng([seed, batch.step])
        qs, ps, hs = [], [], []
        for p in batch.pairs:
            code = ix.code(batch.dataset, p.xling_id)
            qs.append(self.row(ix.row(code, p.q_lang), ("question",))[0])
            pos, negs = self.row(ix.row(code, p.p_lang), ("positive", "hard_negatives"))
            ps.append(pos)
            if hard:
                if not negs:
                    raise HybridError(f"data.hard_negatives={hard}: no hard negatives for "
                                      f"{batch.dataset}/{p.xling_id}/{p.p_lang}")
                hs += [negs[i] for i in rng.choice(len(negs), hard, replace=len(negs) < hard)]
        return qs, ps, hs

    def to_pandas(self):
        """The whole table as a DataFrame (small tables only: this loads every text);
        `hard_negatives` as lists, `context` as str or None."""
        df = pa.Table.from_batches(self._batches, ARROW_SCHEMA).to_pandas()
        df["hard_negatives"] = [list(h) for h in df["hard_negatives"]]
        df["context"] = df["context"].astype(object).where(df["context"].notna(), None)
        return df
