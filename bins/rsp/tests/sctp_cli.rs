//! SCTP on the command line, host side. The build host's kernel has no SCTP, so these
//! tests check what happens then: a registrar asked for SCTP only exits with status 2 and
//! a message naming SCTP; a registrar asked for SCTP and TCP warns and serves TCP, and a
//! PE and a PU given an SCTP and a TCP registrar fall back to TCP. (On a kernel with SCTP
//! the "missing SCTP" assertions do not apply and are skipped with a note; the VM
//! scenarios in tests/sctp-vm cover that case.)
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RSP: &str = env!("CARGO_BIN_EXE_rsp");

fn sctp_missing() -> bool {
    let missing = !rserpool::sctp::sctp_available();
    if !missing {
        eprintln!("note: this kernel has SCTP; the no-SCTP assertions are skipped");
    }
    missing
}

/// Run to completion, killed after `limit`.
fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(RSP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rsp {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A long-running child whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(RSP)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Running {
            child,
            lines,
            stderr,
        }
    }

    fn line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(_) => panic!("{what}: not seen; stderr:\n{}", self.stderr()),
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stderr once it holds `needle` (stderr is read by its own thread, so it may lag
    /// behind stdout), or whatever it holds after 20 s.
    fn stderr_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let err = self.stderr();
            if err.contains(needle) || Instant::now() >= deadline {
                return err;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn word<'a>(line: &'a str, prefix: &str) -> &'a str {
    line.split_whitespace()
        .find(|w| w.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in {line:?}"))
}

#[test]
fn registrar_with_only_sctp_listeners_names_the_missing_sctp() {
    if !sctp_missing() {
        return;
    }
    let out = run(
        &[
            "registrar",
            "--listen",
            "sctp://127.0.0.1:0",
            "--admin",
            "off",
            "--announce=false",
        ],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("sctp://127.0.0.1:0"), "{err}");
    assert!(err.contains("no SCTP support"), "{err}");
    assert!(err.contains("use tcp://"), "{err}");
}

#[test]
fn serve_over_sctp_without_kernel_sctp_is_a_clear_error() {
    if !sctp_missing() {
        return;
    }
    let out = run(
        &[
            "serve",
            "echo",
            "--listen",
            "sctp://127.0.0.1:0",
            "-r",
            "tcp://127.0.0.1:9",
            "--no-announces",
        ],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("no SCTP support"), "{err}");
}

#[test]
fn tcp_keeps_working_beside_a_requested_sctp_listener() {
    let missing = sctp_missing();
    let reg = Running::spawn(&[
        "registrar",
        "--listen",
        "sctp://127.0.0.1:0",
        "--listen",
        "tcp://127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--announce=false",
    ]);
    let start = reg.line("registrar startup line", |l| {
        l.starts_with("rsp registrar:")
    });
    let tcp = word(&start, "tcp://").to_owned();
    if missing {
        assert!(!start.contains("sctp://"), "{start}");
        let err = reg.stderr_with("continuing with TCP only");
        assert!(
            err.contains("not listening on sctp://127.0.0.1:0")
                && err.contains("no SCTP support")
                && err.contains("continuing with TCP only"),
            "{err}"
        );
    } else {
        assert!(start.contains("sctp://"), "{start}");
    }
    // A PE and a PU given an SCTP registrar first (no SCTP here: it fails at once) and
    // the TCP one second register and resolve over TCP.
    let sctp_first = "sctp://127.0.0.1:1";
    let pe = Running::spawn(&[
        "serve",
        "echo",
        "--listen",
        "127.0.0.1:0",
        "-r",
        sctp_first,
        "-r",
        &tcp,
        "--no-announces",
    ]);
    let registered = pe.line("PE registration", |l| l.starts_with("registered "));
    let pe_id = word(&registered, "pe=")
        .trim_start_matches("pe=")
        .to_owned();

    let out = run(
        &["resolve", "EchoPool", "-r", &tcp, "--details"],
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("pes={pe_id}")), "{text}");

    let mut call = Command::new(RSP)
        .args([
            "call",
            "EchoPool",
            "-r",
            sctp_first,
            "-r",
            &tcp,
            "--no-announces",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(call.stdin.take().unwrap(), "over tcp").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while call.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "rsp call did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = call.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("over tcp"),
        "stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
