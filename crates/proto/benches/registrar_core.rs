//! The registrar core alone, per message, on the `rsp bench` workloads: the share of a
//! request that no transport can save.
//!
//! Run: `cargo bench -p rserpool-proto --bench registrar_core`
//!
//! * `reregister_25600`: `rsp bench register` at 256 clients — 256 connections keep 100 PEs
//!   each registered in one round-robin pool and re-register them in turn. One iteration
//!   is `handle_message` of one ASAP_REGISTRATION plus draining its answer and event.
//! * `resolve_10pe`: `rsp bench resolve` — a handle resolution of a 10-PE round-robin pool
//!   (3 PEs per answer), with pool copies off (the core selects from its handlespace).
//! * `decode_registration` / `decode_resolution`: decoding the same bytes, the part of a
//!   request every implementation pays; the group shows what the core adds to it.
//!
//! `rsp bench register` runs client and server on the same two cores. A closed loop then
//! runs at 2 cores ÷ (client + server CPU per request), so the server's extra work per
//! request over the echo server decides its ratio to echo; `docs/shell.md` works it out.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rserpool_proto::io::{ConnId, Core, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{AsapMessage, Policy, PoolHandle, Protocol};

const CLIENTS: u64 = 256;
const PER_CLIENT: u32 = 100;

fn meta(conn: u64) -> RecvMeta {
    let peer: SocketAddr = format!("127.0.0.1:{}", 20_000 + conn)
        .parse()
        .expect("address");
    RecvMeta::single_homed(Protocol::Asap, TransportProto::Tcp, peer)
}

/// ASAP_REGISTRATION of round-robin PE `id` in `pool`, encoded.
fn registration(pool: &str, id: u32) -> Vec<u8> {
    common::registration(pool, id, Policy::RoundRobin).encode_to_vec()
}

fn registrar(fast: bool) -> (Registrar, Instant) {
    let cfg = RegistrarConfig {
        max_pes_per_source: 0,
        max_registration_rate: 0,
        fast_resolutions: fast,
        ..RegistrarConfig::default()
    };
    #[allow(clippy::disallowed_methods)] // a benchmark's start of time
    let t0 = Instant::now();
    let mut r = Registrar::new(cfg, 5);
    r.handle_timeout(t0);
    for c in 1..=CLIENTS {
        r.handle_transport(
            t0,
            TransportEvent::Accepted {
                conn: ConnId(c),
                meta: meta(c),
            },
        );
    }
    (r, t0)
}

fn drain(r: &mut Registrar) {
    while let Some(t) = r.poll_transmit() {
        black_box(t);
    }
    while let Some(e) = r.poll_event() {
        black_box(e);
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("registrar_core");
    // Every PE of every client, registered once; then re-registrations in turn.
    let (mut r, t0) = registrar(true);
    let msgs: Vec<(u64, Vec<u8>)> = (0..PER_CLIENT)
        .flat_map(|k| {
            (1..=CLIENTS).map(move |c| (c, registration("BenchRegPool", (c as u32) * 1000 + k)))
        })
        .collect();
    let metas: Vec<RecvMeta> = (0..=CLIENTS).map(meta).collect();
    for (c, m) in &msgs {
        r.handle_message(t0, ConnId(*c), &metas[*c as usize], m);
        drain(&mut r);
    }
    let mut i = 0usize;
    let mut now = t0;
    g.bench_function("reregister_25600", |b| {
        b.iter(|| {
            let (c, m) = &msgs[i % msgs.len()];
            i += 1;
            // 1 µs of virtual time per request keeps the PEs' timers moving.
            now += Duration::from_micros(1);
            r.handle_message(now, ConnId(*c), &metas[*c as usize], m);
            drain(&mut r);
        })
    });
    g.bench_function("decode_registration", |b| {
        b.iter(|| black_box(AsapMessage::decode(black_box(&msgs[0].1)).is_ok()))
    });
    // Resolutions of a 10-PE pool through the core (copies off).
    let (mut r, t0) = registrar(false);
    for id in 1..=10 {
        r.handle_message(t0, ConnId(1), &metas[1], &registration("BenchPool", id));
        drain(&mut r);
    }
    let resolution = AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from("BenchPool"),
        items: None,
    }
    .encode_to_vec();
    let mut k = 0u64;
    g.bench_function("resolve_10pe", |b| {
        b.iter(|| {
            let c = 2 + k % (CLIENTS - 1);
            k += 1;
            r.handle_message(t0, ConnId(c), &metas[c as usize], &resolution);
            drain(&mut r);
        })
    });
    g.bench_function("decode_resolution", |b| {
        b.iter(|| black_box(AsapMessage::decode(black_box(&resolution)).is_ok()))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
