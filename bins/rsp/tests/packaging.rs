//! The Debian package: built with cargo-deb (`packaging/build-deb.sh`), installed by dpkg
//! into an empty root, its systemd units checked by `systemd-analyze`, and the registrar
//! started the way the unit starts it (this machine runs no systemd, so the unit's own
//! command lines are run), reloaded with SIGHUP and stopped. Completions and man pages
//! come from the binary.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The unit's `Key=` lines (several for repeated keys).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_deb_installs_and_its_registrar_unit_starts_reloads_and_stops() {
    bounded(Duration::from_secs(600), || {
        if !have("cargo-deb", "--version") || !have("dpkg", "--version") {
            eprintln!("cargo-deb or dpkg missing (scripts/test.sh installs cargo-deb); skipped");
            return;
        }
        let ws = workspace();
        // The binary under test is the debug build; the package takes it from there.
        let st = Command::new(ws.join("packaging/build-deb.sh"))
            .args(["--profile", "dev", "--no-build"])
            .current_dir(&ws)
            .status()
            .unwrap();
        assert!(st.success(), "packaging/build-deb.sh failed");
        let deb = std::fs::read_dir(ws.join("target/debian"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
            .expect("a .deb");
        let info = Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout).into_owned();
        assert!(info.contains("Package: rserpool"), "{info}");
        assert!(info.contains("conffiles"), "{info}");

        // Install into an empty root with its own dpkg database.
        let dir = scratch("packaging");
        let root = dir.join("root");
        let db = root.join("var/lib/dpkg");
        for d in ["info", "updates"] {
            std::fs::create_dir_all(db.join(d)).unwrap();
        }
        for f in ["status", "available"] {
            std::fs::write(db.join(f), "").unwrap();
        }
        let out = Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-depends", "--log=/dev/null", "-i"])
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dpkg -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = std::fs::read_to_string(db.join("status")).unwrap();
        assert!(status.contains("Package: rserpool"), "{status}");
        assert!(
            status.contains("/etc/rserpool/registrar.toml"),
            "conffile not recorded"
        );
        for f in [
            "usr/bin/rsp",
            "etc/rserpool/registrar.toml",
            "lib/systemd/system/rserpool-registrar.service",
            "lib/systemd/system/rserpool-pe@.service",
            "usr/share/bash-completion/completions/rsp",
            "usr/share/man/man1/rsp-registrar.1",
        ] {
            assert!(root.join(f).exists(), "{f} not installed");
        }
        let rsp = root.join("usr/bin/rsp");
        let in_root = |s: &str| {
            s.replace("/usr/bin/rsp", &rsp.display().to_string())
                .replace(
                    "/etc/rserpool",
                    &root.join("etc/rserpool").display().to_string(),
                )
        };

        // The units: systemd's own checks, with the paths pointing into the root.
        if have("systemd-analyze", "--version") {
            for unit in ["rserpool-registrar.service", "rserpool-pe@.service"] {
                let text =
                    std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
                let name = unit.replace("@.", "@echo.");
                let copy = dir.join(&name);
                std::fs::write(&copy, in_root(&text)).unwrap();
                let out = Command::new("systemd-analyze")
                    .args(["verify", "--man=no"])
                    .arg(&copy)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "systemd-analyze verify {unit}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let out = Command::new("systemd-analyze")
                .arg("security")
                .arg("--offline=yes")
                .arg(format!("--root={}", root.display()))
                .arg("rserpool-registrar.service")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let level = text
                .lines()
                .find_map(|l| {
                    l.split("exposure level for rserpool-registrar.service: ")
                        .nth(1)
                })
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no exposure level in: {text}"));
            println!("figure: systemd-analyze security exposure {level} (0 = best, 10 = worst)");
            assert!(level <= 2.0, "the registrar unit is not sandboxed: {text}");
        }

        // Start it as the unit does: ExecStartPre (validate), ExecStart — with loopback
        // ports for the test (flags win over the installed file).
        let unit =
            std::fs::read_to_string(root.join("lib/systemd/system/rserpool-registrar.service"))
                .unwrap();
        let words = |line: &str| -> Vec<String> {
            in_root(line)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let pre = words(&unit_values(&unit, "ExecStartPre")[0]);
        let out = Command::new(&pre[0]).args(&pre[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "ExecStartPre failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = words(&unit_values(&unit, "ExecStart")[0]);
        let log = dir.join("wire.log");
        let mut cmd = Command::new(&start[0]);
        cmd.args(&start[1..]).args([
            "--listen",
            "tcp://127.0.0.1:0",
            "--enrp-listen",
            "tcp://127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--announce=false",
            "--log-level",
            "info",
        ]);
        let reg = Registrar::started(Proc::start("installed registrar", cmd, &log, &[]));
        let pe = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        assert_eq!(resolves(&reg.asap, "EchoPool"), 1);
        // ExecReload: SIGHUP re-reads the installed file.
        assert_eq!(
            unit_values(&unit, "ExecReload")[0],
            "/bin/kill -HUP $MAINPID"
        );
        send_signal(&reg.proc, "HUP");
        if reg
            .proc
            .err
            .wait(
                0,
                std::time::Instant::now() + Duration::from_secs(20),
                |l| l.contains("SIGHUP: configuration reloaded"),
            )
            .is_none()
        {
            reg.proc.fail("no reload after SIGHUP");
        }
        drop(pe);
        let mut reg = reg;
        reg.proc.terminate();
        let st = reg.proc.wait_exit(Duration::from_secs(20)).expect("exit");
        assert!(st.success(), "the registrar stopped with {st}");

        // Completions load in bash; the man pages render.
        let bash = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {} && complete -p rsp",
                root.join("usr/share/bash-completion/completions/rsp")
                    .display()
            ))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&bash.stdout).contains("rsp"),
            "bash completion not registered: {}",
            String::from_utf8_lossy(&bash.stderr)
        );
        if have("man", "--version") {
            let man = Command::new("man")
                .arg("-l")
                .arg(root.join("usr/share/man/man1/rsp-registrar.1"))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .output()
                .unwrap();
            let page = String::from_utf8_lossy(&man.stdout);
            assert!(
                man.status.success() && page.contains("--csp-server"),
                "{page}"
            );
        }
        // Passed: the installed tree (about 200 MB) goes; a failing run keeps it to read.
        let _ = std::fs::remove_dir_all(&dir);
    });
}
