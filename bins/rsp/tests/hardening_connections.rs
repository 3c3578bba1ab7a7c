//! Issue 8, item 4: connection lockout. Connections that each send one handle resolution
//! and then stay idle used to fill the registrar's connection limit, after which every new
//! connection was closed at once: no PU could resolve, no PE could register. Here the
//! attack runs through real sockets against a real `rsp registrar`, and a legitimate PU
//! and PE are served throughout; the per-source cap and the idle timeout act; the
//! registrar says so in its log and in `rsp dump`.
//!
//! Attack connections come from other loopback addresses (127.0.0.2 …: all of 127/8 is
//! loopback on Linux) so the per-source cap and the total limit can be told apart; the
//! legitimate clients use 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rserpool_wire::framing::Deframer;
use rserpool_wire::{AsapMessage, PeId, Policy, PoolHandle};
use socket2::{Domain, Socket, Type};
use support::*;

/// A raw ASAP connection from `source` (an address of 127/8).
fn connect_from(source: &str, to: &str) -> Raw {
    let to: SocketAddr = to.trim_start_matches("tcp://").parse().unwrap();
    let src: IpAddr = source.parse().unwrap();
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Raw {
        s,
        d: Deframer::default(),
    }
}

fn resolution(pool: &str) -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: None,
    }
}

/// Send one handle resolution and read its answer; `None` = the connection is closed.
fn resolve_on(c: &mut Raw, pool: &str) -> Option<usize> {
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if std::io::Write::write_all(&mut c.s, &resolution(pool).encode_to_vec()).is_err() {
        return None;
    }
    match c.recv() {
        Some(AsapMessage::HandleResolutionResponse { pes, .. }) => Some(pes.len()),
        None => None,
        Some(other) => panic!("expected a handle resolution response, got {other:?}"),
    }
}

/// The attack: a connection from `source` that sends one handle resolution, reads the
/// answer, and stays.
fn idle_resolver(source: &str, reg: &str) -> Raw {
    let mut c = connect_from(source, reg);
    assert!(
        resolve_on(&mut c, "EchoPool").is_some(),
        "the registrar closed a fresh connection from {source} at once"
    );
    c
}

/// Whether the registrar has closed `c` (end of stream or reset), waiting up to `within`.
fn closed_within(c: &mut Raw, within: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + within;
    c.s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match c.s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // e.g. a keep-alive: not a close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// PE id -> ASAP transport (the registering connection's address and port).
fn asap_transports(admin: &str) -> std::collections::BTreeMap<String, String> {
    dump(admin)["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["pes"].as_array().unwrap().iter())
        .map(|pe| {
            (
                pe["id"].as_str().unwrap().to_owned(),
                pe["asap_transport"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn limits_counter(admin: &str, name: &str) -> u64 {
    dump(admin)["connections"][name].as_u64().unwrap_or(0)
}

/// The registrar's log line about the connection limits containing `what`.
fn limits_log(reg: &Registrar, what: &str) -> String {
    reg.proc
        .err
        .wait(0, Instant::now() + Duration::from_secs(20), |l| {
            l.contains("connection limits:") && l.contains(what)
        })
        .map(|(_, l)| l)
        .unwrap_or_else(|| {
            reg.proc
                .fail(&format!("no connection-limits log line with {what:?}"))
        })
}

/// A raw PE: registers `id` in EchoPool and keeps its connection (no keep-alive answers:
/// run the registrar with keep-alives off).
fn raw_pe(source: &str, reg: &str, id: u32) -> Raw {
    let mut c = connect_from(source, reg);
    c.send_msg(&registration(b"EchoPool", id, Policy::RoundRobin, 9));
    match c.recv() {
        Some(AsapMessage::RegistrationResponse { reject: false, .. }) => c,
        other => panic!("registration of {id:#x} failed: {other:?}"),
    }
}

#[test]
fn idle_resolvers_filling_the_limit_do_not_lock_out_pus_and_pes() {
    bounded(Duration::from_secs(180), || {
        const LIMIT: usize = 64;
        raise_fd_limit(4096);
        let dir = scratch("conn-lockout");
        let log = dir.join("wire.log");
        // Idle timeout off: eviction alone must keep the registrar open.
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--max-connections",
                &LIMIT.to_string(),
                "--idle-timeout",
                "0",
                "--keepalive-interval",
                "0",
                "--keepalive-timeout",
                "2s",
            ],
        );
        let echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        // A PE over a connection we hold (it never answers keep-alives: they are off).
        let mut pe = raw_pe("127.0.0.1", &reg.asap, 0x5e1f);
        assert_eq!(resolves(&reg.asap, "EchoPool"), 2);

        // The attack: three times the limit of connections that resolve once and stay.
        let mut attack = Vec::new();
        for i in 0..3 * LIMIT {
            let source = format!("127.0.0.{}", 2 + i % 4);
            attack.push(idle_resolver(&source, &reg.asap));
        }
        // A new PU resolves (this used to be closed at once) …
        assert_eq!(resolves(&reg.asap, "EchoPool"), 2);
        // … a new PE registers …
        let echo2 = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let ids: std::collections::BTreeSet<String> = [&echo, &echo2]
            .iter()
            .map(|s| s.entries[0].0.clone())
            .chain([PeId(0x5e1f).to_string()])
            .collect();
        wait_until("3 PEs in the dump", Duration::from_secs(10), || {
            pe_ids(&dump(&reg.admin), "EchoPool") == ids
        });
        // Each PE's ASAP transport names its registration connection (its source port).
        let registered_over = asap_transports(&reg.admin);
        // … and the attack goes on; the PEs' connections are never the ones closed.
        for i in 0..3 * LIMIT {
            let source = format!("127.0.0.{}", 2 + i % 4);
            attack.push(idle_resolver(&source, &reg.asap));
        }
        assert_eq!(
            resolve_on(&mut pe, "EchoPool"),
            Some(3),
            "the PE's own connection was closed"
        );
        assert_eq!(resolves(&reg.asap, "EchoPool"), 3);
        assert_eq!(pe_ids(&dump(&reg.admin), "EchoPool"), ids);
        // The PEs of `rsp serve echo` never lost their registrar connection: a PE that
        // had to reconnect would have registered again from another port.
        assert_eq!(asap_transports(&reg.admin), registered_over);
        // Most attack connections were closed to make room; the registrar says so.
        let open = attack
            .iter_mut()
            .filter_map(|c| (!closed_within(c, Duration::from_millis(100))).then_some(()))
            .count();
        assert!(open <= LIMIT, "{open} attack connections still open");
        let evicted = limits_counter(&reg.admin, "evicted");
        assert!(evicted >= (4 * LIMIT) as u64, "evicted {evicted}");
        assert_eq!(limits_counter(&reg.admin, "refused"), 0);
        let line = limits_log(&reg, "max_connections");
        assert!(line.contains("to make room"), "{line}");
        // Rate-limited: far fewer log lines than evictions.
        let lines = reg
            .proc
            .err
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("connection limits:"))
            .count();
        assert!(
            lines < 60 && (lines as u64) < evicted,
            "{lines} log lines for {evicted} evictions"
        );
        drop((echo, echo2));
    });
}

#[test]
fn one_source_gets_a_bounded_share() {
    bounded(Duration::from_secs(120), || {
        const CAP: usize = 8;
        let dir = scratch("conn-per-source");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--max-connections-per-source",
                &CAP.to_string(),
                "--idle-timeout",
                "0",
            ],
        );
        let _echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        // 127.0.0.3 holds CAP connections; 127.0.0.2 then opens 20 more than its cap.
        let mut others: Vec<Raw> = (0..CAP)
            .map(|_| idle_resolver("127.0.0.3", &reg.asap))
            .collect();
        let mut noisy: Vec<Raw> = (0..CAP + 20)
            .map(|_| idle_resolver("127.0.0.2", &reg.asap))
            .collect();
        // 127.0.0.2's 20 oldest were closed to make room for its newer ones …
        for (i, c) in noisy.iter_mut().enumerate().take(20) {
            assert!(
                closed_within(c, Duration::from_secs(10)),
                "connection {i} from 127.0.0.2 is still open"
            );
        }
        for (i, c) in noisy.iter_mut().enumerate().skip(20) {
            assert_eq!(
                resolve_on(c, "EchoPool"),
                Some(1),
                "connection {i} from 127.0.0.2 was closed"
            );
        }
        // … and nobody else's.
        for (i, c) in others.iter_mut().enumerate() {
            assert_eq!(
                resolve_on(c, "EchoPool"),
                Some(1),
                "connection {i} from 127.0.0.3 was closed"
            );
        }
        assert_eq!(resolves(&reg.asap, "EchoPool"), 1);
        assert_eq!(limits_counter(&reg.admin, "source_evicted"), 20);
        assert_eq!(limits_counter(&reg.admin, "evicted"), 0);
        let line = limits_log(&reg, "max_connections_per_source");
        assert!(line.contains("127.0.0.2"), "{line}");
    });
}

#[test]
fn idle_connections_without_pes_are_closed_and_pe_connections_are_not() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("conn-idle");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--idle-timeout",
                "1s",
                "--keepalive-interval",
                "0",
                "--keepalive-timeout",
                "2s",
            ],
        );
        // A PE that never sends anything after registering (keep-alives are off).
        let mut pe = raw_pe("127.0.0.1", &reg.asap, 0x1d1e);
        let mut pu = idle_resolver("127.0.0.1", &reg.asap);
        let mut silent = connect_from("127.0.0.2", &reg.asap);
        assert!(
            closed_within(&mut pu, Duration::from_secs(30)),
            "idle PU connection still open"
        );
        assert!(
            closed_within(&mut silent, Duration::from_secs(30)),
            "silent connection still open"
        );
        // Quiet for well over the idle timeout, the PE's connection is still there.
        assert!(!closed_within(&mut pe, Duration::from_secs(3)));
        assert_eq!(resolve_on(&mut pe, "EchoPool"), Some(1));
        assert!(limits_counter(&reg.admin, "idle_closed") >= 2);
        limits_log(&reg, "idle_timeout");
        // Once its PE de-registers, it is an idle connection like any other.
        pe.send_msg(&AsapMessage::Deregistration {
            handle: PoolHandle::from("EchoPool"),
            pe_id: PeId(0x1d1e),
        });
        assert!(matches!(
            pe.recv(),
            Some(AsapMessage::DeregistrationResponse { error: None, .. })
        ));
        assert!(closed_within(&mut pe, Duration::from_secs(30)));
    });
}

/// The report's figure: about 4,100 connections that each sent one resolution, against
/// the default limits (4096 connections, 512 per source), spread over 9 sources so that
/// the total limit is what they hit.
#[test]
fn default_limits_survive_4100_idle_resolvers() {
    bounded(Duration::from_secs(300), || {
        const N: usize = 4100;
        raise_fd_limit(N as u64 + 1024);
        let dir = scratch("conn-4100");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let mut attack = Vec::with_capacity(N);
        for i in 0..N {
            let source = format!("127.0.0.{}", 2 + i % 9);
            attack.push(idle_resolver(&source, &reg.asap));
        }
        assert_eq!(resolves(&reg.asap, "EchoPool"), 1);
        let echo2 = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let ids: std::collections::BTreeSet<String> = [&echo, &echo2]
            .iter()
            .map(|s| s.entries[0].0.clone())
            .collect();
        wait_until("both PEs in the dump", Duration::from_secs(20), || {
            pe_ids(&dump(&reg.admin), "EchoPool") == ids
        });
        assert!(limits_counter(&reg.admin, "evicted") > 0);
        assert_eq!(limits_counter(&reg.admin, "refused"), 0);
        limits_log(&reg, "max_connections");
        drop(attack);
    });
}
