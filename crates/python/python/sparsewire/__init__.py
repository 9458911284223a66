"""sparsewire: neural-network tensors made small before they cross a slow link.

A Rust core with a safetensors-shaped API:

* :mod:`sparsewire.numpy` and :mod:`sparsewire.torch`: ``save``/``save_file`` and
  ``load``/``load_file`` for dicts of arrays or state dicts (lossless by default,
  sparsified with ``sparsity=``);
* :func:`safe_open`: random access to one tensor, a range of its rows (only the tiles they
  need are read), or a sparsified tensor in a sparse layout (CSR, CSC, COO, bitmask);
* :func:`inspect`: what a stream holds (the CLI's ``inspect --json``);
* :func:`sparsify_activations` / :func:`desparsify_activations`: an activation block as
  stream bytes for a training or serving loop that ships activations.

Errors derive from :class:`SparsewireError`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from . import _core, _native
from ._errors import (
    CorruptStream,
    FileError,
    InvalidInput,
    LimitExceeded,
    SparsewireError,
    SparsifyError,
    UnsupportedVersion,
)

__version__ = _native.__version__
FORMAT_VERSION: int = _native.FORMAT_VERSION

__all__ = [
    "safe_open",
    "inspect",
    "compress_dir",
    "decompress_dir",
    "sparsify_activations",
    "desparsify_activations",
    "SparsewireError",
    "InvalidInput",
    "CorruptStream",
    "UnsupportedVersion",
    "LimitExceeded",
    "FileError",
    "SparsifyError",
    "FORMAT_VERSION",
]

_FRAMEWORKS = {"numpy": "numpy", "np": "numpy", "pt": "pt", "torch": "pt", "pytorch": "pt"}


class _Slice:
    """``safe_open(...).get_slice(name)``: index it like an array; only the row blocks of
    tiles that the first index crosses are decoded."""

    def __init__(self, owner: "safe_open", name: str):
        self._owner = owner
        self._name = name
        self._dtype, self._shape, _, _ = owner._stream.info(name)

    def get_shape(self) -> List[int]:
        return list(self._shape)

    def get_dtype(self) -> str:
        return self._dtype

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if len(self._shape) < 2 or key is Ellipsis or first is Ellipsis:
            whole = self._owner._convert(self._name, self._owner._stream.get(self._name))
            return whole[key]
        rows = self._shape[0]
        if isinstance(first, (int, np.integer)):
            i = int(first)
            if i < -rows or i >= rows:
                raise IndexError(f"index {i} is out of bounds for {self._name!r} with {rows} rows")
            i %= rows
            block = self._rows(i, i + 1)
            return block[(0,) + tuple(rest)]
        if isinstance(first, slice):
            start, stop, step = first.indices(rows)
            if step > 0:
                lo, hi = start, max(start, stop)
                sub = slice(None, None, step)
            else:
                # A reversed range: decode the rows it covers, then walk them backwards.
                count = len(range(start, stop, step))
                lo = start + (count - 1) * step if count else 0
                hi = start + 1 if count else 0
                sub = slice(None, None, step) if count else slice(0, 0)
            block = self._rows(lo, hi)
            return block[(sub,) + tuple(rest)]
        raise InvalidInput(
            f"get_slice({self._name!r})[...]: the first index must be an int or a slice, not "
            f"{type(first).__name__}"
        )

    def _rows(self, start: int, stop: int):
        data = self._owner._stream.get_rows(self._name, start, stop)
        shape = [stop - start] + list(self._shape[1:])
        return self._owner._to_framework(self._name, self._dtype, shape, data)


class safe_open:
    """Random access to a ``.swire`` file, shaped like ``safetensors.safe_open``::

        with sparsewire.safe_open("model.swire", framework="pt") as f:
            for name in f.keys():
                t = f.get_tensor(name)
            rows = f.get_slice("embeddings.word_embeddings.weight")[1000:1010]

    Opening reads and checks the header only; each call decodes only the tiles it needs.
    ``framework``: ``"numpy"`` (default) or ``"pt"``. ``source`` may also be ``bytes``.
    """

    def __init__(self, source: Union[str, os.PathLike, bytes], framework: str = "numpy", device: str = "cpu"):
        fw = _FRAMEWORKS.get(str(framework).lower())
        if fw is None:
            raise InvalidInput(f"framework={framework!r}: use 'numpy' or 'pt'")
        if device != "cpu":
            raise InvalidInput(f"device={device!r}: tensors are decoded on the CPU; move them after loading")
        if fw == "pt":
            from . import torch as _torch  # noqa: F401 - fails clearly without torch

            self._to_torch = _torch.to_torch
        self._framework = fw
        self._stream = _core.open_stream(source)

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, *exc) -> None:
        self._stream = _Closed()

    def keys(self) -> List[str]:
        """Tensor names, in stream order."""
        return self._stream.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._stream.keys()

    def metadata(self) -> Dict[str, str]:
        """The metadata given to ``save``."""
        return dict(self._stream.metadata())

    def bytes_read(self) -> Optional[int]:
        """Bytes read from the file so far (``None`` for a stream given as bytes): opening
        reads the header, each tensor only its own tiles."""
        return self._stream.bytes_read()

    def _to_framework(self, name, dtype, shape, data):
        if self._framework == "pt":
            return self._to_torch(name, dtype, shape, data)
        return _core.as_array(name, dtype, shape, data)

    def _convert(self, name, data):
        dtype, shape, _, _ = self._stream.info(name)
        return self._to_framework(name, dtype, shape, data)

    def get_tensor(self, name: str):
        """One tensor, decoded and rebuilt; reads only its own tiles."""
        return self._convert(name, self._stream.get(name))

    def get_slice(self, name: str) -> _Slice:
        """A lazily decoded view: ``get_slice(name)[a:b]`` decodes only rows ``a:b``."""
        return _Slice(self, name)

    def info(self, name: str) -> Dict[str, Any]:
        """``dtype``, ``shape``, whether it was ``sparsified`` and its ``reconstruction``."""
        dtype, shape, sparsified, rec = self._stream.info(name)
        return {"dtype": dtype, "shape": list(shape), "sparsified": sparsified, "reconstruction": rec}

    def get_sparse(self, name: str, layout: str = "csr", index: str = "i64"):
        """A sparsified, zero-filled tensor in a sparse layout, built from its stored mask
        and kept values (no dense detour). Rank > 2 tensors use their 2-D view
        ``[shape[0], prod(shape[1:])]``.

        * ``"csr"``, ``"csc"``, ``"coo"``: a ``scipy.sparse`` matrix (``framework="numpy"``)
          or ``torch.sparse_csr_tensor`` / ``sparse_csc_tensor`` / ``sparse_coo_tensor``
          (``framework="pt"``);
        * ``"bitmask"``: ``(mask, values)``: the packed mask (uint8, LSB first, row-major)
          and the kept values in order.
        """
        layout = layout.lower()
        arrays = self._stream.get_sparse(name, layout, index)
        dtype, shape, _, _ = self._stream.info(name)
        got = {}
        for n, d, s, data in arrays:
            key = n[len(name) + 1 :] if n.startswith(name + ".") else n
            got[key] = (n, d, s, data)
        if layout == "bitmask":
            mask = _core.as_array(*got["mask"])
            values = self._to_framework(*got["values"])
            return mask, values
        rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) >= 2 else (1, int(np.prod(shape)))
        index_arrays = {k: _core.as_array(*v) for k, v in got.items() if k in _INDEX_ARRAYS}
        if self._framework == "pt":
            import torch

            vals = self._to_torch(*got["values"])
            ix = {k: torch.from_numpy(a) for k, a in index_arrays.items()}
            return _torch_sparse(layout, ix, vals, (rows, cols))
        vals = _core.as_array(*got["values"])
        return _scipy_sparse(layout, index_arrays, vals, (rows, cols))


_INDEX_ARRAYS = ("row_ptr", "col_idx", "col_ptr", "row_idx", "row", "col")


def _scipy_sparse(layout, arrays, values, shape):
    try:
        import scipy.sparse as sp
    except ImportError:
        raise InvalidInput("get_sparse with framework='numpy' needs scipy (pip install scipy)") from None
    if layout == "csr":
        return sp.csr_matrix((values, arrays["col_idx"], arrays["row_ptr"]), shape=shape)
    if layout == "csc":
        return sp.csc_matrix((values, arrays["row_idx"], arrays["col_ptr"]), shape=shape)
    return sp.coo_matrix((values, (arrays["row"], arrays["col"])), shape=shape)


def _torch_sparse(layout, ix, values, shape):
    import torch

    if layout == "csr":
        return torch.sparse_csr_tensor(ix["row_ptr"], ix["col_idx"], values, size=shape, check_invariants=True)
    if layout == "csc":
        return torch.sparse_csc_tensor(ix["col_ptr"], ix["row_idx"], values, size=shape, check_invariants=True)
    idx = torch.stack([ix["row"], ix["col"]])
    return torch.sparse_coo_tensor(idx, values, size=shape, check_invariants=True)


class _Closed:
    def __getattr__(self, name):
        raise InvalidInput("the file is closed (use it inside its with block)")


def compress_dir(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *, force: bool = False, **options) -> Dict[str, Any]:
    """Compresses a model folder in the Hugging Face layout (``model.safetensors``, or the
    shards of ``model.safetensors.index.json``, beside ``config.json`` and friends) into
    the folder ``dst``: one ``.swire`` per shard, ``model.swire.index.json``, and every
    other file copied. ``dst`` appears complete or not at all. Options as
    :func:`sparsewire.numpy.save`; returns the report (as ``sparsewire compress DIR
    --json``). PyTorch pickles are refused, never unpickled."""
    return json.loads(_native.compress_dir(os.fspath(src), os.fspath(dst), force, options))


def decompress_dir(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *, force: bool = False) -> Dict[str, Any]:
    """The model folder back from :func:`compress_dir`'s output: the same layout, each
    tensor bit for bit."""
    return json.loads(_native.decompress_dir(os.fspath(src), os.fspath(dst), force=force))


def inspect(source: Union[str, os.PathLike, bytes], entropy: bool = False) -> Dict[str, Any]:
    """What a stream holds, with the same fields as ``sparsewire inspect --json``."""
    return json.loads(_core.open_stream(source).inspect(entropy))


def sparsify_activations(
    array,
    *,
    keep: Optional[float] = None,
    topk: Optional[int] = None,
    threshold: Optional[float] = None,
    dtype: str = "f32",
    profile: Optional[str] = None,
) -> bytes:
    """An activation block (``[..., cols]``; rows are every leading index) sparsified per
    row and coded as ``.swire`` bytes: keep the fraction ``keep`` of each row, the
    ``topk`` largest |a| of each row, or every |a| > ``threshold``; the kept values are
    sent as ``dtype`` (``f32``, ``bf16`` or ``f16``). A numpy array or a torch tensor."""
    a = _as_numpy_f32(array)
    if a.ndim == 0:
        raise InvalidInput("activations must have at least one dimension")
    cols = a.shape[-1]
    rows = int(np.prod(a.shape[:-1])) if a.ndim > 1 else 1
    flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    return _native.sparsify_activations(
        flat, rows, cols, keep=keep, topk=topk, threshold=threshold, dtype=dtype, profile=profile
    )


def desparsify_activations(data: bytes) -> np.ndarray:
    """The ``[rows, cols]`` float32 block of :func:`sparsify_activations`, dropped values
    zero."""
    s = _native.Stream.from_bytes(bytes(data))
    name = _native.ACTIVATIONS_TENSOR
    if s.keys() != [name]:
        raise InvalidInput(f"not an activation stream: it holds {s.keys()!r}")
    dtype, shape, _, _ = s.info(name)
    raw = s.get(name)
    if dtype == "F32":
        out = raw.view(np.float32)
    elif dtype == "F16":
        out = raw.view(np.float16).astype(np.float32)
    elif dtype == "BF16":
        out = _core.bf16_to_f32(raw.view(np.uint16))
    else:
        raise InvalidInput(f"activation stream holds {dtype}, not a float block")
    return out.reshape(tuple(shape))


def _as_numpy_f32(array) -> np.ndarray:
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "fiu":
            raise InvalidInput(f"activations must be real numbers, not {array.dtype}")
        return array.astype(np.float32, copy=False)
    try:
        import torch

        if isinstance(array, torch.Tensor):
            return array.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    except ImportError:
        pass
    raise InvalidInput(f"activations must be a numpy array or a torch tensor, not {type(array).__name__}")
