"""Weight interpolation of two models of one architecture (WiSE-FT, model soups), and
task arithmetic with a third.

    theta = (1 - weight) * theta_A + weight * theta_B        for every floating tensor
    theta = theta_A + weight * (theta_B - theta_base)        with a `base` (task arithmetic)

`weight` 0 is A's weights bit for bit and 1 is B's (the two ends are copied, not computed);
in between the sum is taken in the tensor's dtype (float32 at least) and cast back.
Non-floating tensors (integer buffers) must be equal in A and B (and the base) and are A's.
With a base, `weight` 0 is A bit for bit and `weight` 1 adds all of B's change from the base
(its "task vector") to A; the base is the start both were trained from.

Two recipes (docs/training.md, "Recipes"):
- "mono + cross": A and B are two trainings from the same start (an x-x-mono and an x-y
  run, say); the merge keeps what each learnt;
- "fine-tuned + base": B is A's starting model (`me5-small`), so the weight pulls the
  fine-tuned model back towards the base (WiSE-FT);
- "A plus B's task vector": A and B two trainings from `base`; theta keeps all of A's change
  and adds `weight` times B's (e.g. x-x-mono's monolingual gains plus distill's alignment).

`merge_models(a, b, weight, out)` writes a complete model directory like A's: the merged
weights, A's config and tokenizer, A's encoder settings (pooling, prefixes, max lengths)
as `hybrid_encoder.json` and the sentence-transformers files, all through
`BiEncoder.save`; plus `merge.json` (`MERGE_FILE`): the inputs (spec, directory, sha256
of each weight file; `base` null without one), the weight, the formula and the validation
scores of the weight when it was chosen by `hybrid.model.merge_select.select_weight`.

A centering file of A (`hybrid.centering`, `centering.json`) is *not* carried over: its
language means were estimated on A's embeddings, and the merged model's are others. Run
`hybrid center` on the output to center it.

Refused with a one-line `HybridError`, before anything is written: a weight outside [0, 1],
models of different architecture (config sizes, tokenizer vocabulary, tensor names, shapes
or dtypes), and an `out` that is an input's directory or an existing directory that is not
empty and not a previous merge output (no `merge.json`). The output is built aside and
swapped in whole (`hybrid.io.atomic_path`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid.errors import HybridError

MERGE_FILE = "merge.json"
VERSION = 1
FORMULA = "(1 - weight) * A + weight * B for every floating tensor; other tensors are A's (equal in B)"
FORMULA_BASE = ("A + weight * (B - base) for every floating tensor; other tensors are A's "
                "(equal in B and base)")
CENTERING_NOTE = ("not carried over: a model's centering means are estimated on its own "
                  "embeddings; run `hybrid center` on the merged model")
# config.json fields that must agree for the tensors to mean the same thing.
ARCH_FIELDS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
               "num_attention_heads", "intermediate_size", "max_position_embeddings",
               "type_vocab_size", "hidden_act", "layer_norm_eps", "pad_token_id",
               "position_embedding_type")
SETTINGS = ("pooling", "query_prefix", "passage_prefix")


def check_weight(weight: float, what: str = "--weight") -> float:
    """`weight` as a float in [0, 1], else HybridError."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise HybridError(f"{what}: not a number: {weight!r}") from None
    if math.isnan(w) or not 0.0 <= w <= 1.0:
        raise HybridError(f"{what}: must be in [0, 1] (0 = A, 1 = B), not {weight}")
    return w


@dataclass
class ModelPair:
    """Two loaded models (three with a base) checked to share an architecture: `encoder` is
    A's `BiEncoder` (its weights are overwritten by `load`), `a`, `b` and `base` their state
    dicts (copies; `base` None without one), `dirs` the resolved directories of A and B
    (`base_dir`, `base_spec`: the base's), `specs` the specs as given, `warnings` (encoder
    settings that differ: the merge uses A's)."""

    encoder: Any
    a: dict
    b: dict
    dirs: tuple[Path, Path]
    specs: tuple[str, str]
    warnings: list[str] = field(default_factory=list)
    base: dict | None = None
    base_dir: Path | None = None
    base_spec: str | None = None

    @classmethod
    def open(cls, a: str | os.PathLike, b: str | os.PathLike,
             base: str | os.PathLike | None = None) -> ModelPair:
        """Resolve and load A and B (and `base`; `hybrid.model.resolve_model` specs or
        directories) and check they share an architecture: config sizes, tokenizer vocabulary
        and the weight files' tensor names, shapes and dtypes before any weights are read
        (`check_files`), the loaded tensors after (`check_tensors`)."""
        from hybrid.model.check import check_model_files
        from hybrid.model.resolve import resolve_model

        names = (str(a), str(b))
        dir_a, dir_b = resolve_model(a), resolve_model(b)
        dir_c = resolve_model(base) if base is not None else None
        for d in (dir_a, dir_b, dir_c):
            if d is not None:
                check_model_files(d)
        check_files(dir_a, dir_b, names)
        if dir_c is not None:
            check_files(dir_a, dir_c, (names[0], str(base)))
        enc_a, sd_a = _load(dir_a)
        enc_b, sd_b = _load(dir_b)
        check_tensors(sd_a, sd_b, names)
        sd_c = None
        if dir_c is not None:
            sd_c = _load(dir_c)[1]
            check_tensors(sd_a, sd_c, (names[0], str(base)))
        warnings = []
        for k in SETTINGS:
            va, vb = _setting(enc_a, k), _setting(enc_b, k)
            if va != vb:
                warnings.append(f"{k} differs ({va!r} in {a}, {vb!r} in {b}): the merged model "
                                f"uses A's")
        del enc_b
        return cls(enc_a, sd_a, sd_b, (Path(dir_a), Path(dir_b)), names, warnings, sd_c,
                   None if dir_c is None else Path(dir_c), None if base is None else str(base))

    @property
    def inputs(self) -> tuple[Path, ...]:
        """The resolved directories of every input (A, B and the base if any)."""
        return self.dirs if self.base_dir is None else (*self.dirs, self.base_dir)

    @property
    def input_specs(self) -> tuple[str, ...]:
        """The specs of every input as given, in the order of `inputs`."""
        return self.specs if self.base_spec is None else (*self.specs, self.base_spec)

    def load(self, weight: float):
        """A's encoder holding the weights merged at `weight`; returns the encoder."""
        self.encoder.model.load_state_dict(interpolate(self.a, self.b, weight, self.base),
                                           strict=True)
        return self.encoder


def _load(model_dir):
    """(BiEncoder, a copy of its model's state dict)."""
    from hybrid.encoder import BiEncoder

    enc = BiEncoder.from_pretrained(model_dir)
    return enc, {k: v.detach().clone() for k, v in enc.model.state_dict().items()}


def _setting(enc, key: str):
    return enc.pooling if key == "pooling" else enc.prefixes[key.split("_")[0]]


def _refuse(names: tuple[str, str], detail: str):
    raise HybridError(f"merge {names[0]} + {names[1]}: different architectures ({detail}); "
                      f"nothing was written")


# safetensors dtype codes as torch names, so both checks say "float32 vs float16"
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def _compare_specs(spec_a: dict, spec_b: dict, names: tuple[str, str]) -> None:
    """{tensor: (dtype name, shape)} of A and B: same names, shapes and dtypes."""
    only_a, only_b = sorted(set(spec_a) - set(spec_b)), sorted(set(spec_b) - set(spec_a))
    if only_a or only_b:
        _refuse(names, f"tensor {(only_a or only_b)[0]} only in {names[0] if only_a else names[1]}")
    for k in sorted(spec_a):
        (da, sa), (db, sb) = spec_a[k], spec_b[k]
        if list(sa) != list(sb):
            _refuse(names, f"tensor {k} has shape {list(sa)} vs {list(sb)}")
        if da != db:
            _refuse(names, f"tensor {k} has dtype {da} vs {db}")


def _file_specs(model_dir: Path) -> dict:
    from hybrid.model.check import read_safetensors_header

    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        for k, (dtype, shape) in read_safetensors_header(f).items():
            out[k] = (_DTYPES.get(dtype, dtype), list(shape))
    return out


def _same_tokenizer_files(dir_a: Path, dir_b: Path) -> bool:
    """True when both directories hold a `tokenizer.json` with the same bytes."""
    from hybrid.hashing import sha256_file

    fa, fb = dir_a / "tokenizer.json", dir_b / "tokenizer.json"
    return (fa.is_file() and fb.is_file() and fa.stat().st_size == fb.stat().st_size
            and sha256_file(fa) == sha256_file(fb))


def check_files(dir_a: Path, dir_b: Path, names: tuple[str, str] = ("A", "B")) -> None:
    """HybridError (one line) unless A and B have the same config sizes (`ARCH_FIELDS`),
    tokenizer vocabulary and, where the weight files name the same tensors, the same shapes
    and dtypes. Reads configs, tokenizers and safetensors headers only (no weights); files
    naming their tensors differently (a task model's `bert.` prefix) are left to
    `check_tensors` on the loaded models."""
    from transformers import AutoConfig

    from hybrid.encoder import load_tokenizer

    ca = AutoConfig.from_pretrained(dir_a).to_dict()
    cb = AutoConfig.from_pretrained(dir_b).to_dict()
    for k in ARCH_FIELDS:
        if ca.get(k) != cb.get(k):
            _refuse(names, f"config {k} {ca.get(k)!r} vs {cb.get(k)!r}")
    if _same_tokenizer_files(Path(dir_a), Path(dir_b)):
        va = vb = None  # the same files: the same vocabulary (no 250k-token parse)
    else:
        va = load_tokenizer(Path(dir_a)).get_vocab()
        vb = load_tokenizer(Path(dir_b)).get_vocab()
    if va != vb:
        detail = (f"{len(va)} vs {len(vb)} tokens" if len(va) != len(vb)
                  else f"same size {len(va)}, different tokens")
        _refuse(names, f"tokenizer vocabularies differ: {detail}")
    fa, fb = _file_specs(dir_a), _file_specs(dir_b)
    if set(fa) == set(fb):
        _compare_specs(fa, fb, names)


def check_tensors(sd_a: dict, sd_b: dict, names: tuple[str, str] = ("A", "B")) -> None:
    """HybridError (one line) unless two loaded state dicts have the same tensor names,
    shapes and dtypes, and equal non-floating tensors."""
    import torch

    def spec(sd):
        return {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in sd.items()}

    _compare_specs(spec(sd_a), spec(sd_b), names)
    for k, ta in sd_a.items():
        if not ta.is_floating_point() and not torch.equal(ta, sd_b[k]):
            _refuse(names, f"non-floating tensor {k} differs")


def interpolate(sd_a: dict, sd_b: dict, weight: float, sd_base: dict | None = None) -> dict:
    """{name: (1 - weight) * A + weight * B} for floating tensors, A's for the others;
    with `sd_base`, {name: A + weight * (B - base)}. weight 0 returns A's tensors (bit for
    bit), and without a base 1 returns B's; computed in float32 at least, cast back to A's
    dtype. The caller checked the names, shapes and dtypes (`check_files`, `check_tensors`)."""
    import torch

    w = check_weight(weight, "weight")
    out = {}
    for k, ta in sd_a.items():
        tb = sd_b[k]
        if not ta.is_floating_point() or w == 0.0:
            out[k] = ta
            continue
        dt = torch.promote_types(ta.dtype, torch.float32)
        if sd_base is not None:
            out[k] = (ta.to(dt) + w * (tb.to(dt) - sd_base[k].to(dt))).to(ta.dtype)
        elif w == 1.0:
            out[k] = tb
        else:
            out[k] = ((1.0 - w) * ta.to(dt) + w * tb.to(dt)).to(ta.dtype)
    return out


def _weight_files(model_dir: Path) -> dict[str, str]:
    from hybrid.hashing import sha256_file

    return {p.name: sha256_file(p) for p in sorted(model_dir.glob("*.safetensors"))}


def _input_record(spec: str, model_dir: Path) -> dict:
    from hybrid.centering import FILE

    return {"spec": spec, "path": str(model_dir), "weights_sha256": _weight_files(model_dir),
            "centering": (model_dir / FILE).is_file()}


def check_merge_out(out: str | os.PathLike, model_dirs=()) -> Path:
    """`out` as a Path if a merge may write it (before any work): not a file, not one of
    `model_dirs` (the inputs), and either new, empty or a previous merge output (holding
    `merge.json`); else HybridError. A user's directory is never replaced."""
    from hybrid.io import check_output

    p = check_output(out, "dir", what="--out")
    for d in model_dirs:
        if p.exists() and p.resolve() == Path(d).resolve():
            raise HybridError(f"--out {p}: is an input model's directory (write a new one)")
    if p.is_dir() and any(p.iterdir()) and not (p / MERGE_FILE).is_file():
        raise HybridError(f"--out {p}: an existing directory that is not a merge output (no "
                          f"{MERGE_FILE}); nothing was written (choose a new or empty directory)")
    return p


def merge_models(a: str | os.PathLike, b: str | os.PathLike, weight: float,
                 out: str | os.PathLike, *, base: str | os.PathLike | None = None,
                 selection=None, pair: ModelPair | None = None) -> Path:
    """Write `out`: the models `a` and `b` (specs or directories) merged at `weight`
    (0 = A, 1 = B; with `base`, A + weight * (B - base); see the module docstring); returns
    `out`. `selection`: how the weight was chosen (a `hybrid.model.merge_select.Selection`
    or its `to_json()`), recorded in merge.json. `pair`: the models already loaded
    (`ModelPair.open(a, b, base)`), to load them once."""
    from hybrid.io import atomic_path, output_lock

    w = check_weight(weight)
    if selection is not None and hasattr(selection, "to_json"):
        selection = selection.to_json()
    out = check_merge_out(out)
    pair = pair or ModelPair.open(a, b, base)
    out = check_merge_out(out, pair.inputs)
    encoder = pair.load(w)
    record = {
        "version": VERSION,
        "formula": FORMULA if pair.base is None else FORMULA_BASE,
        "weight": w,
        "a": _input_record(pair.specs[0], pair.dirs[0]),
        "b": _input_record(pair.specs[1], pair.dirs[1]),
        "base": None if pair.base is None else _input_record(pair.base_spec, pair.base_dir),
        "settings_from": "a",
        "centering": CENTERING_NOTE,
        "warnings": list(pair.warnings),
        "selection": selection,
    }
    with output_lock(out), atomic_path(out) as tmp:
        encoder.save(tmp)
        record["weights_sha256"] = _weight_files(tmp)
        (tmp / MERGE_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return out


def read_merge(model_dir: str | os.PathLike) -> dict | None:
    """The merge.json of a merged model, None for another model."""
    p = Path(model_dir) / MERGE_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HybridError(f"{p}: not valid JSON ({exc})") from None


__all__ = ["merge_models", "interpolate", "check_weight", "check_files", "check_tensors",
           "check_merge_out", "read_merge", "ModelPair", "MERGE_FILE", "FORMULA", "FORMULA_BASE"]
