//! Handle resolution subscriptions (S/A flags) with real processes: `rsp registrar` and
//! `rsp serve echo` PEs on loopback, the library's pool user (the tokio shell over real
//! sockets) as the PU, raw sockets for the attack.
//!
//! * A subscribed PU whose stale-cache interval is an hour stops choosing a killed PE
//!   with the registrar's push: nothing else could have told it.
//! * One connection subscribing to thousands of pools gets A = 1 up to its limit and A = 0
//!   beyond (answers still complete); other connections subscribe and are pushed to as
//!   before.
//!
//! Every wait is bounded polling; the figures (kill → PU cache without the PE, with and
//! without a subscription) are printed, not asserted.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rserpool::pu::{PoolUser, PuOptions};
use rserpool_proto::PuEvent;
use rserpool_wire::{AsapMessage, Policy};
use support::*;

const POOL: &str = "EchoPool";

fn pu(registrar: &str, subscribe: bool, stale: Duration) -> PoolUser {
    let ep = rserpool::url::parse_endpoint(registrar, 3863).unwrap();
    let mut opts = PuOptions::default()
        .registrar(ep)
        .hr_items(u32::MAX)
        .subscribe(subscribe);
    opts.core.stale_cache_value = stale;
    opts.core.accept_announces = false;
    PoolUser::start(opts)
}

#[test]
fn a_subscribed_pool_user_stops_choosing_a_killed_pe_with_one_push() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("sub-kill");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut servers: Vec<Server> = (0..4)
            .map(|_| start_echo(&reg.asap, &["tcp://127.0.0.1:0"], &log))
            .collect();
        let all: BTreeSet<String> = servers.iter().map(|s| s.entries[0].0.clone()).collect();
        wait_until("4 PEs registered", Duration::from_secs(20), || {
            pe_ids(&dump(&reg.admin), POOL) == all
        });
        let pool = POOL;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // The stale timer cannot refresh the subscribed PU's entry within this test.
            let sub = pu(&reg.asap, true, Duration::from_secs(3600));
            let plain = pu(&reg.asap, false, Duration::from_secs(5));
            let mut events = sub.subscribe();
            let ids = |v: Vec<rserpool_wire::PoolElement>| -> BTreeSet<String> {
                v.iter().map(|p| p.id.to_string()).collect()
            };
            assert_eq!(ids(sub.resolve(pool).await.unwrap()), all);
            assert_eq!(ids(plain.resolve(pool).await.unwrap()), all);
            let doc = dump(&reg.admin);
            assert_eq!(protection(&doc, "subscriptions accepted"), 1, "{doc:#}");

            let mut figures = Vec::new();
            for round in 0..3 {
                let victim = servers.remove(0);
                let gone = victim.entries[0].0.clone();
                let killed = Instant::now();
                drop(victim); // SIGKILL
                // The subscribed PU: its cache loses the PE with a push.
                let mut t_sub = None;
                let mut t_plain = None;
                let deadline = killed + Duration::from_secs(60);
                while t_sub.is_none() || t_plain.is_none() {
                    assert!(Instant::now() < deadline, "round {round}: PE {gone} still listed");
                    if t_sub.is_none() {
                        let got: BTreeSet<String> =
                            ids(sub.resolve(pool).await.unwrap());
                        if !got.contains(&gone) {
                            t_sub = Some(killed.elapsed());
                        }
                    }
                    if t_plain.is_none() {
                        let got: BTreeSet<String> =
                            ids(plain.resolve(pool).await.unwrap());
                        if !got.contains(&gone) {
                            t_plain = Some(killed.elapsed());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // It learned it from a push (nothing else refreshes an hour-long entry) …
                let mut pushed = false;
                while let Ok(ev) = events.try_recv() {
                    pushed |= matches!(ev, PuEvent::Pushed { .. });
                }
                assert!(pushed, "round {round}: no push arrived");
                // … and never hands the PE out again.
                for _ in 0..20 {
                    let pe = sub.get_primary_server(pool).await.unwrap();
                    assert_ne!(pe.id.to_string(), gone);
                }
                figures.push((t_sub.unwrap(), t_plain.unwrap()));
            }
            for (i, (s, p)) in figures.iter().enumerate() {
                eprintln!(
                    "FIGURE kill {i}: PU cache without the PE after {:.0} ms subscribed, {:.0} ms with the stale timer (5 s)",
                    s.as_secs_f64() * 1000.0,
                    p.as_secs_f64() * 1000.0
                );
            }
            let doc = dump(&reg.admin);
            assert!(protection(&doc, "subscription pushes sent") >= 3, "{doc:#}");
            // One resolution by the subscribed PU in the whole test (the plain one resolves
            // each time its entry goes stale).
            drop(sub);
            drop(plain);
        });
        drop(servers);
        // The S and A flags as sent and pushed pass Wireshark's dissector.
        let names = dissect(&dir, &log, |_| true, |_| false);
        assert!(
            names.contains("ASAP_HANDLE_RESOLUTION_RESPONSE"),
            "{names:?}"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        // A pushed response: type 0x06 with flags 0x01.
        assert!(
            text.lines().any(|l| l.contains("=0601")),
            "no A = 1 on the wire"
        );
        assert!(
            text.lines().any(|l| l.contains("=0501")),
            "no S = 1 on the wire"
        );
    });
}

#[test]
fn one_connection_subscribing_to_thousands_of_pools_hits_its_limit() {
    bounded(Duration::from_secs(180), || {
        const POOLS: u32 = 3000;
        let dir = scratch("sub-flood");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--keepalive-interval",
                "0s",
                "--keepalive-timeout",
                "2s",
                "--max-pes-per-connection",
                "0",
                "--max-registration-rate",
                "0",
                "--max-subscriptions-per-connection",
                "256",
            ],
        );
        // One PE in each of 3000 pools.
        let mut pe = Raw::connect(&reg.asap);
        for chunk in (0..POOLS).collect::<Vec<_>>().chunks(500) {
            let mut bytes = Vec::new();
            for i in chunk {
                let m = registration(format!("p{i}").as_bytes(), 1, Policy::RoundRobin, 4000);
                bytes.extend(m.encode_to_vec());
            }
            pe.send(&bytes);
            for _ in chunk {
                assert!(matches!(
                    pe.recv(),
                    Some(AsapMessage::RegistrationResponse { reject: false, .. })
                ));
            }
        }
        // The attacker subscribes to every pool, pipelined.
        let mut attacker = Raw::connect(&reg.asap);
        let mut accepted = 0;
        let mut refused = 0;
        for chunk in (0..POOLS).collect::<Vec<_>>().chunks(500) {
            let mut bytes = Vec::new();
            for i in chunk {
                let m = AsapMessage::HandleResolution {
                    subscribe: true,
                    handle: format!("p{i}").as_str().into(),
                    items: None,
                };
                bytes.extend(m.encode_to_vec());
            }
            attacker.send(&bytes);
            for _ in chunk {
                match attacker.recv() {
                    Some(AsapMessage::HandleResolutionResponse {
                        accepted: a,
                        pes,
                        error: None,
                        ..
                    }) if pes.len() == 1 => {
                        if a {
                            accepted += 1
                        } else {
                            refused += 1
                        }
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
            }
        }
        assert_eq!((accepted, refused), (256, POOLS - 256));
        let doc = dump(&reg.admin);
        assert_eq!(protection(&doc, "subscriptions accepted"), 256, "{doc:#}");
        assert_eq!(
            protection(&doc, "subscriptions refused: limit (answered A = 0)"),
            u64::from(POOLS - 256)
        );
        // Nothing else disturbed: another connection subscribes to a pool the attacker
        // holds and one it was refused, and both get pushed to when they change.
        let mut user = Raw::connect(&reg.asap);
        for p in ["p0", "p2999"] {
            user.send_msg(&AsapMessage::HandleResolution {
                subscribe: true,
                handle: p.into(),
                items: None,
            });
            assert!(matches!(
                user.recv(),
                Some(AsapMessage::HandleResolutionResponse { accepted: true, .. })
            ));
        }
        for p in ["p0", "p2999"] {
            pe.send_msg(&registration(p.as_bytes(), 2, Policy::RoundRobin, 4001));
            assert!(matches!(
                pe.recv(),
                Some(AsapMessage::RegistrationResponse { reject: false, .. })
            ));
        }
        let mut pushed = BTreeSet::new();
        while pushed.len() < 2 {
            match user.recv() {
                Some(AsapMessage::HandleResolutionResponse {
                    accepted: true,
                    handle,
                    pes,
                    ..
                }) => {
                    assert_eq!(pes.len(), 2);
                    pushed.insert(handle.to_string());
                }
                other => panic!("expected a push, got {other:?}"),
            }
        }
        // The attacker's subscription to p0 was pushed too, p2999 not.
        match attacker.recv() {
            Some(AsapMessage::HandleResolutionResponse {
                accepted: true,
                handle,
                ..
            }) => assert_eq!(handle.to_string(), "p0"),
            other => panic!("expected a push, got {other:?}"),
        }
        // Closing the attacker ends its subscriptions.
        drop(attacker);
        wait_until("subscriptions ended", Duration::from_secs(20), || {
            protection(&dump(&reg.admin), "subscriptions ended") == 256
        });
        assert_eq!(resolves(&reg.asap, "p5"), 1);
        let reg_pid = reg.proc.pid();
        drop(reg);
        // Every message the registrar sent passes the dissector (the pushes among them).
        let tx = format!("tx.asap.{reg_pid}.");
        dissect(&dir, &log, |l| l.starts_with(&tx), |_| false);
    });
}

/// The figure: from a PE's removal at the registrar (its de-registration answered) to
/// the PU's cache without it, subscribed (the push: event-driven, 100 rounds) and with
/// the stale timer (3 rounds). Asserts only that every round ends.
#[test]
fn removal_to_pu_cache_figures() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("sub-figure");
        let log = dir.join("wire.log");
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                "--keepalive-interval",
                "0s",
                "--keepalive-timeout",
                "2s",
                "--subscription-interval",
                "100ms",
            ],
        );
        let pool = "FigPool";
        let mut pe = Raw::connect(&reg.asap);
        let register = |pe: &mut Raw, id: u32| {
            let port = 4000 + id as u16;
            pe.send_msg(&registration(pool.as_bytes(), id, Policy::RoundRobin, port));
            match pe.recv() {
                Some(AsapMessage::RegistrationResponse { reject: false, .. }) => {}
                other => panic!("registration of {id}: {other:?}"),
            }
        };
        register(&mut pe, 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sub = pu(&reg.asap, true, Duration::from_secs(3600));
            let plain = pu(&reg.asap, false, Duration::from_secs(5));
            sub.resolve(pool).await.unwrap();
            plain.resolve(pool).await.unwrap();
            let mut events = sub.subscribe();
            let lists = |v: Vec<rserpool_wire::PoolElement>, id: u32| {
                v.iter().any(|p| p.id.0 == id)
            };
            let mut sub_times = Vec::new();
            let mut plain_times = Vec::new();
            for round in 0..100u32 {
                let id = 100 + round;
                register(&mut pe, 1); // refreshed (30 s life); pushes nothing
                register(&mut pe, id);
                // Wait for the push that adds it (bounded).
                tokio::time::timeout(Duration::from_secs(10), async {
                    while !lists(sub.resolve(pool).await.unwrap(), id) {
                        let _ = events.recv().await;
                    }
                })
                .await
                .expect("push adding the PE");
                // Past the coalescing interval, so the removal is pushed at once.
                tokio::time::sleep(Duration::from_millis(110)).await;
                let plain_round = round < 3;
                if plain_round {
                    // The plain PU resolves now, so its entry lists the PE.
                    assert!(lists(plain.refresh(pool).await.unwrap(), id));
                }
                pe.send_msg(&AsapMessage::Deregistration {
                    handle: pool.into(),
                    pe_id: rserpool_wire::PeId(id),
                });
                assert!(matches!(
                    pe.recv(),
                    Some(AsapMessage::DeregistrationResponse { error: None, .. })
                ));
                let removed = Instant::now();
                tokio::time::timeout(Duration::from_secs(10), async {
                    while lists(sub.resolve(pool).await.unwrap(), id) {
                        let _ = events.recv().await;
                    }
                })
                .await
                .expect("push removing the PE");
                sub_times.push(removed.elapsed());
                if plain_round {
                    let deadline = removed + Duration::from_secs(30);
                    while lists(plain.resolve(pool).await.unwrap(), id) {
                        assert!(Instant::now() < deadline, "stale timer never refreshed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    plain_times.push(removed.elapsed());
                }
            }
            sub_times.sort();
            plain_times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            eprintln!(
                "FIGURE removal -> PU cache, subscribed: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} rounds)",
                ms(pct(&sub_times, 0.5)),
                ms(pct(&sub_times, 0.99)),
                ms(*sub_times.last().unwrap()),
                sub_times.len()
            );
            eprintln!(
                "FIGURE removal -> PU cache, stale timer 5 s: {:?} ms",
                plain_times.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
            );
        });
    });
}
