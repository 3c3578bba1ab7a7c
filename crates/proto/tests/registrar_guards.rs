//! The registrar's protections against valid ASAP messages used as attacks (issue 8),
//! driven message by message on a virtual clock: PE hijack by identifier reuse, forged
//! unreachability reports, unusable addresses and lifetimes, PE quotas.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::handlespace::HandlespaceConfig;
use rserpool_proto::io::{ConnId, Core, Dest, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::registrar::{AddressScope, PeIdMove, Refusal, ReportOutcome};
use rserpool_proto::{Registrar, RegistrarConfig, RegistrarEvent, RemovalReason};
use rserpool_wire::{
    codec, AsapMessage, CauseCode, PeId, Policy, PoolElement, PoolHandle, Protocol, ServerId,
    TransportAddr, TransportUse, UserTransport,
};

const POOL: &str = "EchoPool";
const KA_TIMEOUT: Duration = Duration::from_secs(2);

struct Reg {
    core: Registrar,
    now: Instant,
    events: Vec<RegistrarEvent>,
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn meta(peer: SocketAddr) -> RecvMeta {
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

impl Reg {
    fn new(cfg: RegistrarConfig) -> Self {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut r = Reg {
            core: Registrar::new(cfg, 7),
            now,
            events: Vec::new(),
        };
        r.core.handle_timeout(now);
        r.drain();
        r
    }

    /// Transmits since the last call, as (connection, message).
    fn drain(&mut self) -> Vec<(ConnId, AsapMessage)> {
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            if let Dest::Conn(c) = t.dest {
                let m = AsapMessage::decode(&t.bytes).expect("decodes").message;
                out.push((c, m));
            }
        }
        while let Some(e) = self.core.poll_event() {
            self.events.push(e);
        }
        out
    }

    fn send(&mut self, conn: u64, peer: &str, m: &AsapMessage) -> Vec<(ConnId, AsapMessage)> {
        let now = self.now;
        self.core
            .handle_message(now, ConnId(conn), &meta(sa(peer)), &m.encode_to_vec());
        self.drain()
    }

    fn close(&mut self, conn: u64) -> Vec<(ConnId, AsapMessage)> {
        let now = self.now;
        self.core
            .handle_transport(now, TransportEvent::Closed { conn: ConnId(conn) });
        self.drain()
    }

    /// Let `d` pass, running every timer on the way.
    fn run(&mut self, d: Duration) -> Vec<(ConnId, AsapMessage)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            let now = self.now;
            self.core.handle_timeout(now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }

    fn pe(&self, id: u32) -> Option<PoolElement> {
        self.core
            .handlespace()
            .get(&PoolHandle::from(POOL), PeId(id))
            .map(|e| e.pe.clone())
    }

    fn ids(&self) -> Vec<PeId> {
        self.core
            .handlespace()
            .pool_entries(&PoolHandle::from(POOL))
            .map(|e| e.pe.id)
            .collect()
    }

    fn removed(&self, reason: RemovalReason) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, RegistrarEvent::PeRemoved { reason: r, .. } if *r == reason))
            .count()
    }

    fn refusals(&self) -> Vec<Refusal> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RegistrarEvent::RegistrationRejected { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn outcomes(&self) -> Vec<ReportOutcome> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RegistrarEvent::UnreachableReport { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }
}

fn config() -> RegistrarConfig {
    RegistrarConfig {
        keepalive_interval: Some(Duration::from_secs(3)),
        keepalive_timeout: KA_TIMEOUT,
        keepalive_jitter_percent: 0,
        ..RegistrarConfig::default()
    }
}

fn tcp(ip: &str, port: u16) -> UserTransport {
    UserTransport::Ip(TransportAddr::tcp(port, ip.parse().expect("ip")))
}

fn reg_msg_with(id: u32, user: UserTransport, life: u32) -> AsapMessage {
    AsapMessage::Registration {
        handle: PoolHandle::from(POOL),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: life,
            user_transport: user,
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
}

fn reg_msg(id: u32, ip: &str, port: u16) -> AsapMessage {
    reg_msg_with(id, tcp(ip, port), 30_000)
}

fn ack(id: u32) -> AsapMessage {
    AsapMessage::EndpointKeepAliveAck {
        handle: PoolHandle::from(POOL),
        pe_id: PeId(id),
    }
}

fn resolution() -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from(POOL),
        items: None,
    }
}

fn unreachable(id: u32) -> AsapMessage {
    AsapMessage::EndpointUnreachable {
        handle: PoolHandle::from(POOL),
        pe_id: PeId(id),
    }
}

/// The registration answer in `got` for `conn`: Ok(()) accepted, Err(cause) refused.
fn answer(got: &[(ConnId, AsapMessage)], conn: u64) -> Option<Result<(), CauseCode>> {
    got.iter().find_map(|(c, m)| match m {
        AsapMessage::RegistrationResponse { reject, error, .. } if *c == ConnId(conn) => {
            Some(if *reject {
                Err(error
                    .as_ref()
                    .and_then(|e| e.first_code())
                    .unwrap_or(CauseCode::UNSPECIFIED))
            } else {
                Ok(())
            })
        }
        _ => None,
    })
}

fn keepalives_to(got: &[(ConnId, AsapMessage)], conn: u64) -> usize {
    got.iter()
        .filter(|(c, m)| *c == ConnId(conn) && matches!(m, AsapMessage::EndpointKeepAlive { .. }))
        .count()
}

/// The PEs on connections 1, 2 … (peer 10.0.0.N:5000) acknowledge their keep-alives.
fn answer_keepalives(r: &mut Reg, got: &[(ConnId, AsapMessage)]) {
    for (c, m) in got {
        if let AsapMessage::EndpointKeepAlive {
            pe_id: Some(id), ..
        } = m
        {
            let peer = format!("10.0.0.{}:5000", c.0);
            r.send(c.0, &peer, &ack(id.0));
        }
    }
}

fn user_addr(pe: &PoolElement) -> IpAddr {
    pe.user_transport.as_ip().expect("ip transport").addrs[0]
}

// ----------------------------------------------------------------------------------------
// Item 1: PE hijack by identifier reuse

#[test]
fn reusing_a_live_pes_identifier_is_refused_after_the_holder_answers_a_probe() {
    let mut r = Reg::new(config());
    let got = r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 1), Some(Ok(())));
    // The attacker claims the identifier with its own address.
    let got = r.send(2, "10.0.0.66:6000", &reg_msg(0x10, "10.0.0.66", 9));
    assert_eq!(answer(&got, 2), None, "answered only after the probe");
    assert_eq!(keepalives_to(&got, 1), 1, "the holder is probed");
    assert!(r.events.iter().any(|e| matches!(
        e,
        RegistrarEvent::RegistrationHeld { holder, .. } if *holder == ConnId(1)
    )));
    // Resolutions meanwhile still give the real PE.
    assert_eq!(
        user_addr(&r.pe(0x10).expect("PE")),
        "10.0.0.1".parse::<IpAddr>().unwrap()
    );
    let got = r.send(1, "10.0.0.1:5000", &ack(0x10));
    assert_eq!(answer(&got, 2), Some(Err(CauseCode::REJECTED_SECURITY)));
    assert_eq!(r.refusals(), vec![Refusal::IdentifierInUse]);
    let pe = r.pe(0x10).expect("PE");
    assert_eq!(user_addr(&pe), "10.0.0.1".parse::<IpAddr>().unwrap());
    // The real PE's keep-alives keep working: it stays for good.
    for _ in 0..5 {
        let got = r.run(Duration::from_secs(3));
        assert_eq!(keepalives_to(&got, 1), 1);
        r.send(1, "10.0.0.1:5000", &ack(0x10));
    }
    assert_eq!(r.ids(), vec![PeId(0x10)]);
    assert_eq!(r.core.counters().guards.refused_identifier_in_use, 1);
    assert_eq!(r.core.guard_state_len(), (0, 0), "nothing left behind");
}

#[test]
fn a_silent_holder_loses_its_identifier_after_the_probe_times_out() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    let got = r.send(2, "10.0.0.2:6000", &reg_msg(0x10, "10.0.0.2", 7000));
    assert_eq!(answer(&got, 2), None);
    let got = r.run(KA_TIMEOUT - Duration::from_millis(1));
    assert_eq!(answer(&got, 2), None);
    let got = r.run(Duration::from_millis(1));
    assert_eq!(answer(&got, 2), Some(Ok(())));
    assert_eq!(
        user_addr(&r.pe(0x10).expect("PE")),
        "10.0.0.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(r.core.counters().guards.moves_granted, 1);
    // The new connection is the PE's now: its ACKs count, the old one's do not.
    let got = r.run(Duration::from_secs(3));
    assert_eq!(keepalives_to(&got, 2), 1);
    r.send(1, "10.0.0.1:5000", &ack(0x10));
    r.send(2, "10.0.0.2:6000", &ack(0x10));
    r.run(Duration::from_secs(2));
    assert_eq!(r.ids(), vec![PeId(0x10)]);
}

#[test]
fn a_pe_whose_old_connection_closed_reregisters_at_once() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    r.close(1);
    let got = r.send(2, "10.0.0.1:5001", &reg_msg(0x10, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 2), Some(Ok(())));
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, RegistrarEvent::PeUpdated { .. })));
    // The other order: the new connection's registration arrives before the old
    // connection's close is known — it waits, and the close grants it.
    let got = r.send(3, "10.0.0.1:5002", &reg_msg(0x10, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 3), None);
    let got = r.close(2);
    assert_eq!(answer(&got, 3), Some(Ok(())));
    assert_eq!(r.ids(), vec![PeId(0x10)]);
}

#[test]
fn the_holder_deregistering_or_reregistering_decides_a_waiting_claim() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    r.send(2, "10.0.0.2:6000", &reg_msg(0x10, "10.0.0.2", 7000));
    // A re-registration over the holder's own connection proves it alive.
    let got = r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 1), Some(Ok(())));
    assert_eq!(answer(&got, 2), Some(Err(CauseCode::REJECTED_SECURITY)));
    // A claim, then the holder de-registers: the identifier is free and goes to the claim.
    r.run(KA_TIMEOUT);
    r.send(1, "10.0.0.1:5000", &ack(0x10));
    let got = r.send(2, "10.0.0.2:6000", &reg_msg(0x10, "10.0.0.2", 7000));
    assert_eq!(answer(&got, 2), None);
    let got = r.send(
        1,
        "10.0.0.1:5000",
        &AsapMessage::Deregistration {
            handle: PoolHandle::from(POOL),
            pe_id: PeId(0x10),
        },
    );
    assert_eq!(answer(&got, 2), Some(Ok(())));
    assert_eq!(
        user_addr(&r.pe(0x10).expect("PE")),
        "10.0.0.2".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn claims_are_bounded_and_do_not_turn_into_a_probe_flood() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    let got = r.send(2, "10.0.0.2:6000", &reg_msg(0x10, "10.0.0.2", 7000));
    assert_eq!(keepalives_to(&got, 1), 1);
    // A second claimant while one waits: refused at once, no second probe.
    let got = r.send(3, "10.0.0.3:6000", &reg_msg(0x10, "10.0.0.3", 7000));
    assert_eq!(answer(&got, 3), Some(Err(CauseCode::REJECTED_SECURITY)));
    assert_eq!(keepalives_to(&got, 1), 0);
    // The first claimant repeating itself gets one answer when it is decided.
    let got = r.send(2, "10.0.0.2:6000", &reg_msg(0x10, "10.0.0.2", 7000));
    assert_eq!(answer(&got, 2), None);
    let got = r.send(1, "10.0.0.1:5000", &ack(0x10));
    assert_eq!(
        got.iter()
            .filter(
                |(c, m)| *c == ConnId(2) && matches!(m, AsapMessage::RegistrationResponse { .. })
            )
            .count(),
        1
    );
    // Claiming again right after the holder answered: refused at once without a probe.
    let got = r.send(2, "10.0.0.2:6000", &reg_msg(0x10, "10.0.0.2", 7000));
    assert_eq!(answer(&got, 2), Some(Err(CauseCode::REJECTED_SECURITY)));
    assert_eq!(keepalives_to(&got, 1), 0);
    assert_eq!(r.core.counters().guards.probes_limited, 1);
    // 16 waiting claims per connection at most.
    let mut r = Reg::new(config());
    for i in 0..20u32 {
        r.send(1, "10.0.0.1:5000", &reg_msg(0x100 + i, "10.0.0.1", 7000));
    }
    let mut refused = 0;
    for i in 0..20u32 {
        let got = r.send(2, "10.0.0.2:6000", &reg_msg(0x100 + i, "10.0.0.2", 7000));
        if answer(&got, 2) == Some(Err(CauseCode::REJECTED_SECURITY)) {
            refused += 1;
        }
    }
    assert_eq!(refused, 4);
    // The claimant leaves: its claims are forgotten, nothing is granted later (the
    // silent holders time out and are removed, and nobody takes their place).
    r.close(2);
    let got = r.run(Duration::from_secs(10));
    assert_eq!(answer(&got, 2), None);
    assert!(r.ids().is_empty());
    let added = r
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RegistrarEvent::PeAdded { .. } | RegistrarEvent::PeUpdated { .. }
            )
        })
        .count();
    assert_eq!(added, 20);
    assert_eq!(r.core.counters().guards.moves_granted, 0);
    assert_eq!(r.core.guard_state_len(), (0, 0));
}

#[test]
fn always_lets_the_last_registration_win() {
    let mut r = Reg::new(RegistrarConfig {
        pe_id_move: PeIdMove::Always,
        ..config()
    });
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    let got = r.send(2, "10.0.0.66:6000", &reg_msg(0x10, "10.0.0.66", 9));
    assert_eq!(answer(&got, 2), Some(Ok(())));
    assert_eq!(
        user_addr(&r.pe(0x10).expect("PE")),
        "10.0.0.66".parse::<IpAddr>().unwrap()
    );
}

// ----------------------------------------------------------------------------------------
// Item 2: forged unreachability reports

#[test]
fn reports_from_connections_that_never_resolved_the_pool_are_ignored() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    for c in 10..20 {
        let got = r.send(c, "10.0.0.66:6000", &unreachable(0x10));
        assert_eq!(keepalives_to(&got, 1), 0, "no probe for a forged report");
    }
    assert_eq!(r.ids(), vec![PeId(0x10)]);
    assert_eq!(r.core.counters().guards.reports_not_resolved, 10);
    assert!(r
        .outcomes()
        .iter()
        .all(|o| *o == ReportOutcome::NotResolved));
    let pe = r
        .core
        .handlespace()
        .get(&POOL.into(), PeId(0x10))
        .expect("PE");
    assert_eq!(pe.bookkeeping.unreachable_reports, 0);
}

#[test]
fn reports_probe_and_a_pe_that_answers_stays() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    r.send(2, "10.0.0.2:5000", &reg_msg(0x20, "10.0.0.2", 7000));
    let mut probes = 0;
    // 100 reporters, each resolving then reporting PE 0x10, the PEs answering every
    // keep-alive: a forged report costs the PE at most a keep-alive.
    for c in 100..200u64 {
        let peer = format!("10.0.9.{}:4000", c - 99);
        r.send(c, &peer, &resolution());
        let got = r.send(c, &peer, &unreachable(0x10));
        let again = r.send(c, &peer, &unreachable(0x10)); // repeated: ignored
        assert_eq!(keepalives_to(&again, 1), 0);
        probes += keepalives_to(&got, 1);
        answer_keepalives(&mut r, &got);
        let got = r.run(Duration::from_millis(100));
        answer_keepalives(&mut r, &got);
        assert!(r.ids().contains(&PeId(0x10)), "removed after report {c}");
    }
    // 10 s of reports: at most one extra probe per keep-alive timeout (2 s).
    assert!((1..=6).contains(&probes), "{probes} probes");
    let g = &r.core.counters().guards;
    // Each connection's report counted at most once (16 at most wait for one answer).
    assert!(g.reports_counted <= 100 && g.reports_counted >= 16, "{g:?}");
    assert_eq!(g.reports_counted + g.reports_repeated, 200);
    assert_eq!(g.report_probes as usize, probes);
    assert_eq!(r.ids(), vec![PeId(0x10), PeId(0x20)]);
    assert_eq!(r.removed(RemovalReason::Unreachable), 0);
}

#[test]
fn reports_keep_probing_once_the_pe_stops_answering() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    r.send(9, "10.0.2.1:4000", &resolution());
    let got = r.send(9, "10.0.2.1:4000", &unreachable(0x10));
    assert_eq!(keepalives_to(&got, 1), 1);
    r.send(1, "10.0.0.1:5000", &ack(0x10));
    // Many more reporters right after the answer: no probe, the list of counted
    // reporters fills up.
    for c in 10..40u64 {
        let peer = format!("10.0.3.{c}:4000");
        r.send(c, &peer, &resolution());
        let got = r.send(c, &peer, &unreachable(0x10));
        assert_eq!(keepalives_to(&got, 1), 0);
    }
    assert_eq!(r.core.counters().guards.reports_counted, 1 + 16);
    // The PE hangs. A keep-alive timeout later the first reporter's next report probes
    // again, and the unanswered probe removes the PE.
    r.run(KA_TIMEOUT);
    let got = r.send(9, "10.0.2.1:4000", &unreachable(0x10));
    assert_eq!(keepalives_to(&got, 1), 1);
    r.run(KA_TIMEOUT);
    assert!(r.ids().is_empty());
    assert_eq!(r.removed(RemovalReason::Unreachable), 1);
}

#[test]
fn a_reported_pe_that_does_not_answer_is_removed_as_unreachable() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    r.send(9, "10.0.2.1:4000", &resolution());
    let got = r.send(9, "10.0.2.1:4000", &unreachable(0x10));
    assert_eq!(keepalives_to(&got, 1), 1);
    assert_eq!(r.outcomes(), vec![ReportOutcome::Probing]);
    r.run(KA_TIMEOUT - Duration::from_millis(1));
    assert_eq!(r.ids(), vec![PeId(0x10)]);
    r.run(Duration::from_millis(1));
    assert!(r.ids().is_empty());
    assert_eq!(r.removed(RemovalReason::Unreachable), 1);
    assert_eq!(r.core.guard_state_len().0, 0);
}

#[test]
fn without_probing_distinct_resolving_connections_remove_the_pe() {
    let mut r = Reg::new(RegistrarConfig {
        probe_on_unreachable: false,
        max_bad_pe_reports: 3,
        ..config()
    });
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    // One connection reporting again and again counts once.
    r.send(9, "10.0.2.1:4000", &resolution());
    for _ in 0..10 {
        let got = r.send(9, "10.0.2.1:4000", &unreachable(0x10));
        assert_eq!(keepalives_to(&got, 1), 0, "no probe in this mode");
    }
    assert_eq!(r.ids(), vec![PeId(0x10)]);
    r.send(10, "10.0.2.2:4000", &resolution());
    r.send(10, "10.0.2.2:4000", &unreachable(0x10));
    assert_eq!(r.ids(), vec![PeId(0x10)]);
    r.send(11, "10.0.2.3:4000", &resolution());
    r.send(11, "10.0.2.3:4000", &unreachable(0x10));
    assert!(r.ids().is_empty());
    assert_eq!(r.removed(RemovalReason::Unreachable), 1);
}

#[test]
fn remembered_pools_per_connection_are_bounded() {
    let mut r = Reg::new(config());
    r.send(1, "10.0.0.1:5000", &reg_msg(0x10, "10.0.0.1", 7000));
    r.send(9, "10.0.2.1:4000", &resolution());
    // 40 other pools resolved afterwards push EchoPool out of the connection's memory.
    for i in 0..40u32 {
        let h = format!("P{i}");
        let m = AsapMessage::Registration {
            handle: PoolHandle::from(h.as_str()),
            pe: PoolElement {
                id: PeId(0x1000 + i),
                home_registrar: ServerId(0),
                registration_life: 30_000,
                user_transport: tcp("10.0.0.1", 7000),
                policy: Policy::RoundRobin,
                asap_transport: None,
            },
        };
        r.send(1, "10.0.0.1:5000", &m);
        r.send(
            9,
            "10.0.2.1:4000",
            &AsapMessage::HandleResolution {
                subscribe: false,
                handle: PoolHandle::from(h.as_str()),
                items: None,
            },
        );
    }
    let got = r.send(9, "10.0.2.1:4000", &unreachable(0x10));
    assert_eq!(keepalives_to(&got, 1), 0);
    assert_eq!(r.outcomes(), vec![ReportOutcome::NotResolved]);
    r.close(9);
    assert_eq!(r.core.guard_state_len(), (0, 0));
}

// ----------------------------------------------------------------------------------------
// Item 3: unusable addresses and lifetimes

fn refused_with_quote(r: &mut Reg, m: &AsapMessage, peer: &str) -> (Refusal, Vec<u8>) {
    let before = r.refusals().len();
    let got = r.send(5, peer, m);
    let info = got
        .iter()
        .find_map(|(_, m)| match m {
            AsapMessage::RegistrationResponse {
                reject: true,
                error: Some(e),
                ..
            } => {
                assert_eq!(e.first_code(), Some(CauseCode::INVALID_VALUES), "{m:?}");
                Some(e.causes[0].info.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("not refused: {m:?} → {got:?}"));
    let refusals = r.refusals();
    assert_eq!(refusals.len(), before + 1);
    (refusals[before], info)
}

#[test]
fn unusable_addresses_ports_transport_uses_and_lifetimes_are_refused_quoting_the_parameter() {
    let mut r = Reg::new(config());
    let bad_transports: Vec<(UserTransport, Refusal)> = vec![
        (tcp("10.0.0.5", 0), Refusal::UnusableAddress),
        (tcp("0.0.0.0", 80), Refusal::UnusableAddress),
        (tcp("::", 80), Refusal::UnusableAddress),
        (tcp("255.255.255.255", 80), Refusal::UnusableAddress),
        (tcp("224.0.0.1", 80), Refusal::UnusableAddress),
        (tcp("239.0.0.50", 80), Refusal::UnusableAddress),
        (tcp("ff02::1", 80), Refusal::UnusableAddress),
        (tcp("::ffff:224.1.1.1", 80), Refusal::UnusableAddress),
        (
            UserTransport::Ip(TransportAddr::sctp(
                80,
                TransportUse(7),
                vec!["10.0.0.5".parse().unwrap()],
            )),
            Refusal::TransportUse,
        ),
        (
            UserTransport::Ip(TransportAddr::sctp(
                80,
                TransportUse::DATA_ONLY,
                vec!["10.0.0.5".parse().unwrap(), "0.0.0.0".parse().unwrap()],
            )),
            Refusal::UnusableAddress,
        ),
        // A loopback address from a connection that is not from loopback.
        (tcp("127.0.0.1", 80), Refusal::LoopbackFromElsewhere),
        (tcp("::1", 80), Refusal::LoopbackFromElsewhere),
    ];
    for (i, (t, want)) in bad_transports.into_iter().enumerate() {
        let m = reg_msg_with(0x50 + i as u32, t.clone(), 30_000);
        let (why, info) = refused_with_quote(&mut r, &m, "10.0.0.5:5000");
        assert_eq!(why, want, "{t:?}");
        assert_eq!(
            info,
            codec::user_transport_tlv(&t),
            "quotes the transport TLV"
        );
    }
    // Registration Life above the maximum (0xFFFFFFFF ms = 49 days): quotes the PE.
    let m = reg_msg_with(0x70, tcp("10.0.0.5", 80), u32::MAX);
    let (why, info) = refused_with_quote(&mut r, &m, "10.0.0.5:5000");
    assert_eq!(why, Refusal::RegistrationLife);
    let AsapMessage::Registration { pe, .. } = &m else {
        unreachable!()
    };
    assert_eq!(info, codec::pool_element_tlv(pe));
    assert!(r.ids().is_empty(), "nothing registered");
    let g = &r.core.counters().guards;
    assert_eq!(g.refused_unusable_address, 10);
    assert_eq!(g.refused_address_scope, 2);
    assert_eq!(g.refused_registration_life, 1);
    // Loopback over loopback is fine; so is the maximum life itself.
    let got = r.send(
        6,
        "127.0.0.1:5000",
        &reg_msg_with(0x80, tcp("127.0.0.1", 80), 3_600_000),
    );
    assert_eq!(answer(&got, 6), Some(Ok(())));
    let got = r.send(7, "[::ffff:127.0.0.1]:5000", &reg_msg(0x81, "::1", 80));
    assert_eq!(answer(&got, 7), Some(Ok(())));
}

#[test]
fn minimum_address_scope_and_lifetime_limit_are_settings() {
    let mut r = Reg::new(RegistrarConfig {
        min_address_scope: AddressScope::SiteLocal,
        max_registration_life: None,
        ..config()
    });
    for (ip, ok) in [
        ("127.0.0.1", false),
        ("169.254.3.4", false),
        ("fe80::1", false),
        ("192.168.1.1", true),
        ("fd00::5", true),
        ("8.8.8.8", true),
    ] {
        let got = r.send(1, "127.0.0.1:5000", &reg_msg(0x100, ip, 80));
        let want = if ok {
            Ok(())
        } else {
            Err(CauseCode::INVALID_VALUES)
        };
        assert_eq!(answer(&got, 1), Some(want), "{ip}");
    }
    let got = r.send(
        1,
        "127.0.0.1:5000",
        &reg_msg_with(0x101, tcp("10.0.0.1", 80), u32::MAX),
    );
    assert_eq!(answer(&got, 1), Some(Ok(())), "no lifetime limit");
}

// ----------------------------------------------------------------------------------------
// Item 5: quotas

#[test]
fn per_connection_quota_counts_each_pe_once() {
    let mut r = Reg::new(RegistrarConfig {
        max_pes_per_connection: 3,
        ..config()
    });
    for id in 1..=3 {
        let got = r.send(1, "10.0.0.1:5000", &reg_msg(id, "10.0.0.1", 7000));
        assert_eq!(answer(&got, 1), Some(Ok(())));
    }
    let got = r.send(1, "10.0.0.1:5000", &reg_msg(4, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 1), Some(Err(CauseCode::LACK_OF_RESOURCES)));
    assert_eq!(r.refusals(), vec![Refusal::ConnectionQuota]);
    // Re-registrations do not count again.
    for id in 1..=3 {
        let got = r.send(1, "10.0.0.1:5000", &reg_msg(id, "10.0.0.1", 7001));
        assert_eq!(answer(&got, 1), Some(Ok(())));
    }
    // A de-registration frees a place; another connection has its own quota.
    r.send(
        1,
        "10.0.0.1:5000",
        &AsapMessage::Deregistration {
            handle: PoolHandle::from(POOL),
            pe_id: PeId(1),
        },
    );
    let got = r.send(1, "10.0.0.1:5000", &reg_msg(4, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 1), Some(Ok(())));
    let got = r.send(2, "10.0.0.1:5001", &reg_msg(5, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 2), Some(Ok(())));
}

#[test]
fn per_source_quota_spans_connections_and_ipv6_prefixes() {
    let mut r = Reg::new(RegistrarConfig {
        max_pes_per_source: 4,
        ..config()
    });
    for (c, id) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        let got = r.send(c, "10.0.0.1:5000", &reg_msg(id, "10.0.0.1", 7000));
        assert_eq!(answer(&got, c), Some(Ok(())));
    }
    let got = r.send(5, "10.0.0.1:5005", &reg_msg(5, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 5), Some(Err(CauseCode::LACK_OF_RESOURCES)));
    assert_eq!(r.refusals(), vec![Refusal::SourceQuota]);
    // Another source is not affected; a re-registration from the same source is fine.
    let got = r.send(6, "10.0.0.2:5000", &reg_msg(6, "10.0.0.2", 7000));
    assert_eq!(answer(&got, 6), Some(Ok(())));
    let got = r.send(1, "10.0.0.1:5000", &reg_msg(1, "10.0.0.1", 7001));
    assert_eq!(answer(&got, 1), Some(Ok(())));
    // PEs of a closed connection still count until they are gone.
    r.close(4);
    let got = r.send(5, "10.0.0.1:5005", &reg_msg(5, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 5), Some(Err(CauseCode::LACK_OF_RESOURCES)));
    // … its PE re-registering over a new connection from the same source is not new.
    let got = r.send(7, "10.0.0.1:5007", &reg_msg(4, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 7), Some(Ok(())));
    // Once PE 4 left (no keep-alive answer), a place is free again.
    r.close(7);
    r.run(Duration::from_secs(6));
    assert!(!r.ids().contains(&PeId(4)));
    let got = r.send(5, "10.0.0.1:5005", &reg_msg(5, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 5), Some(Ok(())));

    // IPv6: one /64 is one source.
    let mut r = Reg::new(RegistrarConfig {
        max_pes_per_source: 2,
        ..config()
    });
    for (c, peer, ok) in [
        (1, "[2001:db8::1]:5000", true),
        (2, "[2001:db8::2]:5000", true),
        (3, "[2001:db8::ffff:3]:5000", false),
        (4, "[2001:db8:0:1::1]:5000", true),
    ] {
        let got = r.send(c, peer, &reg_msg(c as u32, "2001:db8::1", 7000));
        let want = if ok {
            Ok(())
        } else {
            Err(CauseCode::LACK_OF_RESOURCES)
        };
        assert_eq!(answer(&got, c), Some(want), "{peer}");
    }
}

#[test]
fn per_pool_cap_refuses_with_lack_of_resources() {
    let mut r = Reg::new(RegistrarConfig {
        handlespace: HandlespaceConfig {
            max_pes_per_pool: 2,
            ..HandlespaceConfig::default()
        },
        ..config()
    });
    for id in 1..=2 {
        r.send(1, "10.0.0.1:5000", &reg_msg(id, "10.0.0.1", 7000));
    }
    let got = r.send(1, "10.0.0.1:5000", &reg_msg(3, "10.0.0.1", 7000));
    assert_eq!(answer(&got, 1), Some(Err(CauseCode::LACK_OF_RESOURCES)));
    assert_eq!(r.refusals(), vec![Refusal::PoolFull]);
    assert_eq!(r.core.counters().guards.refused_full, 1);
}
