//! What a user of `rsp call`, `rsp serve` and `rsp resolve` trips over (issue 8, items 6,
//! 8, 9, 11, 13, 14, 15, 17), through real processes on loopback.
//!
//! Every wait has a deadline (conditions are polled, never timed); each test runs under a
//! watchdog. Tests that need multicast or the default port 3863 run inside a network
//! namespace of their own (skipped, with the reason printed, where none can be made).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const LONG: Duration = Duration::from_secs(30);

/// The PE id of `rsp call: connected to PE 0x… at …` lines from index `from` on.
fn connected_pe(call: &Proc, from: usize) -> (usize, String) {
    call.err
        .wait(from, Instant::now() + LONG, |l| {
            l.starts_with("rsp call: connected to PE ")
        })
        .map(|(i, l)| (i, l.split_whitespace().nth(5).unwrap().to_owned()))
        .unwrap_or_else(|| call.fail("no 'connected to PE' line"))
}

fn call_args<'a>(reg: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["call", "EchoPool", "-r", reg, "--no-announces"];
    v.extend_from_slice(extra);
    v
}

/// Run `rsp ARGS` to the end with `input` on stdin; (status, stdout, stderr).
fn run(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(RSP)
        .args(args)
        .env_remove("RSERPOOL_WIRE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Item 8: a PE frozen with `kill -STOP` keeps its connection open and never answers.
/// The call gives it `--reply-timeout`, says so on stderr, reports it and resends the
/// unanswered line to another PE.
#[test]
fn frozen_pe_fails_over_after_the_reply_timeout() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("frozen");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut servers: Vec<Server> = (0..2)
            .map(|_| start_echo(&reg.asap, &["127.0.0.1:0"], &log))
            .collect();
        let mut call = Proc::spawn(
            "call",
            &call_args(&reg.asap, &["--reply-timeout", "2s"]),
            &log,
        );
        call.send_line("hello");
        call.stdout_line("no echo of hello", LONG, |l| l == "hello");
        let (at, victim) = connected_pe(&call, 0);
        let idx = servers
            .iter()
            .position(|s| s.entries[0].0 == victim)
            .unwrap_or_else(|| call.fail("connected to an unknown PE"));
        freeze(servers[idx].proc.pid());

        call.send_line("world");
        call.stdout_line("no echo of world from another PE", LONG, |l| l == "world");
        let failed = format!("rsp call: PE {victim} failed (no reply within 2s)");
        call.err
            .wait(0, Instant::now() + LONG, |l| l.starts_with(&failed))
            .unwrap_or_else(|| call.fail("no failover message naming the frozen PE"));
        let (_, now) = connected_pe(&call, at + 1);
        assert_ne!(now, victim);
        // The frozen PE was reported unreachable to the registrar.
        let reported = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.starts_with(&format!("tx.asap.{}.", call.pid()))
                    && l.contains("ASAP_ENDPOINT_UNREACHABLE=")
            });
        assert!(reported, "no ASAP_ENDPOINT_UNREACHABLE sent");
        signal(servers[idx].proc.pid(), "CONT");
        servers[idx].proc.kill9();
    });
}

/// Item 8, before any answer: the session heartbeat (answered by the PE's session
/// layer, whatever its service does) finds a PE frozen before it answered anything, and
/// the first line goes to another PE (issue 11: `rsp call` on the session layer; before,
/// the call asked the registrar and waited for it to drop the PE).
#[test]
fn pe_frozen_before_any_answer_fails_over_once_the_registrar_drops_it() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("frozen-first");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let servers: Vec<Server> = (0..2)
            .map(|_| start_echo(&reg.asap, &["127.0.0.1:0"], &log))
            .collect();
        let mut call = Proc::spawn(
            "call",
            &call_args(&reg.asap, &["--reply-timeout", "1s"]),
            &log,
        );
        let (_, victim) = connected_pe(&call, 0);
        let frozen = servers.iter().find(|s| s.entries[0].0 == victim).unwrap();
        freeze(frozen.proc.pid());
        call.send_line("first");
        call.stdout_line("no echo of the first line", LONG, |l| l == "first");
        let text = call.err.text();
        assert!(
            text.contains(&format!("PE {victim} failed (no reply within 1s)")),
            "{text}"
        );
        signal(frozen.proc.pid(), "CONT");
    });
}

/// Item 9: no -r, a registrar only known by its announces: the call waits for an
/// announce instead of failing at once (inside a namespace, on a group of its own).
/// Item 17: `rsp resolve` without -r uses the default registrar like call and serve.
#[test]
fn call_finds_an_announced_registrar_and_resolve_has_defaults() {
    bounded(Duration::from_secs(120), || {
        let Some(ns) = Netns::new("announce") else {
            return;
        };
        let dir = scratch("announce");
        let log = dir.join("wire.log");
        const GROUP: &str = "239.255.38.63:38630";
        // No registrar yet: the call waits, then names what it tried and exits 1.
        let out = ns
            .command(&["call", "EchoPool", "--announce-group", GROUP])
            .env_remove("RSERPOOL_WIRE_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("no registrar reachable"), "{err}");
        assert!(err.contains("tcp://127.0.0.1:3863"), "{err}");
        assert!(
            err.contains(&format!("none heard announcing itself on {GROUP}")),
            "{err}"
        );

        let reg = ns.spawn(
            "registrar",
            &[
                "registrar",
                "--listen",
                "tcp://127.0.0.1:0",
                "--admin",
                "off",
                "--announce-group",
                GROUP,
                "--announce-interval",
                "1s",
            ],
            &log,
        );
        let line = reg.stdout_line("no startup line", LONG, |l| l.starts_with("rsp registrar:"));
        let asap = line
            .split_whitespace()
            .find(|w| w.starts_with("tcp://"))
            .unwrap()
            .to_owned();
        let serve = ns.spawn(
            "serve",
            &[
                "serve",
                "echo",
                "-r",
                &asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        serve.stdout_line("did not register", LONG, |l| l.starts_with("registered "));
        // Several fresh calls, each started before it could have heard an announce.
        for i in 0..3 {
            let mut call = ns.spawn(
                "call",
                &["call", "EchoPool", "--announce-group", GROUP],
                &log,
            );
            let want = format!("via announce {i}");
            call.send_line(&want);
            call.stdout_line("no echo via the announced registrar", LONG, |l| l == want);
        }

        // Item 17: a registrar on the default port; resolve finds it without -r.
        let local = ns.spawn(
            "registrar 3863",
            &[
                "registrar",
                "--listen",
                "tcp://127.0.0.1:3863",
                "--admin",
                "off",
                "--announce=false",
            ],
            &log,
        );
        local.stdout_line("no startup line", LONG, |l| l.starts_with("rsp registrar:"));
        let serve2 = ns.spawn(
            "serve (defaults)",
            &["serve", "echo", "--no-announces", "--listen", "127.0.0.1:0"],
            &log,
        );
        let pe = serve2.registered_pe("did not register", LONG);
        let text = succeeds(ns.command(&["resolve", "EchoPool"]));
        assert!(text.contains(&format!("pes={pe}")), "{text}");
        drop((serve, serve2, reg, local));
        drop(ns);
    });
}

/// Item 9 (failing case) and item 15: without a registrar the message names the
/// registrars tried, once; exit status 1.
#[test]
fn no_registrar_names_the_registrars_tried() {
    bounded(Duration::from_secs(60), || {
        let (code, _, err) = run(
            &[
                "call",
                "EchoPool",
                "-r",
                "tcp://127.0.0.1:1",
                "--no-announces",
            ],
            "hello\n",
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("pool EchoPool: no registrar reachable (tried tcp://127.0.0.1:1)"),
            "{err}"
        );
        assert_eq!(err.matches("no registrar reachable").count(), 1, "{err}");
        let (code, _, err) = run(&["resolve", "EchoPool", "-r", "tcp://127.0.0.1:1"], "");
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("cannot connect to tcp://127.0.0.1:1"), "{err}");
    });
}

/// Item 15: an unknown pool is named, with the cause in words, never a debug dump.
#[test]
fn unknown_pool_messages_are_words() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("unknown");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let (code, out, err) = run(&["resolve", "NoSuchPool", "-r", &reg.asap], "");
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.contains("NoSuchPool"), "{err}");
        assert!(err.contains("unknown pool handle (0x9)"), "{err}");
        for text in [&out, &err] {
            assert!(!text.contains("OperationError"), "{text}");
            assert!(!text.contains("CauseCode"), "{text}");
        }
        let (code, out, err) = run(
            &["call", "NoSuchPool", "-r", &reg.asap, "--no-announces"],
            "hello\n",
        );
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.contains("pool NoSuchPool"), "{err}");
        assert!(err.contains("unknown pool handle"), "{err}");
        assert_eq!(err.matches("unknown pool handle").count(), 1, "{err}");
        assert!(!err.contains("OperationError"), "{err}");
        let (code, _, err) = run(
            &[
                "call",
                "NoSuchPool",
                "-r",
                &reg.asap,
                "--no-announces",
                "--per-request",
            ],
            "hello\n",
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("pool NoSuchPool: unknown pool handle"),
            "{err}"
        );
    });
}

/// Item 11: a registration refused for good (the pool uses round robin, this PE asks
/// for least used) ends `rsp serve` with a message naming the pool and the cause, exit 1.
#[test]
fn serve_refused_for_good_exits_with_a_clear_message() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("refused");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let first = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let mut lu = Proc::spawn(
            "serve --policy lu",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
                "--policy",
                "lu",
            ],
            &log,
        );
        let status = lu
            .wait_exit(LONG)
            .unwrap_or_else(|| lu.fail("still running unregistered"));
        assert_eq!(status.code(), Some(1), "{}", lu.err.text());
        let err = lu.err.text();
        assert!(err.contains("pool EchoPool"), "{err}");
        assert!(err.contains("inconsistent pooling policy (0x5)"), "{err}");
        assert!(err.contains("the pool's policy is rr"), "{err}");
        assert!(err.contains("this PE asked for lu"), "{err}");
        assert!(!err.contains("OperationError"), "{err}");
        let ids: BTreeSet<String> = [first.entries[0].0.clone()].into();
        assert_eq!(pe_ids(&dump(&reg.admin), "EchoPool"), ids);
    });
}

/// Item 11: a refusal that may pass (lack of resources: the registrar is full) is
/// retried with a growing pause, said on stderr, and the PE gets in once there is room.
#[test]
fn serve_retries_a_temporary_refusal() {
    bounded(Duration::from_secs(90), || {
        let dir = scratch("full");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &["--max-pes", "1"]);
        let mut first = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let second = Proc::spawn(
            "serve (refused for now)",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        second
            .err
            .wait(0, Instant::now() + LONG, |l| {
                l.contains("for now (lack of resources (0x6)); trying again in")
            })
            .unwrap_or_else(|| second.fail("no retry message"));
        first.proc.terminate();
        assert!(first.proc.wait_exit(LONG).is_some());
        let pe = second.registered_pe("not registered once there was room", LONG);
        wait_until("the second PE in the dump", LONG, || {
            pe_ids(&dump(&reg.admin), "EchoPool").contains(&pe)
        });
    });
}

/// Item 13: `rsp serve` prints its pid at start and on each registered line.
#[test]
fn serve_prints_its_pid() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("pid");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let s = start_echo(&reg.asap, &["127.0.0.1:0", "127.0.0.1:0"], &log);
        let pid = s.proc.pid();
        let first = s.proc.out.lines.lock().unwrap()[0].clone();
        assert_eq!(first, format!("rsp serve: pid {pid} pool EchoPool"));
        let registered: Vec<String> = s
            .proc
            .out
            .text()
            .lines()
            .filter(|l| l.starts_with("registered "))
            .map(str::to_owned)
            .collect();
        assert_eq!(registered.len(), 2, "{registered:?}");
        for l in registered {
            assert!(l.ends_with(&format!(" pid={pid}")), "{l}");
        }
    });
}

/// Item 14: `--per-request` round robin reaches every PE of a 4-PE pool (the PU asks
/// for the whole pool, not the registrar's default 3).
#[test]
fn per_request_round_robin_reaches_all_four_pes() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("rr4");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let s = start_echo(&reg.asap, &["127.0.0.1:0"; 4], &log);
        let ids: BTreeSet<String> = s.entries.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids.len(), 4);
        let mut pu = Proc::spawn(
            "call --per-request",
            &call_args(&reg.asap, &["--per-request"]),
            &log,
        );
        for i in 0..8 {
            pu.send_line(&format!("line {i}"));
        }
        for i in 0..8 {
            let want = format!("line {i}");
            pu.stdout_line("no echo", LONG, |l| l == want);
        }
        let answered = answered_pes(&pu);
        assert_eq!(answered, ids, "round robin did not reach every PE");
    });
}

/// Item 6: handles longer than RSPLIB's 32 bytes work here but draw a warning.
#[test]
fn long_handles_draw_a_warning() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("long");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let long = "P".repeat(40);
        let serve = Proc::spawn(
            "serve --pool LONG",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
                "--pool",
                &long,
            ],
            &log,
        );
        serve.stdout_line("did not register", LONG, |l| l.starts_with("registered "));
        assert!(
            serve.err.text().contains("is 40 bytes long; RSPLIB"),
            "{}",
            serve.err.text()
        );
        let (code, out, err) = run(&["resolve", &long, "-r", &reg.asap], "");
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(err.contains("accept at most 32 bytes"), "{err}");
        let (code, _, err) = run(&["call", &long, "-r", &reg.asap, "--no-announces"], "hi\n");
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("warning: pool handle"), "{err}");
        // A short handle draws none.
        let (_, _, err) = run(&["resolve", "EchoPool", "-r", &reg.asap], "");
        assert!(!err.contains("warning"), "{err}");
    });
}
