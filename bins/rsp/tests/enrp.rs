//! ENRP end to end with real processes: registrars peered over TCP on loopback (and in
//! network namespaces for the partition), `rsp serve echo` as PEs, `rsp call` and raw
//! handle resolutions as PUs, `rsp dump` to look inside.
//!
//! Every wait is bounded polling; the times printed (resolution across registrars,
//! takeover) are figures, not assertions. Every ENRP message the registrars send passes
//! `rserpool-dissect --proto enrp`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rserpool_wire::{
    CauseCode, EnrpMessage, PeId, Policy, PoolElement, PoolEntry, PoolHandle, ServerId,
    TransportAddr, UpdateAction, UserTransport,
};
use serde_json::Value;
use support::*;

/// Fast ENRP timers for the tests (a dead peer noticed in about a second).
const FAST: [&str; 12] = [
    "--heartbeat-cycle",
    "200ms",
    "--max-time-last-heard",
    "600ms",
    "--max-time-no-response",
    "400ms",
    "--takeover-expiry",
    "1s",
    "--mentor-discovery-timeout",
    "500ms",
    "--download-session-timeout",
    "2s",
];

/// The arguments of registrar `i` of a pool whose ENRP ports are `ports`, over TCP on
/// loopback, peered with all the others.
fn pool_args(i: usize, ports: &[u16]) -> Vec<String> {
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
    args
}

fn start_member(i: usize, ports: &[u16], log: &Path) -> Registrar {
    let args = pool_args(i, ports);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = start_registrar("tcp://127.0.0.1:0", log, &args);
    assert!(r.enrp.is_some(), "registrar {i} does not listen for ENRP");
    r
}

/// (pool, PE id) → home registrar, from a dump.
fn homes(doc: &Value) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for p in doc["pools"].as_array().unwrap() {
        for pe in p["pes"].as_array().unwrap() {
            let key = (
                p["handle"].as_str().unwrap().to_owned(),
                pe["id"].as_str().unwrap().to_owned(),
            );
            let dup = out.insert(key, pe["home"].as_str().unwrap().to_owned());
            assert!(dup.is_none(), "a PE twice in one dump: {doc}");
        }
    }
    out
}

/// What a dump says of the handlespace proper (pool, PE, home, user transport), for
/// comparing registrars.
fn handlespace(doc: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for p in doc["pools"].as_array().unwrap() {
        for pe in p["pes"].as_array().unwrap() {
            out.insert((
                p["handle"].as_str().unwrap().to_owned(),
                pe["id"].as_str().unwrap().to_owned(),
                pe["home"].as_str().unwrap().to_owned(),
                pe["user_transport"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn phase(doc: &Value) -> String {
    doc["enrp"]["phase"].as_str().unwrap_or("?").to_owned()
}

/// Peers a dump lists as active, by server ID.
fn active_peers(doc: &Value) -> BTreeSet<String> {
    doc["enrp"]["peers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["state"] == "active")
                .map(|p| p["server_id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Number of PEs a handle resolution at `asap` returns, 0 on any failure (the registrar
/// may be gone).
fn resolved(asap: &str, pool: &str) -> usize {
    std::panic::catch_unwind(|| resolves(asap, pool)).unwrap_or(0)
}

/// The scenario of issue 10: three registrars peered statically over TCP; a PE registers
/// at R1 and a PU resolves it at R3; R1 is killed (-9) and R2 or R3 takes the PE over
/// (the PE hears it as a new home); R1 restarts and downloads the handlespace from a
/// mentor before serving. Every ENRP and ASAP message sent passes the dissector.
#[test]
fn three_registrars_replicate_take_over_and_resync() {
    bounded(Duration::from_secs(240), || {
        let dir = scratch("enrp-pool");
        let log = dir.join("wire.log");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut regs: Vec<Registrar> = (0..3).map(|i| start_member(i, &ports, &log)).collect();
        let ids: Vec<String> = regs.iter().map(|r| r.id.clone()).collect();
        // The pool forms: every registrar has the two others active, and serves.
        for (i, r) in regs.iter().enumerate() {
            let want: BTreeSet<String> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, id)| id.clone())
                .collect();
            wait_until(
                "every registrar to see its two peers active",
                Duration::from_secs(20),
                || {
                    let d = dump(&r.admin);
                    active_peers(&d) == want && phase(&d) == "serving"
                },
            );
        }

        // The table names the phase and the peers.
        let out = std::process::Command::new(RSP)
            .args(["dump", "--admin", &regs[0].admin])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains("ENRP serving")
                && table.contains("peers (2):")
                && table.contains(&ids[1])
                && table.contains(&ids[2]),
            "{table}"
        );

        // (a) A PE registers at R1; a PU resolves it at R3.
        let pe = start_echo(&regs[0].asap, &["127.0.0.1:0"], &log);
        let registered = Instant::now();
        let pe_id = pe.entries[0].0.clone();
        wait_until("R3 to resolve the PE", Duration::from_secs(10), || {
            resolved(&regs[2].asap, "EchoPool") == 1
        });
        println!(
            "figure: PE registered at R1 resolved at R3 after {:?}",
            registered.elapsed()
        );
        let key = ("EchoPool".to_owned(), pe_id.clone());
        for r in &regs {
            wait_until(
                "every registrar to hold the PE, home R1",
                Duration::from_secs(10),
                || homes(&dump(&r.admin)).get(&key) == Some(&ids[0]),
            );
        }
        // The checksums agree: what R2 expects of R1 is what R1 reports.
        wait_until(
            "R2's checksum of R1 to match R1's report",
            Duration::from_secs(10),
            || {
                let d = dump(&regs[1].admin);
                d["enrp"]["peers"].as_array().unwrap().iter().any(|p| {
                    p["server_id"] == ids[0].as_str()
                        && p["owned_pes"] == 1
                        && p["checksum_reported"] == p["checksum_expected"]
                })
            },
        );

        // (b) kill -9 R1: R2 or R3 takes the PE over; resolution keeps working.
        let pe_lines = pe.proc.err.lines.lock().unwrap().len();
        regs[0].proc.kill9();
        let killed = Instant::now();
        let mut new_home = String::new();
        wait_until(
            "R2 or R3 to become the PE's home",
            Duration::from_secs(30),
            || {
                let h2 = homes(&dump(&regs[1].admin)).get(&key).cloned();
                let h3 = homes(&dump(&regs[2].admin)).get(&key).cloned();
                match (h2, h3) {
                    (Some(a), Some(b)) if a == b && a != ids[0] => {
                        new_home = a;
                        true
                    }
                    _ => false,
                }
            },
        );
        println!(
            "figure: PE re-homed {:?} after kill -9 of its home",
            killed.elapsed()
        );
        assert!(new_home == ids[1] || new_home == ids[2], "home {new_home}");
        pe.proc
            .err
            .wait(pe_lines, Instant::now() + Duration::from_secs(10), |l| {
                l.contains("new home registrar") && l.contains(&new_home)
            })
            .unwrap_or_else(|| pe.proc.fail("no home change to the new registrar"));
        for r in &regs[1..] {
            assert_eq!(resolved(&r.asap, "EchoPool"), 1);
        }
        // A PU through R3 reaches the PE.
        let mut call = Proc::spawn(
            "call",
            &["call", "EchoPool", "-r", &regs[2].asap, "--no-announces"],
            &log,
        );
        call.send_line("after the takeover");
        call.stdout_line("no echo through R3", Duration::from_secs(10), |l| {
            l == "after the takeover"
        });
        drop(call);
        // The PE stays registered at its new home (keep-alives answered there).
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            homes(&dump(&regs[1].admin)).get(&key),
            Some(&new_home),
            "the PE left its new home"
        );

        // (c) Restart R1: it downloads the handlespace from a mentor before serving.
        let r1 = start_member(0, &ports, &log);
        regs[0] = r1;
        wait_until(
            "the restarted R1 to serve with the others' handlespace",
            Duration::from_secs(30),
            || {
                let d1 = dump(&regs[0].admin);
                let d2 = dump(&regs[1].admin);
                let d3 = dump(&regs[2].admin);
                phase(&d1) == "serving"
                    && handlespace(&d1) == handlespace(&d2)
                    && handlespace(&d2) == handlespace(&d3)
                    && handlespace(&d1).len() == 1
            },
        );
        let d1 = dump(&regs[0].admin);
        assert!(
            d1["enrp"]["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["mentor"] == true),
            "the restarted R1 names no mentor: {}",
            d1["enrp"]
        );

        // (e) Every ENRP message sent passes the dissector; so does all ASAP.
        drop(pe);
        for r in &mut regs {
            r.proc.terminate();
            r.proc.wait_exit(Duration::from_secs(10));
        }
        let names = dissect_as("enrp", &dir, &log, |l| l.starts_with("tx.enrp."), |_| false);
        println!("ENRP message types sent: {names:?}");
        for want in [
            "ENRP_PRESENCE",
            "ENRP_HANDLE_TABLE_REQUEST",
            "ENRP_HANDLE_TABLE_RESPONSE",
            "ENRP_HANDLE_UPDATE",
            "ENRP_LIST_REQUEST",
            "ENRP_LIST_RESPONSE",
            "ENRP_INIT_TAKEOVER",
            "ENRP_INIT_TAKEOVER_ACK",
            "ENRP_TAKEOVER_SERVER",
        ] {
            assert!(names.contains(want), "{want} not sent: {names:?}");
        }
        let names = dissect(&dir, &log, |l| l.starts_with("tx.asap."), |_| false);
        assert!(names.contains("ASAP_ENDPOINT_KEEP_ALIVE"), "{names:?}");
    });
}

// ----------------------------------------------------------------------------------------
// Partition in network namespaces

/// `rsp dump --json` inside a namespace.
fn dump_in(ns: &Netns, admin: &str) -> Value {
    let out = ns
        .command(&["dump", "--json", "--admin", admin])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsp dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Three registrars in three namespaces on one segment (10.77.0.1–3), one PE each in
/// its registrar's namespace. R1 is cut off: each side keeps serving its own PEs. The
/// link heals: the handlespaces converge (by presence checksums and audit) with every PE
/// present once, all three registrars agreeing on its home.
#[test]
fn a_partition_heals_without_losing_or_duplicating_pes() {
    bounded(Duration::from_secs(240), || {
        let Some(lan) = Lan::new("enrp", 3) else {
            return;
        };
        let dir = scratch("enrp-partition");
        let log = dir.join("wire.log");
        let mut regs = Vec::new();
        for i in 1..=3 {
            let mut args: Vec<String> = vec![
                "registrar".into(),
                "--listen".into(),
                format!("tcp://{}:3863", Lan::addr(i)),
                "--enrp-listen".into(),
                format!("tcp://{}:9901", Lan::addr(i)),
                "--admin".into(),
                "127.0.0.1:0".into(),
                "--announce=false".into(),
                "--keepalive-interval".into(),
                "500ms".into(),
                "--keepalive-timeout".into(),
                "1s".into(),
            ];
            for j in (1..=3).filter(|j| *j != i) {
                args.push("--peer".into());
                args.push(format!("tcp://{}:9901", Lan::addr(j)));
            }
            args.extend(FAST.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            regs.push(Registrar::started(lan.ns(i).spawn(
                &format!("registrar {i}"),
                &args,
                &log,
            )));
        }
        let mut pes = Vec::new();
        for i in 1..=3 {
            let asap = format!("tcp://{}:3863", Lan::addr(i));
            let listen = format!("{}:0", Lan::addr(i));
            let proc = lan.ns(i).spawn(
                &format!("pe {i}"),
                &[
                    "serve",
                    "echo",
                    "-r",
                    &asap,
                    "--no-announces",
                    "--listen",
                    &listen,
                ],
                &log,
            );
            let id = proc.registered_pe("did not register", Duration::from_secs(20));
            pes.push((id, proc));
        }
        let all: BTreeSet<String> = pes.iter().map(|(id, _)| id.clone()).collect();
        let view = |i: usize| homes(&dump_in(lan.ns(i), &regs[i - 1].admin));
        let ids_of = |h: &BTreeMap<(String, String), String>| -> BTreeSet<String> {
            h.keys().map(|(_, id)| id.clone()).collect()
        };
        wait_until(
            "every registrar to hold the 3 PEs",
            Duration::from_secs(20),
            || (1..=3).all(|i| ids_of(&view(i)) == all),
        );

        // Cut R1 (and PE 1) off.
        lan.cut(1);
        let cut = Instant::now();
        // Each side serves its own PEs: R1 keeps PE 1; R2 and R3 keep PEs 2 and 3.
        wait_until(
            "R2 and R3 to notice R1 is gone",
            Duration::from_secs(30),
            || {
                let d2 = dump_in(lan.ns(2), &regs[1].admin);
                !active_peers(&d2).contains(&regs[0].id)
            },
        );
        println!("figure: partition noticed after {:?}", cut.elapsed());
        std::thread::sleep(Duration::from_secs(3));
        let own = |i: usize| pes[i - 1].0.clone();
        assert!(ids_of(&view(1)).contains(&own(1)), "R1 lost its own PE");
        for i in [2, 3] {
            let v = ids_of(&view(i));
            assert!(
                v.contains(&own(2)) && v.contains(&own(3)),
                "R{i} lost a PE of its side: {v:?}"
            );
        }
        let resolve_in = |i: usize| {
            let out = lan
                .ns(i)
                .command(&[
                    "resolve",
                    "EchoPool",
                    "-r",
                    &format!("tcp://{}:3863", Lan::addr(i)),
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(resolve_in(1).contains(&own(1)), "R1 does not hand out PE 1");
        assert!(resolve_in(3).contains(&own(3)), "R3 does not hand out PE 3");

        // Heal: the three converge on one handlespace, every PE once, homes agreed.
        lan.heal(1);
        let healed = Instant::now();
        wait_until(
            "the handlespaces to converge after the partition",
            Duration::from_secs(60),
            || {
                let v: Vec<_> = (1..=3).map(view).collect();
                ids_of(&v[0]) == all && v[0] == v[1] && v[1] == v[2]
            },
        );
        println!("figure: converged {:?} after the heal", healed.elapsed());
        // And stays so (no PE removed afterwards by a late keep-alive failure).
        std::thread::sleep(Duration::from_secs(3));
        let v: Vec<_> = (1..=3).map(view).collect();
        assert!(
            ids_of(&v[0]) == all && v[0] == v[1] && v[1] == v[2],
            "{v:?}"
        );
        drop(pes);
        for r in &mut regs {
            r.proc.terminate();
            r.proc.wait_exit(Duration::from_secs(10));
        }
        dissect_as("enrp", &dir, &log, |l| l.starts_with("tx.enrp."), |_| false);
    });
}

// ----------------------------------------------------------------------------------------
// Bad input on the ENRP port

fn pe(id: u32, policy: Policy, port: u16) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(0),
        registration_life: 60_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(port, "10.0.0.1".parse().unwrap())),
        policy,
        asap_transport: None,
    }
}

/// The ENRP counter `what` of a dump (0 when absent).
fn enrp_counter(doc: &Value, what: &str) -> u64 {
    doc["enrp"]["counters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["what"] == what))
        .and_then(|c| c["count"].as_u64())
        .unwrap_or(0)
}

fn server_id(hex: &str) -> ServerId {
    ServerId(u32::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap())
}

/// Through real sockets on the ENRP port: garbage, a presence claiming the registrar's
/// own server ID, a message from an unknown server (accepted as a peer by default and
/// asked for a presence, per RFC 5353 §2.4; dropped with --peer-only-listed), a handle
/// update whose policy conflicts with the pool's, an unsolicited handle table response
/// of 100,000 PEs in pieces, an INIT_TAKEOVER targeting the registrar itself. Each gets
/// the core's answer; the registrar stays up and its handlespace stays as it was.
#[test]
fn bad_input_on_the_enrp_port_gets_answers_and_loses_nothing() {
    bounded(Duration::from_secs(240), || {
        let dir = scratch("enrp-bad");
        let log = dir.join("wire.log");
        let mut r = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--enrp-listen",
                "tcp://127.0.0.1:0",
                "--keepalive-interval",
                "0",
                "--keepalive-timeout",
                "2s",
                "--heartbeat-cycle",
                "30s",
                "--max-time-last-heard",
                "10m",
            ],
        );
        let enrp = r.enrp.clone().unwrap();
        let own = server_id(&r.id);
        register_many(&r.asap, "Guarded", 1..=5);
        let baseline = handlespace(&dump(&r.admin));
        assert_eq!(baseline.len(), 5);
        let intact = |r: &mut Registrar, after: &str| {
            assert!(
                r.proc.child.try_wait().unwrap().is_none(),
                "the registrar died after {after}"
            );
            assert_eq!(
                handlespace(&dump(&r.admin)),
                baseline,
                "the handlespace changed after {after}"
            );
        };
        let quiet = Duration::from_millis(500);

        // Garbage: a presence cut short gets an ENRP_ERROR; bytes that are no message
        // at all (a length below the header's) end the connection.
        let mut c = Raw::connect(&enrp);
        c.send(&[0x01, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01]);
        match c.recv_enrp() {
            Some(EnrpMessage::Error { error, .. }) => {
                println!("garbage answered with {:?}", error.causes)
            }
            other => panic!("a truncated presence got {other:?}"),
        }
        let mut c = Raw::connect(&enrp);
        c.send(&[0xde, 0xad, 0x00, 0x02, 0xbe, 0xef, 0xbe, 0xef]);
        assert!(c.recv_enrp().is_none(), "the connection stays open");
        intact(&mut r, "garbage");

        // A presence claiming our own server ID: dropped, nothing answered, counted.
        let mut c = Raw::connect(&enrp);
        c.send_enrp(&EnrpMessage::Presence {
            reply_required: true,
            sender: own,
            receiver: own,
            checksum: Some(0),
            server_info: None,
        });
        assert_eq!(c.recv_enrp_until(quiet, |_| true), None);
        assert_eq!(enrp_counter(&dump(&r.admin), "own-id claims dropped"), 1);
        intact(&mut r, "a presence with our own server ID");

        // An unknown server: RFC 5353 §2.4 adds it and asks for a presence (R = 1).
        // (Its presence carries no checksum, so no audit asks it for its handle table;
        // the registrar's timers are slow enough not to find it dead meanwhile.)
        let me = ServerId(0x0bad_0001);
        let mut c = Raw::connect(&enrp);
        c.send_enrp(&EnrpMessage::Presence {
            reply_required: false,
            sender: me,
            receiver: ServerId(0),
            checksum: None,
            server_info: None,
        });
        match c.recv_enrp_until(Duration::from_secs(5), |m| {
            matches!(m, EnrpMessage::Presence { .. })
        }) {
            Some(EnrpMessage::Presence {
                reply_required,
                sender,
                receiver,
                ..
            }) => {
                assert!(reply_required, "no R flag");
                assert_eq!((sender, receiver), (own, me));
            }
            other => panic!("an unknown server got {other:?}"),
        }
        let listed = dump(&r.admin);
        assert!(
            listed["enrp"]["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| server_id(p["server_id"].as_str().unwrap()) == me),
            "{}",
            listed["enrp"]
        );

        // A handle update whose policy conflicts with the pool's: ENRP_ERROR 0x5.
        c.send_enrp(&EnrpMessage::HandleUpdate {
            takeover: false,
            sender: me,
            receiver: own,
            action: UpdateAction::ADD_PE,
            handle: PoolHandle::from("Guarded"),
            pe: pe(0x77, Policy::LeastUsed { load: 0 }, 5000),
        });
        match c.recv_enrp_until(Duration::from_secs(5), |m| {
            matches!(m, EnrpMessage::Error { .. })
        }) {
            Some(EnrpMessage::Error { error, .. }) => assert_eq!(
                error.causes.first().map(|c| c.code),
                Some(CauseCode::INCONSISTENT_POLICY),
                "{error:?}"
            ),
            other => panic!("a conflicting update got {other:?}"),
        }
        intact(&mut r, "a handle update with a conflicting policy");

        // A handle table response nobody asked for, 100,000 PEs in 200 pieces: dropped
        // piece by piece, counted; nothing merged.
        let pieces = 200u32;
        let per = 500u32;
        let sent = Instant::now();
        for piece in 0..pieces {
            let pes = (0..per)
                .map(|k| pe(1_000_000 + piece * per + k, Policy::RoundRobin, 6000))
                .collect();
            c.send_enrp(&EnrpMessage::HandleTableResponse {
                reject: false,
                more: piece + 1 < pieces,
                sender: me,
                receiver: own,
                pools: vec![PoolEntry {
                    handle: PoolHandle::from("Flood"),
                    pes,
                }],
            });
        }
        wait_until(
            "every unsolicited piece to be counted",
            Duration::from_secs(60),
            || enrp_counter(&dump(&r.admin), "unsolicited responses dropped") == u64::from(pieces),
        );
        println!(
            "figure: 100,000 unsolicited PEs in {pieces} pieces dropped in {:?}",
            sent.elapsed()
        );
        intact(&mut r, "an unsolicited handle table response");

        // INIT_TAKEOVER naming the registrar itself: it says it is alive (a presence),
        // acknowledges nothing and keeps its PEs.
        c.send_enrp(&EnrpMessage::InitTakeover {
            sender: me,
            receiver: own,
            target: own,
        });
        match c.recv_enrp_until(Duration::from_secs(5), |_| true) {
            Some(EnrpMessage::Presence { sender, .. }) => assert_eq!(sender, own),
            other => panic!("a takeover of the registrar itself got {other:?}"),
        }
        assert_eq!(
            c.recv_enrp_until(quiet, |m| matches!(m, EnrpMessage::InitTakeoverAck { .. })),
            None,
            "the registrar acknowledged its own takeover"
        );
        assert_eq!(
            enrp_counter(&dump(&r.admin), "takeovers of this registrar announced"),
            1
        );
        intact(&mut r, "an INIT_TAKEOVER targeting the registrar");
        drop(c);

        // With --peer-only-listed an unknown server is dropped, unanswered.
        let strict = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--enrp-listen", "tcp://127.0.0.1:0", "--peer-only-listed"],
        );
        let mut c = Raw::connect(strict.enrp.as_ref().unwrap());
        c.send_enrp(&EnrpMessage::HandleUpdate {
            takeover: false,
            sender: me,
            receiver: server_id(&strict.id),
            action: UpdateAction::ADD_PE,
            handle: PoolHandle::from("Sneaky"),
            pe: pe(0x78, Policy::RoundRobin, 5001),
        });
        assert_eq!(c.recv_enrp_until(quiet, |_| true), None);
        let d = dump(&strict.admin);
        assert_eq!(
            enrp_counter(&d, "unlisted senders dropped"),
            1,
            "{}",
            d["enrp"]
        );
        assert!(handlespace(&d).is_empty());
        assert!(d["enrp"]["peers"].as_array().unwrap().is_empty());
        drop(strict);

        r.proc.terminate();
        r.proc.wait_exit(Duration::from_secs(10));
        // The ENRP_ERROR answering garbage quotes it (cause 0x2): Wireshark dissects the
        // quoted garbage and flags it, so that one is checked by the lint alone (as for
        // ASAP in e2e.rs).
        let quotes_garbage = |l: &str| {
            let hex = l.split_once('=').map_or("", |(_, h)| h);
            hex.starts_with("0a") && hex.get(32..36) == Some("0002")
        };
        let names = dissect_as(
            "enrp",
            &dir,
            &log,
            |l| l.starts_with("tx.enrp."),
            quotes_garbage,
        );
        assert!(
            names.contains("ENRP_ERROR") && names.contains("ENRP_PRESENCE"),
            "{names:?}"
        );
    });
}

// ----------------------------------------------------------------------------------------
// Benchmarks (ignored by default; figures, not assertions on speed):
// cargo test --release -p rsp --test enrp -- --ignored --nocapture --test-threads=1

/// `n` PEs registered at a registrar over one connection whose local port is also a
/// listening port (SO_REUSEPORT, as our PEs do): the ASAP endpoint a registrar taking
/// them over connects to. Every keep-alive on any connection is acknowledged; the time
/// each PE first acknowledged a keep-alive with H = 1 is recorded.
struct PeHost {
    rehomed: std::sync::Arc<std::sync::Mutex<BTreeMap<u32, Instant>>>,
}

impl PeHost {
    fn start(asap: &str, pool: &str, n: u32) -> PeHost {
        use socket2::{Domain, Socket, Type};
        use std::net::{SocketAddr, TcpListener, TcpStream};
        let reusable = || {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_reuse_address(true).unwrap();
            s.set_reuse_port(true).unwrap();
            s
        };
        let l = reusable();
        l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        l.listen(64).unwrap();
        let local = l.local_addr().unwrap().as_socket().unwrap();
        let listener: TcpListener = l.into();
        let c = reusable();
        c.bind(&local.into()).unwrap();
        let to: SocketAddr = asap.trim_start_matches("tcp://").parse().unwrap();
        c.connect(&to.into()).unwrap();
        let stream: TcpStream = c.into();
        let mut raw = Raw {
            s: stream,
            d: rserpool_wire::framing::Deframer::default(),
        };
        for batch in (1..=n).collect::<Vec<_>>().chunks(500) {
            let mut bytes = Vec::new();
            for id in batch {
                let mut m = registration(
                    pool.as_bytes(),
                    *id,
                    Policy::RoundRobin,
                    1024 + (*id % 60000) as u16,
                );
                if let rserpool_wire::AsapMessage::Registration { pe, .. } = &mut m {
                    pe.registration_life = 3_600_000;
                }
                bytes.extend(m.encode_to_vec());
            }
            raw.send(&bytes);
            for _ in batch {
                match raw.recv() {
                    Some(rserpool_wire::AsapMessage::RegistrationResponse {
                        reject: false,
                        ..
                    }) => {}
                    Some(rserpool_wire::AsapMessage::EndpointKeepAlive { .. }) => {}
                    other => panic!("registration not accepted: {other:?}"),
                }
            }
        }
        let rehomed = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let ack = |raw: Raw, rehomed: std::sync::Arc<std::sync::Mutex<BTreeMap<u32, Instant>>>| {
            std::thread::spawn(move || {
                let mut raw = raw;
                raw.s.set_read_timeout(None).unwrap();
                while let Some(m) = raw.recv_any() {
                    if let rserpool_wire::AsapMessage::EndpointKeepAlive {
                        home,
                        handle,
                        pe_id: Some(id),
                        ..
                    } = m
                    {
                        let ack =
                            rserpool_wire::AsapMessage::EndpointKeepAliveAck { handle, pe_id: id };
                        if std::io::Write::write_all(&mut raw.s, &ack.encode_to_vec()).is_err() {
                            return;
                        }
                        if home {
                            rehomed
                                .lock()
                                .unwrap()
                                .entry(id.0)
                                .or_insert_with(Instant::now);
                        }
                    }
                }
            });
        };
        ack(raw, rehomed.clone());
        let r2 = rehomed.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                ack(
                    Raw {
                        s,
                        d: rserpool_wire::framing::Deframer::default(),
                    },
                    r2.clone(),
                );
            }
        });
        PeHost { rehomed }
    }
}

impl Raw {
    /// The next ASAP message; `None` when the connection closed or broke.
    fn recv_any(&mut self) -> Option<rserpool_wire::AsapMessage> {
        use std::io::Read;
        loop {
            if let Some(m) = self.d.next_message().ok()? {
                return rserpool_wire::AsapMessage::decode(m)
                    .ok()
                    .map(|d| d.message);
            }
            let mut buf = [0u8; 65536];
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.d.push(&buf[..n]),
            }
        }
    }
}

fn takeover_figure(timers: &[&str], label: &str) {
    let dir = scratch(&format!("enrp-bench-takeover-{label}"));
    let log = dir.join("wire.log");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut regs: Vec<Registrar> = (0..3)
        .map(|i| {
            let mut args: Vec<String> = vec![
                "registrar".into(),
                "--listen".into(),
                "tcp://127.0.0.1:0".into(),
                "--admin".into(),
                "127.0.0.1:0".into(),
                "--announce=false".into(),
                "--keepalive-interval".into(),
                "5s".into(),
                "--max-pes-per-source".into(),
                "0".into(),
                "--enrp-listen".into(),
                format!("tcp://127.0.0.1:{}", ports[i]),
            ];
            for (_, p) in ports.iter().enumerate().filter(|(j, _)| *j != i) {
                args.push("--peer".into());
                args.push(format!("tcp://127.0.0.1:{p}"));
            }
            args.extend(timers.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // No wire log: 1,000 PEs' keep-alives would dominate the run.
            registrar_with(&args, &log, &[("RSERPOOL_WIRE_LOG", "")])
        })
        .collect();
    let ids: Vec<String> = regs.iter().map(|r| r.id.clone()).collect();
    for r in &regs {
        wait_until("the pool to form", Duration::from_secs(60), || {
            let d = dump(&r.admin);
            active_peers(&d).len() == 2 && phase(&d) == "serving"
        });
    }
    let n = 1000;
    let host = PeHost::start(&regs[0].asap, "Bench", n);
    for r in &regs[1..] {
        wait_until("the PEs replicated", Duration::from_secs(60), || {
            homes(&dump(&r.admin))
                .values()
                .filter(|h| **h == ids[0])
                .count()
                == n as usize
        });
    }
    regs[0].proc.kill9();
    let killed = Instant::now();
    wait_until(
        "every PE to acknowledge its new home",
        Duration::from_secs(120),
        || host.rehomed.lock().unwrap().len() == n as usize,
    );
    let last = *host.rehomed.lock().unwrap().values().max().unwrap();
    let first = *host.rehomed.lock().unwrap().values().min().unwrap();
    wait_until(
        "both dumps to agree on the new home",
        Duration::from_secs(60),
        || {
            let h2 = homes(&dump(&regs[1].admin));
            let h3 = homes(&dump(&regs[2].admin));
            h2.len() == n as usize && h2 == h3 && h2.values().all(|h| *h != ids[0])
        },
    );
    println!(
        "figure: takeover ({label}): {n} PEs re-homed {:?} after kill -9 (first {:?})",
        last.duration_since(killed),
        first.duration_since(killed)
    );
}

#[test]
#[ignore = "benchmark"]
fn bench_takeover_of_1000_pes() {
    takeover_figure(
        &[
            "--heartbeat-cycle",
            "200ms",
            "--max-time-last-heard",
            "500ms",
            "--max-time-no-response",
            "300ms",
            "--takeover-expiry",
            "1s",
            "--mentor-discovery-timeout",
            "500ms",
        ],
        "200ms heartbeat",
    );
    takeover_figure(&[], "default timers");
}

#[test]
#[ignore = "benchmark"]
fn bench_sync_of_100000_pes_from_a_mentor() {
    let dir = scratch("enrp-bench-sync");
    let log = dir.join("wire.log");
    let ports = [free_port(), free_port()];
    let member = |i: usize, extra: &[&str]| {
        let enrp = format!("tcp://127.0.0.1:{}", ports[i]);
        let peer = format!("tcp://127.0.0.1:{}", ports[1 - i]);
        let mut args = vec![
            "registrar",
            "--listen",
            "tcp://127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--announce=false",
            "--keepalive-interval",
            "0",
            "--max-pes-per-source",
            "0",
            "--max-pes-per-connection",
            "0",
            "--max-registration-rate",
            "0",
            "--enrp-listen",
            &enrp,
            "--peer",
            &peer,
        ];
        args.extend_from_slice(extra);
        registrar_with(&args, &log, &[("RSERPOOL_WIRE_LOG", "")])
    };
    let r1 = member(0, &["--mentor-discovery-timeout", "0"]);
    let n = 100_000u32;
    let t = Instant::now();
    {
        // Registrations with a long life over one connection (closed afterwards; the
        // PEs stay).
        let mut c = Raw::connect(&r1.asap);
        for batch in (1..=n).collect::<Vec<_>>().chunks(1000) {
            let mut bytes = Vec::new();
            for id in batch {
                let mut m =
                    registration(b"Big", *id, Policy::RoundRobin, 1024 + (*id % 60000) as u16);
                if let rserpool_wire::AsapMessage::Registration { pe, .. } = &mut m {
                    pe.registration_life = 3_600_000;
                }
                bytes.extend(m.encode_to_vec());
            }
            c.send(&bytes);
            for _ in batch {
                assert!(matches!(
                    c.recv(),
                    Some(rserpool_wire::AsapMessage::RegistrationResponse { reject: false, .. })
                ));
            }
        }
    }
    println!("(registered {n} PEs in {:?})", t.elapsed());
    let r2 = member(1, &[]);
    let started = Instant::now();
    r2.proc
        .err
        .wait(0, Instant::now() + Duration::from_secs(120), |l| {
            l.contains("synchronised with mentor")
        })
        .unwrap_or_else(|| r2.proc.fail("no synchronisation"));
    let took = started.elapsed();
    let d = dump(&r2.admin);
    assert_eq!(d["pe_count"], n);
    assert_eq!(phase(&d), "serving");
    println!("figure: a new registrar synchronised {n} PEs from its mentor in {took:?} (from its startup line)");
}

/// SIGHUP: the ENRP timers and the static peer list apply at once; the listeners need a
/// restart (and the reload says so).
#[test]
fn sighup_applies_enrp_timers_and_names_what_needs_a_restart() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("enrp-hup");
        let log = dir.join("wire.log");
        let cfg = dir.join("registrar.toml");
        let (p1, p2) = (free_port(), free_port());
        std::fs::write(
            &cfg,
            format!(
                "heartbeat_cycle = \"1s\"\npeer = [\"tcp://127.0.0.1:{p1}\"]\n\
                 presence_group = \"off\"\n"
            ),
        )
        .unwrap();
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--enrp-listen",
                "tcp://127.0.0.1:0",
                "--mentor-discovery-timeout",
                "0",
            ],
        );
        std::fs::write(
            &cfg,
            format!(
                "heartbeat_cycle = \"2s\"\ntakeover_election = \"highest\"\n\
                 peer = [\"tcp://127.0.0.1:{p1}\", \"tcp://127.0.0.1:{p2}\"]\n\
                 presence_group = \"on\"\n"
            ),
        )
        .unwrap();
        let from = reg.proc.err.lines.lock().unwrap().len();
        send_signal(&reg.proc, "HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        let (_, applied) = reg
            .proc
            .err
            .wait(from, deadline, |l| l.contains("configuration reloaded"))
            .unwrap_or_else(|| reg.proc.fail("no reload line"));
        assert!(
            applied.contains("heartbeat_cycle \"1s\" -> \"2s\"")
                && applied.contains("takeover_election \"lowest\" -> \"highest\""),
            "{applied}"
        );
        assert!(applied.contains(&format!("127.0.0.1:{p2}")), "{applied}");
        let (_, restart) = reg
            .proc
            .err
            .wait(from, deadline, |l| l.contains("after a restart"))
            .unwrap_or_else(|| reg.proc.fail("no restart warning"));
        assert!(restart.contains("presence_group"), "{restart}");
        // The new peer list is in force: two peers, not one.
        let d = dump(&reg.admin);
        assert_eq!(
            d["enrp"]["peers"].as_array().unwrap().len(),
            2,
            "{}",
            d["enrp"]
        );
    });
}

/// Two registrars with no peer list find each other through the presence multicast group
/// (in a namespace of their own, so the group stays private) and share a PE.
#[test]
fn the_presence_group_finds_peers_without_a_list() {
    bounded(Duration::from_secs(120), || {
        let Some(ns) = Netns::new("enrp-mcast") else {
            return;
        };
        let dir = scratch("enrp-mcast");
        let log = dir.join("wire.log");
        let regs: Vec<Registrar> = (0..2)
            .map(|i| {
                let asap = format!("tcp://127.0.0.1:{}", 3863 + i);
                let enrp = format!("tcp://127.0.0.1:{}", 9901 + i);
                let mut args = vec![
                    "registrar",
                    "--listen",
                    &asap,
                    "--enrp-listen",
                    &enrp,
                    "--admin",
                    "127.0.0.1:0",
                    "--announce=false",
                    "--presence-group",
                    "on",
                ];
                args.extend_from_slice(&FAST);
                Registrar::started(ns.spawn(&format!("registrar {i}"), &args, &log))
            })
            .collect();
        let dump_ns = |r: &Registrar| dump_in(&ns, &r.admin);
        for (i, r) in regs.iter().enumerate() {
            let other = regs[1 - i].id.clone();
            wait_until(
                "each registrar to find the other on the presence group",
                Duration::from_secs(20),
                || active_peers(&dump_ns(r)).contains(&other),
            );
        }
        let pe = ns.spawn(
            "pe",
            &[
                "serve",
                "echo",
                "-r",
                &regs[0].asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        pe.stdout_line("did not register", Duration::from_secs(20), |l| {
            l.starts_with("registered ")
        });
        wait_until(
            "the PE at the second registrar",
            Duration::from_secs(10),
            || homes(&dump_ns(&regs[1])).values().any(|h| *h == regs[0].id),
        );
        drop(pe);
        drop(regs);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("tx.enrp.") && l.contains("udp-"))
                || text.lines().any(|l| l.contains("udp:")),
            "no presence sent to the group"
        );
        dissect_as("enrp", &dir, &log, |l| l.starts_with("tx.enrp."), |_| false);
    });
}
