//! `rsp soak` at a small size in a debug build: 2,000 PEs in 200 pools over 20
//! connections for a few seconds with short keep-alives and 60 % of the PEs dying per
//! minute; no PE that kept answering may be lost, and dead PEs must be seen removed.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const RSP: &str = env!("CARGO_BIN_EXE_rsp");

/// The number after `word` in `line` (e.g. "lost 0").
fn after(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == word)
        .unwrap_or_else(|| panic!("no {word:?} in {line}"));
    words[i + 1]
        .trim_end_matches([',', ';'])
        .parse()
        .unwrap_or_else(|_| panic!("no number after {word:?} in {line}"))
}

/// Run `rsp soak` with `args`; its summary line, stdout and stderr (it must succeed).
fn soak(args: &[&str]) -> (String, String, String) {
    let out = Command::new(RSP).arg("soak").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("rsp soak summary:"))
        .unwrap_or_else(|| panic!("no summary\nstdout:\n{stdout}\nstderr:\n{stderr}"))
        .to_owned();
    assert!(out.status.success(), "{summary}\n{stderr}");
    (summary, stdout, stderr)
}

#[test]
fn a_small_soak_loses_no_pe_and_removes_the_dead_ones() {
    let (summary, stdout, stderr) = soak(&[
        "--pes",
        "2000",
        "--pools",
        "200",
        "--pes-per-connection",
        "100",
        "--duration",
        "8s",
        "--baseline",
        "1s",
        "--keepalive-interval",
        "500ms",
        "--keepalive-timeout",
        "1s",
        "--die-percent-per-minute",
        "60",
        "--reregister",
        "3s",
        "--resolvers",
        "2",
    ]);
    assert_eq!(after(&summary, "lost"), 0, "{summary}");
    assert_eq!(after(&summary, "refused"), 0, "{summary}");
    assert_eq!(after(&summary, "registered"), 2000, "{summary}");
    let dead = after(&summary, "dead");
    assert!(dead >= 100, "{summary}");
    // Each pool is checked every ~0.1 s by two resolvers: most dead PEs are seen gone.
    assert!(after(&summary, "removed") > 0, "{summary}");
    // One line per second and the progress lines.
    assert!(stdout.lines().filter(|l| l.contains(" run: reg/s")).count() >= 5);
    assert!(stderr.contains("progress: run"));
}

/// Paced resolvers (`--resolve-rate`) send on schedule: the once-a-second lines add up to
/// no more than that rate allows, far below what closed-loop resolvers reach, and still
/// nothing is lost.
#[test]
fn paced_resolvers_keep_their_rate() {
    let (summary, stdout, stderr) = soak(&[
        "--pes",
        "500",
        "--pools",
        "50",
        "--pes-per-connection",
        "100",
        "--duration",
        "4s",
        "--baseline",
        "1s",
        "--resolvers",
        "2",
        "--resolve-rate",
        "100",
    ]);
    assert_eq!(after(&summary, "lost"), 0, "{summary}");
    assert!(
        stderr.contains("2 resolvers (100 resolutions/s paced)"),
        "{stderr}"
    );
    // The run's per-second resolution counts (the first second may be short).
    let rates: Vec<u64> = stdout
        .lines()
        .filter(|l| l.contains(" run: reg/s"))
        .map(|l| after(l, "res/s"))
        .collect();
    assert!(rates.len() >= 3, "{stdout}");
    // A resolver that fell behind catches up, so only the total is bounded: at most the
    // schedule's (closed-loop resolvers reach thousands per second even in a debug build).
    let total: u64 = rates.iter().sum();
    let bound = 100 * (rates.len() as u64 + 1);
    assert!(total > 0 && total <= bound, "paced at 100/s: {rates:?}");
}
