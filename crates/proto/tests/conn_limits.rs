//! The registrar core's connection limits, driven through its `Core` interface on a
//! virtual clock: the lockout of issue 8 (every slot held by a connection that sent one
//! handle resolution) does not lock out PUs and PEs; connections with PEs are never
//! closed; idle connections without PEs are; reports are rate-limited.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::io::{
    ConnId, Core, RecvMeta, TransportCommand, TransportEvent, TransportProto,
};
use rserpool_proto::{ConnLimits, Registrar, RegistrarConfig, RegistrarEvent};
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, Protocol, ServerId, TransportAddr,
    UserTransport,
};

fn meta(last: u8, port: u16) -> RecvMeta {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    RecvMeta {
        protocol: Protocol::Asap,
        transport: TransportProto::Tcp,
        peer: SocketAddr::new(ip, port),
        peer_addrs: vec![ip],
        identity: None,
    }
}

fn resolution() -> Vec<u8> {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from("P"),
        items: None,
    }
    .encode_to_vec()
}

fn registration(id: u32) -> Vec<u8> {
    AsapMessage::Registration {
        handle: PoolHandle::from("P"),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: 36_000_000, // 10 h
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                4000,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            )),
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
    .encode_to_vec()
}

struct Harness {
    reg: Registrar,
    now: Instant,
    next: u64,
    /// Connections the core asked to close.
    closed: Vec<TransportCommand>,
    events: Vec<RegistrarEvent>,
}

impl Harness {
    fn new(limits: ConnLimits) -> Self {
        let mut reg = Registrar::new(
            RegistrarConfig {
                connections: limits,
                keepalive_interval: None,
                // PEs here live for hours of virtual time.
                max_registration_life: None,
                ..RegistrarConfig::default()
            },
            9,
        );
        #[allow(clippy::disallowed_methods)] // a base for the virtual clock
        let now = Instant::now();
        reg.handle_timeout(now);
        Self {
            reg,
            now,
            next: 1,
            closed: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while self.reg.poll_transmit().is_some() {}
        while let Some(c) = self.reg.poll_command() {
            // The shell closes it and reports `Closed`.
            let (TransportCommand::Close(conn) | TransportCommand::Abort(conn)) = c else {
                panic!("the registrar never connects: {c:?}");
            };
            self.closed.push(c);
            self.reg
                .handle_transport(self.now, TransportEvent::Closed { conn });
        }
        while let Some(e) = self.reg.poll_event() {
            self.events.push(e);
        }
    }

    fn connect(&mut self, source: u8) -> ConnId {
        let conn = ConnId(self.next);
        self.next += 1;
        let meta = meta(source, 30_000 + self.next as u16);
        self.reg
            .handle_transport(self.now, TransportEvent::Accepted { conn, meta });
        self.drain();
        conn
    }

    fn send(&mut self, conn: ConnId, source: u8, bytes: &[u8]) {
        self.reg
            .handle_message(self.now, conn, &meta(source, 1), bytes);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.reg.poll_timeout().filter(|t| *t <= until) {
            self.now = self.now.max(t);
            self.reg.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
        self.reg.handle_timeout(self.now);
        self.drain();
    }

    fn was_closed(&self, conn: ConnId) -> bool {
        self.closed.iter().any(
            |c| matches!(c, TransportCommand::Close(k) | TransportCommand::Abort(k) if *k == conn),
        )
    }
}

#[test]
fn idle_resolvers_filling_the_table_do_not_lock_out_pus_and_pes() {
    let mut h = Harness::new(ConnLimits {
        max_connections: 16,
        max_per_source: 0,
        idle_timeout: None,
    });
    // A PE registers first.
    let pe_conn = h.connect(1);
    h.send(pe_conn, 1, &registration(1));
    assert_eq!(h.reg.handlespace().len(), 1);
    // The attack: connections that each send one resolution and stay.
    for _ in 0..15 {
        let c = h.connect(2);
        h.send(c, 2, &resolution());
        h.advance(Duration::from_millis(10));
    }
    assert_eq!(h.reg.connections().len(), 16);
    assert!(h.closed.is_empty());
    // Many more: each takes the place of the longest idle one, never the PE's.
    let mut attackers = Vec::new();
    for _ in 0..100 {
        let c = h.connect(2);
        h.send(c, 2, &resolution());
        attackers.push(c);
        h.advance(Duration::from_millis(10));
    }
    assert!(!h.was_closed(pe_conn));
    // A new PU resolves and a new PE registers.
    let pu = h.connect(3);
    assert!(!h.was_closed(pu));
    h.send(pu, 3, &resolution());
    let pe2 = h.connect(3);
    assert!(!h.was_closed(pe2));
    h.send(pe2, 3, &registration(2));
    assert_eq!(h.reg.handlespace().len(), 2);
    // Both PE connections survive another flood.
    for _ in 0..100 {
        let c = h.connect(2);
        h.send(c, 2, &resolution());
    }
    assert!(!h.was_closed(pe_conn) && !h.was_closed(pe2));
    assert_eq!(h.reg.connections().len(), 16);
    assert_eq!(h.reg.counters().connections.evicted, 202);
    assert_eq!(h.reg.counters().connections.refused, 0);
    // The log gets a few summaries, not 202 lines.
    let reports: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            RegistrarEvent::ConnectionLimits(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(!reports.is_empty() && reports.len() <= 4, "{reports:?}");
    h.advance(Duration::from_secs(2));
    let total: u64 = h
        .events
        .iter()
        .filter_map(|e| match e {
            RegistrarEvent::ConnectionLimits(r) => Some(r.evicted),
            _ => None,
        })
        .sum();
    assert_eq!(total, 202);
}

#[test]
fn idle_timeout_spares_pe_connections_and_the_per_source_cap_spares_other_sources() {
    let mut h = Harness::new(ConnLimits {
        max_connections: 100,
        max_per_source: 4,
        idle_timeout: Some(Duration::from_secs(5)),
    });
    let pe_conn = h.connect(1);
    h.send(pe_conn, 1, &registration(1));
    let pu = h.connect(1);
    h.send(pu, 1, &resolution());
    // Source 2 opens 10 connections: at most 4 stay.
    let from2: Vec<ConnId> = (0..10).map(|_| h.connect(2)).collect();
    assert_eq!(h.closed.len(), 6);
    assert!(from2[..6].iter().all(|c| h.was_closed(*c)));
    assert_eq!(h.reg.counters().connections.source_evicted, 6);
    assert!(!h.was_closed(pu) && !h.was_closed(pe_conn));
    // The PU keeps resolving every 3 s; everything else idles.
    for _ in 0..4 {
        h.advance(Duration::from_secs(3));
        h.send(pu, 1, &resolution());
    }
    assert!(from2.iter().all(|c| h.was_closed(*c)));
    assert!(!h.was_closed(pu) && !h.was_closed(pe_conn));
    // The PU stops; the PE's connection stays however long it is quiet.
    h.advance(Duration::from_secs(3600));
    assert!(h.was_closed(pu));
    assert!(!h.was_closed(pe_conn));
    assert_eq!(h.reg.counters().connections.idle_closed, 5);
    assert_eq!(h.reg.handlespace().len(), 1);
    // Once its PE de-registers, it idles out too.
    h.send(
        pe_conn,
        1,
        &AsapMessage::Deregistration {
            handle: PoolHandle::from("P"),
            pe_id: PeId(1),
        }
        .encode_to_vec(),
    );
    h.advance(Duration::from_secs(6));
    assert!(h.was_closed(pe_conn));
    assert!(h.reg.connections().is_empty());
}
