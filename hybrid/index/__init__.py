"""A persistent search index over a user's corpus: build it, search it, serve it.

- `build_index(model, corpus, out, kind="flat", ...) -> Path` (hybrid.index.build): the
  index directory (index.faiss, passages.parquet, manifest.json), written whole;
- `Searcher(index_dir)` (hybrid.index.searcher): `search(queries, k, langs)`, `reload()`;
- `read_corpus(path)` (hybrid.index.corpus): the corpus as checked batches;
- `create_app(index_dir)` (hybrid.index.service): the FastAPI search service.
"""

from hybrid.index.build import INDEX_FILES, build_index
from hybrid.index.corpus import read_corpus
from hybrid.index.searcher import Searcher, read_manifest

__all__ = ["INDEX_FILES", "Searcher", "build_index", "read_corpus", "read_manifest"]
