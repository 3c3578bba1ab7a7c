//! Exit statuses, the same for every subcommand: 2 for usage and configuration errors
//! (the user's to fix), 1 for failures at run time.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

const RSP: &str = env!("CARGO_BIN_EXE_rsp");

fn rsp(args: &[&str]) -> Output {
    Command::new(RSP)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RSERPOOL_WIRE_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_flag_exits_2() {
    for args in [
        &["registrar", "--no-such-flag"][..],
        &["serve", "echo", "--policy", "no-such-policy"],
        &["call"],
        &["dump", "--admin", "not an address"],
    ] {
        let o = rsp(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn a_bad_configuration_exits_2() {
    let dir = std::env::temp_dir().join(format!("rsp-exit-codes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "max_connections = 0\n").unwrap();
    let o = rsp(&["registrar", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("max_connections"), "{}", stderr(&o));
    let o = rsp(&[
        "registrar",
        "--config",
        dir.join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_enrp_setting_exits_2() {
    for args in [
        &["registrar", "--heartbeat-cycle", "10ms"][..],
        &["registrar", "--takeover-election", "oldest"],
        &["registrar", "--peer", "udp://127.0.0.1:9901"],
        &["registrar", "--presence-group", "127.0.0.1:9901"],
        &["registrar", "--max-pes-per-response", "0"],
        &[
            "registrar",
            "--enrp-listen",
            "off",
            "--enrp-listen",
            "tcp://127.0.0.1:0",
        ],
    ] {
        let o = rsp(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn an_explicit_enrp_port_already_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    let o = rsp(&[
        "registrar",
        "--listen",
        "tcp://127.0.0.1:0",
        "--enrp-listen",
        &url,
        "--admin",
        "off",
        "--announce=false",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {url}")), "{err}");
}

#[test]
fn a_registrar_port_already_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    let o = rsp(&[
        "registrar",
        "--listen",
        &url,
        "--admin",
        "off",
        "--announce=false",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
}

#[test]
fn call_without_a_registrar_exits_1() {
    // Nothing listens on port 9 of loopback; no announces are listened for.
    let o = rsp(&[
        "call",
        "EchoPool",
        "-r",
        "tcp://127.0.0.1:9",
        "--no-announces",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
