//! The HTTP admin endpoint (issue 13, item 1) with real `rsp` processes on loopback:
//! Prometheus metrics checked by `promtool` and moving with registrations, the JSON
//! routes, readiness, the event stream, the older line-JSON dump on the same port, PEs'
//! and the gateway's endpoints, and bad input on the HTTP port (unknown paths, huge
//! headers, slow clients, handles that are not UTF-8, 10,000 concurrent requests) while
//! the registrar keeps answering handle resolutions.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rserpool_wire::{AsapMessage, PeId, Policy};
use serde_json::Value;
use support::*;

/// Fast ENRP timers (as tests/enrp.rs): a pool forms in about a second.
const FAST: [&str; 8] = [
    "--heartbeat-cycle",
    "200ms",
    "--max-time-last-heard",
    "600ms",
    "--max-time-no-response",
    "400ms",
    "--mentor-discovery-timeout",
    "500ms",
];

/// One HTTP/1.0 request (the answer is delimited by the close): status and body.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n"))
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Checked with `promtool check metrics` (Debian's prometheus package; scripts/test.sh
/// installs it).
fn scrape(addr: &str) -> String {
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed: scripts/test.sh installs it");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn pool_of(i: usize, ports: &[u16], log: &std::path::Path) -> Registrar {
    let mut args: Vec<String> = vec![
        "--enrp-listen".into(),
        format!("tcp://127.0.0.1:{}", ports[i]),
    ];
    for (j, p) in ports.iter().enumerate() {
        if j != i {
            args.push("--peer".into());
            args.push(format!("tcp://127.0.0.1:{p}"));
        }
    }
    args.extend(FAST.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_registrar("tcp://127.0.0.1:0", log, &args)
}

/// A `/v1/events` stream (server-sent events) and everything read from it so far.
struct EventStream {
    conn: TcpStream,
    seen: String,
}

impl EventStream {
    fn open(admin: &str) -> EventStream {
        let mut conn = TcpStream::connect(admin).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        conn.write_all(b"GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        EventStream {
            conn,
            seen: String::new(),
        }
    }

    /// Read until the stream holds `want` (20 s at most).
    fn read_until(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) {
            assert!(Instant::now() < deadline, "no {want:?} in {}", self.seen);
            let n = self.conn.read(&mut buf).unwrap();
            assert!(n > 0, "event stream closed: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

#[test]
fn metrics_pass_promtool_and_move_with_registrations() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("http-metrics");
        let log = dir.join("wire.log");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let regs: Vec<Registrar> = (0..3).map(|i| pool_of(i, &ports, &log)).collect();
        let (r1, r2) = (&regs[0], &regs[1]);
        // Formed: every registrar sees both peers and has finished its start-up download
        // (a peer can be active before the mentor's handle table has arrived).
        wait_until("the pool forms", Duration::from_secs(30), || {
            regs.iter().all(|r| {
                let m = scrape(&r.admin);
                metric(&m, r#"rserpool_registrar_peers{state="active"}"#) == 2.0
                    && metric(&m, "rserpool_registrar_ready") == 1.0
            })
        });
        let before = scrape(&r1.admin);
        assert_eq!(
            metric(&before, "rserpool_registrar_registrations_total"),
            0.0
        );
        assert_eq!(metric(&before, "rserpool_registrar_ready"), 1.0);
        assert!(before.contains("# TYPE rserpool_registrar_resolution_seconds histogram"));
        // Two PEs register at R1; R2 learns them over ENRP.
        let mut echo = start_echo(&r1.asap, &["127.0.0.1:0", "127.0.0.1:0"], &log);
        wait_until("R2 has both PEs", Duration::from_secs(30), || {
            metric(&scrape(&r2.admin), r#"rserpool_registrar_pes{which="all"}"#) == 2.0
        });
        let after = scrape(&r1.admin);
        assert_eq!(
            metric(&after, "rserpool_registrar_registrations_total"),
            2.0
        );
        assert_eq!(
            metric(&after, r#"rserpool_registrar_pes{which="owned"}"#),
            2.0
        );
        assert_eq!(metric(&after, "rserpool_registrar_pools"), 1.0);
        assert_eq!(
            metric(
                &after,
                r#"rserpool_messages_received_total{protocol="asap",type="ASAP_REGISTRATION"}"#
            ),
            2.0
        );
        assert!(
            metric(
                &after,
                r#"rserpool_messages_sent_total{protocol="enrp",type="ENRP_HANDLE_UPDATE"}"#
            ) >= 4.0,
            "{after}"
        );
        let r2m = scrape(&r2.admin);
        assert_eq!(
            metric(&r2m, r#"rserpool_registrar_pes{which="owned"}"#),
            0.0
        );
        assert_eq!(metric(&r2m, "rserpool_registrar_registrations_total"), 0.0);
        // Resolutions are counted and timed.
        for _ in 0..5 {
            assert_eq!(resolves(&r1.asap, "EchoPool"), 2);
        }
        let m = scrape(&r1.admin);
        assert_eq!(metric(&m, "rserpool_registrar_resolutions_total"), 5.0);
        assert_eq!(
            metric(&m, "rserpool_registrar_resolution_seconds_count"),
            5.0
        );
        assert_eq!(
            metric(
                &m,
                r#"rserpool_registrar_resolution_seconds_bucket{le="+Inf"}"#
            ),
            5.0
        );
        // A PE that does not answer keep-alives times out.
        let mut raw = Raw::connect(&r1.asap);
        raw.send_msg(&registration(b"Mute", 77, Policy::RoundRobin, 7777));
        assert!(matches!(
            raw.recv(),
            Some(AsapMessage::RegistrationResponse { reject: false, .. })
        ));
        wait_until("a keep-alive timeout", Duration::from_secs(30), || {
            metric(
                &scrape(&r1.admin),
                "rserpool_registrar_keepalive_timeouts_total",
            ) == 1.0
        });
        // The echo service deregisters on SIGTERM.
        echo.proc.terminate();
        wait_until("two deregistrations", Duration::from_secs(30), || {
            metric(
                &scrape(&r1.admin),
                "rserpool_registrar_deregistrations_total",
            ) == 2.0
        });
        let end = scrape(&r1.admin);
        assert_eq!(
            metric(
                &end,
                r#"rserpool_registrar_pe_removals_total{reason="keepalive-timeout"}"#
            ),
            1.0
        );
        assert_eq!(metric(&end, r#"rserpool_registrar_pes{which="all"}"#), 0.0);
        drop(raw);
    });
}

#[test]
fn json_routes_readiness_and_events() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("http-json");
        let log = dir.join("wire.log");
        // A registrar whose only peer is silent: it looks for a mentor for 20 s and is
        // not ready meanwhile.
        let silent = free_port();
        let peer = format!("tcp://127.0.0.1:{silent}");
        let waiting = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--enrp-listen",
                "tcp://127.0.0.1:0",
                "--peer",
                &peer,
                "--mentor-discovery-timeout",
                "20s",
            ],
        );
        let (status, body) = get(&waiting.admin, "/readyz");
        assert_eq!((status, body.trim()), (503, "not ready: ENRP discovering"));
        assert_eq!(get(&waiting.admin, "/healthz"), (200, "ok\n".into()));
        assert_eq!(get_json(&waiting.admin, "/v1/status")["ready"], false);
        wait_until("ready after the discovery", Duration::from_secs(60), || {
            get(&waiting.admin, "/readyz").0 == 200
        });
        drop(waiting);

        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--keepalive-interval", "0", "--keepalive-timeout", "2s"],
        );
        assert_eq!(get(&reg.admin, "/readyz").0, 200);
        // The event stream: hello first, then each change.
        let mut ev = EventStream::open(&reg.admin);
        ev.read_until("event: hello");
        assert!(
            ev.seen.contains("content-type: text/event-stream"),
            "{}",
            ev.seen
        );
        let mut raw = Raw::connect(&reg.asap);
        raw.send_msg(&registration(b"Web", 0x1234, Policy::RoundRobin, 8080));
        raw.send_msg(&registration(b"\xff\xfe", 0x55, Policy::RoundRobin, 8081));
        raw.recv().unwrap();
        raw.recv().unwrap();
        ev.read_until("\"pe\":\"0x00000055\"");
        assert!(ev.seen.contains("event: pe-added"), "{}", ev.seen);
        assert!(ev.seen.contains("\"pool\":\"Web\""), "{}", ev.seen);
        raw.send_msg(&AsapMessage::Deregistration {
            handle: "Web".into(),
            pe_id: PeId(0x1234),
        });
        raw.recv().unwrap();
        ev.read_until("event: pe-removed");
        ev.read_until("\"reason\":\"deregistered\"");
        // Pools, one pool (by text, by bytes that are not UTF-8, by 0x… hex), peers.
        raw.send_msg(&registration(b"Web", 0x1234, Policy::RoundRobin, 8080));
        raw.recv().unwrap();
        let pools = get_json(&reg.admin, "/v1/pools");
        assert_eq!(pools["pool_count"], 2);
        let handles: Vec<&str> = pools["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["handle"].as_str().unwrap())
            .collect();
        assert_eq!(handles, ["Web", "0xfffe"]);
        let web = get_json(&reg.admin, "/v1/pools/Web");
        assert_eq!(web["pes"][0]["id"], "0x00001234");
        assert_eq!(web["pes"][0]["user_transport"], "tcp://127.0.0.1:8080");
        for path in ["/v1/pools/%FF%fe", "/v1/pools/0xfffe"] {
            let p = get_json(&reg.admin, path);
            assert_eq!(p["handle"], "0xfffe", "{path}");
            assert_eq!(p["handle_hex"], "fffe", "{path}");
            assert_eq!(p["pe_count"], 1, "{path}");
        }
        let (status, body) = get(&reg.admin, "/v1/pools/%C3%A9t%C3%A9");
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("no pool été"), "{body}");
        assert_eq!(get(&reg.admin, "/v1/pools/%zz").0, 400);
        assert_eq!(get_json(&reg.admin, "/v1/peers")["phase"], "serving");
        let doc = get_json(&reg.admin, "/v1/handlespace?pool=Web");
        assert_eq!(
            (doc["pool_count"].clone(), doc["pe_count"].clone()),
            (1.into(), 1.into())
        );
        let st = get_json(&reg.admin, "/v1/status");
        assert_eq!(st["component"], "registrar");
        assert_eq!(st["server_id"], reg.id);
        assert_eq!(st["pe_count"], 2);
        // rsp dump reads the HTTP endpoint (also given as a URL); the older line-JSON
        // protocol still answers on the same port.
        let out = Command::new(RSP)
            .args(["dump", "--http", &format!("http://{}/", reg.admin)])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && table.contains("2 pool(s), 2 PE(s)"),
            "{table}"
        );
        let mut s = TcpStream::connect(&reg.admin).unwrap();
        s.write_all(b"{\"request\":\"dump\",\"pools\":[\"Web\"]}\n")
            .unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).unwrap();
        let legacy: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(legacy["pe_count"], 1);
        // The dashboard and its assets are in the binary.
        let (status, html) = get(&reg.admin, "/");
        assert_eq!(status, 200);
        assert!(html.contains("<script src=\"/app.js\">"), "{html}");
        assert_eq!(get(&reg.admin, "/app.js").0, 200);
        assert_eq!(get(&reg.admin, "/style.css").0, 200);
    });
}

/// The event stream of a registrar also carries the PEs its peers add, update and remove
/// (ENRP handle updates), with the peer as their home.
#[test]
fn the_event_stream_carries_pes_learnt_from_peers() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("http-events-enrp");
        let log = dir.join("wire.log");
        let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
        let regs: Vec<Registrar> = (0..2).map(|i| pool_of(i, &ports, &log)).collect();
        let (r1, r2) = (&regs[0], &regs[1]);
        wait_until("the pool forms", Duration::from_secs(30), || {
            regs.iter().all(|r| {
                metric(
                    &scrape(&r.admin),
                    r#"rserpool_registrar_peers{state="active"}"#,
                ) == 1.0
            })
        });
        let mut ev = EventStream::open(&r2.admin);
        ev.read_until("event: hello");
        // A PE registers at R1: R2's stream shows it, homed at R1.
        let mut raw = Raw::connect(&r1.asap);
        raw.send_msg(&registration(b"Web", 0x4321, Policy::RoundRobin, 8080));
        raw.recv().unwrap();
        ev.read_until("\"pe\":\"0x00004321\"");
        let home = format!("\"home\":\"{}\"", r1.id);
        let added = ev
            .seen
            .split("\n\n")
            .find(|e| e.contains("event: pe-added") && e.contains("0x00004321"))
            .unwrap_or_else(|| panic!("no pe-added event for the PE: {}", ev.seen));
        assert!(added.contains(&home), "{added} (want {home})");
        assert!(added.contains("\"pool\":\"Web\""), "{added}");
        // A re-registration is an update; a de-registration a removal by peer update.
        raw.send_msg(&registration(b"Web", 0x4321, Policy::RoundRobin, 8080));
        raw.recv().unwrap();
        ev.read_until("event: pe-updated");
        raw.send_msg(&AsapMessage::Deregistration {
            handle: "Web".into(),
            pe_id: PeId(0x4321),
        });
        raw.recv().unwrap();
        ev.read_until("\"reason\":\"peer-update\"");
        assert!(ev.seen.contains("event: pe-removed"), "{}", ev.seen);
    });
}

#[test]
fn a_pe_and_a_gateway_have_endpoints_too() {
    bounded(Duration::from_secs(90), || {
        let dir = scratch("http-pe-gw");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let pe = Proc::spawn(
            "serve echo",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ],
            &log,
        );
        let line = pe.stdout_line("no http line", Duration::from_secs(20), |l| {
            l.starts_with("http http://")
        });
        let pe_http = line
            .trim_start_matches("http http://")
            .trim_end_matches('/')
            .to_owned();
        wait_until("the PE is ready", Duration::from_secs(20), || {
            get(&pe_http, "/readyz").0 == 200
        });
        let st = get_json(&pe_http, "/v1/status");
        assert_eq!(st["component"], "pool-element");
        assert_eq!(st["entries"][0]["state"], "registered");
        let m = scrape(&pe_http);
        assert_eq!(
            metric(&m, r#"rserpool_pe_entries{state="registered"}"#),
            1.0
        );
        assert_eq!(
            get(&pe_http, "/v1/pools").0,
            404,
            "only the registrar has pools"
        );

        let gw_port = free_port();
        let gw = Proc::spawn(
            "gateway",
            &[
                "gateway",
                "-r",
                &reg.asap,
                "--no-announces",
                "--map",
                &format!("tcp://127.0.0.1:{gw_port}=EchoPool"),
                "--admin",
                "127.0.0.1:0",
            ],
            &log,
        );
        let line = gw.stdout_line("no http line", Duration::from_secs(20), |l| {
            l.starts_with("http http://")
        });
        let gw_http = line
            .trim_start_matches("http http://")
            .trim_end_matches('/')
            .to_owned();
        for i in 0..3 {
            let mut c = TcpStream::connect(("127.0.0.1", gw_port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let msg = format!("hello {i}\n");
            c.write_all(msg.as_bytes()).unwrap();
            let mut buf = vec![0u8; msg.len()];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(buf, msg.as_bytes());
        }
        wait_until("three connections done", Duration::from_secs(20), || {
            metric(
                &scrape(&gw_http),
                r#"rserpool_gateway_bytes_total{direction="from-pe"}"#,
            ) == 24.0
        });
        let m = scrape(&gw_http);
        assert_eq!(
            metric(&m, "rserpool_gateway_connections_accepted_total"),
            3.0
        );
        let id = st["entries"][0]["pe"].as_str().unwrap();
        assert_eq!(
            metric(
                &m,
                &format!("rserpool_gateway_pe_requests_total{{pe=\"{id}\"}}")
            ),
            3.0,
            "{m}"
        );
        assert_eq!(get_json(&gw_http, "/v1/status")["component"], "gateway");
    });
}

/// Resolutions per second over `secs`, from 4 clients with a connection each.
fn resolution_rate(asap: &str, secs: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (asap, done) = (asap.to_owned(), done.clone());
            std::thread::spawn(move || {
                let mut c = Raw::connect(&asap);
                while Instant::now() < until {
                    c.send_msg(&AsapMessage::HandleResolution {
                        subscribe: false,
                        handle: "Flood".into(),
                        items: None,
                    });
                    match c.recv() {
                        Some(AsapMessage::HandleResolutionResponse { pes, .. }) => {
                            assert!(!pes.is_empty());
                        }
                        other => panic!("resolution: {other:?}"),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs
}

#[test]
fn bad_input_on_the_http_port() {
    bounded(Duration::from_secs(300), || {
        raise_fd_limit(12_000);
        let dir = scratch("http-bad");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--keepalive-interval", "0", "--keepalive-timeout", "2s"],
        );
        register_many(&reg.asap, "Flood", 1..=10);
        // Unknown paths and methods.
        let (status, body) = get(&reg.admin, "/nope");
        assert_eq!(status, 404);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "no such path"
        );
        assert_eq!(get(&reg.admin, "/v1/pools/a/b").0, 404);
        assert_eq!(
            http(
                &reg.admin,
                "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
            )
            .0,
            405
        );
        // Not HTTP at all.
        assert_eq!(http(&reg.admin, "GARBAGE\r\n\r\n").0, 400);
        // Huge headers: 431, the connection closed.
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        );
        let mut s = TcpStream::connect(&reg.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(big.as_bytes());
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        // A slow client (one header byte every half second) is cut off after the header
        // timeout; one that sends nothing too.
        let started = Instant::now();
        let slow = TcpStream::connect(&reg.admin).unwrap();
        let silent = TcpStream::connect(&reg.admin).unwrap();
        let mut writer = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
            for i in 0..120usize {
                let b = request.get(i).copied().unwrap_or(b'z');
                if writer.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        for (what, mut s) in [("slow", slow), ("silent", silent)] {
            s.set_read_timeout(Some(Duration::from_secs(50))).unwrap();
            let mut buf = [0u8; 512];
            let r = s.read(&mut buf);
            assert!(
                match &r {
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                },
                "the {what} client kept its connection: {r:?}"
            );
        }
        eprintln!(
            "slow and silent clients cut off after {:?}",
            started.elapsed()
        );
        // 10,000 concurrent requests while the registrar answers resolutions.
        let quiet = resolution_rate(&reg.asap, 3.0);
        // The flood's own threads at a lower priority, as if it came from another host:
        // on this 2-CPU machine the measurement is about the registrar, not the client.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(|| {
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
            })
            .enable_all()
            .build()
            .unwrap();
        let admin = reg.admin.clone();
        let flood = std::thread::spawn(move || {
            rt.block_on(async move {
                let started = Instant::now();
                let mut tasks = Vec::new();
                for i in 0..10_000usize {
                    let admin = admin.clone();
                    tasks.push(tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let path =
                            ["/healthz", "/metrics", "/v1/status", "/v1/pools", "/nope"][i % 5];
                        let want = if path == "/nope" { 404 } else { 200 };
                        let r = tokio::time::timeout(Duration::from_secs(120), async {
                            let mut s = tokio::net::TcpStream::connect(&admin).await?;
                            s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
                                .await?;
                            let mut out = Vec::new();
                            s.read_to_end(&mut out).await?;
                            Ok::<_, std::io::Error>(out)
                        })
                        .await;
                        match r {
                            Ok(Ok(out)) => {
                                let head =
                                    String::from_utf8_lossy(&out[..out.len().min(12)]).into_owned();
                                (head == format!("HTTP/1.0 {want}")
                                    || head == format!("HTTP/1.1 {want}"))
                                .then_some(())
                                .ok_or(format!("{path}: {head:?}"))
                            }
                            Ok(Err(e)) => Err(format!("{path}: {e}")),
                            Err(_) => Err(format!("{path}: no answer in 120 s")),
                        }
                    }));
                }
                let mut failures = Vec::new();
                for t in tasks {
                    if let Err(e) = t.await.unwrap() {
                        failures.push(e);
                    }
                }
                (started.elapsed(), failures)
            })
        });
        let during = resolution_rate(&reg.asap, 3.0);
        let (took, failures) = flood.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} of 10,000 requests failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        eprintln!(
            "FIGURE resolutions/s: {quiet:.0} without, {during:.0} during a flood of 10,000 \
             concurrent HTTP requests ({:.2}x); the flood took {took:?}",
            during / quiet
        );
        // Still serving, everything still answered.
        assert!(resolves(&reg.asap, "Flood") > 0);
        assert_eq!(get(&reg.admin, "/healthz").0, 200);
        assert_eq!(dump(&reg.admin)["pe_count"], 10);
    });
}
