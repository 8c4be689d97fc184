#!/usr/bin/env python3
"""Writes the measurements of scripts/llama_bench_suite.sh into an experiment as [[observed]] rows.

Usage:
  llama_bench_observed.py MEASURED.csv EXPERIMENT.toml

Everything in EXPERIMENT.toml after the line that starts with MARKER (below) is replaced by one
[[observed]] row per measured run: generation (tg) as `decode_tokens_per_s`, prompt processing
(pp) as `prefill_tokens_per_s`, in systems named by test and thread count, on the sweep point
of the model, format and thread count. The file is written whole or not at all.
"""

import csv
import os
import sys

MARKER = "# ---- observed: written by scripts/llama_bench_observed.py"
SIZES = ("s", "m", "l")
FORMATS = ("q8_0", "q4_k", "q2_k")


def fail(msg: str) -> int:
    print(f"llama_bench_observed.py: {msg}", file=sys.stderr)
    return 2


def main() -> int:
    if len(sys.argv) != 3:
        return fail("usage: llama_bench_observed.py MEASURED.csv EXPERIMENT.toml")
    measured, experiment = sys.argv[1:]
    try:
        with open(experiment) as f:
            text = f.read()
        with open(measured, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        return fail(f"{e.filename}: {e.strerror}")
    at = text.find(MARKER)
    if at < 0:
        return fail(f"{experiment}: no line starting with `{MARKER}`")
    head = text[: text.index("\n", at) + 1]
    out = [head]
    for line, r in enumerate(rows, start=2):
        try:
            size, fmt, threads, test = r["model"], r["format"], int(r["threads"]), r["test"]
            mean, sd, reps = float(r["tokens_per_s_mean"]), float(r["tokens_per_s_sd"]), int(r["repetitions"])
        except (KeyError, ValueError) as e:
            return fail(f"{measured}:{line}: {e}")
        if size not in SIZES or fmt not in FORMATS or threads not in (1, 2) or test[:2] not in ("pp", "tg"):
            return fail(f"{measured}:{line}: unexpected model {size}, format {fmt}, threads {threads} or test {test}")
        metric = "decode_tokens_per_s" if test.startswith("tg") else "prefill_tokens_per_s"
        plural = "thread" if threads == 1 else "threads"
        flag = f"-p {r['n_prompt']} -n 0" if test.startswith("pp") else f"-p 0 -n {r['n_gen']}"
        out.append(
            "\n[[observed]]\n"
            f'system = "{test[:2]}-{threads}-{plural}"\n'
            f'metric = "{metric}"\n'
            f"value = {mean:.2f}\n"
            f'point = {{ "hardware.profile" = "llama-bench/host-{threads}-{plural}.toml", '
            f'"model.format" = "{fmt}", "model.spec" = "llama-bench/moe-{size}.toml", '
            f'"trace.generator" = "llama-bench/uniform-moe-{size}.toml" }}\n'
            f'source = "scripts/llama_bench_suite.sh on this host: llama-bench (build {r["build"]}) '
            f"-m moe-{size}-{fmt}.gguf {flag} -t {threads} -r {reps}: {test} {mean:.2f} +- {sd:.2f} tokens/s "
            f'({r["cpu"]})"\n'
        )
    tmp = experiment + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(out))
    os.replace(tmp, experiment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
