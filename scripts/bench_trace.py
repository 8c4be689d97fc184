#!/usr/bin/env python3
"""End-to-end trace benchmark: import plus stats of a 10-million-record trace on one core.

Writes a generic JSONL trace in the shape of the Mixtral decode data (200 requests x 32 layers
x 1563 tokens = 10,003,200 records, seeded), then times with /usr/bin/time, REPEAT times each:

  1. `moesim trace import --stats ... --layers 32`  (import plus statistics in one pass)
  2. `moesim trace import ... --layers 32`          (import alone)
  3. `moesim trace stats NATIVE`                    (statistics of the native trace alone)
  4. `moesim trace import ...` without --layers     (layer count inferred: body file + copy)

and prints the median wall time, user and system CPU, peak resident memory and records per
second. moesim is single-threaded in all four. Files go to $BENCH_DIR (default /dev/shm, a
tmpfs, so that disk writeback does not dominate; set BENCH_DIR=target to use the disk).

Usage: python3 scripts/bench_trace.py [REPEAT]   (after `cargo build --release`)
"""

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "moesim")
REQUESTS, LAYERS, TOKENS = 200, 32, 1563
MAPS = ["--map", "request=problem_id", "--map", "layer=layer", "--map", "position=token_idx",
        "--map", "experts=experts", "--map", "weights=gating_probs", "--experts", "8", "--top-k", "2"]


def write_trace(path):
    rng = random.Random(1)
    with open(path, "w") as f:
        for r in range(REQUESTS):
            lines = []
            for l in range(LAYERS):
                for t in range(TOKENS):
                    a = rng.randrange(8)
                    b = (a + 1 + rng.randrange(7)) % 8
                    w = rng.random() * 0.5 + 0.5
                    lines.append('{"dataset": "gsm8k", "problem_id": %d, "layer": %d, "experts": [%d, %d], '
                                 '"gating_probs": [%r, %r], "token_idx": %d}\n' % (r, l, a, b, w, 1 - w, t))
            f.write("".join(lines))
    return REQUESTS * LAYERS * TOKENS


def timed(args, remove=None):
    if remove and os.path.exists(remove):
        os.remove(remove)
        # Let the kernel finish freeing the old file's pages before the clock starts.
        subprocess.run(["sync"], check=True)
        time.sleep(2)
    with tempfile.NamedTemporaryFile("r") as t:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", t.name, BIN] + args,
                       check=True, stdout=subprocess.DEVNULL)
        wall, user, sys_, rss_kb = t.read().split()
    return float(wall), float(user), float(sys_), int(rss_kb)


def main():
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    base = os.environ.get("BENCH_DIR", "/dev/shm")
    work = os.path.join(base if os.path.isabs(base) else os.path.join(ROOT, base), "moesim-bench-trace")
    os.makedirs(work, exist_ok=True)
    generic = os.path.join(work, "generic.jsonl")
    native = os.path.join(work, "native.jsonl")
    if not os.path.exists(generic):
        print("writing %s ..." % generic, flush=True)
        write_trace(generic)
    n = REQUESTS * LAYERS * TOKENS
    cases = [
        ("import + stats (one pass)", ["trace", "import", "--stats", "--format", "jsonl"] + MAPS + ["--layers", "32", generic, "--out", native], native),
        ("import", ["trace", "import", "--format", "jsonl"] + MAPS + ["--layers", "32", generic, "--out", native], native),
        ("stats (native)", ["trace", "stats", native], None),
        ("import, layers inferred", ["trace", "import", "--format", "jsonl"] + MAPS + [generic, "--out", native], native),
    ]
    print("%d records, %.0f MB of JSONL, %d runs each, files in %s" % (n, os.path.getsize(generic) / 1e6, repeat, work))
    print("%-26s %9s %9s %9s %9s %12s %14s" % ("case", "wall s", "user s", "sys s", "RSS MB", "Mrec/s wall", "Mrec/s user+sys"))
    for name, args, out in cases:
        runs = [timed(args, out) for _ in range(repeat)]
        wall = statistics.median(r[0] for r in runs)
        user = statistics.median(r[1] for r in runs)
        sys_ = statistics.median(r[2] for r in runs)
        rss = max(r[3] for r in runs) / 1024
        cpu = statistics.median(r[1] + r[2] for r in runs)
        print("%-26s %9.2f %9.2f %9.2f %9.1f %12.2f %14.2f" % (name, wall, user, sys_, rss, n / wall / 1e6, n / cpu / 1e6))


if __name__ == "__main__":
    main()
