//! Unit tests of the session cores, wired back to back by hand.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, Protocol, ServerId, TransportAddr,
    UserTransport,
};

use super::*;
use crate::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
    TransportProto,
};

fn pe(id: u32) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(1),
        registration_life: 60_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(
            7000,
            IpAddr::from([10, 0, 0, id as u8]),
        )),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn ep(id: u32) -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, id as u8], 7000)))
}

fn meta(protocol: Protocol) -> RecvMeta {
    let peer = SocketAddr::from(([10, 0, 9, 9], 40000));
    RecvMeta {
        protocol,
        transport: TransportProto::Tcp,
        peer,
        peer_addrs: vec![peer.ip()],
        identity: None,
    }
}

fn transmits<C: Core>(c: &mut C) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}
fn events<C: Core>(c: &mut C) -> Vec<C::Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}
fn commands<C: Core>(c: &mut C) -> Vec<TransportCommand> {
    std::iter::from_fn(|| c.poll_command()).collect()
}

/// Hand every transmit of `from` to `to` (both sides use the same ConnId).
fn pass<A: Core, B: Core>(now: Instant, from: &mut A, to: &mut B) -> usize {
    let ts = transmits(from);
    for t in &ts {
        let Dest::Conn(c) = t.dest else {
            panic!("{t:?}")
        };
        to.handle_message(now, c, &meta(t.protocol), &t.bytes);
    }
    ts.len()
}

#[test]
fn tsn_order_wraps() {
    assert!(tsn_covered(5, 5) && tsn_covered(4, 5) && !tsn_covered(6, 5));
    assert!(tsn_covered(u32::MAX, 1) && !tsn_covered(1, u32::MAX));
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn ack_release_cookie_echo_first_and_card_failover() {
    let now = Instant::now();
    let pool = PoolHandle::new("EchoPool");
    let mut cfg = SessionUserConfig::new(pool.clone());
    cfg.heartbeat_interval = None;
    let mut pu = SessionUser::new(cfg, 1);
    let mut pe1 = SessionServer::new(
        SessionServerConfig {
            auto_ack: false,
            business_card: Some((pool.clone(), vec![pe(3), pe(2)])),
        },
        0,
    );
    let mut pe3 = SessionServer::new(SessionServerConfig::default(), 0);

    let s0 = pu
        .send(now, 77, b"zero".to_vec(), SendMode::Failover)
        .unwrap();
    assert_eq!(s0, 0);
    assert_eq!(
        events(&mut pu),
        vec![UserEvent::NeedServer {
            pool: pool.clone(),
            exclude: vec![]
        }]
    );
    pu.use_server(now, pe(1));
    assert_eq!(
        commands(&mut pu),
        vec![TransportCommand::Connect {
            endpoint: ep(1),
            protocol: Protocol::Asap
        }]
    );
    let c1 = ConnId(1);
    pe1.handle_transport(
        now,
        TransportEvent::Accepted {
            conn: c1,
            meta: meta(Protocol::Asap),
        },
    );
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: c1,
            endpoint: ep(1),
        },
    );
    assert_eq!(events(&mut pu), vec![UserEvent::Connected { pe: PeId(1) }]);
    pu.send(now, 77, b"one".to_vec(), SendMode::Failover)
        .unwrap();
    pu.send(now, 77, b"two".to_vec(), SendMode::NoFailover)
        .unwrap();
    assert_eq!(pass(now, &mut pu, &mut pe1), 3);
    let ev = events(&mut pe1);
    assert!(matches!(ev[0], ServerEvent::Accepted { .. }));
    assert_eq!(
        ev[1],
        ServerEvent::Data {
            session: c1,
            tsn: 0,
            ppid: 77,
            data: b"zero".to_vec()
        }
    );
    // The PE acks the first message only, sends a cookie; the card went at accept.
    pe1.ack(c1, 0);
    pe1.send_cookie(c1, b"state-1".to_vec());
    pe1.send_cookie(c1, b"state-2".to_vec());
    pass(now, &mut pe1, &mut pu);
    let ev = events(&mut pu);
    assert!(matches!(ev[0], UserEvent::BusinessCard { .. }), "{ev:?}");
    assert_eq!(ev[1], UserEvent::Acked { seq: 0 });
    assert_eq!(pu.cookie(), Some(&b"state-2"[..]));
    assert_eq!(pu.outstanding(), 2);

    // PE 1 dies: "one" is resent to the first card entry (PE 3) after the cookie echo,
    // "two" (no failover) comes back.
    pu.handle_transport(now, TransportEvent::Closed { conn: c1 });
    let ev = events(&mut pu);
    assert_eq!(
        ev,
        vec![
            UserEvent::PeFailed {
                pool: pool.clone(),
                pe: PeId(1),
                reason: FailureReason::Closed
            },
            UserEvent::FailoverStarted { old: PeId(1) },
            UserEvent::Undelivered {
                messages: vec![Outstanding {
                    seq: 2,
                    ppid: 77,
                    data: b"two".to_vec(),
                    mode: SendMode::NoFailover
                }]
            },
        ]
    );
    assert_eq!(pu.current_pe(), Some(PeId(3)));
    let c2 = ConnId(2);
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: c2,
            endpoint: ep(3),
        },
    );
    pass(now, &mut pu, &mut pe3);
    let ev = events(&mut pe3);
    assert_eq!(
        &ev[1..],
        &[
            ServerEvent::CookieEcho {
                session: c2,
                cookie: b"state-2".to_vec()
            },
            ServerEvent::Data {
                session: c2,
                tsn: 0,
                ppid: 77,
                data: b"one".to_vec()
            }
        ]
    );
    assert_eq!(
        events(&mut pu),
        vec![UserEvent::FailoverCompleted {
            old: PeId(1),
            new: PeId(3)
        }]
    );
    // An ACK beyond what was sent is ignored; a right one releases.
    pe3.ack(c2, 5);
    pass(now, &mut pe3, &mut pu);
    assert_eq!(pu.outstanding(), 1);
    pe3.ack(c2, 0);
    pass(now, &mut pe3, &mut pu);
    assert_eq!(events(&mut pu), vec![UserEvent::Acked { seq: 1 }]);
    assert_eq!(pu.outstanding(), 0);
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn heartbeat_detects_a_silent_pe_and_the_filter_chooses() {
    let t0 = Instant::now();
    let pool = PoolHandle::new("P");
    let mut pu = SessionUser::new(SessionUserConfig::new(pool.clone()), 7);
    let mut pe1 = SessionServer::new(SessionServerConfig::default(), 0);
    pu.set_failover_filter(Box::new(|old, msgs| {
        assert_eq!(old, PeId(1));
        msgs.into_iter().filter(|m| m.seq % 2 == 0).collect()
    }));
    pu.connect(t0);
    pu.use_server(t0, pe(1));
    pu.handle_transport(
        t0,
        TransportEvent::Connected {
            conn: ConnId(1),
            endpoint: ep(1),
        },
    );
    for i in 0..4u8 {
        pu.send(t0, 1, vec![i], SendMode::Failover).unwrap();
    }
    events(&mut pu);
    commands(&mut pu);
    // A live PE answers the heartbeat: no failure however long it runs.
    let mut now = t0;
    for _ in 0..20 {
        now = pu.poll_timeout().unwrap();
        pu.handle_timeout(now);
        pass(now, &mut pu, &mut pe1);
        pass(now, &mut pe1, &mut pu);
        assert!(events(&mut pu).is_empty());
    }
    // Now it stops answering: failure within interval + timeout.
    let hung_at = now;
    let failed_at = loop {
        now = pu.poll_timeout().unwrap();
        pu.handle_timeout(now);
        transmits(&mut pu);
        if pu.current_pe().is_none() {
            break now;
        }
        assert!(now - hung_at < Duration::from_secs(2));
    };
    assert!(failed_at - hung_at <= Duration::from_millis(800));
    assert_eq!(commands(&mut pu), vec![TransportCommand::Abort(ConnId(1))]);
    let ev = events(&mut pu);
    assert!(ev.contains(&UserEvent::PeFailed {
        pool: pool.clone(),
        pe: PeId(1),
        reason: FailureReason::HeartbeatTimeout
    }));
    assert_eq!(
        ev.last(),
        Some(&UserEvent::NeedServer {
            pool,
            exclude: vec![PeId(1)]
        })
    );
    // The filter kept seq 0 and 2.
    assert_eq!(pu.outstanding(), 2);
    pu.use_server(now, pe(2));
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: ConnId(2),
            endpoint: ep(2),
        },
    );
    let sent: Vec<Vec<u8>> = transmits(&mut pu).into_iter().map(|t| t.bytes).collect();
    assert_eq!(sent, vec![vec![0], vec![2]]);
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn gives_up_after_max_attempts_and_hands_everything_back() {
    let now = Instant::now();
    let mut cfg = SessionUserConfig::new(PoolHandle::new("P"));
    cfg.max_attempts = 2;
    let mut pu = SessionUser::new(cfg, 1);
    pu.send(now, 1, b"a".to_vec(), SendMode::Failover).unwrap();
    pu.use_server(now, pe(1));
    pu.handle_transport(now, TransportEvent::ConnectFailed { endpoint: ep(1) });
    pu.use_server(now, pe(2));
    pu.handle_transport(now, TransportEvent::ConnectFailed { endpoint: ep(2) });
    let ev = events(&mut pu);
    assert_eq!(
        &ev[ev.len() - 2..],
        &[
            UserEvent::Undelivered {
                messages: vec![Outstanding {
                    seq: 0,
                    ppid: 1,
                    data: b"a".to_vec(),
                    mode: SendMode::Failover
                }]
            },
            UserEvent::Failed {
                reason: FailureReason::ConnectFailed
            }
        ]
    );
    assert_eq!(pu.outstanding(), 0);
    // A later send starts anew: a fresh NeedServer, then Connected (not a failover).
    pu.send(now, 1, b"b".to_vec(), SendMode::Failover).unwrap();
    assert!(matches!(
        events(&mut pu).as_slice(),
        [UserEvent::NeedServer { .. }]
    ));
    pu.use_server(now, pe(3));
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: ConnId(3),
            endpoint: ep(3),
        },
    );
    assert_eq!(events(&mut pu), vec![UserEvent::Connected { pe: PeId(3) }]);
}

/// A connected PU (session on `ConnId(1)` to PE 1) and a PE, both drained.
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn connected(cfg: SessionUserConfig) -> (Instant, SessionUser, SessionServer) {
    let now = Instant::now();
    let mut pu = SessionUser::new(cfg, 3);
    let mut pe1 = SessionServer::new(SessionServerConfig::default(), 0);
    pu.connect(now);
    pu.use_server(now, pe(1));
    pe1.handle_transport(
        now,
        TransportEvent::Accepted {
            conn: ConnId(1),
            meta: meta(Protocol::Asap),
        },
    );
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: ConnId(1),
            endpoint: ep(1),
        },
    );
    events(&mut pu);
    commands(&mut pu);
    events(&mut pe1);
    (now, pu, pe1)
}

#[test]
fn unacknowledged_mode_releases_at_once_and_resends_only_unsent() {
    let mut cfg = SessionUserConfig::new(PoolHandle::new("P"));
    cfg.acknowledged = false;
    cfg.heartbeat_interval = None;
    let (now, mut pu, _) = connected(cfg);
    pu.send(now, 1, b"a".to_vec(), SendMode::Failover).unwrap();
    assert_eq!(pu.outstanding(), 0);
    assert_eq!(transmits(&mut pu).len(), 1);
    pu.handle_transport(now, TransportEvent::Closed { conn: ConnId(1) });
    pu.send(now, 1, b"b".to_vec(), SendMode::Failover).unwrap();
    assert_eq!(pu.outstanding(), 1);
    pu.use_server(now, pe(2));
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: ConnId(2),
            endpoint: ep(2),
        },
    );
    let sent: Vec<Vec<u8>> = transmits(&mut pu).into_iter().map(|t| t.bytes).collect();
    assert_eq!(sent, vec![b"b".to_vec()]);
}

#[test]
fn bad_input_is_answered_or_ignored_and_disturbs_nothing() {
    let mut cfg = SessionUserConfig::new(PoolHandle::new("P"));
    cfg.heartbeat_interval = None;
    let (now, mut pu, mut pe1) = connected(cfg);
    let c = ConnId(1);
    // A truncated cookie echo at the PE: dropped (or answered with an ASAP_ERROR, as the
    // codec decides), no event, the session lives.
    let mut echo = AsapMessage::CookieEcho {
        cookie: b"cookie!".to_vec(),
    }
    .try_encode_to_vec()
    .unwrap();
    echo.truncate(6);
    pe1.handle_message(now, c, &meta(Protocol::Asap), &echo);
    assert!(events(&mut pe1).is_empty());
    let out = transmits(&mut pe1);
    assert!(out.iter().all(|t| t.protocol == Protocol::Asap), "{out:?}");
    assert_eq!(pe1.counters().rx_invalid, 1);
    assert_eq!(pe1.sessions(), vec![c]);
    // Data before any cookie echo is delivered: what it means is the application's call.
    pu.send(now, 9, b"x".to_vec(), SendMode::Failover).unwrap();
    pass(now, &mut pu, &mut pe1);
    assert!(matches!(
        events(&mut pe1).as_slice(),
        [ServerEvent::Data { tsn: 0, .. }]
    ));
    // Garbage and out-of-range ACKs at the PU are ignored.
    for body in [vec![0, 0, 0, 7], vec![1, 2, 3, 4, 5]] {
        pu.handle_message(now, c, &meta(Protocol::Data(PPID_SESSION_ACK)), &body);
    }
    assert_eq!(pu.outstanding(), 1);
    // Oversized messages and reserved PPIDs are refused, both ways.
    let big = vec![0; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        pu.send(now, 9, big.clone(), SendMode::Failover),
        Err(SessionError::TooLarge {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
    assert_eq!(
        pu.send(now, 11, vec![], SendMode::Failover),
        Err(SessionError::ReservedPpid(11))
    );
    assert_eq!(
        pe1.send(c, PPID_SESSION_ACK, vec![]),
        Err(SessionError::ReservedPpid(PPID_SESSION_ACK))
    );
    assert_eq!(
        pe1.send(c, 9, big),
        Err(SessionError::TooLarge {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
    assert_eq!(
        pe1.send(ConnId(99), 9, vec![]),
        Err(SessionError::NoSession)
    );
    assert!(transmits(&mut pe1).is_empty());
    assert_eq!(pu.outstanding(), 1);
    // A card naming another pool is reported but not followed on failover.
    pu.handle_message(
        now,
        c,
        &meta(Protocol::Asap),
        &AsapMessage::BusinessCard {
            handle: PoolHandle::new("Other"),
            policy: None,
            pes: vec![pe(5)],
        }
        .try_encode_to_vec()
        .unwrap(),
    );
    assert!(matches!(
        events(&mut pu).as_slice(),
        [UserEvent::BusinessCard { .. }]
    ));
    pu.handle_transport(now, TransportEvent::Closed { conn: c });
    assert!(matches!(
        events(&mut pu).last(),
        Some(UserEvent::NeedServer { .. })
    ));
    // Messages on a connection that is not the session's are ignored.
    pu.handle_message(now, ConnId(9), &meta(Protocol::Data(5)), b"stray");
    assert!(events(&mut pu).is_empty());
}

/// A PU session connected to PE `id` on `conn` (no heartbeat), its events drained.
fn up(pool: &PoolHandle, id: u32, conn: ConnId, failover: bool) -> SessionUser {
    let mut cfg = SessionUserConfig::new(pool.clone());
    cfg.heartbeat_interval = None;
    cfg.failover = failover;
    let mut pu = SessionUser::new(cfg, 1);
    #[allow(clippy::disallowed_methods)] // a test's arbitrary origin
    let now = Instant::now();
    pu.connect(now);
    pu.use_server(now, pe(id));
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn,
            endpoint: ep(id),
        },
    );
    events(&mut pu);
    commands(&mut pu);
    pu
}

fn msg(seq: u64, data: &[u8], mode: SendMode) -> Outstanding {
    Outstanding {
        seq,
        ppid: 5,
        data: data.to_vec(),
        mode,
    }
}

/// "To last": goes to the PE of the previous message while the session is up with it;
/// during a failover and after one it comes back at once; unacknowledged when its PE
/// fails, it comes back (never resent to another PE), unlike a failover message.
#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn to_last_stays_with_the_pe_of_the_previous_message() {
    let now = Instant::now();
    let pool = PoolHandle::new("P");
    let mut pu = up(&pool, 1, ConnId(1), true);
    pu.send(now, 5, b"a".to_vec(), SendMode::Failover).unwrap();
    pu.send(now, 5, b"b".to_vec(), SendMode::ToLast).unwrap();
    assert_eq!(transmits(&mut pu).len(), 2);
    assert_eq!(pu.last_pe(), Some(PeId(1)));
    assert!(events(&mut pu).is_empty());
    // PE 1 fails: "a" goes to the next PE, "b" comes back.
    pu.handle_transport(now, TransportEvent::Closed { conn: ConnId(1) });
    let ev = events(&mut pu);
    assert!(
        ev.contains(&UserEvent::Undelivered {
            messages: vec![msg(1, b"b", SendMode::ToLast)]
        }),
        "{ev:?}"
    );
    // While the session waits for a PE, a "to last" message has nowhere to go.
    pu.send(now, 5, b"c".to_vec(), SendMode::ToLast).unwrap();
    assert_eq!(
        events(&mut pu),
        vec![UserEvent::Undelivered {
            messages: vec![msg(2, b"c", SendMode::ToLast)]
        }]
    );
    pu.use_server(now, pe(2));
    pu.handle_transport(
        now,
        TransportEvent::Connected {
            conn: ConnId(2),
            endpoint: ep(2),
        },
    );
    let t = transmits(&mut pu);
    assert_eq!(t.len(), 1, "only the resent failover message: {t:?}");
    assert_eq!(pu.last_pe(), Some(PeId(2)));
    // Now the previous message went to PE 2: "to last" goes there.
    pu.send(now, 5, b"d".to_vec(), SendMode::ToLast).unwrap();
    assert_eq!(transmits(&mut pu).len(), 1);
    assert_eq!(
        SendMode::from_asap_flags(0x0004),
        Some(SendMode::ToLast),
        "RFC 5352 bit"
    );
    assert_eq!(SendMode::from_asap_flags(0x0008), None);
}

/// "To all": the targets (own PEs left out unless to self, duplicates once), and a
/// session bound to its PE gives up when the PE fails, handing everything back, instead
/// of moving on.
#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn to_all_targets_and_bound_sessions() {
    let all = vec![pe(1), pe(2), pe(3), pe(2)];
    let ids = |v: Vec<PoolElement>| v.into_iter().map(|p| p.id.0).collect::<Vec<_>>();
    assert_eq!(ids(to_all_targets(&all, &[], false)), vec![1, 2, 3]);
    assert_eq!(ids(to_all_targets(&all, &[PeId(2)], false)), vec![1, 3]);
    assert_eq!(ids(to_all_targets(&all, &[PeId(2)], true)), vec![1, 2, 3]);

    let now = Instant::now();
    let pool = PoolHandle::new("P");
    let mut pu = up(&pool, 3, ConnId(7), false);
    pu.send(now, 5, b"x".to_vec(), SendMode::Failover).unwrap();
    transmits(&mut pu);
    pu.handle_transport(now, TransportEvent::Closed { conn: ConnId(7) });
    let ev = events(&mut pu);
    assert_eq!(
        ev,
        vec![
            UserEvent::PeFailed {
                pool,
                pe: PeId(3),
                reason: FailureReason::Closed
            },
            UserEvent::FailoverStarted { old: PeId(3) },
            UserEvent::Undelivered {
                messages: vec![msg(0, b"x", SendMode::Failover)]
            },
            UserEvent::Failed {
                reason: FailureReason::Closed
            },
        ]
    );
    assert!(commands(&mut pu).is_empty(), "no connect to another PE");
}

#[test]
fn card_order_is_a_ring_by_pe_id() {
    let all = vec![pe(5), pe(1), pe(9), pe(3), pe(7)];
    let ids = |v: Vec<PoolElement>| v.into_iter().map(|p| p.id.0).collect::<Vec<_>>();
    assert_eq!(ids(card_order(&all, &[PeId(5)], 16)), vec![7, 9, 1, 3]);
    assert_eq!(ids(card_order(&all, &[PeId(9)], 16)), vec![1, 3, 5, 7]);
    assert_eq!(ids(card_order(&all, &[PeId(5)], 2)), vec![7, 9]);
    assert_eq!(ids(card_order(&all, &[PeId(4)], 16)), vec![5, 7, 9, 1, 3]);
}

/// BC2: failover follows the card in order, skipping PEs that failed, and keeps the rest
/// of the card when the chosen entry cannot be connected either.
#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn card_list_is_followed_in_order_past_dead_entries() {
    let now = Instant::now();
    let pool = PoolHandle::new("P");
    let mut pu = up(&pool, 1, ConnId(1), true);
    let mut pe1 = SessionServer::new(
        SessionServerConfig {
            auto_ack: true,
            business_card: None,
        },
        0,
    );
    pe1.handle_transport(
        now,
        TransportEvent::Accepted {
            conn: ConnId(1),
            meta: meta(Protocol::Asap),
        },
    );
    pe1.update_business_card(Some((pool.clone(), vec![pe(4), pe(1), pe(3), pe(2)])));
    pass(now, &mut pe1, &mut pu);
    // A card naming another pool is reported, not followed.
    pe1.send_business_card(ConnId(1), PoolHandle::new("Other"), vec![pe(9)]);
    pass(now, &mut pe1, &mut pu);
    events(&mut pu);
    pu.handle_transport(now, TransportEvent::Closed { conn: ConnId(1) });
    events(&mut pu);
    assert_eq!(pu.current_pe(), Some(PeId(4)));
    pu.handle_transport(now, TransportEvent::ConnectFailed { endpoint: ep(4) });
    events(&mut pu);
    // PE 1 failed already: next is PE 3.
    assert_eq!(pu.current_pe(), Some(PeId(3)));
    pu.handle_transport(now, TransportEvent::ConnectFailed { endpoint: ep(3) });
    events(&mut pu);
    assert_eq!(pu.current_pe(), Some(PeId(2)));
    pu.handle_transport(now, TransportEvent::ConnectFailed { endpoint: ep(2) });
    let ev = events(&mut pu);
    assert!(
        matches!(ev.last(), Some(UserEvent::NeedServer { exclude, .. }) if exclude.len() == 4),
        "{ev:?}"
    );
}

/// Cookie authentication: a keyed PE signs its cookies; the PU echoes them opaquely; the
/// next keyed PE (same key) hands the application the cookie without the tag. An altered
/// byte, a forged (unsigned) echo and one signed with another key are refused, counted,
/// and close only their session. Without a key the cookie is sent as made.
#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn keyed_pes_sign_cookies_and_refuse_bad_echoes() {
    let now = Instant::now();
    let key = CookieKey::new(b"0123456789abcdef0123456789abcdef");
    let mut plain = SessionServer::new(SessionServerConfig::default(), 0);
    let mut keyed = SessionServer::new(SessionServerConfig::default(), 0);
    keyed.set_cookie_key(Some(key.clone()));
    let mut other = SessionServer::new(SessionServerConfig::default(), 0);
    other.set_cookie_key(Some(CookieKey::new(b"another key, also 32 bytes long!")));
    let cookie_sent = |s: &mut SessionServer, conn: ConnId| -> Vec<u8> {
        s.handle_transport(
            now,
            TransportEvent::Accepted {
                conn,
                meta: meta(Protocol::Asap),
            },
        );
        s.send_cookie(conn, b"state".to_vec());
        let t = transmits(s);
        match rserpool_wire::decode_asap(&t[0].bytes).unwrap().message {
            AsapMessage::Cookie { cookie } => cookie,
            m => panic!("{m:?}"),
        }
    };
    assert_eq!(cookie_sent(&mut plain, ConnId(1)), b"state");
    let signed = cookie_sent(&mut keyed, ConnId(1));
    assert_eq!(signed.len(), 5 + COOKIE_TAG_LEN);
    let by_other = cookie_sent(&mut other, ConnId(1));
    assert_ne!(signed, by_other);

    let echo = |s: &mut SessionServer, conn: ConnId, cookie: Vec<u8>| {
        let m = AsapMessage::CookieEcho { cookie }.encode_to_vec();
        s.handle_message(now, conn, &meta(Protocol::Asap), &m);
        let ev: Vec<ServerEvent> = events(s)
            .into_iter()
            .filter(|e| !matches!(e, ServerEvent::Accepted { .. }))
            .collect();
        ev
    };
    let mut altered = signed.clone();
    altered[2] ^= 0x20;
    let mut bad_tag = signed.clone();
    *bad_tag.last_mut().unwrap() ^= 1;
    let cases = [
        (altered, CookieRefusal::BadSignature),
        (bad_tag, CookieRefusal::BadSignature),
        (b"state".to_vec(), CookieRefusal::Unsigned),
        (by_other.clone(), CookieRefusal::BadSignature),
    ];
    for (i, (cookie, reason)) in cases.into_iter().enumerate() {
        let conn = ConnId(10 + i as u64);
        assert_eq!(
            echo(&mut keyed, conn, cookie),
            vec![
                ServerEvent::CookieRefused {
                    session: conn,
                    reason
                },
                ServerEvent::Closed { session: conn }
            ]
        );
        assert_eq!(
            commands(&mut keyed),
            vec![TransportCommand::Close(conn)],
            "only the offending session closes"
        );
    }
    assert_eq!(keyed.cookies_refused(), 4);
    assert_eq!(keyed.sessions(), vec![ConnId(1)]);
    // The valid echo: the application sees the cookie as it made it.
    assert_eq!(
        echo(&mut keyed, ConnId(20), signed.clone()),
        vec![ServerEvent::CookieEcho {
            session: ConnId(20),
            cookie: b"state".to_vec()
        }]
    );
    // Without a key an echo is handed over as it comes.
    assert_eq!(
        echo(&mut plain, ConnId(2), signed.clone()),
        vec![ServerEvent::CookieEcho {
            session: ConnId(2),
            cookie: signed
        }]
    );
}
