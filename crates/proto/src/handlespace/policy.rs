//! Per-policy selection keys and weights (policies.md §2–§4).
//!
//! Every policy belongs to one of two selection engines:
//!
//! * [`Engine::Sorted`]: the pool's PEs sit in an ordered set keyed by
//!   `(SortKey, sequence number)`; a selection takes the first N entries and re-sequences
//!   the first `MaxIncrement` of them (round robin among equal keys).
//! * [`Engine::Weighted`]: the pool's PEs sit in a cumulative-weight tree (RAND: a dense array); a
//!   selection draws N distinct PEs with probability proportional to their weight.

use rserpool_wire::{Policy, PolicyType};

/// Largest load / weight value (100 %).
pub const MAX: u64 = 0xFFFF_FFFF;

/// Which selection engine a policy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sorted,
    Weighted,
}

/// The engine of a known policy type (`None` for unknown types, which are refused).
pub fn engine_of(ty: PolicyType) -> Option<Engine> {
    Some(match ty {
        PolicyType::ROUND_ROBIN
        | PolicyType::WEIGHTED_ROUND_ROBIN
        | PolicyType::PRIORITY
        | PolicyType::LEAST_USED
        | PolicyType::LEAST_USED_DEGRADATION
        | PolicyType::PRIORITY_LEAST_USED
        | PolicyType::PRIORITY_LEAST_USED_DEGRADATION
        | PolicyType::LEAST_USED_DPF
        | PolicyType::LEAST_USED_DPF_DRAFT
        | PolicyType::LEAST_USED_DEGRADATION_DPF
        | PolicyType::PRIORITY_LEAST_USED_DPF
        | PolicyType::PRIORITY_LEAST_USED_DEGRADATION_DPF => Engine::Sorted,
        PolicyType::RANDOM
        | PolicyType::WEIGHTED_RANDOM
        | PolicyType::WEIGHTED_RANDOM_DPF
        | PolicyType::RANDOMIZED_LEAST_USED
        | PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION
        | PolicyType::RANDOMIZED_PRIORITY_LEAST_USED
        | PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION => Engine::Weighted,
        _ => return None,
    })
}

/// Policy default for MaxIncrement (policies.md §4): 1 for the sorted policies and the
/// randomized-least-used family, 0 for RAND / WRAND / WRAND-DPF.
pub fn default_max_increment(ty: PolicyType) -> u32 {
    match ty {
        PolicyType::RANDOM | PolicyType::WEIGHTED_RANDOM | PolicyType::WEIGHTED_RANDOM_DPF => 0,
        _ => 1,
    }
}

/// Does selecting a PE of this policy grow its degradation accumulator (`deg += D`)?
pub fn degrades(p: &Policy) -> bool {
    matches!(
        p,
        Policy::LeastUsedDegradation { .. }
            | Policy::PriorityLeastUsedDegradation { .. }
            | Policy::LeastUsedDegradationDpf { .. }
            | Policy::PriorityLeastUsedDegradationDpf { .. }
            | Policy::RandomizedLeastUsedDegradation { .. }
            | Policy::RandomizedPriorityLeastUsedDegradation { .. }
    )
}

/// Primary ordering key of the sorted engine; ties are broken by the sequence number.
///
/// `a` then `b`, both ascending. For WRR `a` = round and `b` = virtual counter; for all
/// others `b` = 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    pub a: u64,
    pub b: u64,
}

/// Per-PE selection state kept by the registrar (never on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelState {
    /// Round-robin sequence number (ascending = earlier in the ring).
    pub seq: u64,
    /// Degradation accumulator in load units (saturating), reset on (re-)registration.
    pub deg: u32,
    /// WRR round counter.
    pub wrr_round: u64,
    /// WRR virtual counter.
    pub wrr_virtual: u32,
    /// How often this PE was returned by a selection (statistics).
    pub selected: u64,
}

fn sat(x: u128) -> u64 {
    if x > u128::from(MAX) {
        MAX
    } else {
        x as u64
    }
}

/// `round(dist × (dpf / MAX) × MAX)` = `dist × dpf` (exact in integers).
fn dpf_penalty(dist: u32, dpf: u32) -> u128 {
    u128::from(dist) * u128::from(dpf)
}

/// Sorted-engine key of a PE, or `None` when the PE is not selectable (WRR weight 0).
///
/// Loads and sums are clamped to `MAX` (policies.md §3 `sat`).
pub fn sort_key(p: &Policy, st: &SelState) -> Option<SortKey> {
    use Policy::*;
    let deg = u128::from(st.deg);
    let a = match *p {
        RoundRobin => 0,
        WeightedRoundRobin { weight } => {
            if weight == 0 {
                return None;
            }
            return Some(SortKey {
                a: st.wrr_round,
                b: u64::from(st.wrr_virtual),
            });
        }
        Priority { priority } => MAX - u64::from(priority),
        LeastUsed { load } => u64::from(load),
        LeastUsedDegradation { load, .. } => sat(u128::from(load) + deg),
        PriorityLeastUsed { load, degradation } => sat(u128::from(load) + u128::from(degradation)),
        PriorityLeastUsedDegradation { load, degradation } => {
            sat(u128::from(load) + u128::from(degradation) + deg)
        }
        LeastUsedDpf {
            load,
            load_dpf,
            distance,
        } => sat(u128::from(load) + dpf_penalty(distance, load_dpf)),
        LeastUsedDegradationDpf {
            load,
            load_dpf,
            distance,
            ..
        } => sat(u128::from(load) + deg + dpf_penalty(distance, load_dpf)),
        PriorityLeastUsedDpf {
            load,
            degradation,
            load_dpf,
            distance,
        } => sat(u128::from(load) + u128::from(degradation) + dpf_penalty(distance, load_dpf)),
        PriorityLeastUsedDegradationDpf {
            load,
            degradation,
            load_dpf,
            distance,
        } => {
            sat(u128::from(load) + u128::from(degradation) + deg + dpf_penalty(distance, load_dpf))
        }
        // Weighted-engine and unknown policies never reach the sorted engine; give them a
        // neutral key so a mismatch cannot panic.
        _ => 0,
    };
    Some(SortKey { a, b: 0 })
}

/// `MAX − x`, saturating at 0, then at least 1 (the RSPLIB private randomized policies).
fn unloaded_min1(x: u128) -> u64 {
    let w = u128::from(MAX).saturating_sub(x);
    (w as u64).max(1)
}

/// Weighted-engine weight of a PE (0 = never drawn).
pub fn weight(p: &Policy, st: &SelState) -> u64 {
    use Policy::*;
    let deg = u128::from(st.deg);
    match *p {
        Random => 1,
        WeightedRandom { weight } => u64::from(weight),
        // RFC 5356: weight = MAX − load (a fully loaded PE gets 0; RSPLIB would give 1).
        RandomizedLeastUsed { load } => MAX - u64::from(load),
        RandomizedPriorityLeastUsed { load, degradation } => {
            unloaded_min1(u128::from(load) + u128::from(degradation))
        }
        RandomizedLeastUsedDegradation { load, .. } => unloaded_min1(u128::from(load) + deg),
        RandomizedPriorityLeastUsedDegradation { load, degradation } => {
            unloaded_min1(u128::from(load) + u128::from(degradation) + deg)
        }
        WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        } => {
            // W − round(W × dist × wdpf / MAX); negative → 1, exactly 0 stays 0.
            let w = u128::from(weight);
            let num = w * u128::from(distance) * u128::from(weight_dpf);
            let m = u128::from(MAX);
            let penalty = (num + m / 2) / m;
            if penalty > w {
                1
            } else {
                (w - penalty) as u64
            }
        }
        // Sorted-engine and unknown policies never reach the weighted engine.
        _ => 1,
    }
}

/// WRR bookkeeping when a PE is returned among the first MaxIncrement entries.
pub fn wrr_step(p: &Policy, st: &mut SelState) {
    if let Policy::WeightedRoundRobin { weight } = *p {
        if st.wrr_virtual > 1 {
            st.wrr_virtual -= 1;
        } else {
            st.wrr_round += 1;
            st.wrr_virtual = weight;
        }
    }
}

/// Degradation step when a PE is returned: `deg += D` (saturating).
pub fn degrade(p: &Policy, st: &mut SelState) {
    if degrades(p) {
        let d = p.degradation().unwrap_or(0);
        st.deg = st.deg.saturating_add(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_policy_has_an_engine() {
        for t in PolicyType::all() {
            assert!(engine_of(t).is_some(), "{t}");
        }
        assert_eq!(engine_of(PolicyType(0)), None);
        assert_eq!(engine_of(PolicyType(0x4000_0000)), None);
    }

    #[test]
    fn plu_key_is_load_plus_degradation() {
        let st = SelState::default();
        let a = Policy::PriorityLeastUsed {
            load: 50,
            degradation: 10,
        };
        let b = Policy::PriorityLeastUsed {
            load: 50,
            degradation: 50,
        };
        assert_eq!(sort_key(&a, &st).unwrap().a, 60);
        assert_eq!(sort_key(&b, &st).unwrap().a, 100);
        let full = Policy::PriorityLeastUsed {
            load: u32::MAX,
            degradation: u32::MAX,
        };
        assert_eq!(sort_key(&full, &st).unwrap().a, MAX);
    }

    #[test]
    fn dpf_formulas() {
        let st = SelState::default();
        // LU-DPF: load + dist × ldpf (ldpf is a fraction of MAX per ms, times MAX).
        let p = Policy::LeastUsedDpf {
            load: 1000,
            load_dpf: 3,
            distance: 50,
        };
        assert_eq!(sort_key(&p, &st).unwrap().a, 1150);
        let st5 = SelState {
            deg: 5,
            ..SelState::default()
        };
        let p = Policy::LeastUsedDegradationDpf {
            load: 1000,
            degradation: 7,
            load_dpf: 3,
            distance: 50,
        };
        assert_eq!(sort_key(&p, &st5).unwrap().a, 1155);
        let p = Policy::PriorityLeastUsedDpf {
            load: 1000,
            degradation: 7,
            load_dpf: 3,
            distance: 50,
        };
        assert_eq!(sort_key(&p, &st5).unwrap().a, 1157);
        let p = Policy::PriorityLeastUsedDegradationDpf {
            load: 1000,
            degradation: 7,
            load_dpf: 3,
            distance: 50,
        };
        assert_eq!(sort_key(&p, &st5).unwrap().a, 1162);
        // WRAND-DPF: W − round(W × dist × wdpf / MAX).
        let half = 0x8000_0000u32; // ≈ 0.5 per ms
        let p = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: half / 100, // ≈ 0.005 per ms
            distance: 100,
        };
        // 1000 × 100 × 0.005 ≈ 500 (rounding of the scaled fraction)
        let w = weight(&p, &st);
        assert!((499..=501).contains(&w), "{w}");
        let p = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: u32::MAX,
            distance: 2,
        };
        assert_eq!(weight(&p, &st), 1, "negative → 1");
        let p = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: u32::MAX,
            distance: 1,
        };
        assert_eq!(weight(&p, &st), 0, "exactly 0 stays 0");
        let p = Policy::WeightedRandomDpf {
            weight: 0,
            weight_dpf: 0,
            distance: 0,
        };
        assert_eq!(weight(&p, &st), 0);
    }

    #[test]
    fn randomized_weights() {
        let st = SelState::default();
        assert_eq!(
            weight(&Policy::RandomizedLeastUsed { load: u32::MAX }, &st),
            0
        );
        assert_eq!(weight(&Policy::RandomizedLeastUsed { load: 0 }, &st), MAX);
        let p = Policy::RandomizedPriorityLeastUsed {
            load: 100,
            degradation: 50,
        };
        assert_eq!(weight(&p, &st), MAX - 150);
        let p = Policy::RandomizedPriorityLeastUsed {
            load: u32::MAX,
            degradation: 50,
        };
        assert_eq!(weight(&p, &st), 1);
        let st9 = SelState {
            deg: 9,
            ..SelState::default()
        };
        let p = Policy::RandomizedLeastUsedDegradation {
            load: 100,
            degradation: 50,
        };
        assert_eq!(weight(&p, &st9), MAX - 109);
        let p = Policy::RandomizedPriorityLeastUsedDegradation {
            load: 100,
            degradation: 50,
        };
        assert_eq!(weight(&p, &st9), MAX - 159);
    }

    #[test]
    fn wrr_counters() {
        let p = Policy::WeightedRoundRobin { weight: 3 };
        let mut st = SelState {
            wrr_virtual: 3,
            ..SelState::default()
        };
        wrr_step(&p, &mut st);
        assert_eq!((st.wrr_round, st.wrr_virtual), (0, 2));
        wrr_step(&p, &mut st);
        wrr_step(&p, &mut st);
        assert_eq!((st.wrr_round, st.wrr_virtual), (1, 3));
    }
}
