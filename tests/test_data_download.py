"""The download path against a real HTTP server on 127.0.0.1 serving the shared files."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import socket
import threading

import pytest

from hybrid.cli import main
from hybrid.data import read_lareqa
from hybrid.data.lareqa import BENCHMARKS
from hybrid.errors import HybridError


@contextlib.contextmanager
def serve(directory):
    """Serve `directory` over HTTP on 127.0.0.1; yield the base URL and a request log."""
    log = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("HYBRID_CACHE", str(d))
    return d


def test_download_verifies_caches_and_reuses(data_dir, cache):
    with serve(data_dir / "lareqa") as (url, log):
        b = read_lareqa(f"{url}/xquad-r", "xquad-r", ["en", "th"])
        assert sorted(log) == ["/xquad-r/en.json", "/xquad-r/th.json"]
    assert b.counts()["candidates"] == {"en": 1180, "th": 852}
    cached = sorted(p.name for p in cache.rglob("*.json"))
    assert cached == ["en.json", "th.json"]
    for lang in ("en", "th"):
        assert b.meta["sources"][lang]["sha256"] == BENCHMARKS["xquad-r"].sha256[lang]
        assert b.meta["sources"][lang]["url"] == f"{url}/xquad-r/{lang}.json"
    # the server is gone: the verified cache answers
    again = read_lareqa(f"{url}/xquad-r", "xquad-r", ["en", "th"])
    assert again.counts() == b.counts()


def test_sha_mismatch_is_refused_and_nothing_cached(data_dir, cache, tmp_path):
    site = tmp_path / "site" / "xquad-r"
    site.mkdir(parents=True)
    shutil.copy(data_dir / "lareqa" / "xquad-r" / "en.json", site / "en.json")
    with open(site / "en.json", "ab") as f:
        f.write(b"\n")  # same JSON, different bytes
    with serve(site.parent) as (url, _):
        with pytest.raises(HybridError, match=r"en\.json: sha256 mismatch \(expected 7b0954f3"):
            read_lareqa(f"{url}/xquad-r", "xquad-r", ["en"])
    assert not list(cache.rglob("*.json")) and not list(cache.rglob("*.tmp"))


def test_corrupted_cache_is_downloaded_again(data_dir, cache):
    with serve(data_dir / "lareqa") as (url, log):
        read_lareqa(f"{url}/xquad-r", "xquad-r", ["en"])
        (cached,) = list(cache.rglob("en.json"))
        cached.write_bytes(b"{}")
        b = read_lareqa(f"{url}/xquad-r", "xquad-r", ["en"])
        assert log.count("/xquad-r/en.json") == 2
    assert len(b.questions) == 1190


def test_unpinned_benchmark_is_trusted_on_first_use(data_dir, cache):
    with serve(data_dir / "lareqa") as (url, _):
        b = read_lareqa(f"{url}/mlqa-r-sample", "mlqa-r", ["en", "de"])
    assert b.counts()["questions"] == {"en": 57, "de": 25}
    assert len(b.meta["sources"]["en"]["sha256"]) == 64


def test_http_404_is_a_clear_error(data_dir, cache):
    with serve(data_dir / "lareqa") as (url, _):
        with pytest.raises(HybridError, match=r"nope/en\.json: download failed \(HTTP 404"):
            read_lareqa(f"{url}/nope", "xquad-r", ["en"])


def test_offline_without_local_copy_is_exit_2(cache, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["data", "prepare", "--benchmark", "xquad-r", "--source", f"http://127.0.0.1:{port}/x",
               "--languages", "en", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: http://127.0.0.1:{port}/x/en.json: cannot download") and "offline?" in err
    assert not (tmp_path / "out").exists()


def test_upstream_urls_are_pinned():
    xq, ml = BENCHMARKS["xquad-r"], BENCHMARKS["mlqa-r"]
    assert xq.url.endswith("/lareqa/9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c/xquad-r")
    assert ml.url.endswith("/lareqa/354d67d1cd066854cdfbf5ad0e6105528976141d/mlqa-r")
    assert sorted(xq.sha256) == sorted(xq.languages)
