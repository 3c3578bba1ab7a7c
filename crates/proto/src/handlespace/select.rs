//! Selection glue: keeping each pool's selection structure (ordered set, weight tree or
//! RAND array, see [`policy`] and `sumtree`) in step with its PEs, and
//! [`Handlespace::select`] / [`Handlespace::peek_order`] over them.

use std::collections::BTreeSet;

use rand::Rng;
use rserpool_wire::{PeId, Policy, PolicyType, PoolHandle};

use super::policy::{self, SortKey};
use super::sumtree::WeightTree;
use super::{Handlespace, PeRecord, Pool, NIL};

#[derive(Clone, Debug)]
pub(super) enum Selector {
    Sorted(BTreeSet<(SortKey, u64, u32)>),
    Weighted(WeightTree),
    /// RAND: a dense array of the pool's PEs (`PeRecord::slot` = position); a selection
    /// is a partial Fisher–Yates shuffle, undone afterwards. O(1) per chosen PE.
    Uniform(Vec<u32>),
}

impl Handlespace {
    pub(super) fn max_increment(&self, ty: PolicyType) -> usize {
        match self.config.max_increment {
            Some(m) if m > 0 => m as usize,
            _ => policy::default_max_increment(ty) as usize,
        }
    }

    /// Take the PE out of the ordering (sorted engine); the weighted slot stays.
    pub(super) fn sel_detach(pool: &mut Pool, i: u32, r: &mut PeRecord) {
        if let Selector::Sorted(set) = &mut pool.sel {
            if let Some(k) = r.key.take() {
                set.remove(&(k, r.entry.sel.seq, i));
            }
        }
    }

    /// (Re-)insert the PE with its current values. `fresh`: first entry into the ring
    /// (WRR counters start at the current first PE's round).
    pub(super) fn sel_attach(pool: &mut Pool, i: u32, r: &mut PeRecord, fresh: bool) {
        let p = &r.entry.pe.policy;
        match &mut pool.sel {
            Selector::Sorted(set) => {
                if let Policy::WeightedRoundRobin { weight } = *p {
                    if fresh {
                        r.entry.sel.wrr_round = set.first().map(|(k, _, _)| k.a).unwrap_or(0);
                        r.entry.sel.wrr_virtual = weight;
                    }
                }
                r.key = policy::sort_key(p, &r.entry.sel);
                if let Some(k) = r.key {
                    set.insert((k, r.entry.sel.seq, i));
                }
            }
            Selector::Weighted(tree) => {
                let w = policy::weight(p, &r.entry.sel);
                if r.slot == NIL {
                    r.slot = tree.insert(i, w);
                } else {
                    tree.set(r.slot, w);
                }
            }
            Selector::Uniform(all) => {
                if r.slot == NIL {
                    r.slot = all.len() as u32;
                    all.push(i);
                }
            }
        }
    }

    /// Take the PE out of every selection structure. RAND: returns the PE moved into the
    /// freed array position, which the caller must re-point.
    pub(super) fn sel_remove(pool: &mut Pool, i: u32, r: &mut PeRecord) -> Option<(u32, u32)> {
        Self::sel_detach(pool, i, r);
        let slot = std::mem::replace(&mut r.slot, NIL);
        if slot == NIL {
            return None;
        }
        match &mut pool.sel {
            Selector::Sorted(_) => None,
            Selector::Weighted(tree) => {
                tree.remove(slot);
                None
            }
            Selector::Uniform(all) => {
                all.swap_remove(slot as usize);
                all.get(slot as usize).map(|&moved| (moved, slot))
            }
        }
    }

    /// Run `f` on a PE's record with the PE taken out of its pool's ordering, then put it
    /// back with its new values.
    pub(super) fn with_reattach(&mut self, p: u32, i: u32, f: impl FnOnce(&mut PeRecord) -> bool) {
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let r = self.pes[i as usize].as_mut().expect("live PE");
        Self::sel_detach(pool, i, r);
        let fresh = f(r);
        Self::sel_attach(pool, i, r, fresh);
    }

    /// Up to `n` distinct PEs of the pool by its policy (policies.md), in order; advances
    /// policy state (RR head by one, WRR counters, degradation…). `None` if the pool is
    /// unknown. O(log n) per chosen PE.
    pub fn select(&mut self, handle: &PoolHandle, n: usize) -> Option<Vec<PeId>> {
        let p = self.pool_idx(handle)?;
        let k = self.max_increment(self.pool(p).policy.policy_type());
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let pes = &mut self.pes;
        let mut out = Vec::with_capacity(n.min(pool.members.len()));
        match &mut pool.sel {
            Selector::Sorted(set) => {
                let picked: Vec<(SortKey, u64, u32)> = set.iter().take(n).copied().collect();
                for (pos, &(key, seq, i)) in picked.iter().enumerate() {
                    let r = pes[i as usize].as_mut().expect("live PE");
                    out.push(r.entry.pe.id);
                    r.entry.sel.selected += 1;
                    let resequence = pos < k;
                    let degrade = policy::degrades(&r.entry.pe.policy);
                    if !(resequence || degrade) {
                        continue;
                    }
                    set.remove(&(key, seq, i));
                    if resequence {
                        self.next_seq += 1;
                        r.entry.sel.seq = self.next_seq;
                        policy::wrr_step(&r.entry.pe.policy, &mut r.entry.sel);
                    }
                    policy::degrade(&r.entry.pe.policy, &mut r.entry.sel);
                    r.key = policy::sort_key(&r.entry.pe.policy, &r.entry.sel);
                    if let Some(nk) = r.key {
                        set.insert((nk, r.entry.sel.seq, i));
                    }
                }
            }
            Selector::Uniform(all) => {
                let m = n.min(all.len());
                let mut swaps = Vec::with_capacity(m);
                for k in 0..m {
                    let j = k + self.rng.gen_range(0..all.len() - k);
                    all.swap(k, j);
                    swaps.push(j);
                    let r = pes[all[k] as usize].as_mut().expect("live PE");
                    out.push(r.entry.pe.id);
                    r.entry.sel.selected += 1;
                }
                for (k, j) in swaps.into_iter().enumerate().rev() {
                    all.swap(k, j);
                }
            }
            Selector::Weighted(tree) => {
                let mut picked: Vec<u32> = Vec::with_capacity(n.min(tree.len()));
                for _ in 0..n.min(tree.len()) {
                    let total = tree.total();
                    if total == 0 {
                        break;
                    }
                    let r = self.rng.gen_range(0..total);
                    let Some(slot) = tree.find(r) else { break };
                    tree.set(slot, 0);
                    picked.push(slot);
                }
                for slot in picked {
                    let i = tree.owner(slot);
                    let r = pes[i as usize].as_mut().expect("live PE");
                    out.push(r.entry.pe.id);
                    r.entry.sel.selected += 1;
                    policy::degrade(&r.entry.pe.policy, &mut r.entry.sel);
                    tree.set(slot, policy::weight(&r.entry.pe.policy, &r.entry.sel));
                }
            }
        }
        Some(out)
    }

    /// The pool's PEs in the order the sorted engine would return them now (without
    /// advancing any state); `None` for an unknown pool or a weighted-random policy.
    pub fn peek_order(&self, handle: &PoolHandle) -> Option<Vec<PeId>> {
        let p = self.pool_idx(handle)?;
        match &self.pool(p).sel {
            Selector::Sorted(set) => Some(
                set.iter()
                    .map(|&(_, _, i)| self.rec(i).entry.pe.id)
                    .collect(),
            ),
            Selector::Weighted(_) | Selector::Uniform(_) => None,
        }
    }
}
