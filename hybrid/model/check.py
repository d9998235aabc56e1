"""Check a model directory's files before anything loads them or writes an output.

`check_model_files(path) -> Path` reads headers only (no weights) and raises a one-line
`HybridError` naming the file and the problem where loading would end in a traceback:

- `config.json`: missing, not valid JSON, not a JSON object, no `model_type`, a model type
  transformers does not know, values that do not build a model (e.g. a hidden size not
  divisible by the heads);
- tokenizer files (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`,
  `added_tokens.json`): present but not a JSON object;
- weights: no `*.safetensors` (pickled `.bin` checkpoints are never loaded); a shard index
  that is not JSON or names a missing shard; a file that is not safetensors (random bytes, a
  header that is not JSON or describes tensors badly); a truncated file (its tensors reach
  past the end);
- shapes: every tensor whose name is a parameter of the model that `config.json` describes
  (built on the meta device: no memory, no weights) must have that parameter's shape.
  Names are matched as transformers matches them: a checkpoint of a task model carries the
  base model's prefix (`bert.`, `roberta.`, `model.`), old ones `LayerNorm.gamma/beta`.
  Parameters absent from the files (BERT's pooler, tied weights) are allowed, as
  transformers allows them, unless no tensor at all matches the model.

Results are remembered per process for an unchanged directory (same files, sizes and
modification times), so repeated loads of one model check it once.
"""

from __future__ import annotations

import gc
import json
import math
import struct
import threading
from pathlib import Path

from hybrid.errors import HybridError

TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "added_tokens.json")
# safetensors' own limit on the JSON header (100 MB): a larger length is not a safetensors file.
MAX_HEADER = 100_000_000
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
                "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
                "I64": 8, "U64": 8, "F64": 8, "C64": 8}
_CHECKED: dict[tuple, Path] = {}


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            return f"{n / scale:.3g} {unit}"
    raise AssertionError  # unreachable


def _sizes(a: int, b: int) -> tuple[str, str]:
    """Two sizes, rounded unless rounding makes them look equal."""
    sa, sb = _size(a), _size(b)
    return (sa, sb) if sa != sb else (f"{a} bytes", f"{b} bytes")


def _loads(data: bytes):
    """json.loads, fast for a 17 MB tokenizer.json (75 ms instead of 500 once torch and
    transformers are imported): the garbage collector paused while the parser makes its
    million objects (its passes over the large heap were most of the time), and orjson where
    installed, with Python's json deciding (and wording the error) whenever orjson refuses."""
    try:
        import orjson
    except ImportError:
        orjson = None
    enabled = gc.isenabled()
    gc.disable()
    try:
        if orjson is not None:
            try:
                return orjson.loads(data)
            except ValueError:  # orjson is stricter (NaN, huge ints): let json decide
                pass
        return json.loads(data.decode("utf-8"))
    finally:
        if enabled:
            gc.enable()


def _read_json(path: Path, what: str = "JSON"):
    try:
        data = path.read_bytes()
        data.decode("utf-8")  # the same check as json's, with its position
    except UnicodeDecodeError as exc:
        raise HybridError(f"{path}: not valid {what} (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise HybridError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _loads(data)
    except json.JSONDecodeError as exc:
        raise HybridError(f"{path}: not valid {what} ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})") from None


def _json_object(path: Path) -> dict:
    obj = _read_json(path)
    if not isinstance(obj, dict):
        raise HybridError(f"{path}: not a JSON object (found a {type(obj).__name__})")
    return obj


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def read_safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header, after checking that the
    header parses and every tensor's bytes lie inside the file; HybridError otherwise."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
            raw = fh.read(n) if n is not None and n <= min(MAX_HEADER, size - 8) else b""
    except OSError as exc:
        raise HybridError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if n is None:
        raise HybridError(f"{path}: not a safetensors file ({size} bytes, too short for a header)")
    if n > MAX_HEADER:
        raise HybridError(f"{path}: not a safetensors file (its first 8 bytes give a header "
                          f"length of {n} bytes)")
    if n > size - 8:
        want, have = _sizes(n, size - 8)
        raise HybridError(f"{path}: truncated (header of {want}, file has {have} after the "
                          "length)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HybridError(f"{path}: not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise HybridError(f"{path}: not a safetensors file (the header is not a JSON object)")
    tensors: dict[str, tuple[str, list[int]]] = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(info, dict) and isinstance(info.get("dtype"), str)
              and isinstance(info.get("shape"), list)
              and all(isinstance(s, int) and s >= 0 for s in info["shape"])
              and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
              and all(isinstance(o, int) and o >= 0 for o in info["data_offsets"])
              and info["data_offsets"][0] <= info["data_offsets"][1])
        if not ok:
            raise HybridError(f"{path}: not a valid safetensors file (header entry {name!r} "
                              "lacks a dtype, shape or data offsets)")
        start, end = info["data_offsets"]
        width = _DTYPE_BYTES.get(info["dtype"])
        if width is not None and end - start != math.prod(info["shape"]) * width:
            raise HybridError(f"{path}: not a valid safetensors file (tensor {name} has "
                              f"{end - start} bytes for shape {_shape_str(info['shape'])} of "
                              f"{info['dtype']})")
        tensors[name] = (info["dtype"], info["shape"])
        spans.append((start, end, name))
    data = size - 8 - n
    end = max((e for _, e, _ in spans), default=0)
    if end > data:
        want, have = _sizes(end, data)
        raise HybridError(f"{path}: truncated (header says {want} of tensors, file has {have})")
    pos = 0
    for start, stop, name in sorted(spans):
        if start != pos:
            raise HybridError(f"{path}: not a valid safetensors file (tensor {name} "
                              f"{'overlaps another' if start < pos else 'leaves a gap'})")
        pos = stop
    if pos != data:
        raise HybridError(f"{path}: not a valid safetensors file ({data - pos} bytes after the "
                          "last tensor)")
    try:  # the library's own checks (header only, the file is memory-mapped)
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy"):
            pass
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HybridError(f"{path}: not a valid safetensors file ({reason[:200]})") from None
    return tensors


def _weight_files(p: Path) -> list[Path]:
    files = sorted(p.glob("*.safetensors"))
    for index in sorted(p.glob("*.safetensors.index.json")):
        weight_map = _json_object(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise HybridError(f"{index}: no weight_map object")
        for shard in sorted(set(map(str, weight_map.values()))):
            if not (p / shard).is_file():
                raise HybridError(f"{index}: names shard {shard}, which is missing")
    if not files:
        legacy = [q.name for q in p.glob("*.bin")]
        hint = f" (found {', '.join(legacy)}; only safetensors are loaded)" if legacy else ""
        raise HybridError(f"{p}: no *.safetensors weights{hint}")
    return files


def _config(p: Path) -> dict:
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise HybridError(f"{cfg_path}: missing (not an HF model directory)")
    raw = _json_object(cfg_path)
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise HybridError(f"{cfg_path}: no model_type (not a transformers config)")
    return raw


_SKELETON_LOCK = threading.Lock()


def _skeleton(p: Path, raw: dict, trust_remote_code: bool):
    """The model that config.json (parsed: `raw`) describes, on the meta device; None where
    only remote code could build it (then loading checks it). One thread at a time, with
    the classes imported from their modules: transformers' lazy top-level names raced when
    several threads of one process checked models at once (a Prefect flow training three
    models: `ImportError: cannot import name 'AutoConfig' from 'transformers'`)."""
    with _SKELETON_LOCK:
        return _build_skeleton(p, raw, trust_remote_code)


def _build_skeleton(p: Path, raw: dict, trust_remote_code: bool):
    import torch
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, AutoConfig
    from transformers.models.auto.modeling_auto import AutoModel

    cfg_path = p / "config.json"
    model_type = raw["model_type"]
    if model_type not in CONFIG_MAPPING:
        if trust_remote_code and raw.get("auto_map"):
            return None
        import transformers

        raise HybridError(f"{cfg_path}: model_type {model_type!r} is not known to transformers "
                          f"{transformers.__version__}")
    try:
        config = AutoConfig.from_pretrained(p, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            try:
                return AutoModel.from_config(config, add_pooling_layer=False,
                                             trust_remote_code=trust_remote_code)
            except TypeError:
                return AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except HybridError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split()[:40]) or type(exc).__name__
        raise HybridError(f"{cfg_path}: does not describe a model transformers can build "
                          f"({type(exc).__name__}: {reason[:200]})") from None


def _has_conversions(model) -> bool:
    try:
        from transformers.conversion_mapping import extract_weight_conversions_for_model

        return bool(extract_weight_conversions_for_model(model))
    except Exception:  # an older or newer transformers: be lenient
        return True


def _check_shapes(p: Path, files: list[Path], headers: list[dict], model) -> None:
    expected = {name: tuple(t.shape) for name, t in model.named_parameters()}
    prefixes = [x for x in dict.fromkeys([getattr(model, "base_model_prefix", ""), "model"]) if x]
    matched = set()
    for f, tensors in zip(files, headers, strict=True):
        for key, (_, shape) in tensors.items():
            name = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
                "LayerNorm.beta", "LayerNorm.bias")
            if name not in expected:
                for pre in prefixes:
                    if name.startswith(pre + ".") and name[len(pre) + 1:] in expected:
                        name = name[len(pre) + 1:]
                        break
                    if f"{pre}.{name}" in expected:
                        name = f"{pre}.{name}"
                        break
            if name not in expected:
                continue  # a head's or unused tensor: transformers ignores it too
            matched.add(name)
            if tuple(shape) != expected[name]:
                raise HybridError(f"{f}: tensor {key} has shape {_shape_str(shape)}, config.json "
                                  f"implies {_shape_str(expected[name])}")
    if expected and not matched and not _has_conversions(model):
        where = files[0] if len(files) == 1 else p
        example = next(iter(expected))
        raise HybridError(f"{where}: no tensor is a parameter of the {type(model).__name__} that "
                          f"config.json describes (e.g. no {example})")


def _fingerprint(p: Path) -> tuple:
    items = []
    for q in sorted(p.iterdir()):
        try:
            st = q.stat()
        except OSError:
            continue
        items.append((q.name, st.st_size, st.st_mtime_ns))
    return (str(p.resolve()), tuple(items))


def check_model_files(path: str | Path, trust_remote_code: bool = False) -> Path:
    """`path` if its config, tokenizer and weight files are sound (module docstring); else a
    one-line HybridError naming the file. Header reads only: fast enough for every load."""
    p = Path(path)
    if not p.is_dir():
        raise HybridError(f"{p}: not a model directory")
    key = (_fingerprint(p), bool(trust_remote_code))
    if key in _CHECKED:
        return p
    config = _config(p)
    for name in TOKENIZER_JSON:
        if (p / name).is_file():
            obj = _json_object(p / name)
            if name == "tokenizer.json" and not isinstance(obj.get("model"), dict):
                raise HybridError(f"{p / name}: not a tokenizer (no model object)")
    files = _weight_files(p)
    headers = [read_safetensors_header(f) for f in files]
    model = _skeleton(p, config, trust_remote_code)
    if model is not None:
        _check_shapes(p, files, headers, model)
    _CHECKED[key] = p
    return p
