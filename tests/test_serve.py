"""`hybrid serve` as a real uvicorn process on a free loopback port: /search, /health, /info,
bounded requests answered with 4xx JSON (never a traceback), and a rebuilt index swapped into
the same directory picked up with no failed request."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from serving import serving

from hybrid.index import build_index

pytestmark = pytest.mark.slow  # a real server process (~30 s with its index under load)
LANGS = ("en", "de", "fr")


def write_corpus(path: Path, n: int, tag: str) -> Path:
    path.write_text("".join(json.dumps({"id": f"{tag}{i}", "text": f"{tag} passage {i} topic {i % 5}",
                                        "lang": LANGS[i % 3]}) + "\n" for i in range(n)))
    return path


@pytest.fixture(scope="module")
def index(tiny, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve")
    return build_index(str(tiny), write_corpus(d / "c.jsonl", 90, "old"), d / "index", progress=False)


@pytest.fixture(scope="module")
def url(index):
    with serving(index) as u:
        yield u


def test_search_health_info(url, index):
    r = httpx.post(url + "/search", json={"query": "topic 2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["results"]) == 1 and len(body["results"][0]) == 10 and body["k"] == 10
    hit = body["results"][0][0]
    assert set(hit) == {"rank", "id", "score", "lang", "text"} and hit["rank"] == 1
    r = httpx.post(url + "/search", json={"queries": ["topic 1", "topic 4"], "k": 3, "lang": ["de", "fr"]})
    res = r.json()["results"]
    assert r.status_code == 200 and [len(x) for x in res] == [3, 3]
    assert {h["lang"] for x in res for h in x} <= {"de", "fr"}
    assert {h["lang"] for h in httpx.post(url + "/search", json={"query": "x", "lang": "en"}).json()["results"][0]} == {"en"}
    manifest = json.loads((index / "manifest.json").read_text())
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["count"] == 90
    info = httpx.get(url + "/info").json()
    assert info.pop("digest") == health["digest"] and info == manifest


BIG = "x" * 70_000
BAD = [
    ({"query": "a", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"query": "a", "k": 101}, 422, "k: Input should be less than or equal to 100"),
    ({"query": "a", "k": "5"}, 422, "k: Input should be a valid integer"),
    ({"queries": ["a"] * 33}, 422, "queries: List should have at most 32 items"),
    ({"queries": []}, 422, "queries: List should have at least 1 item"),
    ({"query": "a" * 1001}, 422, "query: String should have at most 1000 characters"),
    ({"query": "   "}, 422, "query: String should match pattern"),
    ({"query": "a", "queries": ["b"]}, 422, "give either 'query'"),
    ({}, 422, "give either 'query'"),
    ({"query": "a", "top": 3}, 422, "top: Extra inputs are not permitted"),
    ({"query": "a", "lang": "xx"}, 400, "unknown language code 'xx'"),
    ({"query": "a", "lang": "EN"}, 422, "lang"),
    ([1, 2], 422, "Input should be a valid dictionary"),
    ({"query": BIG}, 413, "request body over 65536 bytes"),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[m[:28] for _, _, m in BAD])
def test_bad_requests_get_one_line_json_4xx(url, body, status, message):
    r = httpx.post(url + "/search", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in r.text


def test_malformed_bodies_methods_and_paths(url):
    for method, path, kw, status in [
        ("POST", "/search", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
        ("POST", "/search", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 422),
        ("POST", "/search", {"content": iter([b"{" * 40_000] * 2)}, 413),  # chunked: no Content-Length
        ("GET", "/search", {}, 405),
        ("GET", "/nowhere", {}, 404),
    ]:
        r = httpx.request(method, url + path, **kw)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/json" and r.json()["error"]
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input id="q"' in page.text and "http://" not in page.text and "https://" not in page.text



def _same_hits(got: list[dict], want: list[dict]) -> bool:
    """Equal length and scores rank by rank (to 1e-5: a query's vector in a batch differs
    from its vector alone by rounding), and equal ids except where scores tie."""
    def tied(g):
        return any(h["id"] == g["id"] and abs(h["score"] - g["score"]) <= 1e-5 for h in want)

    return len(got) == len(want) and all(
        abs(g["score"] - w["score"]) <= 1e-5 and (g["id"] == w["id"] or tied(g))
        for g, w in zip(got, want, strict=True))


def test_concurrent_requests_are_searched_together_with_their_own_k_and_languages(url):
    """Requests in flight together are encoded and searched in one batch: each still gets
    exactly what it gets alone (its k, its language filter), and a refused language fails
    only its own request."""
    from concurrent.futures import ThreadPoolExecutor

    bodies = [{"query": f"passage topic {i % 5}", "k": 1 + i % 7} for i in range(8)]
    bodies += [{"queries": ["topic 1", "old passage 12"], "k": 4, "lang": ["de", "fr"]},
               {"query": "topic 3", "k": 12, "lang": "en"}, {"query": "topic 3", "lang": "xx"},
               {"query": "topic 2", "k": 2, "lang": "fr"}] * 3
    alone = [httpx.post(url + "/search", json=b) for b in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:  # several rounds: batches of mixed requests
        rounds = [list(pool.map(lambda b: httpx.post(url + "/search", json=b, timeout=60), bodies))
                  for _ in range(3)]
    for together in rounds:
        for body, a, t in zip(bodies, alone, together, strict=True):
            assert t.status_code == a.status_code, (body, t.text)
            if body.get("lang") == "xx":
                assert t.status_code == 400 and "unknown language code 'xx'" in t.json()["error"]
                continue
            assert t.status_code == 200, t.text
            res_a, res_t = a.json()["results"], t.json()["results"]
            want_langs = {body["lang"]} if isinstance(body.get("lang"), str) else set(body.get("lang") or LANGS)
            for got, want in zip(res_t, res_a, strict=True):
                assert len(got) == body["k"] and {h["lang"] for h in got} <= want_langs
                assert _same_hits(got, want), (body, got, want)

def test_rebuilt_index_is_served_with_no_failed_request(url, index, tiny):
    """Clients keep searching while the index directory is rebuilt over another corpus:
    every request succeeds, and within seconds the answers come from the new version."""
    new = write_corpus(index.parent / "c2.jsonl", 60, "new")
    build_index(str(tiny), new, index.parent / "scratch", kind="hnsw", progress=False)  # encodes
    before = httpx.get(url + "/health").json()["digest"]
    failures, answered, stop = [], {"old": 0, "new": 0}, threading.Event()

    def client():
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.post(url + "/search", json={"query": "passage topic 3", "k": 5})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                ids = [h["id"] for h in r.json()["results"][0]]
                answered["new" if all(i.startswith("new") for i in ids) else "old"] += 1
                time.sleep(0.02)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        build_index(str(tiny), new, index, kind="hnsw", progress=False)  # from the cache: a swap
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["digest"] == before:
            assert time.monotonic() < deadline, "the service did not pick up the new index"
            time.sleep(0.2)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert answered["old"] > 0 and answered["new"] > 0, answered
    assert httpx.get(url + "/info").json()["index"]["kind"] == "hnsw"
