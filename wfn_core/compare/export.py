"""Compressed export of a weight-fixed model: one file near the entropy bound (section 6 of the algorithm doc).

File layout (all integers little-endian)::

    magic b"WFNZ" | version u16 | manifest length u32 | manifest (UTF-8 JSON)
    | codebook (K values, float32, or float64 when a fixable tensor is float64)
    | frequencies (K counts, uint32 or uint64) | ANS stream (uint32 words)
    | raw tensors (every state_dict entry not in the stream, in manifest order)
    | SHA-256 of everything before it (32 bytes)

The manifest lists every ``state_dict`` tensor in order (name, shape, dtype, ``coded``: whether it is
in the entropy-coded stream). The coded tensors are the fixable parameters (``fixable_parameters``,
BatchNorm γ/β with ``include_bn``); their entries, concatenated in manifest order, are mapped to
symbols (indices into the codebook of distinct bit patterns, so ``-0.0`` and ``0.0`` are distinct
symbols and the round trip is bit-exact) and coded with ``constriction``'s ANS coder under one
categorical model built from the exact symbol counts. The decoder rebuilds that model from the
stored counts (the same float64 array into the same deterministic ``perfect=False`` quantiser) and
checks that the decoded symbols reproduce the stored counts exactly.

Size accounting (the report of :func:`save_compressed`):

- ``bound_bytes = N·H/8 + table_bytes``: ``N`` coded entries, ``H`` the entropy (bits) of their
  symbol histogram, ``table_bytes`` the codebook plus frequency bytes (what any decoder needs).
- ``fixable_bytes = stream_bytes + table_bytes``; ``ratio = fixable_bytes / bound_bytes`` (≥ 1 up to
  the coder's rounding; the goal is ≤ 1.01).
- ``raw_bytes`` (uncoded tensors such as BatchNorm running statistics) and ``header_bytes`` (magic,
  version, manifest, checksum) are outside the bound; ``bytes`` is the whole file, and
  ``ratio_to_fp32 = bytes / fp32_state_dict_bytes`` compares it with ``torch.save(state_dict)``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .._validation import fail
from ..fixable import fixable_parameters
from ..io import atomic_write_bytes
from ..metrics import entropy_of_counts

__all__ = [
    "CompressedFileError", "CodebookWarning", "save_compressed", "load_compressed", "read_manifest",
    "infer_architecture", "export_run", "export_cli",
    "MAGIC", "FORMAT_VERSION",
]

MAGIC = b"WFNZ"
FORMAT_VERSION = 1
MAX_SYMBOLS = 1 << 20
"""Largest codebook accepted: a model with more distinct values is not weight-fixed."""

_PREFIX = struct.Struct("<4sHI")  # magic, version, manifest length
_DIGEST_BYTES = 32
_CODER = "constriction.stream.stack.AnsCoder/Categorical(float64 counts, perfect=False)"
_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
    )
}
_CODED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class CompressedFileError(ValueError):
    """A compressed file that cannot be loaded: corrupted, truncated, foreign, or for another model."""


class CodebookWarning(UserWarning):
    """The written file is not smaller than ``torch.save(state_dict)``: the weights share no small codebook."""


def _constriction():
    import constriction  # imported lazily: only export needs it

    return constriction


def _dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"cannot export a tensor of dtype {dtype}; supported: {', '.join(_DTYPES)}")
    return name


def _check_little_endian() -> None:
    if sys.byteorder != "little":
        raise RuntimeError("compressed export reads and writes little-endian data; this host is big-endian")


def _probabilities(counts: np.ndarray) -> Any:
    """The categorical model both sides build from the stored counts (exact integers as float64)."""
    return _constriction().stream.model.Categorical(counts.astype(np.float64), perfect=False)


def _resolve(model: nn.Module, fixer: Any, include_bn: bool | None) -> tuple[nn.Module, bool]:
    if fixer is not None:
        if include_bn is not None and bool(include_bn) != fixer.include_bn:
            raise fail("include_bn", include_bn, f"None or {fixer.include_bn} (the fixer's include_bn)")
        return fixer.plain_model(), fixer.include_bn
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError(
            "the model is parametrised (a WeightFixer is attached): pass the fixer, or fixer.plain_model()"
        )
    return model, bool(include_bn)


def _raw_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _fp32_state_dict_bytes(state: dict[str, torch.Tensor]) -> int:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.getbuffer().nbytes


def save_compressed(
    model: nn.Module, path: str | Path, fixer_or_none: Any = None, include_bn: bool | None = None
) -> dict[str, Any]:
    """Write ``model`` (or ``fixer_or_none.plain_model()``) to ``path`` as one compressed file, atomically.

    ``include_bn`` (default False, or the fixer's) decides whether BatchNorm γ/β join the coded stream.
    Returns the size report described in the module docstring, plus ``encode_seconds``. When the file is
    not smaller than the fp32 state_dict (the weights are not on a shared codebook) it is still written,
    and a :class:`CodebookWarning` says so.
    """
    _check_little_endian()
    began = time.perf_counter()
    model, include_bn = _resolve(model, fixer_or_none, include_bn)
    state = model.state_dict()
    coded_names = {name for name, _ in fixable_parameters(model, include_bn=include_bn)} & set(state)
    for name in coded_names:
        if state[name].dtype not in _CODED_DTYPES:
            raise ValueError(f"fixable tensor {name} has dtype {state[name].dtype}; expected a floating dtype")
        if state[name].layout != torch.strided:
            raise ValueError(f"fixable tensor {name} is not a dense tensor")
    coded = [state[n] for n in state if n in coded_names]
    wide = any(t.dtype == torch.float64 for t in coded)
    float_dtype, bits_dtype = (torch.float64, torch.int64) if wide else (torch.float32, torch.int32)
    bits = torch.cat([t.detach().cpu().reshape(-1).to(float_dtype).view(bits_dtype) for t in coded])
    keys, symbols, counts = torch.unique(bits, sorted=True, return_inverse=True, return_counts=True)
    n_symbols, k = bits.numel(), keys.numel()
    if k > MAX_SYMBOLS:
        raise ValueError(
            f"the fixable parameters hold {k} distinct values (more than {MAX_SYMBOLS}): the model is not "
            "weight-fixed; run WFN to the final 100% step before exporting"
        )
    counts_np = counts.numpy()
    freq_dtype = "<u4" if k == 0 or int(counts_np.max()) < 2**32 else "<u8"
    codebook = keys.view(float_dtype).numpy().astype("<f8" if wide else "<f4").tobytes()
    frequencies = counts_np.astype(freq_dtype).tobytes()
    if k >= 2:
        coder = _constriction().stream.stack.AnsCoder()
        coder.encode_reverse(symbols.to(torch.int32).numpy(), _probabilities(counts_np))
        stream = coder.get_compressed().astype("<u4").tobytes()
    else:  # zero or one distinct value: nothing to code
        stream = b""

    manifest = {
        "coder": _CODER,
        "include_bn": include_bn,
        "codebook_dtype": "float64" if wide else "float32",
        "freq_dtype": "uint64" if freq_dtype == "<u8" else "uint32",
        "n_symbols": n_symbols,
        "unique": k,
        "stream_words": len(stream) // 4,
        "tensors": [
            {"name": n, "shape": list(t.shape), "dtype": _dtype_name(t.dtype), "coded": n in coded_names}
            for n, t in state.items()
        ],
    }
    for n, t in state.items():
        if n not in coded_names and t.layout != torch.strided:
            raise ValueError(f"tensor {n} is not a dense tensor and cannot be stored")
    raw = b"".join(_raw_bytes(t) for n, t in state.items() if n not in coded_names)
    header = json.dumps(manifest, separators=(",", ":")).encode("utf-8")
    body = b"".join((_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, codebook, frequencies, stream, raw))
    data = body + hashlib.sha256(body).digest()
    atomic_write_bytes(path, data)
    seconds = time.perf_counter() - began

    entropy = entropy_of_counts(counts_np)
    table = len(codebook) + len(frequencies)
    bound = n_symbols * entropy / 8 + table
    fixable = len(stream) + table
    fp32 = _fp32_state_dict_bytes(state)
    if len(data) >= fp32:
        warnings.warn(
            f"the coded weights hold {k} distinct values in {n_symbols} entries, so the file is {len(data)} bytes, "
            f"{len(data) / fp32:.2f}x the fp32 state_dict ({fp32} bytes); it was written all the same. Run WFN first "
            "(wfn_core.run_wfn) or another quantiser: the format pays off when the weights share a small codebook",
            CodebookWarning, stacklevel=2,
        )
    return {
        "bytes": len(data),
        "stream_bytes": len(stream),
        "table_bytes": table,
        "fixable_bytes": fixable,
        "raw_bytes": len(raw),
        "header_bytes": _PREFIX.size + len(header) + _DIGEST_BYTES,
        "n_symbols": n_symbols,
        "unique": k,
        "entropy_bits": entropy,
        "bound_bytes": bound,
        "ratio": fixable / bound if bound > 0 else 1.0,
        "fp32_state_dict_bytes": fp32,
        "ratio_to_fp32": len(data) / fp32,
        "include_bn": include_bn,
        "encode_seconds": seconds,
    }


# ------------------------------------------------------------------------------ reading
def _fail(path: Path, why: str) -> CompressedFileError:
    return CompressedFileError(f"{path}: {why}")


def _parse(path: Path, data: bytes) -> tuple[dict[str, Any], memoryview]:
    """Check magic, version and checksum; return the manifest and the payload after it."""
    if not data.startswith(MAGIC):
        if data and MAGIC.startswith(data):
            raise _fail(path, f"truncated: only {len(data)} bytes")
        raise _fail(path, f"not a WFN compressed file (magic {data[:4]!r}, expected {MAGIC!r})")
    if len(data) < _PREFIX.size + _DIGEST_BYTES:
        raise _fail(path, f"truncated: {len(data)} bytes is shorter than any WFN compressed file")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise _fail(path, f"unsupported format version {version}; this wfn_core reads version {FORMAT_VERSION}")
    if hashlib.sha256(memoryview(data)[:-_DIGEST_BYTES]).digest() != data[-_DIGEST_BYTES:]:
        raise _fail(path, "checksum mismatch: the file is corrupted or truncated")
    end = _PREFIX.size + header_len
    if end > len(data) - _DIGEST_BYTES:
        raise _fail(path, "malformed: the manifest runs past the end of the file")
    try:
        manifest = json.loads(data[_PREFIX.size : end].decode("utf-8"))
        tensors = manifest["tensors"]
        for t in tensors:
            if not (isinstance(t["name"], str) and t["dtype"] in _DTYPES and isinstance(t["coded"], bool)
                    and all(isinstance(s, int) and s >= 0 for s in t["shape"])):
                raise ValueError(t)
        for key in ("n_symbols", "unique", "stream_words"):
            if not (isinstance(manifest[key], int) and manifest[key] >= 0):
                raise ValueError(key)
        if manifest["codebook_dtype"] not in ("float32", "float64"):
            raise ValueError("codebook_dtype")
        if manifest["freq_dtype"] not in ("uint32", "uint64"):
            raise ValueError("freq_dtype")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"malformed manifest ({exc!r})") from None
    return manifest, memoryview(data)[end : len(data) - _DIGEST_BYTES]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a compressed file (after checking magic, version and checksum)."""
    path = Path(path)
    return _parse(path, path.read_bytes())[0]


def _check_model(path: Path, manifest: dict[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    names = [t["name"] for t in manifest["tensors"]]
    if list(state) != names:
        missing = [n for n in names if n not in state]
        extra = [n for n in state if n not in set(names)]
        detail = "order differs"
        if missing or extra:
            detail = f"missing in the model: {missing[:5]}; not in the file: {extra[:5]}"
        raise _fail(path, f"the model's state_dict does not match the file ({detail}); is it the same architecture?")
    for t in manifest["tensors"]:
        have = state[t["name"]]
        if list(have.shape) != t["shape"]:
            raise _fail(path, f"{t['name']} has shape {list(have.shape)} in the model, {t['shape']} in the file")
        if _dtype_name(have.dtype) != t["dtype"]:
            raise _fail(path, f"{t['name']} has dtype {have.dtype} in the model, {t['dtype']} in the file")
    return state


def _decode(path: Path, manifest: dict[str, Any], payload: memoryview) -> dict[str, torch.Tensor]:
    """Every tensor of the file, as new CPU tensors (nothing is written to a model here)."""
    tensors = manifest["tensors"]
    k, n = manifest["unique"], manifest["n_symbols"]
    wide = manifest["codebook_dtype"] == "float64"
    float_dtype, bits_dtype = (torch.float64, torch.int64) if wide else (torch.float32, torch.int32)
    freq_np = "<u8" if manifest["freq_dtype"] == "uint64" else "<u4"
    coded_numel = sum(math.prod(t["shape"]) for t in tensors if t["coded"])
    raw_numel = sum(math.prod(t["shape"]) * _DTYPES[t["dtype"]].itemsize for t in tensors if not t["coded"])
    sizes = [k * (8 if wide else 4), k * np.dtype(freq_np).itemsize, 4 * manifest["stream_words"], raw_numel]
    if coded_numel != n or sum(sizes) != len(payload) or (k == 0) != (n == 0) or (k < 2 and sizes[2]):
        raise _fail(path, "malformed: the section sizes do not add up to the file size")
    offsets = np.cumsum([0, *sizes]).tolist()
    section = [payload[a:b] for a, b in itertools.pairwise(offsets)]
    keys = torch.from_numpy(np.frombuffer(section[0], dtype="<f8" if wide else "<f4").copy()).view(bits_dtype)
    counts = np.frombuffer(section[1], dtype=freq_np).astype(np.int64)
    if int(counts.sum()) != n or (counts <= 0).any():
        raise _fail(path, "malformed: the symbol frequencies do not match the number of coded entries")
    if k >= 2:
        words = np.frombuffer(section[2], dtype="<u4").astype(np.uint32)
        coder = _constriction().stream.stack.AnsCoder(words)
        symbols = coder.decode(_probabilities(counts), n)
        if not coder.is_empty() or not np.array_equal(np.bincount(symbols, minlength=k), counts):
            raise _fail(path, "the symbol stream does not decode to the stored frequencies (corrupt or foreign coder)")
        values = keys[torch.from_numpy(symbols.astype(np.int64))].view(float_dtype)
    else:
        values = keys.expand(n).view(float_dtype) if k else torch.empty(0, dtype=float_dtype)
    out, at, raw_at, raw = {}, 0, 0, section[3]
    for t in tensors:
        dtype, shape, numel = _DTYPES[t["dtype"]], t["shape"], math.prod(t["shape"])
        if t["coded"]:
            out[t["name"]] = values[at : at + numel].to(dtype).reshape(shape).clone()
            at += numel
        else:
            size = numel * dtype.itemsize
            chunk = bytearray(raw[raw_at : raw_at + size])
            raw_at += size
            flat = torch.frombuffer(chunk, dtype=torch.uint8) if size else torch.empty(0, dtype=torch.uint8)
            out[t["name"]] = flat.view(dtype).reshape(shape)
    return out


def load_compressed(path: str | Path, model: nn.Module) -> nn.Module:
    """Restore the exact values of a compressed file into ``model`` (same architecture); returns ``model``.

    Everything (magic, version, checksum, manifest against the model's state_dict names, shapes and
    dtypes, the decoded stream) is checked before the model is touched; on any problem a
    :class:`CompressedFileError` is raised and the model is unchanged.
    """
    _check_little_endian()
    path = Path(path)
    manifest, payload = _parse(path, path.read_bytes())
    _check_model(path, manifest, model)
    values = _decode(path, manifest, payload)
    model.load_state_dict(values, strict=True)
    return model


# ------------------------------------------------------------------------------ finished runs
def _candidate_models(state: dict[str, torch.Tensor]):
    """``(name, builder)`` for each architecture a run directory may hold, guessed from the state_dict."""
    from ..models import TORCHVISION_RESNETS, DigitsCNN, MNIST1DResNet, cifar_resnet18, torchvision_model

    if "classifier.3.weight" in state:
        classes = state["classifier.3.weight"].shape[0]
        yield "DigitsCNN", lambda: DigitsCNN(num_classes=classes)
    if "fc.weight" in state and state["fc.weight"].dim() == 2:
        classes = state["fc.weight"].shape[0]
        if "stem.0.weight" in state:
            yield "MNIST1DResNet", lambda: MNIST1DResNet(num_classes=classes)
        yield "cifar_resnet18", lambda: cifar_resnet18(num_classes=classes)
        for arch in TORCHVISION_RESNETS:
            yield arch, lambda arch=arch: torchvision_model(arch, num_classes=classes)


def _signature(state: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in state.items()]


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, nn.Module]:
    """The first known architecture (DigitsCNN, MNIST1DResNet, CIFAR/ImageNet ResNets) whose state_dict
    matches ``state``."""
    for name, build in _candidate_models(state):
        model = build()
        if _signature(model.state_dict()) == _signature(state):
            return name, model
    raise ValueError("the state_dict matches no known architecture (DigitsCNN, MNIST1DResNet, cifar_resnet18, "
                     "resnet18/34/50); pass model=")


def export_run(
    run_dir: str | Path, out_path: str | Path, model: nn.Module | None = None, include_bn: bool | None = None
) -> dict[str, Any]:
    """Export the ``model.pt`` of a finished run directory to ``out_path``; returns the size report.

    The architecture is recognised from the state_dict unless ``model`` is given; ``include_bn`` comes
    from the run's checkpoint config unless given (False when there is no checkpoint).
    """
    from ..models import load_state_dict_file
    from ..pipeline import CHECKPOINT_NAME

    run_dir = Path(run_dir)
    weights = run_dir / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished WFN run: no model.pt")
    state = load_state_dict_file(weights)
    if model is None:
        arch, model = infer_architecture(state)
    else:
        arch = type(model).__name__
    model.load_state_dict(state)
    if include_bn is None:
        include_bn = False
        checkpoint = run_dir / CHECKPOINT_NAME
        if checkpoint.is_file():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
            include_bn = bool(saved.get("config", {}).get("include_bn", False))
    report = save_compressed(model, out_path, include_bn=include_bn)
    report["architecture"] = arch
    return report


def export_cli(run_dir: str | Path, out: str | Path) -> int:
    """``python -m wfn_core export RUN_DIR OUT``: export and print a short report; returns 0."""
    r = export_run(run_dir, out)
    print(f"{r['architecture']}: {r['n_symbols']} fixable values, {r['unique']} unique, {r['entropy_bits']:.3f} bits")
    print(f"fixable part {r['fixable_bytes']} bytes, bound N*H/8 + tables {r['bound_bytes']:.0f} bytes, "
          f"ratio {r['ratio']:.4f}")
    print(f"file {r['bytes']} bytes ({r['raw_bytes']} raw, {r['header_bytes']} header), "
          f"fp32 state_dict {r['fp32_state_dict_bytes']} bytes, ratio to fp32 {r['ratio_to_fp32']:.4f}")
    print(f"wrote {out}")
    return 0
