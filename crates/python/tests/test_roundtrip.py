"""Lossless round trips: every dtype and awkward shape, bit for bit, through bytes and
files, numpy and torch."""

import ml_dtypes
import numpy as np
import pytest

import sparsewire
import sparsewire.numpy as swnp
from conftest import same_bits

RNG = np.random.default_rng(0)

DTYPES = [
    np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, ml_dtypes.bfloat16,
    ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2,
]
SHAPES = [(), (0,), (3, 0), (1,), (7,), (5, 3), (33, 65), (2, 3, 4, 5), (1, 1, 1)]


def sample(dtype, shape):
    d = np.dtype(dtype)
    n = int(np.prod(shape))
    if d == np.bool_:
        return RNG.integers(0, 2, n).astype(bool).reshape(shape)
    if d.kind in "iu":
        info = np.iinfo(d)
        return RNG.integers(info.min, info.max, n, dtype=d, endpoint=True).reshape(shape)
    if d.kind == "c":
        return (RNG.standard_normal(n) + 1j * RNG.standard_normal(n)).astype(d).reshape(shape)
    # Floats: every bit pattern, NaNs and infinities included.
    raw = RNG.integers(0, 256, n * d.itemsize, dtype=np.uint8)
    return raw.view(d).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bytes_round_trip_is_bit_exact(dtype, shape):
    t = {"x": sample(dtype, shape)}
    got = swnp.load(swnp.save(t))
    assert same_bits(got["x"], t["x"])


def test_many_tensors_metadata_and_files(tmp_path):
    t = {f"t{i}": sample(d, s) for i, (d, s) in enumerate(zip(DTYPES, SHAPES * 2))}
    meta = {"format": "pt", "note": "héllo"}
    path = tmp_path / "m.swire"
    swnp.save_file(t, path, metadata=meta)
    got = swnp.load_file(path)
    assert list(got) == list(t)
    for k in t:
        assert same_bits(got[k], t[k]), k
    with sparsewire.safe_open(path) as f:
        assert f.metadata() == meta
        assert f.keys() == list(t)
    # str paths and bytes agree with the file.
    assert same_bits(swnp.load(path.read_bytes())["t3"], t["t3"])
    assert same_bits(swnp.load_file(str(path))["t3"], t["t3"])


def test_non_contiguous_and_big_endian_inputs_are_stored_as_their_values():
    a = np.arange(60, dtype=np.float32).reshape(6, 10)
    t = {"strided": a[:, ::3], "fortran": np.asfortranarray(a), "big": a.astype(">f4")}
    got = swnp.load(swnp.save(t))
    np.testing.assert_array_equal(got["strided"], a[:, ::3])
    np.testing.assert_array_equal(got["fortran"], a)
    assert got["big"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(got["big"], a)


def test_loaded_arrays_own_their_memory_and_are_writable():
    got = swnp.load(swnp.save({"x": np.ones((4, 4), np.float32)}))["x"]
    got[0, 0] = 5  # writable, and not shared with anything else
    assert got.flags.c_contiguous and got.flags.writeable


def test_save_file_replaces_atomically(tmp_path):
    path = tmp_path / "m.swire"
    swnp.save_file({"a": np.ones(3, np.float32)}, path)
    swnp.save_file({"b": np.zeros(4, np.int8)}, path)
    assert list(swnp.load_file(path)) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.swire"]


def test_sparsified_save_is_smaller_and_rebuilds_the_kept_values():
    w = RNG.standard_normal((256, 128)).astype(np.float32)
    lossless = swnp.save({"w": w})
    sparse = swnp.save({"w": w}, sparsity=0.75)
    assert len(sparse) < 0.5 * len(lossless)
    got = swnp.load(sparse)["w"]
    kept = got != 0
    assert abs(kept.mean() - 0.25) < 0.01
    np.testing.assert_array_equal(got[kept], w[kept])
    # Magnitude: everything kept is at least as large as everything dropped.
    assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()
    nm = swnp.load(swnp.save({"w": w}, pattern="2:4"))["w"]
    assert ((nm.reshape(256, 32, 4) != 0).sum(axis=2) == 2).all()


def test_torch_state_dict_round_trips():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    import sparsewire.torch as swt

    sd = {
        "w": torch.randn(17, 9, dtype=torch.bfloat16),
        "h": torch.randn(3, 4, dtype=torch.float16),
        "f": torch.randn(2, 3, 4),
        "i": torch.arange(10, dtype=torch.int64),
        "b": torch.tensor([True, False]),
        "s": torch.tensor(2.5),
        "t": torch.randn(6, 4).t(),  # not contiguous
    }
    got = swt.load(swt.save(sd))
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(got[k], v), k
    with sparsewire.safe_open(swt.save(sd), framework="pt") as f:
        assert torch.equal(f.get_slice("w")[3:9], sd["w"][3:9])


def test_inputs_are_read_in_place_when_contiguous():
    from sparsewire import _core

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.shares_memory(_core.byte_view("a", a), a)
    strided = a[:, ::2]
    assert not np.shares_memory(_core.byte_view("s", strided), a)  # copied once, as documented


def test_the_interpreter_runs_other_threads_while_decoding():
    import threading

    big = {"w": RNG.standard_normal((4096, 2048)).astype(np.float32)}
    data = swnp.save(big)
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        s = sparsewire._native.Stream.from_bytes(data)
        before = count
        for _ in range(3):
            s._decode_only()
        during = count - before
    finally:
        stop = True
        t.join()
    # With the GIL held for the whole call the other thread could not count at all.
    assert during > 1000, during
