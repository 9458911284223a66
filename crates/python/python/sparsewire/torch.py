"""``sparsewire.torch``: save and load dicts of torch tensors (a state dict), as
``safetensors.torch`` does. Every torch dtype sparsewire stores round-trips bit for bit,
bfloat16 and the float8 types included. Tensors are moved to the CPU and made contiguous
(one copy where they are not already); loaded tensors share the decoded buffer.

    >>> import torch, sparsewire.torch as swt
    >>> sd = {"w": torch.randn(8, 8, dtype=torch.bfloat16)}
    >>> torch.equal(swt.load(swt.save(sd))["w"], sd["w"])
    True
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import numpy as np
import torch

from . import _core
from ._errors import InvalidInput

__all__ = ["save", "save_file", "load", "load_file", "to_torch"]

_TO_NAME = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.complex64: "C64",
}
for _attr, _name in [
    ("uint16", "U16"),
    ("uint32", "U32"),
    ("uint64", "U64"),
    ("float8_e4m3fn", "F8_E4M3"),
    ("float8_e5m2", "F8_E5M2"),
    ("float8_e4m3fnuz", "F8_E4M3FNUZ"),
    ("float8_e5m2fnuz", "F8_E5M2FNUZ"),
    ("float8_e8m0fnu", "F8_E8M0"),
]:
    if hasattr(torch, _attr):
        _TO_NAME[getattr(torch, _attr)] = _name
_FROM_NAME = {v: k for k, v in _TO_NAME.items()}


def _entry(name: str, t: "torch.Tensor"):
    if not isinstance(t, torch.Tensor):
        raise InvalidInput(f"tensor {name!r}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _TO_NAME:
        raise InvalidInput(f"tensor {name!r}: dtype {t.dtype} is not supported")
    if t.layout != torch.strided:
        raise InvalidInput(f"tensor {name!r}: {t.layout} tensors are not supported; call .to_dense()")
    t = t.detach().cpu().contiguous()
    shape = [int(s) for s in t.shape]
    flat = t.reshape(-1)
    data = flat.view(torch.uint8) if flat.element_size() > 0 else flat
    return (name, _TO_NAME[t.dtype], shape, data.numpy())


def _entries(tensors):
    _core.check_tensors(tensors)
    return [_entry(name, t) for name, t in tensors.items()]


def to_torch(name: str, dtype: str, shape, data: np.ndarray) -> "torch.Tensor":
    """Decoded bytes (flat uint8, owned) as a torch tensor of ``dtype`` and ``shape``,
    sharing the buffer."""
    try:
        td = _FROM_NAME[dtype]
    except KeyError:
        raise InvalidInput(f"tensor {name!r} is {dtype}, which this torch cannot hold") from None
    return torch.from_numpy(data).view(td).reshape(tuple(shape))


def save(tensors: Dict[str, "torch.Tensor"], metadata: Optional[Dict[str, str]] = None, **options) -> bytes:
    """Compresses a state dict into ``.swire`` bytes (options as
    :func:`sparsewire.numpy.save`)."""
    return _core.save_arrays(_entries(tensors), metadata, None, options)


def save_file(
    tensors: Dict[str, "torch.Tensor"],
    filename: Union[str, os.PathLike],
    metadata: Optional[Dict[str, str]] = None,
    **options,
) -> None:
    """Compresses a state dict into ``filename``, atomically."""
    _core.save_arrays(_entries(tensors), metadata, filename, options)


def _load(stream) -> Dict[str, "torch.Tensor"]:
    return {name: to_torch(name, d, s, data) for name, d, s, data in stream.get_all()}


def load(data: bytes) -> Dict[str, "torch.Tensor"]:
    """Decodes ``.swire`` bytes into a state dict."""
    return _load(_core.open_stream(data))


def load_file(filename: Union[str, os.PathLike]) -> Dict[str, "torch.Tensor"]:
    """Decodes a ``.swire`` file into a state dict."""
    return _load(_core.open_stream(filename))
