"""Secrets never reach logs, errors, params or artifacts: `redact(text)` masks the
credentials a URL or a `key=value` string may carry; `redact_config(obj)` applies it to a
nested config and masks the values of secret-named keys.

Masked: the user:password part of `scheme://user:password@host`, the values of query or
`key=value` parameters named like a secret (token, key, secret, password, passwd, pwd,
signature, sig, credential, auth), and strings that look like Hugging Face or bearer tokens.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_WORDS = {"token", "secret", "password", "passwd", "pwd", "signature", "sig", "credential",
          "credentials", "auth", "apikey"}
_PAIRS = {("api", "key"), ("access", "key"), ("private", "key")}
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][\w+.-]*://)(?P<user>[^\s/@:]*)(?::[^\s/@]*)?@")
_PARAM = re.compile(r"(?P<key>\b[A-Za-z][\w.-]*)=(?P<value>[^\s&;,'\"]+)")
_TOKEN = re.compile(r"\b(?:hf_[A-Za-z0-9]{20,}|(?i:bearer)\s+[A-Za-z0-9._~+/-]{12,}=*)")


def secret_name(name: str) -> bool:
    """True for names like `token`, `HF_TOKEN`, `api_key`, `db.password` (by word)."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    return any(w in _WORDS for w in words) or any(p in _PAIRS for p in zip(words, words[1:], strict=False))


def redact(text: str) -> str:
    """`text` with URL credentials, secret-named parameters and token-like strings masked."""
    if not isinstance(text, str) or not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _PARAM.sub(lambda m: f"{m['key']}={MASK}" if secret_name(m["key"]) else m[0], text)
    return _TOKEN.sub(MASK, text)


def redact_config(obj: Any) -> Any:
    """A copy of a nested dict/list config with secret-named keys masked and every string
    passed through `redact`."""
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(k, str) and secret_name(k) and v not in (None, "")
                    else redact_config(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_config(v) for v in obj)
    return redact(obj) if isinstance(obj, str) else obj
