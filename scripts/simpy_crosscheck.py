#!/usr/bin/env python3
"""moesim's event engine against SimPy (PyPI simpy==4.1.2): the same system, modelled
independently, must give the same latencies; and how much faster moesim simulates it.

Usage:
  simpy_crosscheck.py MOESIM EXPERIMENT.toml [--repeat N]

Runs `MOESIM run EXPERIMENT.toml --dump-inputs inputs.json --out DIR` (N times, median wall
time of the simulation loop as moesim reports it), then re-simulates the dumped inputs in SimPy
(N times, median wall time of env.run()) and prints one JSON object with both results: decode
token latency (mean, p50, p95), time to first token, makespan, their relative differences, and
the speed ratio SimPy wall / moesim wall. Exit status 1 if the mean token latency, the mean time
to first token or the makespan differ by 1 % or more.

The SimPy model is written from moesim's documented semantics (README.md, `moesim run`), not
from its code: the device serves requests in arrival order; per MoE layer step it runs the
dense work and the gate, looks the step's experts up in a per-layer LRU cache (one atomic event:
the step's experts cannot evict each other; an expert that cannot fit is streamed), loads every
miss from its home tier along the link chain (each link a simpy.Resource with one slot per
channel, FIFO; a hop of b bytes takes ceil(latency + ceil(b/g)*g/bandwidth) ns), and computes
each expert once it is present: hits first in selection order, then loaded experts in arrival
order. A prefill step routes all prompt tokens and loads the union of their experts once. The
LM head runs after the last layer. Supported: standard routes (dumped by moesim), LRU, per-layer
caches, no prefetch, no shared experts, all requests arriving at time 0.

Kernels follow the roofline of GUIDE.md: on n tokens a kernel takes launch + max(memory time,
n x arithmetic time per token) (dense part, gate, each expert; the LM head is one token). A prompt
runs in micro-batches of `prefill_chunk_tokens` tokens when set, each through every layer, and the
LM head once, after the last one. Placement (GUIDE.md, "Where experts run"): an expert marked to
run in place goes to the second unit instead of the cache; per layer step with such experts, the
step's activations (tokens x activation bytes) cross the `to_unit` links (store and forward, not
queued behind expert transfers), the unit runs its experts one after another in the order the
step first selected them, each at its own roofline cost, then the results cross the `to_primary`
links and the synchronisation cost is paid. Meanwhile the primary unit computes its own experts;
the step ends when both have finished. Supported placements: `in-place` and `layers`.
"""

import collections
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time

import simpy


def hop_ns(link, nbytes):
    g = link["granularity_bytes"]
    rounded = -(-nbytes // g) * g
    # The latency is paid once per request of at most request_bytes (none: one request).
    r = link.get("request_bytes")
    requests = max(1, -(-nbytes // r)) if r else 1
    return math.ceil(
        requests * link["latency_ns"] + rounded * 1e9 / link["bandwidth_bytes_per_s"]
    )


class LruCache:
    """Byte-capacity LRU with atomic events (protected objects are never evicted)."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.used = 0
        self.items = collections.OrderedDict()  # object -> bytes, least recent first

    def lookup(self, obj, size, protected):
        """True on a hit; on a miss, inserts if possible."""
        if obj in self.items:
            self.items.move_to_end(obj)
            return True
        if size > self.capacity:
            return False
        while self.used + size > self.capacity:
            victim = next((o for o in self.items if o not in protected), None)
            if victim is None:
                return False  # everything resident belongs to this step: stream it
            self.used -= self.items.pop(victim)
        self.items[obj] = size
        self.used += size
        return False

    def reset(self):
        self.items.clear()
        self.used = 0


def simulate(d):
    assert d["policy"] == "lru" and d["scope"] == "per-layer", "the SimPy model covers per-layer LRU"
    assert d["shared"] is None, "the SimPy model has no shared experts"
    assert d["arrival"] == {"kind": "all-at-once"}, "the SimPy model has all requests at time 0"
    env = simpy.Environment()
    links = [simpy.Resource(env, capacity=l["channels"]) for l in d["links"]]
    L, E = d["layers"], d["experts"]
    caches = [LruCache(d["cache_bytes"]) for _ in range(L)]
    out = {"latencies": [], "ttft": [], "events": 0}

    def transfer(g, ready, wakeup):
        path = d["paths"][d["placement"][g]]
        for li in path:
            with links[li].request() as req:
                yield req
                yield env.timeout(hop_ns(d["links"][li], d["expert_bytes"][g]))
        ready.append(g)
        if not wakeup[0].triggered:
            wakeup[0].succeed()

    ip = d.get("in_place")
    if ip is not None:
        assert ip["mode"] in ("in-place", "layers"), "the SimPy model covers in-place and layers"

    def kernel(launch, memory, mac, n):
        return launch + max(memory, n * mac)

    def activations(path, tokens):
        return sum(hop_ns(l, tokens * ip["activation_bytes_per_token"]) for l in path)

    def in_place_unit(experts, counts, tokens):
        """The second unit's share of one layer step."""
        yield env.timeout(activations(ip["to_unit"], tokens))
        for g in experts:
            n = counts[g % E]
            yield env.timeout(kernel(ip["launch_ns"], ip["expert_compute_ns"][g], ip["expert_mac_ns"][g], n))
        yield env.timeout(activations(ip["to_primary"], tokens) + ip["sync_ns"])

    def step(layer, selections):
        """One layer step for the given per-token selections; returns when its experts ran."""
        tokens = len(selections)
        launch = d["launch_ns"]
        yield env.timeout(
            kernel(launch, d["dense_ns"], d["dense_mac_ns"], tokens)
            + kernel(launch, d["gate_ns"], d["gate_mac_ns"], tokens)
        )
        union, counts = [], {}
        for sel in selections:
            for x in sel:
                if x not in counts:
                    union.append(x)
                    counts[x] = 0
                counts[x] += 1
        protected = set(union)
        ready = collections.deque()
        wakeup = [env.event()]
        pending = 0
        elsewhere = []
        for x in union:
            g = layer * E + x
            if ip is not None and ip["always"][g]:
                elsewhere.append(g)
            elif d["placement"][g] == d["compute_tier"]:
                ready.append(g)
            elif caches[layer].lookup(x, d["expert_bytes"][g], protected):
                ready.append(g)
            else:
                pending += 1
                env.process(transfer(g, ready, wakeup))
        other = env.process(in_place_unit(elsewhere, counts, tokens)) if elsewhere else None
        done = 0
        while done < len(union) - len(elsewhere):
            if ready:
                g = ready.popleft()
                yield env.timeout(kernel(launch, d["expert_compute_ns"][g], d["expert_mac_ns"][g], counts[g % E]))
                done += 1
            else:
                wakeup[0] = env.event()
                yield wakeup[0]
        if other is not None:
            yield other

    assert d["prefill_mode"] == "alone", "the SimPy model runs prompts alone"
    assert not d["kv"] and not d["speculative"], "the SimPy model has no KV cache and no drafts"
    assert d["layer_overhead_ns"] == 0 and d["token_overhead_ns"] == 0, "runtime ideal only"

    def device():
        queue = collections.deque(range(len(d["requests"])))
        active = []  # [request, prompt tokens done, decode tokens done, last emission]
        served = 0
        while queue or active:
            while len(active) < d["max_batch"] and queue:
                ri = queue.popleft()
                if not active and served > 0 and d["between_requests"] == "reset":
                    for c in caches:
                        c.reset()
                served += 1
                r = d["requests"][ri]
                n_prompt = len(r["prefill"][0]) if r["prefill"] and r["prefill"][0] else 0
                if n_prompt == 0 and not r["decode"]:
                    continue
                active.append([ri, 0, 0, env.now])
            prompting = next((a for a in active if a[1] < n_prompt_of(a[0])), None)
            if prompting is not None:
                ri, done = prompting[0], prompting[1]
                n = n_prompt_of(ri)
                chunk = d.get("prefill_chunk_tokens") or n
                end = min(n, done + chunk)
                for layer in range(L):
                    yield env.process(step(layer, d["requests"][ri]["prefill"][layer][done:end]))
                if end == n:
                    yield env.timeout(kernel(d["launch_ns"], d["head_ns"], d["head_mac_ns"], 1))
                    out["ttft"].append(env.now)
                    prompting[3] = env.now
                prompting[1] = end
            else:
                for layer in range(L):
                    sels = [d["requests"][a[0]]["decode"][a[2]][layer] for a in active]
                    yield env.process(step(layer, sels))
                yield env.timeout(kernel(d["launch_ns"], d["head_ns"], d["head_mac_ns"], len(active)))
                for a in active:
                    out["latencies"].append(env.now - a[3])
                    if n_prompt_of(a[0]) == 0 and a[2] == 0:
                        out["ttft"].append(env.now)
                    a[2] += 1
                    a[3] = env.now
            active = [a for a in active if a[1] < n_prompt_of(a[0]) or a[2] < len(d["requests"][a[0]]["decode"])]

    def n_prompt_of(ri):
        r = d["requests"][ri]
        return len(r["prefill"][0]) if r["prefill"] and r["prefill"][0] else 0

    env.process(device())
    t0 = time.perf_counter()
    env.run()
    out["wall_s"] = time.perf_counter() - t0
    out["makespan"] = env.now
    return out


def quantile(sorted_values, q):
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main():
    args = sys.argv[1:]
    repeat = 3
    if "--repeat" in args:
        i = args.index("--repeat")
        repeat = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    moesim, experiment = args
    with tempfile.TemporaryDirectory() as tmp:
        walls = []
        for _ in range(repeat):
            run = subprocess.run(
                [moesim, "run", experiment, "--dump-inputs", f"{tmp}/inputs.json", "--out", f"{tmp}/out"],
                check=True,
                capture_output=True,
                text=True,
            )
            m = re.search(r"simulated (\d+) events in ([0-9.]+) s", run.stdout)
            walls.append(float(m.group(2)))
            events = int(m.group(1))
        with open(f"{tmp}/out/metrics.csv") as f:
            header, row = f.read().splitlines()[:2]
        metrics = dict(zip(header.split(","), row.split(",")))
        with open(f"{tmp}/inputs.json") as f:
            d = json.load(f)
    simpy_runs = [simulate(d) for _ in range(repeat)]
    s = simpy_runs[0]
    lat = sorted(s["latencies"])
    ours = {
        "token_latency_mean_ns": float(metrics["token_latency_mean_ns"]),
        "token_latency_p50_ns": int(metrics["token_latency_p50_ns"]),
        "token_latency_p95_ns": int(metrics["token_latency_p95_ns"]),
        "ttft_mean_ns": float(metrics["ttft_mean_ns"]),
        "makespan_ns": int(metrics["makespan_ns"]),
    }
    theirs = {
        "token_latency_mean_ns": statistics.fmean(lat),
        "token_latency_p50_ns": quantile(lat, 0.5),
        "token_latency_p95_ns": quantile(lat, 0.95),
        "ttft_mean_ns": statistics.fmean(s["ttft"]),
        "makespan_ns": s["makespan"],
    }
    rel = {k: abs(ours[k] - theirs[k]) / theirs[k] for k in ours}
    moesim_wall = statistics.median(walls)
    simpy_wall = statistics.median(r["wall_s"] for r in simpy_runs)
    result = {
        "experiment": experiment,
        "decode_tokens": len(lat),
        "moesim": ours,
        "simpy": theirs,
        "relative_difference": rel,
        "moesim_events": events,
        "moesim_sim_wall_s_median": moesim_wall,
        "simpy_sim_wall_s_median": simpy_wall,
        "speed_ratio_simpy_over_moesim": simpy_wall / moesim_wall,
        "repeats": repeat,
    }
    print(json.dumps(result, indent=2))
    worst = max(rel["token_latency_mean_ns"], rel["ttft_mean_ns"], rel["makespan_ns"])
    sys.exit(0 if worst < 0.01 else 1)


if __name__ == "__main__":
    main()
