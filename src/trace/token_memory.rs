//! The selections of the current request's tokens per layer, to join a token's layer with its
//! previous layer whatever the execution order (token-major decode, layer-major prefill).
//! Memory is bounded by the request length.

/// Per layer, the positions seen in the current request and their selections.
#[derive(Debug, Clone)]
pub struct TokenMemory {
    top_k: usize,
    positions: Vec<Vec<u32>>,
    selections: Vec<Vec<u16>>,
}

/// Padding of selections shorter than top-k.
const NONE: u16 = u16::MAX;

impl TokenMemory {
    /// Memory for `layers` layers and selections of at most `top_k` experts.
    pub fn new(layers: u32, top_k: u32) -> TokenMemory {
        TokenMemory {
            top_k: top_k as usize,
            positions: vec![Vec::new(); layers as usize],
            selections: vec![Vec::new(); layers as usize],
        }
    }

    /// Forgets everything (a new request).
    pub fn clear(&mut self) {
        for l in 0..self.positions.len() {
            self.positions[l].clear();
            self.selections[l].clear();
        }
    }

    /// Records the selection of the token at `position` and `layer`. Positions of one layer
    /// arrive in increasing order within a phase; a lower position restarts the layer's list.
    pub fn record(&mut self, layer: u32, position: u32, experts: &[u16]) {
        let l = layer as usize;
        if self.positions[l].last().is_some_and(|&p| p >= position) {
            self.positions[l].clear();
            self.selections[l].clear();
        }
        self.positions[l].push(position);
        let s = &mut self.selections[l];
        s.extend_from_slice(&experts[..experts.len().min(self.top_k)]);
        s.extend(std::iter::repeat_n(
            NONE,
            self.top_k.saturating_sub(experts.len()),
        ));
    }

    /// The recorded selection of `position` at `layer`, if any (padding removed).
    pub fn get(&self, layer: u32, position: u32) -> Option<&[u16]> {
        let l = layer as usize;
        let positions = &self.positions[l];
        let idx = match positions.last() {
            Some(&p) if p == position => positions.len() - 1,
            _ => positions.binary_search(&position).ok()?,
        };
        let sel = &self.selections[l][idx * self.top_k..(idx + 1) * self.top_k];
        let n = sel.iter().position(|&e| e == NONE).unwrap_or(self.top_k);
        Some(&sel[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds() {
        let mut m = TokenMemory::new(2, 2);
        m.record(0, 3, &[1, 2]);
        m.record(0, 5, &[4]);
        assert_eq!(m.get(0, 3), Some(&[1u16, 2][..]));
        assert_eq!(m.get(0, 5), Some(&[4u16][..]));
        assert_eq!(m.get(0, 4), None);
        assert_eq!(m.get(1, 3), None);
        m.clear();
        assert_eq!(m.get(0, 3), None);
    }
}
