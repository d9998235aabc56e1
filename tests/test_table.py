"""The out-of-core pairs table (hybrid.data.table): derived once into the cache, memory-mapped,
validated with the rules and messages of `validate_pairs`, texts fetched by row as the former
in-memory `Texts` did, the validation split as the former pandas one."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sampling_reference as ref

from hybrid.cli import main
from hybrid.data.pairs import PAIRS_COLUMNS, load_pairs, validate_pairs, write_pairs
from hybrid.data.table import PairsTable, table_cache_dir
from hybrid.errors import HybridError
from hybrid.paths import cache_dir
from hybrid.sampling import HybridBatchSampler
from hybrid.train.data import Texts, load_table, split_validation

LANGS = ["de", "en", "zh"]


def _rows(n_ids: int, langs=LANGS, dataset: str = "toy", partial: bool = False) -> list[dict]:
    return [{"dataset": dataset, "xling_id": f"id{i}", "lang": lg, "question": f"{lg} q {i} ü",
             "positive": f"{lg} a {i} 答", "context": None if i % 3 else f"ctx {i}",
             "hard_negatives": [f"{lg} n{i}.{k}" for k in range(i % 3)]}
            for i in range(n_ids) for j, lg in enumerate(langs) if not partial or j <= i % len(langs)]


def test_derived_once_mapped_and_read_back(tmp_path):
    df = pd.DataFrame(_rows(30) + _rows(20, ["en", "es"], dataset="other", partial=True))
    write_pairs(df, tmp_path / "p", {"source": "test"})
    f = tmp_path / "p" / "pairs.parquet"
    t = PairsTable.open(tmp_path / "p")
    cache = table_cache_dir(hashlib.sha256(f.read_bytes()).hexdigest())
    assert t.source == f and cache.parent == cache_dir() / "pairs"
    assert sorted(p.name for p in cache.iterdir()) == [
        "id_hash.npy", "id_lang.npy", "id_ptr.npy", "id_row.npy", "ids.arrow", "meta.json", "table.arrow"]
    assert isinstance(t.index.id_row.base, np.memmap) and not t.index.id_row.flags.writeable
    assert len(t) == len(df)
    stamp = (cache / "table.arrow").stat().st_mtime_ns
    again = load_table(f)  # the file or its directory: same cache, not derived again
    assert (cache / "table.arrow").stat().st_mtime_ns == stamp and again.index.datasets == ["other", "toy"]
    back = t.to_pandas()
    assert list(back.columns) == PAIRS_COLUMNS
    for col in PAIRS_COLUMNS:
        assert list(back[col]) == [None if v is None or v != v else v for v in df[col]], col
    assert back["context"].map(lambda c: c is None or isinstance(c, str)).all()
    for r in range(len(df)):  # single rows read with pread equal the Arrow batches
        assert t.row(r) == (back.at[r, "question"], back.at[r, "positive"], back.at[r, "hard_negatives"])
    assert t.rows_without_hard_negatives == sum(1 for r in _rows(30) if not r["hard_negatives"]) + sum(
        1 for r in _rows(20, ["en", "es"], "other", True) if not r["hard_negatives"])
    # the index: codes are ranks in sorted order, every row once
    ix = t.index
    assert sorted(ix.id_row.tolist()) == list(range(len(df)))
    for code in range(len(ix.id_names)):
        rows = ix.id_row[ix.id_ptr[code]:ix.id_ptr[code + 1]]
        assert list(df.loc[rows, "lang"]) == [ix.langs[k] for k in ix.langs_of(code)]
        assert set(df.loc[rows, "xling_id"]) == {ix.name(code)}


def _bad(rows: list[dict], col: str, value, at: int) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df[col] = df[col].astype(object)
    df.at[at, col] = value
    return df


AT = 13  # past the first record batch (8 rows here): rows are numbered over the whole file


@pytest.mark.parametrize("col, value, needle", [
    ("question", "   ", f"row {AT}: question must be a non-empty string"),
    ("positive", None, f"row {AT}: positive must be a non-empty string, got None"),
    ("lang", "xx", f"row {AT}: unknown language code 'xx'"),
    ("lang", "../en", f"row {AT}: invalid language code '../en'"),
    ("hard_negatives", ["ok", None], f"row {AT}: hard_negatives must be a list of strings"),
    ("xling_id", "id1", f"row {AT}: duplicate (dataset, xling_id, lang)"),
    ("dataset", "../x", "dataset: invalid name '../x'"),
])
def test_bad_rows_same_message_as_validate_pairs(tmp_path, monkeypatch, col, value, needle):
    monkeypatch.setattr("hybrid.data.table.ROWS_PER_BATCH", 8)
    n_ids = AT // 3 + 10
    df = _bad(_rows(n_ids), col, value, AT)
    if col == "xling_id":  # row AT repeats the (dataset, xling_id, lang) of an earlier row
        df.at[AT, "lang"] = df.at[3, "lang"]
    f = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f)
    with pytest.raises(HybridError) as exc:
        PairsTable.open(f)
    msg = str(exc.value)
    assert needle in msg and msg.startswith(str(f)) and "\n" not in msg
    with pytest.raises(HybridError) as old:
        validate_pairs(pd.read_parquet(f), str(f))
    assert str(old.value).replace("got nan", "got None") == msg  # pandas reads a null as nan
    assert not table_cache_dir(hashlib.sha256(f.read_bytes()).hexdigest()).exists()
    assert not [p for p in (cache_dir() / "pairs").glob(".*")]  # no temporary left behind


def test_bad_columns_and_types(tmp_path):
    f = tmp_path / "pairs.parquet"
    cases = [
        (pd.DataFrame(_rows(3)).drop(columns="lang"), "missing column(s) lang"),
        (pd.DataFrame(_rows(3)).assign(extra=1), "unknown column(s) extra"),
        (pd.DataFrame(_rows(3)).assign(context=5), "row 0: context must be a string or null, got 5"),
        (pd.DataFrame(_rows(3)).assign(hard_negatives="x"), "row 0: hard_negatives must be a list of strings"),
    ]
    for df, needle in cases:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f)
        with pytest.raises(HybridError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            PairsTable.open(f)
    f.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(HybridError, match="unreadable Parquet"):
        load_pairs(f)


class _OldTexts:
    """The former in-memory Texts (hybrid/train/loop.py at c8e7fc5), the reference."""

    def __init__(self, table: pd.DataFrame):
        self.rows = {(d, x, lg): (q, p, list(h)) for d, x, lg, q, p, h in zip(
            table["dataset"], table["xling_id"], table["lang"], table["question"],
            table["positive"], table["hard_negatives"], strict=True)}

    def batch(self, batch, hard, seed):
        rng = np.random.default_rng([seed, batch.step])
        qs, ps, hs = [], [], []
        for p in batch.pairs:
            qs.append(self.rows[(batch.dataset, p.xling_id, p.q_lang)][0])
            pos, negs = self.rows[(batch.dataset, p.xling_id, p.p_lang)][1:]
            ps.append(pos)
            if hard:
                hs += [negs[i] for i in rng.choice(len(negs), hard, replace=len(negs) < hard)]
        return qs, ps, hs


def test_batch_texts_as_before_on_xquad(xquad_dir, tmp_path, capsys):
    rc = main(["data", "pairs", "--out", str(tmp_path / "p"),
               "--source", f"xquad-r:{xquad_dir}?langs=en,de,zh,th&hard_negatives=2"])
    assert rc == 0, capsys.readouterr().err
    table = load_table(tmp_path / "p")
    df = table.to_pandas()
    old, new, mem = _OldTexts(df), Texts(table), Texts(df)
    sampler = HybridBatchSampler(table.index, "hybrid", 16, 0.5, seed=3)
    def has_negatives(b):
        return all(old.rows[(b.dataset, p.xling_id, p.p_lang)][2] for p in b.pairs)

    batches = list(sampler.stream(0, 60))
    for b in batches:
        assert new.batch(b, 0, 5) == old.batch(b, 0, 5) == mem.batch(b, 0, 5)
    with_negs = [b for b in batches if has_negatives(b)]
    assert with_negs
    for b in with_negs:
        assert new.batch(b, 2, 5) == old.batch(b, 2, 5) == mem.batch(b, 2, 5)
    with pytest.raises(HybridError, match="no hard negatives"):
        new.batch(next(b for b in batches if not has_negatives(b)), 1, 0)


def test_validation_split_views_match_the_frame_split(tmp_path):
    df = pd.DataFrame(_rows(40) + _rows(30, ["en", "es"], dataset="other", partial=True))
    write_pairs(df, tmp_path / "p", {"source": "test"})
    table = load_table(tmp_path / "p")
    train, val = split_validation(table, 5)
    ftrain, fval = split_validation(df, 5)
    assert val.n_rows == len(fval) and train.n_rows == len(ftrain)

    def keys(index):
        return {(ds, index.name(c)) for d, ds in enumerate(index.datasets) for c in index.ids_of(d)}

    assert keys(val) == set(zip(fval["dataset"], fval["xling_id"], strict=True))
    assert keys(train) == set(zip(ftrain["dataset"], ftrain["xling_id"], strict=True))
    # the same ids as the former pandas rule: the 5 smallest blake2b hashes per dataset
    for ds, grp in df.groupby("dataset"):
        ids = sorted(set(grp["xling_id"]))
        want = sorted(ids, key=lambda x: hashlib.blake2b(f"{ds}/{x}".encode(), digest_size=8).digest())[:5]
        assert set(fval[fval["dataset"] == ds]["xling_id"]) == set(want)
    # a sampler over a view equals the reference sampler over the same rows as a DataFrame
    s = HybridBatchSampler(train, "x-y", 4, seed=1)
    r = ref.HybridBatchSampler(ftrain, "x-y", 4, seed=1)
    assert [b.to_json() for b in s.epoch_plan(0)] == [b.to_json() for b in r.epoch_plan(0)]


def test_batches_command_reads_the_table_out_of_core(tmp_path, capsys):
    df = pd.DataFrame(_rows(40, ["de", "en", "zh"], partial=True))
    write_pairs(df, tmp_path / "p", {"source": "test"})
    rc = main(["batches", "--pairs", str(tmp_path / "p"), "--out", str(tmp_path / "b.jsonl"),
               "--batch-size", "8", "--steps", "12", "--seed", "4"])
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    want = ref.HybridBatchSampler(df, "hybrid", 8, 0.5, 4)
    assert lines == [b.to_json() for b in want.stream(0, 12)]
    assert any((cache_dir() / "pairs").iterdir())
