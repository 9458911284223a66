"""The numpy side of the binding: dtype names, byte views without copies, and the calls
into ``sparsewire._native`` that every front end (numpy, torch, ``safe_open``) shares."""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

from . import _native
from ._errors import InvalidInput

try:  # bf16 and fp8 for numpy arrays; optional.
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover - depends on the environment
    _ml = None

# numpy dtype -> sparsewire (safetensors) dtype name. Only little-endian data is stored.
_BUILTIN = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint16): "U16",
    np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint32): "U32",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint64): "U64",
    np.dtype(np.complex64): "C64",
}
_ML_NAMES = {
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
}
_TO_NAME: Dict[np.dtype, str] = dict(_BUILTIN)
_FROM_NAME: Dict[str, np.dtype] = {v: k for k, v in _BUILTIN.items()}
if _ml is not None:
    for attr, name in _ML_NAMES.items():
        if hasattr(_ml, attr):
            d = np.dtype(getattr(_ml, attr))
            _TO_NAME[d] = name
            _FROM_NAME[name] = d


def dtype_name(name: str, dtype: np.dtype) -> str:
    """The sparsewire dtype name of a numpy dtype, or ``InvalidInput``."""
    d = np.dtype(dtype)
    if d.byteorder == ">":
        d = d.newbyteorder("<")
    try:
        return _TO_NAME[d]
    except KeyError:
        hint = ""
        if d.kind == "O":
            hint = " (object arrays hold Python objects, not numbers)"
        elif d.kind == "c":
            hint = " (complex64 is supported; complex128 is not)"
        elif d.kind == "V" and _ml is None:
            hint = " (for bf16/fp8 install ml_dtypes)"
        raise InvalidInput(f"tensor {name!r}: dtype {d} is not supported{hint}") from None


def numpy_dtype(tensor: str, name: str) -> np.dtype:
    """The numpy dtype for a sparsewire dtype name, or ``InvalidInput`` saying what to
    install or use instead."""
    try:
        return _FROM_NAME[name]
    except KeyError:
        if name in _ML_NAMES.values():
            raise InvalidInput(
                f"tensor {tensor!r} is {name}: numpy has no such dtype; install ml_dtypes "
                f"(pip install ml_dtypes) or use framework='pt'"
            ) from None
        raise InvalidInput(f"tensor {tensor!r} is {name}, which numpy cannot hold") from None


def byte_view(name: str, a: np.ndarray) -> np.ndarray:
    """``a``'s bytes as a flat uint8 array: no copy when it is C-contiguous and
    little-endian, one copy otherwise."""
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    a = np.ascontiguousarray(a)
    return a.reshape(-1).view(np.uint8)


def as_array(name: str, dtype: str, shape, data: np.ndarray) -> np.ndarray:
    """The decoded bytes ``data`` (flat uint8, owned) as ``dtype`` and ``shape``, no copy."""
    return data.view(numpy_dtype(name, dtype)).reshape(tuple(shape))


def check_tensors(tensors: Mapping[str, Any]) -> None:
    if not isinstance(tensors, Mapping):
        raise InvalidInput(f"tensors must be a dict of name -> array, not {type(tensors).__name__}")
    for k in tensors:
        if not isinstance(k, str):
            raise InvalidInput(f"tensor names must be str, got {type(k).__name__} {k!r}")


def check_metadata(metadata: Optional[Mapping[str, str]]):
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidInput(f"metadata must be a dict of str -> str, not {type(metadata).__name__}")
    out = []
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidInput(f"metadata must map str to str; got {k!r}: {v!r}")
        out.append((k, v))
    return out


def save_arrays(entries, metadata, path, options):
    """``entries``: list of (name, dtype name, shape, uint8 view)."""
    if path is not None:
        path = os.fspath(path)
    options = dict(options)
    calibration = options.pop("calibration", None)
    if calibration is not None:
        calibration = numpy_entries(calibration)
    return _native.save(entries, check_metadata(metadata), path, options, calibration)


def numpy_entries(tensors: Mapping[str, Any]):
    check_tensors(tensors)
    entries = []
    for name, a in tensors.items():
        if not isinstance(a, np.ndarray):
            raise InvalidInput(f"tensor {name!r}: expected a numpy array, got {type(a).__name__}")
        d = dtype_name(name, a.dtype)
        entries.append((name, d, [int(s) for s in a.shape], byte_view(name, a)))
    return entries


def open_stream(source):
    """A native stream from a path or from bytes; a compressed model folder (or its
    ``model.swire.index.json``) as one :class:`Shards`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _native.Stream.from_bytes(bytes(source))
    path = os.fspath(source)
    folder = _native.model_shards(path)
    if folder is not None:
        return Shards(*folder)
    return _native.Stream.open(path)


class Shards:
    """The streams of a compressed model folder, behind the one-stream interface: each
    tensor is read from its own shard."""

    def __init__(self, folder, names):
        self._folder = os.fspath(folder)
        self._streams = [_native.Stream.open(os.path.join(self._folder, n)) for n in names]
        self._names = list(names)
        self._where = {}
        for s in self._streams:
            for k in s.keys():
                if k in self._where:
                    raise InvalidInput(f"{self._folder}: tensor {k!r} is in two shards")
                self._where[k] = s

    def _of(self, name):
        try:
            return self._where[name]
        except KeyError:
            raise KeyError(name) from None

    def keys(self):
        return [k for s in self._streams for k in s.keys()]

    def metadata(self):
        out = []
        for s in self._streams:
            for kv in s.metadata():
                if kv not in out:
                    out.append(kv)
        return out

    def info(self, name):
        return self._of(name).info(name)

    def get(self, name):
        return self._of(name).get(name)

    def get_all(self):
        return [t for s in self._streams for t in s.get_all()]

    def get_rows(self, name, start, stop):
        return self._of(name).get_rows(name, start, stop)

    def get_sparse(self, name, layout, index="i64"):
        return self._of(name).get_sparse(name, layout, index)

    def bytes_read(self):
        return sum(s.bytes_read() for s in self._streams)

    def inspect(self, entropy=False):
        import json

        shards = [dict(file=n, **json.loads(s.inspect(entropy))) for n, s in zip(self._names, self._streams)]
        return json.dumps({"folder": self._folder, "shards": shards})


def bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) to float32, exactly."""
    return (u16.astype(np.uint32) << 16).view(np.float32)
