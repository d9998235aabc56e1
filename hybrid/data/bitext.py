"""Parallel sentences for bitext retrieval: Tatoeba (LASER test set) and aligned files.

Two layouts, one result (`Bitext`):

- Tatoeba (`read_tatoeba(source, languages, directions)`): `tatoeba.{xxx}-eng.{xxx}` and
  `tatoeba.{xxx}-eng.eng`, aligned line by line, with ISO 639-3 codes in the names. The
  languages are given as ISO 639-1 codes and mapped through `TATOEBA_CODES` (the XQuAD-R
  languages are the default). The English sides differ between pairs, so each pair has
  its own English side.
- Aligned files (`read_aligned(source, languages)`), e.g. MTOP's parallel utterances: a
  directory of `{lang}.txt` files (ISO 639-1 names), UTF-8, one sentence per line, line i
  of every file the translation of line i of the others; the same number of lines in all.
  Every ordered pair of distinct languages is a pair.

A `Bitext` holds the texts of each side (`sides`: key -> aligned list) and the pairs to
evaluate (`pairs`: `BitextPair(key, direction, src, tgt)`; key "de-en" means German
sentences retrieve among English ones). Empty lines are errors (they would make every
empty line a translation of every other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.langs import XQUAD_R_LANGS, validate_lang
from hybrid.paths import check_data_path

#: ISO 639-1 -> the ISO 639-3 code of the Tatoeba file names (the XQuAD-R languages, MTOP's
#: and common others).
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "ca": "cat", "cs": "ces", "da": "dan",
    "de": "deu", "el": "ell", "es": "spa", "et": "est", "eu": "eus", "fa": "pes", "fi": "fin",
    "fr": "fra", "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun", "hy": "hye", "id": "ind",
    "it": "ita", "ja": "jpn", "ka": "kat", "kk": "kaz", "ko": "kor", "lt": "lit", "lv": "lvs",
    "mk": "mkd", "ml": "mal", "mr": "mar", "nl": "nld", "pl": "pol", "pt": "por", "ro": "ron",
    "ru": "rus", "sk": "slk", "sl": "slv", "sq": "sqi", "sr": "srp", "sv": "swe", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "uk": "ukr", "ur": "urd",
    "vi": "vie", "zh": "cmn",
}
#: Default Tatoeba languages: the XQuAD-R languages other than English.
TATOEBA_DEFAULT = tuple(x for x in XQUAD_R_LANGS if x != "en")
DIRECTIONS = ("xx-en", "en-xx", "both")


@dataclass(frozen=True)
class BitextPair:
    """Sentences of side `src` retrieve their translations among the sentences of `tgt`."""

    key: str  # "{src lang}-{tgt lang}"
    direction: str  # "xx-en", "en-xx" (Tatoeba) or "all" (aligned files)
    src: str  # key into Bitext.sides
    tgt: str


@dataclass
class Bitext:
    name: str
    languages: list[str]
    sides: dict[str, list[str]]
    pairs: list[BitextPair]
    meta: dict = field(default_factory=dict)
    side_langs: dict[str, str] = field(default_factory=dict)  # side key -> its language


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise HybridError(f"{path}: missing")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HybridError(f"{path}: not UTF-8 (invalid byte at offset {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [x.rstrip("\r") for x in lines]
    if not lines:
        raise HybridError(f"{path}: empty file")
    empty = next((i for i, x in enumerate(lines) if not x.strip()), None)
    if empty is not None:
        raise HybridError(f"{path}: line {empty + 1} is empty")
    return lines


def _langs(languages, default) -> list[str]:
    langs = list(default if languages is None else languages)
    for x in langs:
        validate_lang(x, where="--languages")
    if len(set(langs)) != len(langs):
        raise HybridError(f"--languages: duplicate language in {','.join(langs)}")
    return langs


def read_tatoeba(source=None, languages=None, directions: str = "xx-en") -> Bitext:
    """Tatoeba pairs for `languages` (ISO 639-1; default `TATOEBA_DEFAULT`) from `source`
    (default: the offline copy `hybrid.paths.default_data_dir()/tatoeba`); `directions`:
    "xx-en" (default: X retrieves English), "en-xx" or "both"."""
    from hybrid.paths import default_data_dir

    if directions not in DIRECTIONS:
        raise HybridError(f"--directions: must be one of {', '.join(DIRECTIONS)}, not {directions!r}")
    if source is None:
        base = default_data_dir()
        if base is None or not (base / "tatoeba").is_dir():
            raise HybridError("tatoeba: no offline copy (set HYBRID_DATA or pass --source DIR)")
        source = base / "tatoeba"
    d = check_data_path(source, what="--source")
    if not d.is_dir():
        raise HybridError(f"--source: {d} is not a directory")
    langs = _langs(languages, TATOEBA_DEFAULT)
    sides: dict[str, list[str]] = {}
    pairs: list[BitextPair] = []
    files: dict[str, str] = {}
    for x in langs:
        if x == "en":
            raise HybridError("--languages: en is the pivot of every Tatoeba pair; leave it out")
        if x not in TATOEBA_CODES:
            raise HybridError(f"--languages: no Tatoeba code known for {x!r}")
        code = TATOEBA_CODES[x]
        fx, fe = d / f"tatoeba.{code}-eng.{code}", d / f"tatoeba.{code}-eng.eng"
        sx, se = _read_lines(fx), _read_lines(fe)
        if len(sx) != len(se):
            raise HybridError(f"{fx}: {len(sx)} lines but {fe.name} has {len(se)}")
        sides[f"{code}-eng.{code}"], sides[f"{code}-eng.eng"] = sx, se
        files[x] = str(fx)
        if directions in ("xx-en", "both"):
            pairs.append(BitextPair(f"{x}-en", "xx-en", f"{code}-eng.{code}", f"{code}-eng.eng"))
        if directions in ("en-xx", "both"):
            pairs.append(BitextPair(f"en-{x}", "en-xx", f"{code}-eng.eng", f"{code}-eng.{code}"))
    side_langs = {k: ("en" if k.endswith(".eng") else x) for x in langs
                  for k in (f"{TATOEBA_CODES[x]}-eng.{TATOEBA_CODES[x]}", f"{TATOEBA_CODES[x]}-eng.eng")}
    return Bitext("tatoeba", langs, sides, pairs,
                  {"source": str(d), "directions": directions, "files": files}, side_langs)


def read_aligned(source, languages=None) -> Bitext:
    """Every ordered pair of the `{lang}.txt` files in `source` (or of `languages`)."""
    if source is None:
        raise HybridError("--source: bitext needs a directory of {lang}.txt files")
    d = check_data_path(source, what="--source")
    if not d.is_dir():
        raise HybridError(f"--source: {d} is not a directory")
    found = sorted(p.stem for p in d.glob("*.txt"))
    for x in found:
        validate_lang(x, where=f"{d / (x + '.txt')}")
    langs = _langs(languages, found)
    if len(langs) < 2:
        raise HybridError(f"--source: {d} needs at least two {{lang}}.txt files (found {len(langs)})")
    sides = {x: _read_lines(d / f"{x}.txt") for x in langs}
    n = {x: len(v) for x, v in sides.items()}
    if len(set(n.values())) != 1:
        raise HybridError(f"--source: {d}: files are not aligned (lines: "
                          + ", ".join(f"{x} {k}" for x, k in n.items()) + ")")
    pairs = [BitextPair(f"{x}-{y}", "all", x, y) for x in langs for y in langs if x != y]
    return Bitext("bitext", langs, sides, pairs, {"source": str(d), "directions": "all"},
                  {x: x for x in langs})
