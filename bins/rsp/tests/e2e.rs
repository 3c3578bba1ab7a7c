//! End to end with real processes on loopback: `rsp registrar`, `rsp serve echo`,
//! `rsp call`, `rsp dump`.
//!
//! Every child is killed when its handle drops; every wait has a deadline (conditions are
//! polled, never timed); each test also runs under a watchdog. Every process writes the
//! messages it sends and receives to a wire log (`RSERPOOL_WIRE_LOG`), and each test ends
//! by running `rserpool-dissect` (Wireshark's ASAP dissector plus a lint) over it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rserpool_wire::framing::Deframer;
use rserpool_wire::{
    AsapMessage, CauseCode, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr,
    UserTransport,
};
use serde_json::Value;

const RSP: &str = env!("CARGO_BIN_EXE_rsp");

// ----------------------------------------------------------------------------------------
// Processes

#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Lines {
    fn collect(self: &Arc<Self>, r: impl Read + Send + 'static) {
        let me = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                me.lines.lock().unwrap().push(line);
                me.changed.notify_all();
            }
        });
    }

    /// The first line (from index `from`) matching `pred`, waiting until `deadline`.
    fn wait(
        &self,
        from: usize,
        deadline: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let mut g = self.lines.lock().unwrap();
        loop {
            if let Some((i, l)) = g.iter().enumerate().skip(from).find(|(_, l)| pred(l)) {
                return Some((i, l.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self.changed.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// A child process, killed on drop.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Lines>,
    err: Arc<Lines>,
}

impl Proc {
    fn spawn(name: &str, args: &[&str], wire_log: &Path) -> Proc {
        let mut child = Command::new(RSP)
            .args(args)
            .env("RSERPOOL_WIRE_LOG", wire_log)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = Arc::new(Lines::default());
        let err = Arc::new(Lines::default());
        out.collect(child.stdout.take().unwrap());
        err.collect(child.stderr.take().unwrap());
        Proc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stdout_line(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.out
            .wait(0, Instant::now() + timeout, pred)
            .map(|(_, l)| l)
            .unwrap_or_else(|| self.fail(what))
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.out.text(),
            self.err.text()
        )
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Wait for exit (after `terminate`), bounded.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a test body under a watchdog: a hung test fails instead of blocking CI. (Children
/// are killed by their `Drop` when the body unwinds; the watchdog only reports.)
fn bounded(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => h.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("test did not finish within {limit:?}")
        }
    }
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rsp-e2e-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Registrar {
    proc: Proc,
    asap: String,
    admin: String,
}

fn start_registrar(listen: &str, wire_log: &Path, extra: &[&str]) -> Registrar {
    let mut args = vec![
        "registrar",
        "--listen",
        listen,
        "--admin",
        "127.0.0.1:0",
        "--announce=false",
    ];
    // Short keep-alives by default so dead PEs vanish quickly; a test may set its own.
    if !extra.contains(&"--keepalive-timeout") {
        args.extend_from_slice(&["--keepalive-interval", "500ms", "--keepalive-timeout", "2s"]);
    }
    args.extend_from_slice(extra);
    let proc = Proc::spawn("registrar", &args, wire_log);
    let line = proc.stdout_line("no startup line", Duration::from_secs(20), |l| {
        l.starts_with("rsp registrar:")
    });
    let words: Vec<&str> = line.split_whitespace().collect();
    let asap = words
        .iter()
        .find(|w| w.starts_with("tcp://"))
        .unwrap()
        .to_string();
    let admin = words[words.iter().position(|w| *w == "admin").unwrap() + 1].to_owned();
    Registrar { proc, asap, admin }
}

struct Server {
    proc: Proc,
    /// (PE id, user address) per registered entry.
    entries: Vec<(String, String)>,
}

fn start_echo(registrar: &str, listen: &[&str], wire_log: &Path) -> Server {
    let mut args = vec!["serve", "echo", "-r", registrar, "--no-announces"];
    for l in listen {
        args.extend_from_slice(&["--listen", l]);
    }
    let proc = Proc::spawn("serve echo", &args, wire_log);
    let mut entries = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut from = 0;
    while entries.len() < listen.len() {
        let (i, line) = proc
            .out
            .wait(from, deadline, |l| l.starts_with("registered "))
            .unwrap_or_else(|| proc.fail("did not register"));
        from = i + 1;
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap()
                .to_owned()
        };
        entries.push((field("pe="), field("addr=")));
    }
    Server { proc, entries }
}

fn dump(admin: &str) -> Value {
    let out = Command::new(RSP)
        .args(["dump", "--json", "--admin", admin])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsp dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// PE ids of `pool` in a dump.
fn pe_ids(doc: &Value, pool: &str) -> BTreeSet<String> {
    doc["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["handle"] == pool)
        .flat_map(|p| p["pes"].as_array().unwrap().iter())
        .map(|pe| pe["id"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----------------------------------------------------------------------------------------
// Dissection

fn dissector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/rserpool-dissect")
}

/// Run rserpool-dissect over the wire log lines `keep` selects; every verdict must be ok
/// (for lines `lint_only` selects: the lint must find no error, Wireshark's verdict is
/// not used). Returns the message names seen.
fn dissect(
    dir: &Path,
    wire_log: &Path,
    keep: impl Fn(&str) -> bool,
    lint_only: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    let text = std::fs::read_to_string(wire_log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    assert!(
        !lines.is_empty(),
        "nothing recorded in {}",
        wire_log.display()
    );
    let input = dir.join("dissect-input.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let tool = dissector();
    assert!(
        tool.exists(),
        "{} not found (CI checks out shared/ beside the repository)",
        tool.display()
    );
    let out = Command::new(&tool)
        .args(["--proto", "asap", "--json", "--hex-lines"])
        .arg(&input)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rserpool-dissect output is not JSON ({e}); status {:?}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let msgs = doc.as_array().unwrap();
    assert_eq!(msgs.len(), lines.len(), "one verdict per message");
    let mut names = BTreeSet::new();
    for (m, line) in msgs.iter().zip(&lines) {
        let label = line.split('=').next().unwrap_or_default();
        if lint_only(line) {
            let errors: Vec<&Value> = m["lint"]
                .as_array()
                .map(|l| l.iter().filter(|e| e["severity"] == "error").collect())
                .unwrap_or_default();
            assert!(
                errors.is_empty(),
                "{label}: lint errors: {}",
                serde_json::to_string_pretty(m).unwrap()
            );
        } else {
            assert_eq!(
                m["verdict"],
                "ok",
                "{label} does not dissect clean: {}",
                serde_json::to_string_pretty(m).unwrap()
            );
        }
        if let Some(name) = label.rsplit('.').next() {
            names.insert(name.to_owned());
        }
    }
    names
}

// ----------------------------------------------------------------------------------------
// Raw ASAP client (for the bad-input test)

struct Raw {
    s: TcpStream,
    d: Deframer,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let addr: SocketAddr = addr.trim_start_matches("tcp://").parse().unwrap();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw {
            s,
            d: Deframer::default(),
        }
    }
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }
    fn send_msg(&mut self, m: &AsapMessage) {
        self.send(&m.encode_to_vec());
    }
    /// The next message, or `None` when the registrar closed the connection.
    fn recv(&mut self) -> Option<AsapMessage> {
        loop {
            if let Some(m) = self.d.next_message().unwrap() {
                return Some(AsapMessage::decode(m).unwrap().message);
            }
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.d.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no answer from the registrar: {e}"),
            }
        }
    }
}

fn registration(handle: &[u8], id: u32, policy: Policy, port: u16) -> AsapMessage {
    AsapMessage::Registration {
        handle: PoolHandle::new(handle.to_vec()),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: 30_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                port,
                "127.0.0.1".parse().unwrap(),
            )),
            policy,
            asap_transport: None,
        },
    }
}

fn resolves(addr: &str, pool: &str) -> usize {
    let mut c = Raw::connect(addr);
    c.send_msg(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: None,
    });
    match c.recv() {
        Some(AsapMessage::HandleResolutionResponse { pes, .. }) => pes.len(),
        other => panic!("expected a handle resolution response, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------------------
// Tests

#[test]
fn round_robin_failover_and_removal_ipv4() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("rr");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut servers: Vec<Server> = (0..3)
            .map(|_| start_echo(&reg.asap, &["127.0.0.1:0"], &log))
            .collect();
        let ids: BTreeSet<String> = servers.iter().map(|s| s.entries[0].0.clone()).collect();
        assert_eq!(ids.len(), 3);
        wait_until("3 PEs in the dump", Duration::from_secs(10), || {
            pe_ids(&dump(&reg.admin), "EchoPool") == ids
        });
        // Keep-alives flow (so they are part of the dissected traffic).
        wait_until(
            "a keep-alive ack from every PE",
            Duration::from_secs(10),
            || {
                let doc = dump(&reg.admin);
                let pes = doc["pools"][0]["pes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                pes.len() == 3 && pes.iter().all(|p| !p["last_keepalive_ack_ms"].is_null())
            },
        );

        // Round robin: a PE per line; all three answer.
        let mut pu = Proc::spawn(
            "call --per-request",
            &[
                "call",
                "EchoPool",
                "-r",
                &reg.asap,
                "--no-announces",
                "--per-request",
            ],
            &log,
        );
        for i in 0..6 {
            pu.send_line(&format!("line {i}"));
        }
        for i in 0..6 {
            let want = format!("line {i}");
            pu.stdout_line("no echo", Duration::from_secs(10), |l| l == want);
        }
        let answered: BTreeSet<String> = pu
            .err
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("rsp call: PE "))
            .filter_map(|l| l.strip_suffix(" answered"))
            .map(str::to_owned)
            .collect();
        assert_eq!(answered, ids, "round robin did not reach every PE");
        drop(pu);

        // A session; kill -9 its PE; the next line is answered by another PE.
        let mut call = Proc::spawn(
            "call",
            &["call", "EchoPool", "-r", &reg.asap, "--no-announces"],
            &log,
        );
        call.send_line("hello");
        call.stdout_line("no echo of hello", Duration::from_secs(10), |l| {
            l == "hello"
        });
        let connected = |p: &Proc, from: usize| {
            p.err
                .wait(from, Instant::now() + Duration::from_secs(10), |l| {
                    l.starts_with("rsp call: connected to PE ")
                })
                .map(|(i, l)| (i, l.split_whitespace().nth(5).unwrap().to_owned()))
                .unwrap_or_else(|| p.fail("no 'connected' line"))
        };
        let (at, victim) = connected(&call, 0);
        let idx = servers
            .iter()
            .position(|s| s.entries[0].0 == victim)
            .unwrap();
        servers[idx].proc.kill9();
        call.send_line("world");
        call.stdout_line(
            "no echo of world after the kill",
            Duration::from_secs(15),
            |l| l == "world",
        );
        let mut from = at + 1;
        let mut last = victim.clone();
        while let Some((i, id)) = call
            .err
            .wait(from, Instant::now(), |l| {
                l.starts_with("rsp call: connected to PE ")
            })
            .map(|(i, l)| (i, l.split_whitespace().nth(5).unwrap().to_owned()))
        {
            from = i + 1;
            last = id;
        }
        assert_ne!(last, victim, "still talking to the killed PE");
        assert!(ids.contains(&last));
        assert!(call.err.text().contains(&format!("PE {victim} failed")));

        // The registrar notices within its keep-alive timeout.
        let survivors: BTreeSet<String> = ids.iter().filter(|i| **i != victim).cloned().collect();
        wait_until(
            "the dead PE to leave the handlespace",
            Duration::from_secs(10),
            || pe_ids(&dump(&reg.admin), "EchoPool") == survivors,
        );

        // Orderly shutdown of a PE deregisters it.
        let other = servers
            .iter_mut()
            .find(|s| s.entries[0].0 != victim)
            .unwrap();
        let gone = other.entries[0].0.clone();
        other.proc.terminate();
        assert!(other
            .proc
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()));
        wait_until(
            "the deregistered PE to leave",
            Duration::from_secs(5),
            || !pe_ids(&dump(&reg.admin), "EchoPool").contains(&gone),
        );

        drop(call);
        let names = dissect(&dir, &log, |_| true, |_| false);
        for want in [
            "ASAP_REGISTRATION",
            "ASAP_REGISTRATION_RESPONSE",
            "ASAP_HANDLE_RESOLUTION",
            "ASAP_HANDLE_RESOLUTION_RESPONSE",
            "ASAP_ENDPOINT_KEEP_ALIVE",
            "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
            "ASAP_ENDPOINT_UNREACHABLE",
            "ASAP_DEREGISTRATION",
            "ASAP_DEREGISTRATION_RESPONSE",
        ] {
            assert!(names.contains(want), "{want} not exchanged: {names:?}");
        }
    });
}

#[test]
fn ipv6_only_and_dual_stack_registration() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("v6");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://[::1]:0", &log, &[]);
        assert!(reg.asap.starts_with("tcp://[::1]:"), "{}", reg.asap);
        let v6 = start_echo(&reg.asap, &["[::1]:0"], &log);
        let dual = start_echo(&reg.asap, &["127.0.0.1:0", "[::1]:0"], &log);
        assert!(v6.entries[0].1.starts_with("tcp://[::1]:"));

        let mut pu = Proc::spawn(
            "call",
            &[
                "call",
                "EchoPool",
                "-r",
                &reg.asap,
                "--no-announces",
                "--per-request",
            ],
            &log,
        );
        for i in 0..4 {
            pu.send_line(&format!("v6 {i}"));
        }
        for i in 0..4 {
            let want = format!("v6 {i}");
            pu.stdout_line("no echo over ::1", Duration::from_secs(10), |l| l == want);
        }

        // One PE process, both address families: its two entries, registered over one
        // connection (same ASAP transport), one IPv4 and one IPv6 user address.
        let doc = dump(&reg.admin);
        let pes: Vec<&Value> = doc["pools"][0]["pes"].as_array().unwrap().iter().collect();
        let dual_ids: Vec<&str> = dual.entries.iter().map(|(id, _)| id.as_str()).collect();
        let mine: Vec<&&Value> = pes
            .iter()
            .filter(|p| dual_ids.contains(&p["id"].as_str().unwrap()))
            .collect();
        assert_eq!(mine.len(), 2, "{doc:#}");
        let addrs: BTreeSet<&str> = mine
            .iter()
            .map(|p| p["addresses"][0].as_str().unwrap())
            .collect();
        assert!(
            addrs.iter().any(|a| a.starts_with("127.0.0.1:")),
            "{addrs:?}"
        );
        assert!(addrs.iter().any(|a| a.starts_with("[::1]:")), "{addrs:?}");
        assert_eq!(mine[0]["asap_transport"], mine[1]["asap_transport"]);
        assert!(mine[0]["asap_transport"]
            .as_str()
            .unwrap()
            .contains("[::1]"));
        drop(pu);
        dissect(&dir, &log, |_| true, |_| false);
    });
}

#[test]
fn bad_input_gets_errors_and_the_registrar_keeps_serving() {
    bounded(Duration::from_secs(240), || {
        const IDLE: usize = 10_000;
        raise_fd_limit(IDLE as u64 + 1024);
        let dir = scratch("bad");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            // Generous keep-alive timeout: 10,000 connections on a loaded 2-core machine
            // must not make a live PE look dead; what is checked is that none is lost.
            &[
                "--max-connections",
                "12000",
                "--max-handle-length",
                "64",
                "--keepalive-interval",
                "1s",
                "--keepalive-timeout",
                "10s",
            ],
        );
        let servers: Vec<Server> = (0..2)
            .map(|_| start_echo(&reg.asap, &["127.0.0.1:0"], &log))
            .collect();
        let ids: BTreeSet<String> = servers.iter().map(|s| s.entries[0].0.clone()).collect();
        wait_until("2 PEs", Duration::from_secs(10), || {
            pe_ids(&dump(&reg.admin), "EchoPool") == ids
        });
        let before = pe_ids(&dump(&reg.admin), "EchoPool");

        // Garbage framing: a length below 4 closes the connection.
        let mut c = Raw::connect(&reg.asap);
        c.send(&[0xde, 0xad, 0x00, 0x02, 0xbe, 0xef, 0x00, 0x00]);
        assert_eq!(c.recv(), None, "garbage must close the connection");

        // An unknown message type inside a well-framed message: ASAP_ERROR 0x2.
        let mut c = Raw::connect(&reg.asap);
        c.send(&[0x7f, 0x00, 0x00, 0x08, 1, 2, 3, 4]);
        match c.recv() {
            Some(AsapMessage::Error { error }) => {
                assert_eq!(error.first_code(), Some(CauseCode::UNRECOGNIZED_MESSAGE))
            }
            other => panic!("expected ASAP_ERROR, got {other:?}"),
        }

        // A truncated message: its parameter claims more bytes than the message holds.
        let mut bytes = registration(b"EchoPool", 0x1111, Policy::RoundRobin, 9).encode_to_vec();
        bytes.truncate(24);
        bytes[2..4].copy_from_slice(&24u16.to_be_bytes());
        let mut c = Raw::connect(&reg.asap);
        c.send(&bytes);
        match c.recv() {
            Some(AsapMessage::Error { error }) => {
                assert!(error.first_code().is_some(), "{error:?}")
            }
            None => {}
            other => panic!("expected ASAP_ERROR or a close, got {other:?}"),
        }
        // … and a stream that ends in the middle of a message: closed.
        let mut c = Raw::connect(&reg.asap);
        let whole = registration(b"EchoPool", 0x2222, Policy::RoundRobin, 9).encode_to_vec();
        c.send(&whole[..whole.len() / 2]);
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.recv(), None);

        // Inconsistent policy: EchoPool is round robin.
        let mut c = Raw::connect(&reg.asap);
        c.send_msg(&registration(
            b"EchoPool",
            0x3333,
            Policy::LeastUsed { load: 5 },
            9,
        ));
        match c.recv() {
            Some(AsapMessage::RegistrationResponse { reject, error, .. }) => {
                assert!(reject);
                assert_eq!(
                    error.and_then(|e| e.first_code()),
                    Some(CauseCode::INCONSISTENT_POLICY)
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }

        // Oversized pool handle.
        let mut c = Raw::connect(&reg.asap);
        c.send_msg(&registration(&[b'x'; 1000], 0x4444, Policy::RoundRobin, 9));
        match c.recv() {
            Some(AsapMessage::RegistrationResponse { reject, error, .. }) => {
                assert!(reject);
                assert_eq!(
                    error.and_then(|e| e.first_code()),
                    Some(CauseCode::INVALID_VALUES)
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(resolves(&reg.asap, "EchoPool"), 2);

        // 10,000 idle connections; the registrar keeps answering meanwhile.
        let addr: SocketAddr = reg.asap.trim_start_matches("tcp://").parse().unwrap();
        let mut idle = Vec::with_capacity(IDLE);
        for i in 0..IDLE {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => idle.push(s),
                Err(e) => panic!("idle connection {i} failed: {e}"),
            }
            if i % 2500 == 0 {
                assert_eq!(resolves(&reg.asap, "EchoPool"), 2);
            }
        }
        assert_eq!(resolves(&reg.asap, "EchoPool"), 2);
        assert_eq!(pe_ids(&dump(&reg.admin), "EchoPool"), before);
        // The PEs keep answering keep-alives through it all: nobody was dropped.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(pe_ids(&dump(&reg.admin), "EchoPool"), before);
        drop(idle);
        assert_eq!(resolves(&reg.asap, "EchoPool"), 2);
        assert_eq!(pe_ids(&dump(&reg.admin), "EchoPool"), before);

        // Everything our processes sent, and what the PEs received, dissects clean (the
        // registrar's received lines include the garbage above, on purpose). The answers
        // to the bad input are checked by the lint only: Wireshark dissects the bytes an
        // Unrecognized Message cause quotes as a nested message (garbage in, flagged out),
        // and flags an Invalid Values cause without the offending TLV (the core sends
        // 0x3 bare today; see docs/shell.md "known gaps").
        let reg_rx = format!("rx.asap.{}.", reg.proc.pid());
        let reg_tx = format!("tx.asap.{}.", reg.proc.pid());
        let names = dissect(
            &dir,
            &log,
            |l| !l.starts_with(&reg_rx),
            |l| {
                l.starts_with(&reg_tx)
                    && (l.contains(".ASAP_ERROR=")
                        || l.contains(".ASAP_REGISTRATION_RESPONSE=0301"))
            },
        );
        assert!(names.contains("ASAP_ERROR"), "{names:?}");
        drop(servers);
    });
}

#[test]
fn registrar_config_is_checked() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("cfg");
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "listen = [\"tcp://127.0.0.1:0\"]\nserver_id = \"0x1234\"\nkeepalive_interval = \"1s\"\nmax_connections = 100\nannounce = false\n",
        )
        .unwrap();
        let out = Command::new(RSP)
            .args(["registrar", "--validate", "--config"])
            .arg(&good)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("configuration ok"), "{text}");
        assert!(text.contains("max_connections: 100"), "{text}");

        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "listen = [\"tcp://127.0.0.1:0\"]\nkeepalive_intervall = \"1s\"\n",
        )
        .unwrap();
        let out = Command::new(RSP)
            .args(["registrar", "--validate", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("keepalive_intervall"), "{err}");

        // A flag overrides the file.
        let out = Command::new(RSP)
            .args([
                "registrar",
                "--validate",
                "--max-connections",
                "7",
                "--config",
            ])
            .arg(&good)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("max_connections: 7"));
    });
}

/// Raise our own open-file limit for the idle-connection flood.
fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let target = cur.maximum.map_or(want, |h| want.min(h));
    if cur.current.is_some_and(|c| c >= target) {
        return;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: cur.maximum,
        },
    )
    .unwrap();
    assert!(
        target >= want,
        "hard open-file limit {target} is below {want}"
    );
}

#[test]
fn bench_runs_and_prints_its_table() {
    bounded(Duration::from_secs(120), || {
        for workload in ["resolve", "register"] {
            let out = Command::new(RSP)
                .args([
                    "bench",
                    workload,
                    "--duration",
                    "300ms",
                    "--clients",
                    "1,4",
                    "--rounds",
                    "1",
                ])
                .env_remove("RSERPOOL_WIRE_LOG")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("ratio"), "{text}");
            let rows: Vec<&str> = text
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("registrar"))
                .collect();
            assert_eq!(rows.len(), 2, "{text}");
            for line in rows {
                let errors: u64 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
                assert_eq!(errors, 0, "{line}");
            }
        }
    });
}
