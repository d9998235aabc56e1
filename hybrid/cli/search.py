"""`hybrid index build`, `hybrid search` and `hybrid serve`: a persistent index over one's
own corpus, searched from the shell or over HTTP (hybrid.index)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hybrid.cli.options import Backend, QueryBackend
from hybrid.errors import HybridError

index_app = typer.Typer(help="Build a search index over your corpus.", no_args_is_help=True)


@index_app.command("build")
def build_command(
    model: Annotated[str, typer.Option(
        help="Model dir, 'me5-small', an HF id or models:/hybrid-retriever@champion.")],
    corpus: Annotated[Path, typer.Option(
        help="Passages: .jsonl, .parquet or .tsv with id, text and optional lang.")],
    out: Annotated[Path, typer.Option(
        help="Index directory (index.faiss, passages.parquet, manifest.json), replaced whole.")],
    kind: Annotated[str, typer.Option(help="FAISS index: flat (exact), ivf or hnsw.")] = "flat",
    shards: Annotated[int, typer.Option(
        help="Ray encoding tasks (the embeddings do not depend on it).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
    chunk_size: Annotated[int, typer.Option(
        help="Passages read and encoded per chunk (bounds the texts in memory).")] = 100_000,
    bf16: Annotated[bool, typer.Option(help="Encode under bfloat16 autocast.")] = False,
    backend: Backend = "auto",
) -> None:
    """Encode a corpus with a model and write a search index directory (queries are later
    encoded with the same backend)."""
    from hybrid.index import build_index

    build_index(model, corpus, out, kind=kind, shards=shards, batch_size=batch_size,
                chunk_size=chunk_size, bf16=bf16, backend=backend)
    m = json.loads((out / "manifest.json").read_text())
    typer.echo(f"indexed {m['index']['count']} passages ({kind}, {m['index']['dim']}-d) in "
               f"{m['seconds']['total']:.0f} s; wrote {out}")


def search_command(
    queries: Annotated[list[str], typer.Argument(help="One or more queries.", show_default=False)],
    index: Annotated[Path, typer.Option(help="Index directory from 'hybrid index build'.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Results per query.")] = 10,
    lang: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="Only passages in these languages, e.g. 'de,fr'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query.")] = False,
    backend: QueryBackend = None,
) -> None:
    """Search an index: the top k passages per query (rank, score, lang, id, text)."""
    from hybrid.index import Searcher
    from hybrid.index.searcher import MAX_K
    from hybrid.langs import validate_lang

    langs = None
    if lang is not None:
        langs = [validate_lang(x.strip(), where="--lang") for x in lang.split(",") if x.strip()]
        if not langs:
            raise HybridError(f"--lang: no language in {lang!r} (leave the option out for all)")
    if not 1 <= k <= MAX_K:
        raise HybridError(f"-k: must be between 1 and {MAX_K}, not {k}")
    if not all(q.strip() for q in queries):
        raise HybridError("QUERY: an empty query")
    results = Searcher(index, backend=backend).search(queries, k=k, langs=langs)
    for q, hits in zip(queries, results, strict=True):
        if as_json:
            typer.echo(json.dumps({"query": q, "hits": hits}, ensure_ascii=False))
            continue
        typer.echo(f"# {q}")
        for h in hits:
            text = " ".join(h["text"].split())
            text = text if len(text) <= 160 else text[:157] + "..."
            typer.echo(f"{h['rank']:>3}  {h['score']:.4f}  {h['lang'] or '-':<3}  {h['id']}  {text}")


def serve_command(
    index: Annotated[Path, typer.Option(help="Index directory from 'hybrid index build'.")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: QueryBackend = None,
    threads: Annotated[int, typer.Option(
        help="Threads per model pass and FAISS search; 0: the machine's cores (measured "
             "fastest on 2 cores: docs/search.md).")] = 0,
) -> None:
    """Serve an index over HTTP: POST /search, GET /health, GET /info, a search page at /;
    a rebuilt index swapped into the same directory is picked up within a second."""
    import uvicorn

    from hybrid.index.service import create_app

    if threads < 0:
        raise HybridError(f"--threads: must be 0 (all cores) or more, not {threads}")
    if not 0 < port < 65536:
        raise HybridError(f"--port: must be between 1 and 65535, not {port}")
    _check_port(host, port)
    app = create_app(index, backend=backend, threads=threads or None)
    typer.echo(f"serving {index} on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def _check_port(host: str, port: int) -> None:
    """HybridError in one line if `host:port` cannot be listened on (in use, no such address)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise HybridError(f"--host/--port {host}:{port}: cannot listen ({exc.strerror or exc})") from None


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(index_app, name="index")
    app.command("search")(search_command)
    app.command("serve")(serve_command)
