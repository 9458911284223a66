"""Model folders in the Hugging Face layout: compress, load through the index, and back."""

import json

import numpy as np
import pytest

import sparsewire
import sparsewire.numpy as swnp
from conftest import read_safetensors, same_bits, write_safetensors

RNG = np.random.default_rng(4)


@pytest.fixture
def model(tmp_path):
    d = tmp_path / "model"
    (d / "1_Pooling").mkdir(parents=True)
    a = {"a.weight": RNG.standard_normal((64, 32)).astype(np.float32), "ids": np.arange(4)}
    b = {"b.weight": RNG.standard_normal((16, 8)).astype(np.float16)}
    write_safetensors(d / "model-00001-of-00002.safetensors", a, {"format": "pt"})
    write_safetensors(d / "model-00002-of-00002.safetensors", b, {"format": "pt"})
    index = {"metadata": {"total_size": 8480}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "ids": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    (d / "config.json").write_text('{"hidden_size": 32}')
    (d / "1_Pooling" / "config.json").write_text("{}")
    return d, {**a, **b}


def test_a_folder_compresses_loads_and_comes_back(tmp_path, model):
    d, tensors = model
    out = tmp_path / "model.swire"
    r = sparsewire.compress_dir(d, out)
    assert len(r["shards"]) == 2 and r["output_bytes"] < r["input_bytes"]
    for source in (out, str(out), out / "model.swire.index.json"):
        got = swnp.load_file(source)
        assert sorted(got) == sorted(tensors)
        for k in tensors:
            assert same_bits(got[k], tensors[k]), k
    with sparsewire.safe_open(out) as f:
        assert sorted(f.keys()) == sorted(tensors)
        np.testing.assert_array_equal(f.get_slice("a.weight")[10:20], tensors["a.weight"][10:20])
        assert f.metadata() == {"format": "pt"}
    assert [s["file"] for s in sparsewire.inspect(out)["shards"]] == [
        "model-00001-of-00002.swire",
        "model-00002-of-00002.swire",
    ]
    back = tmp_path / "back"
    sparsewire.decompress_dir(out, back)
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        got, meta = read_safetensors(back / name)
        want, _ = read_safetensors(d / name)
        assert meta == {"format": "pt"}
        for k in want:
            assert same_bits(got[k], want[k]), k
    for name in ("config.json", "1_Pooling/config.json", "model.safetensors.index.json"):
        assert (back / name).read_bytes() == (d / name).read_bytes()
    with pytest.raises(sparsewire.FileError, match="exists"):
        sparsewire.decompress_dir(out, back)
    sparsewire.decompress_dir(out, back, force=True)


def test_folder_refusals(tmp_path, model):
    d, _ = model
    with pytest.raises(sparsewire.InvalidInput, match="compress it first"):
        swnp.load_file(d)
    pk = tmp_path / "pickle"
    pk.mkdir()
    (pk / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(sparsewire.InvalidInput, match="never unpickles"):
        sparsewire.compress_dir(pk, tmp_path / "o")
    (d / "model.safetensors.index.json").write_text('{"weight_map": {"x": "../../etc/passwd"}}')
    with pytest.raises(sparsewire.InvalidInput, match="not a file name"):
        sparsewire.compress_dir(d, tmp_path / "o")
    assert not (tmp_path / "o").exists()
