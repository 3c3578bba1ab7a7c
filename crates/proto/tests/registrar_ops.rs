//! Registrar operations: paged snapshots (for `rsp dump`) and run-time reconfiguration.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::registrar::{HandlespaceSnapshot, SnapshotCursor};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{AsapMessage, PeId, Policy, PoolHandle, Protocol, ServerId};

fn meta() -> RecvMeta {
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

fn register(r: &mut Registrar, now: Instant, pool: &str, id: u32) {
    let msg = common::registration(pool, id, Policy::RoundRobin);
    r.handle_message(now, ConnId(1), &meta(), &msg.encode_to_vec());
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
}

fn resolve(r: &mut Registrar, now: Instant, pool: &str) -> usize {
    let msg = AsapMessage::HandleResolution {
        subscribe: false,
        handle: pool.into(),
        items: None,
    };
    r.handle_message(now, ConnId(1), &meta(), &msg.encode_to_vec());
    let mut n = 0;
    while let Some(t) = r.poll_transmit() {
        if let Ok(d) = AsapMessage::decode(&t.bytes) {
            if let AsapMessage::HandleResolutionResponse { pes, .. } = d.message {
                n = pes.len();
            }
        }
    }
    n
}

fn loaded() -> (Registrar, Instant) {
    #[allow(clippy::disallowed_methods)] // a test's start of time
    let now = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default(), 7);
    r.handle_timeout(now);
    r.handle_transport(
        now,
        TransportEvent::Accepted {
            conn: ConnId(1),
            meta: meta(),
        },
    );
    // Pools of 1, 5 and 7 PEs, registered out of order.
    for (pool, ids) in [
        ("b", vec![9, 3, 5, 1, 7]),
        ("a", vec![42]),
        ("c", (1..=7).rev().collect()),
    ] {
        for id in ids {
            register(&mut r, now, pool, id);
        }
    }
    (r, now)
}

/// (pool, PE id) in the order a whole snapshot lists them.
fn flat(s: &HandlespaceSnapshot) -> Vec<(PoolHandle, PeId)> {
    s.pools
        .iter()
        .flat_map(|p| p.pes.iter().map(|(pe, _)| (p.handle.clone(), pe.id)))
        .collect()
}

#[test]
fn pages_cover_the_snapshot_once_in_order_for_every_page_size() {
    let (r, _) = loaded();
    let whole = flat(&r.snapshot());
    assert_eq!(whole.len(), 13);
    for size in [1, 2, 3, 5, 7, 12, 13, 14, 1000] {
        let mut seen = Vec::new();
        let mut cursor: Option<SnapshotCursor> = None;
        let mut pages = 0;
        loop {
            let (pools, next) = r.snapshot_page(cursor.as_ref(), size);
            pages += 1;
            let n: usize = pools.iter().map(|p| p.pes.len()).sum();
            assert!(n <= size, "page of {n} PEs for size {size}");
            for p in &pools {
                assert!(!p.pes.is_empty(), "empty pool in a page");
                seen.extend(p.pes.iter().map(|(pe, _)| (p.handle.clone(), pe.id)));
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages < 100, "paging does not end");
        }
        assert_eq!(seen, whole, "page size {size}");
    }
}

#[test]
fn a_page_skips_what_went_away_and_resumes_after_the_cursor() {
    let (mut r, now) = loaded();
    let (first, next) = r.snapshot_page(None, 3);
    assert_eq!(
        flat(&HandlespaceSnapshot {
            server_id: r.server_id(),
            pools: first
        })
        .len(),
        3
    );
    let cursor = next.expect("more pages");
    // The pool the cursor points into gains a PE below the cursor and one above it.
    register(&mut r, now, &cursor.handle.to_string(), 0xffff_0000);
    register(&mut r, now, &cursor.handle.to_string(), 2);
    let (rest, _) = r.snapshot_page(Some(&cursor), 1000);
    let rest = flat(&HandlespaceSnapshot {
        server_id: r.server_id(),
        pools: rest,
    });
    assert!(rest
        .iter()
        .all(|(h, id)| h != &cursor.handle || id.0 > cursor.after.0));
    assert!(rest.contains(&(cursor.handle.clone(), PeId(0xffff_0000))));
    // One pool only, in pages.
    let (p, next) = r.pool_snapshot_page(&"c".into(), None, 4);
    assert_eq!(p.unwrap().pes.len(), 4);
    let next = next.unwrap();
    let (p, again) = r.pool_snapshot_page(&"c".into(), Some(next.after), 4);
    assert_eq!(p.unwrap().pes.len(), 3);
    assert_eq!(again, None);
    assert_eq!(r.pool_snapshot_page(&"nope".into(), None, 4), (None, None));
}

#[test]
fn reconfigure_changes_limits_and_keeps_the_identity() {
    let (mut r, now) = loaded();
    let id = r.server_id();
    assert_eq!(resolve(&mut r, now, "c"), 3);
    let mut cfg = r.config().clone();
    cfg.default_hr_items = 5;
    cfg.server_id = Some(ServerId(1)); // ignored: the identity stays
    cfg.handlespace.max_pes = 13;
    cfg.keepalive_interval = Some(Duration::from_secs(10));
    r.reconfigure(now, cfg);
    assert_eq!(r.server_id(), id);
    assert_eq!(r.config().server_id, Some(id));
    assert_eq!(resolve(&mut r, now, "c"), 5);
    assert_eq!(r.handlespace().config().max_pes, 13);
    // The handlespace is full now: a new PE is refused, the existing ones stay.
    register(&mut r, now, "d", 1);
    assert_eq!(r.handlespace().len(), 13);
    assert_eq!(r.handlespace().pool_len(&"d".into()), 0);
}
