//! Where each routed expert runs: moved to the primary unit's tier and computed there, or
//! computed in place by the unit attached to the tier that stores it, with only the
//! activations crossing the link.
//!
//! `[placement]` in an experiment file (every key sweepable):
//!
//! | mode | experts on the primary unit | everything else |
//! |---|---|---|
//! | `move` (default) | paged in on a miss (the expert cache) | — |
//! | `in-place` | none | computed where they live (llama.cpp `-ot exps=CPU`, `--cpu-moe`; kTransformers) |
//! | `layers` | the MoE layers from block `in_place_layers` on, all resident | the experts of blocks `0 .. in_place_layers` in place (llama.cpp `--n-cpu-moe N`) |
//! | `hot-set` | a hot set: the cache with its eviction policy (`hot_set = "cache"`), or the most used experts, fixed (`"static"`) | every miss in place, concurrently with the hits |
//! | `per-miss` | hits, and the misses worth fetching | the misses cheaper in place (Fiddler), or those of kernels under `copy_min_tokens` tokens (llama.cpp's rule for batches) |
//!
//! `in_place_layers` counts transformer blocks from 0, dense ones included, as llama.cpp's
//! `--n-cpu-moe` does: its `N` adds a CPU override for the expert tensors of `blk.0` to
//! `blk.N-1` (`llm_ffn_exps_block_regex` in `common/common.h`), and a dense block has none.

use serde::{Deserialize, Serialize};

/// `placement.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementMode {
    /// Page every missing expert into the primary unit's tier and compute it there.
    #[default]
    Move,
    /// Compute every routed expert where it is stored.
    InPlace,
    /// The experts of the first `in_place_layers` blocks in place, the rest resident.
    Layers,
    /// A hot set on the primary unit; misses in place, concurrently.
    HotSet,
    /// Each miss fetched or computed in place, whichever is predicted to finish first.
    PerMiss,
}

impl PlacementMode {
    /// Every mode, for messages and tests.
    pub const ALL: [PlacementMode; 5] = [
        PlacementMode::Move,
        PlacementMode::InPlace,
        PlacementMode::Layers,
        PlacementMode::HotSet,
        PlacementMode::PerMiss,
    ];

    /// The name in TOML.
    pub fn name(self) -> &'static str {
        match self {
            PlacementMode::Move => "move",
            PlacementMode::InPlace => "in-place",
            PlacementMode::Layers => "layers",
            PlacementMode::HotSet => "hot-set",
            PlacementMode::PerMiss => "per-miss",
        }
    }
}

/// `placement.hot_set`: how the hot set of `hot-set` mode is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HotSet {
    /// The expert cache with its eviction policy: a miss runs in place and, if the policy
    /// admits it, is also copied in the background for later uses.
    #[default]
    Cache,
    /// The most used experts of the trace, as many as the cache budget holds, fixed for the
    /// run (as the llama.cpp hot-expert forks load them from a popularity profile).
    Static,
}

/// `placement.popularity`: where the usage counts behind the static choices (a static hot set,
/// experts kept in the primary tier) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Popularity {
    /// The trace being simulated (in-sample: the set is chosen knowing the run).
    #[default]
    Trace,
    /// As many other requests of the same generator (the same model, requests the run does
    /// not contain), as a deployment profiles before it serves.
    HeldOut,
}

/// `placement.in_place_layers`: a block count, or `"fit"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlaceLayers {
    /// The experts of blocks `0 .. n` in place.
    Count(u32),
    /// The smallest count whose remaining experts fit the primary unit's tier.
    Fit,
}

impl Serialize for InPlaceLayers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InPlaceLayers::Count(n) => s.serialize_u32(*n),
            InPlaceLayers::Fit => s.serialize_str("fit"),
        }
    }
}

impl<'de> Deserialize<'de> for InPlaceLayers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = InPlaceLayers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a block count (an integer >= 0) or \"fit\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<InPlaceLayers, E> {
                u32::try_from(v).map(InPlaceLayers::Count).map_err(|_| {
                    E::custom(format!(
                        "{v}: expected a block count (an integer >= 0) or \"fit\""
                    ))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<InPlaceLayers, E> {
                u32::try_from(v).map(InPlaceLayers::Count).map_err(|_| {
                    E::custom(format!(
                        "{v}: expected a block count (an integer >= 0) or \"fit\""
                    ))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InPlaceLayers, E> {
                match v {
                    "fit" => Ok(InPlaceLayers::Fit),
                    other => Err(E::custom(format!(
                        "`{other}`: expected a block count (an integer >= 0) or \"fit\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[placement]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    /// Where experts run.
    #[serde(default)]
    pub mode: PlacementMode,
    /// `layers` mode: blocks whose experts run in place (llama.cpp's `--n-cpu-moe`), or
    /// `"fit"`: the fewest that leave the other blocks' experts fitting the primary tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place_layers: Option<InPlaceLayers>,
    /// The unit that computes experts in place (default: the unit on the experts' home tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `hot-set` mode: how the hot set is chosen.
    #[serde(default, skip_serializing_if = "is_default_hot_set")]
    pub hot_set: HotSet,
    /// Where the popularity behind static choices comes from (default: the trace itself).
    #[serde(default, skip_serializing_if = "is_default_popularity")]
    pub popularity: Popularity,
    /// `per-miss` mode: fetch a missing expert when its kernel has at least this many tokens
    /// and compute it in place otherwise (llama.cpp copies host experts to the GPU for batches
    /// of 32 or more). Default: decide each miss by the predicted finish times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_min_tokens: Option<u32>,
    /// Synchronisation cost per layer step that uses the in-place unit (the primary waits for
    /// the other unit's result), in ns. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sync_ns: f64,
    /// Bytes per activation value crossing the link (4: llama.cpp moves f32 activations).
    #[serde(
        default = "default_activation_bytes",
        skip_serializing_if = "is_default_activation_bytes"
    )]
    pub activation_bytes_per_value: u32,
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec {
            mode: PlacementMode::Move,
            in_place_layers: None,
            unit: None,
            hot_set: HotSet::Cache,
            popularity: Popularity::Trace,
            copy_min_tokens: None,
            sync_ns: 0.0,
            activation_bytes_per_value: default_activation_bytes(),
        }
    }
}

fn is_default_popularity(p: &Popularity) -> bool {
    *p == Popularity::Trace
}

fn is_default_hot_set(h: &HotSet) -> bool {
    *h == HotSet::Cache
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn default_activation_bytes() -> u32 {
    4
}

fn is_default_activation_bytes(x: &u32) -> bool {
    *x == 4
}

impl PlacementSpec {
    /// Whether this is today's default (`move`, nothing else set).
    pub fn is_default(&self) -> bool {
        *self == PlacementSpec::default()
    }

    /// Checks what can be checked without the profile and the model; `Err((key, reason))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (self.mode, self.in_place_layers) {
            (PlacementMode::Layers, None) => {
                return Err((
                    "placement.in_place_layers",
                    "missing: mode = \"layers\" needs the number of blocks whose experts run in place"
                        .into(),
                ));
            }
            (PlacementMode::Layers, Some(_)) | (_, None) => {}
            (mode, Some(_)) => {
                return Err((
                    "placement.in_place_layers",
                    format!(
                        "only applies to mode = \"layers\" (mode is \"{}\")",
                        mode.name()
                    ),
                ));
            }
        }
        if self.hot_set != HotSet::Cache && self.mode != PlacementMode::HotSet {
            return Err((
                "placement.hot_set",
                format!(
                    "only applies to mode = \"hot-set\" (mode is \"{}\")",
                    self.mode.name()
                ),
            ));
        }
        match (self.mode, self.copy_min_tokens) {
            (PlacementMode::PerMiss, Some(0)) => {
                return Err((
                    "placement.copy_min_tokens",
                    "must be at least 1 (leave it out to decide each miss by its predicted finish)"
                        .into(),
                ));
            }
            (PlacementMode::PerMiss, _) | (_, None) => {}
            (mode, Some(_)) => {
                return Err((
                    "placement.copy_min_tokens",
                    format!(
                        "only applies to mode = \"per-miss\" (mode is \"{}\")",
                        mode.name()
                    ),
                ));
            }
        }
        if self.mode == PlacementMode::Move && self.unit.is_some() {
            return Err((
                "placement.unit",
                "mode = \"move\" computes every expert on the primary unit; pick a mode that runs experts in place"
                    .into(),
            ));
        }
        if !(self.sync_ns.is_finite() && (0.0..=1e10).contains(&self.sync_ns)) {
            return Err((
                "placement.sync_ns",
                format!(
                    "must be in [0, 1e10] ns, got {}",
                    crate::param::show(self.sync_ns)
                ),
            ));
        }
        if !(1..=8).contains(&self.activation_bytes_per_value) {
            return Err((
                "placement.activation_bytes_per_value",
                format!(
                    "must be 1 to 8 bytes, got {}",
                    self.activation_bytes_per_value
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_to_nothing() {
        let spec: PlacementSpec = toml::from_str("").unwrap();
        assert!(spec.is_default());
        assert_eq!(toml::to_string(&spec).unwrap(), "mode = \"move\"\n");
    }

    #[test]
    fn a_block_count_or_fit() {
        let spec: PlacementSpec =
            toml::from_str("mode = \"layers\"\nin_place_layers = \"fit\"").unwrap();
        assert_eq!(spec.in_place_layers, Some(InPlaceLayers::Fit));
        assert!(
            toml::to_string(&spec)
                .unwrap()
                .contains("in_place_layers = \"fit\"")
        );
        let spec: PlacementSpec = toml::from_str("mode = \"layers\"\nin_place_layers = 7").unwrap();
        assert_eq!(spec.in_place_layers, Some(InPlaceLayers::Count(7)));
        for bad in ["-1", "\"all\"", "1.5"] {
            let e = toml::from_str::<PlacementSpec>(&format!("in_place_layers = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("block count"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_of_other_modes_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("mode = \"layers\"", "placement.in_place_layers"),
            (
                "mode = \"in-place\"\nin_place_layers = 3",
                "placement.in_place_layers",
            ),
            ("mode = \"move\"\nhot_set = \"static\"", "placement.hot_set"),
            (
                "mode = \"per-miss\"\ncopy_min_tokens = 0",
                "placement.copy_min_tokens",
            ),
            (
                "mode = \"hot-set\"\ncopy_min_tokens = 32",
                "placement.copy_min_tokens",
            ),
            ("unit = \"cpu\"", "placement.unit"),
            ("mode = \"in-place\"\nsync_ns = -1.0", "placement.sync_ns"),
            (
                "mode = \"in-place\"\nactivation_bytes_per_value = 0",
                "placement.activation_bytes_per_value",
            ),
        ];
        for (text, key) in cases {
            let spec: PlacementSpec = toml::from_str(text).unwrap();
            let (k, _) = spec.validate().expect_err(text);
            assert_eq!(k, *key, "{text}");
        }
        for mode in PlacementMode::ALL {
            let spec = PlacementSpec {
                mode,
                in_place_layers: (mode == PlacementMode::Layers).then_some(InPlaceLayers::Count(2)),
                ..PlacementSpec::default()
            };
            spec.validate()
                .unwrap_or_else(|e| panic!("{}: {e:?}", mode.name()));
        }
    }
}
