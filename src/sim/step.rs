//! One layer step of the inference process: the union of the experts its tokens selected, and
//! the slots of work the compute unit runs for it (shared experts, then the selected experts as
//! they become present).

use std::collections::VecDeque;

use crate::engine::TimeNs;
use crate::router::Selection;

/// A slot's object when it holds the layer's shared experts.
pub(super) const SHARED: u32 = u32::MAX;

/// Where a slot's weights are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    Waiting,
    Ready,
    Done,
}

/// One piece of expert work of a step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Global object, or [`SHARED`].
    pub object: u32,
    pub tokens: u32,
    pub state: SlotState,
    /// The copy computed: its bytes and kernel time per token.
    pub bytes: u64,
    pub compute_ns: TimeNs,
    /// Extra kernel time if the copy just arrived.
    pub cold_ns: TimeNs,
}

/// The expert work of the current layer step.
#[derive(Debug, Default)]
pub(super) struct Step {
    pub slots: Vec<Slot>,
    pub ready: VecDeque<u16>,
    pub remaining: u32,
    pub experts_phase: bool,
    pub stall_since: Option<TimeNs>,
    /// The previous layer predicted this step (for prefetch recall).
    pub predicted: bool,
}

impl Step {
    /// Starts the slots of a new step.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.ready.clear();
        self.stall_since = None;
    }

    /// Adds a slot; `ready` ones queue for the compute unit at once. Returns its index.
    pub fn push(&mut self, slot: Slot) -> u16 {
        let i = self.slots.len() as u16;
        let ready = slot.state == SlotState::Ready;
        self.slots.push(slot);
        if ready {
            self.ready.push_back(i);
        }
        i
    }
}

/// The union of a step's selections: each expert once, in order of first selection, with the
/// tokens routed to it and its largest gate weight.
#[derive(Debug, Default)]
pub(super) struct Union {
    pub experts: Vec<u16>,
    pub tokens: Vec<u32>,
    pub weight: Vec<f32>,
}

impl Union {
    pub fn clear(&mut self) {
        self.experts.clear();
        self.tokens.clear();
        self.weight.clear();
    }

    /// Adds one token's selection.
    pub fn add(&mut self, selection: &Selection) {
        for (&x, &w) in selection.experts.iter().zip(&selection.weights) {
            match self.experts.iter().position(|&u| u == x) {
                Some(i) => {
                    self.tokens[i] += 1;
                    self.weight[i] = self.weight[i].max(w);
                }
                None => {
                    self.experts.push(x);
                    self.tokens.push(1);
                    self.weight.push(w);
                }
            }
        }
    }

    #[inline]
    pub fn contains(&self, x: u16) -> bool {
        self.experts.contains(&x)
    }
}
