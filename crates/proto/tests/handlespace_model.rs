//! Model test: random operation sequences against a simple Vec-based reference
//! handlespace. Deterministic parts (membership, owners, checksums, timers, and the
//! selection order of RR / WRR / LU / LUD / PLU / PRIO) must agree exactly; for the random
//! policies the answer must be distinct live PEs of the right count. The handlespace's own
//! invariant checker runs after every operation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rserpool_proto::handlespace::{Handlespace, HandlespaceConfig, RegisterOutcome, TimerKind};
use rserpool_wire::{
    CauseCode, PeChecksum, PeId, Policy, PolicyType, PoolElement, PoolHandle, ServerId,
    TransportAddr, UserTransport,
};

const MAX: u64 = 0xFFFF_FFFF;
const MAX_PES: usize = 14;
const MAX_PER_POOL: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    Register {
        pool: u8,
        id: u32,
        owner: u32,
        policy: Policy,
    },
    Deregister {
        pool: u8,
        id: u32,
    },
    UpdateLoad {
        pool: u8,
        id: u32,
        load: u32,
    },
    Select {
        pool: u8,
        n: usize,
    },
    SetTimer {
        pool: u8,
        id: u32,
        ms: u64,
        kind: u8,
    },
    ClearTimer {
        pool: u8,
        id: u32,
    },
    /// Advance the clock and expire: pop every due timer; Lifetime ⇒ deregister.
    Advance {
        ms: u64,
    },
    TakeOver {
        from: u32,
        to: u32,
    },
    RemoveOwner {
        owner: u32,
    },
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0u32..4,
        1 => Just(u32::MAX),
        1 => Just(u32::MAX - 1),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::RoundRobin),
        value().prop_map(|weight| Policy::WeightedRoundRobin { weight }),
        value().prop_map(|load| Policy::LeastUsed { load }),
        (value(), value())
            .prop_map(|(load, degradation)| Policy::LeastUsedDegradation { load, degradation }),
        (value(), value())
            .prop_map(|(load, degradation)| Policy::PriorityLeastUsed { load, degradation }),
        value().prop_map(|priority| Policy::Priority { priority }),
        Just(Policy::Random),
        value().prop_map(|weight| Policy::WeightedRandom { weight }),
        value().prop_map(|load| Policy::RandomizedLeastUsed { load }),
        (value(), value()).prop_map(|(load, degradation)| {
            Policy::RandomizedLeastUsedDegradation { load, degradation }
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let pool = 0u8..4;
    let id = prop_oneof![10 => 1u32..7, 1 => Just(0u32)];
    let owner = 1u32..4;
    prop_oneof![
        8 => (pool.clone(), id.clone(), owner.clone(), policy()).prop_map(|(pool, id, owner, policy)| Op::Register { pool, id, owner, policy }),
        2 => (pool.clone(), id.clone()).prop_map(|(pool, id)| Op::Deregister { pool, id }),
        2 => (pool.clone(), id.clone(), value()).prop_map(|(pool, id, load)| Op::UpdateLoad { pool, id, load }),
        8 => (pool.clone(), 0usize..6).prop_map(|(pool, n)| Op::Select { pool, n }),
        3 => (pool.clone(), id.clone(), 0u64..50, 0u8..3).prop_map(|(pool, id, ms, kind)| Op::SetTimer { pool, id, ms, kind }),
        1 => (pool.clone(), id.clone()).prop_map(|(pool, id)| Op::ClearTimer { pool, id }),
        2 => (0u64..40).prop_map(|ms| Op::Advance { ms }),
        1 => (owner.clone(), owner.clone()).prop_map(|(from, to)| Op::TakeOver { from, to }),
        1 => owner.prop_map(|owner| Op::RemoveOwner { owner }),
    ]
}

fn handle(pool: u8) -> PoolHandle {
    // Odd and even lengths, to exercise checksum padding.
    PoolHandle::new(format!("pool{}", "x".repeat(pool as usize)))
}

fn kind(k: u8) -> TimerKind {
    match k {
        0 => TimerKind::Lifetime,
        1 => TimerKind::KeepAliveTransmit,
        _ => TimerKind::KeepAliveTimeout,
    }
}

fn mk_pe(id: u32, owner: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(owner),
        registration_life: 1000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(
            4000,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )),
        policy,
        asap_transport: None,
    }
}

// ----------------------------------------------------------------------------------------
// Reference model

#[derive(Clone, Debug)]
struct MPe {
    pool: u8,
    pe: PoolElement,
    seq: u64,
    deg: u32,
    round: u64,
    virt: u32,
    timer: Option<(Instant, u64, TimerKind)>,
}

struct Model {
    pes: Vec<MPe>,
    pools: BTreeMap<u8, PolicyType>,
    seq: u64,
    tseq: u64,
}

fn sat(x: u128) -> u64 {
    x.min(u128::from(MAX)) as u64
}

/// Sorted key for the deterministic policies (`None` = not in the ring).
fn mkey(m: &MPe) -> Option<(u64, u64)> {
    Some(match m.pe.policy {
        Policy::RoundRobin => (0, 0),
        Policy::WeightedRoundRobin { weight } => {
            if weight == 0 {
                return None;
            }
            (m.round, u64::from(m.virt))
        }
        Policy::LeastUsed { load } => (u64::from(load), 0),
        Policy::LeastUsedDegradation { load, .. } => (sat(u128::from(load) + u128::from(m.deg)), 0),
        Policy::PriorityLeastUsed { load, degradation } => {
            (sat(u128::from(load) + u128::from(degradation)), 0)
        }
        Policy::Priority { priority } => (MAX - u64::from(priority), 0),
        _ => return None,
    })
}

fn mweight(m: &MPe) -> u64 {
    match m.pe.policy {
        Policy::Random => 1,
        Policy::WeightedRandom { weight } => u64::from(weight),
        Policy::RandomizedLeastUsed { load } => MAX - u64::from(load),
        Policy::RandomizedLeastUsedDegradation { load, .. } => {
            (MAX.saturating_sub(u64::from(load) + u64::from(m.deg))).max(1)
        }
        _ => 0,
    }
}

fn is_sorted_policy(t: PolicyType) -> bool {
    !matches!(
        t,
        PolicyType::RANDOM
            | PolicyType::WEIGHTED_RANDOM
            | PolicyType::RANDOMIZED_LEAST_USED
            | PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION
    )
}

impl Model {
    fn find(&self, pool: u8, id: u32) -> Option<usize> {
        self.pes
            .iter()
            .position(|m| m.pool == pool && m.pe.id.0 == id)
    }

    /// Ring order of a sorted pool: (key, seq) ascending.
    fn order(&self, pool: u8) -> Vec<usize> {
        let mut v: Vec<(usize, (u64, u64), u64)> = self
            .pes
            .iter()
            .enumerate()
            .filter(|(_, m)| m.pool == pool)
            .filter_map(|(i, m)| mkey(m).map(|k| (i, k, m.seq)))
            .collect();
        v.sort_by_key(|&(_, k, s)| (k, s));
        v.into_iter().map(|(i, _, _)| i).collect()
    }

    fn wrr_fresh(&mut self, i: usize) {
        let pool = self.pes[i].pool;
        let first_round = self
            .order(pool)
            .into_iter()
            .find(|&j| j != i)
            .map(|j| self.pes[j].round)
            .unwrap_or(0);
        if let Policy::WeightedRoundRobin { weight } = self.pes[i].pe.policy {
            self.pes[i].round = first_round;
            self.pes[i].virt = weight;
        }
    }

    fn register(&mut self, pool: u8, pe: PoolElement) -> Result<RegisterOutcome, CauseCode> {
        if pe.id.0 == 0 {
            return Err(CauseCode::INVALID_VALUES);
        }
        if let Some(t) = self.pools.get(&pool) {
            if *t != pe.policy.policy_type() {
                return Err(CauseCode::INCONSISTENT_POLICY);
            }
        }
        if let Some(i) = self.find(pool, pe.id.0) {
            let was_in_ring = mkey(&self.pes[i]).is_some();
            let owner_changed = self.pes[i].pe.home_registrar != pe.home_registrar;
            let m = &mut self.pes[i];
            m.pe = pe;
            m.deg = 0;
            if let Policy::WeightedRoundRobin { weight } = m.pe.policy {
                if !was_in_ring || m.virt == 0 {
                    self.wrr_fresh(i);
                } else {
                    m.virt = m.virt.min(weight);
                }
            }
            return Ok(RegisterOutcome::Updated { owner_changed });
        }
        let in_pool = self.pes.iter().filter(|m| m.pool == pool).count();
        if self.pes.len() >= MAX_PES || in_pool >= MAX_PER_POOL {
            return Err(CauseCode::LACK_OF_RESOURCES);
        }
        self.pools.entry(pool).or_insert(pe.policy.policy_type());
        self.seq += 1;
        self.pes.push(MPe {
            pool,
            pe,
            seq: self.seq,
            deg: 0,
            round: 0,
            virt: 0,
            timer: None,
        });
        let i = self.pes.len() - 1;
        self.wrr_fresh(i);
        Ok(RegisterOutcome::Added)
    }

    fn remove(&mut self, i: usize) -> MPe {
        let m = self.pes.remove(i);
        if !self.pes.iter().any(|x| x.pool == m.pool) {
            self.pools.remove(&m.pool);
        }
        m
    }

    /// Deterministic selection (sorted policies); `None` for random pools.
    fn select(&mut self, pool: u8, n: usize) -> Option<Vec<u32>> {
        let ty = *self.pools.get(&pool)?;
        if !is_sorted_policy(ty) {
            return None;
        }
        let picked: Vec<usize> = self.order(pool).into_iter().take(n).collect();
        let mut out = Vec::new();
        for (pos, &i) in picked.iter().enumerate() {
            out.push(self.pes[i].pe.id.0);
            if pos == 0 {
                self.seq += 1;
                let m = &mut self.pes[i];
                m.seq = self.seq;
                if let Policy::WeightedRoundRobin { weight } = m.pe.policy {
                    if m.virt > 1 {
                        m.virt -= 1;
                    } else {
                        m.round += 1;
                        m.virt = weight;
                    }
                }
            }
            let m = &mut self.pes[i];
            if let Policy::LeastUsedDegradation { degradation, .. } = m.pe.policy {
                m.deg = m.deg.saturating_add(degradation);
            }
        }
        Some(out)
    }

    fn checksum(&self, owner: u32) -> u16 {
        let hs: Vec<(PoolHandle, PeId)> = self
            .pes
            .iter()
            .filter(|m| m.pe.home_registrar.0 == owner)
            .map(|m| (handle(m.pool), m.pe.id))
            .collect();
        PeChecksum::compute(hs.iter().map(|(h, id)| (h, *id)))
    }
}

// ----------------------------------------------------------------------------------------

fn compare(hs: &Handlespace, model: &Model) {
    hs.check_invariants();
    assert_eq!(hs.len(), model.pes.len(), "len");
    assert_eq!(hs.pool_count(), model.pools.len(), "pool count");
    for (pool, ty) in &model.pools {
        assert_eq!(hs.pool_policy(&handle(*pool)), Some(*ty));
    }
    let hs_members: BTreeSet<(PoolHandle, u32, u32)> = hs
        .pools()
        .flat_map(|h| {
            hs.pool_entries(h)
                .map(move |e| (h.clone(), e.pe.id.0, e.pe.home_registrar.0))
        })
        .collect();
    let m_members: BTreeSet<(PoolHandle, u32, u32)> = model
        .pes
        .iter()
        .map(|m| (handle(m.pool), m.pe.id.0, m.pe.home_registrar.0))
        .collect();
    assert_eq!(hs_members, m_members, "membership");
    for m in &model.pes {
        let e = hs.get(&handle(m.pool), m.pe.id).expect("present");
        assert_eq!(e.pe, m.pe, "stored PE");
        assert_eq!(
            hs.timer_of(&handle(m.pool), m.pe.id),
            m.timer.map(|(d, _, k)| (d, k)),
            "timer"
        );
        if is_sorted_policy(m.pe.policy.policy_type()) {
            assert_eq!(e.sequence(), m.seq, "sequence number");
            assert_eq!(e.degradation(), m.deg, "degradation");
        }
        if matches!(m.pe.policy, Policy::WeightedRoundRobin { weight } if weight > 0) {
            assert_eq!(e.wrr_counters(), (m.round, m.virt), "WRR counters");
        }
    }
    for owner in 0..5 {
        let n = model
            .pes
            .iter()
            .filter(|m| m.pe.home_registrar.0 == owner)
            .count();
        assert_eq!(hs.owned_count(ServerId(owner)), n, "owned count");
        assert_eq!(hs.owned_by(ServerId(owner)).count(), n, "owned_by");
        assert_eq!(
            hs.checksum(ServerId(owner)),
            model.checksum(owner),
            "checksum"
        );
    }
    let head = model.pes.iter().filter_map(|m| m.timer).min().map(|t| t.0);
    assert_eq!(hs.poll_timeout(), head, "poll_timeout");
    for (pool, ty) in &model.pools {
        if is_sorted_policy(*ty) {
            let want: Vec<PeId> = model
                .order(*pool)
                .into_iter()
                .map(|i| model.pes[i].pe.id)
                .collect();
            assert_eq!(hs.peek_order(&handle(*pool)), Some(want), "ring order");
        }
    }
}

fn run(ops: Vec<Op>, seed: u64) {
    let cfg = HandlespaceConfig {
        max_pes: MAX_PES,
        max_pes_per_pool: MAX_PER_POOL,
        ..HandlespaceConfig::default()
    };
    let mut hs = Handlespace::new(cfg, seed);
    let mut model = Model {
        pes: Vec::new(),
        pools: BTreeMap::new(),
        seq: 0,
        tseq: 0,
    };
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    for op in ops {
        match op {
            Op::Register {
                pool,
                id,
                owner,
                policy,
            } => {
                let pe = mk_pe(id, owner, policy);
                let got = hs
                    .register(now, &handle(pool), pe.clone())
                    .map_err(|e| e.cause.code);
                let want = model.register(pool, pe);
                assert_eq!(got, want, "register");
            }
            Op::Deregister { pool, id } => {
                let got = hs.deregister(&handle(pool), PeId(id)).map(|e| e.pe);
                let want = model.find(pool, id).map(|i| model.remove(i).pe);
                assert_eq!(got, want, "deregister");
            }
            Op::UpdateLoad { pool, id, load } => {
                let got = hs.update_load(&handle(pool), PeId(id), load);
                let want = match model.find(pool, id) {
                    Some(i) => {
                        let m = &mut model.pes[i];
                        let ok = m.pe.policy.set_load(load);
                        if ok {
                            m.deg = 0;
                        }
                        ok
                    }
                    None => false,
                };
                assert_eq!(got, want, "update_load");
            }
            Op::Select { pool, n } => {
                let got = hs
                    .select(&handle(pool), n)
                    .map(|v| v.into_iter().map(|p| p.0).collect::<Vec<_>>());
                match model.select(pool, n) {
                    Some(want) => assert_eq!(got, Some(want), "sorted selection"),
                    None if !model.pools.contains_key(&pool) => assert_eq!(got, None),
                    None => {
                        let got = got.expect("pool exists");
                        let set: BTreeSet<u32> = got.iter().copied().collect();
                        assert_eq!(set.len(), got.len(), "duplicates");
                        let live: Vec<usize> = (0..model.pes.len())
                            .filter(|&i| model.pes[i].pool == pool)
                            .collect();
                        let drawable = live.iter().filter(|&&i| mweight(&model.pes[i]) > 0).count();
                        assert_eq!(got.len(), n.min(drawable), "random count");
                        for id in got {
                            let i = model.find(pool, id).expect("live PE returned");
                            assert!(mweight(&model.pes[i]) > 0, "weight-0 PE drawn");
                            let m = &mut model.pes[i];
                            if let Policy::RandomizedLeastUsedDegradation { degradation, .. } =
                                m.pe.policy
                            {
                                m.deg = m.deg.saturating_add(degradation);
                            }
                        }
                    }
                }
            }
            Op::SetTimer {
                pool,
                id,
                ms,
                kind: k,
            } => {
                let deadline = now + Duration::from_millis(ms);
                let got = hs.set_timer(&handle(pool), PeId(id), deadline, kind(k));
                let want = match model.find(pool, id) {
                    Some(i) => {
                        model.tseq += 1;
                        model.pes[i].timer = Some((deadline, model.tseq, kind(k)));
                        true
                    }
                    None => false,
                };
                assert_eq!(got, want, "set_timer");
            }
            Op::ClearTimer { pool, id } => {
                hs.clear_timer(&handle(pool), PeId(id));
                if let Some(i) = model.find(pool, id) {
                    model.pes[i].timer = None;
                }
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(ms);
                loop {
                    let got = hs.pop_expired(now);
                    // Model: the earliest (deadline, seq) timer that is due.
                    let due = model
                        .pes
                        .iter()
                        .enumerate()
                        .filter_map(|(i, m)| m.timer.map(|t| (t.0, t.1, i)))
                        .filter(|t| t.0 <= now)
                        .min();
                    let want = due.map(|(_, _, i)| {
                        let m = &mut model.pes[i];
                        let k = m.timer.take().map(|t| t.2).expect("timer");
                        (handle(m.pool), m.pe.id, k)
                    });
                    assert_eq!(got, want, "pop_expired");
                    let Some((h, id, k)) = got else { break };
                    if k == TimerKind::Lifetime {
                        hs.deregister(&h, id).expect("expired PE present");
                        let i = model.find_by_handle(&h, id);
                        model.remove(i);
                    }
                    hs.check_invariants();
                }
            }
            Op::TakeOver { from, to } => {
                let mut got: Vec<(PoolHandle, PeId)> = hs.take_over(ServerId(from), ServerId(to));
                got.sort();
                let mut want: Vec<(PoolHandle, PeId)> = model
                    .pes
                    .iter_mut()
                    .filter(|m| m.pe.home_registrar.0 == from)
                    .map(|m| {
                        m.pe.home_registrar = ServerId(to);
                        (handle(m.pool), m.pe.id)
                    })
                    .collect();
                want.sort();
                assert_eq!(got, want, "take_over");
            }
            Op::RemoveOwner { owner } => {
                let mut got: Vec<(PoolHandle, PeId)> = hs
                    .remove_owner(ServerId(owner))
                    .into_iter()
                    .map(|(h, pe)| (h, pe.id))
                    .collect();
                got.sort();
                let mut want = Vec::new();
                while let Some(i) = model
                    .pes
                    .iter()
                    .position(|m| m.pe.home_registrar.0 == owner)
                {
                    let m = model.remove(i);
                    want.push((handle(m.pool), m.pe.id));
                }
                want.sort();
                assert_eq!(got, want, "remove_owner");
            }
        }
        compare(&hs, &model);
    }
}

impl Model {
    fn find_by_handle(&self, h: &PoolHandle, id: PeId) -> usize {
        self.pes
            .iter()
            .position(|m| &handle(m.pool) == h && m.pe.id == id)
            .expect("model has PE")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn handlespace_matches_model(ops in proptest::collection::vec(op(), 1..150), seed in any::<u64>()) {
        run(ops, seed);
    }
}

/// A hand-written sequence covering a WRR re-registration from weight 0 and back.
#[test]
fn wrr_weight_zero_round_trip() {
    let wrr = |weight| Policy::WeightedRoundRobin { weight };
    run(
        vec![
            Op::Register {
                pool: 0,
                id: 1,
                owner: 1,
                policy: wrr(2),
            },
            Op::Register {
                pool: 0,
                id: 2,
                owner: 1,
                policy: wrr(0),
            },
            Op::Select { pool: 0, n: 3 },
            Op::Select { pool: 0, n: 3 },
            Op::Register {
                pool: 0,
                id: 2,
                owner: 2,
                policy: wrr(3),
            },
            Op::Select { pool: 0, n: 3 },
            Op::Register {
                pool: 0,
                id: 1,
                owner: 1,
                policy: wrr(1),
            },
            Op::Select { pool: 0, n: 1 },
            Op::Register {
                pool: 0,
                id: 2,
                owner: 2,
                policy: wrr(0),
            },
            Op::Select { pool: 0, n: 3 },
        ],
        1,
    );
}

fn any_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        8 => (any::<u32>(), proptest::collection::vec(any::<u32>(), 4)).prop_filter_map(
            "known type",
            |(i, v)| {
                let types: Vec<PolicyType> = PolicyType::all().collect();
                Policy::from_values(types[i as usize % types.len()], &v)
            }
        ),
        1 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..12)).prop_map(
            |(t, data)| Policy::Unknown { policy_type: PolicyType(t), data }
        ),
    ]
}

fn any_transport() -> impl Strategy<Value = UserTransport> {
    prop_oneof![
        (
            any::<u16>(),
            0u16..3,
            proptest::collection::vec(any::<u32>(), 0..3)
        )
            .prop_map(|(port, u, addrs)| UserTransport::Ip(TransportAddr::sctp(
                port,
                rserpool_wire::TransportUse(u),
                addrs
                    .into_iter()
                    .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                    .collect(),
            ))),
        any::<u32>()
            .prop_map(|a| UserTransport::Ip(TransportAddr::udp(1, IpAddr::V4(Ipv4Addr::from(a))))),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(UserTransport::Opaque),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Arbitrary registrations (any handle bytes and length, PE id, policy type and
    /// values, transport) never panic; refusals carry the documented codes; selection of
    /// whatever got in works for every policy.
    #[test]
    fn arbitrary_input_never_panics(
        regs in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..80), prop_oneof![any::<u32>(), 0u32..4],
             0u32..4, any_policy(), any_transport(), 0usize..200),
            1..60),
        seed in any::<u64>(),
    ) {
        let mut hs = Handlespace::new(HandlespaceConfig { max_pes: 40, ..HandlespaceConfig::default() }, seed);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for (h, id, owner, policy, transport, n) in regs {
            let h = PoolHandle::new(h);
            let known = !matches!(policy, Policy::Unknown { .. });
            let pe = PoolElement {
                id: PeId(id),
                home_registrar: ServerId(owner),
                registration_life: 0,
                user_transport: transport,
                policy,
                asap_transport: None,
            };
            match hs.register(now, &h, pe) {
                Ok(_) => {
                    prop_assert!(id != 0 && !h.is_empty() && h.len() <= 64 && known);
                }
                Err(e) => {
                    let c = e.cause.code;
                    prop_assert!(
                        [CauseCode::INVALID_VALUES, CauseCode::INCONSISTENT_POLICY,
                         CauseCode::LACK_OF_RESOURCES, CauseCode::INCONSISTENT_TRANSPORT,
                         CauseCode::INCONSISTENT_DATA_CONTROL].contains(&c),
                        "unexpected cause {:?}", c
                    );
                    if id == 0 || h.is_empty() || h.len() > 64 || !known {
                        prop_assert_eq!(c, CauseCode::INVALID_VALUES);
                    }
                }
            }
            let _ = hs.select(&h, n);
            hs.update_load(&h, PeId(id), id);
            hs.check_invariants();
        }
        let pools: Vec<PoolHandle> = hs.pools().cloned().collect();
        for h in pools {
            let v = hs.select(&h, usize::MAX).expect("pool");
            prop_assert!(v.len() <= hs.pool_len(&h));
        }
    }
}
