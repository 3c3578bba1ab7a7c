//! The simulator's own network and faults: latency, loss, duplication, reordering,
//! partitions, crash/restart, transport commands, determinism of traces.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::io::Endpoint;
use rserpool_proto::{
    HuntConfig, HuntOrder, PeEvent, PoolElementConfig, RegistrarConfig, RegistrarEvent,
};
use rserpool_sim::{seeds::check_seeds, LinkConfig, NodeId, World};
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr, UserTransport,
};

const POOL: &str = "EchoPool";

fn start() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn reg_endpoint() -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 3863)))
}

fn pe_cfg(i: u8) -> PoolElementConfig {
    PoolElementConfig {
        pool_handle: PoolHandle::from(POOL),
        pe_id: Some(PeId(0x1000 + u32::from(i))),
        user_transports: vec![UserTransport::Ip(TransportAddr::tcp(
            7000 + u16::from(i),
            IpAddr::from([10, 0, 1, i]),
        ))],
        policy: Policy::RoundRobin,
        registrars: vec![reg_endpoint()],
        hunt: HuntConfig {
            order: HuntOrder::InOrder,
            backoff_max: Duration::from_secs(4),
            ..HuntConfig::default()
        },
        ..PoolElementConfig::default()
    }
}

fn registration(id: u32) -> Vec<u8> {
    AsapMessage::Registration {
        handle: PoolHandle::from(POOL),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: 60_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                9000,
                IpAddr::from([10, 0, 3, 1]),
            )),
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
    .encode_to_vec()
}

fn ids(w: &World, reg: NodeId) -> Vec<PeId> {
    w.registrar(reg)
        .handlespace()
        .pool_entries(&PoolHandle::from(POOL))
        .map(|e| e.pe.id)
        .collect()
}

fn registered(w: &World, pe: NodeId) -> usize {
    w.pe_events(pe)
        .iter()
        .filter(|e| matches!(e, PeEvent::Registered { .. }))
        .count()
}

#[test]
fn latency_delays_the_answer_by_a_round_trip() {
    let mut w = World::new(start(), 1);
    let reg = w.add_registrar(1, RegistrarConfig::default());
    let raw = w.add_raw(1, false);
    w.set_link(
        raw,
        reg,
        LinkConfig::with_latency(Duration::from_millis(40)),
    );
    w.raw_send(raw, &reg_endpoint(), registration(0x51));
    assert!(w.raw_received(raw).is_empty());
    w.run(Duration::from_millis(79));
    assert!(w.raw_received(raw).is_empty());
    w.run(Duration::from_millis(1));
    assert!(matches!(
        &w.raw_received(raw)[..],
        [(_, AsapMessage::RegistrationResponse { reject: false, .. })]
    ));
}

#[test]
fn loss_and_duplication_are_counted() {
    let mut w = World::new(start(), 2);
    let reg = w.add_registrar(1, RegistrarConfig::default());
    let raw = w.add_raw(1, false);
    w.set_link(
        raw,
        reg,
        LinkConfig {
            duplicate: 1.0,
            ..LinkConfig::default()
        },
    );
    w.raw_send(raw, &reg_endpoint(), registration(0x51));
    w.run(Duration::from_millis(10));
    // The registration arrives twice, each answer twice.
    assert_eq!(w.raw_received(raw).len(), 4);
    assert_eq!(w.stats().duplicated, 3);

    let lossy = w.add_raw(2, false);
    w.set_link(
        lossy,
        reg,
        LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        },
    );
    w.raw_send(lossy, &reg_endpoint(), registration(0x52));
    w.run(Duration::from_secs(1));
    assert!(w.raw_received(lossy).is_empty());
    assert_eq!(w.stats().lost, 1);
    assert_eq!(ids(&w, reg), vec![PeId(0x51)]);
}

#[test]
fn a_stream_keeps_its_order_unless_reordering_is_allowed() {
    let order = |reorder: bool, seed: u64| {
        let mut w = World::new(start(), seed);
        let reg = w.add_registrar(1, RegistrarConfig::default());
        let raw = w.add_raw(1, false);
        w.set_link(
            raw,
            reg,
            LinkConfig {
                latency: Duration::from_millis(1),
                jitter: Duration::from_millis(50),
                reorder,
                ..LinkConfig::default()
            },
        );
        for id in 1..=20 {
            w.raw_send(raw, &reg_endpoint(), registration(id));
        }
        w.run(Duration::from_secs(1));
        w.reg_events(reg)
            .into_iter()
            .filter_map(|e| match e {
                RegistrarEvent::PeAdded { pe, .. } => Some(pe.id.0),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let sorted: Vec<u32> = (1..=20).collect();
    for seed in 0..5 {
        assert_eq!(order(false, seed), sorted);
    }
    assert!((0..5).any(|seed| order(true, seed) != sorted));
}

#[test]
fn a_partition_keeps_a_pe_out_until_it_heals() {
    let mut w = World::new(start(), 3);
    let reg = w.add_registrar(1, RegistrarConfig::default());
    w.partition(&[reg], &[1, 2]);
    let pe = w.add_pe(1, pe_cfg(1));
    w.run(Duration::from_secs(10));
    assert!(ids(&w, reg).is_empty());
    assert_eq!(registered(&w, pe), 0);
    w.heal();
    w.run(Duration::from_secs(5));
    assert_eq!(ids(&w, reg), vec![PeId(0x1001)]);
    assert_eq!(registered(&w, pe), 1);
}

#[test]
fn a_restarted_registrar_learns_its_pes_again() {
    let mut w = World::new(start(), 4);
    w.set_dead_pe_bound(Some(Duration::from_secs(8)));
    let reg = w.add_registrar(1, RegistrarConfig::default());
    let pes: Vec<NodeId> = (1..=3).map(|i| w.add_pe(i, pe_cfg(i))).collect();
    w.run(Duration::from_secs(1));
    assert_eq!(ids(&w, reg).len(), 3);
    w.crash(reg);
    w.crash(pes[0]);
    w.run(Duration::from_secs(3));
    w.restart(reg);
    assert!(ids(&w, reg).is_empty());
    w.run(Duration::from_secs(10));
    assert_eq!(ids(&w, reg), vec![PeId(0x1002), PeId(0x1003)]);
    w.restart(pes[0]);
    w.run(Duration::from_secs(1));
    assert_eq!(ids(&w, reg).len(), 3);
}

#[test]
fn a_hung_pe_is_dropped_and_comes_back_when_it_wakes() {
    let mut w = World::new(start(), 5);
    w.set_dead_pe_bound(Some(Duration::from_secs(6)));
    let reg = w.add_registrar(1, RegistrarConfig::default());
    let pe = w.add_pe(1, pe_cfg(1));
    w.run(Duration::from_secs(1));
    w.mute(pe, true);
    w.run(Duration::from_secs(8));
    assert!(ids(&w, reg).is_empty());
    w.mute(pe, false);
    w.run(Duration::from_secs(15));
    assert_eq!(ids(&w, reg), vec![PeId(0x1001)]);
}

/// The registrar's connection limits close an idle connection with a transport command;
/// the world closes both ends.
#[test]
fn transport_commands_close_connections() {
    let mut w = World::new(start(), 6);
    let reg = w.add_registrar(1, RegistrarConfig::default());
    let raw = w.add_raw(1, false);
    let hr = AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from(POOL),
        items: None,
    };
    w.raw_send(raw, &reg_endpoint(), hr.encode_to_vec());
    let got = w.raw_received(raw);
    let [(conn, _)] = &got[..] else {
        panic!("{got:?}")
    };
    assert!(w.is_open(*conn));
    assert_eq!(w.conn_owner(*conn), Some(raw));
    w.run(Duration::from_secs(40));
    assert!(!w.is_open(*conn));
    assert_eq!(w.node_count(), 2);
    let _ = reg;
}

/// An invariant added by the test is checked after every event; its failure names the seed.
#[test]
#[should_panic(expected = "seed 7")]
fn a_broken_invariant_names_the_seed() {
    let mut w = World::new(start(), 7);
    let reg = w.add_registrar(1, RegistrarConfig::default());
    w.add_invariant("at most one PE", move |w| {
        if ids(w, reg).len() > 1 {
            Err("two PEs".into())
        } else {
            Ok(())
        }
    });
    w.add_pe(1, pe_cfg(1));
    w.add_pe(2, pe_cfg(2));
    w.run(Duration::from_secs(1));
}

/// Same seed, same trace; another seed, with jitter and loss, another trace.
#[test]
fn traces_depend_on_the_seed_only() {
    let run = |base: Instant, seed: u64| {
        let mut w = World::new(base, seed);
        w.set_default_link(LinkConfig {
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(20),
            loss: 0.05,
            duplicate: 0.02,
            reorder: false,
        });
        w.add_registrar(1, RegistrarConfig::default());
        for i in 1..=3 {
            w.add_pe(i, pe_cfg(i));
        }
        w.run(Duration::from_secs(30));
        (w.trace().digest(), w.trace().len(), w.stats())
    };
    let base = start();
    assert_eq!(run(base, 11), run(base, 11));
    assert_ne!(run(base, 11).0, run(base, 12).0);
    let n = check_seeds(base, 5, |w| {
        w.set_default_link(LinkConfig {
            jitter: Duration::from_millis(20),
            loss: 0.05,
            ..LinkConfig::default()
        });
        w.add_registrar(1, RegistrarConfig::default());
        w.add_pe(1, pe_cfg(1));
        w.run(Duration::from_secs(20));
    });
    assert!(n >= 1);
}

/// Stepping one event at a time reaches the same state as running.
#[test]
fn stepping_until_a_pe_is_registered() {
    let base = start();
    let mut w = World::new(base, 8);
    w.set_default_link(LinkConfig::with_latency(Duration::from_millis(5)));
    let reg = w.add_registrar(1, RegistrarConfig::default());
    w.add_pe(1, pe_cfg(1));
    assert!(w.run_until(Duration::from_secs(1), |w| ids(w, reg).len() == 1));
    // Connect, then the registration: one round trip of 5 ms each way.
    assert!(w.elapsed() >= Duration::from_millis(5), "{:?}", w.elapsed());
    assert!(
        w.elapsed() < Duration::from_millis(100),
        "{:?}",
        w.elapsed()
    );
    let before = w.events_checked();
    assert!(w.step());
    assert!(w.events_checked() > before);
    assert!(!w.run_until(Duration::from_millis(10), |w| ids(w, reg).is_empty()));
}
