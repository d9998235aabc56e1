"""Downloading benchmark files once, with sha256 checks, into the user cache.

`fetch(url, dest, sha256)` streams `url` to `dest` atomically (tqdm progress bar), checks
the sha256 before the file is renamed into place and reuses a cached copy whose hash
matches. With no network it raises a `HybridError` that says to pass a local copy.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from hybrid.errors import HybridError
from hybrid.hashing import sha256_file
from hybrid.io import atomic_path

_CHUNK = 1 << 16


def fetch(url: str, dest: str | Path, sha256: str | None = None, *, timeout: float = 60.0) -> Path:
    """Return `dest`, downloading `url` there first unless a verified copy exists.

    With `sha256` the download (and any cached copy) must match it; a mismatching
    download raises `HybridError` and leaves nothing at `dest`. Without it the file is
    trusted on first use (its hash is what the caller records).
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    try:
        resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http/https only, checked by caller)
    except urllib.error.HTTPError as exc:
        raise HybridError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HybridError(
            f"{url}: cannot download ({reason}); offline? pass --source DIR with a local copy"
        ) from None
    h = hashlib.sha256()
    with resp, atomic_path(dest) as tmp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                                        leave=False, disable=None) as bar:
            try:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            except OSError as exc:
                raise HybridError(f"{url}: download interrupted ({exc})") from None
        got = h.hexdigest()
        if sha256 is not None and got != sha256:
            raise HybridError(f"{url}: sha256 mismatch (expected {sha256}, got {got}); not using it")
    return dest
