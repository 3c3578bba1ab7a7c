//! Handle resolution subscriptions at the registrar core (S = 1 → A = 1, pushes on pool
//! changes, coalescing, limits, ends), on a virtual clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::{Registrar, RegistrarCommand, RegistrarConfig};
use rserpool_wire::{AsapMessage, CauseCode, PeId, Policy, PoolHandle, Protocol};

const PE_CONN: ConnId = ConnId(1);
const PU: ConnId = ConnId(2);
const PU2: ConnId = ConnId(3);

fn meta(port: u16) -> RecvMeta {
    let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

struct T {
    r: Registrar,
    now: Instant,
}

/// (to, message) sent by the registrar.
type Out = Vec<(ConnId, AsapMessage)>;

impl T {
    fn new(cfg: RegistrarConfig) -> Self {
        let conns = [(PE_CONN, 40000), (PU, 40001), (PU2, 40002)].map(|(c, p)| (c, meta(p)));
        let (r, now) = common::started(cfg, &conns);
        Self { r, now }
    }

    fn out(&mut self) -> Out {
        common::sent(&mut self.r)
    }

    fn send(&mut self, conn: ConnId, msg: &AsapMessage) -> Out {
        let port = 40000 + conn.0 as u16 - 1;
        self.r
            .handle_message(self.now, conn, &meta(port), &msg.encode_to_vec());
        self.out()
    }

    fn register_with(&mut self, pool: &str, id: u32, policy: Policy) -> Out {
        self.send(PE_CONN, &common::registration(pool, id, policy))
    }

    fn register(&mut self, pool: &str, id: u32) -> Out {
        self.register_with(pool, id, Policy::RoundRobin)
    }

    fn resolve(&mut self, conn: ConnId, pool: &str, subscribe: bool) -> Out {
        let msg = AsapMessage::HandleResolution {
            subscribe,
            handle: pool.into(),
            items: Some(u32::MAX),
        };
        self.send(conn, &msg)
    }

    fn advance(&mut self, d: Duration) -> Out {
        self.now += d;
        self.r.handle_timeout(self.now);
        self.out()
    }
}

/// The handle resolution responses in `out` to `conn`: (A flag, PE ids, error code).
fn responses(out: &Out, conn: ConnId) -> Vec<(bool, Vec<u32>, Option<CauseCode>)> {
    out.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, m)| match m {
            AsapMessage::HandleResolutionResponse {
                accepted,
                pes,
                error,
                ..
            } => {
                let mut ids: Vec<u32> = pes.iter().map(|p| p.id.0).collect();
                ids.sort_unstable();
                Some((
                    *accepted,
                    ids,
                    error
                        .as_ref()
                        .and_then(|e| e.causes.first())
                        .map(|c| c.code),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_is_accepted_for_an_existing_pool_and_pushes_each_change() {
    let mut t = T::new(RegistrarConfig::default());
    t.register("p", 1);
    t.register("p", 2);
    // Unknown pool: A = 0, no subscription.
    let out = t.resolve(PU, "nope", true);
    assert_eq!(
        responses(&out, PU),
        vec![(false, vec![], Some(CauseCode::UNKNOWN_POOL_HANDLE))]
    );
    assert_eq!(t.r.subscriptions(None), 0);
    // Without S: A = 0.
    assert_eq!(
        responses(&t.resolve(PU2, "p", false), PU2),
        vec![(false, vec![1, 2], None)]
    );
    // With S: A = 1.
    assert_eq!(
        responses(&t.resolve(PU, "p", true), PU),
        vec![(true, vec![1, 2], None)]
    );
    assert_eq!(t.r.subscriptions(Some(PU)), 1);
    // A PE added: pushed at the end of that input, to the subscriber only.
    let out = t.register("p", 3);
    assert_eq!(responses(&out, PU), vec![(true, vec![1, 2, 3], None)]);
    assert!(responses(&out, PU2).is_empty());
    // A PE removed within the interval: pushed when it ends, not before.
    t.now += Duration::from_millis(10);
    let out = t.send(
        PE_CONN,
        &AsapMessage::Deregistration {
            handle: "p".into(),
            pe_id: PeId(2),
        },
    );
    assert!(responses(&out, PU).is_empty(), "{out:?}");
    let due = t.r.poll_timeout().unwrap();
    assert!(due <= t.now + Duration::from_secs(1));
    let out = t.advance(due - t.now);
    assert_eq!(responses(&out, PU), vec![(true, vec![1, 3], None)]);
    assert_eq!(t.r.counters().guards.subscription_pushes, 2);
    // Another pool's change pushes nothing.
    t.now += Duration::from_secs(5);
    assert!(responses(&t.register("q", 9), PU).is_empty());
}

#[test]
fn changes_within_the_interval_coalesce_into_one_push() {
    let mut t = T::new(RegistrarConfig {
        subscription_interval: Duration::from_secs(2),
        ..RegistrarConfig::default()
    });
    t.register("p", 1);
    t.resolve(PU, "p", true);
    // First change: at once.
    assert_eq!(responses(&t.register("p", 2), PU).len(), 1);
    // Ten more within the interval: nothing until it ends, then one push with all.
    for id in 3..13 {
        t.now += Duration::from_millis(100);
        assert!(responses(&t.register("p", id), PU).is_empty());
    }
    let mut pushes = Vec::new();
    for _ in 0..30 {
        pushes.extend(responses(&t.advance(Duration::from_millis(100)), PU));
    }
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].1, (1..13).collect::<Vec<_>>());
    assert_eq!(t.r.counters().guards.subscription_pushes_coalesced, 9);
    // A re-registration that changes nothing a PU sees pushes nothing; a load change does.
    t.now += Duration::from_secs(10);
    assert!(responses(&t.register("p", 1), PU).is_empty());
    assert!(responses(&t.advance(Duration::from_secs(3)), PU).is_empty());
    assert_eq!(t.r.counters().guards.subscription_pushes, 2);
}

#[test]
fn load_and_policy_updates_push() {
    let mut t = T::new(RegistrarConfig::default());
    t.register_with("p", 1, Policy::LeastUsed { load: 0 });
    t.resolve(PU, "p", true);
    let out = t.register_with("p", 1, Policy::LeastUsed { load: 1000 });
    assert_eq!(responses(&out, PU), vec![(true, vec![1], None)]);
}

#[test]
fn a_subscription_ends_with_s0_the_connection_and_the_pool() {
    let mut t = T::new(RegistrarConfig::default());
    t.register("p", 1);
    t.register("q", 1);
    t.resolve(PU, "p", true);
    t.resolve(PU, "q", true);
    t.resolve(PU2, "p", true);
    assert_eq!(t.r.subscriptions(None), 3);
    // S = 0: answered A = 0, no more pushes for it.
    assert_eq!(
        responses(&t.resolve(PU, "q", false), PU),
        vec![(false, vec![1], None)]
    );
    assert_eq!(t.r.subscriptions(Some(PU)), 1);
    assert!(responses(&t.register("q", 2), PU).is_empty());
    // The connection closes.
    t.r.handle_transport(t.now, TransportEvent::Closed { conn: PU2 });
    assert_eq!(t.r.subscriptions(None), 1);
    // The last PE leaves: a negative push with A = 0 ends the subscription.
    t.now += Duration::from_secs(5);
    t.r.command(
        t.now,
        RegistrarCommand::RemovePe {
            handle: PoolHandle::from("p"),
            pe_id: PeId(1),
        },
    );
    let out = t.out();
    assert_eq!(
        responses(&out, PU),
        vec![(false, vec![], Some(CauseCode::UNKNOWN_POOL_HANDLE))]
    );
    assert!(responses(&out, PU2).is_empty(), "closed connection");
    assert_eq!(t.r.subscriptions(None), 0);
    let g = &t.r.counters().guards;
    assert_eq!(g.subscriptions_accepted, 3);
    assert_eq!(g.subscriptions_ended, 3);
    // Back again: no subscription was left to push to.
    assert!(responses(&t.register("p", 5), PU).is_empty());
}

#[test]
fn limits_answer_a0_and_count() {
    let mut t = T::new(RegistrarConfig {
        max_subscriptions_per_connection: 3,
        max_subscriptions: 4,
        ..RegistrarConfig::default()
    });
    for i in 0..6 {
        t.register(&format!("p{i}"), 1);
    }
    let a: Vec<bool> = (0..6)
        .map(|i| responses(&t.resolve(PU, &format!("p{i}"), true), PU)[0].0)
        .collect();
    assert_eq!(a, vec![true, true, true, false, false, false]);
    // Re-subscribing a pool it has is no new subscription.
    assert!(responses(&t.resolve(PU, "p0", true), PU)[0].0);
    // The total: one more for PU2, then A = 0.
    assert!(responses(&t.resolve(PU2, "p0", true), PU2)[0].0);
    assert!(!responses(&t.resolve(PU2, "p1", true), PU2)[0].0);
    assert_eq!(t.r.subscriptions(None), 4);
    assert_eq!(t.r.counters().guards.subscriptions_refused, 4);
    // A refused answer still carries the PEs.
    assert_eq!(
        responses(&t.resolve(PU, "p5", true), PU),
        vec![(false, vec![1], None)]
    );
    // 0 = no subscriptions at all.
    let mut t = T::new(RegistrarConfig {
        max_subscriptions_per_connection: 0,
        ..RegistrarConfig::default()
    });
    t.register("p", 1);
    assert!(!responses(&t.resolve(PU, "p", true), PU)[0].0);
    assert_eq!(t.r.subscriptions(None), 0);
}
