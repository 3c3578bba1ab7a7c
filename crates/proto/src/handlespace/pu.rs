//! PU-side selection from a cached handle-resolution answer (policies.md, "PU" rules).
//!
//! The cache is small (RSPLIB caps a response at 128 PEs), so each selection scans it.
//!
//! * RR, WRR and unknown policies: walk the list in order, wrapping around.
//! * RAND: uniform over the list.
//! * WRAND, WRAND-DPF, RLU, RLUD, RPLU, RPLUD: weighted by each PE's weight as the
//!   registrar computes it (WRAND: the PE's weight, the recommended reading of RFC 5356).
//!   `None` when every weight is 0.
//! * PRIO, LU, LUD, PLU, PLUD and the LU-DPF family: the lowest key (highest priority,
//!   lowest load …); the chosen PE is re-sequenced (round robin among equal keys) and its
//!   degradation grows by D, as RSPLIB's cache does (MaxIncrement = ∞).

use rand::{Rng, RngCore};
use rserpool_wire::{PeId, PolicyType, PoolElement};

use super::policy::{self, Engine, SelState, MAX};

#[derive(Clone, Debug)]
pub struct PuCache {
    policy: PolicyType,
    pes: Vec<PoolElement>,
    state: Vec<SelState>,
    rr_next: usize,
    next_seq: u64,
}

impl PuCache {
    pub fn new(policy: PolicyType, pes: Vec<PoolElement>) -> Self {
        let state = (0..pes.len())
            .map(|i| SelState {
                seq: i as u64,
                ..SelState::default()
            })
            .collect();
        Self {
            policy,
            next_seq: pes.len() as u64,
            pes,
            state,
            rr_next: 0,
        }
    }

    pub fn policy(&self) -> PolicyType {
        self.policy
    }

    /// One PE per call according to the pool policy.
    pub fn select(&mut self, rng: &mut impl RngCore) -> Option<&PoolElement> {
        if self.pes.is_empty() {
            return None;
        }
        let n = self.pes.len();
        let i = match self.policy {
            PolicyType::ROUND_ROBIN | PolicyType::WEIGHTED_ROUND_ROBIN => {
                let i = self.rr_next % n;
                self.rr_next = i + 1;
                i
            }
            PolicyType::RANDOM => rng.gen_range(0..n),
            t => match policy::engine_of(t) {
                Some(Engine::Weighted) => {
                    let weights: Vec<u64> = self
                        .pes
                        .iter()
                        .zip(&self.state)
                        .map(|(pe, st)| policy::weight(&pe.policy, st))
                        .collect();
                    let total: u64 = weights.iter().sum();
                    if total == 0 {
                        return None;
                    }
                    let mut r = rng.gen_range(0..total);
                    let mut chosen = n - 1;
                    for (j, w) in weights.iter().enumerate() {
                        if r < *w {
                            chosen = j;
                            break;
                        }
                        r -= *w;
                    }
                    policy::degrade(&self.pes[chosen].policy, &mut self.state[chosen]);
                    chosen
                }
                Some(Engine::Sorted) => {
                    let chosen = (0..n)
                        .min_by_key(|&j| {
                            let k = policy::sort_key(&self.pes[j].policy, &self.state[j])
                                .map(|k| (k.a, k.b))
                                .unwrap_or((MAX + 1, 0));
                            (k, self.state[j].seq)
                        })
                        .unwrap_or(0);
                    self.next_seq += 1;
                    self.state[chosen].seq = self.next_seq;
                    policy::degrade(&self.pes[chosen].policy, &mut self.state[chosen]);
                    chosen
                }
                None => {
                    let i = self.rr_next % n;
                    self.rr_next = i + 1;
                    i
                }
            },
        };
        self.state[i].selected += 1;
        self.pes.get(i)
    }

    /// Drop a failed PE from the cache. False if it was not cached.
    pub fn remove(&mut self, id: PeId) -> bool {
        let Some(pos) = self.pes.iter().position(|p| p.id == id) else {
            return false;
        };
        self.pes.remove(pos);
        self.state.remove(pos);
        if pos < self.rr_next {
            self.rr_next -= 1;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.pes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pes.is_empty()
    }

    pub fn entries(&self) -> &[PoolElement] {
        &self.pes
    }
}
