use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_wire::codec::policy_tlv;
use rserpool_wire::{TransportAddr, TransportUse};

use super::*;

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn pe(id: u32, owner: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(owner),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(
            (1000 + id % 60000) as u16,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )),
        policy,
        asap_transport: None,
    }
}

fn hs() -> Handlespace {
    Handlespace::new(HandlespaceConfig::default(), 7)
}

fn h(s: &str) -> PoolHandle {
    PoolHandle::from(s)
}

fn reg(hs: &mut Handlespace, pool: &str, id: u32, policy: Policy) {
    hs.register(t0(), &h(pool), pe(id, 1, policy)).unwrap();
    hs.check_invariants();
}

fn sel(hs: &mut Handlespace, pool: &str, n: usize) -> Vec<u32> {
    let v = hs.select(&h(pool), n).unwrap();
    hs.check_invariants();
    v.into_iter().map(|p| p.0).collect()
}

#[test]
fn refusals() {
    let mut hs = hs();
    let now = t0();
    let code = |r: Result<RegisterOutcome, RegisterError>| r.unwrap_err().cause.code;
    assert_eq!(
        code(hs.register(now, &h("p"), pe(0, 1, Policy::RoundRobin))),
        CauseCode::INVALID_VALUES
    );
    assert_eq!(
        code(hs.register(now, &h(""), pe(1, 1, Policy::RoundRobin))),
        CauseCode::INVALID_VALUES
    );
    let long = PoolHandle::new(vec![b'x'; 65]);
    assert_eq!(
        code(hs.register(now, &long, pe(1, 1, Policy::RoundRobin))),
        CauseCode::INVALID_VALUES
    );
    let unknown = Policy::Unknown {
        policy_type: PolicyType(0x4000_0077),
        data: vec![],
    };
    assert_eq!(
        code(hs.register(now, &h("p"), pe(1, 1, unknown))),
        CauseCode::INVALID_VALUES
    );
    assert!(hs.is_empty());
    let max = PoolHandle::new(vec![b'x'; 64]);
    hs.register(now, &max, pe(1, 1, Policy::RoundRobin))
        .unwrap();

    hs.register(now, &h("p"), pe(1, 1, Policy::LeastUsed { load: 5 }))
        .unwrap();
    // Inconsistent policy carries the pool's policy TLV.
    let err = hs
        .register(now, &h("p"), pe(2, 1, Policy::RoundRobin))
        .unwrap_err();
    assert_eq!(err.cause.code, CauseCode::INCONSISTENT_POLICY);
    assert_eq!(err.cause.info, policy_tlv(&Policy::LeastUsed { load: 5 }));
    // Transport type.
    let mut udp = pe(3, 1, Policy::LeastUsed { load: 1 });
    udp.user_transport = UserTransport::Ip(TransportAddr::udp(9, IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let err = hs.register(now, &h("p"), udp).unwrap_err();
    assert_eq!(err.cause.code, CauseCode::INCONSISTENT_TRANSPORT);
    assert_eq!(&err.cause.info[0..2], &[0x00, 0x05], "TCP transport TLV");
    // Transport use.
    let mut tcp_ctl = pe(3, 1, Policy::LeastUsed { load: 1 });
    if let UserTransport::Ip(t) = &mut tcp_ctl.user_transport {
        t.use_field = TransportUse::DATA_PLUS_CONTROL;
    }
    assert_eq!(
        code(hs.register(now, &h("p"), tcp_ctl)),
        CauseCode::INCONSISTENT_DATA_CONTROL
    );
    // Opaque vs IP.
    let mut opaque = pe(3, 1, Policy::LeastUsed { load: 1 });
    opaque.user_transport = UserTransport::Opaque(vec![1, 2, 3]);
    assert_eq!(
        code(hs.register(now, &h("p"), opaque)),
        CauseCode::INVALID_VALUES
    );
    // No addresses.
    let mut none = pe(4, 1, Policy::RoundRobin);
    if let UserTransport::Ip(t) = &mut none.user_transport {
        t.addrs.clear();
    }
    assert_eq!(
        code(hs.register(now, &h("q"), none)),
        CauseCode::INVALID_VALUES
    );
    assert_eq!(hs.len(), 2);
    hs.check_invariants();

    // Limits.
    let mut small = Handlespace::new(
        HandlespaceConfig {
            max_pes: 3,
            max_pes_per_pool: 2,
            ..HandlespaceConfig::default()
        },
        1,
    );
    small
        .register(now, &h("a"), pe(1, 1, Policy::RoundRobin))
        .unwrap();
    small
        .register(now, &h("a"), pe(2, 1, Policy::RoundRobin))
        .unwrap();
    assert_eq!(
        code(small.register(now, &h("a"), pe(3, 1, Policy::RoundRobin))),
        CauseCode::LACK_OF_RESOURCES
    );
    small
        .register(now, &h("b"), pe(3, 1, Policy::RoundRobin))
        .unwrap();
    assert_eq!(
        code(small.register(now, &h("c"), pe(4, 1, Policy::RoundRobin))),
        CauseCode::LACK_OF_RESOURCES
    );
    // Re-registration is allowed at the limit.
    assert_eq!(
        small.register(now, &h("a"), pe(2, 1, Policy::RoundRobin)),
        Ok(RegisterOutcome::Updated {
            owner_changed: false
        })
    );
    small.check_invariants();
}

#[test]
fn reregistration_updates_in_place() {
    let mut hs = hs();
    let now = t0();
    for id in 1..=3 {
        reg(&mut hs, "p", id, Policy::RoundRobin);
    }
    let seq = hs.get(&h("p"), PeId(2)).unwrap().sequence();
    hs.bookkeeping_mut(&h("p"), PeId(2))
        .unwrap()
        .unreachable_reports = 2;
    let mut again = pe(2, 9, Policy::RoundRobin);
    again.registration_life = 5;
    assert_eq!(
        hs.register(now, &h("p"), again.clone()),
        Ok(RegisterOutcome::Updated {
            owner_changed: true
        })
    );
    hs.check_invariants();
    let e = hs.get(&h("p"), PeId(2)).unwrap();
    assert_eq!(e.pe, again);
    assert_eq!(e.sequence(), seq, "RR position kept");
    assert_eq!(e.bookkeeping.unreachable_reports, 2, "bookkeeping kept");
    assert_eq!(hs.owned_count(ServerId(9)), 1);
    assert_eq!(hs.owned_count(ServerId(1)), 2);
    assert_eq!(sel(&mut hs, "p", 3), vec![1, 2, 3]);
}

#[test]
fn round_robin_head_advances_by_one() {
    let mut hs = hs();
    for id in 1..=4 {
        reg(&mut hs, "p", id, Policy::RoundRobin);
    }
    assert_eq!(sel(&mut hs, "p", 3), vec![1, 2, 3]);
    assert_eq!(sel(&mut hs, "p", 3), vec![2, 3, 4]);
    assert_eq!(sel(&mut hs, "p", 3), vec![3, 4, 1]);
    assert_eq!(sel(&mut hs, "p", 10), vec![4, 1, 2, 3]);
    // New PE enters at the tail.
    reg(&mut hs, "p", 5, Policy::RoundRobin);
    assert_eq!(sel(&mut hs, "p", 5), vec![1, 2, 3, 4, 5]);
    assert_eq!(sel(&mut hs, "p", 0), Vec::<u32>::new());
    assert_eq!(hs.select(&h("nope"), 3), None);
}

#[test]
fn max_increment_moves_more() {
    let mut hs = Handlespace::new(
        HandlespaceConfig {
            max_increment: Some(2),
            ..HandlespaceConfig::default()
        },
        1,
    );
    for id in 1..=4 {
        reg(&mut hs, "p", id, Policy::RoundRobin);
    }
    assert_eq!(sel(&mut hs, "p", 3), vec![1, 2, 3]);
    assert_eq!(sel(&mut hs, "p", 3), vec![3, 4, 1]);
}

#[test]
fn weighted_round_robin_shares() {
    let mut hs = hs();
    reg(&mut hs, "p", 1, Policy::WeightedRoundRobin { weight: 3 });
    reg(&mut hs, "p", 2, Policy::WeightedRoundRobin { weight: 1 });
    reg(&mut hs, "p", 3, Policy::WeightedRoundRobin { weight: 0 });
    let mut count = [0usize; 4];
    let mut firsts = Vec::new();
    for _ in 0..400 {
        let v = sel(&mut hs, "p", 2);
        assert!(!v.contains(&3), "weight 0 never selected");
        assert_eq!(v.len(), 2);
        count[v[0] as usize] += 1;
        if firsts.len() < 8 {
            firsts.push(v[0]);
        }
    }
    assert_eq!(count[1], 300);
    assert_eq!(count[2], 100);
    // Per round: the weight-1 PE first (lower virtual counter), then 3× the other.
    assert_eq!(firsts, vec![2, 1, 1, 1, 2, 1, 1, 1]);
    // All weights equal ⇒ plain round robin.
    let mut hs2 = Handlespace::new(HandlespaceConfig::default(), 1);
    for id in 1..=3 {
        reg(&mut hs2, "q", id, Policy::WeightedRoundRobin { weight: 1 });
    }
    assert_eq!(sel(&mut hs2, "q", 3), vec![1, 2, 3]);
    assert_eq!(sel(&mut hs2, "q", 3), vec![2, 3, 1]);
    assert_eq!(sel(&mut hs2, "q", 3), vec![3, 1, 2]);
    // Weight 0 → 2 via re-registration joins the ring.
    hs.register(
        t0(),
        &h("p"),
        pe(3, 1, Policy::WeightedRoundRobin { weight: 2 }),
    )
    .unwrap();
    hs.check_invariants();
    let mut c3 = 0;
    for _ in 0..60 {
        if sel(&mut hs, "p", 1) == vec![3] {
            c3 += 1;
        }
    }
    assert_eq!(c3, 20, "weights 3:1:2 over 60 selections");
}

#[test]
fn least_used_order_and_ties_round_robin() {
    let mut hs = hs();
    reg(&mut hs, "p", 1, Policy::LeastUsed { load: 30 });
    reg(&mut hs, "p", 2, Policy::LeastUsed { load: 10 });
    reg(&mut hs, "p", 3, Policy::LeastUsed { load: 10 });
    reg(&mut hs, "p", 4, Policy::LeastUsed { load: 20 });
    assert_eq!(sel(&mut hs, "p", 4), vec![2, 3, 4, 1]);
    assert_eq!(sel(&mut hs, "p", 2), vec![3, 2]);
    assert_eq!(sel(&mut hs, "p", 2), vec![2, 3]);
    assert!(hs.update_load(&h("p"), PeId(1), 0));
    hs.check_invariants();
    assert_eq!(sel(&mut hs, "p", 3), vec![1, 3, 2]);
    assert!(!hs.update_load(&h("p"), PeId(99), 0));
}

#[test]
fn least_used_degradation_rfc_rule() {
    let mut hs = hs();
    let lud = |load, degradation| Policy::LeastUsedDegradation { load, degradation };
    reg(&mut hs, "p", 1, lud(0, 10));
    reg(&mut hs, "p", 2, lud(15, 10));
    assert_eq!(sel(&mut hs, "p", 1), vec![1]); // key 0 → 10
    assert_eq!(hs.get(&h("p"), PeId(1)).unwrap().degradation(), 10);
    assert_eq!(sel(&mut hs, "p", 1), vec![1]); // 10 < 15 → 20
    assert_eq!(sel(&mut hs, "p", 1), vec![2]); // 15 < 20 → 25
    assert_eq!(sel(&mut hs, "p", 1), vec![1]); // 20 < 25 → 30
                                               // Every returned PE is degraded (RFC), not only the first.
    assert_eq!(sel(&mut hs, "p", 2), vec![2, 1]); // 25, 30 → 35, 40
    assert_eq!(hs.get(&h("p"), PeId(2)).unwrap().degradation(), 20);
    assert_eq!(hs.get(&h("p"), PeId(1)).unwrap().degradation(), 40);
    // Re-registration resets degradation.
    hs.register(t0(), &h("p"), pe(1, 1, lud(0, 10))).unwrap();
    assert_eq!(hs.get(&h("p"), PeId(1)).unwrap().degradation(), 0);
    assert_eq!(sel(&mut hs, "p", 2), vec![1, 2]);
    // update_load also resets it.
    assert!(hs.update_load(&h("p"), PeId(2), 0));
    assert_eq!(hs.get(&h("p"), PeId(2)).unwrap().degradation(), 0);
    // Saturation: keys clamp at 0xFFFFFFFF.
    reg(&mut hs, "s", 1, lud(u32::MAX - 1, u32::MAX));
    sel(&mut hs, "s", 1);
    sel(&mut hs, "s", 1);
    assert_eq!(hs.get(&h("s"), PeId(1)).unwrap().degradation(), u32::MAX);
}

#[test]
fn priority_least_used_key() {
    let mut hs = hs();
    let plu = |load, degradation| Policy::PriorityLeastUsed { load, degradation };
    reg(&mut hs, "p", 1, plu(50, 50)); // B: 100
    reg(&mut hs, "p", 2, plu(50, 10)); // A: 60
    reg(&mut hs, "p", 3, plu(70, 0)); // 70
    assert_eq!(sel(&mut hs, "p", 3), vec![2, 3, 1]);
    assert_eq!(
        sel(&mut hs, "p", 3),
        vec![2, 3, 1],
        "static key, no counter"
    );
    let plud = |load, degradation| Policy::PriorityLeastUsedDegradation { load, degradation };
    reg(&mut hs, "d", 1, plud(50, 10)); // 60
    reg(&mut hs, "d", 2, plud(65, 0)); // 65
    assert_eq!(sel(&mut hs, "d", 1), vec![1]); // → 70
    assert_eq!(sel(&mut hs, "d", 1), vec![2]);
}

#[test]
fn priority_descending_ties_rotate() {
    let mut hs = hs();
    reg(&mut hs, "p", 1, Policy::Priority { priority: 1 });
    reg(&mut hs, "p", 2, Policy::Priority { priority: 9 });
    reg(&mut hs, "p", 3, Policy::Priority { priority: 5 });
    reg(&mut hs, "p", 4, Policy::Priority { priority: 9 });
    assert_eq!(sel(&mut hs, "p", 4), vec![2, 4, 3, 1]);
    assert_eq!(sel(&mut hs, "p", 2), vec![4, 2]);
    assert_eq!(sel(&mut hs, "p", 2), vec![2, 4]);
}

#[test]
fn dpf_sorted_policies() {
    let mut hs = hs();
    // LU-DPF: key = load + dist × ldpf.
    let p = |load, distance| Policy::LeastUsedDpf {
        load,
        load_dpf: 10,
        distance,
    };
    reg(&mut hs, "p", 1, p(100, 50)); // 600
    reg(&mut hs, "p", 2, p(400, 0)); // 400
    reg(&mut hs, "p", 3, p(0, 100)); // 1000
    assert_eq!(sel(&mut hs, "p", 3), vec![2, 1, 3]);
    // LUD-DPF degrades.
    let q = |load| Policy::LeastUsedDegradationDpf {
        load,
        degradation: 300,
        load_dpf: 10,
        distance: 10,
    };
    reg(&mut hs, "q", 1, q(0)); // 100
    reg(&mut hs, "q", 2, q(250)); // 350
    assert_eq!(sel(&mut hs, "q", 1), vec![1]); // → 400
    assert_eq!(sel(&mut hs, "q", 1), vec![2]);
    // PLU-DPF / PLUD-DPF
    let r = |load, degradation| Policy::PriorityLeastUsedDpf {
        load,
        degradation,
        load_dpf: 1,
        distance: 100,
    };
    reg(&mut hs, "r", 1, r(0, 500)); // 600
    reg(&mut hs, "r", 2, r(200, 100)); // 400
    assert_eq!(sel(&mut hs, "r", 2), vec![2, 1]);
    let s = |load, degradation| Policy::PriorityLeastUsedDegradationDpf {
        load,
        degradation,
        load_dpf: 1,
        distance: 100,
    };
    reg(&mut hs, "s", 1, s(0, 300)); // 400 → 700
    reg(&mut hs, "s", 2, s(450, 0)); // 550
    assert_eq!(sel(&mut hs, "s", 1), vec![1]);
    assert_eq!(sel(&mut hs, "s", 1), vec![2]);
}

/// Chi-square statistic of observed counts against expected probabilities.
fn chi2(obs: &[f64], p: &[f64]) -> f64 {
    let n: f64 = obs.iter().sum();
    obs.iter()
        .zip(p)
        .map(|(o, p)| (o - n * p).powi(2) / (n * p))
        .sum()
}

/// Draw `draws` single-PE selections and return the count per PE id (1-based ids).
fn shares(policies: &[Policy], draws: usize) -> Vec<f64> {
    let mut hs = Handlespace::new(HandlespaceConfig::default(), 42);
    for (i, p) in policies.iter().enumerate() {
        reg(&mut hs, "p", i as u32 + 1, p.clone());
    }
    let mut c = vec![0f64; policies.len()];
    for _ in 0..draws {
        for id in hs.select(&h("p"), 1).unwrap() {
            c[id.0 as usize - 1] += 1.0;
        }
    }
    hs.check_invariants();
    c
}

// Critical chi-square values at p = 0.001: df 3 → 16.27, df 4 → 18.47.

#[test]
fn random_uniform() {
    let c = shares(&vec![Policy::Random; 5], 20_000);
    let x = chi2(&c, &[0.2; 5]);
    assert!(x < 18.47, "chi2 {x} {c:?}");
}

#[test]
fn weighted_random_shares() {
    let w = [1u32, 2, 3, 4, 0];
    let pols: Vec<Policy> = w
        .iter()
        .map(|&weight| Policy::WeightedRandom { weight })
        .collect();
    let c = shares(&pols, 20_000);
    assert_eq!(c[4], 0.0, "weight 0 never drawn");
    let x = chi2(&c[..4], &[0.1, 0.2, 0.3, 0.4]);
    assert!(x < 16.27, "chi2 {x} {c:?}");
}

#[test]
fn randomized_least_used_shares() {
    let q = u32::MAX / 4;
    // unloaded shares 4q-ish : 3q : 2q : 1q → 0.4 0.3 0.2 0.1 (approximately exact)
    let pols: Vec<Policy> = [0u32, q, 2 * q, 3 * q, u32::MAX]
        .iter()
        .map(|&load| Policy::RandomizedLeastUsed { load })
        .collect();
    let c = shares(&pols, 20_000);
    assert_eq!(c[4], 0.0, "fully loaded PE never drawn (RFC)");
    let x = chi2(&c[..4], &[0.4, 0.3, 0.2, 0.1]);
    assert!(x < 16.27, "chi2 {x} {c:?}");
}

#[test]
fn draws_without_replacement() {
    let mut hs = hs();
    for id in 1..=6 {
        reg(&mut hs, "p", id, Policy::WeightedRandom { weight: id });
    }
    reg(&mut hs, "p", 7, Policy::WeightedRandom { weight: 0 });
    for _ in 0..200 {
        let mut v = sel(&mut hs, "p", 10);
        assert_eq!(v.len(), 6, "stops when remaining weights are 0");
        v.sort_unstable();
        assert_eq!(v, vec![1, 2, 3, 4, 5, 6]);
    }
    // First-drawn share follows the weights: PE 6 first with probability 6/21.
    let mut first6 = 0;
    for _ in 0..21_000 {
        if sel_fast(&mut hs, "p", 3)[0] == 6 {
            first6 += 1;
        }
    }
    // Binomial(21000, 6/21): mean 6000, σ ≈ 65.5; allow ±4σ.
    assert!((6000 - 262..=6000 + 262).contains(&first6), "{first6}");
}

fn sel_fast(hs: &mut Handlespace, pool: &str, n: usize) -> Vec<u32> {
    hs.select(&h(pool), n)
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect()
}

#[test]
fn randomized_degradation_grows() {
    let mut hs = hs();
    let p = Policy::RandomizedLeastUsedDegradation {
        load: 0,
        degradation: 1000,
    };
    reg(&mut hs, "p", 1, p.clone());
    sel(&mut hs, "p", 1);
    sel(&mut hs, "p", 1);
    assert_eq!(hs.get(&h("p"), PeId(1)).unwrap().degradation(), 2000);
    hs.register(t0(), &h("p"), pe(1, 1, p)).unwrap();
    assert_eq!(hs.get(&h("p"), PeId(1)).unwrap().degradation(), 0);
    hs.check_invariants();
}

#[test]
fn seeded_selection_is_deterministic() {
    let run = |seed| {
        let mut hs = Handlespace::new(HandlespaceConfig::default(), seed);
        for id in 1..=20 {
            reg(&mut hs, "p", id, Policy::WeightedRandom { weight: id });
        }
        (0..50)
            .map(|_| sel_fast(&mut hs, "p", 3))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn timers_one_queue() {
    let mut hs = hs();
    let now = t0();
    for id in 1..=3 {
        reg(&mut hs, "p", id, Policy::RoundRobin);
    }
    assert_eq!(hs.poll_timeout(), None);
    let s = Duration::from_secs(1);
    assert!(hs.set_timer(&h("p"), PeId(1), now + 3 * s, TimerKind::Lifetime));
    assert!(hs.set_timer(&h("p"), PeId(2), now + s, TimerKind::KeepAliveTransmit));
    assert!(hs.set_timer(&h("p"), PeId(3), now + s, TimerKind::Lifetime));
    assert!(!hs.set_timer(&h("p"), PeId(4), now, TimerKind::Lifetime));
    hs.check_invariants();
    assert_eq!(hs.poll_timeout(), Some(now + s));
    // Replace PE 2's timer.
    assert!(hs.set_timer(&h("p"), PeId(2), now + 2 * s, TimerKind::KeepAliveTimeout));
    assert_eq!(
        hs.timer_of(&h("p"), PeId(2)),
        Some((now + 2 * s, TimerKind::KeepAliveTimeout))
    );
    assert_eq!(hs.timer_count(), 3);
    hs.check_invariants();
    assert_eq!(hs.pop_expired(now), None);
    assert_eq!(
        hs.pop_expired(now + 2 * s),
        Some((h("p"), PeId(3), TimerKind::Lifetime))
    );
    assert_eq!(
        hs.pop_expired(now + 2 * s),
        Some((h("p"), PeId(2), TimerKind::KeepAliveTimeout))
    );
    assert_eq!(hs.pop_expired(now + 2 * s), None);
    assert_eq!(hs.timer_of(&h("p"), PeId(2)), None);
    assert_eq!(hs.len(), 3, "PEs stay");
    hs.clear_timer(&h("p"), PeId(1));
    assert_eq!(hs.poll_timeout(), None);
    hs.set_timer(&h("p"), PeId(1), now, TimerKind::Lifetime);
    hs.deregister(&h("p"), PeId(1)).unwrap();
    assert_eq!(hs.poll_timeout(), None, "deregister clears the timer");
    hs.check_invariants();
}

/// The timer queue against a plain model over random sets (earlier and later), clears,
/// removals and pops: the same timers come out in the same order (deadline, then the
/// order they were set), `poll_timeout` is the earliest deadline, and `timer_of` and
/// `timer_count` agree.
#[test]
fn timer_queue_matches_a_model() {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut hs = hs();
    let now0 = t0();
    let ms = Duration::from_millis;
    // PE id -> (deadline, kind, order set): the model's queue is by (deadline, order).
    let mut model: BTreeMap<u32, (Instant, TimerKind, u64)> = BTreeMap::new();
    let mut order = 0u64;
    let mut now = now0;
    for id in 1..=20 {
        reg(&mut hs, "p", id, Policy::RoundRobin);
    }
    let kinds = [
        TimerKind::Lifetime,
        TimerKind::KeepAliveTransmit,
        TimerKind::KeepAliveTimeout,
    ];
    for step in 0..5_000 {
        let id = rng.gen_range(1..=20u32);
        match rng.gen_range(0..10) {
            0..=5 => {
                let d = now + ms(rng.gen_range(0..200));
                let k = kinds[rng.gen_range(0..3)];
                assert!(hs.set_timer(&h("p"), PeId(id), d, k));
                order += 1;
                model.insert(id, (d, k, order));
            }
            6 => {
                hs.clear_timer(&h("p"), PeId(id));
                model.remove(&id);
            }
            7 => {
                hs.deregister(&h("p"), PeId(id));
                model.remove(&id);
                reg(&mut hs, "p", id, Policy::RoundRobin);
            }
            _ => {
                now += ms(rng.gen_range(0..60));
                let mut due: Vec<_> = model
                    .iter()
                    .filter(|(_, (d, _, _))| *d <= now)
                    .map(|(id, (d, k, o))| (*d, *o, *id, *k))
                    .collect();
                due.sort();
                for (_, _, id, k) in due {
                    assert_eq!(
                        hs.pop_expired(now),
                        Some((h("p"), PeId(id), k)),
                        "step {step}"
                    );
                    model.remove(&id);
                }
                assert_eq!(hs.pop_expired(now), None, "step {step}");
            }
        }
        let earliest = model.values().map(|(d, _, _)| *d).min();
        assert_eq!(hs.poll_timeout(), earliest, "step {step}");
        assert_eq!(hs.timer_count(), model.len());
        for id in 1..=20 {
            let want = model.get(&id).map(|(d, k, _)| (*d, *k));
            assert_eq!(hs.timer_of(&h("p"), PeId(id)), want);
        }
        hs.check_invariants();
    }
}

#[test]
fn owners_checksums_takeover() {
    let mut hs = hs();
    let now = t0();
    let echo = h("EchoPool");
    let mut a = pe(0x0102_0304, 5, Policy::RoundRobin);
    hs.register(now, &echo, a.clone()).unwrap();
    assert_eq!(hs.checksum(ServerId(5)), 0x8E4B);
    a.id = PeId(0xA0B0_C0D0);
    hs.register(now, &echo, a.clone()).unwrap();
    hs.register(now, &h("X"), pe(1, 5, Policy::RoundRobin))
        .unwrap();
    assert_eq!(hs.checksum(ServerId(5)), 0x671A);
    hs.register(now, &h("X"), pe(2, 6, Policy::RoundRobin))
        .unwrap();
    hs.check_invariants();
    assert_eq!(hs.checksum(ServerId(7)), 0xFFFF);
    assert_eq!(
        hs.owners().collect::<Vec<_>>(),
        vec![(ServerId(5), 3), (ServerId(6), 1)]
    );
    let moved = hs.take_over(ServerId(5), ServerId(6));
    hs.check_invariants();
    assert_eq!(moved.len(), 3);
    assert_eq!(hs.owned_count(ServerId(5)), 0);
    assert_eq!(hs.checksum(ServerId(5)), 0xFFFF);
    assert_eq!(hs.owned_count(ServerId(6)), 4);
    assert!(hs
        .owned_by(ServerId(6))
        .all(|(_, e)| e.pe.home_registrar == ServerId(6)));
    hs.deregister(&h("X"), PeId(2)).unwrap();
    assert_eq!(hs.checksum(ServerId(6)), 0x671A);
    hs.check_invariants();
    let removed = hs.remove_owner(ServerId(6));
    assert_eq!(removed.len(), 3);
    assert!(hs.is_empty());
    assert_eq!(hs.pool_count(), 0);
    hs.check_invariants();
}

#[test]
fn pools_sorted_and_entries_by_id() {
    let mut hs = hs();
    for (pool, id) in [("b", 3), ("a", 9), ("b", 1), ("c", 2)] {
        reg(&mut hs, pool, id, Policy::Random);
    }
    let pools: Vec<_> = hs.pools().cloned().collect();
    assert_eq!(pools, vec![h("a"), h("b"), h("c")]);
    let ids: Vec<_> = hs.pool_entries(&h("b")).map(|e| e.pe.id.0).collect();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(hs.pool_entries(&h("zz")).count(), 0);
    assert_eq!(hs.pool_len(&h("b")), 2);
    assert_eq!(hs.pool_policy(&h("b")), Some(PolicyType::RANDOM));
    hs.deregister(&h("a"), PeId(9)).unwrap();
    assert_eq!(hs.pool_count(), 2);
    assert_eq!(hs.pool_policy(&h("a")), None);
    // A new pool with another policy may reuse the handle.
    reg(&mut hs, "a", 9, Policy::LeastUsed { load: 0 });
    assert_eq!(hs.pool_policy(&h("a")), Some(PolicyType::LEAST_USED));
}

#[test]
fn every_policy_selects() {
    for t in PolicyType::all() {
        let mut hs = hs();
        for id in 1..=5 {
            let vals = [id * 10, id, id, id];
            let p = Policy::from_values(t, &vals).unwrap();
            reg(&mut hs, "p", id, p);
        }
        for _ in 0..5 {
            let mut v = sel(&mut hs, "p", 3);
            assert_eq!(v.len(), 3, "{t}");
            v.sort_unstable();
            v.dedup();
            assert_eq!(v.len(), 3, "{t}: duplicates");
        }
        for id in 1..=5 {
            hs.deregister(&h("p"), PeId(id)).unwrap();
            hs.check_invariants();
        }
    }
}

// ---------------------------------------------------------------------------------------
// PU cache

fn pes(policies: &[Policy]) -> Vec<PoolElement> {
    policies
        .iter()
        .enumerate()
        .map(|(i, p)| pe(i as u32 + 1, 1, p.clone()))
        .collect()
}

fn pu_ids(c: &mut PuCache, rng: &mut ChaCha8Rng, n: usize) -> Vec<u32> {
    (0..n).map(|_| c.select(rng).unwrap().id.0).collect()
}

#[test]
fn pu_round_robin_and_remove() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut c = PuCache::new(PolicyType::ROUND_ROBIN, pes(&vec![Policy::RoundRobin; 4]));
    assert_eq!(pu_ids(&mut c, &mut rng, 6), vec![1, 2, 3, 4, 1, 2]);
    assert!(c.remove(PeId(2)));
    assert!(!c.remove(PeId(2)));
    assert_eq!(pu_ids(&mut c, &mut rng, 4), vec![3, 4, 1, 3]);
    assert_eq!(c.len(), 3);
    for id in [1, 3, 4] {
        c.remove(PeId(id));
    }
    assert!(c.is_empty());
    assert!(c.select(&mut rng).is_none());
}

#[test]
fn pu_priority_and_least_used() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut c = PuCache::new(
        PolicyType::PRIORITY,
        pes(&[
            Policy::Priority { priority: 1 },
            Policy::Priority { priority: 7 },
            Policy::Priority { priority: 7 },
        ]),
    );
    assert_eq!(pu_ids(&mut c, &mut rng, 4), vec![2, 3, 2, 3]);
    c.remove(PeId(2));
    c.remove(PeId(3));
    assert_eq!(pu_ids(&mut c, &mut rng, 2), vec![1, 1]);

    let lud = |load| Policy::LeastUsedDegradation {
        load,
        degradation: 10,
    };
    let mut c = PuCache::new(PolicyType::LEAST_USED_DEGRADATION, pes(&[lud(0), lud(15)]));
    assert_eq!(pu_ids(&mut c, &mut rng, 4), vec![1, 1, 2, 1]);
}

#[test]
fn pu_weighted_random() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut c = PuCache::new(
        PolicyType::WEIGHTED_RANDOM,
        pes(&[
            Policy::WeightedRandom { weight: 1 },
            Policy::WeightedRandom { weight: 3 },
            Policy::WeightedRandom { weight: 0 },
        ]),
    );
    let mut cnt = [0f64; 3];
    for _ in 0..8000 {
        cnt[c.select(&mut rng).unwrap().id.0 as usize - 1] += 1.0;
    }
    assert_eq!(cnt[2], 0.0);
    // df 1, p = 0.001 → 10.83
    let x = chi2(&cnt[..2], &[0.25, 0.75]);
    assert!(x < 10.83, "{x} {cnt:?}");
    let mut z = PuCache::new(
        PolicyType::WEIGHTED_RANDOM,
        pes(&[Policy::WeightedRandom { weight: 0 }]),
    );
    assert!(z.select(&mut rng).is_none());
}

/// Every weighted policy draws in proportion to its weight function (chi-square, df 3,
/// p = 0.001 → 16.27; seeded, so deterministic). Degradations are 0 so weights stay fixed.
#[test]
fn weighted_policies_follow_their_weights() {
    let q = u32::MAX / 8;
    let cases: Vec<Vec<Policy>> = vec![
        (1..=4u32)
            .map(|i| Policy::RandomizedPriorityLeastUsed {
                load: i * q,
                degradation: q / 2,
            })
            .collect(),
        (1..=4u32)
            .map(|i| Policy::RandomizedLeastUsedDegradation {
                load: i * q,
                degradation: 0,
            })
            .collect(),
        (1..=4u32)
            .map(|i| Policy::RandomizedPriorityLeastUsedDegradation {
                load: i * q,
                degradation: 0,
            })
            .collect(),
        (1..=4u32)
            .map(|i| Policy::WeightedRandomDpf {
                weight: 1000,
                weight_dpf: u32::MAX / 1000, // 0.001 per ms
                distance: i * 150,           // weights 850, 700, 550, 400
            })
            .collect(),
    ];
    for pols in cases {
        let w: Vec<f64> = pols
            .iter()
            .map(|p| policy::weight(p, &SelState::default()) as f64)
            .collect();
        let total: f64 = w.iter().sum();
        let p: Vec<f64> = w.iter().map(|x| x / total).collect();
        let c = shares(&pols, 20_000);
        let x = chi2(&c, &p);
        assert!(x < 16.27, "{:?}: chi2 {x} {c:?} expected {p:?}", pols[0]);
    }
}
