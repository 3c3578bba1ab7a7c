//! MPTCP (`mptcp://`) for real: two hosts (network namespaces) joined by two links, a PE
//! registering over MPTCP with a second subflow on the second link, and ENRP between two
//! registrars over MPTCP. The first link goes down: the PE's keep-alives and the peers'
//! presences go on over the second subflow, nothing is removed or taken over. The same for
//! a pool user's session with a PE (`--session-mptcp` to a PE on `mptcp://`), and the
//! message where the kernel has MPTCP turned off.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn run(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn in_ns(ns: &Netns, args: &[&str]) -> String {
    let mut a = vec!["ip", "netns", "exec", &ns.name];
    a.extend_from_slice(args);
    run(&a)
}

/// `rsp dump --json` inside a namespace.
fn dump_in(ns: &Netns, admin: &str) -> Value {
    let out = ns
        .command(&["dump", "--json", "--admin", admin])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Messages of `kind` the registrar sent and received so far.
fn counted(doc: &Value, kind: &str) -> (u64, u64) {
    doc["counters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["message"] == kind))
        .map_or((0, 0), |c| {
            (
                c["sent"].as_u64().unwrap_or(0),
                c["received"].as_u64().unwrap_or(0),
            )
        })
}

/// TCP subflows (`tcp-ulp-mptcp`) to `addr` in namespace `ns`.
fn subflows(ns: &Netns, to: &str) -> usize {
    in_ns(ns, &["ss", "-tni"])
        .split("\n")
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].contains(to) && w[1].contains("tcp-ulp-mptcp"))
        .count()
}

/// TCP subflows (`tcp-ulp-mptcp`) in namespace `ns` to any address at the port of `to`
/// (a subflow may go to another address of the peer, e.g. one it announced).
fn subflows_to_port(ns: &Netns, to: &str) -> usize {
    let port = format!(":{}", to.rsplit(':').next().unwrap_or_default());
    in_ns(ns, &["ss", "-tni"])
        .split("\n")
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| {
            w[0].split_whitespace()
                .nth(4)
                .is_some_and(|peer| peer.ends_with(&port))
                && w[1].contains("tcp-ulp-mptcp")
        })
        .count()
}

/// Hosts `a` and `b` joined by two links with MPTCP on. Path N (1, 2) is the veth pair
/// `{tag}aN` / `{tag}bN` with 10.{net}.N.0/24 and fd{net}:N::/64 (A .1 and ::1, B .2 and
/// ::2). Each MPTCP connection may have two more subflows: A opens one from its path-2
/// addresses, B announces its path-2 addresses.
fn two_paths(a: &Netns, b: &Netns, tag: &str, net: u8) {
    for ns in [a, b] {
        in_ns(ns, &["sysctl", "-q", "net.mptcp.enabled=1"]);
    }
    for path in 1..=2 {
        let (va, vb) = (format!("{tag}a{path}"), format!("{tag}b{path}"));
        run(&[
            "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb,
            "netns", &b.name,
        ]);
        for (ns, dev, host) in [(a, &va, 1), (b, &vb, 2)] {
            ns.ip(&[
                "addr",
                "add",
                &format!("10.{net}.{path}.{host}/24"),
                "dev",
                dev,
            ]);
            ns.ip(&[
                "addr",
                "add",
                &format!("fd{net}:{path}::{host}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ns.ip(&["link", "set", dev, "up"]);
        }
    }
    for ns in [a, b] {
        ns.ip(&[
            "mptcp",
            "limits",
            "set",
            "subflows",
            "2",
            "add_addr_accepted",
            "2",
        ]);
    }
    for (ns, host, how) in [(a, 1, "subflow"), (b, 2, "signal")] {
        let dev = format!("{tag}{}2", if host == 1 { "a" } else { "b" });
        for addr in [format!("10.{net}.2.{host}"), format!("fd{net}:2::{host}")] {
            ns.ip(&["mptcp", "endpoint", "add", &addr, "dev", &dev, how]);
        }
    }
}

#[test]
fn mptcp_carries_asap_and_enrp_over_two_paths_and_survives_one_going_down() {
    bounded(Duration::from_secs(240), || {
        let (Some(a), Some(b)) = (Netns::new("mpa"), Netns::new("mpb")) else {
            return;
        };
        two_paths(&a, &b, "m", 92);

        let dir = scratch("mptcp");
        let log = dir.join("wire.log");
        let fast = [
            "--keepalive-interval",
            "300ms",
            "--keepalive-timeout",
            "1s",
            "--heartbeat-cycle",
            "200ms",
            "--max-time-last-heard",
            "1s",
            "--max-time-no-response",
            "1s",
            "--announce=false",
        ];
        let mut args = vec![
            "registrar",
            "--listen",
            "mptcp://10.92.1.2:3863",
            "--listen",
            "tcp://127.0.0.1:3863",
            "--enrp-listen",
            "mptcp://10.92.1.2:9901",
            "--admin",
            "127.0.0.1:9990",
        ];
        args.extend_from_slice(&fast);
        let rb = Registrar::started(b.spawn("registrar B", &args, &log));
        let mut args = vec![
            "registrar",
            "--listen",
            "tcp://127.0.0.1:3863",
            "--enrp-listen",
            "off",
            "--admin",
            "127.0.0.1:9990",
            "--peer",
            "mptcp://10.92.1.2:9901",
        ];
        args.extend_from_slice(&fast);
        let ra = Registrar::started(a.spawn("registrar A", &args, &log));
        let pe = a.spawn(
            "pe over mptcp",
            &[
                "serve",
                "echo",
                "-r",
                "mptcp://10.92.1.2:3863",
                "--no-announces",
                "--listen",
                "10.92.1.1:0",
            ],
            &log,
        );
        let pe_id = pe.registered_pe("did not register over MPTCP", Duration::from_secs(20));
        wait_until(
            "A to hold B's PE (ENRP over MPTCP)",
            Duration::from_secs(30),
            || pe_ids(&dump_in(&a, &ra.admin), "EchoPool").contains(&pe_id),
        );
        // Really MPTCP: an mptcp socket to B and two TCP subflows under it.
        wait_until("two subflows towards B", Duration::from_secs(20), || {
            in_ns(&a, &["ss", "-Mtn"]).contains("10.92.1.2:3863")
                && subflows(&a, "10.92.1.2:3863") >= 2
        });
        println!("{}", in_ns(&a, &["ss", "-Mtn"]));

        // Path 1 goes down (admin down on A's side: B's end loses its carrier).
        let before = dump_in(&b, &rb.admin);
        let (ka_sent, _) = counted(&before, "ASAP_ENDPOINT_KEEP_ALIVE");
        let (_, pres_rx) = counted(&before, "ENRP_PRESENCE");
        a.ip(&["link", "set", "ma1", "down"]);
        // Ten more keep-alives answered and ten more presences heard by B, over path 2.
        wait_until(
            "keep-alives and presences after the cut",
            Duration::from_secs(60),
            || {
                let d = dump_in(&b, &rb.admin);
                let (_, acks) = counted(&d, "ASAP_ENDPOINT_KEEP_ALIVE_ACK");
                let (ka, _) = counted(&d, "ASAP_ENDPOINT_KEEP_ALIVE");
                let (_, pres) = counted(&d, "ENRP_PRESENCE");
                ka >= ka_sent + 10 && acks + 1 >= ka && pres >= pres_rx + 10
            },
        );
        let after = dump_in(&b, &rb.admin);
        assert!(
            pe_ids(&after, "EchoPool").contains(&pe_id),
            "the PE was lost with path 1"
        );
        assert_eq!(
            after["enrp"]["peers"].as_array().map(|p| p.len()),
            Some(1),
            "{}",
            after["enrp"]
        );
        assert!(pe_ids(&dump_in(&a, &ra.admin), "EchoPool").contains(&pe_id));
    });
}

/// The pool-user to pool-element session over MPTCP, IPv4 and IPv6: a PE per family
/// listening on `mptcp://` on one host, `rsp pingpong --session-mptcp` on the other, two
/// links between them. Each session has a subflow on each link; the first link goes down
/// and the Pings go on over the second, on the same PE: no failover, no lost or repeated
/// reply.
#[test]
fn sessions_over_mptcp_keep_their_pe_when_one_path_goes_down() {
    bounded(Duration::from_secs(240), || {
        let (Some(a), Some(b)) = (Netns::new("msa"), Netns::new("msb")) else {
            return;
        };
        two_paths(&a, &b, "s", 93);

        let dir = scratch("mptcp-session");
        let log = dir.join("wire.log");
        let _registrar = Registrar::started(b.spawn(
            "registrar",
            &[
                "registrar",
                // Wildcards: a subflow may come to any address of the host (the
                // ADD_ADDR of path 2's address, `signal` in `two_paths`).
                "--listen",
                "mptcp://0.0.0.0:3863",
                "--listen",
                "mptcp://[::]:3863",
                "--listen",
                "tcp://127.0.0.1:3864",
                "--enrp-listen",
                "off",
                "--admin",
                "127.0.0.1:9990",
                "--announce=false",
            ],
            &log,
        ));
        // Per family: the PE (its id and session address) and the PU.
        let mut sessions = Vec::new();
        for (family, at_b, any) in [("4", "10.93.1.2", "0.0.0.0"), ("6", "[fd93:1::2]", "[::]")] {
            let pool = format!("PingPong{family}");
            let registrar = format!("mptcp://{at_b}:3863");
            let pe = b.spawn(
                &format!("pingpong PE on mptcp, IPv{family}"),
                &[
                    "serve",
                    "pingpong",
                    "--pool",
                    &pool,
                    "-r",
                    &registrar,
                    "--no-announces",
                    // The wildcard registers the address that routes to the registrar:
                    // path 1's.
                    "--listen",
                    &format!("mptcp://{any}:0"),
                ],
                &log,
            );
            let pe_id = pe.registered_pe("did not register", Duration::from_secs(20));
            pe.stdout_line("no mptcp listener", Duration::from_secs(5), |l| {
                l.starts_with("listening pingpong mptcp://")
            });
            let registered =
                pe.stdout_line("", Duration::from_secs(5), |l| l.starts_with("registered "));
            let at = registered
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr=tcp://"))
                .filter(|a| a.starts_with(at_b))
                .unwrap_or_else(|| pe.fail(&format!("not registered at {at_b}: {registered:?}")))
                .to_owned();
            let pu = a.spawn(
                &format!("pingpong PU over mptcp, IPv{family}"),
                &[
                    "pingpong",
                    &pool,
                    "-r",
                    &registrar,
                    "--no-announces",
                    "--session-mptcp",
                    "-n",
                    "0",
                    "--interval",
                    "50ms",
                    // Generous: the subflow on path 2 takes over within a retransmission
                    // timeout, far inside this; a failover would show as one.
                    "--heartbeat",
                    "1s",
                    "--heartbeat-timeout",
                    "20s",
                ],
                &log,
            );
            sessions.push((pe, pe_id, at, pu));
        }
        for (_, _, at, pu) in &sessions {
            pongs(pu, 0, 5);
            // Really MPTCP: the session's socket towards the PE with two subflows.
            wait_until(
                &format!("two subflows towards {at}"),
                Duration::from_secs(30),
                || {
                    in_ns(&a, &["ss", "-Mtn"]).contains(at.as_str())
                        && subflows_to_port(&a, at) >= 2
                },
            );
        }
        println!("{}", in_ns(&a, &["ss", "-Mtn"]));

        // Path 1 goes down; 40 more Pongs must come over path 2, in each family.
        a.ip(&["link", "set", "sa1", "down"]);
        let cuts: Vec<usize> = sessions
            .iter()
            .map(|(_, _, _, pu)| pu.out.lines.lock().unwrap().len())
            .collect();
        for ((_, pe_id, at, pu), cut) in sessions.iter().zip(cuts) {
            let last = pongs(pu, cut, 40);
            let lines = pu.out.lines.lock().unwrap().clone();
            let numbers: Vec<(u64, u64)> = lines[..=last]
                .iter()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next()? == "pong").then_some(())?;
                    let m = w.next()?.parse().ok()?;
                    (w.next()? == "reply").then_some(())?;
                    Some((m, w.next()?.parse().ok()?))
                })
                .collect();
            for pair in numbers.windows(2) {
                assert_eq!(
                    pair[1].0,
                    pair[0].0 + 1,
                    "{at}: a Ping went missing: {pair:?}"
                );
                assert_eq!(
                    pair[1].1,
                    pair[0].1 + 1,
                    "{at}: the PE's reply count jumped: {pair:?}"
                );
            }
            // What the client said of its session: connected to the PE once, business
            // cards, nothing else (no failover, no PE failed or refused, no warning).
            let said: Vec<String> = pu
                .err
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| l.strip_prefix("rsp pingpong: ").map(str::to_owned))
                .filter(|l| !l.starts_with("business card: "))
                .collect();
            assert_eq!(
                said,
                vec![format!("connected to PE {pe_id} at tcp://{at}")],
                "{}",
                pu.err.text()
            );
        }
        // What went over MPTCP decodes clean in Wireshark's dissectors.
        let names = dissect(&dir, &log, |_| true, |_| false);
        for m in ["ASAP_REGISTRATION", "ASAP_HANDLE_RESOLUTION_RESPONSE"] {
            assert!(names.contains(m), "{m} not in {names:?}");
        }
    });
}

/// One host (a namespace of its own) with MPTCP on; `None` where namespaces cannot be
/// made.
fn mptcp_host(tag: &str) -> Option<Netns> {
    let ns = Netns::new(tag)?;
    in_ns(&ns, &["sysctl", "-q", "net.mptcp.enabled=1"]);
    Some(ns)
}

/// A registrar in `ns` on tcp://127.0.0.1:3863 (no ENRP, no announces), with `extra`
/// flags.
fn local_registrar(ns: &Netns, extra: &[&str], log: &Path) -> Registrar {
    let mut args = vec![
        "registrar",
        "--listen",
        "tcp://127.0.0.1:3863",
        "--enrp-listen",
        "off",
        "--admin",
        "127.0.0.1:9990",
        "--announce=false",
    ];
    args.extend_from_slice(extra);
    Registrar::started(ns.spawn("registrar", &args, log))
}

/// `rsp serve SERVICE` in `ns` on mptcp://127.0.0.1:0, registered with
/// [`local_registrar`]: (process, PE id, the address it listens on).
fn mptcp_pe(ns: &Netns, service: &str, extra: &[&str], log: &Path) -> (Proc, String, String) {
    let mut args = vec![
        "serve",
        service,
        "-r",
        "tcp://127.0.0.1:3863",
        "--no-announces",
        "--listen",
        "mptcp://127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let pe = ns.spawn(&format!("{service} PE on mptcp"), &args, log);
    let pe_id = pe.registered_pe("did not register", Duration::from_secs(20));
    let prefix = format!("listening {service} mptcp://");
    let listening = pe.stdout_line("no mptcp listener", Duration::from_secs(5), |l| {
        l.starts_with(&prefix)
    });
    let at = listening.rsplit("mptcp://").next().unwrap().to_owned();
    (pe, pe_id, at)
}

/// Both ends of the one connection to `at` in `ns` are MPTCP sockets (`ss -M`: the
/// listener's accepted end and the client's).
fn assert_both_ends_mptcp(ns: &Netns, at: &str) {
    let listed = in_ns(ns, &["ss", "-Mtn"]);
    let ends = listed
        .lines()
        .filter(|l| l.starts_with("mptcp") && l.contains(at))
        .count();
    assert_eq!(ends, 2, "the PE's end and the client's end:\n{listed}");
}

/// The index of the `n`th `pong` line of `pu`'s stdout from line `from` on (each within
/// a minute of the one before).
fn pongs(pu: &Proc, from: usize, n: usize) -> usize {
    let next = |from: usize| {
        pu.out
            .wait(
                from,
                std::time::Instant::now() + Duration::from_secs(60),
                |l| l.starts_with("pong "),
            )
            .map(|(i, _)| i)
    };
    let mut at = None;
    for _ in 0..n {
        at = next(at.map_or(from, |i| i + 1));
        if at.is_none() {
            pu.fail(&format!("fewer than {n} pongs after line {from}"));
        }
    }
    at.unwrap_or(from)
}

/// Where the kernel has MPTCP turned off, `mptcp://` (to listen, to reach a registrar or
/// an ENRP peer) and `--session-mptcp` stop at once with a message that says so and what
/// to do instead (a namespace with `net.mptcp.enabled = 0`).
#[test]
fn without_mptcp_in_the_kernel_mptcp_says_so() {
    bounded(Duration::from_secs(60), || {
        let Some(ns) = Netns::new("mpoff") else {
            return;
        };
        in_ns(&ns, &["sysctl", "-q", "net.mptcp.enabled=0"]);
        let cases: [(&[&str], &str); 6] = [
            (
                &[
                    "call",
                    "EchoPool",
                    "--no-announces",
                    "-r",
                    "tcp://127.0.0.1:9",
                    "--session-mptcp",
                ],
                "leave out --session-mptcp",
            ),
            (
                &[
                    "serve",
                    "echo",
                    "--no-announces",
                    "-r",
                    "mptcp://127.0.0.1:9",
                ],
                "use tcp:// instead of mptcp://",
            ),
            (
                &[
                    "registrar",
                    "--listen",
                    "tcp://127.0.0.1:0",
                    "--admin",
                    "off",
                    "--peer",
                    "mptcp://127.0.0.1:9",
                ],
                "use tcp:// instead of mptcp://",
            ),
            (
                &[
                    "registrar",
                    "--listen",
                    "mptcp://127.0.0.1:0",
                    "--admin",
                    "off",
                    "--enrp-listen",
                    "off",
                ],
                "use tcp:// instead of mptcp://",
            ),
            (
                &[
                    "serve",
                    "pingpong",
                    "--no-announces",
                    "-r",
                    "tcp://127.0.0.1:9",
                    "--listen",
                    "mptcp://127.0.0.1:0",
                ],
                "use tcp:// instead of mptcp://",
            ),
            (
                &[
                    "pingpong",
                    "--no-announces",
                    "-r",
                    "tcp://127.0.0.1:9",
                    "--session-mptcp",
                    "-n",
                    "1",
                ],
                "leave out --session-mptcp",
            ),
        ];
        for (args, instead) in cases {
            let out = ns.command(args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "rsp {args:?} started:\n{err}");
            assert!(
                err.contains("MPTCP is turned off in this kernel (net.mptcp.enabled = 0")
                    && err.contains(instead),
                "rsp {args:?}:\n{err}"
            );
        }
    });
}

/// `rsp bench` measures an MPTCP registrar (against an MPTCP echo server, and against the
/// same registrar's TCP listener with `--versus`): every row answered, none in error.
#[test]
fn rsp_bench_measures_an_mptcp_registrar() {
    bounded(Duration::from_secs(120), || {
        let Some(ns) = mptcp_host("mpbench") else {
            return;
        };
        let log = scratch("mptcp-bench").join("wire.log");
        let _registrar = local_registrar(&ns, &["--listen", "mptcp://127.0.0.1:3864"], &log);
        let text = succeeds(ns.command(&[
            "bench",
            "resolve",
            "--registrar",
            "mptcp://127.0.0.1:3864",
            "--versus",
            "tcp://127.0.0.1:3863",
            "--clients",
            "1,4",
            "--duration",
            "300ms",
            "--rounds",
            "1",
        ]));
        let rows = bench_rows(&text);
        assert_eq!(rows.len(), 6, "{text}");
        for w in &rows {
            assert!(w[2].parse::<f64>().unwrap() > 0.0, "{text}");
            assert_eq!(w[5], "0", "errors: {text}");
        }
    });
}

/// `rsp call --session-mptcp` to an echo PE listening on `mptcp://`: the line comes back
/// and both ends of that connection are MPTCP sockets (`ss -M`).
#[test]
fn call_over_mptcp_to_an_echo_pe_on_mptcp() {
    bounded(Duration::from_secs(120), || {
        let Some(ns) = mptcp_host("mpcall") else {
            return;
        };
        let log = scratch("mptcp-call").join("wire.log");
        let _registrar = local_registrar(&ns, &[], &log);
        let (_pe, _, at) = mptcp_pe(&ns, "echo", &[], &log);
        let mut call = ns.spawn(
            "call over mptcp",
            &[
                "call",
                "EchoPool",
                "-r",
                "tcp://127.0.0.1:3863",
                "--no-announces",
                "--session-mptcp",
            ],
            &log,
        );
        call.send_line("hello over mptcp");
        call.stdout_line("no echo", Duration::from_secs(20), |l| {
            l == "hello over mptcp"
        });
        assert_both_ends_mptcp(&ns, &at);
        close_stdin(&mut call);
        assert!(call
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()));
    });
}

/// TLS on the session channel over MPTCP: a pingpong PE serving TLS sessions on
/// `mptcp://`, a PU with `--session-mptcp --pe-identity`: the PE's identity is verified,
/// Pongs come back, and both ends of the session's connection are MPTCP sockets.
#[test]
fn a_tls_session_runs_over_mptcp() {
    bounded(Duration::from_secs(120), || {
        let Some(ns) = mptcp_host("mptls") else {
            return;
        };
        let dir = scratch("mptcp-tls");
        let log = dir.join("wire.log");
        let ca = support::certs::ca(&dir, "pool-ca");
        let cert = support::certs::leaf_for_name(&dir, &ca, "pe", "pe.pool.test");
        let _registrar = local_registrar(&ns, &[], &log);
        let (_pe, pe_id, at) = mptcp_pe(
            &ns,
            "pingpong",
            &[
                "--session-tls-cert",
                support::certs::p(&cert.0),
                "--session-tls-key",
                support::certs::p(&cert.1),
            ],
            &log,
        );
        let pu = ns.spawn(
            "TLS pingpong PU over mptcp",
            &[
                "pingpong",
                "-r",
                "tcp://127.0.0.1:3863",
                "--no-announces",
                "--session-mptcp",
                "--tls-ca",
                support::certs::p(&ca.pem),
                "--pe-identity",
                "pe.pool.test",
                "-n",
                "0",
                "--interval",
                "50ms",
            ],
            &log,
        );
        pongs(&pu, 0, 3);
        let connected = pu
            .err
            .wait(0, std::time::Instant::now() + Duration::from_secs(5), |l| {
                l.contains("connected to PE")
            })
            .map(|(_, l)| l)
            .unwrap_or_else(|| pu.fail("no connected line"));
        assert!(
            connected.contains(&format!("connected to PE {pe_id} at tcp://{at}"))
                && connected.ends_with("identity pe.pool.test"),
            "{connected}"
        );
        assert_both_ends_mptcp(&ns, &at);
    });
}
