"""The search service: `create_app(index_dir) -> FastAPI` (run by `hybrid serve`).

Endpoints:
- `POST /search` with JSON {"query": "..."} or {"queries": [...]}, optional "k" (default
  10) and "lang" ("de" or ["de", "fr"]): {"results": [[hit, ...] per query], "k",
  "index": {"digest", "created", "model"}, "took_ms"}; a hit is rank, id, score, lang, text.
- `GET /health`: {"status": "ok", "count", "digest"}.
- `GET /info`: the index manifest, plus "digest" (sha256 of manifest.json).
- `GET /`: one self-contained HTML search page (no external assets; results are put in the
  page with textContent, so a passage's text is never read as HTML).

Bounds (`Limits`): a request body of at most 64 KiB (413), at most 32 queries of at most
1000 characters each, 1 <= k <= 100, at most 16 languages. Every refusal is a 4xx JSON
{"error": "<one line>"}; an unexpected failure is a 500 {"error": "internal error"} with
the traceback in the server's log only, never in the response.

Index updates: a watcher thread stats `DIR/manifest.json` at most once per
`watch_interval` seconds (inode, size, mtime); when that changed it calls
`Searcher.reload()`, which compares the content hash and swaps the whole index in one
reference assignment. A rebuild (`build_index` swaps the directory in whole) is thus served
within about a second, and requests in flight finish on the version they started with: no
request fails during the switch. `POST /reload` does the same at once. A directory that
cannot be opened keeps the old version serving (logged, retried on the next change).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from hybrid.errors import HybridError
from hybrid.index.searcher import Searcher

log = logging.getLogger("hybrid.serve")


@dataclass(frozen=True)
class Limits:
    """Bounds on one request."""

    max_body: int = 64 * 1024
    max_queries: int = 32
    max_query_chars: int = 1000
    max_k: int = 100
    max_langs: int = 16


def create_app(index_dir: str | os.PathLike, *, limits: Limits = Limits(),
               watch_interval: float = 1.0, threads: int | None = None, backend: str | None = None):
    """The FastAPI app serving the index directory `index_dir` (opened now: a directory that
    is not an index raises HybridError here, before any request). `threads`: torch, ONNX
    Runtime and FAISS threads per operation (None: their defaults, the machine's cores);
    requests run concurrently and are searched in batches by one thread (`_SearchBatcher`).
    `backend`: the query encoder's (`Searcher`; default the index's own)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException

    from hybrid.index.page import PAGE

    if threads:
        import faiss
        import torch

        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    searcher = Searcher(index_dir, backend=backend, threads=threads)
    watcher = _Watcher(searcher, watch_interval)
    batcher = _SearchBatcher(searcher, max_batch=max(64, limits.max_queries))
    SearchRequest = _request_model(limits)

    @asynccontextmanager
    async def lifespan(app):
        watcher.start()
        batcher.start()
        try:
            yield
        finally:
            watcher.stop()
            batcher.stop()

    app = FastAPI(title="hybrid search", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.searcher = searcher
    app.add_middleware(_BodyLimit, max_body=limits.max_body)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": _validation_line(exc)}, status_code=422)

    @app.exception_handler(HybridError)
    async def _refused(request: Request, exc: HybridError):
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    def search(req) -> dict:
        t0 = time.perf_counter()
        queries = [req.query] if req.query is not None else list(req.queries)
        langs = [req.lang] if isinstance(req.lang, str) else req.lang
        state = searcher.current()
        results = batcher.search(state, queries, req.k, langs)
        return {"results": results, "k": req.k, "index": _version(state),
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    search.__annotations__ = {"req": SearchRequest, "return": dict}  # a class built above
    app.post("/search")(search)

    @app.get("/health")
    def health() -> dict:
        state = searcher.current()
        return {"status": "ok", "count": state.index.ntotal, "digest": state.digest}

    @app.get("/info")
    def info() -> dict:
        state = searcher.current()
        return {**state.manifest, "digest": state.digest}

    @app.post("/reload")
    def reload() -> dict:
        changed = searcher.reload()
        return {"reloaded": changed, "index": _version(searcher.current())}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    return app


def _version(state) -> dict:
    m = state.manifest
    return {"digest": state.digest, "created": m.get("created"), "model": m["model"]["spec"],
            "registry": m["model"].get("registry")}


def _request_model(limits: Limits):
    """The pydantic model of a /search body under `limits`."""
    from typing import Annotated, Optional, Union

    from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

    Query = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_query_chars,
                                             pattern=r"\S")]
    Lang = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: Optional[Query] = None  # noqa: UP045 - pydantic on 3.10
        queries: Optional[Annotated[list[Query], Field(min_length=1, max_length=limits.max_queries)]] = None  # noqa: UP045
        k: Annotated[int, Field(ge=1, le=limits.max_k, strict=True)] = 10
        lang: Optional[Union[Lang, Annotated[list[Lang], Field(min_length=1, max_length=limits.max_langs)]]] = None  # noqa: UP007, UP045

        @model_validator(mode="after")
        def _one_form(self):
            if (self.query is None) == (self.queries is None):
                raise ValueError("give either 'query' (a string) or 'queries' (a list), not both or neither")
            return self

    return SearchRequest


def _validation_line(exc) -> str:
    """The first validation error as one line: `body.k: Input should be ...`."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    e = errors[0]
    loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
    msg = " ".join(str(e.get("msg", "invalid")).split())
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}"[:300]


class _BodyLimit:
    """ASGI middleware: a request body over `max_body` bytes gets 413. A declared
    Content-Length is checked first; a body without one (chunked) is read here up to the
    bound and handed on from memory."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                return await _too_large(send, self.max_body)
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return await _too_large(send, self.max_body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send, limit: int) -> None:
    import json

    body = json.dumps({"error": f"request body over {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _SearchBatcher:
    """Runs the searches of concurrent requests together: request threads queue (version,
    queries, k, langs) and wait; one thread takes everything queued (up to `max_batch`
    queries of the same index version), encodes all the queries as one batch, then searches
    them with one FAISS call per language filter, at the largest k asked (each request keeps
    its own top k: the same hits as searching it alone, since flat is exact, IVF's nprobe
    does not depend on k and HNSW searches with efSearch = max(128, k), the same for every
    k up to 128; Limits.max_k is 100). Under load this costs one model pass per batch
    instead of one per request (me5-small, 8 queries: ~2x one query's time) and one FAISS
    call, which spreads the queries over its threads. A refused language filter fails only
    the requests that asked for it."""

    def __init__(self, searcher: Searcher, max_batch: int):
        import queue

        self.searcher, self.max_batch = searcher, max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="search-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)

    def search(self, state, queries: list[str], k: int, langs: list[str] | None) -> list[list[dict]]:
        """`Searcher.search(queries, k, langs, at=state)`, batched with concurrent calls."""
        from concurrent.futures import Future

        if self._thread is None:  # not started (no lifespan): search here
            return self.searcher.search(queries, k, langs, at=state)
        req = _Request(state, queries, k, None if langs is None else frozenset(langs), Future())
        self._queue.put(req)
        return req.future.result()

    def _run(self) -> None:
        import queue

        pending = []
        while True:
            first = pending.pop(0) if pending else self._queue.get()
            if first is None:
                return
            group, n = [first], len(first.queries)
            while n < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt.state is not first.state:
                    pending.append(nxt)  # another version (or stop): its own batch
                    break
                group.append(nxt)
                n += len(nxt.queries)
            self._search(first.state, group)

    def _search(self, state, group: list[_Request]) -> None:
        import numpy as np

        try:
            vectors = state.encode([q for r in group for q in r.queries])
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
            for r in group:
                r.future.set_exception(exc)
            return
        starts = np.cumsum([0] + [len(r.queries) for r in group])
        by_langs: dict = {}
        for r, start in zip(group, starts[:-1], strict=True):
            by_langs.setdefault(r.langs, []).append((r, np.arange(start, start + len(r.queries))))
        for langs, members in by_langs.items():
            try:
                hits = self.searcher.search_vectors(
                    vectors[np.concatenate([rows for _, rows in members])], max(r.k for r, _ in members),
                    None if langs is None else sorted(langs), at=state)
            except BaseException as exc:  # noqa: BLE001 - e.g. a refused language filter
                for r, _ in members:
                    r.future.set_exception(exc)
                continue
            for r, rows in members:
                mine, hits = hits[:len(rows)], hits[len(rows):]
                r.future.set_result([h[:r.k] for h in mine])


class _Request(NamedTuple):
    """One /search request waiting in `_SearchBatcher`'s queue."""

    state: object  # the index version it searches (Searcher.current())
    queries: list
    k: int
    langs: frozenset | None
    future: object  # concurrent.futures.Future of its hits


class _Watcher:
    """Calls `searcher.reload()` when the manifest file's identity changes (checked at most
    once per `interval` seconds, in a daemon thread)."""

    def __init__(self, searcher: Searcher, interval: float):
        self.searcher, self.interval = searcher, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen = self._identity()

    def _identity(self):
        try:
            st = (Path(self.searcher.index_dir) / "manifest.json").stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def start(self) -> None:
        if self.interval and self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = self._identity()
            if now is None or now == self._seen:
                continue
            try:
                if self.searcher.reload():
                    log.warning("index %s reloaded: %s", self.searcher.index_dir,
                                self.searcher.digest[:12])
                self._seen = now
            except Exception as exc:  # noqa: BLE001 - keep serving the old version
                log.error("index %s: reload failed, still serving %s: %s",
                          self.searcher.index_dir, self.searcher.digest[:12], exc)
                self._seen = now
