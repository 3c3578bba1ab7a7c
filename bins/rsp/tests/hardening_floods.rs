//! Floods from one source address against a registrar with its limits set (issue 14,
//! "What must hold"): handle resolutions as fast as one pipelining client sends them,
//! unreachability reports at 10,000/s, registrations with fresh PE identifiers at
//! 10,000/s. Real `rsp registrar` and `rsp serve echo` processes, real sockets; the flood
//! comes from 127.0.0.2, a well-behaved pool user resolves from 127.0.0.3.
//!
//! For each flood the test shows that the limit holds (the "protections" counters of
//! `rsp dump --json` move, refusals carry the documented cause, the handlespace stays
//! within its quota), that the registrar's resident memory stays bounded, and that the
//! well-behaved pool user keeps getting correct answers. Rates, memory and the pool user's
//! resolutions per second without and with the flood are printed as figures (`figure:`
//! lines, `--nocapture`), never asserted: only counts and bounds decide.
//!
//! The three tests take turns (one lock), so that the figures of one are not the load of
//! another.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rserpool_wire::framing::Deframer;
use rserpool_wire::{
    AsapMessage, CauseCode, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr,
    UserTransport,
};
use support::*;

/// One flood at a time.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

const FLOODER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const GOOD_PU: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

/// Messages a flooding client keeps unanswered at most (below the registrar's
/// `write_queue`, 1024 by default: a peer with more answers waiting is disconnected).
const WINDOW_MSGS: u64 = 500;

/// How long the well-behaved pool user resolves, once without and once with the flood.
const WINDOW: Duration = Duration::from_secs(3);

/// Resident memory the registrar may gain during a flood (a leak per message of a flood
/// of tens of thousands of messages, or an unbounded queue, exceeds it).
const RSS_GROWTH_KB: u64 = 64 * 1024;

// ----------------------------------------------------------------------------------------
// Helpers

/// A registrar on 127.0.0.1 with `extra` settings. The flood is not written to a wire log
/// (it would be hundreds of megabytes); the message types are dissected by other tests.
fn registrar(extra: &[&str], log: &std::path::Path) -> Registrar {
    let mut args = vec![
        "registrar",
        "--listen",
        "tcp://127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--announce=false",
    ];
    args.extend_from_slice(extra);
    registrar_with(&args, log, &[("RSERPOOL_WIRE_LOG", "")])
}

fn parse_pe_id(s: &str) -> PeId {
    PeId(u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap())
}

fn resolution(pool: &str) -> AsapMessage {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: None,
    }
}

/// What the well-behaved pool user measured.
struct Pace {
    resolutions: u64,
    per_second: f64,
    mean_latency_us: f64,
}

/// The well-behaved pool user: one connection from 127.0.0.3, one resolution of
/// `EchoPool` at a time for `WINDOW` (at most `limit` per second when given); every answer
/// must name the echo PE `pe`.
fn good_pu(asap: &str, pe: PeId, limit: Option<u32>) -> Pace {
    let mut c = raw_from(asap, GOOD_PU);
    c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let bytes = resolution("EchoPool").encode_to_vec();
    let start = Instant::now();
    let mut n = 0u64;
    let mut waited = Duration::ZERO;
    while start.elapsed() < WINDOW {
        if let Some(limit) = limit {
            let due = start + Duration::from_secs_f64(n as f64 / f64::from(limit));
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        let sent = Instant::now();
        c.send(&bytes);
        match c.recv() {
            Some(AsapMessage::HandleResolutionResponse {
                error: None, pes, ..
            }) if pes.iter().any(|p| p.id == pe) => {}
            other => panic!("resolution {n} of the well-behaved pool user: {other:?}"),
        }
        waited += sent.elapsed();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Pace {
        resolutions: n,
        per_second: n as f64 / secs,
        mean_latency_us: waited.as_secs_f64() * 1e6 / n.max(1) as f64,
    }
}

/// Write messages (`msg(i)` for the i-th) to `s` until `stop`: batches of up to 1000 as
/// fast as the socket takes them, or `rate` per second, with at most `window.0` more
/// written than `window.1` answered. `sent` follows the count. Returns the
/// count and the seconds spent.
fn pump(
    mut s: TcpStream,
    stop: &AtomicBool,
    sent: &AtomicU64,
    rate: Option<u64>,
    window: Option<(u64, &AtomicU64)>,
    mut msg: impl FnMut(u64) -> Vec<u8>,
) -> (u64, f64) {
    let start = Instant::now();
    let mut n = 0u64;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let due = match rate {
            Some(r) => {
                let owed = (start.elapsed().as_secs_f64() * r as f64) as u64;
                owed.saturating_sub(n).min(r / 10)
            }
            None => 1000,
        };
        // A pipelining client keeps at most `window` messages unanswered (a registrar
        // disconnects a peer that does not read its answers).
        let due = match window {
            Some((w, received)) => {
                due.min((w + received.load(Ordering::Acquire)).saturating_sub(n))
            }
            None => due,
        };
        if due == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        buf.clear();
        for i in n..n + due {
            buf.extend_from_slice(&msg(i));
        }
        s.write_all(&buf)
            .unwrap_or_else(|e| panic!("the flood after {n} messages: {e}"));
        n += due;
        sent.store(n, Ordering::Release);
    }
    (n, start.elapsed().as_secs_f64())
}

/// Read answers from `s` until `done` is set and as many answers as `sent` arrived,
/// counting them by `kind`. Returns the counts and when the last answer came.
fn drain(
    mut s: TcpStream,
    done: &AtomicBool,
    sent: &AtomicU64,
    received: &AtomicU64,
    kind: impl Fn(AsapMessage) -> &'static str,
) -> (Counts, Instant) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut progress = Instant::now();
    let mut d = Deframer::default();
    let mut counts = BTreeMap::new();
    let mut seen: std::collections::HashMap<Vec<u8>, &'static str> = Default::default();
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        while let Some(m) = d.next_message().unwrap() {
            // Answers repeat byte for byte (the same PE, the same refusal): decode each
            // different one once, so that the client's own work stays small beside the
            // registrar's.
            let k = match seen.get(m) {
                Some(k) => *k,
                None => {
                    let k = kind(AsapMessage::decode(m).unwrap().message);
                    if seen.len() < 64 {
                        seen.insert(m.to_vec(), k);
                    }
                    k
                }
            };
            *counts.entry(k).or_insert(0) += 1;
            got += 1;
        }
        received.store(got, Ordering::Release);
        if done.load(Ordering::Acquire) && got >= sent.load(Ordering::Acquire) {
            return (counts, Instant::now());
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("the registrar closed the flooding connection after {got} answers"),
            Ok(n) => {
                d.push(&buf[..n]);
                progress = Instant::now();
            }
            // Look at `done` again now and then; give up after 30 s without an answer.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(
                    progress.elapsed() < Duration::from_secs(30),
                    "no answer for 30 s after {got} answers to {} messages ({counts:?})",
                    sent.load(Ordering::Acquire)
                );
            }
            Err(e) => panic!("the flooding connection after {got} answers: {e}"),
        }
    }
}

/// Answers by kind.
type Counts = BTreeMap<&'static str, u64>;

/// A flood running on its own threads: a writer and (for messages that are answered) a
/// reader on the same connection.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    writer: std::thread::JoinHandle<(u64, f64)>,
    reader: Option<std::thread::JoinHandle<(Counts, Instant)>>,
    started: Instant,
}

impl Flood {
    fn start(
        c: &Raw,
        rate: Option<u64>,
        msg: impl FnMut(u64) -> Vec<u8> + Send + 'static,
        kind: Option<fn(AsapMessage) -> &'static str>,
    ) -> Flood {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let answered = kind.is_some();
        let reader = kind.map(|kind| {
            let s = c.s.try_clone().unwrap();
            let (done, sent, received) = (done.clone(), sent.clone(), received.clone());
            std::thread::spawn(move || drain(s, &done, &sent, &received, kind))
        });
        let s = c.s.try_clone().unwrap();
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let writer = std::thread::spawn(move || {
            let window = answered.then_some((WINDOW_MSGS, &*received));
            let r = pump(s, &stop2, &sent2, rate, window, msg);
            done.store(true, Ordering::Release);
            r
        });
        // Under way before anybody measures.
        wait_until("the flood to start", Duration::from_secs(10), || {
            sent.load(Ordering::Acquire) > 0
        });
        Flood {
            stop,
            sent,
            writer,
            reader,
            started,
        }
    }

    /// Stop writing; the count written, the seconds spent writing, and the answers with
    /// the seconds until the last one (from the start).
    fn finish(self) -> (u64, f64, Option<(Counts, f64)>) {
        self.stop.store(true, Ordering::Release);
        let (n, secs) = self.writer.join().unwrap();
        assert_eq!(n, self.sent.load(Ordering::Acquire));
        let answers = self.reader.map(|r| {
            let (counts, last) = r.join().unwrap();
            (
                counts,
                last.duration_since(self.started).as_secs_f64() + 0.001,
            )
        });
        (n, secs, answers)
    }
}

/// RSS now, and the figure line for before and after.
fn rss_figure(what: &str, pid: u32, before: u64) -> u64 {
    let after = vm_kb(pid, "VmRSS");
    let peak = vm_kb(pid, "VmHWM");
    println!(
        "figure: {what}: registrar RSS {before} kB before, {after} kB after \
         (growth {} kB), peak {peak} kB",
        after as i64 - before as i64
    );
    assert!(
        after < before + RSS_GROWTH_KB,
        "{what}: the registrar grew from {before} kB to {after} kB"
    );
    after
}

fn pace_figure(what: &str, quiet: &Pace, loud: &Pace) {
    println!(
        "figure: {what}: the well-behaved PU resolved {:.0}/s ({} in {WINDOW:?}, mean \
         {:.0} us) without the flood, {:.0}/s ({}, mean {:.0} us) with it: ratio {:.2}",
        quiet.per_second,
        quiet.resolutions,
        quiet.mean_latency_us,
        loud.per_second,
        loud.resolutions,
        loud.mean_latency_us,
        loud.per_second / quiet.per_second
    );
    assert!(quiet.resolutions > 0 && loud.resolutions > 0);
}

// ----------------------------------------------------------------------------------------
// (a) Handle resolutions

/// One source pipelines handle resolutions as fast as it can write them against
/// `--max-hr-rate 20000`: beyond a second's burst and 20,000 per second it gets Unknown Pool
/// Handle (0x9), counted; a pool user elsewhere, resolving within the rate, keeps its
/// answers.
#[test]
fn a_handle_resolution_flood_is_held_to_its_rate() {
    bounded(Duration::from_secs(120), || {
        let _turn = turn();
        let dir = scratch("flood-hr");
        let log = dir.join("wire.log");
        const RATE: u32 = 20_000;
        let reg = registrar(&["--max-hr-rate", &RATE.to_string()], &log);
        let echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let pe = parse_pe_id(&echo.entries[0].0);
        let pid = reg.proc.pid();

        // At most half the per-source rate (a debug build resolves slower than that one
        // at a time): the well-behaved pool user is never limited.
        let quiet = good_pu(&reg.asap, pe, Some(RATE / 2));
        let rss_before = vm_kb(pid, "VmRSS");

        let c = raw_from(&reg.asap, FLOODER);
        let bytes = resolution("EchoPool").encode_to_vec();
        let flood = Flood::start(
            &c,
            None,
            move |_| bytes.clone(),
            Some(|m| match m {
                AsapMessage::HandleResolutionResponse {
                    error: None, pes, ..
                } if !pes.is_empty() => "answered",
                AsapMessage::HandleResolutionResponse { error: Some(e), .. }
                    if e.first_code() == Some(CauseCode::UNKNOWN_POOL_HANDLE) =>
                {
                    "limited (0x9)"
                }
                _ => "other",
            }),
        );
        let loud = good_pu(&reg.asap, pe, Some(RATE / 2));
        // However slow the machine, the flood goes on until it is over the rate.
        wait_until("the flood over the rate", Duration::from_secs(60), || {
            protection(
                &dump(&reg.admin),
                "handle resolutions over the per-source rate (answered 0x9)",
            ) > 0
        });
        let (sent, send_secs, answers) = flood.finish();
        let (counts, secs) = answers.unwrap();
        let answered = counts.get("answered").copied().unwrap_or(0);
        let limited = counts.get("limited (0x9)").copied().unwrap_or(0);
        println!(
            "figure: resolution flood from one pipelining client ({WINDOW_MSGS} in flight): \
             {sent} sent in {send_secs:.2} s ({:.0}/s), all answered within {secs:.2} s ({:.0}/s): \
             {answered} answered, {limited} limited (--max-hr-rate {RATE})",
            sent as f64 / send_secs,
            sent as f64 / secs
        );
        assert_eq!(counts.get("other"), None, "{counts:?}");
        assert_eq!(answered + limited, sent);
        // A second's burst, then RATE per second: never more.
        assert!(
            answered as f64 <= f64::from(RATE) * (1.0 + secs) + 1.0,
            "{answered} answered in {secs:.2} s"
        );
        assert!(limited > 0);
        let doc = dump(&reg.admin);
        let counted = protection(
            &doc,
            "handle resolutions over the per-source rate (answered 0x9)",
        );
        // The well-behaved pool user was never limited: the counter is the flood's.
        assert_eq!(counted, limited);
        rss_figure("resolution flood", pid, rss_before);
        pace_figure("resolution flood", &quiet, &loud);
        // Still answering everybody once the flood is over.
        assert_eq!(resolves(&reg.asap, "EchoPool"), 1);
        drop(c);
    });
}

// ----------------------------------------------------------------------------------------
// (b) Unreachability reports

/// One source that resolved the pool reports its PE unreachable 10,000 times a second
/// against `--max-eu-rate 10`: the reports beyond the rate are ignored and counted, the
/// live PE stays, and a pool user elsewhere keeps resolving it.
#[test]
fn an_unreachability_report_flood_is_held_to_its_rate() {
    bounded(Duration::from_secs(120), || {
        let _turn = turn();
        let dir = scratch("flood-eu");
        let log = dir.join("wire.log");
        const RATE: u32 = 10;
        let reg = registrar(&["--max-eu-rate", &RATE.to_string()], &log);
        let echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let pe = parse_pe_id(&echo.entries[0].0);
        let pid = reg.proc.pid();

        let quiet = good_pu(&reg.asap, pe, None);
        let rss_before = vm_kb(pid, "VmRSS");

        // The flooder resolved the pool: its reports are not dismissed for that (2.13).
        let mut c = raw_from(&reg.asap, FLOODER);
        c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.send_msg(&resolution("EchoPool"));
        assert!(matches!(
            c.recv(),
            Some(AsapMessage::HandleResolutionResponse { error: None, .. })
        ));
        let report = AsapMessage::EndpointUnreachable {
            handle: "EchoPool".into(),
            pe_id: pe,
        }
        .encode_to_vec();
        let t0 = Instant::now();
        let flood = Flood::start(&c, Some(10_000), move |_| report.clone(), None);
        let loud = good_pu(&reg.asap, pe, None);
        wait_until("1000 reports sent", Duration::from_secs(60), || {
            flood.sent.load(Ordering::Acquire) >= 1000
        });
        let (sent, send_secs, _) = flood.finish();
        // A resolution behind the reports on the same connection: once it is answered,
        // every report was handled.
        c.send_msg(&resolution("EchoPool"));
        loop {
            match c.recv() {
                Some(AsapMessage::HandleResolutionResponse {
                    error: None, pes, ..
                }) => {
                    assert!(pes.iter().any(|p| p.id == pe), "the live PE is gone");
                    break;
                }
                Some(_) => {}
                None => panic!("the registrar closed the flooding connection"),
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let doc = dump(&reg.admin);
        let ignored = protection(
            &doc,
            "unreachability reports over the per-source rate (ignored)",
        );
        println!(
            "figure: unreachability report flood: {sent} sent in {send_secs:.2} s ({:.0}/s), \
             {ignored} over --max-eu-rate {RATE} ignored; counted {}, not counted again {}, \
             probes {}",
            sent as f64 / send_secs,
            protection(&doc, "unreachability reports counted"),
            protection(&doc, "reports not counted again"),
            protection(&doc, "probes sent for reports"),
        );
        // At most a second's burst and RATE per second got through.
        let allowed = f64::from(RATE) * (1.0 + secs) + 1.0;
        assert!(
            ignored > 0 && ignored <= sent && (sent - ignored) as f64 <= allowed,
            "{ignored} of {sent} ignored in {secs:.2} s"
        );
        assert!(pe_ids(&doc, "EchoPool").contains(&echo.entries[0].0));
        rss_figure("report flood", pid, rss_before);
        pace_figure("report flood", &quiet, &loud);
    });
}

// ----------------------------------------------------------------------------------------
// (c) Registrations with fresh PE identifiers

/// One source registers PEs with fresh identifiers at 10,000 per second against
/// `--max-pes-per-source 1000`: exactly 1000 are accepted, every other one is refused with
/// Lack of Resources (0x6) and counted, the handlespace holds no more, and a pool user
/// elsewhere keeps resolving its pool.
#[test]
fn a_registration_flood_is_held_to_its_quota() {
    bounded(Duration::from_secs(120), || {
        let _turn = turn();
        let dir = scratch("flood-reg");
        let log = dir.join("wire.log");
        const QUOTA: u64 = 1000;
        let reg = registrar(
            &[
                "--max-pes-per-source",
                &QUOTA.to_string(),
                "--max-pes-per-connection",
                "0",
                // The quota is under test, not the per-connection registration rate.
                "--max-registration-rate",
                "0",
                // Registered PEs stay without keep-alive traffic for the test's length.
                "--keepalive-interval",
                "60s",
                "--keepalive-timeout",
                "5s",
            ],
            &log,
        );
        let echo = start_echo(&reg.asap, &["127.0.0.1:0"], &log);
        let pe = parse_pe_id(&echo.entries[0].0);
        let pid = reg.proc.pid();

        let quiet = good_pu(&reg.asap, pe, None);
        let rss_before = vm_kb(pid, "VmRSS");

        let c = raw_from(&reg.asap, FLOODER);
        let registration = |i: u64| {
            AsapMessage::Registration {
                handle: PoolHandle::from("FloodPool"),
                pe: PoolElement {
                    id: PeId(0x1000_0000 + i as u32),
                    home_registrar: ServerId(0),
                    registration_life: 60_000,
                    user_transport: UserTransport::Ip(TransportAddr::tcp(
                        1024 + (i % 60_000) as u16,
                        FLOODER,
                    )),
                    policy: Policy::RoundRobin,
                    asap_transport: None,
                },
            }
            .encode_to_vec()
        };
        let flood = Flood::start(
            &c,
            Some(10_000),
            registration,
            Some(|m| match m {
                AsapMessage::RegistrationResponse { reject: false, .. } => "accepted",
                AsapMessage::RegistrationResponse {
                    reject: true,
                    error: Some(e),
                    ..
                } if e.first_code() == Some(CauseCode::LACK_OF_RESOURCES) => "refused (0x6)",
                _ => "other",
            }),
        );
        let loud = good_pu(&reg.asap, pe, None);
        wait_until("the flood past the quota", Duration::from_secs(60), || {
            flood.sent.load(Ordering::Acquire) > 2 * QUOTA
        });
        let (sent, send_secs, answers) = flood.finish();
        let (counts, secs) = answers.unwrap();
        let accepted = counts.get("accepted").copied().unwrap_or(0);
        let refused = counts.get("refused (0x6)").copied().unwrap_or(0);
        println!(
            "figure: registration flood with fresh PE ids: {sent} sent in {send_secs:.2} s \
             ({:.0}/s), all answered within {secs:.2} s ({:.0}/s): {accepted} accepted, \
             {refused} refused (--max-pes-per-source {QUOTA})",
            sent as f64 / send_secs,
            sent as f64 / secs
        );
        assert_eq!(counts.get("other"), None, "{counts:?}");
        assert!(
            sent > QUOTA,
            "the flood must exceed the quota ({sent} sent)"
        );
        assert_eq!((accepted, refused), (QUOTA, sent - QUOTA));
        let doc = dump(&reg.admin);
        assert_eq!(
            protection(&doc, "registrations refused: PEs per source address"),
            refused
        );
        assert_eq!(pe_ids(&doc, "FloodPool").len() as u64, QUOTA);
        assert_eq!(pe_ids(&doc, "EchoPool").len(), 1);
        rss_figure("registration flood", pid, rss_before);
        pace_figure("registration flood", &quiet, &loud);
        drop(c);
    });
}
