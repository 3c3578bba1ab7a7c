//! `rsp gateway` end to end: real registrar, `rsp serve http` PEs and gateway processes
//! on loopback; curl and ab as the RSerPool-unaware clients.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// `rsp serve http` in `pool` on `listen`, once registered: (process, PE id).
fn http_pe(registrar: &str, pool: &str, listen: &str, wire_log: &Path) -> (Proc, String) {
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
    let pe = p.registered_pe("did not register", Duration::from_secs(20));
    (p, pe)
}

/// `rsp gateway` with `maps` (LISTEN=POOL) and `extra` flags: the process and its
/// listening addresses in order.
fn gateway(registrar: &str, maps: &[&str], extra: &[&str], wire_log: &Path) -> (Proc, Vec<String>) {
    let mut args = vec!["gateway", "-r", registrar, "--no-announces"];
    for m in maps {
        args.extend_from_slice(&["--map", m]);
    }
    args.extend_from_slice(extra);
    let p = Proc::spawn("gateway", &args, wire_log);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addrs = Vec::new();
    let mut from = 0;
    while addrs.len() < maps.len() {
        let (i, line) = p
            .out
            .wait(from, deadline, |l| l.starts_with("listening "))
            .unwrap_or_else(|| p.fail("no listening line"));
        from = i + 1;
        let url = line.split_whitespace().nth(1).unwrap();
        addrs.push(url.split_once("://").unwrap().1.to_owned());
    }
    (p, addrs)
}

/// One HTTP/1.0 GET: (status, X-Rsp-Pe, body length); `None` when the connection closed
/// without an answer.
fn get(addr: &str) -> Option<(u16, Option<String>, usize)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let pe = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-rsp-pe")
            .then(|| v.trim().to_owned())
    });
    Some((status, pe, body.len()))
}

fn url(addr: &str) -> String {
    format!("http://{addr}/")
}

/// Six requests in a row reach the three PEs in turn, each twice.
fn assert_round_robin(addr: &str, pes: &[String]) {
    let got: Vec<String> = (0..6)
        .map(|_| {
            let (status, pe, len) = get(addr).unwrap_or_else(|| panic!("no answer via {addr}"));
            assert_eq!((status, len), (200, 1024), "via {addr}");
            pe.unwrap()
        })
        .collect();
    for pe in pes {
        assert_eq!(
            got.iter().filter(|g| *g == pe).count(),
            2,
            "via {addr}: {got:?} not round robin over {pes:?}"
        );
    }
    assert_eq!(got[..3], got[3..], "via {addr}: {got:?}");
}

#[test]
fn both_modes_round_robin_ipv6_in_front_of_ipv4_and_ipv4_in_front_of_ipv6() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("gw-rr");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut procs = Vec::new();
        for _ in 0..3 {
            let (p, id) = http_pe(&reg.asap, "Web4", "127.0.0.1:0", &log);
            procs.push(p);
            v4.push(id);
            let (p, id) = http_pe(&reg.asap, "Web6", "[::1]:0", &log);
            procs.push(p);
            v6.push(id);
        }
        let maps = ["tcp://[::1]:0=Web4", "tcp://127.0.0.1:0=Web6"];
        let (_tcp, tcp_addrs) = gateway(&reg.asap, &maps, &[], &log);
        let (_http, http_addrs) = gateway(&reg.asap, &maps, &["--http"], &log);
        let (_splice, splice_addrs) = gateway(&reg.asap, &maps, &["--splice"], &log);
        for addrs in [&tcp_addrs, &http_addrs, &splice_addrs] {
            assert!(addrs[0].starts_with("[::1]:"), "{addrs:?}");
            assert_round_robin(&addrs[0], &v4);
            assert_round_robin(&addrs[1], &v6);
        }
        // curl, as an unaware client, sees a PE's answer; HTTP mode adds X-Forwarded-For
        // (the PE does not echo it, so only the answer is checked here).
        for addr in [&tcp_addrs[0], &http_addrs[0], &http_addrs[1]] {
            let out = Command::new("curl")
                .args(["-sS", "-g", "-D", "-", "-o", "/dev/null", &url(addr)])
                .output()
                .expect("curl is installed (scripts/test.sh)");
            let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(head.contains("x-rsp-pe: 0x"), "{head}");
        }
    });
}

/// `ab` through `addr`; `kill` runs once ab has completed 2000 requests. ab's output.
fn ab_with_kill(addr: &str, log: &Path, kill: impl FnOnce()) -> String {
    let mut cmd = Command::new("ab");
    cmd.args(["-r", "-s", "30", "-n", "20000", "-c", "50", &url(addr)]);
    let mut ab = Proc::start("ab", cmd, log, &[]);
    ab.err
        .wait(0, Instant::now() + Duration::from_secs(120), |l| {
            l.contains("Completed 2000 requests")
        })
        .unwrap_or_else(|| ab.fail("ab did not get going (is apache2-utils installed?)"));
    kill();
    let status = ab
        .wait_exit(Duration::from_secs(240))
        .unwrap_or_else(|| ab.fail("ab did not finish"));
    // ab's last line; the output is read by another thread, which may lag the exit.
    let _ = ab
        .out
        .wait(0, Instant::now() + Duration::from_secs(10), |l| {
            l.contains("(longest request)")
        });
    let out = ab.out.text();
    assert!(status.success(), "ab failed:\n{out}\n{}", ab.err.text());
    assert!(out.contains("Complete requests:      20000"), "{out}");
    out
}

fn failed_requests(ab: &str) -> u64 {
    ab.lines()
        .find_map(|l| l.strip_prefix("Failed requests:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no failed count in\n{ab}"))
}

#[test]
fn kill9_of_a_pe_under_ab_load_http_mode_loses_no_request() {
    bounded(Duration::from_secs(400), || {
        let dir = scratch("gw-kill-http");
        let log = dir.join("wire.log");
        let gw_log = dir.join("gateway-wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut pes: Vec<(Proc, String)> = (0..3)
            .map(|_| http_pe(&reg.asap, "WebPool", "127.0.0.1:0", &log))
            .collect();
        let (gw, addrs) = gateway(
            &reg.asap,
            &["tcp://127.0.0.1:0=WebPool"],
            &["--http"],
            &gw_log,
        );
        let out = ab_with_kill(&addrs[0], &log, || pes[0].0.kill9());
        assert_eq!(failed_requests(&out), 0, "{out}");
        assert!(!out.contains("Non-2xx"), "{out}");
        let dead = pes[0].1.clone();
        wait_until(
            "the gateway to report the dead PE",
            Duration::from_secs(20),
            || gw.err.text().contains(&format!("pe={dead}")),
        );
        for _ in 0..20 {
            let (status, pe, _) = get(&addrs[0]).unwrap();
            assert_eq!(status, 200);
            assert_ne!(pe.as_deref(), Some(dead.as_str()));
        }
        // What the gateway's pool user sent (handle resolutions, the unreachable report)
        // dissects clean.
        let names = dissect(&dir, &gw_log, |_| true, |_| false);
        assert!(
            names
                .iter()
                .any(|n| n.to_lowercase().contains("unreachable")),
            "{names:?}"
        );
        pes.clear();
    });
}

#[test]
fn kill9_of_a_pe_under_ab_load_tcp_mode_fails_only_its_open_connections() {
    bounded(Duration::from_secs(400), || {
        let dir = scratch("gw-kill-tcp");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut pes: Vec<(Proc, String)> = (0..3)
            .map(|_| http_pe(&reg.asap, "WebPool", "127.0.0.1:0", &log))
            .collect();
        let (_gw, addrs) = gateway(&reg.asap, &["tcp://[::1]:0=WebPool"], &[], &log);
        let out = ab_with_kill(&addrs[0], &log, || pes[0].0.kill9());
        // At most the connections open on the dead PE at that moment (≤ 50 concurrent).
        let failed = failed_requests(&out);
        assert!(failed <= 50, "{failed} failed:\n{out}");
        eprintln!("TCP mode, kill -9 under ab -c 50: {failed} failed requests");
        let dead = pes[0].1.clone();
        for _ in 0..30 {
            let (status, pe, _) = get(&addrs[0]).expect("an answer");
            assert_eq!(status, 200);
            assert_ne!(
                pe.as_deref(),
                Some(dead.as_str()),
                "a new connection reached the dead PE"
            );
        }
    });
}

#[test]
fn a_pool_without_pes_gets_a_clean_close_or_503_and_a_log_line() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("gw-empty");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let (tcp, a) = gateway(&reg.asap, &["tcp://127.0.0.1:0=EmptyPool"], &[], &log);
        let (http, b) = gateway(
            &reg.asap,
            &["tcp://127.0.0.1:0=EmptyPool"],
            &["--http"],
            &log,
        );
        // TCP: the connection is closed without a byte.
        let mut s = TcpStream::connect(&a[0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "clean close");
        wait_until("a log line", Duration::from_secs(10), || {
            tcp.err.text().contains("pool EmptyPool")
        });
        let (status, _, _) = get(&b[0]).unwrap();
        assert_eq!(status, 503);
        wait_until("a log line", Duration::from_secs(10), || {
            http.err.text().contains("pool EmptyPool") && http.err.text().contains("503")
        });
    });
}

/// Reads until EOF or error within `limit`: whether the peer closed.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A client that sends a 1 GiB POST and never reads; returns the bytes it got to send.
fn gigabyte_sender(addr: String) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let gib: u64 = 1 << 30;
        let head = format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {gib}\r\n\r\n");
        if s.write_all(head.as_bytes()).is_err() {
            return 0;
        }
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0;
        while sent < gib {
            match s.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(_) => break,
            }
        }
        sent
    })
}

#[test]
fn silent_flooding_and_idle_clients_do_not_hurt_the_others() {
    bounded(Duration::from_secs(600), || {
        raise_fd_limit(12_000);
        let dir = scratch("gw-bad-clients");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let _pes: Vec<(Proc, String)> = (0..3)
            .map(|_| http_pe(&reg.asap, "WebPool", "127.0.0.1:0", &log))
            .collect();
        let map = ["tcp://127.0.0.1:0=WebPool"];
        let idle = ["--idle-timeout", "2s"];
        let (tcp, a) = gateway(&reg.asap, &map, &idle, &log);
        let (http, b) = gateway(&reg.asap, &map, &[&idle[..], &["--http"]].concat(), &log);
        let (splice, c) = gateway(&reg.asap, &map, &[&idle[..], &["--splice"]].concat(), &log);
        for (gw, addr) in [(&tcp, &a[0]), (&http, &b[0]), (&splice, &c[0])] {
            // A client that sends nothing is closed after the idle timeout.
            let mut silent = TcpStream::connect(addr).unwrap();
            // One that sends 1 GiB and never reads.
            let flood = gigabyte_sender(addr.clone());
            for _ in 0..20 {
                let (status, _, len) = get(addr).expect("served beside the bad clients");
                assert_eq!((status, len), (200, 1024));
            }
            assert!(
                closed_within(&mut silent, Duration::from_secs(30)),
                "silent client"
            );
            let sent = flood.join().unwrap();
            let rss = vm_kb(gw.pid(), "VmHWM");
            eprintln!(
                "{addr}: the flooding client got {sent} bytes out; gateway peak RSS {rss} kB"
            );
            assert!(rss < 300_000, "gateway peak RSS {rss} kB");
        }
        // 10,000 idle clients (TCP mode: each holds a PE connection too), then a request.
        for (gw, addr) in [(&tcp, &a[0]), (&http, &b[0])] {
            let idle: Vec<TcpStream> = (0..10_000)
                .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("client {i}: {e}")))
                .collect();
            let (status, _, _) = get(addr).unwrap_or_else(|| gw.fail("10,000 idle clients"));
            assert_eq!(status, 200);
            eprintln!(
                "{addr}: 10,000 idle clients, gateway RSS {} kB",
                vm_kb(gw.pid(), "VmRSS")
            );
            drop(idle);
        }
        assert!(!tcp.err.text().contains("panicked") && !http.err.text().contains("panicked"));
    });
}

#[test]
fn connection_limit_and_graceful_drain_on_sigterm() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("gw-drain");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let _pe = http_pe(&reg.asap, "WebPool", "127.0.0.1:0", &log);
        let (mut gw, a) = gateway(
            &reg.asap,
            &["tcp://127.0.0.1:0=WebPool"],
            &["--max-connections", "3", "--drain-timeout", "30s"],
            &log,
        );
        let mut open: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&a[0]).unwrap()).collect();
        // Wait until the three are through to the PE: a request on one is answered.
        open[0]
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 2048];
        open[0]
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        assert!(open[0].read(&mut buf).unwrap() > 0);
        let mut fourth = TcpStream::connect(&a[0]).unwrap();
        assert!(
            closed_within(&mut fourth, Duration::from_secs(20)),
            "over the limit"
        );
        wait_until("the limit's log line", Duration::from_secs(10), || {
            gw.err.text().contains("connection limit")
        });
        // SIGTERM: no new connections, the open ones go on.
        gw.terminate();
        wait_until("the listener to close", Duration::from_secs(20), || {
            TcpStream::connect(&a[0]).is_err()
        });
        open[1].write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        open[1]
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        open[1].read_to_end(&mut answer).unwrap();
        assert!(answer.starts_with(b"HTTP/1.0 200") || answer.starts_with(b"HTTP/1.1 200"));
        assert!(
            gw.wait_exit(Duration::from_millis(300)).is_none(),
            "still draining"
        );
        open.clear();
        let status = gw
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| gw.fail("did not exit once drained"));
        assert!(status.success(), "{status:?}");
    });
}

/// `ss ARGS` output.
fn ss(args: &[&str]) -> String {
    let o = Command::new("ss").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `mptcp://` map listens with an MPTCP socket: an MPTCP client's connection is MPTCP
/// at the gateway (not a fallback to TCP) and is forwarded like any; a plain TCP client
/// is served on the same listener.
#[test]
fn an_mptcp_map_takes_mptcp_and_tcp_clients() {
    bounded(Duration::from_secs(120), || {
        let on = std::fs::read_to_string("/proc/sys/net/mptcp/enabled").unwrap_or_default();
        if on.trim() != "1" {
            eprintln!("SKIPPED: net.mptcp.enabled is not 1 here");
            return;
        }
        let dir = scratch("gw-mptcp");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let _echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let (gw, a) = gateway(&reg.asap, &["mptcp://127.0.0.1:0=EchoPool"], &[], &log);
        assert!(
            gw.out
                .text()
                .contains(&format!("listening mptcp://{} ", a[0])),
            "{}",
            gw.out.text()
        );
        let addr: std::net::SocketAddr = a[0].parse().unwrap();
        let port = format!(":{}", addr.port());
        assert!(
            ss(&["-Mltn"]).contains(&port),
            "no MPTCP listener:\n{}",
            ss(&["-Mltn"])
        );
        let mptcp = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::MPTCP),
        )
        .unwrap();
        mptcp.connect(&addr.into()).unwrap();
        let mut mptcp: TcpStream = mptcp.into();
        let mut plain = TcpStream::connect(addr).unwrap();
        for (s, what) in [(&mut mptcp, "mptcp"), (&mut plain, "tcp")] {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(format!("hello over {what}\n").as_bytes())
                .unwrap();
            let mut back = vec![0u8; format!("hello over {what}\n").len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, format!("hello over {what}\n").as_bytes());
        }
        // The gateway's end of the MPTCP client's connection is an MPTCP socket, that of
        // the plain client is not: exactly one MPTCP connection has the gateway's address
        // as its local address (the client's end is listed with it as its peer).
        let listed = ss(&["-Mtn"]);
        let at_gateway = listed
            .lines()
            .filter(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&"mptcp") && w.get(4) == Some(&a[0].as_str())
            })
            .count();
        assert_eq!(at_gateway, 1, "{listed}");
    });
}

#[test]
fn half_close_passes_through_both_copy_paths() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("gw-half-close");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let _echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let map = ["tcp://127.0.0.1:0=EchoPool"];
        let (_copy, a) = gateway(&reg.asap, &map, &[], &log);
        let (_splice, b) = gateway(&reg.asap, &map, &["--splice"], &log);
        for addr in [&a[0], &b[0]] {
            let mut s = TcpStream::connect(addr).unwrap();
            let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let writer = {
                let mut w = s.try_clone().unwrap();
                let data = data.clone();
                std::thread::spawn(move || {
                    w.write_all(&data).unwrap();
                    // Half-close: the echo still sends everything back, then closes.
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                })
            };
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).unwrap();
            writer.join().unwrap();
            assert_eq!(back.len(), data.len(), "via {addr}");
            assert!(back == data, "via {addr}: the echo differs");
        }
    });
}

#[test]
fn least_used_follows_the_load_the_pes_registered() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("gw-lu");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let lu_pe = |load: &str| {
            let p = Proc::spawn(
                "serve http lu",
                &[
                    "serve",
                    "http",
                    "-r",
                    &reg.asap,
                    "--no-announces",
                    "--pool",
                    "LuPool",
                    "--listen",
                    "127.0.0.1:0",
                    "--policy",
                    "lu",
                    "--load",
                    load,
                ],
                &log,
            );
            let id = p.registered_pe("did not register", Duration::from_secs(20));
            (p, id)
        };
        let (_busy, busy) = lu_pe("90%");
        let (_idle, idle) = lu_pe("10%");
        let (_gw, a) = gateway(&reg.asap, &["tcp://127.0.0.1:0=LuPool"], &["--http"], &log);
        for _ in 0..10 {
            let (status, pe, _) = get(&a[0]).unwrap();
            assert_eq!(status, 200);
            let pe = pe.unwrap();
            assert_eq!(pe, idle, "the least loaded PE (not {busy})");
        }
    });
}

/// The status of one HTTP/1.1 request with a body of `len` bytes (`chunked`: in 64 KiB
/// chunks, no Content-Length).
fn upload(addr: &str, method: &str, len: usize, chunked: bool) -> Option<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!("{method} / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{framing}\r\n\r\n");
    s.write_all(head.as_bytes()).ok()?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        let ok = if chunked {
            s.write_all(format!("{n:x}\r\n").as_bytes())
                .and_then(|()| s.write_all(&chunk[..n]))
                .and_then(|()| s.write_all(b"\r\n"))
        } else {
            s.write_all(&chunk[..n])
        };
        if ok.is_err() {
            break; // answered (413) before the body was all sent
        }
        left -= n;
    }
    if chunked {
        let _ = s.write_all(b"0\r\n\r\n");
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn http_mode_buffers_small_or_idempotent_bodies_and_streams_the_others() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("gw-bodies");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let _pes: Vec<(Proc, String)> = (0..2)
            .map(|_| http_pe(&reg.asap, "WebPool", "127.0.0.1:0", &log))
            .collect();
        let mib = 1 << 20;
        let (_gw, a) = gateway(
            &reg.asap,
            &["tcp://127.0.0.1:0=WebPool"],
            &["--http", "--max-body", &mib.to_string()],
            &log,
        );
        let a = &a[0];
        // Small: buffered (and could be retried).
        assert_eq!(upload(a, "POST", 32 * 1024, false), Some(200));
        // Announced bigger than --max-body: 413 at once.
        assert_eq!(upload(a, "POST", 2 * mib, false), Some(413));
        // Idempotent and of unknown length: buffered, so --max-body applies.
        assert_eq!(upload(a, "PUT", 2 * mib, true), Some(413));
        // Not idempotent, large and of unknown length: streamed to the PE, never held
        // whole, so --max-body does not apply.
        assert_eq!(upload(a, "POST", 8 * mib, true), Some(200));
        assert_eq!(upload(a, "POST", mib / 2, false), Some(200));
    });
}
