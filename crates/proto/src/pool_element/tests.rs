//! A registrar that takes the PE over connects to its ASAP control endpoint: the PE
//! core sees an accepted connection and a keep-alive with H = 1 on it.
use super::*;
use crate::io::TransportProto;
use rserpool_wire::{decode_asap, encode_asap, TransportAddr};
use std::net::SocketAddr;

const POOL: &str = "EchoPool";

fn reg_ep() -> Endpoint {
    Endpoint::tcp("10.0.0.1:3863".parse().unwrap())
}

fn meta(peer: &str) -> RecvMeta {
    let peer: SocketAddr = peer.parse().unwrap();
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

fn core() -> PoolElementCore {
    let cfg = PoolElementConfig {
        pool_handle: PoolHandle::from(POOL),
        pe_id: Some(PeId(0x1001)),
        user_transports: vec![UserTransport::Ip(TransportAddr::tcp(
            7,
            "10.0.1.1".parse().unwrap(),
        ))],
        registrars: vec![reg_ep()],
        accept_announces: false,
        ..PoolElementConfig::default()
    };
    PoolElementCore::new(cfg, 7)
}

fn sent(pe: &mut PoolElementCore) -> Vec<(Dest, AsapMessage)> {
    let mut out = Vec::new();
    while let Some(t) = pe.poll_transmit() {
        let m = decode_asap(&t.bytes)
            .expect("our own message decodes")
            .message;
        out.push((t.dest, m));
    }
    out
}

fn events(pe: &mut PoolElementCore) -> Vec<PeEvent> {
    std::iter::from_fn(|| pe.poll_event()).collect()
}

fn send(pe: &mut PoolElementCore, now: Instant, conn: ConnId, m: &AsapMessage) {
    let mut b = Vec::new();
    encode_asap(m, &mut b);
    pe.handle_message(now, conn, &meta("10.0.0.1:3863"), &b);
}

fn ka(home: bool, sid: u32, pool: &str) -> AsapMessage {
    AsapMessage::EndpointKeepAlive {
        home,
        server_id: ServerId(sid),
        handle: PoolHandle::from(pool),
        pe_id: Some(PeId(0x1001)),
    }
}

/// Registered at home over conn 1 (the connection the hunt opened).
fn registered(now: Instant) -> PoolElementCore {
    let mut pe = core();
    pe.handle_timeout(now);
    let out = sent(&mut pe);
    assert!(matches!(
        &out[..],
        [(Dest::Endpoint(_), AsapMessage::Registration { .. })]
    ));
    let home = ConnId(1);
    pe.handle_transport(
        now,
        TransportEvent::Connected {
            conn: home,
            endpoint: reg_ep(),
        },
    );
    let answer = AsapMessage::RegistrationResponse {
        reject: false,
        handle: PoolHandle::from(POOL),
        pe_id: PeId(0x1001),
        error: None,
    };
    send(&mut pe, now, home, &answer);
    assert_eq!(pe.home(), Some((home, None)));
    sent(&mut pe);
    events(&mut pe);
    pe
}

fn accept(pe: &mut PoolElementCore, now: Instant, conn: ConnId) {
    pe.handle_transport(
        now,
        TransportEvent::Accepted {
            conn,
            meta: meta("10.0.0.2:40000"),
        },
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn keep_alive_with_h_on_an_accepted_connection_makes_it_home() {
    let t0 = Instant::now();
    let mut pe = registered(t0);
    let taker = ConnId(2);
    accept(&mut pe, t0, taker);
    assert!(sent(&mut pe).is_empty());
    send(&mut pe, t0, taker, &ka(true, 0x2222, POOL));
    // Acked on the connection it came in on.
    let out = sent(&mut pe);
    assert_eq!(
        out,
        vec![(
            Dest::Conn(taker),
            AsapMessage::EndpointKeepAliveAck {
                handle: PoolHandle::from(POOL),
                pe_id: PeId(0x1001),
            }
        )]
    );
    assert_eq!(pe.home(), Some((taker, Some(ServerId(0x2222)))));
    assert_eq!(
        events(&mut pe),
        vec![PeEvent::HomeChanged {
            server_id: ServerId(0x2222),
            conn: taker
        }]
    );
    // The next re-registration goes to the new home.
    let at = pe.poll_timeout().expect("re-registration timer");
    pe.handle_timeout(at);
    let out = sent(&mut pe);
    assert!(
        matches!(&out[..], [(Dest::Conn(c), AsapMessage::Registration { .. })] if *c == taker),
        "{out:?}"
    );
    // The old home's connection closing is no longer a home failure.
    pe.handle_transport(at, TransportEvent::Closed { conn: ConnId(1) });
    assert_eq!(pe.home().map(|h| h.0), Some(taker));
    assert!(sent(&mut pe).is_empty());
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn keep_alive_for_another_pool_is_dropped_silently() {
    let t0 = Instant::now();
    let mut pe = registered(t0);
    let stranger = ConnId(3);
    accept(&mut pe, t0, stranger);
    let dropped = pe.counters().dropped;
    send(&mut pe, t0, stranger, &ka(true, 0x6666, "OtherPool"));
    assert!(sent(&mut pe).is_empty());
    assert!(events(&mut pe).is_empty());
    assert_eq!(pe.counters().dropped, dropped + 1);
    assert_eq!(pe.home(), Some((ConnId(1), None)));
    // A keep-alive without H on the accepted connection is acked, home unchanged.
    send(&mut pe, t0, stranger, &ka(false, 0x6666, POOL));
    assert_eq!(sent(&mut pe).len(), 1);
    assert_eq!(pe.home(), Some((ConnId(1), None)));
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn takeover_while_hunting_registers_on_the_accepted_connection() {
    let t0 = Instant::now();
    let mut pe = registered(t0);
    // The home dies: the PE hunts again (a new attempt towards the only registrar).
    pe.handle_transport(t0, TransportEvent::Closed { conn: ConnId(1) });
    let out = sent(&mut pe);
    assert!(
        matches!(
            &out[..],
            [(Dest::Endpoint(_), AsapMessage::Registration { .. })]
        ),
        "{out:?}"
    );
    // Meanwhile the peer that took it over connects and claims it.
    let taker = ConnId(4);
    accept(&mut pe, t0, taker);
    send(&mut pe, t0, taker, &ka(true, 0x3333, POOL));
    let out = sent(&mut pe);
    assert!(
        matches!(&out[0], (Dest::Conn(c), AsapMessage::EndpointKeepAliveAck { .. }) if *c == taker),
        "{out:?}"
    );
    // The pending registration follows on the new home.
    assert!(
        matches!(&out[1..], [(Dest::Conn(c), AsapMessage::Registration { .. })] if *c == taker),
        "{out:?}"
    );
    assert_eq!(pe.home(), Some((taker, Some(ServerId(0x3333)))));
    let answer = AsapMessage::RegistrationResponse {
        reject: false,
        handle: PoolHandle::from(POOL),
        pe_id: PeId(0x1001),
        error: None,
    };
    send(&mut pe, t0, taker, &answer);
    assert_eq!(pe.status(), vec![(PeId(0x1001), PeStatus::Registered)]);
}
