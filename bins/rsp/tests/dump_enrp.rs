//! `rsp dump --enrp URL`: the handlespace read as an ENRP peer with Handle Table Requests.
//!
//! Against a scripted ENRP registrar on a real TCP socket (what the client sends, M = 1
//! continuation, R = 1 retries, bounds), and the exit codes (1 unreachable / refused, 2 a
//! bad URL). Every wait has a deadline; each test runs under a watchdog.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use rserpool_wire::framing::Deframer;
use rserpool_wire::{
    EnrpMessage, PeId, Policy, PoolElement, PoolEntry, PoolHandle, ServerId, TransportAddr,
    TransportKind, UserTransport,
};
use serde_json::Value;
use support::*;

const REGISTRAR: ServerId = ServerId(0x5EED_0E01);

struct Peer {
    s: TcpStream,
    d: Deframer,
}

impl Peer {
    fn accept(l: &TcpListener) -> Peer {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Peer {
            s,
            d: Deframer::default(),
        }
    }
    fn recv(&mut self) -> Option<EnrpMessage> {
        self.recv_raw()
            .map(|b| EnrpMessage::decode(&b).unwrap().message)
    }
    fn recv_raw(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(m) = self.d.next_message().unwrap() {
                return Some(m.to_vec());
            }
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.d.push(&buf[..n]),
            }
        }
    }
    fn send(&mut self, m: &EnrpMessage) {
        self.s.write_all(&m.encode_to_vec()).unwrap();
    }
}

fn pe(id: u32) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: REGISTRAR,
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(
            (id % 60000 + 1) as u16,
            "127.0.0.1".parse().unwrap(),
        )),
        policy: Policy::RoundRobin,
        asap_transport: Some(TransportAddr::tcp(40000, "127.0.0.1".parse().unwrap())),
    }
}

fn response(more: bool, receiver: ServerId, ids: std::ops::Range<u32>) -> EnrpMessage {
    EnrpMessage::HandleTableResponse {
        reject: false,
        more,
        sender: REGISTRAR,
        receiver,
        pools: vec![PoolEntry {
            handle: PoolHandle::from("EnrpPool"),
            pes: ids.map(pe).collect(),
        }],
    }
}

fn rsp(args: &[&str]) -> std::process::Output {
    Command::new(RSP).args(args).output().unwrap()
}

/// The client's opening: a presence naming it, then a request for the whole table.
fn opening(p: &mut Peer) -> ServerId {
    let Some(EnrpMessage::Presence {
        sender,
        receiver,
        server_info,
        ..
    }) = p.recv()
    else {
        panic!("expected a presence first")
    };
    assert_ne!(sender, ServerId(0));
    assert_eq!(receiver, ServerId(0));
    let info = server_info.expect("server information");
    assert_eq!(info.server_id, sender);
    assert_eq!(info.transport.kind, TransportKind::Tcp);
    assert_eq!(info.transport.port, p.s.peer_addr().unwrap().port());
    match p.recv() {
        Some(EnrpMessage::HandleTableRequest {
            own_children_only,
            sender: s,
            ..
        }) => {
            assert!(!own_children_only, "W must be 0 (the whole table)");
            assert_eq!(s, sender);
        }
        other => panic!("expected a handle table request, got {other:?}"),
    }
    sender
}

#[test]
fn follows_more_to_send_and_prints_the_whole_table() {
    bounded(Duration::from_secs(60), || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let server = thread::spawn(move || {
            let mut p = Peer::accept(&l);
            let client = opening(&mut p);
            // A presence of our own in between is ignored by the client.
            p.send(&EnrpMessage::Presence {
                reply_required: false,
                sender: REGISTRAR,
                receiver: client,
                checksum: Some(0),
                server_info: None,
            });
            p.send(&response(true, client, 1..601));
            for (more, ids) in [(true, 601..1201), (false, 1150..1501)] {
                match p.recv() {
                    Some(EnrpMessage::HandleTableRequest {
                        own_children_only: false,
                        sender,
                        ..
                    }) => assert_eq!(sender, client),
                    other => panic!("expected another request, got {other:?}"),
                }
                p.send(&response(more, client, ids));
            }
            // Then the client goes away.
            assert!(p.recv().is_none());
        });
        let out = rsp(&["dump", "--json", "--enrp", &url]);
        server.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["server_id"], "0x5eed0e01");
        assert_eq!(doc["pe_count"], 1500, "overlapping responses count once");
        let ids = pe_ids(&doc, "EnrpPool");
        assert_eq!(ids.len(), 1500);
        assert!(ids.contains("0x000005dc"));
        let first = &doc["pools"][0]["pes"][0];
        assert_eq!(first["asap_transport"], "tcp://127.0.0.1:40000");
        assert_eq!(first["registration_life_ms"], 30000);
    });
}

/// What the client sends passes Wireshark's ENRP dissector (rserpool-dissect).
#[test]
fn what_the_client_sends_dissects_clean() {
    bounded(Duration::from_secs(60), || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let server = thread::spawn(move || {
            let mut p = Peer::accept(&l);
            let presence = p.recv_raw().unwrap();
            let request = p.recv_raw().unwrap();
            let client = EnrpMessage::decode(&presence).unwrap().message.servers().0;
            p.send(&response(false, client, 1..3));
            vec![presence, request]
        });
        let out = rsp(&["dump", "--enrp", &url]);
        assert!(out.status.success());
        let sent = server.join().unwrap();
        let dir = scratch("dump-enrp-dissect");
        let input = dir.join("enrp.hex");
        let lines: Vec<String> = ["ENRP_PRESENCE", "ENRP_HANDLE_TABLE_REQUEST"]
            .iter()
            .zip(&sent)
            .map(|(name, b)| format!("tx.enrp.{name}={}", hex::encode(b)))
            .collect();
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let out = Command::new(dissector())
            .args(["--proto", "enrp", "--json", "--hex-lines"])
            .arg(&input)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let msgs = doc.as_array().unwrap();
        assert_eq!(msgs.len(), 2);
        for m in msgs {
            assert_eq!(
                m["verdict"],
                "ok",
                "{}",
                serde_json::to_string_pretty(m).unwrap()
            );
        }
    });
}

#[test]
fn rejection_is_retried_then_reported() {
    bounded(Duration::from_secs(60), || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let server = thread::spawn(move || {
            // First run: rejected once, then served.
            let mut p = Peer::accept(&l);
            let client = opening(&mut p);
            let reject = |client| EnrpMessage::HandleTableResponse {
                reject: true,
                more: false,
                sender: REGISTRAR,
                receiver: client,
                pools: Vec::new(),
            };
            p.send(&reject(client));
            assert_eq!(opening(&mut p), client, "a retry introduces itself again");
            p.send(&response(false, client, 1..3));
            assert!(p.recv().is_none());
            // Second run: always rejected.
            let mut p = Peer::accept(&l);
            let client = opening(&mut p);
            loop {
                p.send(&reject(client));
                match p.recv() {
                    Some(EnrpMessage::Presence { .. }) => {
                        assert!(matches!(
                            p.recv(),
                            Some(EnrpMessage::HandleTableRequest { .. })
                        ));
                    }
                    None => break,
                    other => panic!("{other:?}"),
                }
            }
        });
        let out = rsp(&["dump", "--enrp", &url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("2 PE(s)"), "{text}");
        assert!(text.contains("EnrpPool"), "{text}");
        let out = rsp(&["dump", "--enrp", &url]);
        server.join().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("rejected the handle table request 4 times"),
            "{err}"
        );
    });
}

#[test]
fn too_many_pes_is_an_error() {
    bounded(Duration::from_secs(60), || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let server = thread::spawn(move || {
            let mut p = Peer::accept(&l);
            let client = opening(&mut p);
            p.send(&response(true, client, 1..200));
            let _ = p.recv();
        });
        let out = rsp(&["dump", "--enrp", &url, "--max-pes", "100"]);
        server.join().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("more than 100 PEs"), "{err}");
    });
}

#[test]
fn exit_codes() {
    bounded(Duration::from_secs(60), || {
        // Nobody listens there: 1.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        drop(l);
        let out = rsp(&["dump", "--enrp", &url]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot reach"), "{err}");
        // A silent listener: a timeout, 1.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let out = rsp(&["dump", "--enrp", &url, "--timeout", "300ms"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no answer"), "{err}");
        drop(l);
        // Bad URLs: 2.
        for bad in [
            "udp://127.0.0.1:9901",
            "tcp://",
            "tcp://127.0.0.1:99999",
            "gopher://x",
        ] {
            let out = rsp(&["dump", "--enrp", bad]);
            assert_eq!(out.status.code(), Some(2), "{bad}");
        }
    });
}

/// Against our registrar: 2,400 PEs need several handle table responses; every PE comes
/// through once, with the same fields as the admin dump shows.
#[test]
fn reads_our_registrar_with_several_responses() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("dump-enrp-ours");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "127.0.0.1:0",
            &log,
            &[
                "--enrp-listen",
                "tcp://127.0.0.1:0",
                "--mentor-discovery-timeout",
                "0",
                "--keepalive-interval",
                "60s",
                "--keepalive-timeout",
                "60s",
            ],
        );
        let line = reg.proc.out.text();
        let enrp = line
            .split_whitespace()
            .skip_while(|w| *w != "enrp")
            .nth(1)
            .unwrap_or_else(|| panic!("no ENRP endpoint in {line}"))
            .to_owned();
        register_many(&reg.asap, "BigPool", 1..=800);
        register_many(&reg.asap, "BigPool", 801..=1600);
        register_many(&reg.asap, "OtherPool", 1601..=2400);
        let out = rsp(&["dump", "--enrp", &enrp]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let responses: usize = err
            .split_whitespace()
            .skip_while(|w| *w != "in")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no response count in {err}"));
        assert!(responses > 1, "{err}");
        eprintln!("2400 PEs came in {responses} handle table responses");
        let out = rsp(&["dump", "--json", "--enrp", &enrp]);
        assert!(out.status.success());
        let by_enrp: Value = serde_json::from_slice(&out.stdout).unwrap();
        let by_admin = dump(&reg.admin);
        assert_eq!(by_enrp["pe_count"], 2400);
        assert_eq!(by_enrp["server_id"], by_admin["server_id"]);
        for pool in ["BigPool", "OtherPool"] {
            assert_eq!(pe_ids(&by_enrp, pool), pe_ids(&by_admin, pool), "{pool}");
        }
        let first = |d: &Value| d["pools"][0]["pes"][0].clone();
        for k in [
            "id",
            "home",
            "user_transport",
            "asap_transport",
            "registration_life_ms",
        ] {
            assert_eq!(first(&by_enrp)[k], first(&by_admin)[k], "{k}");
        }
    });
}
