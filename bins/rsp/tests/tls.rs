//! TLS (`tls://`) end to end with certificates made in the test (rcgen) and real rustls
//! sessions over loopback: PE and PU to a registrar, mutual TLS, a registrar pool over
//! ENRP-TLS, a client that does not trust the registrar, and a certificate replaced by
//! SIGHUP without dropping the connections already open.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::certs::{ca, leaf, p};
use support::tls::{tls_listener, tls_url, TlsPe};
use support::*;

/// `rsp resolve POOL` at `url` with extra arguments: (success, stdout + stderr).
fn resolve(url: &str, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(RSP)
        .args(["resolve", "EchoPool", "-r", url, "--timeout", "5s"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn pes_and_pus_reach_a_registrar_over_tls_and_strangers_do_not() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("tls-asap");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let other = ca(&dir, "other-ca");
        let (rc, rk) = leaf(&dir, &ca1, "registrar", false);
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--listen",
                "tls://127.0.0.1:0",
                "--tls-cert",
                p(&rc),
                "--tls-key",
                p(&rk),
            ],
        );
        let url = tls_url(&reg);
        // A PE registers over TLS.
        let pe = Proc::spawn(
            "serve echo (tls)",
            &[
                "serve",
                "echo",
                "-r",
                &url,
                "--tls-ca",
                p(&ca1.pem),
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        let pe_id = pe.registered_pe("did not register over TLS", Duration::from_secs(20));
        // A PU resolves over TLS.
        let (ok, out) = resolve(&url, &["--tls-ca", p(&ca1.pem)]);
        assert!(ok && out.contains(&pe_id), "{out}");
        // A client that trusts another CA does not talk to this registrar.
        let (ok, out) = resolve(&url, &["--tls-ca", p(&other.pem)]);
        assert!(
            !ok,
            "a registrar with an untrusted certificate was used: {out}"
        );
        // The certificate is for 127.0.0.1, not for this name.
        let (ok, out) = resolve(
            &url,
            &[
                "--tls-ca",
                p(&ca1.pem),
                "--tls-server-name",
                "elsewhere.test",
            ],
        );
        assert!(!ok, "a certificate for another name was accepted: {out}");
        // Without trust anchors a tls:// registrar is refused up front.
        let (ok, out) = resolve(&url, &[]);
        assert!(!ok && out.contains("--tls-ca"), "{out}");
        // Plain bytes to the TLS port: the handshake fails, the registrar goes on.
        let mut raw = std::net::TcpStream::connect(url.trim_start_matches("tls://")).unwrap();
        use std::io::Write;
        raw.write_all(
            &registration(b"EchoPool", 0x1234, rserpool_wire::Policy::RoundRobin, 7)
                .encode_to_vec(),
        )
        .unwrap();
        drop(raw);
        let (ok, out) = resolve(&url, &["--tls-ca", p(&ca1.pem)]);
        assert!(ok && out.contains(&pe_id), "{out}");
        assert!(
            !out.contains("0x00001234"),
            "a plaintext registration got in: {out}"
        );
    });
}

#[test]
fn mutual_tls_refuses_clients_without_a_trusted_certificate() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("tls-mutual");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let other = ca(&dir, "other-ca");
        let (rc, rk) = leaf(&dir, &ca1, "registrar", false);
        let (cc, ck) = leaf(&dir, &ca1, "client", true);
        let (xc, xk) = leaf(&dir, &other, "stranger", true);
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &tls_listener(&rc, &rk, &ca1.pem, "required"),
        );
        let url = tls_url(&reg);
        let _pe = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let (ok, out) = resolve(
            &url,
            &[
                "--tls-ca",
                p(&ca1.pem),
                "--tls-cert",
                p(&cc),
                "--tls-key",
                p(&ck),
            ],
        );
        assert!(ok, "a client with a trusted certificate was refused: {out}");
        let (ok, out) = resolve(&url, &["--tls-ca", p(&ca1.pem)]);
        assert!(!ok, "a client without a certificate got in: {out}");
        let (ok, out) = resolve(
            &url,
            &[
                "--tls-ca",
                p(&ca1.pem),
                "--tls-cert",
                p(&xc),
                "--tls-key",
                p(&xk),
            ],
        );
        assert!(!ok, "a client with an untrusted certificate got in: {out}");
    });
}

#[test]
fn registrars_peer_over_enrp_tls_and_a_new_certificate_takes_effect_on_sighup() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("tls-enrp");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let (c1, k1) = leaf(&dir, &ca1, "r1", false);
        let (c2, k2) = leaf(&dir, &ca1, "r2", false);
        let enrp_port = free_port();
        let tls_args = |c: &Path, k: &Path| -> Vec<String> {
            [
                "--tls-cert",
                p(c),
                "--tls-key",
                p(k),
                "--tls-ca",
                p(&ca1.pem),
                "--tls-client-auth",
                "required",
                "--heartbeat-cycle",
                "200ms",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let mut a1 = tls_args(&c1, &k1);
        a1.extend([
            "--enrp-listen".into(),
            format!("tls://127.0.0.1:{enrp_port}"),
            "--listen".into(),
            "tls://127.0.0.1:0".into(),
        ]);
        let a1: Vec<&str> = a1.iter().map(String::as_str).collect();
        let r1 = start_registrar("tcp://127.0.0.1:0", &log, &a1);
        let mut a2 = tls_args(&c2, &k2);
        a2.extend([
            "--enrp-listen".into(),
            "off".into(),
            "--peer".into(),
            format!("tls://127.0.0.1:{enrp_port}"),
        ]);
        let a2: Vec<&str> = a2.iter().map(String::as_str).collect();
        let r2 = start_registrar("tcp://127.0.0.1:0", &log, &a2);
        // A PE at R2 is resolvable at R1: the update went over ENRP-TLS.
        let pe = start_echo(&r2.asap, &["127.0.0.1:0"], &log);
        wait_until(
            "R1 to learn R2's PE over ENRP-TLS",
            Duration::from_secs(30),
            || pe_ids(&dump(&r1.admin), "EchoPool").contains(&pe.entries[0].0),
        );
        // Replace R1's certificate with one from a new CA and send SIGHUP: new clients
        // need the new CA; the ENRP connection already open stays up.
        let ca2 = ca(&dir, "ca2");
        let (n1, nk1) = leaf(&dir, &ca2, "r1-new", false);
        std::fs::copy(&n1, &c1).unwrap();
        std::fs::copy(&nk1, &k1).unwrap();
        send_signal(&r1.proc, "HUP");
        if r1
            .proc
            .err
            .wait(0, Instant::now() + Duration::from_secs(20), |l| {
                l.contains("TLS certificate and key re-read")
            })
            .is_none()
        {
            r1.proc.fail("no certificate reload on SIGHUP");
        }
        let url = tls_url(&r1);
        let client = |ca: &Path| {
            resolve(
                &url,
                &["--tls-ca", p(ca), "--tls-cert", p(&c2), "--tls-key", p(&k2)],
            )
        };
        let (ok, out) = client(&ca2.pem);
        assert!(ok, "the new certificate is not served: {out}");
        let (ok, _) = client(&ca1.pem);
        assert!(!ok, "the old certificate is still served");
        // The peers still agree (the open ENRP-TLS connection was not dropped).
        let pe2 = start_echo(&r2.asap, &["127.0.0.1:0"], &log);
        wait_until(
            "R1 to learn a second PE after the reload",
            Duration::from_secs(30),
            || pe_ids(&dump(&r1.admin), "EchoPool").contains(&pe2.entries[0].0),
        );
    });
}

/// Secure mode and access rules: a PE registers only where its certificate allows, a
/// plaintext (or replayed) registration is refused with 0xa and changes nothing, plaintext
/// ENRP is dropped, and anonymous pool users may still resolve where a rule lets them.
#[test]
fn secure_mode_and_access_rules_hold_per_identity_and_pool() {
    bounded(Duration::from_secs(180), || {
        use rserpool_wire::{AsapMessage, CauseCode, Policy};
        let dir = scratch("tls-access");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let (rc, rk) = leaf(&dir, &ca1, "registrar", false);
        let (ac, ak) = leaf(&dir, &ca1, "pe-a", true);
        let enrp_port = free_port();
        let enrp = format!("tcp://127.0.0.1:{enrp_port}");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                &tls_listener(&rc, &rk, &ca1.pem, "optional")[..],
                &[
                    "--enrp-listen",
                    &enrp,
                    "--require-tls",
                    "--acl",
                    "identity=pe-a register=PoolA",
                    "--acl",
                    "identity=anonymous resolve=*",
                ],
            ]
            .concat(),
        );
        let url = tls_url(&reg);
        let serve = |pool: &str| {
            Proc::spawn(
                &format!("serve echo in {pool}"),
                &[
                    "serve",
                    "echo",
                    "-r",
                    &url,
                    "--tls-ca",
                    p(&ca1.pem),
                    "--tls-cert",
                    p(&ac),
                    "--tls-key",
                    p(&ak),
                    "--pool",
                    pool,
                    "--no-announces",
                    "--listen",
                    "127.0.0.1:0",
                ],
                &log,
            )
        };
        let a = serve("PoolA");
        let pe_a = a.registered_pe("pe-a did not register in PoolA", Duration::from_secs(20));
        // Its certificate does not cover PoolB: refused for good, the service says why.
        let mut b = serve("PoolB");
        let st = b
            .wait_exit(Duration::from_secs(20))
            .expect("rsp serve exits");
        assert!(!st.success());
        let said = b.err.text();
        assert!(said.contains("refused"), "{said}");
        // A plaintext registration (e.g. replayed from the plaintext era): 0xa.
        let mut raw = Raw::connect(&reg.asap);
        raw.send_msg(&registration(b"PoolA", 0x5eed, Policy::RoundRobin, 7777));
        match raw.recv() {
            Some(AsapMessage::RegistrationResponse { error: Some(e), .. }) => assert!(
                e.causes
                    .iter()
                    .any(|c| c.code == CauseCode::REJECTED_SECURITY),
                "{e:?}"
            ),
            other => panic!("plaintext registration answered {other:?}"),
        }
        // Anonymous resolution over plaintext is allowed by the rule: only pe-a's PE.
        let doc = dump(&reg.admin);
        assert_eq!(
            pe_ids(&doc, "PoolA").into_iter().collect::<Vec<_>>(),
            vec![pe_a.clone()]
        );
        assert!(pe_ids(&doc, "PoolB").is_empty());
        let out = std::process::Command::new(RSP)
            .args(["resolve", "PoolA", "-r", &reg.asap])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&pe_a),
            "anonymous resolution refused"
        );
        // Plaintext ENRP is dropped (counted), nothing joins.
        let mut peer = Raw::connect(&enrp);
        peer.send_enrp(&rserpool_wire::EnrpMessage::Presence {
            reply_required: true,
            sender: rserpool_wire::ServerId(0x0bad),
            receiver: rserpool_wire::ServerId(0),
            checksum: None,
            server_info: None,
        });
        wait_until(
            "plaintext ENRP to be dropped",
            Duration::from_secs(20),
            || {
                dump(&reg.admin)["protections"].as_array().is_some_and(|a| {
                    a.iter().any(|p| {
                        p["what"] == "ENRP messages dropped by the access policy"
                            && p["count"].as_u64() > Some(0)
                    })
                })
            },
        );
        let doc = dump(&reg.admin);
        assert_eq!(
            doc["enrp"]["peers"].as_array().map(Vec::len),
            Some(0),
            "{}",
            doc["enrp"]
        );
    });
}

/// Per TLS identity (the client certificate's first name), over all its connections: at
/// most `--max-pes-per-identity` PEs (0x6 beyond; another identity unaffected) and
/// `--max-registration-rate-per-identity` registrations per second (0x6 beyond). The
/// TLS listener's handshakes (accepted, failed) show in `rsp dump` and `/metrics`.
#[test]
fn per_identity_pe_quota_and_registration_rate_hold_and_handshakes_are_counted() {
    bounded(Duration::from_secs(180), || {
        use rserpool_wire::CauseCode;
        let dir = scratch("tls-identity");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let (rc, rk) = leaf(&dir, &ca1, "registrar", false);
        let (ac, ak) = leaf(&dir, &ca1, "pe-a", true);
        let (bc, bk) = leaf(&dir, &ca1, "pe-b", true);
        const RATE: u32 = 20;
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                &tls_listener(&rc, &rk, &ca1.pem, "required")[..],
                &[
                    "--max-pes-per-identity",
                    "3",
                    "--max-registration-rate-per-identity",
                    &RATE.to_string(),
                    "--max-registration-rate",
                    "0",
                ],
            ]
            .concat(),
        );
        let url = tls_url(&reg);
        let mut a1 = TlsPe::connect(&url, &ca1.pem, &ac, &ak);
        let mut a2 = TlsPe::connect(&url, &ca1.pem, &ac, &ak);
        let mut b = TlsPe::connect(&url, &ca1.pem, &bc, &bk);
        // Quota: three PEs of pe-a over two connections, the fourth refused.
        assert_eq!(a1.register("IdPool", 1), Ok(()));
        assert_eq!(a1.register("IdPool", 2), Ok(()));
        assert_eq!(a2.register("IdPool", 3), Ok(()));
        assert_eq!(a2.register("IdPool", 4), Err(CauseCode::LACK_OF_RESOURCES));
        // A re-registration does not count again; another identity has its own quota.
        assert_eq!(a1.register("IdPool", 1), Ok(()));
        assert_eq!(b.register("IdPool", 10), Ok(()));
        // Rate: 100 re-registrations of one PE pipelined on pe-a's second connection.
        let m = registration(b"IdPool", 3, rserpool_wire::Policy::RoundRobin, 3003);
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend_from_slice(&m.encode_to_vec());
        }
        let started = Instant::now();
        a2.send(&batch);
        let (mut accepted, mut refused) = (0u64, 0u64);
        for _ in 0..100 {
            match a2.answer() {
                Ok(()) => accepted += 1,
                Err(c) => {
                    assert_eq!(c, CauseCode::LACK_OF_RESOURCES);
                    refused += 1;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        assert!(refused > 0, "no registration over the rate was refused");
        assert!(
            (accepted as f64) <= f64::from(RATE) * (1.0 + secs) + 1.0,
            "{accepted} accepted in {secs:.2} s"
        );
        // pe-b is not held back by pe-a's rate.
        assert_eq!(b.register("IdPool", 11), Ok(()));
        // A handshake that fails: plain TCP bytes to the TLS port.
        {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(url.trim_start_matches("tls://")).unwrap();
            let _ = s.write_all(b"this is not a TLS client hello\r\n\r\n");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        wait_until(
            "the failed handshake counted",
            Duration::from_secs(20),
            || dump(&reg.admin)["tls"][0]["failed"].as_u64() == Some(1),
        );
        let doc = dump(&reg.admin);
        assert_eq!(
            protection(&doc, "registrations refused: PEs per TLS identity"),
            1
        );
        assert_eq!(
            protection(
                &doc,
                "registrations over the per-identity rate (answered 0x6)"
            ),
            refused
        );
        assert_eq!(pe_ids(&doc, "IdPool").len(), 5);
        let t = &doc["tls"][0];
        assert_eq!(t["protocol"], "asap");
        assert_eq!(t["accepted"].as_u64(), Some(3), "{t}");
        assert_eq!(t["timed_out"].as_u64(), Some(0), "{t}");
        let out = std::process::Command::new(RSP)
            .args(["dump", "--admin", &reg.admin])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains(&format!(
                "TLS handshakes on {url} (asap): 3 accepted, 1 failed, 0 timed out, 0 refused"
            )),
            "{table}"
        );
        let metrics = {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&reg.admin).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        assert!(
            metrics.contains(&format!(
                "rserpool_tls_handshakes_total{{listener=\"{url}\",protocol=\"asap\",outcome=\"failed\"}} 1\n"
            )),
            "{metrics}"
        );
    });
}

/// TLS towards a PE's ASAP control endpoint: a PE with a certificate listens for ASAP
/// over TLS only and requires the registrar's certificate there (mutual TLS, trust = its
/// `--tls-ca`, names = its `--registrar-identity`); after its home registrar dies, the
/// peer that takes it over (`--pe-control-tls`) connects there over TLS with its own
/// certificate, checks the PE's, and becomes its home (the PE knows no other registrar,
/// so only the takeover can move it). A plaintext keep-alive to the same port, a TLS
/// client without a certificate and one with a trusted certificate for another name get
/// no answer; the last two are counted apart on the PE's `/metrics` and logged.
#[test]
fn a_takeover_reaches_the_pe_control_endpoint_over_tls() {
    bounded(Duration::from_secs(180), || {
        use std::io::{Read, Write};
        let dir = scratch("tls-takeover");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let (c1, k1) = leaf(&dir, &ca1, "r1", false);
        let (c2, k2) = leaf(&dir, &ca1, "r2", false);
        // The PE is a TLS server on its control endpoint: a server certificate.
        let (pc, pk) = leaf(&dir, &ca1, "pe", false);
        // A certificate from the same CA for a name the PE does not accept.
        let (c3, k3) = leaf(&dir, &ca1, "r3", true);
        let enrp_port = free_port();
        let args = |c: &Path, k: &Path, extra: &[String]| -> Vec<String> {
            let mut v: Vec<String> = [
                "--tls-cert",
                p(c),
                "--tls-key",
                p(k),
                "--tls-ca",
                p(&ca1.pem),
                "--heartbeat-cycle",
                "200ms",
                "--pe-control-tls",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            v.extend_from_slice(extra);
            v
        };
        let a1 = args(
            &c1,
            &k1,
            &[
                "--enrp-listen".into(),
                format!("tls://127.0.0.1:{enrp_port}"),
                "--listen".into(),
                "tls://127.0.0.1:0".into(),
            ],
        );
        let a1: Vec<&str> = a1.iter().map(String::as_str).collect();
        let mut r1 = start_registrar("tcp://127.0.0.1:0", &log, &a1);
        let a2 = args(
            &c2,
            &k2,
            &[
                "--enrp-listen".into(),
                "off".into(),
                "--peer".into(),
                format!("tls://127.0.0.1:{enrp_port}"),
            ],
        );
        let a2: Vec<&str> = a2.iter().map(String::as_str).collect();
        let r2 = start_registrar("tcp://127.0.0.1:0", &log, &a2);
        let url = tls_url(&r1);
        let pe = Proc::spawn(
            "serve echo over TLS",
            &[
                "serve",
                "echo",
                "-r",
                &url,
                "--tls-ca",
                p(&ca1.pem),
                "--tls-cert",
                p(&pc),
                "--tls-key",
                p(&pk),
                "--registrar-identity",
                "r1.rserpool.test",
                "--registrar-identity",
                "R2.rserpool.test",
                "--http",
                "127.0.0.1:0",
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        let id = pe.registered_pe("the PE did not register", Duration::from_secs(20));
        let pe_http = pe
            .out
            .wait(0, Instant::now() + Duration::from_secs(10), |l| {
                l.starts_with("http ")
            })
            .unwrap_or_else(|| pe.fail("no http line"))
            .1;
        let pe_http = pe_http
            .trim_start_matches("http http://")
            .trim_end_matches('/')
            .to_owned();
        // The PE's control endpoint handshakes with an outcome, summed over its listeners.
        let handshakes = |outcome: &str| -> u64 {
            http_get(&pe_http, "/metrics")
                .lines()
                .filter(|l| l.starts_with("rserpool_tls_handshakes_total{"))
                .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(
            (
                handshakes("accepted"),
                handshakes("failed"),
                handshakes("identity-refused")
            ),
            (0, 0, 0)
        );
        // The counters are bumped as the refused connection closes: polled.
        let counts_reach = |want: (u64, u64, u64)| {
            let mut seen = (0, 0, 0);
            wait_until(
                &format!("PE handshakes (accepted, failed, identity-refused) = {want:?}"),
                Duration::from_secs(10),
                || {
                    seen = (
                        handshakes("accepted"),
                        handshakes("failed"),
                        handshakes("identity-refused"),
                    );
                    seen == want
                },
            );
        };
        let entry = |doc: &serde_json::Value| -> Option<serde_json::Value> {
            doc["pools"]
                .as_array()?
                .iter()
                .filter(|p| p["handle"] == "EchoPool")
                .flat_map(|p| p["pes"].as_array().cloned().unwrap_or_default())
                .find(|e| e["id"] == id.as_str())
        };
        wait_until(
            "R2 to learn the PE over ENRP-TLS",
            Duration::from_secs(30),
            || entry(&dump(&r2.admin)).is_some(),
        );
        let r2_id = dump(&r2.admin)["server_id"].as_str().unwrap().to_owned();
        let asap = entry(&dump(&r2.admin)).unwrap()["asap_transport"]
            .as_str()
            .unwrap()
            .to_owned();
        // The control endpoint speaks TLS only: a plaintext keep-alive is not answered.
        {
            let mut s = std::net::TcpStream::connect(asap.trim_start_matches("tcp://")).unwrap();
            let ka = rserpool_wire::AsapMessage::EndpointKeepAlive {
                home: false,
                server_id: rserpool_wire::ServerId(0x7a4e),
                handle: "EchoPool".into(),
                pe_id: Some(rserpool_wire::PeId(
                    u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap(),
                )),
            };
            let _ = s.write_all(&ka.encode_to_vec());
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            assert!(
                rserpool_wire::AsapMessage::decode(&buf).is_err(),
                "a plaintext keep-alive was answered: {buf:?}"
            );
        }
        // A TLS client without a certificate, and one with a trusted certificate for a
        // name the PE does not accept, claim the PE with a keep-alive (H = 1): refused in
        // the handshake, never answered, counted apart and logged.
        let claim = rserpool_wire::AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: rserpool_wire::ServerId(0x7a4e),
            handle: "EchoPool".into(),
            pe_id: Some(rserpool_wire::PeId(
                u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap(),
            )),
        }
        .encode_to_vec();
        let answer = tls_exchange(&asap, &ca1.pem, None, &claim);
        assert!(
            answer.is_empty(),
            "a client without a certificate was answered: {answer:?}"
        );
        // (The plaintext keep-alive above failed its handshake too.)
        counts_reach((0, 2, 0));
        let answer = tls_exchange(&asap, &ca1.pem, Some((&c3, &k3)), &claim);
        assert!(
            answer.is_empty(),
            "a registrar not accepted was answered: {answer:?}"
        );
        counts_reach((0, 2, 1));
        for what in [
            "TLS handshake failed",
            "TLS client refused: client certificate names",
        ] {
            pe.err
                .wait(0, Instant::now() + Duration::from_secs(10), |l| {
                    l.contains(what)
                })
                .unwrap_or_else(|| pe.fail(&format!("no '{what}' log line")));
        }
        // The PE's home is still R1.
        assert!(entry(&dump(&r2.admin)).is_some_and(|e| e["home"] != r2_id.as_str()));
        // R1 dies; R2 takes the PE over through its TLS control endpoint.
        r1.proc.kill9();
        wait_until(
            "R2 to become the PE's home through the TLS control endpoint",
            Duration::from_secs(60),
            || entry(&dump(&r2.admin)).is_some_and(|e| e["home"] == r2_id.as_str()),
        );
        pe.err
            .wait(0, Instant::now() + Duration::from_secs(20), |l| {
                l.contains("new home registrar")
            })
            .unwrap_or_else(|| pe.fail("no 'new home registrar' log line"));
        // Still R2's a few keep-alives later (the TLS connection carries them).
        std::thread::sleep(Duration::from_secs(4));
        assert!(entry(&dump(&r2.admin)).is_some_and(|e| e["home"] == r2_id.as_str()));
        // R2 showed its certificate (r2.rserpool.test, accepted) on that connection.
        assert!(handshakes("accepted") >= 1);
        assert_eq!(
            (handshakes("failed"), handshakes("identity-refused")),
            (2, 1)
        );
    });
}

/// `GET path` on an HTTP endpoint (`127.0.0.1:port`): the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Send `msg` over a TLS connection to `addr` (`tcp://127.0.0.1:port`, the server's
/// certificate checked against `ca` and the address), offering `cert` (certificate and
/// key files) when given: the bytes received before the server closed (at most 15 s).
fn tls_exchange(addr: &str, ca: &Path, cert: Option<(&Path, &Path)>, msg: &[u8]) -> Vec<u8> {
    use rserpool::transport::tls::{connect_client, TlsFiles, TlsSettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = TlsSettings::load(TlsFiles {
            cert: cert.map(|c| c.0.to_path_buf()),
            key: cert.map(|c| c.1.to_path_buf()),
            ca: vec![ca.to_path_buf()],
            ..TlsFiles::default()
        })
        .unwrap();
        let addr: std::net::SocketAddr = addr.trim_start_matches("tcp://").parse().unwrap();
        // TLS 1.3: the client's side of the handshake ends before the server checked the
        // client's certificate; the refusal arrives as an alert on the first read.
        let Ok(mut s) = connect_client(&[addr], &tls).await else {
            return Vec::new();
        };
        let _ = s.write_all(msg).await;
        let _ = s.flush().await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
        buf
    })
}

/// The message length limit holds inside TLS as on plain TCP: a TLS connection whose next
/// message claims 65,000 bytes to a registrar with `--max-message-len 4096`, or 2, is
/// closed unanswered and counted once each as TLS (`rsp dump` `message_length`), while
/// a well-formed resolution on another TLS connection is answered.
/// (SCTP: the build host's kernel has none; an over-long SCTP message is dropped and
/// counted as `sctp_too_long` by the same reader code path, see `transport/sctp.rs`.)
#[test]
fn a_message_length_over_or_under_the_limit_closes_a_tls_connection_and_is_counted() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("tls-msg-len");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let (rc, rk) = leaf(&dir, &ca1, "registrar", false);
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--listen",
                "tls://127.0.0.1:0",
                "--tls-cert",
                p(&rc),
                "--tls-key",
                p(&rk),
                "--max-message-len",
                "4096",
            ],
        );
        let url = tls_url(&reg);
        let addr = url.replace("tls://", "tcp://");
        let lengths = || {
            let m = dump(&reg.admin)["message_length"].clone();
            let n = |k: &str| m[k].as_u64().unwrap();
            (
                n("tls_too_long"),
                n("tls_too_short"),
                n("tcp_too_long") + n("tcp_too_short"),
            )
        };
        assert_eq!(lengths(), (0, 0, 0));
        let mut long = vec![0x03, 0x00];
        long.extend_from_slice(&65_000u16.to_be_bytes());
        long.extend_from_slice(&[0u8; 60]);
        let answer = tls_exchange(&addr, &ca1.pem, None, &long);
        assert!(answer.is_empty(), "answered: {answer:?}");
        wait_until("one TLS too-long close", Duration::from_secs(10), || {
            lengths() == (1, 0, 0)
        });
        let answer = tls_exchange(&addr, &ca1.pem, None, &[0x03, 0x00, 0x00, 0x02]);
        assert!(answer.is_empty(), "answered: {answer:?}");
        wait_until("one TLS too-short close", Duration::from_secs(10), || {
            lengths() == (1, 1, 0)
        });
        // A well-formed resolution over TLS is still answered.
        let (ok, out) = resolve(&url, &["--tls-ca", p(&ca1.pem)]);
        // (No PE in the pool: the registrar's answer is Unknown Pool Handle.)
        assert!(!ok && out.contains("unknown pool handle (0x9)"), "{out}");
        assert_eq!(lengths(), (1, 1, 0));
    });
}
