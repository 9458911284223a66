"""The shared real models (skipped, with the reason, where ../shared/data is absent)."""

import time

import numpy as np
import pytest

import sparsewire
import sparsewire.numpy as swnp
from conftest import data_dir, read_safetensors, same_bits


@pytest.mark.parametrize("name", ["minilm_l6_v2.bf16", "ppocr_mobile_v2_cls.f32"])
def test_a_real_state_dict_round_trips(tmp_path, name):
    tensors, meta = read_safetensors(data_dir() / f"{name}.safetensors")
    path = tmp_path / "m.swire"
    swnp.save_file(tensors, path, metadata=meta or None)
    assert path.stat().st_size < sum(a.nbytes for a in tensors.values())
    got = swnp.load_file(path)
    assert list(got) == list(tensors)
    for k, a in tensors.items():
        assert same_bits(got[k], a), k
    with sparsewire.safe_open(path) as f:
        for k in list(tensors)[:20]:
            assert same_bits(f.get_tensor(k), tensors[k]), k


def test_a_pruned_minilm_loads_as_a_state_dict(tmp_path):
    tensors, _ = read_safetensors(data_dir() / "minilm_l6_v2.f32.safetensors")
    path = tmp_path / "pruned.swire"
    swnp.save_file(tensors, path, sparsity=0.5)
    with sparsewire.safe_open(path) as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        q = "encoder.layer.0.attention.self.query.weight"
        assert f.info(q)["sparsified"]
    assert sd.keys() == tensors.keys()
    w = sd[q]
    assert abs((w == 0).mean() - 0.5) < 0.01
    np.testing.assert_array_equal(w[w != 0], tensors[q][w != 0])
