"""Random access: slices equal the full decode's rows, only the tiles needed are read,
and the sparse exports equal scipy's conversion of the dense rebuild."""

import numpy as np
import pytest

import sparsewire
import sparsewire.numpy as swnp

RNG = np.random.default_rng(1)


@pytest.fixture(scope="module")
def tensors():
    return {
        "big": RNG.standard_normal((700, 384)).astype(np.float32),
        "conv": RNG.standard_normal((40, 16, 3, 3)).astype(np.float32),
        "bias": RNG.standard_normal(384).astype(np.float32),
        "ids": np.arange(300, dtype=np.int64).reshape(100, 3),
    }


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sparsity": 0.5},
        {"sparsity": 0.6, "reconstruct": "linear"},
        {"sparsity": 0.5, "reconstruct": "mlp"},
        {"sparsity": 0.5, "profile": "fast"},
    ],
    ids=["lossless", "zero", "linear", "mlp", "fast"],
)
def test_slices_equal_the_rows_of_the_full_decode(tmp_path, tensors, options):
    path = tmp_path / "m.swire"
    swnp.save_file(tensors, path, **options)
    full = swnp.load_file(path)
    keys = [
        slice(None), slice(0, 1), slice(5, 300), slice(299, 301), slice(690, 800),
        slice(-10, None), slice(None, None, 7), slice(400, 10, -3), slice(5, 5), 0, 17, -1,
        (slice(3, 9), slice(2, 5)), (4, 7),
    ]
    with sparsewire.safe_open(path) as f:
        for name in f.keys():
            sl = f.get_slice(name)
            assert sl.get_shape() == list(tensors[name].shape)
            np.testing.assert_array_equal(f.get_tensor(name), full[name])
            for k in keys:
                if tensors[name].ndim < 2 and isinstance(k, tuple):
                    continue
                try:
                    want = full[name][k]
                except IndexError:
                    with pytest.raises(IndexError):
                        sl[k]
                    continue
                got = sl[k]
                assert got.shape == want.shape, (name, k)
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {k}")
            with pytest.raises(IndexError):
                sl[10_000]


def test_get_tensor_reads_only_that_tensors_tiles(tmp_path, tensors):
    path = tmp_path / "m.swire"
    swnp.save_file(tensors, path)
    size = path.stat().st_size
    stored = {t["name"]: t["output_bytes"] for t in sparsewire.inspect(path)["tensors"]}
    with sparsewire.safe_open(path) as f:
        header = f.bytes_read()
        f.get_tensor("bias")
        bias = f.bytes_read() - header
        f.get_slice("big")[0:10]
        rows = f.bytes_read() - header - bias
    assert header < size // 10, (header, size)
    # The tensor's own bytes, nothing else (each tile is read once, checksummed).
    assert bias == stored["bias"], (bias, stored)
    assert 0 < rows < stored["big"] / 4, (rows, stored["big"])


@pytest.mark.parametrize("layout", ["csr", "csc", "coo"])
@pytest.mark.parametrize("pattern", [None, "2:4", "row"])
def test_sparse_exports_equal_scipys_conversion_of_the_dense_rebuild(layout, pattern, tensors):
    sp = pytest.importorskip("scipy.sparse", reason="scipy is not installed")
    opts = {"sparsity": 0.7} if pattern != "2:4" else {}
    if pattern:
        opts["pattern"] = pattern
    data = swnp.save({"w": tensors["big"], "conv": tensors["conv"]}, **opts)
    with sparsewire.safe_open(data) as f:
        for name in ("w", "conv"):
            dense = f.get_tensor(name).reshape(f.get_slice(name).get_shape()[0], -1)
            m = f.get_sparse(name, layout)
            want = getattr(sp, f"{layout}_matrix")(dense)
            assert m.format == layout and m.shape == dense.shape
            assert m.nnz == np.count_nonzero(dense)
            np.testing.assert_array_equal(m.toarray(), dense)
            if layout != "coo":
                np.testing.assert_array_equal(m.indptr, want.indptr)
                np.testing.assert_array_equal(m.indices, want.indices)
                np.testing.assert_array_equal(m.data, want.data)
        mask, values = f.get_sparse("w", "bitmask")
        dense = f.get_tensor("w")
        bits = np.unpackbits(mask, bitorder="little")[: dense.size].astype(bool)
        np.testing.assert_array_equal(bits, (dense != 0).reshape(-1))
        np.testing.assert_array_equal(values, dense.reshape(-1)[bits])
        for i in (np.uint32, np.int64):
            pass
        m32 = f.get_sparse("w", "csr", index="u32")
        assert m32.indices.dtype == np.uint32 or m32.indices.dtype == np.int32


def test_sparse_export_refusals(tensors):
    data = swnp.save({"w": tensors["big"], "l": tensors["big"]}, sparsity=0.5, reconstruct="linear")
    lossless = swnp.save({"w": tensors["big"]})
    with sparsewire.safe_open(data) as f:
        with pytest.raises(sparsewire.InvalidInput, match="rebuilt by linear"):
            f.get_sparse("w", "csr")
        with pytest.raises(sparsewire.InvalidInput, match="layout"):
            f.get_sparse("w", "diagonal")
    with sparsewire.safe_open(lossless) as f:
        with pytest.raises(sparsewire.InvalidInput, match="stored dense"):
            f.get_sparse("w", "csr")


def test_torch_sparse_exports():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
    w = RNG.standard_normal((64, 32)).astype(np.float32)
    with sparsewire.safe_open(swnp.save({"w": w}, sparsity=0.5), framework="pt") as f:
        dense = f.get_tensor("w")
        for layout in ("csr", "csc", "coo"):
            assert torch.equal(f.get_sparse("w", layout).to_dense(), dense)


def test_inspect_matches_the_stream(tensors):
    data = swnp.save(tensors, sparsity=0.5)
    r = sparsewire.inspect(data)
    assert r["output_bytes"] == len(data)
    assert [t["name"] for t in r["tensors"]] == list(tensors)
    by = {t["name"]: t for t in r["tensors"]}
    assert by["big"]["sparsification"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert by["ids"]["sparsification"] is None
