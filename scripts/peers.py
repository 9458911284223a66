#!/usr/bin/env python3
"""Measure the lossless peers on one tensor file, single thread, and print JSON.

Peers: zstd -3 (python `zstandard`), ZipNN (`zipnn`), lmzip (its Python API, `lmz.api`,
in this process, so its figures are its decoding and not interpreter start-up; it reads and
writes files, as it has no in-memory API). Install them with
`pip install zstandard zipnn lmzip`; a missing peer is reported as such, never guessed.
Ratios are compressed bytes / original file bytes; decode GB/s are original bytes per
second, median of at least RUNS runs and at least 0.2 s of runs, after a warm-up.
"""
import json, os, statistics, sys, tempfile, time

RUNS = int(os.environ.get("PEER_RUNS", "3"))


# As sparsewire's figures (benches/src/lib.rs, MIN_WARMUP_SECONDS, MIN_TIMED_SECONDS):
# untimed warm-up runs for at least MIN_WARMUP_SECONDS (at least one), then at least RUNS
# runs and at least MIN_TIMED_SECONDS of them (at most 10000 runs).
MIN_WARMUP_SECONDS = 0.1
MIN_TIMED_SECONDS = 0.2


def med(f):
    warm = time.perf_counter()
    f()
    while time.perf_counter() - warm < MIN_WARMUP_SECONDS:
        f()
    ts = []
    start = time.perf_counter()
    while len(ts) < RUNS or (time.perf_counter() - start < MIN_TIMED_SECONDS and len(ts) < 10000):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(path):
    data = open(path, "rb").read()
    n = len(data)
    out = {"file": os.path.basename(path), "bytes": n, "peers": {}}
    try:
        import zstandard
        c = zstandard.ZstdCompressor(level=3).compress(data)
        d = zstandard.ZstdDecompressor()
        s = med(lambda: d.decompress(c))
        out["peers"]["zstd-3"] = {"ratio": len(c) / n, "decode_gbps": n / s / 1e9}
    except ImportError:
        out["peers"]["zstd-3"] = None
    try:
        from zipnn import ZipNN
        dtype = "bfloat16" if "bf16" in path else "float32"
        z = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=1)
        c = z.compress(data)
        s = med(lambda: z.decompress(c))
        out["peers"]["zipnn"] = {"ratio": len(c) / n, "decode_gbps": n / s / 1e9}
    except ImportError:
        out["peers"]["zipnn"] = None
    try:
        from lmz import api as lmz
        with tempfile.TemporaryDirectory() as d:
            arc = os.path.join(d, "a.lmz")
            lmz.compress(path, arc, workers=1)
            back = os.path.join(d, "back")

            def dec():
                if os.path.exists(back):
                    os.remove(back)
                lmz.decompress(arc, back, workers=1)

            s = med(dec)
            out["peers"]["lmzip"] = {"ratio": os.path.getsize(arc) / n, "decode_gbps": n / s / 1e9}
    except ImportError:
        out["peers"]["lmzip"] = None
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
