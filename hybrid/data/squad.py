"""Reading SQuAD-v1.1 JSON files (with or without LAReQA's per-paragraph sentences).

`read_squad(path, require_sentences=...)` returns the articles of one file with every
structural problem turned into a one-line `HybridError` naming the file: empty file,
non-UTF-8 bytes, malformed JSON, missing keys, sentence lists that do not match their
breaks, duplicate question ids. A question whose `answer_start` lies in no sentence span
is *not* an error here: `answer_sentence` returns None and the caller skips it with a
counted warning.

Sentence spans are half-open character ranges `[start, end)` into the context; an answer
belongs to the sentence whose span contains its `answer_start`. Without `sentences` /
`sentence_breaks` (plain SQuAD, e.g. translate-train files), `split_sentences` splits the
context after `.`, `!`, `?` followed by whitespace, and after CJK/Devanagari/Arabic/Thai
sentence marks (`。！？।۔؟`) wherever they stand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.hashing import sha256_bytes
from hybrid.io import json_error, read_utf8


@dataclass
class QA:
    id: str
    question: str
    answer_start: int
    answer_text: str


@dataclass
class Paragraph:
    context: str
    sentences: list[str]
    breaks: list[tuple[int, int]]
    qas: list[QA] = field(default_factory=list)
    split_by_rule: bool = False  # sentences came from split_sentences, not the file

    def answer_sentence(self, answer_start: int) -> int | None:
        """Index of the sentence whose [start, end) span contains `answer_start`, or None."""
        for i, (start, end) in enumerate(self.breaks):
            if start <= answer_start < end:
                return i
        return None


@dataclass
class Article:
    title: str
    paragraphs: list[Paragraph]


@dataclass
class SquadFile:
    path: Path
    sha256: str
    articles: list[Article]

    def qas(self):
        """Yield (article_index, paragraph, qa) for every question in file order."""
        for ai, art in enumerate(self.articles):
            for para in art.paragraphs:
                for qa in para.qas:
                    yield ai, para, qa


_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[。！？।۔؟])\s*")


def split_sentences(context: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split `context` into sentences with half-open spans (the documented simple rule)."""
    sentences, breaks, start = [], [], 0
    for m in _SPLIT.finditer(context):
        end = m.start()
        if end > start and context[start:end].strip():
            sentences.append(context[start:end])
            breaks.append((start, end))
        start = m.end()
    if context[start:].strip():
        sentences.append(context[start:])
        breaks.append((start, len(context)))
    return sentences, breaks


def read_json_bytes(path: Path) -> tuple[object, str]:
    """Parse a UTF-8 JSON file; return (object, sha256) or raise a one-line HybridError."""
    raw, text = read_utf8(path)
    try:
        return json.loads(text), sha256_bytes(raw)
    except json.JSONDecodeError as exc:
        raise HybridError(f"{path}: malformed JSON ({json_error(exc)})") from None


def _get(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise HybridError(f"{where}: missing {key!r}")
    val = obj[key]
    if not isinstance(val, kind) or isinstance(val, bool):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise HybridError(f"{where}: {key!r} is not a {name}")
    return val


def _paragraph(p, where: str, require_sentences: bool) -> Paragraph:
    context = _get(p, "context", str, where)
    has_s, has_b = isinstance(p, dict) and "sentences" in p, isinstance(p, dict) and "sentence_breaks" in p
    if require_sentences or has_s or has_b:
        sentences = _get(p, "sentences", list, where)
        raw_breaks = _get(p, "sentence_breaks", list, where)
        if len(sentences) != len(raw_breaks):
            raise HybridError(f"{where}: {len(sentences)} sentences but {len(raw_breaks)} sentence_breaks")
        breaks = []
        for b in raw_breaks:
            ok = (isinstance(b, list) and len(b) == 2 and all(isinstance(x, int) for x in b)
                  and 0 <= b[0] <= b[1] <= len(context))
            if not ok:
                raise HybridError(f"{where}: bad sentence_break {b!r} (want [start, end] within the context)")
            breaks.append((b[0], b[1]))
        if not all(isinstance(s, str) for s in sentences):
            raise HybridError(f"{where}: 'sentences' must be strings")
        para = Paragraph(context, sentences, breaks)
    else:
        sentences, breaks = split_sentences(context)
        para = Paragraph(context, sentences, breaks, split_by_rule=True)
    for qi, q in enumerate(_get(p, "qas", list, where)):
        qwhere = f"{where} question {qi}"
        qid = _get(q, "id", (str, int), qwhere)
        qwhere = f"{where} question {qid!r}"
        answers = _get(q, "answers", list, qwhere)
        if not answers:
            raise HybridError(f"{qwhere}: no answers")
        start = _get(answers[0], "answer_start", int, qwhere)
        text = _get(answers[0], "text", str, qwhere)
        para.qas.append(QA(str(qid), _get(q, "question", str, qwhere), start, text))
    return para


def read_squad(path: str | Path, *, require_sentences: bool) -> SquadFile:
    """Read one SQuAD-format file; `require_sentences` makes `sentences`/`sentence_breaks` mandatory."""
    path = Path(path)
    obj, sha = read_json_bytes(path)
    if not isinstance(obj, dict):
        raise HybridError(f"{path}: not SQuAD format (top level is not an object with 'data')")
    data = _get(obj, "data", list, str(path))
    if not data:
        raise HybridError(f"{path}: no articles in 'data'")
    articles, seen = [], set()
    for ai, a in enumerate(data):
        title = a.get("title", f"article-{ai}") if isinstance(a, dict) else None
        where = f"{path}: article {ai}"
        paragraphs = [
            _paragraph(p, f"{where} paragraph {pi}", require_sentences)
            for pi, p in enumerate(_get(a, "paragraphs", list, where))
        ]
        for para in paragraphs:
            for qa in para.qas:
                if qa.id in seen:
                    raise HybridError(f"{path}: duplicate question id {qa.id!r}")
                seen.add(qa.id)
        articles.append(Article(str(title), paragraphs))
    return SquadFile(path, sha, articles)
