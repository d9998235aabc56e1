"""Test helper: `hybrid serve` as a real process (uvicorn) on a free loopback port."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def serving(index: Path, timeout: float = 120) -> Iterator[str]:
    """Run `hybrid serve --index INDEX` on 127.0.0.1 and a free port; yield its base URL once
    /health answers; stop it at exit (its log is in the assertion if it never came up)."""
    import httpx

    from infra.stack import free_port

    port = free_port()
    log = index.parent / f"serve-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hybrid", "serve", "--index", str(index),
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"hybrid serve exited {proc.returncode}: {log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"hybrid serve not up: {log.read_text()[-3000:]}"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
