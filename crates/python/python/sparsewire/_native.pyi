# Type stubs for the Rust extension module (src/lib.rs). Tensors cross the boundary as
# (name, dtype name, shape, flat uint8 array); the Python modules wrap them. `options` are
# the keyword options of sparsewire.numpy.save (sparsity, criterion, pattern, reconstruct,
# profile, nonfinite, target_ratio, max_error); an unknown key is an InvalidInput.
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
FORMAT_VERSION: int
ACTIVATIONS_TENSOR: str

_Entry = Tuple[str, str, Sequence[int], npt.NDArray[np.uint8]]
_Out = Tuple[str, str, List[int], npt.NDArray[np.uint8]]

def save(
    tensors: Sequence[_Entry],
    metadata: Optional[Sequence[Tuple[str, str]]] = None,
    path: Optional[Union[str, PathLike[str]]] = None,
    options: Optional[Dict[str, Any]] = None,
    calibration: Optional[Sequence[_Entry]] = None,
) -> Optional[bytes]: ...

def sparsify_activations(
    values: npt.NDArray[np.float32],
    rows: int,
    cols: int,
    *,
    keep: Optional[float] = None,
    topk: Optional[int] = None,
    threshold: Optional[float] = None,
    dtype: str = "F32",
    profile: Optional[str] = None,
) -> bytes: ...

class Stream:
    @staticmethod
    def open(path: Union[str, PathLike[str]]) -> "Stream": ...
    @staticmethod
    def from_bytes(data: bytes) -> "Stream": ...
    def keys(self) -> List[str]: ...
    def metadata(self) -> List[Tuple[str, str]]: ...
    def info(self, name: str) -> Tuple[str, List[int], bool, str]: ...
    def get(self, name: str) -> npt.NDArray[np.uint8]: ...
    def get_all(self) -> List[_Out]: ...
    def get_rows(self, name: str, start: int, stop: int) -> npt.NDArray[np.uint8]: ...
    def get_sparse(self, name: str, layout: str, index: str = "i64") -> List[_Out]: ...
    def bytes_read(self) -> Optional[int]: ...
    def inspect(self, entropy: bool = False) -> str: ...
    def _decode_only(self) -> int: ...

def model_shards(path: Union[str, PathLike[str]]) -> Optional[Tuple[str, List[str]]]: ...
def compress_dir(
    input: Union[str, PathLike[str]],
    output: Union[str, PathLike[str]],
    force: bool = False,
    options: Optional[Dict[str, Any]] = None,
) -> str: ...
def decompress_dir(input: Union[str, PathLike[str]], output: Union[str, PathLike[str]], *, force: bool = False) -> str: ...
