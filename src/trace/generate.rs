//! The synthetic trace generator: routing driven by a hidden-state process.
//!
//! Each token carries a hidden vector per MoE layer. Tokens follow a topic process: a Markov
//! chain that keeps the current topic with probability `p_stay` and otherwise draws a new one
//! from Zipf(`zipf_s`) popularity. At layer `l` the token's input is its topic's centroid for
//! that layer (scaled by `centroid_scale`) plus Gaussian noise (`noise`), and hidden states are
//! correlated across layers:
//!
//! ```text
//! u_l = centroid_scale · c[topic][l] + noise · ε_l          ε_l ~ N(0, I_d)
//! h_0 = u_0,   h_l = rho · h_{l-1} + sqrt(1 - rho²) · u_l
//! logits_l = W_l · h_l / temperature + b_l                   W_l: experts × d, entries N(0, 1/d)
//! ```
//!
//! `b_l` is a fixed per-expert bias drawn from N(0, `bias_skew`²) that skews popularity. The
//! router selects the top-k logits (ties to the lower id) and gate weights are the softmax
//! renormalised over the selected experts, as in Mixtral.
//!
//! Requests have `prefill_tokens` prompt tokens, emitted layer-major as a batched prefill,
//! then decode tokens emitted token-major. The model (centroids, routers, biases) is drawn from
//! the seed; request `r` draws from its own stream derived from (seed, r), so any request can
//! be regenerated alone, bit for bit, together with its hidden vectors.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Zipf};
use serde::{Deserialize, Serialize};

use super::{Phase, RoutingRecord, TraceMeta};
use crate::error::InputError;

/// The largest `zipf_s`: topic 1 already takes 99.9 % of the draws at 10.
pub const MAX_ZIPF_S: f64 = 10.0;
/// The largest `centroid_scale`, `noise`, `bias_skew` and `temperature`.
pub const MAX_SCALE: f64 = 1e3;
/// The smallest `temperature`.
pub const MIN_TEMPERATURE: f64 = 1e-3;

/// Parameters of the generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSpec {
    /// Preset or user name.
    pub name: String,
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
    /// Experts selected per token per layer.
    pub top_k: u32,
    /// Width d of the hidden vectors (a multiple of 256 keeps K-quant proxy experts valid).
    pub hidden_dim: u32,
    /// Number of topics.
    pub topics: u32,
    /// Zipf exponent of topic popularity.
    pub zipf_s: f64,
    /// Probability that the next token keeps the current topic.
    pub p_stay: f64,
    /// Scale of the topic centroids.
    pub centroid_scale: f64,
    /// Standard deviation of the per-token, per-layer noise.
    pub noise: f64,
    /// Correlation of a token's hidden states across consecutive layers, in [0, 1).
    pub rho: f64,
    /// Router temperature: logits are divided by it.
    pub temperature: f64,
    /// Standard deviation of the fixed per-expert logit bias.
    pub bias_skew: f64,
    /// Prompt tokens per request.
    pub prefill_tokens: u32,
    /// Decode tokens per request.
    pub decode_tokens: u32,
}

impl GeneratorSpec {
    /// Checks ranges; `file` names the source in errors.
    pub fn validate(&self, file: &str) -> Result<(), InputError> {
        let err = |key: &str, reason: &str| Err(InputError::at_key(file, key, reason));
        if self.layers == 0 || self.layers > super::MAX_LAYERS {
            return err("layers", "must be in 1..=65536");
        }
        if self.experts == 0 || self.experts > 65536 {
            return err("experts", "must be in 1..=65536");
        }
        if self.top_k == 0 || self.top_k > self.experts {
            return err("top_k", "must be in 1..=experts");
        }
        if self.hidden_dim == 0 || self.hidden_dim > 65_536 {
            return err("hidden_dim", "must be in 1..=65536");
        }
        if self.topics == 0 || self.topics > 1_000_000 {
            return err("topics", "must be in 1..=1000000");
        }
        if let Err(r) = super::check_shape(self.layers, self.experts, self.top_k) {
            return err("layers", &r);
        }
        // The model drawn from the seed: topic centroids, and a router matrix and a bias per
        // layer, in f32.
        let model_bytes = (self.layers as u64)
            .checked_mul(self.experts as u64 + 1)
            .and_then(|n| n.checked_add(self.topics as u64))
            .and_then(|n| n.checked_mul(self.hidden_dim as u64))
            .and_then(|n| n.checked_mul(4));
        if let Err(r) = crate::units::check_working_bytes("the generator's model", model_bytes) {
            return err("hidden_dim", &r);
        }
        // Every real figure has a documented range (GUIDE.md, "Generator spec format"), wide
        // enough for any routing behaviour (and the same bounds `trace fit` searches within),
        // and narrow enough that every hidden state, logit and gate weight stays finite in f32:
        // logits stay below about 10^9 in magnitude.
        if let Some(e) = self.figure_out_of_range() {
            return err(&e.key, &format!("{}: {}", e.value, e.reason));
        }
        if self.noise == 0.0 && self.centroid_scale == 0.0 {
            return err("noise", "noise and centroid_scale cannot both be 0");
        }
        if !(0.0..1.0).contains(&self.rho) {
            return err("rho", "must be in [0, 1)");
        }
        if self
            .prefill_tokens
            .checked_add(self.decode_tokens)
            .is_none()
        {
            return err("decode_tokens", "prefill_tokens + decode_tokens overflows");
        }
        if self.prefill_tokens + self.decode_tokens == 0 {
            return err("decode_tokens", "a request needs at least one token");
        }
        Ok(())
    }

    /// The first real figure outside its documented range, if any.
    fn figure_out_of_range(&self) -> Option<crate::param::ParamError> {
        [
            ("zipf_s", self.zipf_s, 0.0, MAX_ZIPF_S),
            ("p_stay", self.p_stay, 0.0, 1.0),
            ("centroid_scale", self.centroid_scale, 0.0, MAX_SCALE),
            ("noise", self.noise, 0.0, MAX_SCALE),
            ("temperature", self.temperature, MIN_TEMPERATURE, MAX_SCALE),
            ("bias_skew", self.bias_skew, 0.0, MAX_SCALE),
        ]
        .into_iter()
        .find_map(|(key, x, lo, hi)| crate::param::within(key, x, lo, hi).err())
    }

    /// Trace header for `requests` requests generated from this spec with `seed`.
    pub fn meta(&self, seed: u64, requests: u32) -> TraceMeta {
        TraceMeta {
            layers: self.layers,
            experts: self.experts,
            top_k: self.top_k,
            logits: true,
            model: None,
            source: Some(format!("moesim trace generate ({})", self.name)),
            generator: Some(
                serde_json::json!({ "spec": self, "seed": seed, "requests": requests }),
            ),
        }
    }
}

/// The shipped generator presets, as TOML.
pub const PRESETS: &[(&str, &str)] = &[
    ("mixtral-like", include_str!("presets/mixtral-like.toml")),
    ("micro-moe", include_str!("presets/micro-moe.toml")),
    ("olmoe-like", include_str!("presets/olmoe-like.toml")),
    ("qwen3-like", include_str!("presets/qwen3-like.toml")),
    (
        "deepseek-v2-lite-like",
        include_str!("presets/deepseek-v2-lite-like.toml"),
    ),
    ("uniform-8x2", include_str!("presets/uniform-8x2.toml")),
];

/// Loads a preset by name or a spec file by path.
pub fn load_spec(name_or_path: &str) -> crate::Result<GeneratorSpec> {
    let preset = PRESETS
        .iter()
        .find(|(n, _)| *n == name_or_path)
        .map(|(_, t)| *t);
    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    let (label, text) = crate::preset::read_source(name_or_path, preset, "generator", &names)?;
    let spec: GeneratorSpec = crate::config::parse_toml(&label, &text)?;
    spec.validate(&label)?;
    Ok(spec)
}

/// Serialises a spec as TOML (for `trace fit`).
pub fn spec_to_toml(spec: &GeneratorSpec) -> String {
    toml::to_string(spec).expect("generator spec serializes")
}

pub use crate::seed::derive_seed;

const MODEL_STREAM: u64 = u64::MAX;

/// The drawn model: topic centroids, routers and biases.
#[derive(Debug, Clone)]
pub struct Generator {
    spec: GeneratorSpec,
    seed: u64,
    /// `[topic][layer][d]`, already scaled by `centroid_scale`.
    centroids: Vec<f32>,
    /// `[layer][expert][d]`, already divided by `temperature`.
    routers: Vec<f32>,
    /// `[layer][expert]`.
    biases: Vec<f32>,
    zipf: Zipf<f64>,
}

/// One generated event: the routing record and the hidden vector the router saw.
#[derive(Debug, Clone, Default)]
pub struct GeneratedEvent {
    /// The routing record (with logits).
    pub record: RoutingRecord,
    /// The hidden vector h_l of this token at this layer (`hidden_dim` floats).
    pub hidden: Vec<f32>,
}

impl Generator {
    /// Draws the model for `spec` from `seed`. The spec must be valid.
    pub fn new(spec: &GeneratorSpec, seed: u64) -> Generator {
        let d = spec.hidden_dim as usize;
        let l = spec.layers as usize;
        let e = spec.experts as usize;
        let mut rng = StdRng::seed_from_u64(derive_seed(seed, MODEL_STREAM));
        let mut normal =
            |scale: f64| -> f32 { (scale * rng.sample::<f64, _>(StandardNormal)) as f32 };
        let centroids: Vec<f32> = (0..spec.topics as usize * l * d)
            .map(|_| normal(spec.centroid_scale))
            .collect();
        let w_scale = 1.0 / ((d as f64).sqrt() * spec.temperature);
        let routers: Vec<f32> = (0..l * e * d).map(|_| normal(w_scale)).collect();
        let biases: Vec<f32> = (0..l * e).map(|_| normal(spec.bias_skew)).collect();
        let zipf = Zipf::new(spec.topics as f64, spec.zipf_s).expect("validated zipf parameters");
        Generator {
            spec: spec.clone(),
            seed,
            centroids,
            routers,
            biases,
            zipf,
        }
    }

    /// The spec.
    pub fn spec(&self) -> &GeneratorSpec {
        &self.spec
    }

    /// Why `ev` is unusable, if it is: a non-finite hidden state, logit or gate weight, blamed
    /// on the spec key whose figure produced it (the first outside its range, or else the one
    /// that drew the non-finite part of the model).
    fn non_finite(&self, ev: &GeneratedEvent) -> Option<String> {
        let r = &ev.record;
        let first = |v: &[f32]| v.iter().copied().find(|x| !x.is_finite());
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let (what, x, key) = if let Some(x) = first(&ev.hidden) {
            let key = if finite(&self.centroids) {
                "noise"
            } else {
                "centroid_scale"
            };
            ("hidden state", x, key)
        } else if let Some(x) = first(&r.logits) {
            let key = if finite(&self.routers) && !finite(&self.biases) {
                "bias_skew"
            } else {
                "temperature"
            };
            ("logit", x, key)
        } else {
            ("gate weight", first(&r.weights)?, "temperature")
        };
        let (key, value) = match self.spec.figure_out_of_range() {
            Some(e) => (e.key, e.value),
            None => {
                let s = &self.spec;
                let value = match key {
                    "noise" => s.noise,
                    "centroid_scale" => s.centroid_scale,
                    "bias_skew" => s.bias_skew,
                    _ => s.temperature,
                };
                (key.to_string(), crate::param::show(value))
            }
        };
        Some(format!(
            "{key}: {value} makes generator `{}` produce a non-finite {what} ({}) at request {}, layer {}",
            self.spec.name,
            crate::param::show32(x),
            r.request,
            r.layer
        ))
    }

    /// The events of request `request`, in execution order.
    pub fn request(&self, request: u32) -> RequestEvents<'_> {
        RequestEvents::new(self, request)
    }

    fn draw_topic(&self, rng: &mut StdRng) -> usize {
        // Zipf samples lie in [1, topics]; topic ranks are 1-based.
        (self.zipf.sample(rng) as usize).clamp(1, self.spec.topics as usize) - 1
    }

    /// Layer `layer`'s router applied to hidden vector `h`: `W_l · h / temperature + b_l`.
    /// Applied to the previous layer's hidden state it is the speculative gate that
    /// mixtral-offloading uses to prefetch.
    pub fn router_logits(&self, layer: usize, h: &[f32], out: &mut Vec<f32>) {
        let d = self.spec.hidden_dim as usize;
        let e = self.spec.experts as usize;
        out.clear();
        let w = &self.routers[layer * e * d..][..e * d];
        let bias = &self.biases[layer * e..][..e];
        for (row, &bi) in w.chunks_exact(d).zip(bias) {
            let dot: f32 = row.iter().zip(h.iter()).map(|(x, y)| x * y).sum();
            out.push(dot + bi);
        }
    }

    /// Computes hidden state, logits and selection of one token at one layer.
    fn step(
        &self,
        rng: &mut StdRng,
        topic: usize,
        layer: usize,
        h: &mut [f32],
        ev: &mut GeneratedEvent,
    ) {
        let d = self.spec.hidden_dim as usize;
        let l_total = self.spec.layers as usize;
        let centroid = &self.centroids[(topic * l_total + layer) * d..][..d];
        let noise = self.spec.noise;
        let (a, b) = if layer == 0 {
            (0.0f32, 1.0f32)
        } else {
            let rho = self.spec.rho;
            (rho as f32, (1.0 - rho * rho).sqrt() as f32)
        };
        for (hi, &ci) in h.iter_mut().zip(centroid) {
            let eps: f64 = rng.sample(StandardNormal);
            let u = ci + (noise * eps) as f32;
            *hi = a * *hi + b * u;
        }
        let r = &mut ev.record;
        self.router_logits(layer, h, &mut r.logits);
        select_top_k(
            &r.logits,
            self.spec.top_k as usize,
            &mut r.experts,
            &mut r.weights,
        );
        ev.hidden.clear();
        ev.hidden.extend_from_slice(h);
    }
}

/// Top-k of `logits` (ties to the lower index) with softmax weights renormalised over the
/// selection, written into `experts` and `weights`.
pub fn select_top_k(logits: &[f32], k: usize, experts: &mut Vec<u16>, weights: &mut Vec<f32>) {
    experts.clear();
    weights.clear();
    for (i, &x) in logits.iter().enumerate() {
        // Insertion into a descending list of at most k entries.
        let mut pos = experts.len();
        while pos > 0 && x > logits[experts[pos - 1] as usize] {
            pos -= 1;
        }
        if pos < k {
            if experts.len() == k {
                experts.pop();
            }
            experts.insert(pos, i as u16);
        }
    }
    let max = logits[experts[0] as usize];
    let mut sum = 0.0f32;
    for &ex in experts.iter() {
        let w = (logits[ex as usize] - max).exp();
        weights.push(w);
        sum += w;
    }
    for w in weights.iter_mut() {
        *w /= sum;
    }
}

/// Iterator-like producer of one request's events.
#[derive(Debug)]
pub struct RequestEvents<'g> {
    generator: &'g Generator,
    request: u32,
    rng: StdRng,
    topic: usize,
    /// Next token to generate (prefill tokens are generated together first).
    next_token: u32,
    /// Prefill events buffered in layer-major order, and the read index.
    prefill: Vec<GeneratedEvent>,
    prefill_read: usize,
    /// Decode: the current token's events and the next layer to emit.
    h: Vec<f32>,
    layer: u32,
}

impl<'g> RequestEvents<'g> {
    fn new(generator: &'g Generator, request: u32) -> RequestEvents<'g> {
        let mut rng = StdRng::seed_from_u64(derive_seed(generator.seed, request as u64));
        let topic = generator.draw_topic(&mut rng);
        let mut me = RequestEvents {
            generator,
            request,
            rng,
            topic,
            next_token: 0,
            prefill: Vec::new(),
            prefill_read: 0,
            h: vec![0.0; generator.spec.hidden_dim as usize],
            layer: generator.spec.layers,
        };
        me.generate_prefill();
        me
    }

    fn advance_topic(&mut self) {
        if self.next_token > 0 && self.rng.random::<f64>() >= self.generator.spec.p_stay {
            self.topic = self.generator.draw_topic(&mut self.rng);
        }
    }

    fn generate_prefill(&mut self) {
        let s = &self.generator.spec;
        let (p, l) = (s.prefill_tokens as usize, s.layers as usize);
        let mut by_token: Vec<GeneratedEvent> = Vec::with_capacity(p * l);
        for t in 0..s.prefill_tokens {
            self.advance_topic();
            for layer in 0..s.layers {
                let mut ev = GeneratedEvent::default();
                self.generator.step(
                    &mut self.rng,
                    self.topic,
                    layer as usize,
                    &mut self.h,
                    &mut ev,
                );
                ev.record.request = self.request;
                ev.record.phase = Phase::Prefill;
                ev.record.position = t;
                ev.record.layer = layer;
                by_token.push(ev);
            }
            self.next_token += 1;
        }
        // Emit layer-major: all prompt tokens through layer 0, then layer 1, ...
        self.prefill = Vec::with_capacity(p * l);
        for layer in 0..l {
            for t in 0..p {
                self.prefill
                    .push(std::mem::take(&mut by_token[t * l + layer]));
            }
        }
    }

    /// Writes the next event into `ev`; `false` when the request is done. Panics on a
    /// non-finite hidden state, logit or gate weight, which a validated spec cannot produce;
    /// [`RequestEvents::try_next_event`] returns it as an error instead.
    pub fn next_event(&mut self, ev: &mut GeneratedEvent) -> bool {
        self.try_next_event(ev)
            .unwrap_or_else(|e| panic!("{e} (its validation should have refused the spec)"))
    }

    /// [`RequestEvents::next_event`], refusing an event whose hidden state, logits or gate
    /// weights are not all finite (the second line of defence behind the spec's ranges): the
    /// error names the spec key responsible.
    pub fn try_next_event(&mut self, ev: &mut GeneratedEvent) -> Result<bool, String> {
        if !self.produce(ev) {
            return Ok(false);
        }
        match self.generator.non_finite(ev) {
            None => Ok(true),
            Some(e) => Err(e),
        }
    }

    fn produce(&mut self, ev: &mut GeneratedEvent) -> bool {
        if self.prefill_read < self.prefill.len() {
            std::mem::swap(ev, &mut self.prefill[self.prefill_read]);
            self.prefill_read += 1;
            return true;
        }
        let s = &self.generator.spec;
        if self.layer == s.layers {
            if self.next_token >= s.prefill_tokens + s.decode_tokens {
                return false;
            }
            self.advance_topic();
            self.next_token += 1;
            self.layer = 0;
        }
        let layer = self.layer;
        self.generator
            .step(&mut self.rng, self.topic, layer as usize, &mut self.h, ev);
        ev.record.request = self.request;
        ev.record.phase = Phase::Decode;
        ev.record.position = self.next_token - 1;
        ev.record.layer = layer;
        ev.record.token = None;
        self.layer += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for (name, _) in PRESETS {
            let spec = load_spec(name).unwrap();
            assert_eq!(&spec.name, name);
        }
    }

    /// The second line of defence: a spec that bypassed validation with a figure that
    /// overflows f32 is refused at generation time, naming the key.
    #[test]
    fn non_finite_events_are_refused_naming_the_key() {
        let base = load_spec("micro-moe").unwrap();
        type Set = fn(&mut GeneratorSpec);
        let cases: [(Set, &str); 5] = [
            (|s| s.temperature = 1e-40, "temperature: 1e-40"),
            (|s| s.temperature = 1e-300, "temperature: 1e-300"),
            (|s| s.noise = 1e38, "noise: 1e38"),
            (|s| s.centroid_scale = 1e300, "centroid_scale: 1e300"),
            (|s| s.bias_skew = 1e300, "bias_skew: 1e300"),
        ];
        for (set, needle) in cases {
            let mut spec = base.clone();
            set(&mut spec);
            assert!(spec.validate("g.toml").is_err(), "{needle}: validated");
            let g = Generator::new(&spec, 1);
            let mut events = g.request(0);
            let mut ev = GeneratedEvent::default();
            let e = loop {
                match events.try_next_event(&mut ev) {
                    Ok(true) => continue,
                    Ok(false) => panic!("{needle}: every event was finite"),
                    Err(e) => break e,
                }
            };
            assert!(e.starts_with(needle) && e.contains("non-finite"), "{e}");
        }
        // At the edges of the documented ranges every event is finite.
        let mut spec = base.clone();
        spec.temperature = MIN_TEMPERATURE;
        spec.noise = MAX_SCALE;
        spec.centroid_scale = MAX_SCALE;
        spec.bias_skew = MAX_SCALE;
        spec.zipf_s = MAX_ZIPF_S;
        spec.rho = 0.999_999;
        spec.validate("g.toml").unwrap();
        let g = Generator::new(&spec, 1);
        let mut events = g.request(0);
        let mut ev = GeneratedEvent::default();
        while events.try_next_event(&mut ev).unwrap() {
            let largest = ev.record.logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(largest < 1e9, "{largest}");
        }
    }

    #[test]
    fn top_k_breaks_ties_to_lower_index_and_renormalises() {
        let (mut e, mut w) = (Vec::new(), Vec::new());
        select_top_k(&[1.0, 3.0, 3.0, 0.5], 2, &mut e, &mut w);
        assert_eq!(e, [1, 2]);
        assert_eq!(w, [0.5, 0.5]);
        select_top_k(&[0.0, (3.0f32).ln()], 2, &mut e, &mut w);
        assert_eq!(e, [1, 0]);
        assert!((w[0] - 0.75).abs() < 1e-6 && (w[1] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn requests_regenerate_identically_and_order_is_valid() {
        let mut spec = load_spec("micro-moe").unwrap();
        spec.prefill_tokens = 4;
        spec.decode_tokens = 6;
        let g = Generator::new(&spec, 7);
        let collect = |r: u32| {
            let mut it = g.request(r);
            let mut ev = GeneratedEvent::default();
            let mut out = Vec::new();
            while it.next_event(&mut ev) {
                out.push((ev.record.clone(), ev.hidden.clone()));
            }
            out
        };
        let a = collect(1);
        assert_eq!(a, collect(1));
        assert_ne!(a, collect(2));
        assert_eq!(a.len(), (4 + 6) * spec.layers as usize);
        let meta = spec.meta(7, 3);
        let mut order = super::super::OrderCheck::new(spec.layers);
        for (r, h) in &a {
            r.validate(&meta).unwrap();
            order.check(r).unwrap();
            assert_eq!(h.len(), spec.hidden_dim as usize);
        }
        // Prefill is layer-major: the first 4 events are layer 0.
        assert!(
            a[..4]
                .iter()
                .all(|(r, _)| r.layer == 0 && r.phase == Phase::Prefill)
        );
        assert!(
            a[4 * spec.layers as usize..]
                .iter()
                .all(|(r, _)| r.phase == Phase::Decode)
        );
    }
}
