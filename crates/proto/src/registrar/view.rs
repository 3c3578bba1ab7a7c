//! Reads of the handlespace for other views of it (the DNS view of the registrar
//! service): PEs chosen as a handle resolution chooses them.

use rserpool_wire::{PoolElement, PoolHandle};

use super::Registrar;

impl Registrar {
    /// Up to `n` PEs of `handle` chosen by the pool's policy, exactly as a handle
    /// resolution chooses them (it advances the policy's state the same way: round robin
    /// moves on, degradation grows). `None` for an unknown pool.
    pub fn select_pes(&mut self, handle: &PoolHandle, n: usize) -> Option<Vec<PoolElement>> {
        let ids = match self.choose_from_copy(handle, n) {
            Some((copy, picks)) => picks.iter().map(|&i| copy.id(i)).collect(),
            None => self.hs.select(handle, n)?,
        };
        Some(
            ids.iter()
                .filter_map(|id| self.hs.get(handle, *id))
                .map(|e| e.pe.clone())
                .collect(),
        )
    }
}
