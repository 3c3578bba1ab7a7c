//! Component Status Protocol reports: RSPLIB's own `cspmonitor` (Debian `rsplib-tools`)
//! shows our registrar, PE and pool users (the gateway, `rsp call`) with their status lines, and a
//! component that stops disappears after its FINAL report. Wireshark's CSP dissector
//! decodes our reports clean.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// `cspmonitor` on 127.0.0.1:`port`, or `None` (with a note) where it is not installed.
fn monitor(port: u16, log: &std::path::Path) -> Option<Proc> {
    if Command::new("cspmonitor")
        .arg("-bad-argument")
        .output()
        .is_err()
    {
        eprintln!("cspmonitor not installed (Debian rsplib-tools); skipped");
        return None;
    }
    let mut cmd = Command::new("cspmonitor");
    cmd.args([
        &format!("-localaddress=127.0.0.1:{port}"),
        "-updateinterval=200",
        "-purgeinterval=1000",
        "-full",
    ]);
    Some(Proc::start("cspmonitor", cmd, log, &[]))
}

/// "PR $0a1b2c3d" for "0xa1b2c3d".
fn shown(kind: &str, id: &str) -> String {
    let hex = id.trim_start_matches("0x");
    format!("{kind} ${hex:0>8}")
}

#[test]
fn cspmonitor_shows_the_registrar_the_pe_and_the_gateway() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("csp-monitor");
        let log = dir.join("wire.log");
        let port = free_port();
        let Some(mon) = monitor(port, &log) else {
            return;
        };
        let csp = format!("127.0.0.1:{port}");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--csp-server", &csp, "--csp-interval", "200"],
        );
        let pe = Proc::spawn(
            "serve echo",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--listen",
                "127.0.0.1:0",
                "--csp-server",
                &csp,
                "--csp-interval",
                "200ms",
            ],
            &log,
        );
        let pe_id = pe.registered_pe("did not register", Duration::from_secs(20));
        // The pool user: a gateway in front of the pool, reporting by the environment
        // variables as RSPLIB's tools take them.
        let gw_port = free_port();
        let _gw = spawn_env(
            "gateway",
            &[
                "gateway",
                "-r",
                &reg.asap,
                "--no-announces",
                "--map",
                &format!("tcp://127.0.0.1:{gw_port}=EchoPool"),
            ],
            &log,
            &[("CSP_SERVER", &csp), ("CSP_INTERVAL", "200")],
        );
        // A second pool user: `rsp call`, counting the lines it sent.
        let mut call = Proc::spawn(
            "call",
            &[
                "call",
                "EchoPool",
                "-r",
                &reg.asap,
                "--no-announces",
                "--csp-server",
                &csp,
                "--csp-interval",
                "200",
            ],
            &log,
        );
        call.send_line("hello");
        let pr = shown("PR", &reg.id);
        let pe_shown = shown("PE", &pe_id);
        let want_pr = "1[1] PEs in 1 Pools, 0 Peers";
        let want_pe = format!("EchoPool echo: registered, home {}", &pr[3..]);
        let deadline = Instant::now() + Duration::from_secs(30);
        for (what, needle) in [
            ("the registrar", pr.clone()),
            ("the registrar's status", want_pr.to_owned()),
            ("the PE", pe_shown.clone()),
            ("the PE's status", want_pe.clone()),
            ("the pool user", "PU $".to_owned()),
            (
                "the gateway's status",
                "Gateway EchoPool: 0 open".to_owned(),
            ),
            ("rsp call's status", "rsp call EchoPool: 1 lines".to_owned()),
        ] {
            if mon.out.wait(0, deadline, |l| l.contains(&needle)).is_none() {
                mon.fail(&format!("cspmonitor never showed {what} ({needle:?})"));
            }
        }
        // The PE stops: its FINAL report makes the monitor drop it at the next purge.
        let mut pe = pe;
        let from = mon.out.lines.lock().unwrap().len();
        pe.terminate();
        pe.wait_exit(Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(20);
        if mon
            .out
            .wait(from, deadline, |l| {
                l.contains("1 PRs") && l.contains("0 PEs")
            })
            .is_none()
        {
            mon.fail("the PE stayed on the monitor after it stopped");
        }
        // And the registrar counts it gone.
        if mon
            .out
            .wait(from, deadline, |l| {
                l.contains("0[0] PEs in 0 Pools, 0 Peers")
            })
            .is_none()
        {
            mon.fail("the registrar's status never showed the PE gone");
        }
    });
}

/// Our reports as Wireshark's CSP dissector sees them: every field where RSPLIB puts it.
#[test]
fn wireshark_decodes_our_csp_reports() {
    bounded(Duration::from_secs(120), || {
        if Command::new("tshark").arg("-v").output().is_err() {
            eprintln!("tshark not installed; skipped");
            return;
        }
        let dir = scratch("csp-tshark");
        let log = dir.join("wire.log");
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let csp = sink.local_addr().unwrap().to_string();
        let mut reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &["--csp-server", &csp, "--csp-interval", "100"],
        );
        let mut buf = [0u8; 65536];
        let n = sink.recv(&mut buf).expect("a CSP report");
        let report = buf[..n].to_vec();
        reg.proc.terminate();
        // The FINAL report on the way out.
        let fin = loop {
            let n = sink.recv(&mut buf).expect("the FINAL report");
            if buf[1] & 1 == 1 {
                break buf[..n].to_vec();
            }
        };
        for (name, bytes) in [("report", &report), ("final", &fin)] {
            let hex = dir.join(format!("{name}.txt"));
            let mut text = String::new();
            for (i, chunk) in bytes.chunks(16).enumerate() {
                text.push_str(&format!("{:06x}", i * 16));
                for b in chunk {
                    text.push_str(&format!(" {b:02x}"));
                }
                text.push('\n');
            }
            std::fs::write(&hex, text).unwrap();
            let pcap = dir.join(format!("{name}.pcap"));
            let st = Command::new("text2pcap")
                .args(["-q", "-u", "40000,2960"])
                .arg(&hex)
                .arg(&pcap)
                .status()
                .unwrap();
            assert!(st.success(), "text2pcap failed");
            let out = Command::new("tshark")
                .args(["-r"])
                .arg(&pcap)
                .args(["-V", "-o", "gui.column.format:\"Info\",\"%i\""])
                .output()
                .unwrap();
            let tree = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "tshark failed: {tree}");
            assert!(
                tree.contains("Component Status Protocol"),
                "not decoded as CSP:\n{tree}"
            );
            assert!(
                !tree.contains("Malformed") && !tree.contains("Expert Info (Error"),
                "Wireshark finds a problem in our {name}:\n{tree}"
            );
            let id = reg.id.trim_start_matches("0x");
            assert!(
                tree.to_lowercase().contains(&format!("{id:0>8}")),
                "the sender's object is not our server id {id}:\n{tree}"
            );
            if name == "report" {
                assert!(
                    tree.contains("0[0] PEs in 0 Pools, 0 Peers"),
                    "status text missing:\n{tree}"
                );
            }
        }
    });
}
