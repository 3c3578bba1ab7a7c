//! The registrar's DNS view end to end: `dig` against `rsp registrar --dns`, PEs coming and
//! going, malformed queries and a flood through real UDP sockets.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rsp serve http` in `pool` on `listen` once registered: (process, PE id, port).
fn pe(registrar: &str, pool: &str, listen: &str, wire_log: &Path) -> (Proc, String, String) {
    let p = Proc::spawn(
        "serve http",
        &[
            "serve",
            "http",
            "-r",
            registrar,
            "--no-announces",
            "--pool",
            pool,
            "--listen",
            listen,
        ],
        wire_log,
    );
    let line = p.stdout_line("did not register", Duration::from_secs(20), |l| {
        l.starts_with("registered ")
    });
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    let port = field("addr=").rsplit(':').next().unwrap().to_owned();
    (p, field("pe="), port)
}

/// `dig` output (full, or `+short` lines).
fn dig(server: &str, port: u16, name: &str, qtype: &str, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .args([&format!("@{server}"), "-p", &port.to_string(), name, qtype])
        .args(["+tries=3", "+time=2"])
        .args(extra)
        .output()
        .expect("dig is installed (dnsutils; scripts/test.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn short(server: &str, port: u16, name: &str, qtype: &str) -> BTreeSet<String> {
    dig(server, port, name, qtype, &["+short"])
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn dig_answers_a_aaaa_srv_with_live_pes_only() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("dns-live");
        let log = dir.join("wire.log");
        let port = free_udp_port("::1");
        let dns = format!("udp://[::1]:{port}");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--dns", &dns, "--dns-ttl", "1"],
        );
        let (_a, _, pa) = pe(&reg.asap, "EchoPool", "127.0.0.1:0", &log);
        let (mut b, id_b, pb) = pe(&reg.asap, "EchoPool", "127.0.0.2:0", &log);
        let (_c, _, pc) = pe(&reg.asap, "EchoPool", "[::1]:0", &log);
        let (_d, _, _) = pe(&reg.asap, "Echo Pool", "127.0.0.3:0", &log);
        let name = "EchoPool.pool.rserpool";
        assert_eq!(
            short("::1", port, name, "A"),
            set(&["127.0.0.1", "127.0.0.2"])
        );
        assert_eq!(short("::1", port, name, "AAAA"), set(&["::1"]));
        // Case does not matter in DNS.
        assert_eq!(
            short("::1", port, "ECHOPOOL.Pool.RSerPool", "AAAA"),
            set(&["::1"])
        );
        let srv = short("::1", port, name, "SRV");
        let ports: BTreeSet<String> = srv
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_owned())
            .collect();
        assert_eq!(ports, set(&[&pa, &pb, &pc]), "{srv:?}");
        let full = dig("::1", port, name, "SRV", &[]);
        assert!(
            full.contains("status: NOERROR") && full.contains("flags: qr aa"),
            "{full}"
        );
        // The targets' three addresses and the OPT record (dig asks with EDNS).
        assert!(full.contains("ADDITIONAL: 4"), "targets' addresses: {full}");
        // A target resolves to its PE.
        let target = srv
            .iter()
            .next()
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_owned();
        let any = dig("::1", port, &target, "ANY", &["+short", "+notcp"]);
        assert_eq!(any.lines().count(), 1, "{target}: {any}");
        // DNS over TCP on the same port (dig asks ANY over TCP by default), and EDNS.
        let any = dig("::1", port, &target, "ANY", &["+short"]);
        assert_eq!(any.lines().count(), 1, "{target} over TCP: {any}");
        assert_eq!(
            dig("::1", port, name, "SRV", &["+short", "+tcp"])
                .lines()
                .count(),
            3
        );
        let edns = dig("::1", port, name, "A", &["+edns=0", "+bufsize=1232"]);
        assert!(
            edns.contains("OPT PSEUDOSECTION") && edns.contains("status: NOERROR"),
            "{edns}"
        );
        let noedns = dig("::1", port, name, "A", &["+noedns"]);
        assert!(!noedns.contains("OPT PSEUDOSECTION"), "{noedns}");
        // TTL as configured.
        let full = dig("::1", port, name, "A", &["+noall", "+answer"]);
        assert!(
            full.lines()
                .all(|l| l.split_whitespace().nth(1) == Some("1")),
            "{full}"
        );
        // A handle that is not a DNS label, by its x-- name.
        assert_eq!(
            short("::1", port, "x--4563686f20506f6f6c.pool.rserpool", "A"),
            set(&["127.0.0.3"])
        );
        // Round robin: the first answer record moves on.
        let firsts: BTreeSet<String> = (0..4)
            .map(|_| {
                dig("::1", port, name, "A", &["+short"])
                    .lines()
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(firsts.len(), 2, "{firsts:?}");
        // kill -9 one PE: as soon as the registrar has dropped it, no answer names it.
        let killed = Instant::now();
        b.kill9();
        wait_until(
            "the registrar to drop the PE",
            Duration::from_secs(30),
            || !pe_ids(&dump(&reg.admin), "EchoPool").contains(&id_b),
        );
        assert_eq!(short("::1", port, name, "A"), set(&["127.0.0.1"]));
        let srv = short("::1", port, name, "SRV");
        assert_eq!(srv.len(), 2, "{srv:?}");
        eprintln!(
            "dead PE gone from DNS answers {:?} after kill -9",
            killed.elapsed()
        );
        // Unknown pool, name outside the zone.
        assert!(dig("::1", port, "Nope.pool.rserpool", "A", &[]).contains("status: NXDOMAIN"));
        assert!(dig("::1", port, "example.com", "A", &[]).contains("status: REFUSED"));
    });
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// The rcode of the answer to `q`, `None` when nothing came back.
fn rcode(dns: &str, q: &[u8]) -> Option<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(q, dns).unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    assert!(
        n >= 12 && buf[..2] == q[..2] && buf[2] & 0x80 != 0,
        "an answer to our query"
    );
    Some(buf[3] & 0x0f)
}

#[test]
fn malformed_unknown_and_flooding_queries_leave_the_registrar_up() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("dns-bad");
        let log = dir.join("wire.log");
        let port = free_udp_port("127.0.0.1");
        let dns = format!("127.0.0.1:{port}");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--dns",
                &format!("udp://{dns}"),
                // Low, so that the flood exceeds it even when a loaded machine lets the
                // kernel drop most of it before the registrar reads it.
                "--dns-rate-per-source",
                "20",
            ],
        );
        let _a = pe(&reg.asap, "EchoPool", "127.0.0.1:0", &log);
        let good = query(7, "EchoPool.pool.rserpool", 1);
        assert_eq!(rcode(&dns, &good), Some(0));
        assert_eq!(
            rcode(&dns, &query(8, "Nope.pool.rserpool", 1)),
            Some(3),
            "NXDOMAIN"
        );
        assert_eq!(
            rcode(&dns, &good[..good.len() - 2]),
            Some(1),
            "FORMERR: cut question"
        );
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(rcode(&dns, &two), Some(1), "FORMERR: two questions");
        let mut ptr = good.clone();
        ptr[12] = 0xc0;
        assert_eq!(rcode(&dns, &ptr), Some(1), "FORMERR: pointer loop");
        let mut update = good.clone();
        update[2] = 0x28; // opcode 5 (UPDATE)
        assert_eq!(rcode(&dns, &update), Some(4), "NOTIMP");
        // Garbage too short for a header, and responses, get nothing back.
        assert_eq!(rcode(&dns, &[1, 2, 3]), None);
        let mut resp = good.clone();
        resp[2] |= 0x80;
        assert_eq!(rcode(&dns, &resp), None);

        // A flood from four other sources: valid queries and garbage, as fast as they go.
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let flooders: Vec<_> = (2..6)
            .map(|i| {
                let (stop, sent, dns) = (stop.clone(), sent.clone(), dns.clone());
                std::thread::spawn(move || {
                    let s = UdpSocket::bind(format!("127.0.0.{i}:0")).unwrap();
                    let q = query(9, "EchoPool.pool.rserpool", 1);
                    let mut n: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let _ = if n.is_multiple_of(2) {
                            s.send_to(&q, &dns)
                        } else {
                            s.send_to(&q[..(n as usize % q.len())], &dns)
                        };
                        n += 1;
                    }
                    sent.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        // Everyone else: DNS from 127.0.0.1, a new PE registering, a handle resolution.
        let short_a = dig(
            "127.0.0.1",
            port,
            "EchoPool.pool.rserpool",
            "A",
            &["+short", "-b", "127.0.0.1"],
        );
        assert!(
            short_a.contains("127.0.0.1"),
            "dig during the flood: {short_a}"
        );
        let (_b, id_b, _) = pe(&reg.asap, "EchoPool", "127.0.0.1:0", &log);
        assert!(pe_ids(&dump(&reg.admin), "EchoPool").contains(&id_b));
        assert!(resolves(&reg.asap, "EchoPool") >= 2);
        stop.store(true, Ordering::Relaxed);
        for f in flooders {
            f.join().unwrap();
        }
        eprintln!("flood: {} datagrams", sent.load(Ordering::Relaxed));
        // The socket's receive queue may still be full of the flood (the kernel drops
        // what does not fit, our query included): ask again, a bounded number of times.
        let after = (0..15).find_map(|_| rcode(&dns, &good));
        assert_eq!(after, Some(0), "still answering after the flood");
        assert!(
            reg.proc.err.text().contains("rate limit"),
            "the drops are logged"
        );
    });
}
