//! End to end with real processes on loopback: `rsp registrar`, `rsp serve echo`,
//! `rsp call`, `rsp dump`.
//!
//! Every child is killed when its handle drops; every wait has a deadline (conditions are
//! polled, never timed); each test also runs under a watchdog. Every process writes the
//! messages it sends and receives to a wire log (`RSERPOOL_WIRE_LOG`), and each test ends
//! by running `rserpool-dissect` (Wireshark's ASAP dissector plus a lint) over it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use rserpool_wire::{
    AsapMessage, CauseCode, PeId, Policy, PolicyType, PoolElement, ServerId, TransportAddr,
    TransportKind, TransportUse, UserTransport,
};
use serde_json::Value;
use support::*;

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
        let answered = answered_pes(&pu);
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
        // registrar's received lines include the garbage above, on purpose). Only answers
        // quoting received garbage are checked by the lint alone: Unrecognized Message
        // (cause 0x2) quotes the received bytes, which Wireshark dissects as a nested
        // message, and Invalid Values (0x3) for a parameter whose own Length is broken
        // quotes it as far as it goes (garbage in, flagged out). Invalid Values answers
        // quoting a complete TLV must pass Wireshark too.
        let reg_rx = format!("rx.asap.{}.", reg.proc.pid());
        let reg_tx = format!("tx.asap.{}.", reg.proc.pid());
        let names = dissect(
            &dir,
            &log,
            |l| !l.starts_with(&reg_rx),
            |l| {
                let hex = l.split('=').nth(1).unwrap_or_default();
                let field = |at: usize| {
                    hex.get(at..at + 4)
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                        .map_or(0, usize::from)
                };
                // Cause Length at hex 20, the quoted TLV's Length at hex 28.
                let cut_tlv = field(20) > 4 && (field(28) < 4 || field(28) > field(20) - 4);
                l.starts_with(&reg_tx)
                    && l.contains(".ASAP_ERROR=")
                    && (hex.get(16..20) == Some("0002")
                        || (hex.get(16..20) == Some("0003") && cut_tlv))
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
        assert!(text.contains("max_connections = 100"), "{text}");

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
        assert!(String::from_utf8_lossy(&out.stdout).contains("max_connections = 7"));
    });
}

#[test]
fn bench_runs_and_prints_its_table() {
    bounded(Duration::from_secs(120), || {
        for workload in ["resolve", "register"] {
            let mut cmd = Command::new(RSP);
            cmd.args([
                "bench",
                workload,
                "--duration",
                "300ms",
                "--clients",
                "1,4",
                "--rounds",
                "1",
            ]);
            let text = succeeds(cmd);
            assert!(text.contains("ratio"), "{text}");
            let rows: Vec<Vec<&str>> = bench_rows(&text)
                .into_iter()
                .filter(|w| w[1] == "registrar")
                .collect();
            assert_eq!(rows.len(), 2, "{text}");
            for w in rows {
                assert_eq!(w[5], "0", "errors: {w:?}");
            }
        }
    });
}

/// `rsp bench flood ARGS…` (must succeed): its standard output.
fn bench_flood(args: &[&str]) -> String {
    let mut cmd = Command::new(RSP);
    cmd.args([
        "bench",
        "flood",
        "--duration",
        "1s",
        "--rounds",
        "1",
        "--pace",
        "500",
    ])
    .args(args);
    succeeds(cmd)
}

/// `rsp bench flood`: the pool user's two rows, the ratio, and a flood whose answers are
/// all resolutions — some answered, the rest limited by the per-source rate (0x9) — or
/// all registration responses: the first registered, the rest refused (per-connection
/// rate and PE quota).
#[test]
fn bench_flood_runs_and_prints_its_table() {
    bounded(Duration::from_secs(120), || {
        let text = bench_flood(&["--flood-rate", "20000", "--max-hr-rate", "2000"]);
        assert!(text.lines().any(|l| l.starts_with("alone ")), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("beside the flood ")),
            "{text}"
        );
        assert!(text.contains("ratio (beside ÷ alone)"), "{text}");
        assert!(text.contains("\"answered\""), "{text}");
        assert!(text.contains("\"limited (0x9)\""), "{text}");
        assert!(!text.contains("\"other\""), "{text}");
        let text = bench_flood(&["--flood-kind", "register", "--flood-rate", "3000"]);
        assert!(text.contains("\"registered\""), "{text}");
        assert!(text.contains("\"refused\""), "{text}");
        assert!(!text.contains("\"other\""), "{text}");
    });
}

/// One ASAP_REGISTRATION carrying both an IPv4 and an IPv6 address. A TCP transport
/// parameter holds exactly one address (RFC 5354 §3.3), so a dual-stack *TCP* service
/// registers one entry per family (see `ipv6_only_and_dual_stack_registration`); a
/// multi-homed SCTP user transport carries both in one parameter — one PE, one
/// registration — and must be stored and resolved as such.
#[test]
fn one_registration_with_ipv4_and_ipv6_addresses() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("multihomed");
        let log = dir.join("wire.log");
        // The raw client does not answer keep-alives: switch them off for this test.
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--keepalive-interval", "0", "--keepalive-timeout", "1s"],
        );
        let v4: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let v6: std::net::IpAddr = "::1".parse().unwrap();
        let mut pe = Raw::connect(&reg.asap);
        pe.send_msg(&AsapMessage::Registration {
            handle: "MultiPool".into(),
            pe: PoolElement {
                id: PeId(0x0a0b0c0d),
                home_registrar: ServerId(0),
                registration_life: 60_000,
                user_transport: UserTransport::Ip(TransportAddr::sctp(
                    7777,
                    TransportUse::DATA_ONLY,
                    vec![v4, v6],
                )),
                policy: Policy::LeastUsed { load: 0x1000_0000 },
                asap_transport: None,
            },
        });
        match pe.recv() {
            Some(AsapMessage::RegistrationResponse {
                reject: false,
                pe_id,
                error: None,
                ..
            }) => assert_eq!(pe_id, PeId(0x0a0b0c0d)),
            other => panic!("expected an accepting registration response, got {other:?}"),
        }

        // A pool user sees one PE with both addresses.
        let mut pu = Raw::connect(&reg.asap);
        pu.send_msg(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: "MultiPool".into(),
            items: None,
        });
        match pu.recv() {
            Some(AsapMessage::HandleResolutionResponse {
                policy, pes, error, ..
            }) => {
                assert_eq!(error, None);
                assert_eq!(
                    policy.map(|p| p.policy_type()),
                    Some(PolicyType::LEAST_USED)
                );
                assert_eq!(pes.len(), 1, "{pes:?}");
                assert_eq!(pes[0].id, PeId(0x0a0b0c0d));
                let t = pes[0].user_transport.as_ip().expect("an IP transport");
                assert_eq!(t.kind, TransportKind::Sctp);
                assert_eq!(t.port, 7777);
                assert_eq!(t.addrs, vec![v4, v6]);
            }
            other => panic!("expected a handle resolution response, got {other:?}"),
        }

        // The dump shows one PE with both addresses.
        let doc = dump(&reg.admin);
        assert_eq!(pe_ids(&doc, "MultiPool").len(), 1, "{doc:#}");
        let addrs = &doc["pools"][0]["pes"][0]["addresses"];
        assert_eq!(addrs.as_array().map(Vec::len), Some(2), "{doc:#}");
        dissect(&dir, &log, |_| true, |_| false);
    });
}
