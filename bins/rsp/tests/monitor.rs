//! `rsp monitor` (issue 13, item 3) in a real terminal: tmux runs it, `capture-pane`
//! reads the screen. It shows the pool and its PEs, follows a PE's load (a session opened
//! on a least-used PE) and a PE that dies, and quits cleanly on `q`.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::*;

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        Tmux {
            socket: format!("rsp-{tag}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is needed: scripts/test.sh installs it");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "mon"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn monitor_shows_the_pool_follows_changes_and_quits_on_q() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("monitor");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        // A least-used PE whose load is its open sessions out of 4.
        let lu = Proc::spawn(
            "serve echo",
            &[
                "serve",
                "echo",
                "-r",
                &reg.asap,
                "--no-announces",
                "--pool",
                "LoadPool",
                "--policy",
                "lu",
                "--capacity",
                "4",
                "--listen",
                "127.0.0.1:0",
            ],
            &log,
        );
        let line = lu.stdout_line("not registered", Duration::from_secs(20), |l| {
            l.starts_with("registered ")
        });
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap()
                .to_owned()
        };
        let (lu_id, lu_addr) = (field("pe="), field("addr="));
        let mut other = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let other_id = other.entries[0].0.clone();
        let exit_file = dir.join("exit");
        let tmux = Tmux::new("monitor");
        let cmd = format!(
            "{RSP} monitor --interval 300ms {}; echo EXIT=$? > {}; sleep 30",
            reg.admin,
            exit_file.display()
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "mon",
            "-x",
            "150",
            "-y",
            "40",
            &cmd,
        ]);
        let wait_screen = |what: &str, cond: &dyn Fn(&str) -> bool| {
            let mut last = String::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                last = tmux.screen();
                if cond(&last) {
                    return last;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("the monitor never showed {what}:\n{last}");
        };
        let screen = wait_screen("both pools and PEs", &|s| {
            s.contains("LoadPool")
                && s.contains("EchoPool")
                && s.contains(&lu_id)
                && s.contains(&other_id)
        });
        assert!(
            screen.contains(&format!("registrar {}", reg.id)),
            "{screen}"
        );
        assert!(screen.contains("2 PEs (2 own) in 2 pools"), "{screen}");
        // The row of the least-used PE shows an empty load bar ...
        let row = |s: &str| {
            s.lines()
                .find(|l| l.contains(&lu_id))
                .unwrap_or("")
                .to_owned()
        };
        assert!(row(&screen).contains("0.0%"), "{screen}");
        // ... then a quarter when one session is open.
        let mut session = TcpStream::connect(lu_addr.trim_start_matches("tcp://")).unwrap();
        session.write_all(b"hi\n").unwrap();
        let mut buf = [0u8; 3];
        session.read_exact(&mut buf).unwrap();
        let screen = wait_screen("the PE's load at 25 %", &|s| row(s).contains("25.0%"));
        assert!(row(&screen).contains("██"), "{screen}");
        // A PE that dies leaves the screen.
        other.proc.kill9();
        wait_screen("the dead PE gone", &|s| {
            !s.contains(&other_id) && s.contains("1 PEs")
        });
        // q quits, with status 0, and gives the terminal back.
        tmux.run(&["send-keys", "-t", "mon", "q"]);
        wait_until("the monitor exits", Duration::from_secs(20), || {
            std::fs::read_to_string(&exit_file).is_ok_and(|t| t.contains("EXIT="))
        });
        assert_eq!(
            std::fs::read_to_string(&exit_file).unwrap().trim(),
            "EXIT=0"
        );
        let screen = tmux.screen();
        assert!(
            !screen.contains("LoadPool"),
            "the screen was not restored:\n{screen}"
        );
        drop(session);
    });
}
