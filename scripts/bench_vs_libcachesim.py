#!/usr/bin/env python3
"""Replay speed of moesim against libCacheSim's own C core, on the same oracleGeneral trace.

1. Generates a qwen3-like trace with moesim (48 layers x 128 experts, top-8; 26 requests of
   1,000 decode tokens, seed 1: 9,984,000 expert lookups) and exports all layers as one flat
   oracleGeneral stream (object = (layer, expert), 6,144 objects), object-slot mode.
2. For LRU, FIFO, ARC and Belady at 64, 512 and 2,048 objects, times REPEAT runs of
     - libCacheSim (PyPI libcachesim==0.3.5): `Cache(cache_size=C).process_trace(reader)`, the C
       loop that reads the file and replays it (the Python call is timed around it);
     - moesim: `moesim cache replay FILE --input-format oracle-general --ignore-size
       --semantics sequential --policy P --capacity C --no-reference --timing --json` with
       RAYON_NUM_THREADS=1, reporting both its replay loop (`replay_seconds`) and the whole
       command (reading and remapping the 240 MB file included).
3. Prints medians in M lookups/s and the ratios, and checks that both report the same hits.

Usage: python3 scripts/bench_vs_libcachesim.py [REPEAT]  (uses scripts/pyenv.sh's venv)
"""

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "moesim")
WORK = os.path.join(ROOT, "target", "bench-vs-libcachesim")
POLICIES = [("lru", "LRU"), ("fifo", "FIFO"), ("arc", "ARC"), ("belady", "Belady")]
CAPACITIES = [64, 512, 2048]


def main():
    import libcachesim as lcs

    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    os.makedirs(WORK, exist_ok=True)
    trace = os.path.join(WORK, "qwen3.jsonl")
    og = os.path.join(WORK, "qwen3.oracleGeneral.bin")
    if not os.path.exists(og):
        subprocess.run([BIN, "trace", "generate", "--preset", "qwen3-like", "--requests", "26", "--tokens", "1000",
                        "--prefill", "0", "--seed", "1", "--out", trace], check=True)
        subprocess.run([BIN, "trace", "export", "--format", "oracle-general", trace, "--out", og], check=True)
    n = os.path.getsize(og) // 24
    reader = lcs.TraceReader(og, lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam(ignore_obj_size=True))
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    print(f"{n} lookups over {n} records of {og}; medians of {repeat} runs, one core")
    print("%-7s %9s %14s %16s %18s %10s %12s" % ("policy", "capacity", "libCacheSim", "moesim loop", "moesim command",
                                                 "loop/lcs", "command/lcs"))
    for name, cls_name in POLICIES:
        cls = getattr(lcs, cls_name)
        for c in CAPACITIES:
            lcs_times, loop_times, cmd_times = [], [], []
            lcs_hits = our_hits = None
            for _ in range(repeat):
                cache = cls(cache_size=c)
                t0 = time.perf_counter()
                omr, _ = cache.process_trace(reader)
                lcs_times.append(time.perf_counter() - t0)
                lcs_hits = int(round(n * (1 - omr)))
                t0 = time.perf_counter()
                out = subprocess.run([BIN, "cache", "replay", og, "--input-format", "oracle-general", "--ignore-size",
                                      "--semantics", "sequential", "--policy", name, "--capacity", str(c),
                                      "--no-reference", "--timing", "--json"],
                                     check=True, capture_output=True, env=env).stdout
                cmd_times.append(time.perf_counter() - t0)
                row = [r for r in json.loads(out) if r["layer"] == "all"][0]
                loop_times.append(row["replay_seconds"])
                our_hits = row["hits"]
            if our_hits != lcs_hits:
                print(f"  note: {name} at {c}: moesim {our_hits} hits, libCacheSim {lcs_hits}")
            lcs_rate = n / statistics.median(lcs_times) / 1e6
            loop_rate = n / statistics.median(loop_times) / 1e6
            cmd_rate = n / statistics.median(cmd_times) / 1e6
            print("%-7s %9d %10.2f M/s %12.2f M/s %14.2f M/s %9.2fx %11.2fx" % (
                name, c, lcs_rate, loop_rate, cmd_rate, loop_rate / lcs_rate, cmd_rate / lcs_rate))


if __name__ == "__main__":
    main()
