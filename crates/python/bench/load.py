"""What the binding costs: ``load_file`` against the Rust decode of the same stream, in
the same process, same run (median of R runs each, interleaved), and what one
``safe_open(...).get_tensor`` reads. Prints the CPU model.

    python crates/python/bench/load.py [MODEL.safetensors] [--runs R]

Default model: ../shared/data/minilm_l6_v2.bf16.safetensors (or $SPARSEWIRE_DATA).
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import sparsewire
import sparsewire.numpy as swnp
from sparsewire import _native

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests"))
from conftest import read_safetensors  # noqa: E402


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    data = pathlib.Path(os.environ.get("SPARSEWIRE_DATA", HERE.parents[4] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=str(data / "minilm_l6_v2.bf16.safetensors"))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    tensors, meta = read_safetensors(a.model)
    raw = sum(t.nbytes for t in tensors.values())
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "m.swire"
        swnp.save_file(tensors, path, metadata=meta or None)
        rust, py = [], []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            _native.Stream.open(str(path))._decode_only()
            rust.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            swnp.load_file(path)
            py.append(time.perf_counter() - t0)
        stored = {t["name"]: t["output_bytes"] for t in sparsewire.inspect(path)["tensors"]}
        name = max(stored, key=stored.get)
        with sparsewire.safe_open(path) as f:
            header = f.bytes_read()
            f.get_tensor(name)
            one = f.bytes_read() - header
        r = {
            "cpu": cpu_model(),
            "model": a.model,
            "tensors": len(tensors),
            "tensor_bytes": raw,
            "stream_bytes": path.stat().st_size,
            "runs": a.runs,
            "rust_decode_s_median": statistics.median(rust),
            "load_file_s_median": statistics.median(py),
            "load_file_over_rust": statistics.median(py) / statistics.median(rust),
            "get_tensor": {"name": name, "stored_bytes": stored[name], "bytes_read": one, "header_bytes_read": header},
        }
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"cpu: {r['cpu']}")
    print(f"{a.model}: {r['tensors']} tensors, {raw} bytes -> {r['stream_bytes']} bytes")
    print(f"Rust decode (Stream._decode_only): median {r['rust_decode_s_median'] * 1e3:.1f} ms of {a.runs}")
    print(f"load_file:                          median {r['load_file_s_median'] * 1e3:.1f} ms of {a.runs}")
    print(f"load_file / Rust decode: {r['load_file_over_rust']:.3f}x")
    g = r["get_tensor"]
    print(f"get_tensor({g['name']!r}): read {g['bytes_read']} bytes (its stored size {g['stored_bytes']}; header {g['header_bytes_read']}) of {r['stream_bytes']}")


if __name__ == "__main__":
    main()
