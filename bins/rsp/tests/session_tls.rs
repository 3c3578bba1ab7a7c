//! TLS on the PU ↔ PE session channel (issue 14 items 1 and 4, threat 2.9): PEs serve
//! their sessions over TLS (certificates made here with rcgen, real rustls over
//! loopback), the PU checks each PE's certificate identity against the pool's expected
//! identities on connect and on every failover, and an impostor — a PE with a valid
//! certificate for another name — is refused and never served by.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::certs::{ca, leaf_for_name as leaf, p};
use support::*;

/// A pingpong PE of `pool` serving sessions over TLS with `cert`, registered with the
/// least-used policy at `load`; (proc, pe id).
fn tls_pe(
    reg: &str,
    pool: &str,
    cert: &(PathBuf, PathBuf),
    load: &str,
    log: &Path,
) -> (Proc, String) {
    let args = [
        "serve",
        "pingpong",
        "--pool",
        pool,
        "-r",
        reg,
        "--no-announces",
        "-l",
        "127.0.0.1:0",
        "--policy",
        "lu",
        "--load",
        load,
        "--session-tls-cert",
        p(&cert.0),
        "--session-tls-key",
        p(&cert.1),
    ];
    let pr = spawn_env("serve", &args, log, &[("RSERPOOL_WIRE_LOG_DATA", "1")]);
    let id = pr.registered_pe("did not register", Duration::from_secs(60));
    (pr, id)
}

/// Lines of `text` that say the session is (now) served by a PE: (pe id, line).
fn served_by(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let rest = l
                .split_once("connected to PE ")
                .or_else(|| l.split_once(" to PE "))?
                .1;
            Some((rest.split_whitespace().next()?.to_owned(), l.to_owned()))
        })
        .collect()
}

/// Two good PEs and an impostor (a valid certificate from the same CA, for another name),
/// the impostor the least loaded: the PU tries it first, refuses it (counted), lands on
/// the good PE named in its identities; kill that one: the session fails over to the
/// other good PE — the failover event naming its verified identity — and never to the
/// impostor. The session's messages inside TLS are the usual ones (dissected).
#[test]
fn session_over_tls_fails_over_only_to_expected_identities() {
    bounded(Duration::from_secs(150), || {
        let dir = scratch("session-tls");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "pool-ca");
        let a = leaf(&dir, &ca1, "a", "pe-a.pool.test");
        let b = leaf(&dir, &ca1, "b", "pe-b.pool.test");
        let evil = leaf(&dir, &ca1, "evil", "evil.pool.test");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let pool = "TlsPingPool";
        let (_e, evil_id) = tls_pe(&reg.asap, pool, &evil, "0%", &log);
        let (mut pa, a_id) = tls_pe(&reg.asap, pool, &a, "10%", &log);
        let (_pb, b_id) = tls_pe(&reg.asap, pool, &b, "20%", &log);
        let c = spawn_env(
            "pingpong",
            &[
                "pingpong",
                pool,
                "-r",
                &reg.asap,
                "--no-announces",
                "-n",
                "100000",
                "--interval",
                "20ms",
                "--tls-ca",
                p(&ca1.pem),
                "--pe-identity",
                "pe-a.pool.test",
                "--pe-identity",
                "PE-B.pool.test",
            ],
            &log,
            &[("RSERPOOL_WIRE_LOG_DATA", "1")],
        );
        // The impostor (least loaded) is tried first and refused: the session then
        // "fails over" from it to pe-a.
        let (fi, first) = c
            .err
            .wait(0, Instant::now() + Duration::from_secs(30), |l| {
                l.contains("connected to PE") || l.contains("failover from PE")
            })
            .unwrap_or_else(|| c.fail("never connected"));
        assert!(
            first.contains(&format!("PE {a_id} ")) && first.ends_with(" identity pe-a.pool.test"),
            "expected PE {a_id} (pe-a): {first}\n{}",
            c.err.text()
        );
        c.stdout_line("no 5th pong", Duration::from_secs(20), |l| {
            l.starts_with("pong 5 ")
        });
        pa.kill9();
        let (i, failover) = c
            .err
            .wait(fi + 1, Instant::now() + Duration::from_secs(30), |l| {
                l.contains(&format!("failover from PE {a_id} "))
            })
            .unwrap_or_else(|| c.fail("no failover"));
        assert!(
            failover.contains(&format!("to PE {b_id} "))
                && failover.contains("(cookie echoed)")
                && failover.ends_with(" identity pe-b.pool.test"),
            "expected PE {b_id} (pe-b): {failover}\n{}",
            c.err.text()
        );
        // Served on after the failover.
        let pongs_then = c.out.text().lines().count();
        wait_until("pongs after the failover", Duration::from_secs(20), || {
            c.out.text().lines().count() > pongs_then + 5
        });
        let err = c.err.text();
        let refusals = err
            .lines()
            .filter(|l| l.contains("refused: PE identity refused"))
            .count();
        assert!(refusals >= 1, "the impostor was never tried:\n{err}");
        assert!(err.contains("evil.pool.test"), "{err}");
        let served = served_by(&err);
        assert!(
            served.iter().all(|(pe, _)| *pe == a_id || *pe == b_id),
            "served by someone else than {a_id} / {b_id} (impostor {evil_id}): {served:?}"
        );
        assert!(
            served.iter().all(|(pe, _)| *pe != evil_id),
            "served by the impostor: {served:?}"
        );
        eprintln!("impostor refusals: {refusals}; failover line: {failover} (stderr line {i})");
        drop(c);
        // Inside TLS the session layer sent its usual ASAP control messages.
        let names = dissect(
            &dir,
            &log,
            |l| l.starts_with("tx.asap.") && l.contains(".session-"),
            |_| false,
        );
        for want in ["ASAP_COOKIE", "ASAP_COOKIE_ECHO", "ASAP_BUSINESS_CARD"] {
            assert!(names.contains(want), "{want} not sent: {names:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A PU that does not trust the PE's CA gets no session; a PE's certificate replaced on
/// disk and SIGHUP: new sessions see the new identity (the old name is refused).
#[test]
fn session_tls_trust_and_reload() {
    bounded(Duration::from_secs(150), || {
        let dir = scratch("session-tls-reload");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "pool-ca");
        let other = ca(&dir, "other-ca");
        let a = leaf(&dir, &ca1, "a", "pe-a.pool.test");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let pool = "TlsReloadPool";
        let (pa, _a_id) = tls_pe(&reg.asap, pool, &a, "0%", &log);
        let ping = |extra: &[&str]| {
            let mut args = vec![
                "pingpong",
                pool,
                "-r",
                &reg.asap,
                "--no-announces",
                "-n",
                "2",
                "--interval",
                "10ms",
                "--attempts",
                "2",
            ];
            args.extend_from_slice(extra);
            let out = std::process::Command::new(RSP)
                .args(&args)
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
        };
        let ok = ping(&["--tls-ca", p(&ca1.pem), "--pe-identity", "pe-a.pool.test"]);
        assert!(ok.0 && ok.1.contains("identity pe-a.pool.test"), "{}", ok.1);
        let untrusted = ping(&["--tls-ca", p(&other.pem), "--session-tls"]);
        assert!(
            !untrusted.0 && !untrusted.1.contains("pong 1 "),
            "{}",
            untrusted.1
        );
        // A new certificate for another name, read on SIGHUP.
        let renamed = leaf(&dir, &ca1, "a2", "pe-a2.pool.test");
        std::fs::copy(&renamed.0, &a.0).unwrap();
        std::fs::copy(&renamed.1, &a.1).unwrap();
        send_signal(&pa, "HUP");
        pa.stdout_line("no reload", Duration::from_secs(10), |l| {
            l.contains("session TLS certificate reloaded")
        });
        let old_name = ping(&["--tls-ca", p(&ca1.pem), "--pe-identity", "pe-a.pool.test"]);
        assert!(
            !old_name.0 && old_name.1.contains("PE identity refused"),
            "{}",
            old_name.1
        );
        let new_name = ping(&["--tls-ca", p(&ca1.pem), "--pe-identity", "pe-a2.pool.test"]);
        assert!(
            new_name.0 && new_name.1.contains("identity pe-a2.pool.test"),
            "{}",
            new_name.1
        );
        drop(pa);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
