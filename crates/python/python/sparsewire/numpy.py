"""``sparsewire.numpy``: save and load dicts of numpy arrays, as ``safetensors.numpy`` does.

Lossless by default (bit for bit, every dtype); give ``sparsity`` (or an N:M ``pattern``,
``target_ratio``, ``max_error``) to sparsify the float matrices first.

    >>> import numpy as np, sparsewire.numpy as swnp
    >>> data = swnp.save({"w": np.ones((4, 4), np.float32)})
    >>> swnp.load(data)["w"].shape
    (4, 4)
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import numpy as np

from . import _core

__all__ = ["save", "save_file", "load", "load_file"]


def save(
    tensors: Dict[str, np.ndarray],
    metadata: Optional[Dict[str, str]] = None,
    *,
    sparsity: Optional[float] = None,
    criterion: Optional[str] = None,
    pattern: Optional[str] = None,
    reconstruct: Optional[str] = None,
    profile: Optional[str] = None,
    nonfinite: Optional[str] = None,
    target_ratio: Optional[float] = None,
    max_error: Optional[float] = None,
    calibration: Optional[Dict[str, np.ndarray]] = None,
) -> bytes:
    """Compresses ``tensors`` into ``.swire`` bytes.

    Arrays are read in place when C-contiguous and little-endian (otherwise copied once).
    ``sparsity`` in [0, 1) drops that fraction of each float matrix (rank >= 2) by
    ``criterion`` (``magnitude``, ``taylor``, ``correlation``, ``predictable``; ``wanda``
    and ``sparsegpt`` need calibration data: use the CLI) in ``pattern`` (``unstructured``,
    ``row``, ``N:M`` such as ``2:4``, ``block:RxC``, ``channel``); ``reconstruct`` says how
    the decoder rebuilds what was dropped (``zero``, ``linear``, ``learned``,
    ``dictionary``, ``spatial``, ``mlp``, ``auto``). ``profile``: ``small`` (default) or ``fast``.
    ``calibration``: layer inputs (``[tokens, in]`` f32 arrays, named as the CLI's
    ``--calibration`` file names them) for ``wanda`` and ``sparsegpt``; without them those
    criteria fall back to magnitude, and ``inspect`` shows the criterion used.
    ``target_ratio`` (the whole stream at most this fraction of the input) and
    ``max_error`` (per tensor, the sparsest setting within this relative error) choose the
    sparsity per tensor instead of ``sparsity``. ``nonfinite``: what to do with NaN and
    infinite weights when sparsifying (``error``, ``keep``, ``drop``).
    """
    return _core.save_arrays(
        _core.numpy_entries(tensors),
        metadata,
        None,
        dict(
            sparsity=sparsity,
            criterion=criterion,
            pattern=pattern,
            reconstruct=reconstruct,
            profile=profile,
            nonfinite=nonfinite,
            target_ratio=target_ratio,
            max_error=max_error,
            calibration=calibration,
        ),
    )


def save_file(
    tensors: Dict[str, np.ndarray],
    filename: Union[str, os.PathLike],
    metadata: Optional[Dict[str, str]] = None,
    **options,
) -> None:
    """Compresses ``tensors`` into the file ``filename``, atomically: the file appears
    complete or not at all (an existing file is replaced only then). Options as
    :func:`save`."""
    _core.save_arrays(_core.numpy_entries(tensors), metadata, filename, options)


def _load(stream) -> Dict[str, np.ndarray]:
    return {
        name: _core.as_array(name, dtype, shape, data)
        for name, dtype, shape, data in stream.get_all()
    }


def load(data: bytes) -> Dict[str, np.ndarray]:
    """Decodes ``.swire`` bytes: every tensor, with what was dropped rebuilt."""
    return _load(_core.open_stream(data))


def load_file(filename: Union[str, os.PathLike]) -> Dict[str, np.ndarray]:
    """Decodes a ``.swire`` file: every tensor, with what was dropped rebuilt. Each array
    owns the buffer it was decoded into (no second copy)."""
    return _load(_core.open_stream(filename))
