//! The simulator's resolved inputs and the standard routes as one JSON document
//! (`moesim run --dump-inputs`): what an independent model of the same system needs to
//! re-simulate a run (`scripts/simpy_crosscheck.py` reads it).

use super::setup::SimLink;
use super::{SimSetup, SimTrace};
use crate::cache::replay::Scope;

/// The simulator's resolved inputs and the standard routes, as JSON.
pub fn inputs_json(setup: &SimSetup, trace: &SimTrace) -> String {
    use crate::router::top_k_by;
    let w = &trace.workload;
    let k = w.top_k as usize;
    let mut top = Vec::new();
    let mut requests = Vec::new();
    for r in &trace.requests {
        let mut prefill = Vec::new();
        for layer in 0..w.layers {
            let mut per_token = Vec::new();
            for t in 0..r.prefill_tokens {
                top_k_by(w.logits_of(trace.prefill_event(r, layer, t)), k, &mut top);
                per_token.push(top.clone());
            }
            prefill.push(per_token);
        }
        let mut decode = Vec::new();
        for t in 0..r.decode_tokens {
            let mut per_layer = Vec::new();
            for layer in 0..w.layers {
                top_k_by(w.logits_of(trace.decode_event(r, t, layer)), k, &mut top);
                per_layer.push(top.clone());
            }
            decode.push(per_layer);
        }
        requests.push(serde_json::json!({ "prefill": prefill, "decode": decode }));
    }
    let link_json = |l: &SimLink| {
        serde_json::json!({
            "from": l.from, "to": l.to, "latency_ns": l.latency_ns, "granularity_bytes": l.granularity_bytes, "request_bytes": l.request_bytes,
            "bandwidth_bytes_per_s": l.bandwidth_bytes_per_s, "channels": l.channels,
        })
    };
    let links: Vec<serde_json::Value> = setup.links.iter().map(link_json).collect();
    let in_place = setup.in_place.as_ref().map(|ip| {
        serde_json::json!({
            "mode": ip.mode.name(),
            "always": ip.always,
            "expert_compute_ns": ip.expert_compute_ns,
            "expert_mac_ns": ip.expert_mac_ns,
            "launch_ns": ip.launch_ns,
            "to_unit": ip.to_unit.iter().map(link_json).collect::<Vec<_>>(),
            "to_primary": ip.to_primary.iter().map(link_json).collect::<Vec<_>>(),
            "activation_bytes_per_token": ip.activation_bytes_per_token,
            "sync_ns": ip.sync_ns,
        })
    });
    let v = serde_json::json!({
        "layers": setup.layers,
        "experts": setup.experts,
        "top_k": setup.top_k,
        "policy": setup.options.policy.to_string(),
        "scope": match setup.options.scope {
            Scope::PerLayer => "per-layer",
            Scope::Shared => "shared",
        },
        "cache_bytes": setup.cache_bytes,
        "expert_bytes": setup.expert_bytes,
        "expert_compute_ns": setup.expert_compute_ns,
        "expert_mac_ns": setup.expert_mac_ns,
        "dense_mac_ns": setup.dense_mac_ns,
        "gate_mac_ns": setup.gate_mac_ns,
        "launch_ns": setup.launch_ns,
        "prefill_chunk_tokens": setup.options.prefill_chunk_tokens,
        "in_place": in_place,
        "placement": setup.placement,
        "compute_tier": setup.compute_tier,
        "paths": setup.paths,
        "links": links,
        "dense_ns": setup.dense_ns,
        "gate_ns": setup.gate_ns,
        "head_ns": setup.head_ns,
        "head_mac_ns": setup.head_mac_ns,
        "layer_overhead_ns": setup.layer_overhead_ns,
        "token_overhead_ns": setup.token_overhead_ns,
        "max_batch": setup.serving.max_batch,
        "prefill_mode": serde_json::to_value(setup.serving.prefill).expect("serializes"),
        "kv": setup.serving.kv.is_some(),
        "speculative": setup.serving.speculative.is_some(),
        "shared": setup.shared.map(|s| serde_json::json!({"bytes": s.bytes, "compute_ns": s.compute_ns, "resident": s.resident})),
        "home_tier": setup.home_tier,
        "arrival": serde_json::to_value(&setup.options.arrival).expect("serializes"),
        "between_requests": format!("{:?}", setup.options.between).to_lowercase(),
        "requests": requests,
    });
    serde_json::to_string(&v).expect("serializes")
}
