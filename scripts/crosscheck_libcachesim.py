#!/usr/bin/env python3
"""Hit counts from libCacheSim (PyPI libcachesim==0.3.5) for moesim's cross-check.

Usage:
  crosscheck_libcachesim.py zipf64 OUT_DIR
      Builds the `zipf64` trace exactly as ../shared/reference/cache-semantics.md section 6
      describes (numpy default_rng(42), 200,000 requests over 64 objects of 0.5-4 MiB) and
      writes OUT_DIR/zipf64.oracleGeneral.bin, plus the compact fixture moesim's unit tests
      read: OUT_DIR/zipf64.ids (one byte per request, object ids 1..64) and
      OUT_DIR/zipf64.sizes (64 lines, bytes of objects 1..64).
  crosscheck_libcachesim.py hits TRACE.oracleGeneral.bin MODE CAPACITY[,CAPACITY...] ALGO[,ALGO...]
      Replays the file through libCacheSim's C loop (process_trace) and prints one JSON
      object {"ALGO": {"CAPACITY": hits, ...}, ...}. MODE is `slot` (ignore_obj_size: every
      object has size 1, capacity in objects) or `byte` (capacity in bytes). Hits are
      recovered exactly from the object miss ratio: round(n * (1 - omr)).
"""

import json
import struct
import sys

import numpy as np


def zipf64(out_dir):
    rng = np.random.default_rng(42)
    p = 1.0 / np.arange(1, 65)
    p /= p.sum()
    perm = rng.permutation(64)
    ids = perm[rng.choice(64, size=200000, p=p)] + 1
    sizes = {i: int(rng.integers(8, 65)) * 65536 for i in range(1, 65)}
    nxt = np.full(len(ids), -1, dtype=np.int64)
    last = {}
    for i in range(len(ids) - 1, -1, -1):
        nxt[i] = last.get(int(ids[i]), -1)
        last[int(ids[i])] = i + 1  # 1-based, as libCacheSim's own converter writes
    rec = np.zeros(len(ids), dtype=[("t", "<u4"), ("id", "<u8"), ("sz", "<u4"), ("nx", "<i8")])
    rec["t"] = np.arange(1, len(ids) + 1)
    rec["id"] = ids
    rec["sz"] = [sizes[int(i)] for i in ids]
    rec["nx"] = nxt
    rec.tofile(f"{out_dir}/zipf64.oracleGeneral.bin")
    with open(f"{out_dir}/zipf64.ids", "wb") as f:
        f.write(bytes(int(i) for i in ids))
    with open(f"{out_dir}/zipf64.sizes", "w") as f:
        for i in range(1, 65):
            f.write(f"{sizes[i]}\n")
    print(f"wrote zipf64: {len(ids)} requests, working set {sum(sizes.values())} bytes")


def hits(path, mode, capacities, algos):
    import libcachesim as lcs

    n = 0
    with open(path, "rb") as f:
        n = len(f.read()) // 24
    if mode == "slot":
        reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam(ignore_obj_size=True))
    else:
        reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
    result = {}
    for algo in algos:
        cls = {"lru": lcs.LRU, "fifo": lcs.FIFO, "lfu": lcs.LFU, "belady": lcs.Belady, "arc": lcs.ARC,
               "sieve": lcs.Sieve}[algo]
        result[algo] = {}
        for c in capacities:
            omr, _bmr = cls(cache_size=int(c)).process_trace(reader)
            result[algo][str(c)] = int(round(n * (1.0 - omr)))
    print(json.dumps(result))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "zipf64":
        zipf64(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "hits":
        hits(sys.argv[2], sys.argv[3], [int(c) for c in sys.argv[4].split(",")], sys.argv[5].split(","))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
