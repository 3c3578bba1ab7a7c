//! Operating the registrar daemon (issue 8, items 10, 12, 15, 16, 17), with real `rsp`
//! processes on loopback: SIGHUP reloads instead of killing, `rsp dump` streams in pages
//! (with a pool filter), settings are range-checked and listed readably, and the log says
//! per-PE things at debug level only.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rserpool_wire::{AsapMessage, Cause, CauseCode};
use support::*;

/// Registrar flags for these tests: ephemeral ports, no announces, no keep-alives (the
/// raw test clients do not answer them).
const QUIET: &[&str] = &[
    "registrar",
    "--listen",
    "tcp://127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--announce=false",
    "--keepalive-interval",
    "0",
];

fn with(extra: &[&str]) -> Vec<String> {
    QUIET.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn alive(p: &mut Proc) -> bool {
    p.child.try_wait().unwrap().is_none()
}

/// The first stderr line from `from` on that contains every one of `words`.
fn wait_err(p: &Proc, from: usize, what: &str, words: &[&str]) -> (usize, String) {
    p.err
        .wait(from, Instant::now() + Duration::from_secs(40), |l| {
            words.iter().all(|w| l.contains(w))
        })
        .unwrap_or_else(|| p.fail(what))
}

fn err_len(p: &Proc) -> usize {
    p.err.lines.lock().unwrap().len()
}

fn validate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(RSP)
        .args(["registrar", "--validate"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ----------------------------------------------------------------------------------------
// Item 10: SIGHUP

#[test]
fn sighup_reloads_the_config_and_keeps_the_handlespace() {
    bounded(Duration::from_secs(90), || {
        let dir = scratch("ops-hup");
        let log = dir.join("wire.log");
        let cfg = dir.join("registrar.toml");
        std::fs::write(&cfg, "default_hr_items = 2\nmax_pes = 100\n").unwrap();
        let args = with(&["--config", cfg.to_str().unwrap()]);
        let mut reg = registrar_with(&strs(&args), &log, &[]);
        register_many(&reg.asap, "HupPool", 1..=6);
        assert_eq!(resolves(&reg.asap, "HupPool"), 2);

        // A new value for a run-time setting, and one that needs a restart.
        std::fs::write(
            &cfg,
            "default_hr_items = 5\nmax_pes = 100\nmax_connections = 50\n",
        )
        .unwrap();
        let from = err_len(&reg.proc);
        send_signal(&reg.proc, "HUP");
        let (_, line) = wait_err(
            &reg.proc,
            from,
            "no reload line",
            &["configuration reloaded", "default_hr_items 2 -> 5"],
        );
        assert!(!line.contains("max_connections"), "{line}");
        wait_err(
            &reg.proc,
            from,
            "no restart warning",
            &["max_connections 4096 -> 50", "restart"],
        );
        assert!(alive(&mut reg.proc), "SIGHUP ended the registrar");
        assert_eq!(pe_ids(&dump(&reg.admin), "HupPool").len(), 6, "PEs lost");
        assert_eq!(
            resolves(&reg.asap, "HupPool"),
            5,
            "the new value does not act"
        );

        // A limit lowered below the current size refuses newcomers, keeps the others.
        std::fs::write(&cfg, "default_hr_items = 5\nmax_pes = 6\n").unwrap();
        let from = err_len(&reg.proc);
        send_signal(&reg.proc, "HUP");
        wait_err(&reg.proc, from, "no reload line", &["max_pes 100 -> 6"]);
        let mut c = Raw::connect(&reg.asap);
        c.send_msg(&registration(
            b"HupPool",
            7,
            rserpool_wire::Policy::RoundRobin,
            4000,
        ));
        match c.recv() {
            Some(AsapMessage::RegistrationResponse { reject: true, .. }) => {}
            other => panic!("expected a refusal at max_pes = 6, got {other:?}"),
        }

        // Broken configurations are logged and change nothing.
        for (text, expect) in [
            ("default_hr_items = 0\n", "default_hr_items"),
            ("default_hr_items = [not toml\n", "registrar.toml"),
            ("default_hr_itemz = 4\n", "default_hr_itemz"),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let from = err_len(&reg.proc);
            send_signal(&reg.proc, "HUP");
            let (_, line) = wait_err(&reg.proc, from, "no error line", &["not reloaded"]);
            assert!(line.contains(expect), "{line}");
            assert!(line.contains("ERROR"), "{line}");
            assert!(alive(&mut reg.proc), "a broken reload ended the registrar");
            assert_eq!(resolves(&reg.asap, "HupPool"), 5);
        }
        std::fs::remove_file(&cfg).unwrap();
        let from = err_len(&reg.proc);
        send_signal(&reg.proc, "HUP");
        wait_err(
            &reg.proc,
            from,
            "no error for a missing file",
            &["cannot read"],
        );
        assert_eq!(pe_ids(&dump(&reg.admin), "HupPool").len(), 6);

        // Still stops gracefully.
        reg.proc.terminate();
        let status = reg.proc.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    });
}

#[test]
fn sighup_without_a_config_file_is_logged_and_harmless() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("ops-hup-nocfg");
        let mut reg = registrar_with(QUIET, &dir.join("wire.log"), &[]);
        register_many(&reg.asap, "P", 1..=2);
        send_signal(&reg.proc, "HUP");
        wait_err(
            &reg.proc,
            0,
            "SIGHUP not logged",
            &["SIGHUP", "without --config"],
        );
        assert!(alive(&mut reg.proc));
        assert_eq!(pe_ids(&dump(&reg.admin), "P").len(), 2);
    });
}

// ----------------------------------------------------------------------------------------
// Item 17 (and the log settings of item 16): per-PE events at debug, summaries at info

#[test]
fn verbose_logs_summaries_not_a_line_per_pe_and_sighup_changes_the_level() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("ops-log");
        let cfg = dir.join("registrar.toml");
        std::fs::write(&cfg, "log_summary_interval = \"1s\"\n").unwrap();
        // `rsp -v registrar …` with RUST_LOG unset: what an operator runs.
        let mut args = vec!["-v".to_string()];
        args.extend(with(&["--config", cfg.to_str().unwrap()]));
        let reg = registrar_with(&strs(&args), &dir.join("wire.log"), &[("RUST_LOG", "")]);
        register_many(&reg.asap, "LogPool", 1..=300);
        let (_, line) = wait_err(
            &reg.proc,
            0,
            "no summary",
            &["handlespace: 1 pools, 300 PEs", "+300 registered"],
        );
        assert!(line.contains("INFO"), "{line}");
        let text = reg.proc.err.text();
        assert!(
            !text.contains("PE registered"),
            "a line per PE at -v:\n{text}"
        );
        assert!(text.lines().count() < 10, "too chatty:\n{text}");

        // The file asks for debug; -v (a flag) wins over the file, so nothing changes…
        std::fs::write(
            &cfg,
            "log_summary_interval = \"1s\"\nlog_level = \"debug\"\n",
        )
        .unwrap();
        send_signal(&reg.proc, "HUP");
        wait_err(
            &reg.proc,
            0,
            "no reload line",
            &["reloaded", "nothing changed"],
        );
        drop(reg);

        // … without -v the file decides, and SIGHUP switches debug on.
        std::fs::write(
            &cfg,
            "log_summary_interval = \"1s\"\nlog_level = \"info\"\n",
        )
        .unwrap();
        let args = with(&["--config", cfg.to_str().unwrap()]);
        let reg = registrar_with(&strs(&args), &dir.join("wire.log"), &[("RUST_LOG", "")]);
        register_many(&reg.asap, "LogPool", 1..=3);
        wait_err(&reg.proc, 0, "no summary", &["+3 registered"]);
        std::fs::write(
            &cfg,
            "log_summary_interval = \"1s\"\nlog_level = \"info,rsp::registrar=debug\"\n",
        )
        .unwrap();
        let from = err_len(&reg.proc);
        send_signal(&reg.proc, "HUP");
        wait_err(
            &reg.proc,
            from,
            "no reload line",
            &[
                "reloaded",
                "log_level \"info\" -> \"info,rsp::registrar=debug\"",
            ],
        );
        // Registered and de-registered over one connection: a de-registration over another
        // connection would be refused while the registrar still counts the first as live
        // (no de-registration by proxy), which a loaded machine makes likely.
        let mut c = Raw::connect(&reg.asap);
        c.send_msg(&registration(
            b"LogPool",
            77,
            rserpool_wire::Policy::RoundRobin,
            1024 + 77,
        ));
        match c.recv() {
            Some(AsapMessage::RegistrationResponse { reject: false, .. }) => {}
            other => panic!("registration of PE 77 not accepted: {other:?}"),
        }
        let (_, line) = wait_err(
            &reg.proc,
            from,
            "no per-PE line at debug",
            &["PE registered"],
        );
        assert!(
            line.contains("pool=LogPool") && line.contains("pe=0x0000004d"),
            "{line}"
        );
        c.send_msg(&AsapMessage::Deregistration {
            handle: "LogPool".into(),
            pe_id: rserpool_wire::PeId(77),
        });
        match c.recv() {
            Some(AsapMessage::DeregistrationResponse { error: None, .. }) => {}
            other => panic!("de-registration of PE 77 not accepted: {other:?}"),
        }
        // The three PEs registered earlier may expire meanwhile (their lifetime runs out
        // on a slow machine): look for this PE's line, and a summary naming its removal.
        let (_, line) = wait_err(
            &reg.proc,
            from,
            "no removal line",
            &["PE removed", "pe=0x0000004d"],
        );
        assert!(line.contains("pe=0x0000004d reason=deregistered"), "{line}");
        wait_err(
            &reg.proc,
            from,
            "no summary",
            &["removed (", "1 deregistered"],
        );
    });
}

#[test]
fn asap_errors_are_logged_in_words() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("ops-asap-error");
        let reg = registrar_with(QUIET, &dir.join("wire.log"), &[("RUST_LOG", "rsp=debug")]);
        let mut c = Raw::connect(&reg.asap);
        c.send_msg(&AsapMessage::Error {
            error: rserpool_wire::OperationError {
                causes: vec![
                    Cause::new(CauseCode::UNRECOGNIZED_MESSAGE),
                    Cause::with_info(CauseCode::INVALID_VALUES, vec![1, 2, 3, 4]),
                ],
            },
        });
        let (_, line) = wait_err(&reg.proc, 0, "no ASAP_ERROR line", &["ASAP_ERROR received"]);
        assert!(line.contains("unrecognized message (0x2)"), "{line}");
        assert!(line.contains("invalid values (0x3)"), "{line}");
        for debug in ["causes", "Cause {", "CauseCode(", "info: ["] {
            assert!(!line.contains(debug), "debug text {debug:?} in {line}");
        }
    });
}

#[test]
fn log_json_is_a_configuration_key() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("ops-log-json");
        let cfg = dir.join("registrar.toml");
        std::fs::write(&cfg, "log_json = true\n").unwrap();
        let args = with(&["--config", cfg.to_str().unwrap()]);
        let mut reg = registrar_with(&strs(&args), &dir.join("wire.log"), &[]);
        send_signal(&reg.proc, "HUP");
        let (_, line) = wait_err(&reg.proc, 0, "no reload line", &["reloaded"]);
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert_eq!(v["level"], "INFO", "{line}");
        assert!(alive(&mut reg.proc));
    });
}

// ----------------------------------------------------------------------------------------
// Item 16: settings

#[test]
fn absurd_values_are_refused_naming_the_setting() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("ops-ranges");
        let cases: &[(&str, &str, &str)] = &[
            // (key, TOML value, flag value)
            ("keepalive_timeout", "\"0s\"", "0s"),
            ("keepalive_interval", "\"0.001ms\"", "0.001ms"),
            ("announce_interval", "\"0s\"", "0s"),
            ("max_pes", "0", "0"),
            ("default_hr_items", "0", "0"),
            ("default_hr_items", "129", "129"),
            ("max_hr_items", "0", "0"),
            ("max_bad_pe_reports", "0", "0"),
            ("write_queue", "0", "0"),
            ("max_message_len", "100", "100"),
            ("max_message_len", "65536", "65536"),
            ("max_connections", "0", "0"),
            ("admin", "\"0.0.0.0:9990\"", "0.0.0.0:9990"),
            ("admin", "\"[::]:9990\"", "[::]:9990"),
            ("keepalive_jitter_percent", "91", "91"),
            ("multicast_ttl", "256", "256"),
            ("connect_timeout", "\"10ms\"", "10ms"),
            ("log_summary_interval", "\"10ms\"", "10ms"),
            ("log_level", "\"info,=,x=y=z\"", "info,=,x=y=z"),
        ];
        for (i, (key, toml_value, flag_value)) in cases.iter().enumerate() {
            let flag = format!("--{}", key.replace('_', "-"));
            let (code, _, err) = validate(&[&flag, flag_value]);
            assert_eq!(code, Some(2), "{flag} {flag_value} accepted: {err}");
            assert!(err.contains(key), "{flag} {flag_value}: {err}");
            assert!(!err.contains("Some(") && !err.contains('{'), "{err}");
            let file = dir.join(format!("case{i}.toml"));
            std::fs::write(&file, format!("{key} = {toml_value}\n")).unwrap();
            let (code, _, err) = validate(&["--config", file.to_str().unwrap()]);
            assert_eq!(code, Some(2), "{key} = {toml_value} accepted: {err}");
            assert!(err.contains(key), "{key} = {toml_value}: {err}");
        }
        // The edges are accepted, and so is a remote admin with the explicit opt-in.
        let (code, out, err) = validate(&[
            "--keepalive-timeout",
            "100ms",
            "--keepalive-interval",
            "0",
            "--max-pes",
            "1",
            "--default-hr-items",
            "1",
            "--max-hr-items",
            "1",
            "--max-bad-pe-reports",
            "1",
            "--write-queue",
            "1",
            "--multicast-ttl",
            "0",
            "--keepalive-jitter-percent",
            "90",
            "--admin",
            "0.0.0.0:9990",
            "--admin-allow-remote",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("keepalive_interval = \"0s\""), "{out}");
        assert!(out.contains("admin = \"0.0.0.0:9990\""), "{out}");
    });
}

/// Long flags of `rsp registrar --help` and the TOML key each stands for.
fn flag_keys() -> Vec<(String, String)> {
    let out = Command::new(RSP)
        .args(["registrar", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let mut keys = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix('-')
            .filter(|r| r.chars().nth(1) == Some(','))
            .map_or(t, |r| r[2..].trim_start());
        let Some(flag) = t.strip_prefix("--") else {
            continue;
        };
        let flag: String = flag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let key = match flag.as_str() {
            "help" | "version" | "config" | "validate" => continue,
            "verbose" => "log_level".to_owned(),
            other => other.replace('-', "_"),
        };
        keys.push((flag, key));
    }
    keys
}

#[test]
fn validate_prints_a_config_file_and_every_flag_has_a_key() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("ops-validate");
        let (code, out, err) = validate(&[
            "--listen",
            "tcp://127.0.0.1:3999",
            "--server-id",
            "0x1234",
            "--keepalive-interval",
            "1500ms",
            "--wire-log",
            "/tmp/wire.log",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("configuration ok"), "{out}");
        for debug in [
            "{", "Some(", "None", "Duration", "Endpoint", "secs:", "nanos",
        ] {
            assert!(!out.contains(debug), "debug text {debug:?} in:\n{out}");
        }
        assert!(out.contains("keepalive_interval = \"1500ms\""), "{out}");
        assert!(out.contains("server_id = \"0x00001234\""), "{out}");
        for line in out.lines() {
            assert!(
                line.starts_with('#') || line.contains(" = "),
                "not `key = value`: {line}"
            );
        }
        // The listing is a valid configuration that means the same.
        let file = dir.join("listed.toml");
        std::fs::write(&file, &out).unwrap();
        let (code, again, err) = validate(&["--config", file.to_str().unwrap()]);
        assert_eq!(
            code,
            Some(0),
            "the listing is not a valid config: {err}\n{out}"
        );
        assert_eq!(again, out);
        // Unset settings are listed as comments.
        let (_, defaults, _) = validate(&[]);
        assert!(defaults.contains("# server_id: random"), "{defaults}");
        assert!(defaults.contains("# wire_log: off"), "{defaults}");

        // Every flag is a key of the listing, hence of the file.
        let keys = flag_keys();
        assert!(keys.len() > 20, "{keys:?}");
        for (flag, key) in &keys {
            assert!(
                out.contains(&format!("\n{key} = ")) || out.contains(&format!("# {key}:")),
                "--{flag}: no `{key}` key in the listing:\n{out}"
            );
        }
        for key in [
            "log_json",
            "log_level",
            "max_hr_items",
            "probe_on_unreachable",
        ] {
            assert!(
                keys.iter().any(|(_, k)| k == key),
                "{key} has no flag: {keys:?}"
            );
        }
    });
}

// ----------------------------------------------------------------------------------------
// Item 12: dump in pages, --pool

#[test]
fn dump_filters_pools() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("ops-dump-pool");
        let reg = registrar_with(QUIET, &dir.join("wire.log"), &[]);
        register_many(&reg.asap, "Alpha", 1..=3);
        register_many(&reg.asap, "Beta", 1..=4);
        register_many(&reg.asap, "Gamma", 1..=5);
        let run = |args: &[&str]| {
            let out = Command::new(RSP)
                .args(["dump", "--admin", &reg.admin])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let doc: serde_json::Value =
            serde_json::from_str(&run(&["--json", "--pool", "Gamma", "--pool", "Alpha"])).unwrap();
        let handles: Vec<&str> = doc["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["handle"].as_str().unwrap())
            .collect();
        assert_eq!(handles, ["Alpha", "Gamma"]);
        assert_eq!(doc["pool_count"], 2);
        assert_eq!(doc["pe_count"], 8);
        assert_eq!(pe_ids(&doc, "Gamma").len(), 5);
        let table = run(&["--pool", "Beta"]);
        assert!(table.contains("1 pool(s), 4 PE(s)"), "{table}");
        assert!(!table.contains("Alpha"), "{table}");
        let none: serde_json::Value =
            serde_json::from_str(&run(&["--json", "--pool", "Nope"])).unwrap();
        assert_eq!(
            (none["pool_count"].clone(), none["pe_count"].clone()),
            (0.into(), 0.into())
        );
        // Unfiltered: everything, as before.
        let all = dump(&reg.admin);
        assert_eq!(all["pool_count"], 3);
        assert_eq!(all["pe_count"], 12);
        // A bad request gets an answer in words.
        let mut s = std::net::TcpStream::connect(&reg.admin).unwrap();
        std::io::Write::write_all(&mut s, b"{\"request\":\"drop tables\"}\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(answer.contains("unknown request"), "{answer}");
    });
}

#[test]
fn a_large_dump_is_streamed_in_pages_and_does_not_hold_the_whole_document() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("ops-dump-big");
        // 30,000 PEs over a few connections from 127.0.0.1: no PE quotas.
        let args = with(&[
            "--max-pes-per-connection",
            "0",
            "--max-pes-per-source",
            "0",
            "--max-registration-rate",
            "0",
        ]);
        let mut reg = registrar_with(&strs(&args), &dir.join("wire.log"), &[]);
        // 30,000 PEs: one pool larger than a dump page, many small ones.
        register_many(&reg.asap, "Big", 1..=18_000);
        for p in 0..60 {
            register_many(&reg.asap, &format!("Small{p:02}"), 1..=200);
        }
        let pid = reg.proc.pid();
        let peak_before = vm_kb(pid, "VmHWM");
        let first = dump(&reg.admin);
        let doc_bytes = serde_json::to_vec(&first).unwrap().len() as u64;
        assert_eq!(first["pe_count"], 30_000);
        assert_eq!(pe_ids(&first, "Big").len(), 18_000);
        for _ in 0..3 {
            let doc = dump(&reg.admin);
            assert_eq!(doc["pe_count"], 30_000);
            assert_eq!(doc["pool_count"], 61);
            let big = &doc["pools"].as_array().unwrap()[0];
            assert_eq!(big["handle"], "Big", "one pool object per pool");
            assert_eq!(big["pes"].as_array().unwrap().len(), 18_000);
        }
        let peak_after = vm_kb(pid, "VmHWM");
        // A dump that built the document (or a snapshot of it) at once would raise the
        // peak by at least the document's size.
        let grew = peak_after.saturating_sub(peak_before) * 1024;
        eprintln!("peak memory +{grew} bytes over dumps of {doc_bytes} bytes");
        assert!(
            grew < doc_bytes / 2,
            "peak memory grew by {grew} bytes over three dumps of {doc_bytes} bytes"
        );
        assert!(alive(&mut reg.proc));
    });
}

#[test]
fn a_registrar_restarts_on_its_admin_port_right_after_a_dump() {
    bounded(Duration::from_secs(60), || {
        let dir = scratch("ops-admin-restart");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let admin = format!("127.0.0.1:{port}");
        let mut args = with(&[]);
        let i = args.iter().position(|a| a == "127.0.0.1:0").unwrap();
        args[i] = admin.clone();
        let mut reg = registrar_with(&strs(&args), &dir.join("wire.log"), &[]);
        register_many(&reg.asap, "P", 1..=3);
        assert_eq!(pe_ids(&dump(&reg.admin), "P").len(), 3);
        reg.proc.terminate();
        assert!(reg.proc.wait_exit(Duration::from_secs(10)).is_some());
        // The dump's connection is in TIME_WAIT on the registrar's side now.
        let again = registrar_with(&strs(&args), &dir.join("wire.log"), &[]);
        assert_eq!(again.admin, admin);
        assert_eq!(dump(&again.admin)["pe_count"], 0);
    });
}
