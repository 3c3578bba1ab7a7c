//! The web dashboard (issue 13, item 2) in headless Chromium, driven over the DevTools
//! protocol: it shows the pool table with the registered PE identifiers, and a PE that
//! dies disappears from the page by the event stream (no reload). Screenshots are kept
//! in the test's scratch directory (`dashboard.png`, `dashboard-after.png`).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use support::*;

/// A page of a headless Chromium, talked to over its DevTools WebSocket.
struct Browser {
    _proc: Proc,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
}

/// GET from Chromium's DevTools HTTP server (which keeps the connection open: the body
/// is delimited by its Content-Length).
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if body.len() >= len {
                return body.to_owned();
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return String::new(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

impl Browser {
    /// Chromium (Debian package `chromium`; scripts/test.sh installs it) opening `url`.
    fn open(url: &str, profile: &std::path::Path) -> Browser {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url);
        let proc = Proc::start("chromium", cmd, &profile.join("wire.log"), &[]);
        // Chromium names its DevTools port on stderr.
        let (_, line) = proc
            .err
            .wait(0, Instant::now() + Duration::from_secs(60), |l| {
                l.contains("DevTools listening on ws://")
            })
            .unwrap_or_else(|| proc.fail("chromium did not start its DevTools endpoint"));
        let ws_url = &line[line.find("ws://").unwrap()..];
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        // The page's own WebSocket.
        let deadline = Instant::now() + Duration::from_secs(30);
        let page_ws = loop {
            let list: Value =
                serde_json::from_str(&http_get(&host, "/json/list")).unwrap_or_default();
            let found = list.as_array().and_then(|a| {
                a.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            });
            if let Some(u) = found {
                break u;
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let stream = TcpStream::connect(&host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client::client(page_ws.as_str(), stream).unwrap();
        Browser {
            _proc: proc,
            ws,
            next_id: 1,
        }
    }

    /// Call a DevTools method and wait for its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluate a JavaScript expression in the page; its value (JSON-able).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// The PE identifiers the pool tables show.
    fn pe_ids(&mut self) -> BTreeSet<String> {
        let v = self.eval(
            "JSON.stringify([...document.querySelectorAll('table.pool tr.pe td.id')].map(t => t.textContent))",
        );
        serde_json::from_str::<Vec<String>>(v.as_str().unwrap_or("[]"))
            .unwrap_or_default()
            .into_iter()
            .collect()
    }
}

#[test]
fn the_dashboard_shows_the_pool_and_follows_a_pe_that_dies() {
    bounded(Duration::from_secs(240), || {
        let dir = scratch("dashboard");
        let log = dir.join("wire.log");
        // Two registrars peered over ENRP: the page lists the other one.
        let ports = [free_port(), free_port()];
        let member = |i: usize| {
            let listen = format!("tcp://127.0.0.1:{}", ports[i]);
            let peer = format!("tcp://127.0.0.1:{}", ports[1 - i]);
            start_registrar(
                "tcp://127.0.0.1:0",
                &log,
                &[
                    "--enrp-listen",
                    &listen,
                    "--peer",
                    &peer,
                    "--heartbeat-cycle",
                    "200ms",
                    "--mentor-discovery-timeout",
                    "500ms",
                ],
            )
        };
        let reg = member(0);
        let other = member(1);
        let stays = start_echo(&reg.asap, &["127.0.0.1:0", "127.0.0.1:0"], &log);
        let mut goes = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let all: BTreeSet<String> = stays
            .entries
            .iter()
            .chain(&goes.entries)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(all.len(), 3);
        let mut b = Browser::open(&format!("http://{}/", reg.admin), &dir.join("profile"));
        wait_until(
            "the pool table lists the 3 PEs",
            Duration::from_secs(60),
            || b.pe_ids() == all,
        );
        wait_until(
            "the event stream is connected",
            Duration::from_secs(30),
            || b.eval("document.getElementById('live').className") == "on",
        );
        let title = b.eval("document.querySelector('.pool-title').dataset.pool");
        assert_eq!(title, "EchoPool");
        let summary = b.eval("document.getElementById('summary').textContent");
        assert!(
            summary.as_str().unwrap_or("").contains("3 PEs"),
            "{summary}"
        );
        wait_until("the peer is listed", Duration::from_secs(60), || {
            b.eval("[...document.querySelectorAll('tr.peer td.id')].map(t => t.textContent).join()")
                .as_str()
                .is_some_and(|t| t.contains(&other.id))
        });
        b.screenshot(&dir.join("dashboard.png"));
        // The page learns of the removal by the event stream: no reload.
        b.eval("window.__marker = 42");
        let gone = goes.entries[0].0.clone();
        goes.proc.kill9();
        let left: BTreeSet<String> = all.iter().filter(|id| **id != gone).cloned().collect();
        wait_until(
            "the dead PE leaves the page",
            Duration::from_secs(60),
            || b.pe_ids() == left,
        );
        assert_eq!(b.eval("window.__marker"), 42, "the page was reloaded");
        wait_until("the rate chart has data", Duration::from_secs(30), || {
            b.eval("document.getElementById('rate-now').textContent")
                .as_str()
                .is_some_and(|t| t.starts_with("now "))
        });
        let summary = b.eval("document.getElementById('summary').textContent");
        assert!(
            summary.as_str().unwrap_or("").contains("2 PEs"),
            "{summary}"
        );
        b.screenshot(&dir.join("dashboard-after.png"));
    });
}
