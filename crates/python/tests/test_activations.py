"""Activation blocks as stream bytes and back."""

import numpy as np
import pytest

import sparsewire

RNG = np.random.default_rng(2)


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_keep_fraction_round_trip(dtype):
    a = RNG.standard_normal((2, 16, 384)).astype(np.float32)
    data = sparsewire.sparsify_activations(a, keep=0.25, dtype=dtype)
    back = sparsewire.desparsify_activations(data)
    assert back.shape == (32, 384) and back.dtype == np.float32
    flat = a.reshape(32, 384)
    kept = back != 0
    assert (kept.sum(axis=1) == 96).all()
    tol = {"f32": 0, "bf16": 2**-8, "f16": 2**-11}[dtype]
    np.testing.assert_allclose(back[kept], flat[kept], rtol=tol, atol=0)
    # The largest |a| of each row are the ones kept.
    for r in range(32):
        assert np.abs(flat[r][kept[r]]).min() >= np.abs(flat[r][~kept[r]]).max()
    # Real encoded bytes, smaller than the dense block in the same dtype.
    assert len(data) < flat.size * (4 if dtype == "f32" else 2) * 0.5


def test_topk_and_threshold():
    a = RNG.standard_normal((8, 50)).astype(np.float32)
    back = sparsewire.desparsify_activations(sparsewire.sparsify_activations(a, topk=5))
    assert ((back != 0).sum(axis=1) == 5).all()
    back = sparsewire.desparsify_activations(sparsewire.sparsify_activations(a, threshold=1.0))
    np.testing.assert_array_equal(back, np.where(np.abs(a) > 1.0, a, 0))


def test_bad_requests():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(sparsewire.InvalidInput, match="exactly one"):
        sparsewire.sparsify_activations(a, keep=0.5, topk=2)
    with pytest.raises(sparsewire.InvalidInput, match="exactly one"):
        sparsewire.sparsify_activations(a)
    with pytest.raises(sparsewire.InvalidInput, match="keep fraction"):
        sparsewire.sparsify_activations(a, keep=1.5)
    with pytest.raises(sparsewire.InvalidInput, match="I8"):
        sparsewire.sparsify_activations(a, keep=0.5, dtype="i8")
    with pytest.raises(sparsewire.InvalidInput):
        sparsewire.sparsify_activations(np.array(["a"], dtype=object), keep=0.5)
    with pytest.raises(sparsewire.CorruptStream):
        sparsewire.desparsify_activations(b"not a stream at all, no")
