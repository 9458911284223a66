"""The exceptions sparsewire raises. Every one derives from :class:`SparsewireError` and
carries the Rust error's message (which names the file, tensor, tile or option at fault)."""


class SparsewireError(Exception):
    """Base class of every sparsewire error."""


class InvalidInput(SparsewireError, ValueError):
    """Bad arguments: an unsupported dtype, a non-string key, an option out of range, a
    shape that does not match the data, rows out of range, a duplicate name."""


class CorruptStream(SparsewireError):
    """A stream that is truncated, damaged (checksum, offsets, codec) or not a stream."""


class UnsupportedVersion(SparsewireError):
    """A stream written in another format version; the message gives both versions."""


class LimitExceeded(SparsewireError):
    """Decoding would go over the output or memory limit (a hostile or huge stream)."""


class FileError(SparsewireError, OSError):
    """Reading or writing a file failed, or the path is refused (a directory, a device,
    an output that is the input)."""


class SparsifyError(SparsewireError, ValueError):
    """The sparsification engine refused the tensors (NaN weights, a criterion that needs
    calibration data, an impossible pattern)."""


__all__ = [
    "SparsewireError",
    "InvalidInput",
    "CorruptStream",
    "UnsupportedVersion",
    "LimitExceeded",
    "FileError",
    "SparsifyError",
]
