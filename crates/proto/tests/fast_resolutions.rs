//! Resolutions answered from pool copies outside the core (`registrar/fast.rs`), at the
//! core's seam: the same answers as a registrar that answers everything itself, through
//! changes; what falls back to the core; the notes the core takes in.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rserpool_proto::io::{ConnId, Core, PeerIdentity, RecvMeta, TransportProto};
use rserpool_proto::registrar::{AccessPolicy, AccessRule, FastConn, MAX_NOTES};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{AsapMessage, PeId, Policy, Protocol};

const PE_CONN: ConnId = ConnId(1);
const PU: ConnId = ConnId(2);
/// A pool user whose TLS certificate names it `admin` (the access test tells it apart).
const PU2: ConnId = ConnId(3);

fn meta(conn: ConnId) -> RecvMeta {
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + conn.0 as u16));
    let mut m = RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer);
    if conn == PU2 {
        m.identity = Some(Arc::new(PeerIdentity {
            names: vec!["admin".into()],
        }));
    }
    m
}

struct T {
    r: Registrar,
    now: Instant,
    pu: FastConn,
}

impl T {
    fn new(cfg: RegistrarConfig) -> Self {
        let conns = [PE_CONN, PU, PU2].map(|c| (c, meta(c)));
        let (r, now) = common::started(cfg, &conns);
        Self {
            r,
            now,
            pu: FastConn::new(1),
        }
    }

    fn send(&mut self, conn: ConnId, msg: &AsapMessage) -> Vec<(ConnId, AsapMessage)> {
        self.r
            .handle_message(self.now, conn, &meta(conn), &msg.encode_to_vec());
        common::sent(&mut self.r)
    }

    fn register(&mut self, pool: &str, id: u32, policy: Policy) {
        let out = self.send(PE_CONN, &common::registration(pool, id, policy));
        assert!(matches!(
            out.as_slice(),
            [(_, AsapMessage::RegistrationResponse { error: None, .. })]
        ));
    }

    fn deregister(&mut self, pool: &str, id: u32) {
        self.send(
            PE_CONN,
            &AsapMessage::Deregistration {
                handle: pool.into(),
                pe_id: PeId(id),
            },
        );
    }

    /// The core's answer to a resolution from `PU2`: the PE ids in order.
    fn core_resolve(&mut self, pool: &str, items: u32) -> Vec<u32> {
        let out = self.send(PU2, &resolution(pool, items, false));
        match out.as_slice() {
            [(_, m)] => ids(m),
            other => panic!("{other:?}"),
        }
    }

    /// The readers' answer to a resolution from `PU`, if they give one.
    fn fast_resolve(&mut self, pool: &str, items: u32) -> Option<Vec<u32>> {
        self.fast_bytes(&resolution(pool, items, false).encode_to_vec())
    }

    fn fast_bytes(&mut self, bytes: &[u8]) -> Option<Vec<u32>> {
        let fast = self.r.fast_resolver();
        let answer = fast.try_answer(self.now, PU, &meta(PU), bytes, &mut self.pu)?;
        Some(ids(&AsapMessage::decode(&answer).unwrap().message))
    }
}

fn resolution(pool: &str, items: u32, subscribe: bool) -> AsapMessage {
    AsapMessage::HandleResolution {
        handle: pool.into(),
        items: Some(items),
        subscribe,
    }
}

fn ids(m: &AsapMessage) -> Vec<u32> {
    match m {
        AsapMessage::HandleResolutionResponse {
            error: None, pes, ..
        } => pes.iter().map(|p| p.id.0).collect(),
        AsapMessage::HandleResolutionResponse { .. } => Vec::new(),
        other => panic!("{other:?}"),
    }
}

/// A registrar answering from copies (alternately in the readers and in the core) gives
/// exactly the answers of one that answers everything itself, step by step, through
/// registrations and deregistrations (round robin: one position, folded back on change).
#[test]
fn copies_answer_exactly_as_the_core_through_changes() {
    let mut with = T::new(RegistrarConfig::default());
    let mut without = T::new(RegistrarConfig {
        fast_resolutions: false,
        ..RegistrarConfig::default()
    });
    for t in [&mut with, &mut without] {
        for id in 1..=4 {
            t.register("rr", id, Policy::RoundRobin);
        }
    }
    let mut fast_answers = 0;
    for step in 0..200u32 {
        match step % 37 {
            10 => {
                with.register("rr", 100 + step, Policy::RoundRobin);
                without.register("rr", 100 + step, Policy::RoundRobin);
            }
            30 => {
                let gone = 100 + step - 20;
                with.deregister("rr", gone);
                without.deregister("rr", gone);
            }
            _ => {}
        }
        let items = 1 + step % 3;
        let want = without.core_resolve("rr", items);
        let got = if step % 2 == 0 {
            with.core_resolve("rr", items)
        } else {
            match with.fast_resolve("rr", items) {
                Some(ids) => {
                    fast_answers += 1;
                    ids
                }
                None => with.core_resolve("rr", items),
            }
        };
        assert_eq!(got, want, "step {step}");
    }
    // Only the first resolution after each change had no copy to answer from.
    assert!(fast_answers > 80, "{fast_answers} answers from copies");
    assert_eq!(with.r.counters().fast_resolutions, fast_answers);
}

/// Random pools: distinct members only, every member reachable; a pool whose policy
/// changes with use (least used with degradation) is never copied.
#[test]
fn random_pools_are_copied_and_degrading_ones_are_not() {
    let mut t = T::new(RegistrarConfig::default());
    for id in 1..=6 {
        t.register("rand", id, Policy::Random);
        t.register("wrand", id, Policy::WeightedRandom { weight: id % 3 });
        t.register(
            "lud",
            id,
            Policy::LeastUsedDegradation {
                load: 0,
                degradation: 10,
            },
        );
    }
    for pool in ["rand", "wrand", "lud"] {
        t.core_resolve(pool, 1);
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let got = t.fast_resolve("rand", 3).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got.iter().collect::<std::collections::BTreeSet<_>>().len(),
            3
        );
        seen.extend(got);
        // Weight 0 (ids 3 and 6) is never chosen; the other four fill the answer.
        let w = t.fast_resolve("wrand", 6).unwrap();
        let mut w_sorted = w.clone();
        w_sorted.sort_unstable();
        assert_eq!(w_sorted, vec![1, 2, 4, 5]);
        assert_eq!(t.fast_resolve("lud", 1), None);
    }
    assert_eq!(seen, (1..=6).collect());
}

/// What the readers leave to the core: subscriptions (and everything on that connection
/// after one), pools without a copy, refused access — and once `MAX_NOTES` notes wait,
/// everything until the core's next input takes them in. The notes make the pool user's
/// unreachability reports count.
#[test]
fn what_goes_to_the_core_and_what_the_notes_carry() {
    let mut t = T::new(RegistrarConfig::default());
    for id in 1..=2 {
        t.register("p", id, Policy::RoundRobin);
    }
    assert_eq!(
        t.fast_resolve("p", 1),
        None,
        "no copy before the core answered once"
    );
    t.core_resolve("p", 1);
    assert!(t.fast_resolve("p", 1).is_some());
    // A report from PU counts: the core learnt from the note that PU resolved the pool.
    let before = t.r.counters().guards.reports_counted;
    t.send(
        PU,
        &AsapMessage::EndpointUnreachable {
            handle: "p".into(),
            pe_id: PeId(1),
        },
    );
    assert_eq!(t.r.counters().guards.reports_counted, before + 1);
    // Many pools, one connection, no core input: the notes stop at MAX_NOTES.
    for i in 0..20 {
        let pool = format!("n{i}");
        t.register(&pool, 1, Policy::RoundRobin);
        t.core_resolve(&pool, 1);
    }
    let mut answered = 0;
    for k in 0..2 * MAX_NOTES {
        if t.fast_resolve(&format!("n{}", k % 20), 1).is_some() {
            answered += 1;
        }
    }
    assert!(answered <= MAX_NOTES, "{answered}");
    assert_eq!(t.fast_resolve("p", 1), None);
    t.core_resolve("p", 1); // an input: the notes are taken in
    assert!(t.fast_resolve("p", 1).is_some());
    // A subscription goes to the core, and so does this connection from then on.
    assert_eq!(
        t.fast_bytes(&resolution("p", 1, true).encode_to_vec()),
        None
    );
    assert_eq!(t.fast_resolve("p", 1), None);
}

/// Access rules apply to the readers' answers: a pool this user may not resolve, copied
/// because another user (`admin`) resolved it, goes to the core, which refuses it.
#[test]
fn access_rules_hold_for_answers_from_copies() {
    let cfg = RegistrarConfig {
        access: AccessPolicy {
            require_tls: false,
            rules: vec![
                AccessRule {
                    identity: "anonymous".into(),
                    register: vec!["*".into()],
                    resolve: vec!["open*".into()],
                    peer: false,
                },
                AccessRule {
                    identity: "admin".into(),
                    register: Vec::new(),
                    resolve: vec!["*".into()],
                    peer: false,
                },
            ],
        },
        ..RegistrarConfig::default()
    };
    let mut t = T::new(cfg);
    t.register("open", 1, Policy::RoundRobin);
    t.register("closed", 1, Policy::RoundRobin);
    // `admin` resolves both through the core: both pools are copied.
    assert_eq!(t.core_resolve("open", 1), vec![1]);
    assert_eq!(t.core_resolve("closed", 1), vec![1]);
    assert_eq!(t.fast_resolve("open", 1), Some(vec![1]));
    // The anonymous user: not from the copy, and refused by the core.
    assert_eq!(t.fast_resolve("closed", 1), None);
    let out = t.send(PU, &resolution("closed", 1, false));
    assert!(matches!(
        out.as_slice(),
        [(_, AsapMessage::HandleResolutionResponse { error: Some(_), pes, .. })] if pes.is_empty()
    ));
}
