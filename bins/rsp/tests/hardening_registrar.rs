//! The registrar against valid ASAP messages used as attacks (issue 8), through real
//! sockets: a real `rsp registrar`, real `rsp serve echo` pool elements and raw attacker
//! connections. Each test reproduces one attack and shows it fails:
//!
//! * PE hijack by identifier reuse (and a PE that lost its connection still gets its
//!   identifier back),
//! * forged ENDPOINT_UNREACHABLE reports (a healthy pool stays; a hung PE still goes),
//! * unusable addresses and lifetimes,
//! * PE quotas per connection, per source address and per pool.
//!
//! Every wait has a deadline (conditions are polled, never timed); every test ends by
//! dissecting its wire log with Wireshark's ASAP dissector.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use rserpool_wire::{
    codec, AsapMessage, CauseCode, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr,
    TransportUse, UserTransport,
};
use serde_json::Value;
use support::*;

// ----------------------------------------------------------------------------------------
// Helpers

fn pe_msg(pool: &str, id: u32, user: UserTransport, life: u32) -> AsapMessage {
    AsapMessage::Registration {
        handle: PoolHandle::from(pool),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: life,
            user_transport: user,
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
}

fn tcp_at(addr: &str) -> UserTransport {
    let a: SocketAddr = addr.parse().unwrap();
    UserTransport::Ip(TransportAddr::tcp(a.port(), a.ip()))
}

/// The answer to a registration: acknowledges keep-alives on the way. Ok(()) accepted,
/// Err((cause, info)) refused.
fn registration_answer(c: &mut Raw) -> Result<(), (CauseCode, Vec<u8>)> {
    loop {
        match c.recv() {
            Some(AsapMessage::RegistrationResponse { reject, error, .. }) => {
                if !reject {
                    return Ok(());
                }
                let e = error.expect("a refusal carries an error");
                return Err((e.causes[0].code, e.causes[0].info.clone()));
            }
            Some(AsapMessage::EndpointKeepAlive {
                handle,
                pe_id: Some(pe_id),
                ..
            }) => c.send_msg(&AsapMessage::EndpointKeepAliveAck { handle, pe_id }),
            Some(_) => {}
            None => panic!("the registrar closed the connection"),
        }
    }
}

fn register(c: &mut Raw, m: &AsapMessage) -> Result<(), (CauseCode, Vec<u8>)> {
    c.send_msg(m);
    registration_answer(c)
}

/// Handle resolution on a fresh connection: the PEs' user addresses, or the error cause.
fn resolve_addrs(asap: &str, pool: &str) -> Result<Vec<SocketAddr>, CauseCode> {
    let mut c = Raw::connect(asap);
    c.send_msg(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: Some(u32::MAX),
    });
    match c.recv() {
        Some(AsapMessage::HandleResolutionResponse {
            pes, error: None, ..
        }) => Ok(pes
            .iter()
            .filter_map(|p| p.user_transport.as_ip())
            .map(|t| SocketAddr::new(t.addrs[0], t.port))
            .collect()),
        Some(AsapMessage::HandleResolutionResponse { error: Some(e), .. }) => {
            Err(e.first_code().unwrap())
        }
        other => panic!("expected a handle resolution response, got {other:?}"),
    }
}

/// A non-loopback IPv4 address of this host, if it has one.
fn local_non_loopback_v4() -> Option<IpAddr> {
    for probe in ["192.0.2.1:9", "198.51.100.1:9", "8.8.8.8:53"] {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        if s.connect(probe).is_ok() {
            if let Ok(a) = s.local_addr() {
                if !a.ip().is_loopback() && !a.ip().is_unspecified() {
                    return Some(a.ip());
                }
            }
        }
    }
    None
}

fn parse_pe_id(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// `rsp serve echo` on 127.0.0.1 with a chosen PE identifier.
fn start_echo_with_id(registrar: &str, pe_id: u32, wire_log: &std::path::Path) -> Server {
    let id = format!("{pe_id:#x}");
    let args = [
        "serve",
        "echo",
        "-r",
        registrar,
        "--no-announces",
        "--listen",
        "127.0.0.1:0",
        "--pe-id",
        &id,
    ];
    let proc = Proc::spawn("serve echo", &args, wire_log);
    let line = proc.stdout_line("did not register", Duration::from_secs(20), |l| {
        l.starts_with("registered ")
    });
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    Server {
        entries: vec![(field("pe="), field("addr="))],
        proc,
    }
}

/// `protections` of a dump as (what, count).
fn protections(doc: &Value) -> Vec<(String, u64)> {
    doc["protections"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["what"].as_str().unwrap().to_owned(),
                        p["count"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Count one answer of a resolution flood: answered with PEs, or limited by the
/// per-source rate (Unknown Pool Handle, 0x9); anything else fails the test.
fn tally(answer: Option<AsapMessage>, answered: &mut u32, limited: &mut u32) {
    match answer {
        Some(AsapMessage::HandleResolutionResponse {
            error: None, pes, ..
        }) if !pes.is_empty() => *answered += 1,
        Some(AsapMessage::HandleResolutionResponse { error: Some(e), .. })
            if e.causes
                .iter()
                .any(|c| c.code == CauseCode::UNKNOWN_POOL_HANDLE) =>
        {
            *limited += 1
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

fn pe_doc(doc: &Value, pool: &str, id: &str) -> Option<Value> {
    doc["pools"]
        .as_array()?
        .iter()
        .filter(|p| p["handle"] == pool)
        .flat_map(|p| p["pes"].as_array().cloned().unwrap_or_default())
        .find(|pe| pe["id"] == id)
}

fn wait_for_log(p: &Proc, what: &str, needle: &str) {
    if p.err
        .wait(
            0,
            std::time::Instant::now() + Duration::from_secs(10),
            |l| l.contains(needle),
        )
        .is_none()
    {
        p.fail(what);
    }
}

/// Dissect everything our processes sent and received.
fn dissect_all(dir: &std::path::Path, log: &std::path::Path) -> std::collections::BTreeSet<String> {
    dissect(dir, log, |_| true, |_| false)
}

// ----------------------------------------------------------------------------------------
// Item 1: PE hijack by identifier reuse

#[test]
fn identifier_reuse_cannot_hijack_a_live_pe() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("hijack");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let pe = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let (id_text, addr_text) = pe.entries[0].clone();
        let real: SocketAddr = addr_text.trim_start_matches("tcp://").parse().unwrap();
        wait_until("the PE in the dump", Duration::from_secs(10), || {
            pe_doc(&dump(&reg.admin), "EchoPool", &id_text).is_some()
        });

        // The attacker re-registers the live PE's identifier with its own address.
        let mut attacker = Raw::connect(&reg.asap);
        let claim = pe_msg(
            "EchoPool",
            parse_pe_id(&id_text),
            tcp_at("127.0.0.66:9"),
            30_000,
        );
        let answer = register(&mut attacker, &claim);
        assert_eq!(
            answer.map_err(|(c, _)| c),
            Err(CauseCode::REJECTED_SECURITY),
            "the claim must be refused: the real PE answered its probe"
        );
        // Every resolution still names the real PE.
        for _ in 0..6 {
            assert_eq!(resolve_addrs(&reg.asap, "EchoPool"), Ok(vec![real]));
        }
        // Trying again and again changes nothing.
        for _ in 0..5 {
            assert!(register(&mut attacker, &claim).is_err());
        }
        // The real PE's keep-alive answers still count: it stays through several rounds.
        let doc = dump(&reg.admin);
        let age = pe_doc(&doc, "EchoPool", &id_text).unwrap()["age_ms"]
            .as_u64()
            .unwrap();
        wait_until(
            "three keep-alive rounds after the attack",
            Duration::from_secs(20),
            || {
                let doc = dump(&reg.admin);
                let pe = pe_doc(&doc, "EchoPool", &id_text).expect("the real PE stays");
                pe["age_ms"].as_u64().unwrap() > age + 1500
                    && pe["last_keepalive_ack_ms"].as_u64().unwrap() < 1000
            },
        );
        assert_eq!(resolve_addrs(&reg.asap, "EchoPool"), Ok(vec![real]));
        let doc = dump(&reg.admin);
        assert!(
            protection(&doc, "registrations refused: PE identifier in use") >= 6,
            "{:?}",
            protections(&doc)
        );
        wait_for_log(
            &reg.proc,
            "no log line saying why the claim was refused",
            "registration rejected: the PE identifier is registered over another live connection",
        );
        wait_for_log(
            &reg.proc,
            "no log line about probing the holder",
            "probing its holder",
        );
        let names = dissect_all(&dir, &log);
        assert!(names.contains("ASAP_REGISTRATION_RESPONSE"), "{names:?}");
        drop(pe);
    });
}

#[test]
fn a_pe_whose_connection_died_gets_its_identifier_back() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("reclaim");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);

        // kill -9: the kernel closes the connection; a new process re-registers the
        // identifier at once.
        let id = 0x5e5e_0001;
        let id_text = format!("{id:#010x}");
        let mut first = start_echo_with_id(&reg.asap, id, &log);
        first.proc.kill9();
        let second = start_echo_with_id(&reg.asap, id, &log);
        assert_eq!(second.entries[0].0, id_text);
        let second_addr: SocketAddr = second.entries[0]
            .1
            .trim_start_matches("tcp://")
            .parse()
            .unwrap();
        wait_until(
            "the new address in resolutions",
            Duration::from_secs(10),
            || resolve_addrs(&reg.asap, "EchoPool") == Ok(vec![second_addr]),
        );

        // A connection that went silent (still open, no keep-alive answers): a new
        // connection's registration waits for the probe of the old one, then wins.
        let mut old = Raw::connect(&reg.asap);
        let m = pe_msg("SilentPool", 0x77, tcp_at("127.0.0.1:7777"), 30_000);
        old.send_msg(&m);
        match old.recv() {
            Some(AsapMessage::RegistrationResponse { reject: false, .. }) => {}
            other => panic!("expected an acceptance, got {other:?}"),
        }
        let mut new = Raw::connect(&reg.asap);
        let m = pe_msg("SilentPool", 0x77, tcp_at("127.0.0.1:7778"), 30_000);
        assert_eq!(register(&mut new, &m), Ok(()));
        assert_eq!(
            resolve_addrs(&reg.asap, "SilentPool"),
            Ok(vec!["127.0.0.1:7778".parse().unwrap()])
        );
        // The old connection closed: a third connection takes the identifier at once.
        drop(new);
        let mut third = Raw::connect(&reg.asap);
        let m = pe_msg("SilentPool", 0x77, tcp_at("127.0.0.1:7779"), 30_000);
        wait_until(
            "the closed connection noticed",
            Duration::from_secs(10),
            || register(&mut third, &m).is_ok(),
        );
        assert_eq!(
            resolve_addrs(&reg.asap, "SilentPool"),
            Ok(vec!["127.0.0.1:7779".parse().unwrap()])
        );
        dissect_all(&dir, &log);
        drop(second);
    });
}

// ----------------------------------------------------------------------------------------
// Item 2: forged unreachability reports

#[test]
fn forged_unreachable_reports_do_not_empty_a_pool() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("reports");
        let log = dir.join("wire.log");
        // Keep-alives only when something asks for one: every probe is a report's.
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--keepalive-interval",
                "60s",
                "--keepalive-timeout",
                "2s",
                // Removals are counted in a summary line (per-PE lines are debug).
                "--log-summary-interval",
                "1s",
            ],
        );
        let mut pes: Vec<Server> = (0..2)
            .map(|_| start_echo(&reg.asap, &["127.0.0.1:0"], &log))
            .collect();
        let ids: Vec<u32> = pes.iter().map(|s| parse_pe_id(&s.entries[0].0)).collect();
        wait_until("2 PEs", Duration::from_secs(10), || {
            resolve_addrs(&reg.asap, "EchoPool").map(|a| a.len()) == Ok(2)
        });
        let report = |id: u32| AsapMessage::EndpointUnreachable {
            handle: "EchoPool".into(),
            pe_id: PeId(id),
        };

        // Reports from a connection that never resolved the pool: ignored.
        let mut forger = Raw::connect(&reg.asap);
        for _ in 0..10 {
            for id in &ids {
                forger.send_msg(&report(*id));
            }
        }
        // Reporters that did resolve, 100 rounds of them: every PE answers its probe and
        // every resolution in between still gets both PEs.
        for round in 0..100 {
            let mut pu = Raw::connect(&reg.asap);
            pu.send_msg(&AsapMessage::HandleResolution {
                subscribe: false,
                handle: "EchoPool".into(),
                items: None,
            });
            assert!(matches!(
                pu.recv(),
                Some(AsapMessage::HandleResolutionResponse { error: None, .. })
            ));
            for id in &ids {
                pu.send_msg(&report(*id));
                forger.send_msg(&report(*id));
            }
            let got = resolve_addrs(&reg.asap, "EchoPool").map(|a| a.len());
            assert_eq!(got, Ok(2), "round {round}: the pool lost a healthy PE");
        }
        let doc = dump(&reg.admin);
        assert_eq!(pe_ids(&doc, "EchoPool").len(), 2);
        assert_eq!(
            protection(&doc, "reports ignored: pool not resolved"),
            220,
            "{:?}",
            protections(&doc)
        );
        assert!(protection(&doc, "unreachability reports counted") > 0);
        assert!(protection(&doc, "probes sent for reports") > 0);
        assert!(!reg.proc.err.text().contains(" removed ("));

        // A PE that hangs (its connection stays open): one report, its probe goes
        // unanswered, the PE is removed as unreachable.
        let victim = pes.remove(0);
        let victim_id = victim.entries[0].0.clone();
        let stop = |sig: &str| {
            Command::new("kill")
                .args([sig, &victim.proc.pid().to_string()])
                .status()
                .unwrap()
        };
        assert!(stop("-STOP").success());
        // Report it until a probe goes (one per keep-alive timeout) and fails.
        wait_until("the hung PE removed", Duration::from_secs(20), || {
            let mut pu = Raw::connect(&reg.asap);
            pu.send_msg(&AsapMessage::HandleResolution {
                subscribe: false,
                handle: "EchoPool".into(),
                items: None,
            });
            pu.recv();
            pu.send_msg(&report(parse_pe_id(&victim_id)));
            std::thread::sleep(Duration::from_millis(200));
            !pe_ids(&dump(&reg.admin), "EchoPool").contains(&victim_id)
        });
        wait_for_log(
            &reg.proc,
            "the removal is not logged as unreachable",
            "removed (1 unreachable)",
        );
        assert_eq!(resolve_addrs(&reg.asap, "EchoPool").map(|a| a.len()), Ok(1));
        assert!(stop("-CONT").success());
        drop(victim);
        dissect_all(&dir, &log);
    });
}

// ----------------------------------------------------------------------------------------
// Item 3: unusable addresses and lifetimes

#[test]
fn unusable_addresses_and_lifetimes_are_refused() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("addresses");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://0.0.0.0:0", &log, &[]);
        let asap = reg.asap.replace("0.0.0.0", "127.0.0.1");
        let pe = start_echo(&asap, &["127.0.0.1:0"], &log);
        let real: SocketAddr = pe.entries[0]
            .1
            .trim_start_matches("tcp://")
            .parse()
            .unwrap();

        let mut c = Raw::connect(&asap);
        let sctp = |port: u16, use_field: u16, ip: &str| {
            UserTransport::Ip(TransportAddr::sctp(
                port,
                TransportUse(use_field),
                vec![ip.parse().unwrap()],
            ))
        };
        let cases: Vec<(&str, UserTransport)> = vec![
            ("EchoPool", tcp_at("127.0.0.1:0")),
            ("Bad1", tcp_at("0.0.0.0:80")),
            ("Bad2", tcp_at("255.255.255.255:80")),
            ("Bad3", tcp_at("224.0.0.1:80")),
            ("Bad4", tcp_at("[ff02::1]:80")),
            ("Bad5", sctp(80, 7, "127.0.0.1")),
        ];
        for (i, (pool, t)) in cases.iter().enumerate() {
            let m = pe_msg(pool, 0x100 + i as u32, t.clone(), 30_000);
            match register(&mut c, &m) {
                Err((code, info)) => {
                    assert_eq!(code, CauseCode::INVALID_VALUES, "{pool}");
                    assert_eq!(info, codec::user_transport_tlv(t), "{pool}: quotes the TLV");
                }
                Ok(()) => panic!("{pool}: {t:?} was accepted"),
            }
        }
        // Registration Life 0xFFFFFFFF (49 days in milliseconds): above the maximum.
        let m = pe_msg("Bad6", 0x200, tcp_at("127.0.0.1:80"), u32::MAX);
        let AsapMessage::Registration { pe: quoted, .. } = &m else {
            unreachable!()
        };
        assert_eq!(
            register(&mut c, &m),
            Err((CauseCode::INVALID_VALUES, codec::pool_element_tlv(quoted)))
        );
        for i in 1..=6 {
            assert_eq!(
                resolve_addrs(&asap, &format!("Bad{i}")),
                Err(CauseCode::UNKNOWN_POOL_HANDLE)
            );
        }
        assert_eq!(resolve_addrs(&asap, "EchoPool"), Ok(vec![real]));
        let doc = dump(&reg.admin);
        assert_eq!(
            protection(&doc, "registrations refused: unusable address"),
            6
        );
        assert_eq!(
            protection(&doc, "registrations refused: registration life"),
            1
        );
        wait_for_log(
            &reg.proc,
            "no log line saying why",
            "registration rejected: port 0 or an unspecified, broadcast, multicast or reserved address",
        );

        // Loopback addresses only from loopback: over a connection from another address
        // of this host they are refused, its own address is fine.
        if let Some(ip) = local_non_loopback_v4() {
            let mut outside = raw_from(&reg.asap, ip);
            let m = pe_msg("Outside", 0x300, tcp_at("127.0.0.1:80"), 30_000);
            assert_eq!(
                register(&mut outside, &m).map_err(|(c, _)| c),
                Err(CauseCode::INVALID_VALUES)
            );
            let m = pe_msg("Outside", 0x301, tcp_at(&format!("{ip}:80")), 30_000);
            assert_eq!(register(&mut outside, &m), Ok(()));
            wait_for_log(
                &reg.proc,
                "no log line saying why",
                "a loopback address registered from another host",
            );
        } else {
            eprintln!("no non-loopback IPv4 address: the loopback-from-elsewhere case is skipped");
        }
        drop(pe);

        // A minimum address scope: site-local refuses loopback and link-local addresses.
        let log2 = dir.join("wire2.log");
        let reg2 = start_registrar(
            "tcp://127.0.0.1:0",
            &log2,
            &["--min-address-scope", "site-local"],
        );
        let mut c = Raw::connect(&reg2.asap);
        for (addr, ok) in [
            ("127.0.0.1:80", false),
            ("169.254.1.1:80", false),
            ("10.1.2.3:80", true),
        ] {
            let m = pe_msg("ScopePool", 0x400, tcp_at(addr), 30_000);
            assert_eq!(register(&mut c, &m).is_ok(), ok, "{addr}");
        }
        let doc = dump(&reg2.admin);
        assert_eq!(protection(&doc, "registrations refused: address scope"), 2);
        dissect_all(&dir, &log);
        dissect_all(&dir, &log2);
    });
}

// ----------------------------------------------------------------------------------------
// Item 5: quotas

#[test]
fn pe_quotas_leave_room_for_everybody_else() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("quotas");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--max-pes",
                "100",
                "--max-pes-per-connection",
                "15",
                "--max-pes-per-source",
                "40",
                "--keepalive-interval",
                "60s",
                "--keepalive-timeout",
                "2s",
            ],
        );
        // The attacker (127.0.0.2) registers 20 PEs on each of three connections.
        let attacker: IpAddr = "127.0.0.2".parse().unwrap();
        let mut accepted = 0;
        let mut refused = 0;
        let mut conns = Vec::new();
        for k in 0..3u32 {
            let mut c = raw_from(&reg.asap, attacker);
            for i in 0..20u32 {
                let id = 1 + k * 20 + i;
                let m = pe_msg(
                    "EchoPool",
                    id,
                    tcp_at(&format!("127.0.0.2:{}", 1000 + id)),
                    30_000,
                );
                match register(&mut c, &m) {
                    Ok(()) => accepted += 1,
                    Err((code, _)) => {
                        assert_eq!(code, CauseCode::LACK_OF_RESOURCES);
                        refused += 1;
                    }
                }
            }
            // Re-registering an accepted PE does not count twice.
            let id = 1 + k * 20;
            let m = pe_msg(
                "EchoPool",
                id,
                tcp_at(&format!("127.0.0.2:{}", 1000 + id)),
                30_000,
            );
            assert_eq!(register(&mut c, &m), Ok(()));
            conns.push(c);
        }
        assert_eq!((accepted, refused), (40, 20));
        // A legitimate PE from another address still registers.
        let pe = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let real: SocketAddr = pe.entries[0]
            .1
            .trim_start_matches("tcp://")
            .parse()
            .unwrap();
        let addrs = resolve_addrs(&reg.asap, "EchoPool").unwrap();
        assert_eq!(addrs.len(), 41);
        assert!(addrs.contains(&real));
        let doc = dump(&reg.admin);
        assert_eq!(
            protection(&doc, "registrations refused: PEs per connection"),
            10
        );
        assert_eq!(
            protection(&doc, "registrations refused: PEs per source address"),
            10
        );
        for why in [
            "too many PEs on this connection",
            "too many PEs from this source address",
        ] {
            wait_for_log(&reg.proc, "no log line saying why", why);
        }
        drop(pe);

        // The per-pool cap is a setting too.
        let log2 = dir.join("wire2.log");
        let reg2 = start_registrar(
            "tcp://127.0.0.1:0",
            &log2,
            &[
                "--max-pes-per-pool",
                "2",
                "--keepalive-interval",
                "60s",
                "--keepalive-timeout",
                "2s",
            ],
        );
        let mut c = Raw::connect(&reg2.asap);
        for (pool, id, ok) in [
            ("PoolA", 1, true),
            ("PoolA", 2, true),
            ("PoolA", 3, false),
            ("PoolB", 4, true),
        ] {
            let m = pe_msg(
                pool,
                id,
                tcp_at(&format!("127.0.0.1:{}", 2000 + id)),
                30_000,
            );
            let got = register(&mut c, &m).map_err(|(c, _)| c);
            let want = if ok {
                Ok(())
            } else {
                Err(CauseCode::LACK_OF_RESOURCES)
            };
            assert_eq!(got, want, "{pool} {id}");
        }
        wait_for_log(&reg2.proc, "no log line saying why", "the pool is full");
        drop(conns);
        dissect_all(&dir, &log);
        dissect_all(&dir, &log2);
    });
}

/// The per-source resolution rate holds for answers from pool copies too (the readers
/// answer a pool user who waits for each answer without the core, and share the core's
/// token buckets): beyond a second's burst and the rate, Unknown Pool Handle (0x9).
#[test]
fn the_per_source_rate_holds_for_answers_from_pool_copies() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("hardening-rate-copies");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &dir.join("wire.log"),
            &["--max-hr-rate", "20"],
        );
        let mut pe = Raw::connect(&reg.asap);
        pe.send_msg(&registration(
            b"RatePool",
            1,
            rserpool_wire::Policy::RoundRobin,
            9,
        ));
        assert!(matches!(
            pe.recv(),
            Some(AsapMessage::RegistrationResponse { error: None, .. })
        ));
        let resolution = AsapMessage::HandleResolution {
            subscribe: false,
            handle: "RatePool".into(),
            items: None,
        };
        let mut pu = Raw::connect(&reg.asap);
        let started = std::time::Instant::now();
        let (mut answered, mut limited) = (0u32, 0u32);
        for _ in 0..200 {
            pu.send_msg(&resolution);
            tally(pu.recv(), &mut answered, &mut limited);
        }
        let secs = started.elapsed().as_secs_f64();
        let text = http_body(&reg.admin, "/metrics");
        let fast = metric(&text, "rserpool_registrar_fast_resolutions_total");
        println!(
            "figure: 200 resolutions one at a time at --max-hr-rate 20: {answered} answered \
             ({fast} from copies), {limited} limited in {secs:.2} s"
        );
        assert!(
            f64::from(answered) <= 20.0 * (1.0 + secs) + 1.0,
            "{answered} answered in {secs:.2} s"
        );
        assert!(limited > 0);
        // The answers after the first came from the pool's copy, all within the rate.
        assert!(
            fast >= 1.0 && fast < f64::from(answered),
            "{fast} of {answered}"
        );
    });
}

/// RSPLIB's per-PU ceilings (`--max-hr-rate`, `--max-eu-rate`), counted per source
/// address: a flooding pool user gets Unknown Pool Handle (0x9) beyond its rate and its
/// surplus reports are ignored, while another source resolves as usual.
#[test]
fn per_source_rates_hold_a_flooding_pool_user_to_its_share() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("hardening-rates");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://0.0.0.0:0",
            &log,
            &["--max-hr-rate", "50", "--max-eu-rate", "10"],
        );
        let pe = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let pe_id = parse_pe_id(&pe.entries[0].0);
        let resolution = AsapMessage::HandleResolution {
            subscribe: false,
            handle: "EchoPool".into(),
            items: None,
        };
        // The flood: 3000 resolutions pipelined from 127.0.0.1, 500 at a time (a client
        // with more than the registrar's write queue of answers unread is disconnected).
        let mut flood = raw_from(&reg.asap, IpAddr::from([127, 0, 0, 1]));
        let bytes = resolution.encode_to_vec();
        let started = std::time::Instant::now();
        let mut batch = Vec::new();
        for _ in 0..500 {
            batch.extend_from_slice(&bytes);
        }
        let (mut answered, mut limited) = (0u32, 0u32);
        for _ in 0..6 {
            flood.send(&batch);
            for _ in 0..500 {
                tally(flood.recv(), &mut answered, &mut limited);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "figure: 3000 pipelined resolutions at --max-hr-rate 50: {answered} answered, \
             {limited} limited in {secs:.2} s"
        );
        // A burst of one second's worth, then 50 per second: never more.
        assert!(
            f64::from(answered) <= 50.0 * (1.0 + secs) + 1.0,
            "{answered} answered in {secs:.2} s"
        );
        assert!(limited > 0);
        // Another source is not affected.
        let mut other = raw_from(&reg.asap, IpAddr::from([127, 0, 0, 2]));
        for _ in 0..20 {
            other.send_msg(&resolution);
            assert!(matches!(
                other.recv(),
                Some(AsapMessage::HandleResolutionResponse { error: None, ref pes, .. })
                    if !pes.is_empty()
            ));
        }
        // Unreachability reports beyond 10 per second are ignored (and counted).
        let mut pu = raw_from(&reg.asap, IpAddr::from([127, 0, 0, 3]));
        pu.send_msg(&resolution);
        pu.recv();
        let report = AsapMessage::EndpointUnreachable {
            handle: "EchoPool".into(),
            pe_id: PeId(pe_id),
        }
        .encode_to_vec();
        let mut batch = Vec::new();
        for _ in 0..500 {
            batch.extend_from_slice(&report);
        }
        pu.send(&batch);
        wait_until(
            "the reports over the rate to be counted",
            Duration::from_secs(20),
            || {
                protection(
                    &dump(&reg.admin),
                    "unreachability reports over the per-source rate (ignored)",
                ) > 0
            },
        );
        let doc = dump(&reg.admin);
        assert!(
            protection(
                &doc,
                "handle resolutions over the per-source rate (answered 0x9)"
            ) >= u64::from(limited)
        );
        // The PE is alive and stays: a probe at most, never a removal.
        assert!(pe_ids(&doc, "EchoPool").contains(&pe.entries[0].0));
    });
}

/// A connection registering faster than `--max-registration-rate` gets Lack of Resources
/// (0x6) for the excess — never more accepted than a second's burst plus the rate over
/// the time taken —, counted in `rsp dump` and `/metrics`; another connection from
/// another address registers as usual meanwhile.
#[test]
fn registrations_over_the_per_connection_rate_are_refused_and_counted() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("reg-rate");
        let log = dir.join("wire.log");
        const RATE: u32 = 50;
        const SENT: u32 = 300;
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--max-registration-rate",
                &RATE.to_string(),
                "--keepalive-interval",
                "60s",
                "--keepalive-timeout",
                "5s",
            ],
        );
        let mut c = raw_from(&reg.asap, "127.0.0.2".parse().unwrap());
        let mut batch = Vec::new();
        for i in 0..SENT {
            let m = pe_msg(
                "RatePool",
                0x100 + i,
                tcp_at(&format!("127.0.0.2:{}", 2000 + i)),
                30_000,
            );
            batch.extend_from_slice(&m.encode_to_vec());
        }
        let started = std::time::Instant::now();
        c.send(&batch);
        let (mut accepted, mut refused) = (0u64, 0u64);
        for _ in 0..SENT {
            match registration_answer(&mut c) {
                Ok(()) => accepted += 1,
                Err((code, _)) => {
                    assert_eq!(code, CauseCode::LACK_OF_RESOURCES);
                    refused += 1;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "figure: {SENT} registrations pipelined on one connection in {secs:.2} s: \
             {accepted} accepted, {refused} refused (--max-registration-rate {RATE})"
        );
        assert!(accepted >= u64::from(RATE), "{accepted} accepted");
        assert!(
            (accepted as f64) <= f64::from(RATE) * (1.0 + secs) + 1.0,
            "{accepted} accepted in {secs:.2} s"
        );
        assert!(refused > 0);
        // Another connection has its own budget.
        let mut other = raw_from(&reg.asap, "127.0.0.3".parse().unwrap());
        let m = pe_msg("RatePool", 0x9999, tcp_at("127.0.0.3:2999"), 30_000);
        assert_eq!(register(&mut other, &m), Ok(()));
        let doc = dump(&reg.admin);
        assert_eq!(
            protection(
                &doc,
                "registrations over the per-connection rate (answered 0x6)"
            ),
            refused
        );
        assert_eq!(pe_ids(&doc, "RatePool").len() as u64, accepted + 1);
        let metrics = http_body(&reg.admin, "/metrics");
        let series =
            |what: &str| format!("rserpool_registrar_protection_actions_total{{what=\"{what}\"}} ");
        assert!(
            metrics.contains(&format!(
                "{}{refused}\n",
                series("registrations over the per-connection rate (answered 0x6)")
            )),
            "{metrics}"
        );
        // Every limit has its series before it ever acts.
        for what in [
            "registrations over the per-identity rate (answered 0x6)",
            "registrations refused: PEs per TLS identity",
            "handle resolutions over the per-source rate (answered 0x9)",
        ] {
            assert!(metrics.contains(&format!("{}0\n", series(what))), "{what}");
        }
        let table = std::process::Command::new(RSP)
            .args(["dump", "--admin", &reg.admin])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(
            table.contains(&format!(
                "registrations over the per-connection rate (answered 0x6): {refused}"
            )),
            "{table}"
        );
    });
}

/// A message whose Message Length says more than `--max-message-len` (65,000 against
/// 4096), or less than its own 4-byte header (2), closes that connection at once; each
/// close is counted exactly once (`rsp dump` `message_length`, `/metrics`
/// `rserpool_message_length_refusals_total`, present at 0 before), a PE on another
/// connection is served as before and the handlespace stays as it was.
#[test]
fn messages_over_or_under_the_length_limit_close_their_connection_and_are_counted() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("msg-len");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &["--max-message-len", "4096"]);
        let series = |transport: &str, length: &str| {
            format!(
                "rserpool_message_length_refusals_total{{transport=\"{transport}\",length=\"{length}\"}} "
            )
        };
        let metrics = http_body(&reg.admin, "/metrics");
        for (t, l) in [
            ("tcp", "too-long"),
            ("tcp", "too-short"),
            ("tls", "too-long"),
            ("tls", "too-short"),
            ("sctp", "too-long"),
        ] {
            assert!(
                metrics.contains(&format!("{}0\n", series(t, l))),
                "{t} {l}: {metrics}"
            );
        }
        let counts = |doc: &Value| {
            let m = &doc["message_length"];
            let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("no {k} in {m}"));
            assert_eq!(m["max_message_len"], 4096, "{m}");
            (
                n("tcp_too_long"),
                n("tcp_too_short"),
                n("tls_too_long") + n("tls_too_short") + n("sctp_too_long"),
            )
        };
        // A PE registered on a connection of its own.
        let mut good = Raw::connect(&reg.asap);
        let pe = pe_msg("LenPool", 0x11, tcp_at("127.0.0.1:2011"), 30_000);
        assert_eq!(register(&mut good, &pe), Ok(()));
        let before = dump(&reg.admin);
        assert_eq!(counts(&before), (0, 0, 0));
        let pools = |doc: &Value| -> Vec<(String, std::collections::BTreeSet<String>)> {
            doc["pools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let h = p["handle"].as_str().unwrap().to_owned();
                    let ids = pe_ids(doc, &h);
                    (h, ids)
                })
                .collect()
        };
        // A registration header claiming 65,000 bytes, then a little of its body.
        let mut long = Raw::connect(&reg.asap);
        let mut bytes = vec![0x01, 0x00];
        bytes.extend_from_slice(&65_000u16.to_be_bytes());
        bytes.extend_from_slice(&[0u8; 60]);
        long.send(&bytes);
        assert!(long.recv().is_none(), "the too-long connection stayed open");
        assert_eq!(counts(&dump(&reg.admin)), (1, 0, 0));
        // A header claiming 2 bytes (less than itself).
        let mut short = Raw::connect(&reg.asap);
        short.send(&[0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0]);
        assert!(
            short.recv().is_none(),
            "the too-short connection stayed open"
        );
        let after = dump(&reg.admin);
        assert_eq!(counts(&after), (1, 1, 0));
        // The other connection is unaffected: it re-registers and its PE resolves.
        assert_eq!(register(&mut good, &pe), Ok(()));
        assert_eq!(resolves(&reg.asap, "LenPool"), 1);
        assert_eq!(pools(&after), pools(&before));
        assert_eq!(pools(&dump(&reg.admin)), pools(&before));
        let metrics = http_body(&reg.admin, "/metrics");
        for (t, l, n) in [
            ("tcp", "too-long", 1),
            ("tcp", "too-short", 1),
            ("tls", "too-long", 0),
            ("sctp", "too-long", 0),
        ] {
            assert!(
                metrics.contains(&format!("{}{n}\n", series(t, l))),
                "{t} {l}: {metrics}"
            );
        }
        let table = Command::new(RSP)
            .args(["dump", "--admin", &reg.admin])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(
            table.contains(
                "message length (limit 4096 bytes): connections closed: TCP 1 too long, 1 too short;"
            ),
            "{table}"
        );
        dissect_all(&dir, &log);
    });
}
