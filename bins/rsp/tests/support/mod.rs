//! Shared harness for the process-level tests: children killed on drop, bounded waits,
//! a raw ASAP client, `rsp dump`, and Wireshark dissection of wire logs.
//!
//! Every wait has a deadline (conditions are polled, never timed).
#![allow(dead_code, clippy::unwrap_used)]

pub mod certs;
pub mod tls;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rserpool_wire::framing::Deframer;
use rserpool_wire::{
    AsapMessage, EnrpMessage, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr,
    UserTransport,
};
use serde_json::Value;

pub const RSP: &str = env!("CARGO_BIN_EXE_rsp");

// ----------------------------------------------------------------------------------------
// Processes

#[derive(Default)]
pub struct Lines {
    pub lines: Mutex<Vec<String>>,
    pub changed: Condvar,
}

impl Lines {
    pub fn collect(self: &Arc<Self>, r: impl Read + Send + 'static) {
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
    pub fn wait(
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

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// A child process, killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub out: Arc<Lines>,
    pub err: Arc<Lines>,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], wire_log: &Path) -> Proc {
        let mut cmd = Command::new(RSP);
        cmd.args(args);
        Proc::start(name, cmd, wire_log, &[])
    }

    /// Start `cmd` with the wire log and `RUST_LOG=info` (then `env`), its output collected.
    pub fn start(name: &str, mut cmd: Command, wire_log: &Path, env: &[(&str, &str)]) -> Proc {
        cmd.env("RSERPOOL_WIRE_LOG", wire_log)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_line(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.out
            .wait(0, Instant::now() + timeout, pred)
            .map(|(_, l)| l)
            .unwrap_or_else(|| self.fail(what))
    }

    /// The PE identifier (`0x…`) of a PE process's `registered … pe=ID` line, once it
    /// comes (`what` says what failed if it does not within `timeout`).
    pub fn registered_pe(&self, what: &str, timeout: Duration) -> String {
        let line = self.stdout_line(what, timeout, |l| l.starts_with("registered "));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("pe="))
            .unwrap_or_else(|| self.fail(&format!("no pe= in {line:?}")))
            .to_owned()
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.out.text(),
            self.err.text()
        )
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Wait for exit (after `terminate`), bounded.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
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
        if std::thread::panicking() {
            // The test failed: show what this process logged (the last lines), so a CI
            // failure can be understood from its output alone.
            let lines = self.err.lines.lock().unwrap();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- {} (stderr, last {} lines) ---", self.name, tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// Run `cmd` (an `rsp` command; without the wire log) to its end: it must succeed (else
/// the test fails with its output). Its standard output.
pub fn succeeds(mut cmd: Command) -> String {
    let out = cmd.env_remove("RSERPOOL_WIRE_LOG").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The rows of an `rsp bench` table (clients, target, ops/s, p50, p99, errors, …), split
/// into words.
pub fn bench_rows(table: &str) -> Vec<Vec<&str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 6 && w[0].parse::<u32>().is_ok())
        .collect()
}

/// Run a test body under a watchdog: a hung test fails instead of blocking CI. (Children
/// are killed by their `Drop` when the body unwinds; the watchdog only reports.)
pub fn bounded(limit: Duration, body: impl FnOnce() + Send + 'static) {
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

pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rsp-e2e-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Registrar {
    pub proc: Proc,
    pub asap: String,
    pub admin: String,
    /// The first ENRP TCP endpoint of the startup line (`None`: ENRP not listening).
    pub enrp: Option<String>,
    /// The server ID (0x…) of the startup line.
    pub id: String,
}

pub fn start_registrar(listen: &str, wire_log: &Path, extra: &[&str]) -> Registrar {
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
    Registrar::started(Proc::spawn("registrar", &args, wire_log))
}

impl Registrar {
    /// A registrar process, once its startup line names its ASAP and admin addresses.
    pub fn started(proc: Proc) -> Registrar {
        let line = proc.stdout_line("no startup line", Duration::from_secs(20), |l| {
            l.starts_with("rsp registrar:")
        });
        let words: Vec<&str> = line.split_whitespace().collect();
        let asap = words
            .iter()
            .find(|w| w.starts_with("tcp://"))
            .unwrap()
            .to_string();
        let at = |word: &str| words.iter().position(|w| *w == word);
        let admin = words[at("admin").unwrap() + 1].to_owned();
        let id = words[at("id").unwrap() + 1].to_owned();
        let enrp = at("enrp").and_then(|i| {
            words[i + 1..]
                .iter()
                .take_while(|w| **w != "admin")
                .find(|w| w.starts_with("tcp://"))
                .map(|w| w.to_string())
        });
        Registrar {
            proc,
            asap,
            admin,
            enrp,
            id,
        }
    }
}

pub struct Server {
    pub proc: Proc,
    /// (PE id, user address) per registered entry.
    pub entries: Vec<(String, String)>,
}

pub fn start_echo(registrar: &str, listen: &[&str], wire_log: &Path) -> Server {
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

pub fn dump(admin: &str) -> Value {
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
pub fn pe_ids(doc: &Value, pool: &str) -> BTreeSet<String> {
    doc["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["handle"] == pool)
        .flat_map(|p| p["pes"].as_array().unwrap().iter())
        .map(|pe| pe["id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----------------------------------------------------------------------------------------
// Dissection

pub fn dissector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/rserpool-dissect")
}

/// Run rserpool-dissect over the wire log lines `keep` selects; every verdict must be ok
/// (for lines `lint_only` selects: the lint must find no error, Wireshark's verdict is
/// not used). Returns the message names seen.
pub fn dissect(
    dir: &Path,
    wire_log: &Path,
    keep: impl Fn(&str) -> bool,
    lint_only: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    dissect_as("asap", dir, wire_log, keep, lint_only)
}

/// [`dissect`] with the protocol to decode as (`asap` or `enrp`).
pub fn dissect_as(
    proto: &str,
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
    let input = dir.join(format!("dissect-input-{proto}.txt"));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let tool = dissector();
    assert!(
        tool.exists(),
        "{} not found (CI checks out shared/ beside the repository)",
        tool.display()
    );
    let out = Command::new(&tool)
        .args(["--proto", proto, "--json", "--hex-lines"])
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

pub struct Raw {
    pub s: TcpStream,
    pub d: Deframer,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let addr: SocketAddr = addr.trim_start_matches("tcp://").parse().unwrap();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw {
            s,
            d: Deframer::default(),
        }
    }
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }
    pub fn send_msg(&mut self, m: &AsapMessage) {
        self.send(&m.encode_to_vec());
    }
    /// The next message, or `None` when the registrar closed the connection.
    pub fn recv(&mut self) -> Option<AsapMessage> {
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

impl Raw {
    pub fn send_enrp(&mut self, m: &EnrpMessage) {
        self.send(&m.encode_to_vec());
    }
    /// The next message as ENRP, or `None` when the peer closed the connection.
    pub fn recv_enrp(&mut self) -> Option<EnrpMessage> {
        recv_raw(self).map(|b| EnrpMessage::decode(&b).unwrap().message)
    }
    /// The next ENRP message `pred` accepts (others are skipped), or `None` when the
    /// connection closed or `timeout` passed.
    pub fn recv_enrp_until(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&EnrpMessage) -> bool,
    ) -> Option<EnrpMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let got = loop {
                if let Some(m) = self.d.next_message().unwrap() {
                    break Some(m.to_vec());
                }
                let mut buf = [0u8; 65536];
                match self.s.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => self.d.push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break None,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return None
                    }
                    Err(e) => panic!("read: {e}"),
                }
            };
            let m = EnrpMessage::decode(&got?).unwrap().message;
            if pred(&m) {
                return Some(m);
            }
        }
    }
}

/// A raw ASAP connection from a chosen local address (e.g. 127.0.0.2: another source).
pub fn raw_from(asap: &str, local: IpAddr) -> Raw {
    let mut to: SocketAddr = asap.trim_start_matches("tcp://").parse().unwrap();
    if to.ip().is_unspecified() {
        to.set_ip(local);
    }
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    s.bind(&SocketAddr::new(local, 0).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Raw {
        s,
        d: Deframer::default(),
    }
}

/// A TCP port free on 127.0.0.1 a moment ago (for settings that must name a port before
/// the process binds it, e.g. static `--peer` lists).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn registration(handle: &[u8], id: u32, policy: Policy, port: u16) -> AsapMessage {
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

pub fn resolves(addr: &str, pool: &str) -> usize {
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
// Network namespaces (a private loopback with multicast, default ports free)

/// A network namespace of its own: only `lo`, up, with multicast routed over it, so
/// announces and default ports (3863) stay inside. Deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `None` (with the reason printed) where namespaces cannot be made (not root, no
    /// `ip`): the caller skips its test.
    pub fn new(tag: &str) -> Option<Netns> {
        let name = format!("rsp-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
        };
        let _ = ip(&["netns", "del", &name]);
        match ip(&["netns", "add", &name]) {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot create a network namespace (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run `ip` to create a network namespace: {e}");
                return None;
            }
        }
        let ns = Netns { name };
        for step in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "lo", "multicast", "on"],
            &["route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            let mut args = vec!["netns", "exec", &ns.name, "ip"];
            args.extend_from_slice(step);
            let o = ip(&args).unwrap();
            assert!(
                o.status.success(),
                "ip {}: {}",
                step.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Some(ns)
    }

    /// `rsp ARGS` inside the namespace (`ip netns exec` execs it: the pid is rsp's).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, RSP]).args(args);
        c
    }

    /// Like [`Proc::spawn`], inside the namespace.
    pub fn spawn(&self, name: &str, args: &[&str], wire_log: &Path) -> Proc {
        Proc::start(name, self.command(args), wire_log, &[])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Netns {
    /// Run `ip ARGS` inside the namespace; it must succeed.
    pub fn ip(&self, args: &[&str]) {
        let o = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Namespaces on one Ethernet segment: a hub namespace with a bridge, and per member a
/// veth pair (`eth0` inside the member, `pN` on the bridge), addresses 10.77.0.N/24
/// (N from 1). Cutting a member takes its bridge port down.
pub struct Lan {
    /// Dropped last (the members' veth ends go with their namespaces).
    pub members: Vec<Netns>,
    pub hub: Netns,
}

impl Lan {
    /// `None` where namespaces cannot be made (see [`Netns::new`]).
    pub fn new(tag: &str, n: usize) -> Option<Lan> {
        let hub = Netns::new(&format!("{tag}-hub"))?;
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let mut members = Vec::new();
        for i in 1..=n {
            let m = Netns::new(&format!("{tag}-{i}"))?;
            let port = format!("p{i}");
            hub.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &m.name,
            ]);
            hub.ip(&["link", "set", &port, "master", "br0", "up"]);
            m.ip(&[
                "addr",
                "add",
                &format!("{}/24", Lan::addr(i)),
                "dev",
                "eth0",
            ]);
            m.ip(&["link", "set", "eth0", "up"]);
            members.push(m);
        }
        Some(Lan { members, hub })
    }

    /// The address of member `i` (from 1).
    pub fn addr(i: usize) -> String {
        format!("10.77.0.{i}")
    }

    /// Member `i` (from 1).
    pub fn ns(&self, i: usize) -> &Netns {
        &self.members[i - 1]
    }

    /// Cut member `i` off the segment.
    pub fn cut(&self, i: usize) {
        self.hub.ip(&["link", "set", &format!("p{i}"), "down"]);
    }

    /// Put member `i` back.
    pub fn heal(&self, i: usize) {
        self.hub.ip(&["link", "set", &format!("p{i}"), "up"]);
    }
}

/// Send a signal (`STOP`, `CONT`, `TERM` …) to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Close the child's stdin (end of input for `rsp call`).
pub fn close_stdin(p: &mut Proc) {
    p.stdin = None;
}

/// Whether a process is stopped (state `T` in /proc/PID/stat).
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "T"))
        })
        .unwrap_or(false)
}

/// `kill -STOP` and wait until the process is stopped.
pub fn freeze(pid: u32) {
    signal(pid, "STOP");
    wait_until("the process to stop", Duration::from_secs(10), || {
        is_stopped(pid)
    });
}

/// The next message on a raw connection as bytes, without decoding it (for answers a test
/// checks byte by byte), or `None` when the registrar closed the connection. The length
/// field delimits it, so a lying length field shows up as garbage in the next message.
pub fn recv_raw(c: &mut Raw) -> Option<Vec<u8>> {
    loop {
        if let Some(m) = c.d.next_message().unwrap() {
            return Some(m.to_vec());
        }
        let mut buf = [0u8; 65536];
        match c.s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => c.d.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("no answer from the registrar: {e}"),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Operating a registrar (hardening_ops.rs)

/// `rsp ARGS` like [`Proc::spawn`], with extra environment variables set after it (e.g.
/// `("RUST_LOG", "")` so the command line and the configuration decide the log level).
pub fn spawn_env(name: &str, args: &[&str], wire_log: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(RSP);
    cmd.args(args);
    Proc::start(name, cmd, wire_log, env)
}

/// A registrar started by [`spawn_env`] with `args` (after `rsp`), once its startup line
/// is out.
pub fn registrar_with(args: &[&str], wire_log: &Path, env: &[(&str, &str)]) -> Registrar {
    Registrar::started(spawn_env("registrar", args, wire_log, env))
}

/// Send signal `sig` (`HUP`, `TERM` …) to a child.
pub fn send_signal(p: &Proc, sig: &str) {
    signal(p.pid(), sig);
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
pub fn vm_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Register PEs `ids` in `pool` over one connection, in batches; every registration must
/// be accepted. The connection is closed afterwards (the PEs stay: keep-alives off).
pub fn register_many(addr: &str, pool: &str, ids: impl IntoIterator<Item = u32>) {
    let ids: Vec<u32> = ids.into_iter().collect();
    let mut c = Raw::connect(addr);
    for batch in ids.chunks(500) {
        let mut bytes = Vec::new();
        for id in batch {
            let port = 1024 + (*id % 60000) as u16;
            let mut m = registration(pool.as_bytes(), *id, Policy::RoundRobin, port);
            // Held for 10 minutes: a test that registers thousands on a loaded machine
            // must not see the first ones expire before it looks (no re-registration).
            if let AsapMessage::Registration { pe, .. } = &mut m {
                pe.registration_life = 600_000;
            }
            bytes.extend(m.encode_to_vec());
        }
        c.send(&bytes);
        for _ in batch {
            match c.recv() {
                Some(AsapMessage::RegistrationResponse { reject: false, .. }) => {}
                other => panic!("registration in {pool} not accepted: {other:?}"),
            }
        }
    }
}

/// Raise our own open-file limit (tests that hold thousands of sockets).
pub fn raise_fd_limit(want: u64) {
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

/// The PEs an `rsp call --per-request` said answered (`rsp call: PE 0x… answered`).
pub fn answered_pes(call: &Proc) -> BTreeSet<String> {
    call.err
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("rsp call: PE "))
        .filter_map(|l| l.strip_suffix(" answered"))
        .map(str::to_owned)
        .collect()
}

/// `GET path` on the admin port: the body.
pub fn http_body(admin: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin.trim_start_matches("http://")).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(out)
}

/// The value of one sample (`name` or `name{labels}` exactly as written), 0 if absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == sample).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// The count of one protection in `rsp dump`'s `protections` list (0 when absent).
pub fn protection(doc: &serde_json::Value, what: &str) -> u64 {
    doc["protections"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["what"] == what))
        .and_then(|p| p["count"].as_u64())
        .unwrap_or(0)
}
