//! Session-layer scenarios (issue 11, "application acks"): a session user sends 1,000
//! numbered messages to a pool of acknowledging echo PEs; the serving PE crashes (or hangs)
//! mid-stream. After the failover (cookie echoed first, next PE from the business card or
//! from the registrar) every message is answered exactly once or was handed to the
//! failover filter — none silently lost.
//!
//! Each PE is two nodes, as in a real PE process: a `PoolElementCore` registering the PE at
//! the registrar (user transport TCP 10.0.4.`i`:7000) and a `SessionEcho` listening there;
//! a fault hits both. The PU side is a `PoolUserCore` (handle resolution, ENDPOINT_
//! UNREACHABLE) plus a `SessionUser`; this test is the glue an embedding PU would be.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rserpool_proto::io::Endpoint;
use rserpool_proto::session::FailureReason;
use rserpool_proto::{
    HuntConfig, HuntOrder, PoolElementConfig, PoolUserConfig, PuCommand, PuEvent, RegistrarConfig,
    SendMode, ServerEvent, SessionServerConfig, SessionUserConfig, UserEvent,
};
use rserpool_sim::{EchoConfig, LinkConfig, NodeId, World};
use rserpool_wire::{
    asap_type, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr, UserTransport,
};

const POOL: &str = "EchoPool";
const PPID: u32 = 0x4543_484f;
const MESSAGES: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// kill -9: the PE's connections close.
    Crash,
    /// kill -STOP: connections stay up, nothing is answered.
    Hang,
}

fn reg_endpoint() -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 3863)))
}

fn user_transport(i: u8) -> TransportAddr {
    TransportAddr::tcp(7000, IpAddr::from([10, 0, 4, i]))
}

fn pe_id(i: u8) -> PeId {
    PeId(0x1000 + u32::from(i))
}

/// PE `i` as a business card lists it.
fn card_entry(i: u8) -> PoolElement {
    PoolElement {
        id: pe_id(i),
        home_registrar: ServerId::UNDETERMINED,
        registration_life: 30_000,
        user_transport: UserTransport::Ip(user_transport(i)),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn hunt() -> HuntConfig {
    HuntConfig {
        order: HuntOrder::InOrder,
        ..HuntConfig::default()
    }
}

struct Pool {
    /// (PE core node, session echo node) per PE number 1..=3.
    nodes: BTreeMap<u8, (NodeId, NodeId)>,
}

fn add_pe(net: &mut World, i: u8, cards: bool) -> (NodeId, NodeId) {
    let pe = net.add_pe(
        i,
        PoolElementConfig {
            pool_handle: PoolHandle::from(POOL),
            pe_id: Some(pe_id(i)),
            user_transports: vec![UserTransport::Ip(user_transport(i))],
            policy: Policy::RoundRobin,
            registrars: vec![reg_endpoint()],
            hunt: hunt(),
            ..PoolElementConfig::default()
        },
    );
    // The card names the other PEs, the next number first.
    let card = cards.then(|| {
        let others = [1u8, 2, 3].map(|k| (i + k - 1) % 3 + 1);
        (
            PoolHandle::from(POOL),
            others[1..].iter().map(|&k| card_entry(k)).collect(),
        )
    });
    let echo = net.add_session_echo(
        i,
        Endpoint::tcp(SocketAddr::new(IpAddr::from([10, 0, 4, i]), 7000)),
        EchoConfig {
            server: SessionServerConfig {
                auto_ack: false,
                business_card: card,
            },
            cookie_every: 10,
            name: format!("pe{i}"),
        },
    );
    (pe, echo)
}

#[derive(Debug, Default)]
struct Outcome {
    answers: BTreeMap<u64, u32>,
    acked: BTreeSet<u64>,
    handed: Vec<u64>,
    dropped_by_filter: BTreeSet<u64>,
    undelivered: usize,
    failed: Vec<(PeId, FailureReason)>,
    completed: Vec<(PeId, PeId)>,
    cookies: Vec<Vec<u8>>,
    /// The latest cookie when the PE failure was reported.
    cookie_at_failure: Option<Vec<u8>>,
    /// (fault time, failure detected, failover completed)
    times: Option<(Instant, Instant, Instant)>,
    faulted: Option<u8>,
}

/// Act on the session user's events like an embedding PU would.
fn pump(net: &mut World, pu: NodeId, su: NodeId, out: &mut Outcome, req: &mut u64) {
    loop {
        let evs = net.session_user_events(su);
        if evs.is_empty() {
            return;
        }
        for (at, ev) in evs {
            match ev {
                UserEvent::NeedServer { .. } => {
                    *req += 1;
                    match net.ask(pu, *req, POOL, false, Duration::from_secs(10)) {
                        PuEvent::Server { pe, .. } => {
                            net.with_session_user(su, |s, now| s.use_server(now, pe));
                        }
                        other => {
                            eprintln!("no server: {other:?}");
                            net.with_session_user(su, |s, now| s.no_server(now));
                        }
                    }
                }
                UserEvent::PeFailed { pool, pe, reason } => {
                    out.failed.push((pe, reason));
                    out.cookie_at_failure = out.cookies.last().cloned();
                    if let Some(t) = out.times.as_mut() {
                        t.1 = at;
                    }
                    net.pu_command(pu, PuCommand::ReportFailure { pool, pe_id: pe });
                }
                UserEvent::FailoverCompleted { old, new } => {
                    out.completed.push((old, new));
                    if let Some(t) = out.times.as_mut() {
                        t.2 = at;
                    }
                }
                UserEvent::CookieReceived { cookie } => out.cookies.push(cookie),
                UserEvent::Data { ppid, data } => {
                    assert_eq!(ppid, PPID);
                    let seq = u64::from_be_bytes(data.try_into().expect("8-byte payload"));
                    *out.answers.entry(seq).or_default() += 1;
                }
                UserEvent::Acked { seq } => {
                    assert!(out.acked.insert(seq), "message {seq} acked twice");
                }
                UserEvent::Undelivered { messages } => out.undelivered += messages.len(),
                UserEvent::Failed { reason } => panic!("session gave up: {reason:?}"),
                UserEvent::SendRefused { error } => panic!("send refused: {error}"),
                UserEvent::Connected { .. }
                | UserEvent::FailoverStarted { .. }
                | UserEvent::BusinessCard { .. } => {}
            }
        }
    }
}

fn scenario(
    seed: u64,
    fault: Fault,
    cards: bool,
    drop_every: Option<u64>,
) -> (World, Pool, Outcome) {
    #[allow(clippy::disallowed_methods)] // the world's arbitrary origin
    let mut net = World::new(Instant::now(), seed);
    let (pool, out) = run_in(&mut net, fault, cards, drop_every);
    (net, pool, out)
}

/// The scenario in a fresh world `net`.
fn run_in(net: &mut World, fault: Fault, cards: bool, drop_every: Option<u64>) -> (Pool, Outcome) {
    net.set_default_link(LinkConfig {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        ..LinkConfig::default()
    });
    net.add_registrar(1, RegistrarConfig::default());
    let mut pool = Pool {
        nodes: BTreeMap::new(),
    };
    for i in 1..=3 {
        pool.nodes.insert(i, add_pe(net, i, cards));
    }
    let pu = net.add_pu(
        1,
        PoolUserConfig {
            registrars: vec![reg_endpoint()],
            hunt: hunt(),
            ..PoolUserConfig::default()
        },
    );
    let su = net.add_session_user(1, SessionUserConfig::new(PoolHandle::from(POOL)));
    net.run(Duration::from_secs(2));

    let handed = Arc::new(Mutex::new((Vec::new(), BTreeSet::new())));
    let h = Arc::clone(&handed);
    net.with_session_user(su, |s, _| {
        s.set_failover_filter(Box::new(move |_old, msgs| {
            let mut h = h.lock().expect("filter log");
            h.0.extend(msgs.iter().map(|m| m.seq));
            match drop_every {
                Some(k) => msgs
                    .into_iter()
                    .filter(|m| {
                        let keep = m.seq % k != 0;
                        if !keep {
                            h.1.insert(m.seq);
                        }
                        keep
                    })
                    .collect(),
                None => msgs,
            }
        }))
    });

    let mut out = Outcome::default();
    let mut req = 0;
    for k in 0..MESSAGES {
        net.with_session_user(su, |s, now| {
            s.send(now, PPID, k.to_be_bytes().to_vec(), SendMode::Failover)
                .expect("a valid message")
        });
        if k == MESSAGES / 2 {
            let serving = net.session_user(su).current_pe().expect("a PE");
            let i = u8::try_from(serving.0 - 0x1000).expect("PE number");
            let (pe, echo) = pool.nodes[&i];
            match fault {
                Fault::Crash => {
                    net.crash(echo);
                    net.crash(pe);
                }
                Fault::Hang => {
                    net.mute(echo, true);
                    net.mute(pe, true);
                }
            }
            out.faulted = Some(i);
            out.times = Some((net.now(), net.now(), net.now()));
        }
        net.run(Duration::from_millis(1));
        pump(net, pu, su, &mut out, &mut req);
    }
    // Drain: everything answered or handed over, within a generous bound.
    for _ in 0..200 {
        if net.session_user(su).outstanding() == 0 {
            break;
        }
        net.run(Duration::from_millis(50));
        pump(net, pu, su, &mut out, &mut req);
    }
    // Let the last reports (ENDPOINT_UNREACHABLE) arrive.
    net.run(Duration::from_secs(1));
    pump(net, pu, su, &mut out, &mut req);
    let h = handed.lock().expect("filter log");
    out.handed = h.0.clone();
    out.dropped_by_filter = h.1.clone();
    (pool, out)
}

/// The accounting every scenario must satisfy.
fn check(net: &World, pool: &Pool, out: &Outcome, fault: Fault) {
    let faulted = out.faulted.expect("a fault happened");
    let old = pe_id(faulted);
    // Exactly one PE failure, of the right kind, and one failover away from it.
    assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
    // A crash shows as the close, or as a send on the dead connection before the close
    // arrives.
    let (pe, reason) = out.failed[0];
    assert_eq!(pe, old);
    match fault {
        Fault::Crash => assert!(
            matches!(reason, FailureReason::Closed | FailureReason::SendFailed),
            "{reason:?}"
        ),
        Fault::Hang => assert_eq!(reason, FailureReason::HeartbeatTimeout),
    }
    assert_eq!(out.completed.len(), 1, "{:?}", out.completed);
    let (o, new) = out.completed[0];
    assert_eq!(o, old);
    assert_ne!(new, old);

    // Every message: answered exactly once, or handed to the filter and dropped by it.
    let mut answered = 0;
    for seq in 0..MESSAGES {
        let n = out.answers.get(&seq).copied().unwrap_or(0);
        if out.dropped_by_filter.contains(&seq) {
            assert_eq!(n, 0, "message {seq} dropped by the filter but answered");
        } else {
            assert_eq!(n, 1, "message {seq} answered {n} times");
            answered += 1;
        }
    }
    assert_eq!(answered + out.dropped_by_filter.len(), MESSAGES as usize);
    assert!(out.answers.keys().all(|s| *s < MESSAGES));
    // What was answered was acknowledged, and nothing else.
    let answered_set: BTreeSet<u64> = out.answers.keys().copied().collect();
    assert_eq!(out.acked, answered_set);
    assert_eq!(out.undelivered, 0);
    // The filter saw unacknowledged messages, each once.
    assert!(!out.handed.is_empty());
    let unique: BTreeSet<u64> = out.handed.iter().copied().collect();
    assert_eq!(unique.len(), out.handed.len());

    // The new PE got the latest cookie of the old one as the session's first message.
    let new_i = u8::try_from(new.0 - 0x1000).expect("PE number");
    let evs = net.session_echo_events(pool.nodes[&new_i].1);
    let first = evs
        .iter()
        .find(|e| !matches!(e, ServerEvent::Accepted { .. }))
        .expect("the new PE heard from the PU");
    let latest = out.cookie_at_failure.clone().expect("cookies were sent");
    assert!(latest.starts_with(format!("pe{faulted}:").as_bytes()));
    match first {
        ServerEvent::CookieEcho { cookie, .. } => assert_eq!(*cookie, latest),
        other => panic!("first message to the new PE: {other:?}"),
    }
    // The embedding PU reported the failed PE.
    let reg = net.registrar_nodes()[0];
    assert!(
        net.registrar(reg)
            .counters()
            .received(asap_type::ENDPOINT_UNREACHABLE)
            >= 1
    );
}

fn report(name: &str, out: &Outcome) {
    let (fault, detected, done) = out.times.expect("times");
    eprintln!(
        "{name}: answered {}, handed to the filter {}, dropped by it {}, detection {:?}, \
         failover done {:?} after the fault",
        out.answers.len(),
        out.handed.len(),
        out.dropped_by_filter.len(),
        detected - fault,
        done - fault
    );
}

#[test]
fn crash_mid_stream_with_business_cards() {
    for seed in [1, 2, 3] {
        let (net, pool, out) = scenario(seed, Fault::Crash, true, None);
        check(&net, &pool, &out, Fault::Crash);
        report(&format!("crash/cards seed {seed}"), &out);
    }
}

#[test]
fn crash_mid_stream_via_the_registrar_and_a_dropping_filter() {
    let (net, pool, out) = scenario(4, Fault::Crash, false, Some(2));
    check(&net, &pool, &out, Fault::Crash);
    assert!(!out.dropped_by_filter.is_empty());
    report("crash/registrar/filter", &out);
}

#[test]
fn hang_mid_stream_detected_by_the_session_heartbeat() {
    for (seed, cards) in [(5, true), (6, false)] {
        let (net, pool, out) = scenario(seed, Fault::Hang, cards, None);
        check(&net, &pool, &out, Fault::Hang);
        let (fault, detected, _) = out.times.expect("times");
        // Heartbeat interval 200 ms + timeout 600 ms, plus a round trip.
        assert!(
            detected - fault <= Duration::from_millis(850),
            "{:?}",
            detected - fault
        );
        report(&format!("hang seed {seed} cards {cards}"), &out);
    }
}

#[test]
fn same_seed_same_run() {
    let (a, _, oa) = scenario(7, Fault::Hang, true, Some(5));
    let (b, _, ob) = scenario(7, Fault::Hang, true, Some(5));
    assert_eq!(a.trace().digest(), b.trace().digest());
    assert_eq!(a.trace().len(), b.trace().len());
    assert_eq!(oa.handed, ob.handed);
    assert_eq!(oa.answers, ob.answers);
}

#[test]
fn many_seeds_crash_and_hang_each_twice_identical() {
    #[allow(clippy::disallowed_methods)] // the world's arbitrary origin
    let start = Instant::now();
    let n = rserpool_sim::seeds::check_seeds(start, 6, |net| {
        let seed = net.seed();
        let fault = if seed % 2 == 0 {
            Fault::Crash
        } else {
            Fault::Hang
        };
        let cards = seed % 3 != 0;
        let drop_every = (seed % 4 == 1).then_some(3);
        let (pool, out) = run_in(net, fault, cards, drop_every);
        check(net, &pool, &out, fault);
    });
    assert!(n >= 1);
}
