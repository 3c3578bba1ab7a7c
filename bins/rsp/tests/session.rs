//! The session layer end to end (issue 11): `rsp serve files` + `rsp fetch` across a PE
//! killed (kill -9) and a PE frozen (kill -STOP) mid-download; Ping Pong across a failover.
//! Real processes on loopback; every wait is bounded and polled.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Size of the file the three PEs serve in MiB (the issue's 200 MB; `RSP_FETCH_MB`
/// overrides it).
fn file_mb() -> u64 {
    std::env::var("RSP_FETCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A `rsp serve SERVICE` PE of `pool` on loopback; (proc, pe id).
fn start_session_pe(reg: &str, service: &[&str], pool: &str, log: &Path) -> (Proc, String) {
    let mut args = vec!["serve"];
    args.extend_from_slice(service);
    args.extend_from_slice(&[
        "--pool",
        pool,
        "-r",
        reg,
        "--no-announces",
        "-l",
        "127.0.0.1:0",
    ]);
    let p = Proc::spawn("serve", &args, log);
    let line = p.stdout_line("did not register", Duration::from_secs(60), |l| {
        l.starts_with("registered ")
    });
    let id = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pe="))
        .unwrap()
        .to_owned();
    (p, id)
}

/// The PE a fetch / pingpong said it connected to first (from index `from` of stderr).
fn connected_pe(p: &Proc, prefix: &str, from: usize) -> (usize, String) {
    let (i, l) = p
        .err
        .wait(from, Instant::now() + Duration::from_secs(20), |l| {
            l.starts_with(prefix)
                && (l.contains("connected to PE") || l.contains("failover from PE"))
        })
        .unwrap_or_else(|| p.fail("never connected"));
    let id = l
        .split("PE ")
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (i, id)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Fetch `name` into `out`; when half of it is there, do `hit` to the serving PE; then
/// wait for the download to end and check it.
fn fetch_with_fault(
    reg: &str,
    name: &str,
    src: &Path,
    out: &Path,
    pes: &mut [(Proc, String)],
    hit: &dyn Fn(&mut Proc),
    log: &Path,
) -> String {
    let size = file_len(src);
    let mut f = Proc::spawn(
        "fetch",
        &[
            "fetch",
            "FilePool",
            name,
            "-o",
            out.to_str().unwrap(),
            "-r",
            reg,
            "--no-announces",
        ],
        log,
    );
    let (_, serving) = connected_pe(&f, "rsp fetch: connected", 0);
    wait_until("half of the file", Duration::from_secs(60), || {
        file_len(out) >= size / 2
    });
    let victim = pes
        .iter_mut()
        .find(|(_, id)| *id == serving)
        .unwrap_or_else(|| panic!("no PE {serving}"));
    hit(&mut victim.0);
    let st = f
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| f.fail("did not finish"));
    // The reader threads may still be collecting the last lines.
    let _ = f.err.wait(0, Instant::now() + Duration::from_secs(5), |l| {
        l.contains("bytes in")
    });
    let err = f.err.text();
    assert!(st.success(), "fetch failed: {err}");
    assert!(err.contains("failover from PE"), "{err}");
    assert!(err.contains("1 failover(s)"), "{err}");
    assert_eq!(sha256(out), sha256(src), "{err}");
    let gap = err
        .lines()
        .find(|l| l.contains("failover gap"))
        .unwrap_or_else(|| panic!("no gap reported: {err}"))
        .to_owned();
    eprintln!("{gap}");
    f.kill9();
    gap
}

#[test]
fn fetch_resumes_after_kill_and_after_freeze() {
    bounded(Duration::from_secs(300), || {
        let dir = scratch("session-fetch");
        let log = dir.join("wire.log");
        let files = dir.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let src = files.join("big.bin");
        let mb = file_mb();
        let st = Command::new("head")
            .args(["-c", &(mb << 20).to_string(), "/dev/urandom"])
            .stdout(std::fs::File::create(&src).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut pes: Vec<(Proc, String)> = (0..3)
            .map(|_| {
                start_session_pe(
                    &reg.asap,
                    &["files", files.to_str().unwrap()],
                    "FilePool",
                    &log,
                )
            })
            .collect();

        // kill -9: the connection breaks at once.
        let out1: PathBuf = dir.join("out1.bin");
        let gap9 = fetch_with_fault(
            &reg.asap,
            "big.bin",
            &src,
            &out1,
            &mut pes,
            &|p| p.kill9(),
            &log,
        );
        // kill -STOP: only the session heartbeat notices.
        let out2 = dir.join("out2.bin");
        let stopped = std::sync::Mutex::new(None);
        let gap_stop = fetch_with_fault(
            &reg.asap,
            "big.bin",
            &src,
            &out2,
            &mut pes,
            &|p| {
                freeze(p.pid());
                *stopped.lock().unwrap() = Some(p.pid());
            },
            &log,
        );
        assert!(gap_stop.contains("failure noticed after"), "{gap_stop}");
        if let Some(pid) = *stopped.lock().unwrap() {
            signal(pid, "CONT");
        }
        eprintln!("{mb} MiB; kill -9: {gap9}; kill -STOP: {gap_stop}");
        drop(pes);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
