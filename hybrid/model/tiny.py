"""A tiny deterministic BERT encoder with the multilingual-e5 tokenizer, for fast tests.

Same layout as the materialized me5-small (BertModel, vocab 250037, 512 positions, pad id 1,
the same tokenizer and sentence-transformers files) but hidden 32, 2 layers, 2 heads,
intermediate 64: it loads through `resolve_model`, `BiEncoder` and `SentenceTransformer`
in well under a second. The same seed gives byte-identical weights.
"""

from __future__ import annotations

from pathlib import Path

from hybrid.io import atomic_path

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}


def tiny_config():
    from hybrid.model.materialize import me5_small_config

    cfg = me5_small_config()
    for k, v in TINY.items():
        setattr(cfg, k, v)
    return cfg


def make_tiny_model(out_dir: Path | str, seed: int = 0) -> Path:
    """Write a randomly initialised tiny encoder (deterministic in `seed`) to `out_dir`."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    from hybrid.model.st_files import write_st_files
    from hybrid.model.tokenizer import me5_tokenizer

    out = Path(out_dir)
    cfg = tiny_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg, add_pooling_layer=False)
    sd = {k: v.detach().contiguous() for k, v in sorted(model.state_dict().items())}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "model.safetensors").chmod(0o644)
        cfg.save_pretrained(tmp)
        me5_tokenizer().save_pretrained(tmp)
        write_st_files(tmp, dim=cfg.hidden_size)
    return out
