//! The registrar's hot path with many connections at once (issue 15 "What must hold",
//! issue 14 fairness): every connection has its own inbound queue and the driver serves
//! them in turn. Real `rsp registrar` processes, real sockets, pipelining clients:
//!
//! * answers keep their order per connection, while other connections pipeline too;
//! * round robin stays correct across concurrent pool users (the selection state is one);
//! * a connection that closes with thousands of requests unanswered loses only its own
//!   answers: every other connection gets all of its answers.
//!
//! Only counts and order decide; nothing depends on speed.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rserpool_wire::framing::Deframer;
use rserpool_wire::{AsapMessage, PeId, Policy};
use support::*;

fn addr(asap: &str) -> SocketAddr {
    asap.trim_start_matches("tcp://").parse().unwrap()
}

fn resolution(pool: &str, items: Option<u32>) -> Vec<u8> {
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items,
    }
    .encode_to_vec()
}

/// Write `msgs` on one connection (a writer thread, in chunks of up to 100 messages) while
/// reading the answers; returns the answers once as many arrived as were sent.
fn pipeline(asap: &str, msgs: Vec<Vec<u8>>) -> Vec<AsapMessage> {
    let s = TcpStream::connect_timeout(&addr(asap), Duration::from_secs(5)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let n = msgs.len();
    let writer = std::thread::spawn(move || {
        for chunk in msgs.chunks(100) {
            w.write_all(&chunk.concat()).unwrap();
        }
    });
    let answers = read_answers(s, n);
    writer.join().unwrap();
    answers
}

/// Read `n` ASAP messages (at most 60 s without progress).
fn read_answers(mut s: TcpStream, n: usize) -> Vec<AsapMessage> {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut d = Deframer::default();
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; 1 << 16];
    while out.len() < n {
        while let Some(m) = d.next_message().unwrap() {
            out.push(AsapMessage::decode(m).unwrap().message);
        }
        if out.len() >= n {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "the registrar closed the connection after {} answers",
                out.len()
            ),
            Ok(k) => d.push(&buf[..k]),
            Err(e) => panic!("after {} of {n} answers: {e}", out.len()),
        }
    }
    out
}

fn registrar(log: &std::path::Path) -> Registrar {
    start_registrar(
        "tcp://127.0.0.1:0",
        log,
        &["--max-pes-per-source", "0", "--keepalive-timeout", "60s"],
    )
}

/// Several connections pipeline registrations and resolutions at once; each gets its
/// answers in the order of its requests (registration responses naming its PE ids in
/// turn, resolution responses naming the pools asked for in turn).
#[test]
fn answers_keep_their_order_per_connection() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("fair-order");
        let reg = registrar(&dir.join("wire.log"));
        const CONNS: u32 = 6;
        const PER: u32 = 600;
        let clients: Vec<_> = (0..CONNS)
            .map(|c| {
                let asap = reg.asap.clone();
                std::thread::spawn(move || {
                    let mut msgs = Vec::new();
                    for i in 0..PER {
                        let id = 0x1000_0000 + c * 0x10000 + i;
                        if i.is_multiple_of(3) {
                            msgs.push(
                                registration(
                                    format!("Ord{c}").as_bytes(),
                                    id,
                                    Policy::RoundRobin,
                                    9,
                                )
                                .encode_to_vec(),
                            );
                        } else {
                            // Unknown pools: each answer names the pool asked for.
                            msgs.push(resolution(&format!("Missing-{c}-{i}"), None));
                        }
                    }
                    let answers = pipeline(&asap, msgs);
                    for (i, a) in answers.iter().enumerate() {
                        let i = i as u32;
                        let id = 0x1000_0000 + c * 0x10000 + i;
                        match a {
                            AsapMessage::RegistrationResponse {
                                pe_id, error: None, ..
                            } if i.is_multiple_of(3) => {
                                assert_eq!(*pe_id, PeId(id), "conn {c} answer {i}")
                            }
                            AsapMessage::HandleResolutionResponse { handle, .. }
                                if !i.is_multiple_of(3) =>
                            {
                                assert_eq!(
                                    handle.as_bytes(),
                                    format!("Missing-{c}-{i}").as_bytes(),
                                    "conn {c} answer {i}"
                                )
                            }
                            other => panic!("conn {c} answer {i}: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        for c in 0..CONNS {
            let doc = dump(&reg.admin);
            assert_eq!(
                pe_ids(&doc, &format!("Ord{c}")).len(),
                PER.div_ceil(3) as usize,
                "pool Ord{c}"
            );
        }
    });
}

/// Five PEs in a round-robin pool; eight pool users pipeline 500 resolutions each at
/// once. The head of the round robin advances by one per resolution whoever asks, so over
/// all 4,000 answers every PE comes first exactly 800 times.
#[test]
fn round_robin_stays_correct_across_concurrent_pool_users() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("fair-rr");
        let reg = registrar(&dir.join("wire.log"));
        const PES: u32 = 5;
        const PUS: usize = 8;
        const PER: usize = 500;
        register_many(&reg.asap, "RrPool", 1..=PES);
        let started = Instant::now();
        let pus: Vec<_> = (0..PUS)
            .map(|_| {
                let asap = reg.asap.clone();
                std::thread::spawn(move || {
                    pipeline(&asap, vec![resolution("RrPool", Some(1)); PER])
                })
            })
            .collect();
        let mut heads: BTreeMap<u32, usize> = BTreeMap::new();
        for p in pus {
            for a in p.join().unwrap() {
                match a {
                    AsapMessage::HandleResolutionResponse {
                        error: None, pes, ..
                    } if !pes.is_empty() => *heads.entry(pes[0].id.0).or_insert(0) += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        println!(
            "figure: {} resolutions from {PUS} pipelining PUs in {:.2} s; first PE counts {heads:?}",
            PUS * PER,
            started.elapsed().as_secs_f64()
        );
        let want: BTreeMap<u32, usize> =
            (1..=PES).map(|id| (id, PUS * PER / PES as usize)).collect();
        assert_eq!(heads, want);
    });
}

/// While four connections pipeline 3,000 resolutions each, others write 3,000 requests and
/// close at once (twice: with FIN, and with unread answers, which makes an RST). Every
/// request of the four is answered; the registrar serves afterwards as before.
#[test]
fn no_answer_is_lost_when_a_connection_closes_mid_batch() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("fair-close");
        let reg = registrar(&dir.join("wire.log"));
        register_many(&reg.asap, "ClosePool", 1..=3);
        const PER: usize = 3000;
        let good: Vec<_> = (0..4)
            .map(|_| {
                let asap = reg.asap.clone();
                std::thread::spawn(move || {
                    pipeline(&asap, vec![resolution("ClosePool", None); PER])
                })
            })
            .collect();
        let quitters: Vec<_> = (0..4)
            .map(|k| {
                let asap = reg.asap.clone();
                std::thread::spawn(move || {
                    let mut s =
                        TcpStream::connect_timeout(&addr(&asap), Duration::from_secs(5)).unwrap();
                    let one = resolution("ClosePool", None);
                    let batch: Vec<u8> = one.repeat(100);
                    for _ in 0..PER / 100 {
                        if s.write_all(&batch).is_err() {
                            break;
                        }
                    }
                    if k % 2 == 0 {
                        let _ = s.shutdown(Shutdown::Write);
                        // Read a few answers, then drop with the rest unread.
                        let mut buf = [0u8; 512];
                        let _ = s.read(&mut buf);
                    }
                    drop(s);
                })
            })
            .collect();
        for q in quitters {
            q.join().unwrap();
        }
        for (i, g) in good.into_iter().enumerate() {
            let answers = g.join().unwrap();
            assert_eq!(answers.len(), PER, "connection {i}");
            for (j, a) in answers.iter().enumerate() {
                match a {
                    AsapMessage::HandleResolutionResponse {
                        error: None, pes, ..
                    } if !pes.is_empty() => {}
                    other => panic!("connection {i} answer {j}: {other:?}"),
                }
            }
        }
        assert_eq!(resolves(&reg.asap, "ClosePool"), 3);
    });
}

/// The next answer on `c`, acknowledging the registrar's keep-alives meanwhile.
fn answer(c: &mut Raw) -> AsapMessage {
    loop {
        match c.recv().expect("the registrar closed the connection") {
            AsapMessage::EndpointKeepAlive {
                handle,
                pe_id: Some(pe_id),
                ..
            } => c.send_msg(&AsapMessage::EndpointKeepAliveAck { handle, pe_id }),
            m => return m,
        }
    }
}

/// A small round-robin pool's resolutions are answered by the connection readers from a
/// copy of the pool, outside the core's lock, and every change shows in the very next
/// answer: a PE registered (on another connection) is in it, a PE deregistered is not.
/// After each change the first resolution goes to the core, which makes a new copy; the
/// following ones are answered from it — `/metrics` counts exactly those.
#[test]
fn copied_pools_answer_outside_the_lock_and_every_change_shows_at_once() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("fair-copy");
        let reg = registrar(&dir.join("wire.log"));
        let pool = "CopyPool";
        let mut pe = Raw::connect(&reg.asap);
        let mut pu = Raw::connect(&reg.asap);
        let resolve = |pu: &mut Raw| -> BTreeSet<u32> {
            pu.send(&resolution(pool, Some(100)));
            match answer(pu) {
                AsapMessage::HandleResolutionResponse {
                    error: None, pes, ..
                } => pes.iter().map(|p| p.id.0).collect(),
                other => panic!("{other:?}"),
            }
        };
        let change = |pe: &mut Raw, m: AsapMessage| {
            pe.send_msg(&m);
            match answer(pe) {
                AsapMessage::RegistrationResponse { error: None, .. }
                | AsapMessage::DeregistrationResponse { error: None, .. } => {}
                other => panic!("{other:?}"),
            }
        };
        for id in 1..=3 {
            change(
                &mut pe,
                registration(pool.as_bytes(), id, Policy::RoundRobin, 9),
            );
        }
        let base: BTreeSet<u32> = (1..=3).collect();
        const ROUNDS: u32 = 20;
        for round in 0..ROUNDS {
            for _ in 0..3 {
                assert_eq!(resolve(&mut pu), base, "round {round}");
            }
            let id = 100 + round;
            change(
                &mut pe,
                registration(pool.as_bytes(), id, Policy::RoundRobin, 9),
            );
            let mut with = base.clone();
            with.insert(id);
            assert_eq!(resolve(&mut pu), with, "round {round}: the new PE");
            change(
                &mut pe,
                AsapMessage::Deregistration {
                    handle: pool.into(),
                    pe_id: PeId(id),
                },
            );
            assert_eq!(resolve(&mut pu), base, "round {round}: the PE gone");
        }
        let text = http_body(&reg.admin, "/metrics");
        let fast = metric(&text, "rserpool_registrar_fast_resolutions_total");
        println!(
            "figure: {fast} of {} resolutions answered from copies",
            ROUNDS * 5
        );
        // Per round the three resolutions after a deregistration (the first of all rounds
        // made the first copy).
        assert_eq!(fast, f64::from(ROUNDS * 3 - 1));
        // Every message on the wire, the answers from copies among them, dissects clean.
        let names = dissect(&dir, &dir.join("wire.log"), |_| true, |_| false);
        assert!(
            names.contains("ASAP_HANDLE_RESOLUTION_RESPONSE"),
            "{names:?}"
        );
    });
}
