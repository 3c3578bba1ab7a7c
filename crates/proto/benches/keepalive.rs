//! Keep-alive cost in the registrar core at 100k (and 1M) PEs, with and without
//! per-connection batching (`keepalive_batch`).
//!
//! Run: `cargo bench -p rserpool-proto --bench keepalive` (`KA_BENCH_PES=1000000` for a
//! million; `KA_BENCH_SECONDS` virtual seconds measured after a warm-up of 10).
//!
//! A virtual clock drives one registrar: PEs register over connections of 1,000, every
//! keep-alive is answered 1 ms later, and the core's on-CPU time
//! (`/proc/thread-self/schedstat`) is summed over `handle_timeout` and the ACKs. It
//! prints keep-alives per virtual second, core µs per keep-alive, the share of a core
//! that the keep-alives of that many PEs take, the wake-ups (`handle_timeout` calls with
//! work) per second and the writes per second: one per connection per wake-up with
//! keep-alives for it, which is what the shell pays a system call for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, Dest, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, Protocol, ServerId, TransportAddr, UserTransport,
};

const PER_CONN: usize = 1000;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn meta(conn: u64) -> RecvMeta {
    let peer: SocketAddr = format!("127.0.{}.{}:{}", conn >> 8 & 255, conn & 255, 20_000)
        .parse()
        .expect("address");
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

struct Figures {
    keepalives: f64,
    us_per_ka: f64,
    core_share: f64,
    wakeups: f64,
    writes: f64,
}

fn run(pes: usize, batch: Duration, seconds: u64) -> Figures {
    let cfg = RegistrarConfig {
        keepalive_batch: batch,
        max_pes_per_source: 0,
        max_pes_per_connection: PER_CONN,
        handlespace: rserpool_proto::handlespace::HandlespaceConfig {
            max_pes: pes + 1,
            ..Default::default()
        },
        ..RegistrarConfig::default()
    };
    #[allow(clippy::disallowed_methods)] // a benchmark's start of time
    let t0 = Instant::now();
    let mut r = Registrar::new(cfg, 5);
    r.handle_timeout(t0);
    let conns = pes.div_ceil(PER_CONN) as u64;
    let mut now = t0;
    for c in 1..=conns {
        r.handle_transport(
            now,
            TransportEvent::Accepted {
                conn: ConnId(c),
                meta: meta(c),
            },
        );
    }
    // Registrations spread over 3 s, as a population that came up over time.
    for i in 0..pes {
        now = t0 + Duration::from_micros((3_000_000 * i / pes) as u64);
        let c = (i / PER_CONN) as u64 + 1;
        let msg = AsapMessage::Registration {
            handle: format!("pool{}", i % (pes / 10).max(1)).as_str().into(),
            pe: PoolElement {
                id: PeId(i as u32 + 1),
                home_registrar: ServerId(0),
                registration_life: 3_600_000,
                user_transport: UserTransport::Ip(TransportAddr::tcp(
                    1024 + (i % 60_000) as u16,
                    meta(c).peer.ip(),
                )),
                policy: Policy::RoundRobin,
                asap_transport: None,
            },
        };
        r.handle_message(now, ConnId(c), &meta(c), &msg.encode_to_vec());
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
    }
    let warm = t0 + Duration::from_secs(10);
    let end = warm + Duration::from_secs(seconds);
    let (mut kas, mut cpu, mut wakeups, mut writes) = (0u64, 0u64, 0u64, 0u64);
    let mut acks: Vec<(ConnId, Vec<u8>)> = Vec::new();
    while let Some(t) = r.poll_timeout() {
        if t > end {
            break;
        }
        now = t;
        let measuring = now >= warm;
        let c0 = cpu_ns();
        r.handle_timeout(now);
        let mut conns_hit = BTreeSet::new();
        let mut n = 0;
        while let Some(tx) = r.poll_transmit() {
            let Dest::Conn(c) = tx.dest else { continue };
            if let Ok(d) = AsapMessage::decode(&tx.bytes) {
                if let AsapMessage::EndpointKeepAlive {
                    handle,
                    pe_id: Some(id),
                    ..
                } = d.message
                {
                    n += 1;
                    conns_hit.insert(c);
                    acks.push((
                        c,
                        AsapMessage::EndpointKeepAliveAck { handle, pe_id: id }.encode_to_vec(),
                    ));
                }
            }
        }
        while r.poll_event().is_some() {}
        let c1 = cpu_ns();
        // The ACKs arrive 1 ms later (the same instant for all: one read per connection).
        let at = now + Duration::from_millis(1);
        let c2 = cpu_ns();
        for (c, bytes) in acks.drain(..) {
            r.handle_message(at, c, &meta(c.0), &bytes);
        }
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
        let c3 = cpu_ns();
        if measuring && n > 0 {
            kas += n;
            wakeups += 1;
            writes += conns_hit.len() as u64;
            // Decoding the keep-alives and encoding the ACKs above is the PEs' work,
            // not the registrar's: only handle_timeout, polling and the ACKs count.
            cpu += (c1 - c0) + (c3 - c2);
        }
    }
    let secs = seconds as f64;
    Figures {
        keepalives: kas as f64 / secs,
        us_per_ka: cpu as f64 / 1000.0 / kas.max(1) as f64,
        core_share: cpu as f64 / 1e9 / secs,
        wakeups: wakeups as f64 / secs,
        writes: writes as f64 / secs,
    }
}

fn main() {
    let pes: Vec<usize> = match std::env::var("KA_BENCH_PES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![100_000],
    };
    let seconds: u64 = std::env::var("KA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!(
        "{:>9} {:>8} {:>10} {:>9} {:>8} {:>10} {:>10}",
        "PEs", "batch", "ka/s", "µs/ka", "core", "wakeups/s", "writes/s"
    );
    let mut seen = BTreeMap::new();
    for &n in &pes {
        for batch in [Duration::ZERO, Duration::from_millis(500)] {
            let f = run(n, batch, seconds);
            println!(
                "{:>9} {:>8} {:>10.0} {:>9.2} {:>7.1}% {:>10.0} {:>10.0}",
                n,
                format!("{batch:?}"),
                f.keepalives,
                f.us_per_ka,
                f.core_share * 100.0,
                f.wakeups,
                f.writes
            );
            seen.insert((n, batch), f.keepalives);
        }
    }
}
