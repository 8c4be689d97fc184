//! The checks behind every fuzz target: each feeds one input to one of moesim's parsers of user
//! files and asserts what moesim promises for bad input. It must not panic, hang or exhaust
//! memory (libFuzzer reports those), and every rejection must be one line that names the
//! file it came from. Accepted inputs are pushed on through what consumes them (a small
//! simulation, a quantization, a replay) where that stays fast, so a value that validation lets
//! through cannot crash what follows either.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use moesim::Error;

/// This process's scratch directory: under `MOESIM_FUZZ_SCRATCH` when set (scripts/fuzz.sh
/// gives each target its own and removes it afterwards), else tmpfs when the machine has one.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = if let Some(d) = std::env::var_os("MOESIM_FUZZ_SCRATCH") {
            PathBuf::from(d)
        } else if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = root.join(format!("moesim-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch directory");
        d
    })
}

/// Writes `data` to the scratch file `name` and returns its path.
fn file(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, data).expect("scratch file");
    p
}

/// An empty scratch directory `name`.
fn dir(name: &str) -> PathBuf {
    let d = scratch().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch directory");
    d
}

/// A rejection must be one line naming `label` (the file, as the user would have named it).
#[track_caller]
fn check(e: &Error, label: &str) {
    let m = e.to_string();
    assert!(!m.contains('\n'), "a multi-line error: {m:?}");
    assert!(m.contains(label), "the error does not name `{label}`: {m}");
}

/// A rejection reported as a bare reason string, which its caller prefixes with the file.
#[track_caller]
fn check_reason(reason: &str) {
    assert!(!reason.contains('\n'), "a multi-line reason: {reason:?}");
    assert!(!reason.is_empty(), "an empty reason");
}

/// An experiment file. Paths inside it resolve against an empty directory; an accepted
/// experiment with a small generated trace is simulated.
pub fn experiment_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = scratch().join("experiment-base");
    std::fs::create_dir_all(&base).expect("scratch");
    let label = "fuzz-experiment.toml";
    match moesim::experiment::Experiment::parse(label, text, &base) {
        Err(e) => check(&e, label),
        Ok(exp) => {
            if let moesim::experiment::TraceSource::Generator { spec, requests, .. } = &exp.source {
                let events = *requests as u64
                    * (spec.prefill_tokens as u64 + spec.decode_tokens as u64)
                    * spec.layers as u64;
                let small = events <= 3_000
                    && spec.experts <= 256
                    && spec.hidden_dim <= 1024
                    && exp.quality.samples <= 64
                    && exp.model.n_experts <= 256;
                if small && let Err(e) = exp.run() {
                    check(&e, label);
                }
            }
        }
    }
}

/// A hardware profile; an accepted one runs a tiny simulation of the micro-MoE.
pub fn profile_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let label = "fuzz-profile.toml";
    match moesim::hardware::parse(label, text) {
        Err(e) => check(&Error::Input(e), label),
        Ok(_) => {
            let d = dir("profile");
            std::fs::write(d.join("p.toml"), text).expect("scratch");
            // Composed with shipped profiles, as the GPU side and as the host side: a profile,
            // or a one-line refusal naming the inputs.
            let own = d.join("p.toml").display().to_string();
            for arg in [
                format!("{own}+pc-cpu-ryzen7-5800x-ddr4-2ch"),
                format!("pc-rtx3060-12gb-ddr5+{own}"),
            ] {
                if let Err(e) = moesim::hardware::load(&arg) {
                    check(&e, &own);
                }
            }
            let exp = "schema_version = 1\nname = \"f\"\n[hardware]\nprofile = \"p.toml\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nprefill_tokens = 2\ndecode_tokens = 3\n[quality]\nsamples = 0\n";
            match moesim::experiment::Experiment::parse("fuzz-exp.toml", exp, &d) {
                // The profile may not hold the micro-MoE: a named, one-line refusal.
                Err(e) => check(&e, "fuzz-exp.toml"),
                Ok(x) => {
                    if let Err(e) = x.run() {
                        check(&e, "fuzz-exp.toml");
                    }
                }
            }
        }
    }
}

/// A runtime profile; an accepted one times a tiny simulation of the micro-MoE through it.
pub fn runtime_toml(data: &[u8]) {
    let path = file("fuzz-runtime.toml", data);
    let label = path.to_str().expect("a UTF-8 scratch path");
    match moesim::hardware::runtime::load(label) {
        Err(e) => check(&e, "fuzz-runtime.toml"),
        Ok(r) => {
            assert!(r.link_efficiency > 0.0 && r.link_efficiency <= 1.0);
            assert!(r.compute_efficiency > 0.0 && r.compute_efficiency <= 1.0);
            let exp = format!(
                "schema_version = 1\nname = \"f\"\n[hardware]\nprofile = \"esp32-p4\"\nruntime = \"{label}\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\nprefill_tokens = 2\ndecode_tokens = 3\n[cache]\ncapacity_experts = 1\n[quality]\nsamples = 0\n"
            );
            match moesim::experiment::Experiment::parse("fuzz-exp.toml", &exp, scratch()) {
                Err(e) => check(&e, "fuzz-exp.toml"),
                Ok(x) => {
                    if let Err(e) = x.run() {
                        check(&e, "fuzz-exp.toml");
                    }
                }
            }
        }
    }
}

/// A model spec; an accepted one is sized in every format.
pub fn model_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let label = "fuzz-model.toml";
    match moesim::moe::parse(label, text) {
        Err(e) => check(&Error::Input(e), label),
        Ok(m) => {
            for f in moesim::quant::format::WeightFormat::ALL {
                let _ = m.expert_bytes(f);
            }
            let _ = (m.total_params(), m.active_params(), m.params_per_expert());
        }
    }
}

/// A generator spec; an accepted small one generates a request.
pub fn generator_toml(data: &[u8]) {
    use moesim::trace::generate::{GeneratedEvent, Generator, GeneratorSpec};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let label = "fuzz-generator.toml";
    let spec: GeneratorSpec = match moesim::config::parse_toml(label, text) {
        Err(e) => return check(&Error::Input(e), label),
        Ok(s) => s,
    };
    if let Err(e) = spec.validate(label) {
        return check(&Error::Input(e), label);
    }
    let small = (spec.prefill_tokens as u64 + spec.decode_tokens as u64) <= 256
        && spec.layers as u64 * spec.experts as u64 * spec.hidden_dim as u64 <= 4_000_000
        && spec.topics as u64 * spec.hidden_dim as u64 <= 4_000_000;
    if small {
        let g = Generator::new(&spec, 7);
        let mut events = g.request(0);
        let mut ev = GeneratedEvent::default();
        while events.next_event(&mut ev) {}
    }
}

/// A native trace: header, every record, then the simulator's and the statistics' readers.
pub fn native_trace(data: &[u8]) {
    use moesim::trace::native::TraceReader;
    let label = "fuzz-trace.jsonl";
    let mut reader = match TraceReader::new(label.to_string(), data) {
        Err(e) => return check(&e, label),
        Ok(r) => r,
    };
    let mut r = moesim::trace::RoutingRecord::default();
    loop {
        match reader.next_record(&mut r) {
            Err(e) => return check(&e, label),
            Ok(false) => break,
            Ok(true) => {}
        }
    }
    let path = file("trace.jsonl", data);
    let shown = path.display().to_string();
    match moesim::router::replay::RouteWorkload::from_trace(&path) {
        Err(e) => check(&e, &shown),
        Ok(w) => {
            if let Err(reason) = moesim::sim::SimTrace::new(w, Vec::new()) {
                check_reason(&reason);
            }
        }
    }
    if let Err(e) = moesim::trace::stats::stats_of_path(&path) {
        check(&e, &shown);
    }
}

/// The fields a record line must have, as serde_json reads them.
#[derive(serde::Deserialize)]
struct Record {
    request: u32,
    phase: String,
    position: u32,
    layer: u32,
    experts: Vec<u16>,
    #[serde(default)]
    weights: Vec<f32>,
    #[serde(default)]
    logits: Vec<f32>,
    #[serde(default)]
    token: Option<u32>,
}

/// One record line through moesim's JSON scanner, against serde_json: every line serde_json
/// reads as a record (the required fields of the right types, no other keys, a known phase) is
/// accepted with the same values.
pub fn json_record(data: &[u8]) {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(data);
    let mut r = moesim::trace::RoutingRecord::default();
    let ours = moesim::trace::native::parse_record(line, &mut r);
    if let Err(reason) = &ours {
        check_reason(reason);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
        return;
    };
    let Some(obj) = value.as_object() else {
        return;
    };
    const KEYS: [&str; 8] = [
        "request", "phase", "position", "layer", "experts", "weights", "logits", "token",
    ];
    if obj.keys().any(|k| !KEYS.contains(&k.as_str())) {
        return;
    }
    // serde_json keeps the last of duplicate keys; the scanner refuses duplicates.
    if has_duplicate_keys(line) {
        return;
    }
    let Ok(rec) = serde_json::from_value::<Record>(value.clone()) else {
        return;
    };
    if rec.phase != "prefill" && rec.phase != "decode" {
        return;
    }
    // Numbers serde_json reads as f32 but that overflow it (1e39) are not finite values;
    // the scanner refuses non-finite weights and logits.
    if rec
        .weights
        .iter()
        .chain(&rec.logits)
        .any(|x| !x.is_finite())
    {
        return;
    }
    assert!(
        ours.is_ok(),
        "serde_json reads a record the scanner refuses ({}): {}",
        ours.unwrap_err(),
        String::from_utf8_lossy(line)
    );
    assert_eq!(r.request, rec.request);
    assert_eq!(r.phase.name(), rec.phase);
    assert_eq!(r.position, rec.position);
    assert_eq!(r.layer, rec.layer);
    assert_eq!(r.experts, rec.experts);
    assert_eq!(r.weights, rec.weights, "{}", String::from_utf8_lossy(line));
    assert_eq!(r.logits, rec.logits, "{}", String::from_utf8_lossy(line));
    assert_eq!(r.token, rec.token);
}

/// Whether the top-level object of `line` repeats a key (as serde_json's `Value` reads it).
fn has_duplicate_keys(line: &[u8]) -> bool {
    // A pass over the raw keys: serde_json's map keeps one entry per key.
    let mut de = serde_json::Deserializer::from_slice(line);
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(k) = a.next_key::<String>()? {
                        a.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    match <Keys as serde::Deserialize>::deserialize(&mut de) {
        Ok(Keys(mut k)) => {
            let n = k.len();
            k.sort();
            k.dedup();
            k.len() != n
        }
        Err(_) => false,
    }
}

/// A generic JSONL trace through `trace import --format jsonl` (fields mapped one to one).
pub fn import_jsonl(data: &[u8]) {
    use moesim::trace::import::{Destination, ImportFormat, ImportOptions, import};
    let path = file("import.jsonl", data);
    let maps: Vec<(String, String)> = [
        "request", "layer", "position", "experts", "weights", "phase",
    ]
    .iter()
    .map(|r| (r.to_string(), r.to_string()))
    .collect();
    let options = ImportOptions {
        experts: Some(16),
        top_k: Some(2),
        ..Default::default()
    };
    let r = import(
        ImportFormat::Jsonl,
        &[path.as_path()],
        &maps,
        &options,
        Destination::Memory(1 << 16),
        true,
    );
    if let Err(e) = r {
        check(&e, &path.display().to_string());
    }
}

/// A moe-cache-lab v1 routing file through `trace import --format moe-cache-lab`.
pub fn import_moe_cache_lab(data: &[u8]) {
    use moesim::trace::import::{Destination, ImportFormat, ImportOptions, import};
    let path = file("moe-cache-lab.jsonl", data);
    let r = import(
        ImportFormat::MoeCacheLab,
        &[path.as_path()],
        &[],
        &ImportOptions::default(),
        Destination::Memory(1 << 16),
        true,
    );
    match r {
        Err(e) => check(&e, &path.display().to_string()),
        Ok(result) => {
            let bytes = result.bytes.expect("memory destination");
            if let Err(e) = moesim::trace::import::truncate_to_whole_tokens(&bytes) {
                check(&e, "import");
            }
        }
    }
}

/// A libCacheSim oracleGeneral trace, replayed through LRU and Belady.
pub fn oracle_general(data: &[u8]) {
    use moesim::cache::PolicyKind;
    use moesim::cache::replay::{Capacity, Workload};
    let path = file("trace.oracleGeneral", data);
    let w = match Workload::from_oracle_general(&path, false) {
        Err(e) => return check(&e, &path.display().to_string()),
        Ok(w) => w,
    };
    if w.accesses() <= 100_000 {
        use moesim::cache::replay::{BetweenRequests, ReplayOptions, Semantics};
        let policies = [
            PolicyKind::Lru {},
            PolicyKind::Belady {},
            PolicyKind::Arc {},
        ];
        let oracles = w.oracles(&policies, BetweenRequests::Keep);
        for p in &policies {
            let opts = ReplayOptions {
                semantics: Semantics::Sequential,
                between: BetweenRequests::Keep,
                warm: None,
            };
            if let Err(e) =
                moesim::cache::replay::replay(&w, &oracles, p, Capacity::Experts(3.0), opts)
            {
                check(&e, "");
            }
        }
    }
}

/// A `.npy` matrix; an accepted small one is quantized to Q4_K and Q8_0 and checked.
pub fn npy(data: &[u8]) {
    let path = file("w.npy", data);
    let shown = path.display().to_string();
    match moesim::weights::read_matrix(&path, None) {
        Err(e) => check(&e, &shown),
        Ok(m) => quantize_small(&m),
    }
}

fn quantize_small(m: &moesim::weights::Matrix) {
    use moesim::quant::{QuantizedMatrix, format::WeightFormat};
    if m.rows * m.cols > 1 << 20 {
        return;
    }
    for f in [WeightFormat::Q8_0, WeightFormat::Q4K, WeightFormat::Q2K] {
        match QuantizedMatrix::quantize(f, m.rows, m.cols, &m.data, None) {
            Err(reason) => check_reason(&reason),
            Ok(q) => {
                if let Err(reason) = q.check_representable(&m.data) {
                    check_reason(&reason);
                }
            }
        }
    }
}

/// A `.safetensors` file, its tensor `w` read and quantized.
pub fn safetensors(data: &[u8]) {
    let path = file("w.safetensors", data);
    let shown = path.display().to_string();
    match moesim::weights::read_matrix(&path, Some("w")) {
        Err(e) => check(&e, &shown),
        Ok(m) => quantize_small(&m),
    }
}

/// The host's expert store: its header, then the first expert read back.
pub fn expert_store(data: &[u8]) {
    let path = file("experts.store", data);
    let shown = path.display().to_string();
    match moesim::host::store::ExpertStore::open(&path, false) {
        Err(e) => check(&e, &shown),
        Ok(s) => {
            if s.shape.expert_bytes() <= 1 << 24 && s.shape.layers > 0 && s.shape.experts > 0 {
                let mut buf = moesim::host::store::AlignedBuf::new(s.shape.stride() as usize);
                if let Err(e) = s.read_expert(0, &mut buf) {
                    check(&e, &shown);
                }
            }
        }
    }
}

/// A sweep's `results.csv`, summarised and plotted as `moesim plot` does.
pub fn results_csv(data: &[u8]) {
    let d = dir("results");
    std::fs::write(d.join("results.csv"), data).expect("scratch");
    if let Err(e) = moesim::sweep::summary::finish(&d, "fuzz") {
        check(&e, &d.display().to_string());
    }
}

/// A sweep directory's manifest and one part, merged as `moesim merge` does. The input holds
/// `runs.csv`, then a line `--`, then `points/000000.csv`.
pub fn sweep_parts(data: &[u8]) {
    let d = dir("part");
    let text = String::from_utf8_lossy(data);
    let (runs, part) = text.split_once("\n--\n").unwrap_or((&text, ""));
    std::fs::create_dir_all(d.join("points")).expect("scratch");
    std::fs::write(d.join("experiment.hash"), "0000000000000001\n").expect("scratch");
    std::fs::write(
        d.join("experiment.toml"),
        "schema_version = 1\nname = \"f\"\n[hardware]\nprofile = \"esp32-p4\"\n[model]\nspec = \"micro-moe\"\nformat = \"q2_k\"\n[trace]\ngenerator = \"micro-moe\"\n",
    )
    .expect("scratch");
    std::fs::write(d.join("runs.csv"), runs).expect("scratch");
    std::fs::write(d.join("points").join("000000.csv"), part).expect("scratch");
    for side in ["latency", "popularity"] {
        std::fs::write(d.join("points").join(format!("000000.{side}.csv")), part).expect("scratch");
    }
    let out = scratch().join("merged");
    let _ = std::fs::remove_dir_all(&out);
    if let Err(e) = moesim::sweep::merge(&[d.clone()], &out) {
        let m = e.to_string();
        assert!(!m.contains('\n'), "a multi-line error: {m:?}");
        assert!(
            m.contains(&d.display().to_string()) || m.contains(&out.display().to_string()),
            "the error names neither directory: {m}"
        );
    }
}

/// A GGUF file: its header and, when it is a MoE model, the model and its spec.
pub fn gguf_header(data: &[u8]) {
    let path = file("m.gguf", data);
    let shown = path.display().to_string();
    match moesim::cli::model::read_gguf(&path) {
        Err(e) => check(&e, &shown),
        Ok((h, m)) => {
            if let Ok(spec) = m.to_spec(&shown) {
                let _ = spec.validate(&shown);
            }
            // Every quantization mix on whatever header parsed: types and sizes, never a panic.
            for mix in moesim::gguf::mix::Mix::ALL {
                if let Ok(mixed) = moesim::gguf::mix::apply(mix, &h) {
                    let _ = moesim::gguf::GgufModel::from_header(&mixed, "m");
                }
            }
        }
    }
}
