//! Core-level scenarios: registrars, PEs and PUs in the simulator's world, which moves
//! `Transmit`s between cores by `ConnId` / `Endpoint`, stepped on a virtual clock.
//! No sockets, no real time. (Moved here from `crates/proto/tests/scenarios.rs`.)

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, Dest, Endpoint};
use rserpool_proto::{
    HuntConfig, HuntOrder, PeCommand, PeEvent, PeStatus, PoolElementConfig, PoolUserConfig,
    PuCommand, PuError, PuEvent, Registrar, RegistrarConfig, RegistrarEvent, RemovalReason,
    RequestId,
};
use rserpool_wire::{
    asap_type, codec::decode_policy_tlv, decode_asap, AsapMessage, CauseCode, PeId, Policy,
    PoolElement, PoolHandle, TransportAddr, TransportKind, UserTransport,
};

// ------------------------------------------------------------------------------------------
// The network: the simulator's world, with its perfect default links and seed 0 (the cores
// keep their base seeds).

use rserpool_sim::{Ev, NodeId, World as Net};

/// A world whose clock starts now (the simulator never reads the clock itself).
fn new_net() -> Net {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    Net::new(now, 0)
}

// ------------------------------------------------------------------------------------------
// Helpers

const POOL: &str = "EchoPool";

fn reg_endpoint(i: u8) -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, i], 3863)))
}

fn hunt_in_order() -> HuntConfig {
    HuntConfig {
        order: HuntOrder::InOrder,
        ..HuntConfig::default()
    }
}

fn pe_cfg(i: u8, policy: Policy, registrars: Vec<Endpoint>) -> PoolElementConfig {
    PoolElementConfig {
        pool_handle: PoolHandle::from(POOL),
        pe_id: Some(PeId(0x1000 + u32::from(i))),
        user_transports: vec![UserTransport::Ip(TransportAddr::tcp(
            7000 + u16::from(i),
            IpAddr::from([10, 0, 1, i]),
        ))],
        policy,
        registrars,
        hunt: hunt_in_order(),
        ..PoolElementConfig::default()
    }
}

fn pu_cfg(registrars: Vec<Endpoint>) -> PoolUserConfig {
    PoolUserConfig {
        registrars,
        hunt: hunt_in_order(),
        ..PoolUserConfig::default()
    }
}

fn server_of(ev: &PuEvent) -> PeId {
    match ev {
        PuEvent::Server { pe, .. } => pe.id,
        other => panic!("expected a server, got {other:?}"),
    }
}

fn count_removed(net: &Net, reg: NodeId, reason: RemovalReason) -> usize {
    net.reg_events(reg)
        .iter()
        .filter(|e| matches!(e, RegistrarEvent::PeRemoved { reason: r, .. } if *r == reason))
        .count()
}

fn ids(net: &mut Net, reg: NodeId) -> Vec<PeId> {
    let h = PoolHandle::from(POOL);
    net.reg(reg)
        .handlespace()
        .pool_entries(&h)
        .map(|e| e.pe.id)
        .collect()
}

fn registration_bytes(id: u32, life_ms: u32) -> Vec<u8> {
    AsapMessage::Registration {
        handle: PoolHandle::from(POOL),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: rserpool_wire::ServerId(0),
            registration_life: life_ms,
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

// ------------------------------------------------------------------------------------------
// Scenarios

#[test]
fn registration() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let sid = net.reg(r).server_id();
    assert_ne!(sid.0, 0);

    let evs = net.pe_events(pe);
    assert!(
        matches!(
            evs.as_slice(),
            [PeEvent::Registered {
                pe_id: PeId(0x1001),
                ..
            }]
        ),
        "{evs:?}"
    );
    assert_eq!(
        net.pe(pe).status(),
        vec![(PeId(0x1001), PeStatus::Registered)]
    );
    let revs = net.reg_events(r);
    let RegistrarEvent::PeAdded { handle, pe: stored } = &revs[0] else {
        panic!("{revs:?}")
    };
    assert_eq!(handle, &PoolHandle::from(POOL));
    assert_eq!(stored.home_registrar, sid);
    // The ASAP transport is the registering connection, as a TCP TLV (a TCP connection).
    let asap = stored.asap_transport.as_ref().expect("ASAP transport");
    assert_eq!(asap.kind, TransportKind::Tcp);
    assert_eq!(asap.addrs, vec![IpAddr::from([10, 0, 1, 1])]);
    assert_ne!(asap.port, 0);
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    let hs = net.reg(r).handlespace();
    assert_eq!(hs.owned_count(sid), 1);
}

#[test]
fn reregistration_before_lifetime_keeps_the_pe() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let mut cfg = pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]);
    cfg.registration_life = Duration::from_secs(30);
    cfg.reregistration_interval = Duration::from_secs(10);
    let pe = net.add_pe(1, cfg);
    net.run(Duration::from_secs(65));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    let regs = net.reg(r).counters().received(asap_type::REGISTRATION);
    assert_eq!(regs, 7, "initial + 6 re-registrations in 65 s");
    let updated = net
        .reg_events(r)
        .iter()
        .filter(|e| {
            matches!(
                e,
                RegistrarEvent::PeUpdated {
                    owner_changed: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(updated, 6);
    assert!(!net
        .reg_events(r)
        .iter()
        .any(|e| matches!(e, RegistrarEvent::PeRemoved { .. })));
    // Only the first registration is an event on the PE side.
    assert_eq!(net.pe_events(pe).len(), 1);
}

#[test]
fn lifetime_expiry_removes_and_tells_the_pe() {
    let mut net = new_net();
    let cfg = RegistrarConfig {
        keepalive_interval: None,
        ..RegistrarConfig::default()
    };
    let r = net.add_registrar(1, cfg);
    let raw = net.add_raw(1, false);
    net.raw_send(raw, &reg_endpoint(1), registration_bytes(0x77, 2000));
    let got = net.raw_received(raw);
    assert!(matches!(
        &got[..],
        [(
            _,
            AsapMessage::RegistrationResponse {
                reject: false,
                pe_id: PeId(0x77),
                ..
            }
        )]
    ));
    net.run(Duration::from_millis(1999));
    assert_eq!(ids(&mut net, r), vec![PeId(0x77)]);
    net.run(Duration::from_millis(1));
    assert!(ids(&mut net, r).is_empty());
    assert_eq!(count_removed(&net, r, RemovalReason::LifetimeExpired), 1);
    let got = net.raw_received(raw);
    assert!(
        matches!(
            &got[..],
            [(
                _,
                AsapMessage::DeregistrationResponse {
                    pe_id: PeId(0x77),
                    error: None,
                    ..
                }
            )]
        ),
        "{got:?}"
    );
    assert_eq!(net.reg(r).handlespace().timer_count(), 0);
}

#[test]
fn keepalive_timeout_removes_a_silent_pe() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    net.run(Duration::from_secs(1));
    net.mute(pe, true);
    let muted_at = net.now();
    // Last sign of life ≤ 1 s before the mute; removal ≤ 3 s + 2 s after it.
    net.run(Duration::from_millis(4000));
    let removed_at = net
        .events(r)
        .iter()
        .find(|(_, e)| {
            matches!(
                e,
                Ev::Reg(RegistrarEvent::PeRemoved {
                    reason: RemovalReason::KeepAliveTimeout,
                    ..
                })
            )
        })
        .map(|(t, _)| *t)
        .expect("removed by keep-alive timeout");
    assert!(removed_at > muted_at);
    assert!(ids(&mut net, r).is_empty());
    // A keep-alive went out and was not answered.
    let c = net.reg(r).counters().clone();
    assert_eq!(
        c.sent(asap_type::ENDPOINT_KEEP_ALIVE),
        c.received(asap_type::ENDPOINT_KEEP_ALIVE_ACK) + 1
    );
}

#[test]
fn answered_keepalives_keep_the_pe() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let mut cfg = pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]);
    cfg.registration_life = Duration::from_secs(300);
    cfg.reregistration_interval = Duration::from_secs(100);
    let pe = net.add_pe(1, cfg);
    net.run(Duration::from_secs(60));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    let c = net.reg(r).counters().clone();
    assert_eq!(
        c.received(asap_type::REGISTRATION),
        1,
        "no re-registration yet"
    );
    let kas = c.sent(asap_type::ENDPOINT_KEEP_ALIVE);
    assert!((20..=27).contains(&kas), "{kas} keep-alives in 60 s");
    assert_eq!(c.received(asap_type::ENDPOINT_KEEP_ALIVE_ACK), kas);
    assert_eq!(
        net.pe(pe)
            .counters()
            .sent(asap_type::ENDPOINT_KEEP_ALIVE_ACK),
        kas
    );
    assert_eq!(count_removed(&net, r, RemovalReason::KeepAliveTimeout), 0);
}

#[test]
fn handle_resolution_uses_cache_until_stale() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    for i in 1..=3 {
        net.add_pe(i, pe_cfg(i, Policy::RoundRobin, vec![reg_endpoint(1)]));
    }
    // Without a subscription (as against RSPLIB): the stale timer decides.
    let cfg = PoolUserConfig {
        subscribe: false,
        ..pu_cfg(vec![reg_endpoint(1)])
    };
    let pu = net.add_pu(1, cfg);
    let hr = |net: &mut Net| net.reg(r).counters().received(asap_type::HANDLE_RESOLUTION);

    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(1));
    assert!(matches!(a, PuEvent::Server { .. }));
    assert_eq!(hr(&mut net), 1);
    net.run(Duration::from_secs(2));
    net.ask(pu, 2, POOL, false, Duration::from_secs(1));
    net.run(Duration::from_millis(2500));
    net.ask(pu, 3, POOL, false, Duration::from_secs(1));
    assert_eq!(hr(&mut net), 1, "fresh cache answers (C4)");
    net.run(Duration::from_millis(600));
    let d = net.ask(pu, 4, POOL, false, Duration::from_secs(1));
    assert!(matches!(d, PuEvent::Server { .. }));
    assert_eq!(
        hr(&mut net),
        2,
        "stale entry triggers a new resolution (C2)"
    );
    let evs = net.pu_events(pu);
    assert!(evs
        .iter()
        .any(|(_, e)| matches!(e, PuEvent::HomeChanged { .. })));
}

#[test]
fn round_robin_across_three_pes_from_the_pu() {
    let mut net = new_net();
    let _r = net.add_registrar(1, RegistrarConfig::default());
    for i in 1..=3 {
        net.add_pe(i, pe_cfg(i, Policy::RoundRobin, vec![reg_endpoint(1)]));
    }
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1)]));
    let got: Vec<PeId> = (0..6)
        .map(|k| server_of(&net.ask(pu, k, POOL, false, Duration::from_secs(1))))
        .collect();
    let mut first: Vec<PeId> = got[..3].to_vec();
    assert_eq!(&got[..3], &got[3..], "the PU rotates over its list");
    first.sort();
    assert_eq!(first, vec![PeId(0x1001), PeId(0x1002), PeId(0x1003)]);
}

#[test]
fn registrar_round_robin_head_advances_per_request() {
    let mut net = new_net();
    let _r = net.add_registrar(1, RegistrarConfig::default());
    for i in 1..=3 {
        net.add_pe(i, pe_cfg(i, Policy::RoundRobin, vec![reg_endpoint(1)]));
    }
    // Three PUs, each with its own handle resolution: their first picks differ.
    let mut firsts = Vec::new();
    for k in 1..=3 {
        let pu = net.add_pu(k, pu_cfg(vec![reg_endpoint(1)]));
        firsts.push(server_of(&net.ask(
            pu,
            1,
            POOL,
            false,
            Duration::from_secs(1),
        )));
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "{firsts:?}");
}

#[test]
fn failover_and_unreachable_reports_remove_the_pe() {
    let mut net = new_net();
    // Counting reports (RSPLIB): by default a PE that answers its probe stays, see
    // `reported_pe_stays_while_it_answers_and_goes_when_it_does_not`.
    let r = net.add_registrar(
        1,
        RegistrarConfig {
            probe_on_unreachable: false,
            ..RegistrarConfig::default()
        },
    );
    // Priority: every PU picks PE 1 first.
    net.add_pe(
        1,
        pe_cfg(1, Policy::Priority { priority: 10 }, vec![reg_endpoint(1)]),
    );
    net.add_pe(
        2,
        pe_cfg(2, Policy::Priority { priority: 5 }, vec![reg_endpoint(1)]),
    );
    let reports = |net: &mut Net| {
        net.reg(r)
            .counters()
            .received(asap_type::ENDPOINT_UNREACHABLE)
    };

    for k in 1..=3u8 {
        let pu = net.add_pu(k, pu_cfg(vec![reg_endpoint(1)]));
        let a = net.ask(pu, 1, POOL, false, Duration::from_secs(1));
        assert_eq!(server_of(&a), PeId(0x1001));
        // The application cannot reach PE 1: next server.
        let b = net.ask(pu, 2, POOL, true, Duration::from_secs(1));
        assert_eq!(server_of(&b), PeId(0x1002));
        assert_eq!(reports(&mut net), u64::from(k), "one report per failure");
        let h = PoolHandle::from(POOL);
        let cached = net.pu(pu).cached(&h, net.now()).expect("cache");
        assert_eq!(
            cached.0.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![PeId(0x1002)]
        );
        if k < 3 {
            // Fewer than max_bad_pe_reports reporters: still registered.
            assert_eq!(ids(&mut net, r), vec![PeId(0x1001), PeId(0x1002)]);
        }
    }
    assert_eq!(ids(&mut net, r), vec![PeId(0x1002)]);
    assert_eq!(count_removed(&net, r, RemovalReason::Unreachable), 1);
    // A new PU only sees PE 2.
    let pu = net.add_pu(9, pu_cfg(vec![reg_endpoint(1)]));
    assert_eq!(
        server_of(&net.ask(pu, 1, POOL, false, Duration::from_secs(1))),
        PeId(0x1002)
    );
}

#[test]
fn reported_pe_stays_while_it_answers_and_goes_when_it_does_not() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let pe1 = net.add_pe(
        1,
        pe_cfg(1, Policy::Priority { priority: 10 }, vec![reg_endpoint(1)]),
    );
    let pe2 = net.add_pe(
        2,
        pe_cfg(2, Policy::Priority { priority: 5 }, vec![reg_endpoint(1)]),
    );
    let keepalives = |net: &mut Net, pe: NodeId| {
        net.pe(pe)
            .counters()
            .received(asap_type::ENDPOINT_KEEP_ALIVE)
    };
    // Five PUs each fail PE 1 and report it: it answers every probe and stays.
    for k in 1..=5u8 {
        let before = keepalives(&mut net, pe1);
        let pu = net.add_pu(k, pu_cfg(vec![reg_endpoint(1)]));
        let a = net.ask(pu, 1, POOL, false, Duration::from_secs(1));
        assert_eq!(server_of(&a), PeId(0x1001));
        let b = net.ask(pu, 2, POOL, true, Duration::from_secs(1));
        assert_eq!(server_of(&b), PeId(0x1002));
        assert_eq!(ids(&mut net, r), vec![PeId(0x1001), PeId(0x1002)]);
        if k == 1 {
            assert_eq!(keepalives(&mut net, pe1), before + 1, "probed at once");
        }
        net.run(Duration::from_secs(3));
        assert_eq!(ids(&mut net, r), vec![PeId(0x1001), PeId(0x1002)]);
    }
    assert_eq!(count_removed(&net, r, RemovalReason::Unreachable), 0);
    // PE 2 hangs (its connection stays up): the probe a report sends goes unanswered.
    net.mute(pe2, true);
    let pu = net.add_pu(9, pu_cfg(vec![reg_endpoint(1)]));
    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(1));
    assert_eq!(server_of(&a), PeId(0x1001));
    net.pu_command(
        pu,
        PuCommand::ReportFailure {
            pool: PoolHandle::from(POOL),
            pe_id: PeId(0x1002),
        },
    );
    net.run(Duration::from_millis(2100));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    assert_eq!(count_removed(&net, r, RemovalReason::Unreachable), 1);
}

#[test]
fn next_server_prefers_other_pes_over_other_transports_of_the_failed_one() {
    let mut net = new_net();
    let _r = net.add_registrar(1, RegistrarConfig::default());
    // PE 1 registers two entries (IPv4 and IPv6 TCP) from one connection.
    let mut cfg = pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]);
    cfg.user_transports
        .push(UserTransport::Ip(TransportAddr::tcp(
            7001,
            "fd00::1".parse().expect("addr"),
        )));
    let pe1 = net.add_pe(1, cfg);
    let pe1_ids = net.pe(pe1).pe_ids();
    assert_eq!(pe1_ids.len(), 2);
    net.add_pe(2, pe_cfg(2, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let pu = net.add_pu(
        1,
        PoolUserConfig {
            hr_items: Some(u32::MAX),
            ..pu_cfg(vec![reg_endpoint(1)])
        },
    );
    // Walk until the PU hands out one of PE 1's entries, then fail it.
    let mut k = 0;
    let mut cur = server_of(&net.ask(pu, k, POOL, false, Duration::from_secs(1)));
    while !pe1_ids.contains(&cur) {
        k += 1;
        cur = server_of(&net.ask(pu, k, POOL, false, Duration::from_secs(1)));
    }
    let other_transport = *pe1_ids.iter().find(|i| **i != cur).expect("two entries");
    let next = server_of(&net.ask(pu, 100, POOL, true, Duration::from_secs(1)));
    assert_eq!(next, PeId(0x1002), "another PE first");
    let after = server_of(&net.ask(pu, 101, POOL, true, Duration::from_secs(1)));
    assert_eq!(
        after, other_transport,
        "then the other transport of the failed PE"
    );
    let last = net.ask(pu, 102, POOL, true, Duration::from_secs(1));
    assert!(
        matches!(
            last,
            PuEvent::Failed {
                error: PuError::NoServer,
                ..
            }
        ),
        "{last:?}"
    );
}

#[test]
fn inconsistent_policy_is_rejected_with_0x5() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let good = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let bad = net.add_pe(
        2,
        pe_cfg(2, Policy::LeastUsed { load: 0 }, vec![reg_endpoint(1)]),
    );
    let evs = net.pe_events(bad);
    let Some(PeEvent::RegistrationFailed {
        pe_id,
        cause,
        error,
    }) = evs.first()
    else {
        panic!("{evs:?}")
    };
    assert_eq!(*pe_id, PeId(0x1002));
    assert_eq!(*cause, CauseCode::INCONSISTENT_POLICY);
    let info = &error.as_ref().expect("error").causes[0].info;
    assert_eq!(
        decode_policy_tlv(info).expect("policy TLV"),
        Policy::RoundRobin
    );
    assert_eq!(
        net.pe(bad).status(),
        vec![(PeId(0x1002), PeStatus::Rejected)]
    );
    // Not retried unchanged.
    net.run(Duration::from_secs(30));
    assert_eq!(net.pe(bad).counters().sent(asap_type::REGISTRATION), 1);
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    assert_eq!(
        net.pe(good).status(),
        vec![(PeId(0x1001), PeStatus::Registered)]
    );
    assert!(net.reg_events(r).iter().any(|e| matches!(
        e,
        RegistrarEvent::RegistrationRejected {
            cause: CauseCode::INCONSISTENT_POLICY,
            ..
        }
    )));
}

#[test]
fn garbage_gets_asap_error_and_other_pes_are_unaffected() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let raw = net.add_raw(1, false);
    let ep = reg_endpoint(1);
    let error_codes = |got: &[(ConnId, AsapMessage)]| -> Vec<CauseCode> {
        got.iter()
            .flat_map(|(_, m)| match m {
                AsapMessage::Error { error } => {
                    error.causes.iter().map(|c| c.code).collect::<Vec<_>>()
                }
                other => panic!("expected ASAP_ERROR, got {other:?}"),
            })
            .collect()
    };

    // Truncated registration: broken framing, no parameter to blame → Unrecognized
    // Message quoting what arrived (it used to be a bare Unspecified Error).
    let quoted = |got: &[(ConnId, AsapMessage)]| -> Vec<(CauseCode, Vec<u8>)> {
        got.iter()
            .flat_map(|(_, m)| match m {
                AsapMessage::Error { error } => error
                    .causes
                    .iter()
                    .map(|c| (c.code, c.info.clone()))
                    .collect::<Vec<_>>(),
                other => panic!("expected ASAP_ERROR, got {other:?}"),
            })
            .collect()
    };
    let reg = registration_bytes(0x55, 5000);
    net.raw_send(raw, &ep, reg[..20].to_vec());
    assert_eq!(
        quoted(&net.raw_received(raw)),
        vec![(CauseCode::UNRECOGNIZED_MESSAGE, reg[..20].to_vec())]
    );
    // Header length past the end.
    let past = vec![0x01, 0x00, 0x00, 0x40, 0, 0, 0, 0];
    net.raw_send(raw, &ep, past.clone());
    assert_eq!(
        quoted(&net.raw_received(raw)),
        vec![(CauseCode::UNRECOGNIZED_MESSAGE, past)]
    );
    // Unknown message type with report bits 01: Unrecognized Message.
    net.raw_send(raw, &ep, vec![0x4f, 0x00, 0x00, 0x04]);
    assert_eq!(
        error_codes(&net.raw_received(raw)),
        vec![CauseCode::UNRECOGNIZED_MESSAGE]
    );
    // Unknown message type with bits 00: silently dropped.
    net.raw_send(raw, &ep, vec![0x0f, 0x00, 0x00, 0x04]);
    assert!(net.raw_received(raw).is_empty());
    // Registration with an ASAP transport: refused with 0x3 (Discrepancy #28).
    let AsapMessage::Registration {
        handle,
        pe: mut bad_pe,
    } = decode_asap(&reg).expect("ok").message
    else {
        unreachable!()
    };
    bad_pe.asap_transport = Some(TransportAddr::tcp(1, IpAddr::from([10, 0, 3, 1])));
    bad_pe.asap_transport.as_mut().expect("set").kind = TransportKind::Sctp;
    net.raw_send(
        raw,
        &ep,
        AsapMessage::Registration { handle, pe: bad_pe }.encode_to_vec(),
    );
    let got = net.raw_received(raw);
    assert!(
        matches!(
            &got[..],
            [(_, AsapMessage::RegistrationResponse { reject: true, error: Some(e), .. })]
                if e.first_code() == Some(CauseCode::INVALID_VALUES)
        ),
        "{got:?}"
    );
    // Handle resolution with an unknown skip-and-report parameter (0xC0AA): answered and
    // the parameter reported with cause 0x1.
    let mut hr = AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from(POOL),
        items: None,
    }
    .encode_to_vec();
    hr.extend_from_slice(&[0xc0, 0xaa, 0x00, 0x08, 1, 2, 3, 4]);
    let len = u16::try_from(hr.len()).expect("small");
    hr[2..4].copy_from_slice(&len.to_be_bytes());
    net.raw_send(raw, &ep, hr);
    let got = net.raw_received(raw);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(&got[0].1, AsapMessage::Error { error } if error.first_code() == Some(CauseCode::UNRECOGNIZED_PARAMETER))
    );
    assert!(
        matches!(&got[1].1, AsapMessage::HandleResolutionResponse { pes, .. } if pes.len() == 1)
    );
    // A response sent to the registrar: Unrecognized Message.
    net.raw_send(
        raw,
        &ep,
        AsapMessage::DeregistrationResponse {
            handle: PoolHandle::from(POOL),
            pe_id: PeId(1),
            error: None,
        }
        .encode_to_vec(),
    );
    assert_eq!(
        error_codes(&net.raw_received(raw)),
        vec![CauseCode::UNRECOGNIZED_MESSAGE]
    );

    assert_eq!(net.reg(r).counters().rx_invalid, 4);
    net.run(Duration::from_secs(20));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    assert_eq!(
        net.pe(pe).status(),
        vec![(PeId(0x1001), PeStatus::Registered)]
    );
}

#[test]
fn deregistration_on_shutdown() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    net.pe_command(pe, PeCommand::Deregister);
    assert!(ids(&mut net, r).is_empty());
    assert_eq!(count_removed(&net, r, RemovalReason::Deregistered), 1);
    assert!(net.pe_events(pe).contains(&PeEvent::Deregistered {
        pe_id: PeId(0x1001),
        confirmed: true
    }));
    net.run(Duration::from_secs(30));
    assert_eq!(net.pe(pe).counters().sent(asap_type::REGISTRATION), 1);
    assert!(net.reg(r).handlespace().is_empty());
}

#[test]
fn deregistration_of_unknown_pe_succeeds() {
    let mut net = new_net();
    net.add_registrar(1, RegistrarConfig::default());
    let raw = net.add_raw(1, false);
    let msg = AsapMessage::Deregistration {
        handle: PoolHandle::from(POOL),
        pe_id: PeId(42),
    };
    net.raw_send(raw, &reg_endpoint(1), msg.encode_to_vec());
    let got = net.raw_received(raw);
    assert!(matches!(
        &got[..],
        [(
            _,
            AsapMessage::DeregistrationResponse {
                pe_id: PeId(42),
                error: None,
                ..
            }
        )]
    ));
}

#[test]
fn update_policy_reregisters_at_once() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    let pe = net.add_pe(
        1,
        pe_cfg(1, Policy::LeastUsed { load: 10 }, vec![reg_endpoint(1)]),
    );
    net.run(Duration::from_secs(1));
    net.pe_command(pe, PeCommand::UpdatePolicy(Policy::LeastUsed { load: 99 }));
    let h = PoolHandle::from(POOL);
    let stored = net
        .reg(r)
        .handlespace()
        .get(&h, PeId(0x1001))
        .expect("PE")
        .pe
        .policy
        .clone();
    assert_eq!(stored, Policy::LeastUsed { load: 99 });
    assert_eq!(net.reg(r).counters().received(asap_type::REGISTRATION), 2);
}

#[test]
fn pe_moves_to_another_registrar_when_home_crashes() {
    let mut net = new_net();
    let r1 = net.add_registrar(1, RegistrarConfig::default());
    let r2 = net.add_registrar(2, RegistrarConfig::default());
    let pe = net.add_pe(
        1,
        pe_cfg(
            1,
            Policy::RoundRobin,
            vec![reg_endpoint(1), reg_endpoint(2)],
        ),
    );
    assert_eq!(ids(&mut net, r1), vec![PeId(0x1001)]);
    assert!(ids(&mut net, r2).is_empty());
    net.crash(r1);
    assert_eq!(ids(&mut net, r2), vec![PeId(0x1001)]);
    let evs = net.pe_events(pe);
    let regs = evs
        .iter()
        .filter(|e| matches!(e, PeEvent::Registered { .. }))
        .count();
    assert_eq!(regs, 2, "{evs:?}");
    let sid2 = net.reg(r2).server_id();
    let h = PoolHandle::from(POOL);
    assert_eq!(
        net.reg(r2)
            .handlespace()
            .get(&h, PeId(0x1001))
            .expect("PE")
            .pe
            .home_registrar,
        sid2
    );
}

#[test]
fn pe_hunt_skips_dead_and_silent_registrars() {
    let mut net = new_net();
    // Registrar 1 does not exist (connect fails), registrar 2 accepts but never answers.
    let r2 = net.add_registrar(2, RegistrarConfig::default());
    net.mute(r2, true);
    let r3 = net.add_registrar(3, RegistrarConfig::default());
    let pe = net.add_pe(
        1,
        pe_cfg(
            1,
            Policy::RoundRobin,
            vec![reg_endpoint(1), reg_endpoint(2), reg_endpoint(3)],
        ),
    );
    let t0 = net.now();
    net.run(Duration::from_secs(10));
    assert_eq!(ids(&mut net, r3), vec![PeId(0x1001)]);
    let at = net
        .events(pe)
        .iter()
        .find(|(_, e)| matches!(e, Ev::Pe(PeEvent::Registered { .. })))
        .map(|(t, _)| *t)
        .expect("registered");
    // Connected to registrar 2, then T2 (3 s) expired.
    assert_eq!(at - t0, Duration::from_secs(3));
}

#[test]
fn pe_keeps_hunting_with_backoff_until_a_registrar_appears() {
    let mut net = new_net();
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    net.run(Duration::from_secs(10));
    let no_reg: Vec<PeEvent> = net
        .pe_events(pe)
        .into_iter()
        .filter(|e| matches!(e, PeEvent::NoRegistrar { .. }))
        .collect();
    // Back-off 1, 2, 4 s …: rounds at 0, 1, 3, 7 s.
    assert_eq!(no_reg.len(), 4, "{no_reg:?}");
    let r = net.add_registrar(1, RegistrarConfig::default());
    net.run(Duration::from_secs(10));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
}

#[test]
fn pu_retries_at_another_registrar_after_t1() {
    let mut net = new_net();
    let r1 = net.add_registrar(1, RegistrarConfig::default());
    let r2 = net.add_registrar(2, RegistrarConfig::default());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(2)]));
    net.mute(r1, true);
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1), reg_endpoint(2)]));
    let t0 = net.now();
    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(10));
    assert_eq!(server_of(&a), PeId(0x1001));
    assert_eq!(
        net.now() - t0,
        Duration::from_millis(3000),
        "T1 = 3 s, then registrar 2"
    );
    assert_eq!(
        net.reg(r2)
            .counters()
            .received(asap_type::HANDLE_RESOLUTION),
        1
    );
}

#[test]
fn pu_times_out_when_registrars_do_not_answer() {
    let mut net = new_net();
    let r1 = net.add_registrar(1, RegistrarConfig::default());
    net.mute(r1, true);
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1)]));
    let t0 = net.now();
    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(60));
    // The same (only) registrar is retried: 3 tries × T1.
    assert!(
        matches!(
            a,
            PuEvent::Failed {
                error: PuError::Timeout,
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(net.now() - t0, Duration::from_millis(9000));
}

#[test]
fn pu_errors_unknown_pool_and_no_registrar() {
    let mut net = new_net();
    net.add_registrar(1, RegistrarConfig::default());
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1)]));
    let a = net.ask(pu, 1, "nope", false, Duration::from_secs(1));
    assert!(
        matches!(
            a,
            PuEvent::Failed {
                error: PuError::UnknownPool,
                ..
            }
        ),
        "{a:?}"
    );
    let lonely = net.add_pu(2, pu_cfg(vec![reg_endpoint(9)]));
    // (It waits `registrar_wait` for an announced registrar first.)
    let b = net.ask(lonely, 1, POOL, false, Duration::from_secs(10));
    assert!(
        matches!(
            b,
            PuEvent::Failed {
                error: PuError::NoRegistrar,
                ..
            }
        ),
        "{b:?}"
    );
}

#[test]
fn pu_requests_queue_behind_one_resolution() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1)]));
    // Three requests before the network moves.
    for k in 0..3 {
        net.with_pu(pu, |c, now| {
            c.command(
                now,
                PuCommand::GetPrimaryServer {
                    request: RequestId(k),
                    pool: PoolHandle::from(POOL),
                },
            )
        });
    }
    net.settle();
    let answers = net
        .pu_events(pu)
        .into_iter()
        .filter(|(_, e)| matches!(e, PuEvent::Server { .. }))
        .count();
    assert_eq!(answers, 3);
    assert_eq!(
        net.reg(r).counters().received(asap_type::HANDLE_RESOLUTION),
        1
    );
}

#[test]
fn server_announce_teaches_pus_and_pes_the_registrar() {
    let mut net = new_net();
    let cfg = RegistrarConfig {
        announce_group: Some(rserpool_proto::registrar::DEFAULT_ANNOUNCE_GROUP),
        asap_transports: vec![TransportAddr::tcp(3863, IpAddr::from([10, 0, 0, 1]))],
        ..RegistrarConfig::default()
    };
    let r = net.add_registrar(1, cfg);
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![]));
    let pu = net.add_pu(1, pu_cfg(vec![]));
    net.run(Duration::from_millis(1500));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    let sid = net.reg(r).server_id();
    assert!(net
        .pe_events(pe)
        .iter()
        .any(|e| matches!(e, PeEvent::Registered { home: Some(h), .. } if *h == sid)));
    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(1));
    assert_eq!(server_of(&a), PeId(0x1001));
    assert!(net.reg(r).counters().sent(asap_type::SERVER_ANNOUNCE) >= 2);
}

#[test]
fn pe_follows_a_keepalive_with_the_home_flag() {
    let mut net = new_net();
    // A scripted "registrar" the PE registers at.
    let raw = net.add_raw(1, true);
    let raw_ep = Endpoint::tcp(SocketAddr::from(([10, 0, 3, 1], 3863)));
    let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![raw_ep]));
    let got = net.raw_received(raw);
    let [(conn, AsapMessage::Registration { handle, pe: p })] = &got[..] else {
        panic!("{got:?}")
    };
    let (conn, handle, id) = (*conn, handle.clone(), p.id);
    let resp = AsapMessage::RegistrationResponse {
        reject: false,
        handle: handle.clone(),
        pe_id: id,
        error: None,
    };
    net.raw_reply(raw, conn, resp.encode_to_vec());
    // Keep-alive without the H flag and without a PE ID: acked, server ID learnt.
    let ka = |home: bool, sid: u32| AsapMessage::EndpointKeepAlive {
        home,
        server_id: rserpool_wire::ServerId(sid),
        handle: handle.clone(),
        pe_id: None,
    };
    net.raw_reply(raw, conn, ka(false, 0xAAAA).encode_to_vec());
    let got = net.raw_received(raw);
    assert!(
        matches!(&got[..], [(_, AsapMessage::EndpointKeepAliveAck { pe_id, .. })] if *pe_id == id)
    );
    assert_eq!(
        net.pe(pe).home().map(|h| h.1),
        Some(Some(rserpool_wire::ServerId(0xAAAA)))
    );
    // A keep-alive for another pool is ignored (KA1).
    let other = AsapMessage::EndpointKeepAlive {
        home: true,
        server_id: rserpool_wire::ServerId(0xBBBB),
        handle: PoolHandle::from("other"),
        pe_id: None,
    };
    net.raw_reply(raw, conn, other.encode_to_vec());
    assert!(net.raw_received(raw).is_empty());
    // H = 1 from another server ID: it becomes home (e.g. after a takeover).
    net.raw_reply(raw, conn, ka(true, 0xBBBB).encode_to_vec());
    assert!(net.pe_events(pe).contains(&PeEvent::HomeChanged {
        server_id: rserpool_wire::ServerId(0xBBBB),
        conn: net.pe(pe).home().expect("home").0,
    }));
    // Unsolicited de-registration response (lifetime expired at the registrar):
    // the PE registers again at once.
    net.raw_received(raw);
    let dr = AsapMessage::DeregistrationResponse {
        handle,
        pe_id: id,
        error: None,
    };
    net.raw_reply(raw, conn, dr.encode_to_vec());
    assert!(net
        .pe_events(pe)
        .contains(&PeEvent::RegistrationLost { pe_id: id }));
    let got = net.raw_received(raw);
    assert!(
        matches!(&got[..], [(_, AsapMessage::Registration { .. })]),
        "{got:?}"
    );
}

#[test]
fn closed_connection_does_not_remove_pes_unless_configured() {
    for remove in [false, true] {
        let mut net = new_net();
        let r = net.add_registrar(
            1,
            RegistrarConfig {
                remove_pes_on_close: remove,
                ..RegistrarConfig::default()
            },
        );
        let pe = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
        net.crash(pe);
        if remove {
            assert!(ids(&mut net, r).is_empty());
            assert_eq!(count_removed(&net, r, RemovalReason::ConnectionClosed), 1);
        } else {
            assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
            // No connection for the keep-alive: removed after the timeout.
            net.run(Duration::from_secs(5));
            assert!(ids(&mut net, r).is_empty());
            assert_eq!(count_removed(&net, r, RemovalReason::KeepAliveTimeout), 1);
        }
    }
}

#[test]
fn dump_snapshot() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    net.add_pe(2, pe_cfg(2, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let snap = net.reg(r).snapshot();
    assert_eq!(snap.pools.len(), 1);
    assert_eq!(snap.pools[0].pes.len(), 2);
    assert!(snap.pools[0].pes.iter().all(|(_, bk)| bk.conn.is_some()));
}

#[test]
fn invalid_registrations_are_refused() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let raw = net.add_raw(1, false);
    let ep = reg_endpoint(1);
    let refused = |net: &mut Net, handle: PoolHandle, pe: PoolElement| -> CauseCode {
        net.raw_send(
            raw,
            &ep,
            AsapMessage::Registration { handle, pe }.encode_to_vec(),
        );
        let got = net.raw_received(raw);
        match &got[..] {
            [(
                _,
                AsapMessage::RegistrationResponse {
                    reject: true,
                    error: Some(e),
                    ..
                },
            )] => e.first_code().expect("cause"),
            other => panic!("{other:?}"),
        }
    };
    let AsapMessage::Registration { handle, pe: base } =
        decode_asap(&registration_bytes(0x55, 5000))
            .expect("ok")
            .message
    else {
        unreachable!()
    };
    let pe = |f: &dyn Fn(&mut PoolElement)| {
        let mut p = base.clone();
        f(&mut p);
        p
    };
    // PE ID 0.
    let c = refused(&mut net, handle.clone(), pe(&|p| p.id = PeId(0)));
    assert_eq!(c, CauseCode::INVALID_VALUES);
    // Registration Life 0.
    let c = refused(&mut net, handle.clone(), pe(&|p| p.registration_life = 0));
    assert_eq!(c, CauseCode::INVALID_VALUES);
    // Pool handle longer than the configured maximum (64).
    let c = refused(&mut net, PoolHandle::new(vec![b'x'; 65]), pe(&|_| {}));
    assert_eq!(c, CauseCode::INVALID_VALUES);
    // UDP user transport into a TCP pool.
    let c = refused(
        &mut net,
        handle.clone(),
        pe(&|p| {
            p.user_transport = UserTransport::Ip(TransportAddr::udp(9, IpAddr::from([10, 0, 3, 1])))
        }),
    );
    assert_eq!(c, CauseCode::INCONSISTENT_TRANSPORT);
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    // A re-registration may change the policy values and the address, not the type.
    net.raw_send(
        raw,
        &ep,
        AsapMessage::Registration {
            handle: handle.clone(),
            pe: pe(&|_| {}),
        }
        .encode_to_vec(),
    );
    net.raw_received(raw);
    let moved = pe(&|p| {
        p.user_transport = UserTransport::Ip(TransportAddr::tcp(9001, IpAddr::from([10, 0, 3, 9])))
    });
    net.raw_send(
        raw,
        &ep,
        AsapMessage::Registration {
            handle: handle.clone(),
            pe: moved.clone(),
        }
        .encode_to_vec(),
    );
    let got = net.raw_received(raw);
    assert!(matches!(
        &got[..],
        [(_, AsapMessage::RegistrationResponse { reject: false, .. })]
    ));
    let stored = net
        .reg(r)
        .handlespace()
        .get(&handle, PeId(0x55))
        .expect("PE")
        .pe
        .clone();
    assert_eq!(stored.user_transport, moved.user_transport);
    assert!(net
        .reg_events(r)
        .iter()
        .any(|e| matches!(e, RegistrarEvent::PeUpdated { pe, .. } if pe.id == PeId(0x55))));
}

#[test]
fn registration_life_in_seconds() {
    let mut net = new_net();
    let r = net.add_registrar(
        1,
        RegistrarConfig {
            lifetime_unit: rserpool_wire::LifetimeUnit::Seconds,
            keepalive_interval: None,
            ..RegistrarConfig::default()
        },
    );
    let raw = net.add_raw(1, false);
    net.raw_send(raw, &reg_endpoint(1), registration_bytes(0x66, 2));
    net.run(Duration::from_millis(1999));
    assert_eq!(ids(&mut net, r), vec![PeId(0x66)]);
    net.run(Duration::from_millis(1));
    assert!(ids(&mut net, r).is_empty());
    // The PE side writes the unit it is configured with.
    let mut cfg = pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]);
    cfg.lifetime_unit = rserpool_wire::LifetimeUnit::Seconds;
    cfg.registration_life = Duration::from_secs(30);
    net.add_pe(1, cfg);
    let h = PoolHandle::from(POOL);
    let life = net
        .reg(r)
        .handlespace()
        .get(&h, PeId(0x1001))
        .expect("PE")
        .pe
        .registration_life;
    assert_eq!(life, 30);
}

#[test]
fn pu_answers_from_stale_cache_when_no_registrar_is_reachable() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1)]));
    assert_eq!(
        server_of(&net.ask(pu, 1, POOL, false, Duration::from_secs(1))),
        PeId(0x1001)
    );
    net.crash(r);
    net.run(Duration::from_secs(6));
    let a = net.ask(pu, 2, POOL, false, Duration::from_secs(1));
    assert_eq!(
        server_of(&a),
        PeId(0x1001),
        "stale entry used as a fallback"
    );
    let evs = net.pu_events(pu);
    assert!(
        evs.iter()
            .any(|(_, e)| matches!(e, PuEvent::NoRegistrar { .. })),
        "{evs:?}"
    );
}

#[test]
fn pe_rehomes_when_reregistration_times_out() {
    let mut net = new_net();
    let r1 = net.add_registrar(
        1,
        RegistrarConfig {
            keepalive_interval: None,
            ..RegistrarConfig::default()
        },
    );
    let r2 = net.add_registrar(2, RegistrarConfig::default());
    let pe = net.add_pe(
        1,
        pe_cfg(
            1,
            Policy::RoundRobin,
            vec![reg_endpoint(1), reg_endpoint(2)],
        ),
    );
    assert_eq!(ids(&mut net, r1), vec![PeId(0x1001)]);
    // Registrar 1 hangs: the re-registration at 10 s gets no answer; T2 = 3 s later the
    // PE registers at registrar 2.
    net.mute(r1, true);
    net.run(Duration::from_millis(12_999));
    assert!(ids(&mut net, r2).is_empty());
    net.run(Duration::from_millis(1));
    assert_eq!(ids(&mut net, r2), vec![PeId(0x1001)]);
    let regs = net
        .pe_events(pe)
        .into_iter()
        .filter(|e| matches!(e, PeEvent::Registered { .. }))
        .count();
    assert_eq!(regs, 2);
}

/// Same seeds, same inputs ⇒ same outputs (the simulator relies on it).
#[test]
fn cores_are_deterministic() {
    fn run(base: Instant) -> Vec<String> {
        let mut net = Net::new(base, 0);
        let r1 = net.add_registrar(1, RegistrarConfig::default());
        net.add_registrar(2, RegistrarConfig::default());
        let regs = vec![reg_endpoint(1), reg_endpoint(2)];
        for i in 1..=3 {
            let mut cfg = pe_cfg(
                i,
                Policy::WeightedRandom {
                    weight: u32::from(i),
                },
                regs.clone(),
            );
            cfg.pe_id = None;
            cfg.hunt.order = HuntOrder::Random;
            net.add_pe(i, cfg);
        }
        let mut pus = Vec::new();
        for k in 1..=2 {
            let mut cfg = pu_cfg(regs.clone());
            cfg.hunt.order = HuntOrder::Random;
            pus.push(net.add_pu(k, cfg));
        }
        for round in 0..5 {
            for &pu in &pus {
                net.ask(pu, round, POOL, round % 2 == 1, Duration::from_secs(20));
            }
            net.run(Duration::from_millis(2500));
            if round == 2 {
                net.crash(r1);
            }
        }
        net.run(Duration::from_secs(30));
        (0..net.node_count())
            .flat_map(|n| {
                net.events(n)
                    .iter()
                    .map(|(t, e)| format!("{:?} {e:?}", *t - base))
            })
            .collect()
    }
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let a = run(base);
    let b = run(base);
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b);
}

/// A handle resolution response never outgrows the 16-bit Message Length: PEs with huge
/// address lists (each near 60 KB) are handed out one per response, and a registration whose
/// PE alone cannot fit beside the policy is never corrupted into a bad message.
#[test]
fn handle_resolution_response_stays_within_message_length() {
    let mut net = new_net();
    let _registrar = net.add_registrar(1, RegistrarConfig::default());
    let ep = reg_endpoint(1);
    let addrs: Vec<IpAddr> = (0..3000u16)
        .map(|i| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 1, i]))
        .collect();
    for (i, id) in [0x51u32, 0x52].into_iter().enumerate() {
        let pe = PoolElement {
            id: PeId(id),
            home_registrar: rserpool_wire::ServerId(0),
            registration_life: 60_000,
            user_transport: UserTransport::Ip(TransportAddr::sctp(
                9000,
                rserpool_wire::TransportUse::DATA_ONLY,
                addrs.clone(),
            )),
            policy: Policy::RoundRobin,
            asap_transport: None,
        };
        assert_eq!(
            rserpool_wire::codec::pool_element_len(&pe),
            rserpool_wire::codec::pool_element_tlv(&pe).len()
        );
        let bytes = AsapMessage::Registration {
            handle: PoolHandle::from(POOL),
            pe,
        }
        .encode_to_vec();
        assert!(bytes.len() < 65536);
        let raw = net.add_raw(10 + i as u8, false);
        net.raw_send(raw, &ep, bytes);
        assert!(matches!(
            &net.raw_received(raw)[..],
            [(_, AsapMessage::RegistrationResponse { reject: false, .. })]
        ));
    }
    let pu = net.add_raw(20, false);
    for _ in 0..2 {
        let hr = AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from(POOL),
            items: Some(3),
        };
        net.raw_send(pu, &ep, hr.encode_to_vec());
        let got = net.raw_received(pu);
        let [(_, AsapMessage::HandleResolutionResponse { pes, error, .. })] = &got[..] else {
            panic!("{got:?}")
        };
        // Two PEs of ~60 KB each: only one fits; `raw_received` decoded it, so it is whole.
        assert_eq!(error, &None);
        assert_eq!(pes.len(), 1);
        assert_eq!(
            pes[0].user_transport.as_ip().map(|t| t.addrs.len()),
            Some(3000)
        );
    }
}

/// RSPLIB cannot parse a TCP transport TLV in an ASAP_SERVER_ANNOUNCE: an announce with the
/// SCTP transports only goes first, then one with SCTP followed by TCP (which RSPLIB drops
/// as a whole, where a TCP-only announce would make it connect to the UDP source port).
#[test]
fn server_announce_keeps_sctp_and_tcp_transports_apart() {
    use rserpool_wire::TransportUse;
    let sctp = TransportAddr::sctp(
        3863,
        TransportUse::DATA_ONLY,
        vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])],
    );
    let tcp = TransportAddr::tcp(3863, IpAddr::from([10, 0, 0, 1]));
    let announces = |transports: Vec<TransportAddr>| {
        let mut reg = Registrar::new(
            RegistrarConfig {
                announce_group: Some(rserpool_proto::registrar::DEFAULT_ANNOUNCE_GROUP),
                asap_transports: transports,
                ..RegistrarConfig::default()
            },
            7,
        );
        reg.handle_timeout(new_net().now());
        let mut out = Vec::new();
        while let Some(t) = reg.poll_transmit() {
            assert!(matches!(t.dest, Dest::Datagram(_)), "{t:?}");
            match decode_asap(&t.bytes).unwrap().message {
                AsapMessage::ServerAnnounce { transports, .. } => out.push(transports),
                other => panic!("{other:?}"),
            }
        }
        out
    };
    assert_eq!(
        announces(vec![tcp.clone(), sctp.clone()]),
        vec![vec![sctp.clone()], vec![sctp.clone(), tcp.clone()]]
    );
    assert_eq!(announces(vec![sctp.clone()]), vec![vec![sctp]]);
    assert_eq!(announces(vec![tcp.clone()]), vec![vec![tcp]]);
    assert_eq!(announces(vec![]), vec![Vec::<TransportAddr>::new()]);
}

// ------------------------------------------------------------------------------------------
// Hardening: waiting for announced registrars, temporary refusals

fn announcing_registrar() -> RegistrarConfig {
    RegistrarConfig {
        announce_group: Some(rserpool_proto::registrar::DEFAULT_ANNOUNCE_GROUP),
        asap_transports: vec![TransportAddr::tcp(3863, IpAddr::from([10, 0, 0, 1]))],
        ..RegistrarConfig::default()
    }
}

/// A PU whose configured registrar is dead, asked at once: it waits for the announce of
/// a live registrar instead of failing before the first announce could arrive.
#[test]
fn pu_waits_for_an_announced_registrar() {
    let mut net = new_net();
    let r = net.add_registrar(1, announcing_registrar());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    assert_eq!(ids(&mut net, r), vec![PeId(0x1001)]);
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(9)]));
    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(10));
    assert_eq!(server_of(&a), PeId(0x1001));
    let known = net.with_pu(pu, |c, now| c.known_registrars(now));
    assert!(known.contains(&reg_endpoint(1)), "{known:?}");
}

/// Without any registrar the wait is bounded: NoRegistrar after `registrar_wait`; without
/// announces the request fails as soon as the round is over.
#[test]
fn pu_gives_up_waiting_for_registrars() {
    let mut net = new_net();
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(9)]));
    let t0 = net.now();
    let a = net.ask(pu, 1, POOL, false, Duration::from_secs(30));
    assert!(
        matches!(
            a,
            PuEvent::Failed {
                error: PuError::NoRegistrar,
                ..
            }
        ),
        "{a:?}"
    );
    let waited = net.now() - t0;
    let wait = PoolUserConfig::default().registrar_wait;
    assert!(waited >= wait && waited < wait * 2, "{waited:?}");

    let quiet = net.add_pu(
        2,
        PoolUserConfig {
            accept_announces: false,
            ..pu_cfg(vec![reg_endpoint(9)])
        },
    );
    let t1 = net.now();
    let b = net.ask(quiet, 1, POOL, false, Duration::from_secs(30));
    assert!(
        matches!(
            b,
            PuEvent::Failed {
                error: PuError::NoRegistrar,
                ..
            }
        ),
        "{b:?}"
    );
    assert!(net.now() - t1 < wait, "{:?}", net.now() - t1);
}

/// A cache entry marked stale is resolved again on the next request.
#[test]
fn pu_mark_stale_resolves_again() {
    let mut net = new_net();
    let r = net.add_registrar(1, RegistrarConfig::default());
    net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let pu = net.add_pu(1, pu_cfg(vec![reg_endpoint(1)]));
    server_of(&net.ask(pu, 1, POOL, false, Duration::from_secs(1)));
    let before = net.reg(r).counters().received(asap_type::HANDLE_RESOLUTION);
    server_of(&net.ask(pu, 2, POOL, false, Duration::from_secs(1)));
    assert_eq!(
        net.reg(r).counters().received(asap_type::HANDLE_RESOLUTION),
        before,
        "fresh cache answers"
    );
    net.with_pu(pu, |c, _| c.mark_stale(&PoolHandle::from(POOL)));
    server_of(&net.ask(pu, 3, POOL, false, Duration::from_secs(1)));
    assert_eq!(
        net.reg(r).counters().received(asap_type::HANDLE_RESOLUTION),
        before + 1
    );
}

/// Lack of resources is temporary: the PE registers again after a back-off and gets in
/// once there is room. Inconsistent policy stays refused (see
/// `inconsistent_policy_is_rejected_with_0x5`).
#[test]
fn pe_retries_a_temporary_refusal_with_back_off() {
    let mut net = new_net();
    let mut cfg = RegistrarConfig::default();
    cfg.handlespace.max_pes = 1;
    let r = net.add_registrar(1, cfg);
    let first = net.add_pe(1, pe_cfg(1, Policy::RoundRobin, vec![reg_endpoint(1)]));
    let second = net.add_pe(2, pe_cfg(2, Policy::RoundRobin, vec![reg_endpoint(1)]));
    net.run(Duration::from_millis(100));
    let evs = net.pe_events(second);
    let Some(PeEvent::RegistrationRefused {
        pe_id,
        cause,
        retry_at,
        ..
    }) = evs.first()
    else {
        panic!("{evs:?}")
    };
    assert_eq!(*pe_id, PeId(0x1002));
    assert_eq!(*cause, CauseCode::LACK_OF_RESOURCES);
    assert!(*retry_at > net.now());
    assert_eq!(
        net.pe(second).status(),
        vec![(PeId(0x1002), PeStatus::Unregistered)]
    );
    // Retried, with growing pauses, while the handlespace is full.
    net.run(Duration::from_secs(10));
    let refusals: Vec<Instant> = net
        .pe_events(second)
        .iter()
        .filter_map(|e| match e {
            PeEvent::RegistrationRefused { retry_at, .. } => Some(*retry_at),
            _ => None,
        })
        .collect();
    assert!(refusals.len() >= 3, "{refusals:?}");
    assert!(refusals.len() < 10, "no back-off: {refusals:?}");
    // Room again: the next retry gets in.
    net.pe_command(first, PeCommand::Deregister);
    net.run(Duration::from_secs(70));
    assert_eq!(
        net.pe(second).status(),
        vec![(PeId(0x1002), PeStatus::Registered)]
    );
    assert_eq!(ids(&mut net, r), vec![PeId(0x1002)]);
}

#[test]
fn refusal_causes_are_classified() {
    use rserpool_proto::pool_element::refusal_is_permanent;
    for c in [0x1, 0x2, 0x3, 0x4, 0x5, 0x7, 0x8, 0x9, 0xa, 0xf003] {
        assert!(refusal_is_permanent(CauseCode(c)), "{c:#x}");
    }
    for c in [0x0, 0x6, 0x4242] {
        assert!(!refusal_is_permanent(CauseCode(c)), "{c:#x}");
    }
}
