//! Core-level tests of the ENRP procedures and of bad input on the ENRP port: one
//! registrar driven directly, the other registrars played by the test (or a second core
//! wired by hand).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_wire::{
    decode_asap, decode_enrp, enrp_type, AsapMessage, CauseCode, EnrpMessage, PeId, Policy,
    PoolElement, PoolEntry, PoolHandle, Protocol, ServerId, TransportAddr, UpdateAction,
    UserTransport,
};

use super::{EnrpEvent, EnrpPhase, PeerState, TakeoverElection};
use crate::io::{ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportEvent, TransportProto};
use crate::registrar::{Registrar, RegistrarConfig, RegistrarEvent};

const ME: ServerId = ServerId(0x200);
const LOW: ServerId = ServerId(0x100);
const HIGH: ServerId = ServerId(0x300);

#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn t0() -> Instant {
    Instant::now()
}

fn meta(protocol: Protocol, transport: TransportProto, port: u16) -> RecvMeta {
    let peer = SocketAddr::from(([10, 0, 0, 9], port));
    RecvMeta {
        protocol,
        transport,
        peer,
        peer_addrs: vec![peer.ip()],
        identity: None,
    }
}

fn enrp_meta() -> RecvMeta {
    meta(Protocol::Enrp, TransportProto::Tcp, 40000)
}

fn registrar(f: impl FnOnce(&mut RegistrarConfig)) -> Registrar {
    let mut cfg = RegistrarConfig {
        server_id: Some(ME),
        ..RegistrarConfig::default()
    };
    f(&mut cfg);
    let mut r = Registrar::new(cfg, 7);
    r.handle_timeout(t0());
    r
}

fn drain(r: &mut Registrar) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn enrp_out(r: &mut Registrar) -> Vec<(Dest, EnrpMessage)> {
    drain(r)
        .into_iter()
        .filter(|t| t.protocol == Protocol::Enrp)
        .map(|t| (t.dest, decode_enrp(&t.bytes).expect("valid ENRP").message))
        .collect()
}

fn events(r: &mut Registrar) -> Vec<EnrpEvent> {
    std::iter::from_fn(|| r.poll_event())
        .filter_map(|e| match e {
            RegistrarEvent::Enrp(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn send(r: &mut Registrar, now: Instant, conn: u64, msg: &EnrpMessage) {
    r.handle_message(now, ConnId(conn), &enrp_meta(), &msg.encode_to_vec());
}

fn presence(from: ServerId, checksum: Option<u16>, reply: bool) -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: reply,
        sender: from,
        receiver: ME,
        checksum,
        server_info: None,
    }
}

fn pe(id: u32, home: ServerId, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: home,
        registration_life: 60_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(7000, IpAddr::from([10, 0, 1, 1]))),
        policy,
        asap_transport: Some(TransportAddr::tcp(2960, IpAddr::from([10, 0, 1, 1]))),
    }
}

fn add(from: ServerId, handle: &str, pe: PoolElement) -> EnrpMessage {
    EnrpMessage::HandleUpdate {
        takeover: false,
        sender: from,
        receiver: ME,
        action: UpdateAction::ADD_PE,
        handle: PoolHandle::from(handle),
        pe,
    }
}

fn ids(r: &Registrar, handle: &str) -> Vec<(u32, ServerId)> {
    r.handlespace()
        .pool_entries(&PoolHandle::from(handle))
        .map(|e| (e.pe.id.0, e.pe.home_registrar))
        .collect()
}

#[test]
fn alone_it_serves_at_once_with_peers_it_discovers_first() {
    let r = registrar(|_| {});
    assert_eq!(r.enrp_phase(), EnrpPhase::Serving);
    let mut r =
        registrar(|c| c.enrp.peers = vec![Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 9901)))]);
    assert_eq!(r.enrp_phase(), EnrpPhase::Discovering);
    // A presence with R = 1 goes to the unidentified static peer at once.
    let out = enrp_out(&mut r);
    assert!(out.iter().any(|(d, m)| matches!(d, Dest::Endpoint(_))
        && matches!(
            m,
            EnrpMessage::Presence {
                reply_required: true,
                ..
            }
        )));
    // Nobody answers: serving alone after the discovery timeout.
    r.handle_timeout(t0() + Duration::from_secs(6));
    assert_eq!(r.enrp_phase(), EnrpPhase::Serving);
    assert!(events(&mut r).contains(&EnrpEvent::SyncDone {
        mentor: None,
        pes: 0
    }));
}

#[test]
fn garbage_gets_an_enrp_error_and_the_registrar_stays() {
    let now = t0();
    let mut r = registrar(|_| {});
    // Truncated header, then a message with a bad parameter length.
    r.handle_message(now, ConnId(1), &enrp_meta(), &[0x01, 0x00, 0x00]);
    let mut bad = presence(LOW, Some(1), false).encode_to_vec();
    bad[14] = 0xff; // a parameter length running past the message
    r.handle_message(now, ConnId(1), &enrp_meta(), &bad);
    let out = enrp_out(&mut r);
    assert!(!out.is_empty());
    assert!(out
        .iter()
        .all(|(d, m)| *d == Dest::Conn(ConnId(1)) && matches!(m, EnrpMessage::Error { .. })));
    assert_eq!(r.counters().rx_invalid, 2);
    assert_eq!(r.counters().enrp.errors_sent, out.len() as u64);
    // Still serving: a valid presence is heard.
    send(&mut r, now, 1, &presence(LOW, None, false));
    assert_eq!(r.peers().len(), 1);
    // An ENRP_ERROR is never answered.
    let err = EnrpMessage::Error {
        sender: LOW,
        receiver: ME,
        error: rserpool_wire::OperationError::code(CauseCode::UNSPECIFIED),
    };
    drain(&mut r);
    send(&mut r, now, 1, &err);
    assert!(enrp_out(&mut r).is_empty());
    assert_eq!(r.counters().enrp.errors_received, 1);
}

#[test]
fn our_own_server_id_is_ignored_looped_or_claimed() {
    let now = t0();
    let mut r = registrar(|_| {});
    let mine = presence(ME, Some(0), true).encode_to_vec();
    r.handle_datagram(now, &meta(Protocol::Enrp, TransportProto::Udp, 9901), &mine);
    r.handle_message(now, ConnId(1), &enrp_meta(), &mine);
    let c = r.counters().enrp;
    assert_eq!((c.own_id_looped, c.own_id_claims), (1, 1));
    assert!(r.peers().is_empty());
    assert!(drain(&mut r).is_empty());
}

#[test]
fn unlisted_senders_are_added_and_asked_or_dropped() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(
        &mut r,
        now,
        1,
        &EnrpMessage::ListRequest {
            sender: LOW,
            receiver: ME,
        },
    );
    assert_eq!(r.peers()[0].server_id, LOW);
    assert_eq!(r.peers()[0].state, PeerState::Active);
    let out = enrp_out(&mut r);
    assert!(out.iter().any(|(d, m)| *d == Dest::Conn(ConnId(1))
        && matches!(
            m,
            EnrpMessage::Presence {
                reply_required: true,
                ..
            }
        )));
    assert!(out
        .iter()
        .any(|(_, m)| matches!(m, EnrpMessage::ListResponse { .. })));
    let mut r = registrar(|c| c.enrp.accept_unlisted_peers = false);
    send(&mut r, now, 1, &presence(LOW, None, true));
    assert!(r.peers().is_empty());
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.counters().enrp.unlisted_dropped, 1);
}

#[test]
fn handle_updates_move_ownership_and_del_needs_the_home() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(
        &mut r,
        now,
        1,
        &add(LOW, "p", pe(1, LOW, Policy::RoundRobin)),
    );
    // The home is the sender, whatever the PE says.
    send(
        &mut r,
        now,
        2,
        &add(HIGH, "p", pe(2, LOW, Policy::RoundRobin)),
    );
    assert_eq!(ids(&r, "p"), vec![(1, LOW), (2, HIGH)]);
    // PE 1 moves to HIGH.
    send(
        &mut r,
        now,
        2,
        &add(HIGH, "p", pe(1, HIGH, Policy::RoundRobin)),
    );
    assert_eq!(ids(&r, "p"), vec![(1, HIGH), (2, HIGH)]);
    // A late DEL_PE from the former owner is ignored; the owner's removes it.
    let del = |from| EnrpMessage::HandleUpdate {
        takeover: false,
        sender: from,
        receiver: ME,
        action: UpdateAction::DEL_PE,
        handle: PoolHandle::from("p"),
        pe: pe(1, from, Policy::RoundRobin),
    };
    send(&mut r, now, 1, &del(LOW));
    assert_eq!(ids(&r, "p").len(), 2);
    assert_eq!(r.counters().enrp.updates_ignored, 1);
    send(&mut r, now, 2, &del(HIGH));
    assert_eq!(ids(&r, "p"), vec![(2, HIGH)]);
    // An ADD_PE naming us as home is ignored (RSPLIB).
    send(
        &mut r,
        now,
        1,
        &add(LOW, "p", pe(3, ME, Policy::RoundRobin)),
    );
    assert_eq!(ids(&r, "p").len(), 1);
    // Non-owned PEs expire by their Registration Life (60 s) unless refreshed.
    r.handle_timeout(now + Duration::from_secs(61));
    assert!(ids(&r, "p").is_empty());
}

#[test]
fn an_update_with_a_conflicting_policy_is_refused_with_cause_0x5() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(
        &mut r,
        now,
        1,
        &add(LOW, "p", pe(1, LOW, Policy::RoundRobin)),
    );
    drain(&mut r);
    send(
        &mut r,
        now,
        1,
        &add(LOW, "p", pe(2, LOW, Policy::LeastUsed { load: 3 })),
    );
    assert_eq!(ids(&r, "p"), vec![(1, LOW)], "pool unchanged");
    let out = enrp_out(&mut r);
    let [(
        Dest::Conn(ConnId(1)),
        EnrpMessage::Error {
            error, receiver, ..
        },
    )] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(*receiver, LOW);
    assert_eq!(error.causes[0].code, CauseCode::INCONSISTENT_POLICY);
    assert_eq!(r.counters().enrp.updates_refused, 1);
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        EnrpEvent::UpdateRefused { cause, .. } if *cause == CauseCode::INCONSISTENT_POLICY
    )));
}

/// `n` PEs of peer `LOW` in 3 pools, applied as updates.
fn with_pes(r: &mut Registrar, now: Instant, n: u32) {
    for i in 1..=n {
        let h = format!("pool{}", i % 3);
        send(r, now, 1, &add(LOW, &h, pe(i, LOW, Policy::RoundRobin)));
    }
    drain(r);
}

#[test]
fn handle_tables_come_in_bounded_parts_with_a_session_per_requester() {
    let now = t0();
    let mut r = registrar(|_| {});
    with_pes(&mut r, now, 1000);
    let req = |from| EnrpMessage::HandleTableRequest {
        own_children_only: false,
        sender: from,
        receiver: ME,
    };
    // Two requesters interleaved: each gets every PE exactly once.
    let mut got = [Vec::new(), Vec::new()];
    let mut done = [false, false];
    while !(done[0] && done[1]) {
        for (k, from) in [HIGH, ServerId(0x400)].into_iter().enumerate() {
            if done[k] {
                continue;
            }
            send(&mut r, now, 10 + k as u64, &req(from));
            for (_, m) in enrp_out(&mut r) {
                let EnrpMessage::HandleTableResponse { more, pools, .. } = m else {
                    continue;
                };
                let n: usize = pools.iter().map(|p| p.pes.len()).sum();
                assert!(n <= 128, "at most max_pes_per_response");
                got[k].extend(pools.iter().flat_map(|p| p.pes.iter().map(|e| e.id)));
                done[k] = !more;
            }
        }
    }
    for g in &mut got {
        assert_eq!(g.len(), 1000);
        g.sort();
        g.dedup();
        assert_eq!(g.len(), 1000);
    }
}

#[test]
fn unsolicited_handle_tables_are_dropped() {
    let now = t0();
    let mut r = registrar(|_| {});
    let resp = EnrpMessage::HandleTableResponse {
        reject: false,
        more: false,
        sender: LOW,
        receiver: ME,
        pools: vec![PoolEntry {
            handle: PoolHandle::from("p"),
            pes: vec![pe(1, LOW, Policy::RoundRobin)],
        }],
    };
    send(&mut r, now, 1, &resp);
    assert!(r.handlespace().is_empty());
    assert_eq!(r.counters().enrp.unsolicited, 1);
}

/// Wire two cores by hand: A's transmits to B's endpoint arrive on B's conn 1, B's
/// answers on A's conn 2. Returns the messages moved.
fn shuttle(a: &mut Registrar, b: &mut Registrar, now: Instant, b_ep: &Endpoint) -> usize {
    let mut moved = 0;
    loop {
        let mut any = false;
        for t in drain(a) {
            if t.dest == Dest::Endpoint(b_ep.clone()) || t.dest == Dest::Conn(ConnId(2)) {
                b.handle_message(now, ConnId(1), &enrp_meta(), &t.bytes);
                moved += 1;
                any = true;
            }
        }
        for t in drain(b) {
            if t.dest == Dest::Conn(ConnId(1)) {
                a.handle_message(now, ConnId(2), &enrp_meta(), &t.bytes);
                moved += 1;
                any = true;
            }
        }
        if !any {
            return moved;
        }
    }
}

/// A registrar starting with a static peer downloads its handlespace from it (the mentor),
/// in parts; here 100,000 PEs.
#[test]
fn startup_download_of_100000_pes_from_the_mentor() {
    let now = t0();
    let b_ep = Endpoint::tcp(SocketAddr::from(([10, 0, 0, 2], 9901)));
    let mut b = Registrar::new(
        RegistrarConfig {
            server_id: Some(HIGH),
            ..RegistrarConfig::default()
        },
        8,
    );
    b.handle_timeout(now);
    for i in 1..=100_000u32 {
        let h = format!("pool{}", i % 7);
        b.handle_message(
            now,
            ConnId(9),
            &enrp_meta(),
            &add(LOW, &h, pe(i, LOW, Policy::RoundRobin)).encode_to_vec(),
        );
    }
    drain(&mut b);
    let mut a = registrar(|c| c.enrp.peers = vec![b_ep.clone()]);
    assert_eq!(a.enrp_phase(), EnrpPhase::Discovering);
    a.handle_transport(
        now,
        TransportEvent::Connected {
            conn: ConnId(2),
            endpoint: b_ep.clone(),
        },
    );
    let moved = shuttle(&mut a, &mut b, now, &b_ep);
    assert_eq!(a.enrp_phase(), EnrpPhase::Serving);
    assert_eq!(a.handlespace().len(), 100_000);
    assert!(moved > 100_000 / 128);
    assert!(events(&mut a).contains(&EnrpEvent::SyncDone {
        mentor: Some(HIGH),
        pes: 100_000
    }));
    a.handlespace().check_invariants();
    assert_eq!(a.handlespace().checksum(LOW), b.handlespace().checksum(LOW));
}

#[test]
fn a_takeover_of_ourselves_is_answered_with_presences() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(&mut r, now, 1, &presence(LOW, None, false));
    drain(&mut r);
    for msg in [
        EnrpMessage::InitTakeover {
            sender: LOW,
            receiver: ME,
            target: ME,
        },
        EnrpMessage::TakeoverServer {
            sender: LOW,
            receiver: ME,
            target: ME,
        },
    ] {
        send(&mut r, now, 1, &msg);
        let out = enrp_out(&mut r);
        assert!(out
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::Presence { .. })));
        assert!(!out
            .iter()
            .any(|(_, m)| matches!(m, EnrpMessage::InitTakeoverAck { .. })));
    }
    assert_eq!(r.counters().enrp.takeovers_of_self, 2);
}

#[test]
fn with_no_peer_to_ask_the_takeover_is_won_at_once_and_pes_are_claimed() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(&mut r, now, 1, &presence(LOW, None, false));
    send(
        &mut r,
        now,
        1,
        &add(LOW, "p", pe(1, LOW, Policy::RoundRobin)),
    );
    drain(&mut r);
    // Silent: probed after 5 s, dead 5 s later.
    r.handle_timeout(now + Duration::from_secs(5));
    assert!(enrp_out(&mut r).iter().any(|(_, m)| matches!(
        m,
        EnrpMessage::Presence {
            reply_required: true,
            ..
        }
    )));
    assert_eq!(r.peers()[0].state, PeerState::Probing);
    let later = now + Duration::from_secs(10);
    r.handle_timeout(later);
    let out = drain(&mut r);
    let pe_ep = Endpoint::tcp(SocketAddr::from(([10, 0, 1, 1], 2960)));
    let ka = out
        .iter()
        .find(|t| t.protocol == Protocol::Asap)
        .expect("a keep-alive to the PE");
    assert_eq!(ka.dest, Dest::Endpoint(pe_ep.clone()));
    assert!(matches!(
        decode_asap(&ka.bytes).map(|d| d.message),
        Ok(AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ME,
            ..
        })
    ));
    assert_eq!(ids(&r, "p"), vec![(1, ME)]);
    let evs = events(&mut r);
    assert!(
        evs.contains(&EnrpEvent::TakeoverWon {
            target: LOW,
            pes: 1
        }),
        "{evs:?}"
    );
    assert!(r.peers().is_empty());
    // The PE acknowledges on the connection we opened: it is bound to it.
    r.handle_transport(
        later,
        TransportEvent::Connected {
            conn: ConnId(50),
            endpoint: pe_ep,
        },
    );
    let ack = AsapMessage::EndpointKeepAliveAck {
        handle: PoolHandle::from("p"),
        pe_id: PeId(1),
    };
    let dropped = r.counters().dropped;
    r.handle_message(
        later,
        ConnId(50),
        &meta(Protocol::Asap, TransportProto::Tcp, 2960),
        &ack.encode_to_vec(),
    );
    assert_eq!(r.counters().dropped, dropped);
    let e = r
        .handlespace()
        .get(&PoolHandle::from("p"), PeId(1))
        .expect("kept");
    assert_eq!(e.bookkeeping.conn, Some(50));
    // No ACK would have removed it: here the keep-alive timeout passes harmlessly.
    r.handle_timeout(later + Duration::from_secs(3));
    assert_eq!(ids(&r, "p"), vec![(1, ME)]);
}

fn election(rule: TakeoverElection) -> (bool, Vec<EnrpEvent>) {
    let now = t0();
    let mut r = registrar(|c| c.enrp.takeover_election = rule);
    // Peers: TARGET (0x50, dies), LOW (0x100) and HIGH (0x300); we are 0x200.
    let target = ServerId(0x50);
    send(&mut r, now, 1, &presence(target, None, false));
    send(&mut r, now, 2, &presence(LOW, None, false));
    send(&mut r, now, 3, &presence(HIGH, None, false));
    send(
        &mut r,
        now,
        1,
        &add(target, "p", pe(1, target, Policy::RoundRobin)),
    );
    // LOW and HIGH keep talking; the target is silent.
    let t = now + Duration::from_secs(4);
    send(&mut r, t, 2, &presence(LOW, None, false));
    send(&mut r, t, 3, &presence(HIGH, None, false));
    r.handle_timeout(now + Duration::from_secs(5));
    r.handle_timeout(now + Duration::from_secs(10));
    drain(&mut r);
    assert!(events(&mut r).contains(&EnrpEvent::TakeoverStarted { target }));
    // HIGH takes over the same target concurrently.
    let t = now + Duration::from_secs(10);
    send(
        &mut r,
        t,
        3,
        &EnrpMessage::InitTakeover {
            sender: HIGH,
            receiver: ME,
            target,
        },
    );
    let acked = enrp_out(&mut r)
        .iter()
        .any(|(_, m)| matches!(m, EnrpMessage::InitTakeoverAck { .. }));
    (acked, events(&mut r))
}

#[test]
fn concurrent_takeover_election_in_both_directions() {
    // RSPLIB: the lowest ID wins; we (0x200) are lower than HIGH: no ACK, ours goes on.
    let (acked, evs) = election(TakeoverElection::Lowest);
    assert!(!acked);
    assert!(!evs
        .iter()
        .any(|e| matches!(e, EnrpEvent::TakeoverAbandoned { .. })));
    // RFC: the highest ID wins: we ACK HIGH and abandon ours.
    let (acked, evs) = election(TakeoverElection::Highest);
    assert!(acked);
    assert!(evs
        .iter()
        .any(|e| matches!(e, EnrpEvent::TakeoverAbandoned { .. })));
}

#[test]
fn audit_mismatch_resynchronises_and_purges() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(&mut r, now, 1, &presence(LOW, None, false));
    for i in 1..=3 {
        send(
            &mut r,
            now,
            1,
            &add(LOW, "p", pe(i, LOW, Policy::RoundRobin)),
        );
    }
    drain(&mut r);
    // LOW's checksum over PEs 1 and 2 only (PE 3's DEL_PE was lost).
    let mut sum = rserpool_wire::PeChecksum::new();
    for i in 1..=2 {
        sum.add_sum(rserpool_wire::checksum::pe_block_sum(
            &PoolHandle::from("p"),
            PeId(i),
        ));
    }
    send(&mut r, now, 1, &presence(LOW, Some(sum.value()), false));
    let out = enrp_out(&mut r);
    assert!(out.iter().any(|(_, m)| matches!(
        m,
        EnrpMessage::HandleTableRequest {
            own_children_only: true,
            ..
        }
    )));
    let resp = EnrpMessage::HandleTableResponse {
        reject: false,
        more: false,
        sender: LOW,
        receiver: ME,
        pools: vec![PoolEntry {
            handle: PoolHandle::from("p"),
            pes: vec![
                pe(1, LOW, Policy::RoundRobin),
                pe(2, LOW, Policy::RoundRobin),
            ],
        }],
    };
    send(&mut r, now, 1, &resp);
    assert_eq!(ids(&r, "p"), vec![(1, LOW), (2, LOW)]);
    let evs = events(&mut r);
    assert!(evs.contains(&EnrpEvent::ResyncDone {
        peer: LOW,
        received: 2,
        purged: 1
    }));
    assert_eq!(r.handlespace().checksum(LOW), sum.value());
}

#[test]
fn registrations_and_removals_are_announced_to_peers() {
    let now = t0();
    let mut r = registrar(|_| {});
    send(&mut r, now, 1, &presence(LOW, None, false));
    drain(&mut r);
    let mut p = pe(7, ServerId(0), Policy::RoundRobin);
    p.asap_transport = None;
    let reg = AsapMessage::Registration {
        handle: PoolHandle::from("p"),
        pe: p,
    };
    let asap = meta(Protocol::Asap, TransportProto::Tcp, 2960);
    r.handle_message(now, ConnId(5), &asap, &reg.encode_to_vec());
    let out = enrp_out(&mut r);
    let [(Dest::Conn(ConnId(1)), EnrpMessage::HandleUpdate { action, pe, .. })] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*action, UpdateAction::ADD_PE);
    assert_eq!(pe.home_registrar, ME);
    // The ASAP transport of a TCP PE is a TCP TLV naming its control port.
    let at = pe.asap_transport.as_ref().expect("ASAP transport");
    assert_eq!(at.kind, rserpool_wire::TransportKind::Tcp);
    assert_eq!(at.port, 2960);
    let dereg = AsapMessage::Deregistration {
        handle: PoolHandle::from("p"),
        pe_id: PeId(7),
    };
    r.handle_message(now, ConnId(5), &asap, &dereg.encode_to_vec());
    let out = enrp_out(&mut r);
    assert!(out.iter().any(|(_, m)| matches!(
        m,
        EnrpMessage::HandleUpdate { action, .. } if *action == UpdateAction::DEL_PE
    )));
    assert_eq!(
        r.counters().enrp_tx[usize::from(enrp_type::HANDLE_UPDATE)],
        2
    );
}

#[test]
fn the_tcp_asap_transport_is_rewritten_for_sctp_peers_when_asked() {
    let now = t0();
    let mut r = registrar(|c| c.enrp.rewrite_tcp_asap_for_sctp_peers = true);
    let sctp = meta(Protocol::Enrp, TransportProto::Sctp, 9901);
    r.handle_message(
        now,
        ConnId(1),
        &sctp,
        &presence(LOW, None, false).encode_to_vec(),
    );
    drain(&mut r);
    let mut p = pe(7, ServerId(0), Policy::RoundRobin);
    p.asap_transport = None;
    let reg = AsapMessage::Registration {
        handle: PoolHandle::from("p"),
        pe: p,
    };
    let asap = meta(Protocol::Asap, TransportProto::Tcp, 2960);
    r.handle_message(now, ConnId(5), &asap, &reg.encode_to_vec());
    let out = enrp_out(&mut r);
    let Some(EnrpMessage::HandleUpdate { pe, .. }) = out.into_iter().map(|(_, m)| m).next() else {
        panic!("no update")
    };
    assert_eq!(
        pe.asap_transport.map(|t| t.kind),
        Some(rserpool_wire::TransportKind::Sctp)
    );
}

#[test]
fn peer_connections_are_not_closed_for_idleness() {
    let now = t0();
    let mut r = registrar(|_| {});
    for c in [1, 2] {
        r.handle_transport(
            now,
            TransportEvent::Accepted {
                conn: ConnId(c),
                meta: enrp_meta(),
            },
        );
    }
    // Connection 1 is a peer's; connection 2 never says anything.
    send(&mut r, now, 1, &presence(LOW, None, false));
    let idle = r
        .config()
        .connections
        .idle_timeout
        .expect("an idle timeout");
    r.handle_timeout(now + idle + Duration::from_secs(2));
    let closed: Vec<_> = std::iter::from_fn(|| r.poll_command()).collect();
    assert!(
        closed.contains(&crate::io::TransportCommand::Close(ConnId(2)))
            || closed.contains(&crate::io::TransportCommand::Abort(ConnId(2))),
        "{closed:?}"
    );
    assert!(!closed.iter().any(|c| matches!(
        c,
        crate::io::TransportCommand::Close(ConnId(1))
            | crate::io::TransportCommand::Abort(ConnId(1))
    )));
}

#[test]
fn a_reload_adds_and_drops_static_peers() {
    let now = t0();
    let a = Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 9901)));
    let b = Endpoint::tcp(SocketAddr::from(([10, 0, 0, 3], 9901)));
    let mut r = registrar(|c| c.enrp.peers = vec![a.clone()]);
    let mut cfg = r.config().clone();
    cfg.enrp.peers = vec![b.clone()];
    r.reconfigure(now, cfg);
    let eps: Vec<_> = r.peers().into_iter().filter_map(|p| p.endpoint).collect();
    assert_eq!(eps, vec![b.clone()]);
    drain(&mut r);
    // The next heartbeat asks the new one who it is.
    r.handle_timeout(now + Duration::from_secs(3));
    assert!(enrp_out(&mut r)
        .iter()
        .any(|(d, _)| *d == Dest::Endpoint(b.clone())));
}

/// A takeover of LOW's PEs 1 (at 10.0.1.1:2960) and 2 (at 10.0.1.2:2960), won at once;
/// returns when it was won.
fn won_takeover_of_two(r: &mut Registrar) -> Instant {
    let now = t0();
    send(r, now, 1, &presence(LOW, None, false));
    send(r, now, 1, &add(LOW, "p", pe(1, LOW, Policy::RoundRobin)));
    let mut second = pe(2, LOW, Policy::RoundRobin);
    second.asap_transport = Some(TransportAddr::tcp(2960, IpAddr::from([10, 0, 1, 2])));
    send(r, now, 1, &add(LOW, "p", second));
    r.handle_timeout(now + Duration::from_secs(5));
    let won = now + Duration::from_secs(10);
    r.handle_timeout(won);
    drain(r);
    assert!(events(r).contains(&EnrpEvent::TakeoverWon {
        target: LOW,
        pes: 2
    }));
    won
}

#[test]
fn the_ack_wait_of_an_adopted_pe_starts_when_its_connection_is_up() {
    let mut r = registrar(|c| c.keepalive_timeout = Duration::from_secs(1));
    let won = won_takeover_of_two(&mut r);
    let ep1 = Endpoint::tcp(SocketAddr::from(([10, 0, 1, 1], 2960)));
    let ep2 = Endpoint::tcp(SocketAddr::from(([10, 0, 1, 2], 2960)));
    // A slow host: the connection is up 1.5 s after the keep-alive was queued.
    let up = won + Duration::from_millis(1500);
    r.handle_timeout(up);
    assert_eq!(
        ids(&r, "p"),
        vec![(1, ME), (2, ME)],
        "no wait before the connection"
    );
    r.handle_transport(
        up,
        TransportEvent::Connected {
            conn: ConnId(50),
            endpoint: ep1,
        },
    );
    // The other PE cannot be reached: a failed keep-alive.
    r.handle_transport(up, TransportEvent::ConnectFailed { endpoint: ep2 });
    assert_eq!(ids(&r, "p"), vec![(1, ME)]);
    // The ACK comes 0.9 s after the connection (2.4 s after the keep-alive was queued).
    let acked = up + Duration::from_millis(900);
    r.handle_timeout(acked);
    let ack = AsapMessage::EndpointKeepAliveAck {
        handle: PoolHandle::from("p"),
        pe_id: PeId(1),
    };
    r.handle_message(
        acked,
        ConnId(50),
        &meta(Protocol::Asap, TransportProto::Tcp, 2960),
        &ack.encode_to_vec(),
    );
    r.handle_timeout(acked + Duration::from_secs(2));
    assert_eq!(ids(&r, "p"), vec![(1, ME)]);
    let e = r
        .handlespace()
        .get(&PoolHandle::from("p"), PeId(1))
        .expect("kept");
    assert_eq!(e.bookkeeping.conn, Some(50));
}

#[test]
fn an_adopted_pe_that_never_acks_on_its_connection_is_removed_one_timeout_later() {
    let mut r = registrar(|c| c.keepalive_timeout = Duration::from_secs(1));
    let won = won_takeover_of_two(&mut r);
    let up = won + Duration::from_millis(1500);
    for (conn, ip) in [(50, [10, 0, 1, 1]), (51, [10, 0, 1, 2])] {
        r.handle_transport(
            up,
            TransportEvent::Connected {
                conn: ConnId(conn),
                endpoint: Endpoint::tcp(SocketAddr::from((ip, 2960))),
            },
        );
    }
    r.handle_timeout(up + Duration::from_millis(999));
    assert_eq!(ids(&r, "p").len(), 2);
    r.handle_timeout(up + Duration::from_millis(1001));
    assert!(ids(&r, "p").is_empty());
}

fn presence_with_info(from: ServerId, at: TransportAddr) -> EnrpMessage {
    EnrpMessage::Presence {
        reply_required: false,
        sender: from,
        receiver: ME,
        checksum: None,
        server_info: Some(rserpool_wire::ServerInfo {
            server_id: from,
            transport: at,
        }),
    }
}

/// The peer list as (ID, endpoint, static, state).
fn peer_list(r: &Registrar) -> Vec<(ServerId, Option<Endpoint>, PeerState)> {
    r.peers()
        .into_iter()
        .map(|p| (p.server_id, p.endpoint, p.state))
        .collect()
}

#[test]
fn a_static_peer_identified_over_its_own_connection_is_merged_with_one_connection() {
    // `--peer tcp://10.0.0.9:9901`; the peer connects to us first and names another
    // address in its Server Information (it listens on 0.0.0.0, reached as 10.0.0.99).
    for (first, named) in [
        (presence(LOW, None, false), None),
        (
            presence_with_info(LOW, TransportAddr::tcp(9901, IpAddr::from([10, 0, 0, 99]))),
            Some(SocketAddr::from(([10, 0, 0, 99], 9901))),
        ),
    ] {
        let now = t0();
        let configured = Endpoint::tcp(SocketAddr::from(([10, 0, 0, 9], 9901)));
        let mut r = registrar(|c| c.enrp.peers = vec![configured.clone()]);
        r.handle_transport(
            now,
            TransportEvent::Accepted {
                conn: ConnId(1),
                meta: enrp_meta(),
            },
        );
        send(&mut r, now, 1, &first);
        assert_eq!(r.peers().len(), 2, "{:?}", peer_list(&r));
        // Our heartbeat asks the static entry who it is, on a connection we open.
        drain(&mut r);
        r.handle_timeout(now + Duration::from_secs(3));
        assert!(enrp_out(&mut r)
            .iter()
            .any(|(d, _)| *d == Dest::Endpoint(configured.clone())));
        r.handle_transport(
            now + Duration::from_secs(3),
            TransportEvent::Connected {
                conn: ConnId(2),
                endpoint: configured.clone(),
            },
        );
        let reply = match named {
            Some(a) => presence_with_info(LOW, TransportAddr::tcp(a.port(), a.ip())),
            None => presence(LOW, None, false),
        };
        send(&mut r, now + Duration::from_secs(3), 2, &reply);
        // One entry: the identified peer, at the configured endpoint.
        assert_eq!(
            peer_list(&r),
            vec![(LOW, Some(configured.clone()), PeerState::Active)]
        );
        // One connection stays: the one opened by the lower ID (LOW's, connection 1).
        let cmds: Vec<_> = std::iter::from_fn(|| r.poll_command()).collect();
        assert_eq!(cmds, vec![crate::io::TransportCommand::Close(ConnId(2))]);
        r.handle_transport(
            now + Duration::from_secs(3),
            TransportEvent::Closed { conn: ConnId(2) },
        );
        // Later heartbeats go over connection 1 only, with R = 0.
        drain(&mut r);
        send(
            &mut r,
            now + Duration::from_secs(5),
            1,
            &presence(LOW, None, false),
        );
        r.handle_timeout(now + Duration::from_secs(6));
        let out = enrp_out(&mut r);
        assert!(!out.is_empty());
        for (d, m) in out {
            assert_eq!(d, Dest::Conn(ConnId(1)));
            assert!(matches!(
                m,
                EnrpMessage::Presence {
                    reply_required: false,
                    receiver: LOW,
                    ..
                }
            ));
        }
        assert_eq!(r.peers().len(), 1);
    }
}

mod heal;
