"""Shared by the tests: where the real tensors are, and a minimal safetensors reader (so
the tests need no other package to read them)."""

import json
import os
import pathlib
import struct

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def data_dir() -> pathlib.Path:
    """../shared/data (or $SPARSEWIRE_DATA); a test that needs it is skipped, with the
    reason, where it is absent, and fails under SPARSEWIRE_REQUIRE_DATA=1 (CI)."""
    d = pathlib.Path(os.environ.get("SPARSEWIRE_DATA", ROOT.parent / "shared" / "data"))
    if not (d / "minilm_l6_v2.bf16.safetensors").is_file():
        msg = f"the shared tensors are not at {d} (set SPARSEWIRE_DATA)"
        if os.environ.get("SPARSEWIRE_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


_ST = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
    "F16": np.float16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
    "F64": np.float64, "I64": np.int64, "U64": np.uint64,
}


def read_safetensors(path):
    """name -> numpy array (BF16 through ml_dtypes), metadata."""
    import ml_dtypes

    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        d = np.dtype(ml_dtypes.bfloat16) if e["dtype"] == "BF16" else np.dtype(_ST[e["dtype"]])
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=d).reshape(e["shape"])
    return out, meta


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def write_safetensors(path, tensors, metadata=None):
    """A minimal safetensors writer (numpy arrays; BF16 through ml_dtypes)."""
    names = {np.dtype(v): k for k, v in _ST.items()}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = "BF16" if a.dtype.name == "bfloat16" else names[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
