"""LAReQA benchmarks (XQuAD-R, MLQA-R) as three plain tables.

`read_lareqa(source, benchmark, languages)` reads one SQuAD-format file per language
(`{lang}.json` with per-paragraph `sentences` and `sentence_breaks`) and returns a
`Benchmark`:

- questions: qid, xling_id, lang, text, article — one row per question and language;
  `qid = "{lang}/{xling_id}"`, `xling_id` is the question id shared across languages.
- candidates: cid, lang, sentence, context, context_id, position, article — one row per
  sentence *occurrence* (a sentence repeated within or across paragraphs is a distinct
  candidate; this is what gives XQuAD-R's published pool sizes). `context_id` is the
  paragraph's index in its language file, `position` the sentence's index in the
  paragraph, `cid = "{lang}/{context_id}/{position}"`.
- qrels: qid, cid — for each question, the answer sentence (the candidate whose
  [start, end) span contains `answer_start`) of its xling_id in every language that has
  it. Mono settings keep rows whose cid language equals the qid language.

Articles are identified across languages by the question ids they share (union-find over
(language, article) pairs); an article is named by its English title, else by the title in
the first language that has it. Ids that tie two articles of one language together are an
error (parallel ids that do not match). XQuAD-R must be fully parallel (the same ids in
every language); MLQA-R is partially parallel (an id exists in 2 to 4 of 7 languages).

A question whose answer lies in no sentence is skipped with a counted warning (kept in
`Benchmark.meta["warnings"]`); every other problem is a one-line `HybridError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from hybrid.data.download import fetch
from hybrid.data.squad import SquadFile, read_squad
from hybrid.errors import HybridError
from hybrid.io import output_dir, write_json, write_parquet
from hybrid.langs import MLQA_R_LANGS, XQUAD_R_LANGS, validate_lang
from hybrid.paths import cache_dir, check_data_path, default_data_dir
from hybrid.redact import redact

BENCHMARK_FILES = ("meta.json", "questions.parquet", "candidates.parquet", "qrels.parquet")
QUESTION_COLUMNS = ["qid", "xling_id", "lang", "text", "article"]
CANDIDATE_COLUMNS = ["cid", "lang", "sentence", "context", "context_id", "position", "article"]
QREL_COLUMNS = ["qid", "cid"]


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the tool knows about a benchmark: its languages and pinned upstream files."""

    name: str
    languages: tuple[str, ...]
    url: str  # base; files are f"{url}/{lang}.json"
    sha256: dict[str, str] | None  # upstream file hashes; None: trusted on first download
    fully_parallel: bool
    local: tuple[str, ...] | None  # default offline copy under hybrid.paths.default_data_dir()


_RAW = "https://raw.githubusercontent.com/google-research-datasets/lareqa"
BENCHMARKS: dict[str, BenchmarkSpec] = {
    "xquad-r": BenchmarkSpec(
        "xquad-r", XQUAD_R_LANGS, f"{_RAW}/9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c/xquad-r",
        {
            "ar": "c52922d3b8ac1ae03ed5ac38647ad59870dca3dda2beefe18ecdc30729acb69d",
            "de": "16fb0f4bf4916154b585a20c24c66074591c9718a1affe764ff4697572328949",
            "el": "163fd43ee785a30eb534ae2061e9eaa766a7ee4e8ffce5e4b422480c150f64b6",
            "en": "7b0954f39297c27a31fef610f0883337dd2907fa8699151dc922afdd0fa12ffe",
            "es": "f8e836b2d91009c4363e04315f7ede363eedbbb49c67dda60de6c4aa782f58de",
            "hi": "ea45ba8ae4513d1533b222bebdc02a90bc319c055d3aeea68584a053d2e92872",
            "ru": "7f4dff853538b9a5fcc28c070b8bb983a5c5d190ac747b8e005a1ada9cab18f1",
            "th": "c3a041864c3a9fb0b4dd91cfdf99cf36b411b3e704c58a303c97bc6dc786cfe4",
            "tr": "f3e8c13002bbce154a4578f535f7533cb70f3da08840e6b62735935baec7bd94",
            "vi": "e35926bf5cc6fc6ecbdfca49467aabeb454f08d152d7818143a906bd31dde995",
            "zh": "80c2cde7b9c2fb134c303cbb52f2ba396ead9eb0014aec43993543d2ba9e93ed",
        },
        fully_parallel=True, local=("lareqa", "xquad-r"),
    ),
    # The full MLQA-R files are not in the offline data, so their hashes are not pinned
    # here: the commit pins the content and the hash of what was fetched goes to meta.json.
    "mlqa-r": BenchmarkSpec(
        "mlqa-r", MLQA_R_LANGS, f"{_RAW}/354d67d1cd066854cdfbf5ad0e6105528976141d/mlqa-r",
        None, fully_parallel=False, local=None,
    ),
}


def benchmark_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise HybridError(f"--benchmark: unknown benchmark {name!r} (choose {', '.join(BENCHMARKS)})")
    return BENCHMARKS[name]


def _languages(spec: BenchmarkSpec, languages) -> list[str]:
    if languages is None:
        return list(spec.languages)
    langs = [validate_lang(lang, where="--languages") for lang in languages]
    bad = [lang for lang in langs if lang not in spec.languages]
    if bad:
        raise HybridError(f"--languages: {','.join(bad)} not in {spec.name} ({','.join(spec.languages)})")
    if not langs or len(set(langs)) != len(langs):
        raise HybridError(f"--languages: empty or duplicate list {langs!r}")
    return langs


def download_benchmark_files(name: str, source: str | Path | None,
                             languages: list[str] | None = None) -> dict[str, dict]:
    """Fetch (or find) benchmark `name`'s files for `languages` (default: all of it) from
    `source` (`resolve_files`); sha256-checked, cached in the user cache."""
    spec = benchmark_spec(name)
    return resolve_files(spec, source, _languages(spec, languages))


def resolve_files(spec: BenchmarkSpec, source: str | Path | None, languages: list[str]) -> dict[str, dict]:
    """Map each language to {"path", "url", "sha256"}: a local file or a cached download.

    `source` is a directory holding `{lang}.json`, an http(s) base URL, `"upstream"` for
    the pinned upstream files, or None for the offline copy if there is one, else upstream.
    """
    if source is None:
        data = default_data_dir()
        local = data.joinpath(*spec.local) if (data and spec.local) else None
        source = local if local is not None and local.is_dir() else "upstream"
    src = str(source)
    if src == "upstream":
        src = spec.url
    if src.startswith(("http://", "https://")):
        base = src.rstrip("/")
        import hashlib

        folder = cache_dir() / "lareqa" / spec.name / hashlib.sha256(base.encode()).hexdigest()[:16]
        out = {}
        for lang in languages:
            url = f"{base}/{lang}.json"
            sha = spec.sha256.get(lang) if spec.sha256 else None
            out[lang] = {"path": fetch(url, folder / f"{lang}.json", sha), "url": url}
        return out
    if "://" in src:
        raise HybridError(f"--source: unsupported URL scheme in {src!r} (use a directory or http(s)://)")
    folder = check_data_path(src, what="--source")
    if not folder.is_dir():
        raise HybridError(f"--source: {folder} is not a directory")
    out = {}
    for lang in languages:
        path = folder / f"{lang}.json"
        if not path.is_file():
            raise HybridError(f"{folder}: missing {lang}.json for {spec.name}")
        out[lang] = {"path": path, "url": None}
    return out


@dataclass
class Benchmark:
    """A LAReQA benchmark as tables (schemas in the module docstring)."""

    name: str
    languages: list[str]
    questions: pd.DataFrame
    candidates: pd.DataFrame
    qrels: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def articles(self) -> list[str]:
        return sorted(set(self.questions["article"]) | set(self.candidates["article"]))

    def counts(self) -> dict:
        q = self.questions["lang"].value_counts()
        c = self.candidates["lang"].value_counts()
        return {
            "questions": {lang: int(q.get(lang, 0)) for lang in self.languages},
            "candidates": {lang: int(c.get(lang, 0)) for lang in self.languages},
            "total_questions": len(self.questions),
            "total_candidates": len(self.candidates),
            "qrels": len(self.qrels),
            "xling_ids": int(self.questions["xling_id"].nunique()),
            "articles": len(self.articles),
        }

    def subset(self, articles=None, languages=None) -> Benchmark:
        """The benchmark restricted to some articles and/or languages (qrels follow)."""
        q, c = self.questions, self.candidates
        langs = list(self.languages)
        if languages is not None:
            langs = [lang for lang in self.languages if lang in set(languages)]
            unknown = set(languages) - set(self.languages)
            if unknown:
                raise HybridError(f"languages: {','.join(sorted(unknown))} not in {self.name} ({','.join(self.languages)})")
            q, c = q[q["lang"].isin(langs)], c[c["lang"].isin(langs)]
        if articles is not None:
            arts = set(articles)
            q, c = q[q["article"].isin(arts)], c[c["article"].isin(arts)]
        r = self.qrels
        r = r[r["qid"].isin(set(q["qid"])) & r["cid"].isin(set(c["cid"]))]
        out = replace(self, languages=langs, questions=q.reset_index(drop=True),
                      candidates=c.reset_index(drop=True), qrels=r.reset_index(drop=True),
                      meta=dict(self.meta))
        out.meta["languages"] = langs
        out.meta["counts"] = out.counts()
        return out


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _check_parallel(spec: BenchmarkSpec, files: dict[str, SquadFile]) -> None:
    ids = {lang: {qa.id for _, _, qa in f.qas()} for lang, f in files.items()}
    if spec.fully_parallel:
        ref_lang = next(iter(files))
        for lang, got in ids.items():
            missing, extra = ids[ref_lang] - got, got - ids[ref_lang]
            if missing or extra:
                ex = sorted(missing or extra)[0]
                raise HybridError(
                    f"{files[lang].path}: parallel ids do not match {ref_lang}.json "
                    f"({len(missing)} missing, {len(extra)} extra, e.g. {ex!r}); "
                    f"{spec.name} must have the same question ids in every language")


def article_names(files: dict[str, SquadFile]) -> dict[tuple[str, int], str]:
    """Name every (lang, article index) consistently across languages (see module doc)."""
    uf = _UnionFind()
    first: dict[str, tuple[str, int]] = {}
    for lang, f in files.items():
        for ai, _, qa in f.qas():
            node = (lang, ai)
            uf.find(node)
            if qa.id in first:
                uf.union(first[qa.id], node)
            else:
                first[qa.id] = node
        for ai in range(len(f.articles)):
            uf.find((lang, ai))
    groups: dict = {}
    for node in uf.parent:
        groups.setdefault(uf.find(node), []).append(node)
    order = {lang: i for i, lang in enumerate(files)}
    names, used = {}, {}
    for members in sorted(groups.values(), key=lambda m: min((order[lg], ai) for lg, ai in m)):
        by_lang: dict[str, int] = {}
        for lang, ai in members:
            if lang in by_lang:
                t1 = files[lang].articles[by_lang[lang]].title
                t2 = files[lang].articles[ai].title
                raise HybridError(
                    f"{files[lang].path}: parallel ids do not match: articles {t1!r} and {t2!r} "
                    f"share question ids with one article in another language")
            by_lang[lang] = ai
        lang = "en" if "en" in by_lang else min(by_lang, key=order.__getitem__)
        name = files[lang].articles[by_lang[lang]].title
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}#{used[name]}"
        for node in members:
            names[node] = name
    return names


def from_squad_files(spec: BenchmarkSpec, files: dict[str, SquadFile]) -> Benchmark:
    """Build the benchmark tables from parsed per-language files."""
    _check_parallel(spec, files)
    names = article_names(files)
    questions, candidates, answers, skipped = [], [], {}, {}
    for lang, f in files.items():
        context_id = 0
        for ai, art in enumerate(f.articles):
            article = names[(lang, ai)]
            for para in art.paragraphs:
                for pos, sent in enumerate(para.sentences):
                    candidates.append((f"{lang}/{context_id}/{pos}", lang, sent, para.context,
                                       context_id, pos, article))
                for qa in para.qas:
                    pos = para.answer_sentence(qa.answer_start)
                    if pos is None:
                        skipped[lang] = skipped.get(lang, 0) + 1
                        continue
                    answers.setdefault(qa.id, {})[lang] = f"{lang}/{context_id}/{pos}"
                    questions.append((f"{lang}/{qa.id}", qa.id, lang, qa.question, article))
                context_id += 1
    qrels = [(qid, cid) for qid, xid, _, _, _ in questions for cid in answers[xid].values()]
    warnings = [
        f"{files[lang].path}: skipped {n} question(s) whose answer_start is in no sentence"
        for lang, n in skipped.items()
    ]
    b = Benchmark(
        spec.name, list(files),
        pd.DataFrame(questions, columns=QUESTION_COLUMNS),
        pd.DataFrame(candidates, columns=CANDIDATE_COLUMNS).astype({"context_id": "int64", "position": "int64"}),
        pd.DataFrame(qrels, columns=QREL_COLUMNS),
    )
    b.meta = {"benchmark": spec.name, "languages": list(files), "counts": b.counts(),
              "sources": {}, "warnings": warnings}
    return b


def read_lareqa(source: str | Path | None, benchmark: str, languages: list[str] | None = None) -> Benchmark:
    """Read a LAReQA benchmark from a directory, an http(s) base URL or `"upstream"`."""
    spec = benchmark_spec(benchmark)
    langs = _languages(spec, languages)
    located = resolve_files(spec, source, langs)
    files = {lang: read_squad(loc["path"], require_sentences=True) for lang, loc in located.items()}
    b = from_squad_files(spec, files)
    b.meta["sources"] = {
        lang: {"path": str(loc["path"]), "url": redact(loc["url"]), "sha256": files[lang].sha256}
        for lang, loc in located.items()
    }
    return b


def write_benchmark(b: Benchmark, out_dir: str | Path) -> Path:
    """Write questions/candidates/qrels Parquet and meta.json as one set: built in a
    temporary directory and swapped in for `out_dir` whole (`hybrid.io.output_dir`)."""
    out = Path(out_dir)
    with output_dir(out, BENCHMARK_FILES) as tmp:
        write_parquet(tmp / "questions.parquet", b.questions[QUESTION_COLUMNS])
        write_parquet(tmp / "candidates.parquet", b.candidates[CANDIDATE_COLUMNS])
        write_parquet(tmp / "qrels.parquet", b.qrels[QREL_COLUMNS])
        meta = dict(b.meta, benchmark=b.name, languages=list(b.languages), counts=b.counts())
        write_json(tmp / "meta.json", meta)
    return out


def load_benchmark(path: str | Path) -> Benchmark:
    """Load what `write_benchmark` wrote."""
    d = check_data_path(path, what="--source")
    need = list(BENCHMARK_FILES)
    missing = [n for n in need if not (d / n).is_file()]
    if missing:
        raise HybridError(f"{d}: not a prepared benchmark (missing {', '.join(missing)}); "
                          f"run `hybrid data prepare`")
    try:
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HybridError(f"{d / 'meta.json'}: unreadable ({exc})") from None
    tables = {}
    for name, cols in (("questions", QUESTION_COLUMNS), ("candidates", CANDIDATE_COLUMNS),
                       ("qrels", QREL_COLUMNS)):
        df = pd.read_parquet(d / f"{name}.parquet")
        lacking = [c for c in cols if c not in df.columns]
        if lacking:
            raise HybridError(f"{d / f'{name}.parquet'}: missing columns {', '.join(lacking)}")
        tables[name] = df[cols]
    return Benchmark(meta["benchmark"], list(meta["languages"]), tables["questions"],
                     tables["candidates"], tables["qrels"], meta)
