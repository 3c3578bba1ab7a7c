//! Pools copied out for selection outside the registrar's lock (the registrar's fast
//! resolutions, `registrar/fast.rs`): which pools can be chosen from a copy, the change
//! list that retires such a copy, and how a copy's round-robin progress comes back.
//! (Selections answered from a copy are not in the PEs' `selection_count`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rserpool_wire::{Policy, PoolElement, PoolHandle};

use super::policy;
use super::select::Selector;
use super::Handlespace;

/// How PEs are chosen from a copy of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedPick {
    /// Round robin over the copy's order (the handlespace's order when copied): each
    /// selection of `m` PEs starts where the last one started, moved on by `min(step, m)`
    /// (the sorted engine's re-sequencing of the first `max_increment` PEs).
    RoundRobin { step: usize },
    /// Uniformly random distinct PEs (RAND).
    Uniform,
    /// Random distinct PEs by these weights, one per PE in the copy's order (the
    /// weighted policies that do not degrade: their weights do not move when chosen).
    Weighted(Vec<u64>),
}

impl Handlespace {
    /// The pool's PEs in selection order and how to choose among them, when a copy can
    /// choose exactly as [`Handlespace::select`] would: round robin, and the random
    /// policies whose weights do not change with use. At most `max_pes` PEs. The pool is
    /// marked shared with the returned counter, where the copy counts its round-robin
    /// moves: the pool's next change folds them in first and lists it for
    /// [`Self::take_changed`].
    pub fn share_pool(
        &mut self,
        handle: &PoolHandle,
        max_pes: usize,
    ) -> Option<(SharedPick, Vec<&PoolElement>, Arc<AtomicU64>)> {
        let p = self.pool_idx(handle)?;
        let step = self.max_increment(self.pool(p).policy.policy_type());
        let pool = self.pool(p);
        if pool.members.is_empty() || pool.members.len() > max_pes {
            return None;
        }
        let eligible = match &pool.sel {
            Selector::Sorted(_) => matches!(pool.policy, Policy::RoundRobin),
            Selector::Uniform(_) => true,
            Selector::Weighted(_) => !policy::degrades(&pool.policy),
        };
        if !eligible {
            return None;
        }
        self.unshare_at(p);
        let moves = Arc::new(AtomicU64::new(0));
        self.pools[p as usize].as_mut().expect("live pool").shared = Some(moves.clone());
        let pool = self.pool(p);
        let (pick, pes) = match &pool.sel {
            Selector::Sorted(set) => {
                let pes = set.iter().map(|&(_, _, i)| &self.rec(i).entry.pe).collect();
                (SharedPick::RoundRobin { step }, pes)
            }
            Selector::Uniform(all) => {
                let pes = all.iter().map(|&i| &self.rec(i).entry.pe).collect();
                (SharedPick::Uniform, pes)
            }
            Selector::Weighted(_) => {
                let recs: Vec<_> = pool.members.values().map(|&i| self.rec(i)).collect();
                let weights = recs
                    .iter()
                    .map(|r| policy::weight(&r.entry.pe.policy, &r.entry.sel))
                    .collect();
                let pes = recs.iter().map(|r| &r.entry.pe).collect();
                (SharedPick::Weighted(weights), pes)
            }
        };
        Some((pick, pes, moves))
    }

    /// Shared pools that changed (or went) since the last call, each once; they are no
    /// longer shared.
    pub fn take_changed(&mut self) -> Vec<PoolHandle> {
        std::mem::take(&mut self.changed)
    }

    /// Stop sharing a pool without a change (its copy is dropped for another reason): its
    /// round-robin moves are folded in.
    pub fn unshare(&mut self, handle: &PoolHandle) {
        if let Some(p) = self.pool_idx(handle) {
            self.unshare_at(p);
        }
    }

    /// Whether the pool is shared ([`Self::share_pool`]).
    pub fn is_shared(&self, handle: &PoolHandle) -> bool {
        self.pool_idx(handle)
            .is_some_and(|p| self.pool(p).shared.is_some())
    }

    /// Stop sharing pool `p`, folding its copy's round-robin moves in; false if it was
    /// not shared.
    pub(super) fn unshare_at(&mut self, p: u32) -> bool {
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let Some(moves) = pool.shared.take() else {
            return false;
        };
        self.advance_round_robin(p, moves.load(Ordering::Relaxed));
        true
    }

    /// Move a round-robin pool's order on by `steps` places (what a copy's selections
    /// did), as that many single re-sequencings of its first PE. Other pools: nothing.
    fn advance_round_robin(&mut self, p: u32, steps: u64) {
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        if !matches!(pool.policy, Policy::RoundRobin) {
            return;
        }
        let Selector::Sorted(set) = &mut pool.sel else {
            return;
        };
        let len = set.len() as u64;
        if len == 0 {
            return;
        }
        for _ in 0..steps % len {
            let Some((key, _, i)) = set.pop_first() else {
                break;
            };
            self.next_seq += 1;
            let r = self.pes[i as usize].as_mut().expect("live PE");
            r.entry.sel.seq = self.next_seq;
            set.insert((key, self.next_seq, i));
        }
    }
}
