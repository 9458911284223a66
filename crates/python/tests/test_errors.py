"""Every malformed input raises its documented exception, never crashes the interpreter,
and a failed save leaves the previous file as it was."""

import os
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest

import sparsewire
import sparsewire.numpy as swnp

RNG = np.random.default_rng(3)
T = {"w": RNG.standard_normal((64, 64)).astype(np.float32), "i": np.arange(9, dtype=np.int32)}


def test_the_classes():
    for cls in (
        sparsewire.InvalidInput, sparsewire.CorruptStream, sparsewire.UnsupportedVersion,
        sparsewire.LimitExceeded, sparsewire.FileError, sparsewire.SparsifyError,
    ):
        assert issubclass(cls, sparsewire.SparsewireError)
    assert issubclass(sparsewire.InvalidInput, ValueError)
    assert issubclass(sparsewire.FileError, OSError)


@pytest.mark.parametrize(
    "tensors, match",
    [
        ({"o": np.array([object()], dtype=object)}, "object"),
        ({"c": np.ones(3, np.complex128)}, "complex128"),
        ({"s": np.array(["ab"])}, "not supported"),
        ({1: np.ones(3, np.float32)}, "names must be str"),
        ({"l": [1.0, 2.0]}, "numpy array"),
        ([("w", np.ones(3))], "dict"),
    ],
)
def test_bad_tensors(tensors, match):
    with pytest.raises(sparsewire.InvalidInput, match=match):
        swnp.save(tensors)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"sparsity": 1.0}, r"\[0, 1\)"),
        ({"sparsity": -0.1}, r"\[0, 1\)"),
        ({"sparsity": float("nan")}, r"\[0, 1\)"),
        ({"target_ratio": 0.0}, r"\(0, 1\]"),
        ({"max_error": -1.0}, "> 0"),
        ({"sparsity": 0.5, "target_ratio": 0.5}, "one of"),
        ({"criterion": "magnitude"}, "only applies when sparsifying"),
        ({"sparsity": 0.5, "criterion": "psychic"}, "criterion"),
        ({"sparsity": 0.5, "pattern": "3:2"}, "pattern"),
        ({"sparsity": 0.5, "reconstruct": "magic"}, "reconstruct"),
        ({"profile": "tiny"}, "profile"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(sparsewire.InvalidInput, match=match):
        swnp.save(T, **options)


def test_a_misspelt_option_is_refused_not_ignored():
    with pytest.raises(sparsewire.InvalidInput, match='unknown option "sparsty"'):
        sparsewire._core.save_arrays(swnp._core.numpy_entries(T), None, None, {"sparsty": 0.5})
    with pytest.raises(sparsewire.InvalidInput, match="wrong type"):
        swnp.save(T, sparsity="half")


def test_bad_metadata():
    with pytest.raises(sparsewire.InvalidInput, match="str to str"):
        swnp.save(T, metadata={"a": 1})


def test_sparsification_refusals():
    w = T["w"].copy()
    w[3, 4] = np.nan
    with pytest.raises(sparsewire.SparsifyError, match="NaN|non-finite|finite"):
        swnp.save({"w": w}, sparsity=0.5)
    kept = swnp.load(swnp.save({"w": w}, sparsity=0.5, nonfinite="keep"))["w"]
    assert np.isnan(kept[3, 4])



def test_calibration_drives_wanda_and_its_absence_is_reported():
    x = RNG.standard_normal((32, 64)).astype(np.float32)
    x[:, 5] *= 100  # one loud input channel: Wanda keeps its column, magnitude need not
    w = {"fc.weight": T["w"]}
    plain = sparsewire.inspect(swnp.save(w, sparsity=0.5, criterion="wanda"))
    assert plain["tensors"][0]["sparsification"]["criterion"] == "magnitude"
    data = swnp.save(w, sparsity=0.5, criterion="wanda", calibration={"fc.input": x})
    assert sparsewire.inspect(data)["tensors"][0]["sparsification"]["criterion"] == "wanda"
    got = swnp.load(data)["fc.weight"]
    assert (got[:, 5] != 0).all()
    with pytest.raises(sparsewire.InvalidInput, match="calibration only applies"):
        swnp.save(w, calibration={"fc.input": x})


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.swire"
    swnp.save_file(T, path)
    before = path.read_bytes()
    bad = {"w": np.full((8, 8), np.nan, np.float32)}
    with pytest.raises(sparsewire.SparsifyError):
        swnp.save_file(bad, path, sparsity=0.5)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.swire"]


def test_paths(tmp_path):
    # A folder is read as a compressed model folder; an empty one has no model.
    with pytest.raises(sparsewire.InvalidInput, match="no model found"):
        swnp.load_file(tmp_path)
    with pytest.raises(sparsewire.FileError, match="No such file"):
        swnp.load_file(tmp_path / "absent.swire")
    with pytest.raises(sparsewire.FileError):
        swnp.save_file(T, tmp_path / "no" / "such" / "folder.swire")
    with pytest.raises(sparsewire.FileError, match="directory"):
        swnp.save_file(T, tmp_path)
    if os.path.exists("/dev/null"):
        # A device is written into, never replaced by a file.
        swnp.save_file(T, "/dev/null")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_truncated_and_corrupt_streams():
    data = swnp.save(T)
    for n in (0, 4, 11, 12, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(sparsewire.CorruptStream):
            swnp.load(data[:n])
    with pytest.raises(sparsewire.CorruptStream, match="magic"):
        swnp.load(b"PK\x03\x04" + data[4:])
    # Every single-byte flip: an error of the family, or (where the byte is not covered by
    # a checksum) the same tensors; never a crash.
    for i in range(0, len(data), max(1, len(data) // 600)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        try:
            got = swnp.load(bytes(bad))
        except sparsewire.SparsewireError:
            continue
        for k in T:
            assert got[k].tobytes() == T[k].tobytes(), (i, k)


def test_a_newer_format_version_names_both_versions():
    data = bytearray(swnp.save(T))
    (v,) = struct.unpack_from("<I", data, 8)
    assert v == sparsewire.FORMAT_VERSION
    struct.pack_into("<I", data, 8, v + 1)
    with pytest.raises(sparsewire.UnsupportedVersion, match=f"{v + 1}.*{v}.*newer"):
        swnp.load(bytes(data))


def test_missing_names_and_closed_files(tmp_path):
    with sparsewire.safe_open(swnp.save(T)) as f:
        with pytest.raises(KeyError):
            f.get_tensor("nope")
        with pytest.raises(IndexError):
            f.get_slice("w")[64]
        with pytest.raises(sparsewire.InvalidInput, match="first index"):
            f.get_slice("w")[[1, 2]]
    with pytest.raises(sparsewire.InvalidInput, match="closed"):
        f.get_tensor("w")
    with pytest.raises(sparsewire.InvalidInput, match="framework"):
        sparsewire.safe_open(swnp.save(T), framework="jax")


def test_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, sparsewire, sparsewire.numpy as s\n"
        "assert s.load(s.save({'a': np.ones(2)}))['a'].sum() == 2\n"
        "try:\n    import sparsewire.torch\nexcept ImportError:\n    print('no torch: ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "no torch: ok" in out.stdout
