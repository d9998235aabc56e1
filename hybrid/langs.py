"""Language codes: validated before they become file names, columns or settings."""

from __future__ import annotations

import re

from hybrid.errors import HybridError

XQUAD_R_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_R_LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")

# ISO 639-1 codes the tool accepts (the languages of mE5 / XLM-R pretraining and more).
KNOWN_LANGS = frozenset(
    """af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl
    gu ha he hi hr hu hy id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms
    my ne nl no om or pa pl ps pt ro ru sa sd si sk sl so sq sr su sv sw ta te th tl tr ug
    uk ur uz vi xh yi zh""".split()
)

_CODE = re.compile(r"^[a-z]{2,3}$")


def validate_lang(code: str, *, where: str = "") -> str:
    """Return `code` if it is a known ISO 639-1 language code, else raise HybridError."""
    ctx = f"{where}: " if where else ""
    if not isinstance(code, str) or not _CODE.match(code):
        raise HybridError(f"{ctx}invalid language code {code!r} (expected e.g. 'en', 'de', 'zh')")
    if code not in KNOWN_LANGS:
        raise HybridError(f"{ctx}unknown language code {code!r}")
    return code


def parse_langs(spec: str | None, *, allowed: tuple[str, ...] | None = None) -> list[str] | None:
    """Parse 'en,de,zh' into a validated list (None, the option left out, stays None: all
    languages; an empty list such as '' or ',' is an error)."""
    if spec is None:
        return None
    langs = [validate_lang(s.strip(), where="--languages") for s in spec.split(",") if s.strip()]
    if not langs:
        raise HybridError(f"--languages: no language in {spec!r} (leave the option out for all)")
    if allowed is not None:
        bad = [lang for lang in langs if lang not in allowed]
        if bad:
            raise HybridError(f"--languages: {','.join(bad)} not in this benchmark ({','.join(allowed)})")
    if len(set(langs)) != len(langs):
        raise HybridError(f"--languages: duplicate language in {spec!r}")
    return langs
