//! Codec benchmark: ASAP_HANDLE_RESOLUTION_RESPONSE with 16 pool elements, each with an
//! SCTP user transport (one IPv4 + one IPv6 address) and a policy.
//!
//! Criterion reports time and throughput (`Throughput::Bytes`); at the end a summary
//! prints the median ns/message, MB/s and the ratio against two baselines measured in the
//! same run: a memcpy of the same bytes, and decoding the 4-byte header only.
//!
//! Run: `cargo bench -p rserpool-wire --bench codec -- --warm-up-time 1 --measurement-time 3`

// Benchmarks measure wall-clock time by definition; the crate's clippy.toml bans the clock
// for the sans-IO codec itself.
#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rserpool_wire::*;

fn hrr16() -> AsapMessage {
    let pes = (0..16u32)
        .map(|i| PoolElement {
            id: PeId(0x1000_0000 + i),
            home_registrar: ServerId(0x5EED_0001),
            registration_life: 30_000,
            user_transport: UserTransport::Ip(TransportAddr::sctp(
                7000 + i as u16,
                TransportUse::DATA_PLUS_CONTROL,
                vec![
                    IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1)),
                ],
            )),
            policy: Policy::LeastUsedDegradation {
                load: i * 0x1000_0000,
                degradation: 0x0100_0000,
            },
            asap_transport: None,
        })
        .collect();
    AsapMessage::HandleResolutionResponse {
        accepted: false,
        handle: PoolHandle::from("EchoPool"),
        policy: Some(Policy::LeastUsedDegradation {
            load: 0,
            degradation: 0,
        }),
        pes,
        error: None,
    }
}

/// Per-sample ns/iteration, collected through `iter_custom`.
#[derive(Default)]
struct Samples(RefCell<Vec<f64>>);

impl Samples {
    fn run<F: FnMut()>(&self, iters: u64, mut f: F) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let d = start.elapsed();
        self.0
            .borrow_mut()
            .push(d.as_nanos() as f64 / iters.max(1) as f64);
        d
    }
    fn median(&self) -> f64 {
        let mut v = self.0.borrow().clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

fn main() {
    let msg = hrr16();
    let bytes = msg.encode_to_vec();
    assert_eq!(decode_asap(&bytes).map(|d| d.message).as_ref(), Ok(&msg));
    let n = bytes.len();

    let decode = Samples::default();
    let encode = Samples::default();
    let memcpy = Samples::default();
    let header = Samples::default();

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("hrr16");
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function("decode", |b| {
            b.iter_custom(|iters| {
                decode.run(iters, || {
                    let d = decode_asap(black_box(&bytes));
                    black_box(d.is_ok());
                    drop(black_box(d));
                })
            })
        });
        let mut out = Vec::with_capacity(n);
        g.bench_function("encode", |b| {
            b.iter_custom(|iters| {
                encode.run(iters, || {
                    out.clear();
                    encode_asap(black_box(&msg), &mut out);
                    black_box(&out);
                })
            })
        });
        let mut dst = vec![0u8; n];
        g.bench_function("baseline_memcpy", |b| {
            b.iter_custom(|iters| {
                memcpy.run(iters, || {
                    dst.copy_from_slice(black_box(&bytes));
                    black_box(&dst);
                })
            })
        });
        g.bench_function("baseline_header_only", |b| {
            b.iter_custom(|iters| {
                header.run(iters, || {
                    // Unknown type 0x0f: the decoder validates the header and stops.
                    let mut h = [0u8; 4];
                    h.copy_from_slice(&black_box(&bytes)[..4]);
                    h[0] = 0x0f;
                    black_box(decode_asap(black_box(&h)).is_err());
                })
            })
        });
        g.finish();
    }
    c.final_summary();

    let mbps = |ns: f64| n as f64 / ns * 1e3; // bytes/ns → MB/s (10^6 B/s)
    let (dec, enc, mem, hdr) = (
        decode.median(),
        encode.median(),
        memcpy.median(),
        header.median(),
    );
    println!();
    println!("ASAP_HANDLE_RESOLUTION_RESPONSE, 16 PEs (SCTP v4+v6, LUD policy): {n} bytes");
    println!("{:<22}{:>12}{:>12}", "", "ns/message", "MB/s");
    for (name, ns) in [
        ("decode", dec),
        ("encode", enc),
        ("baseline memcpy", mem),
        ("baseline header only", hdr),
    ] {
        println!("{name:<22}{ns:>12.1}{:>12.1}", mbps(ns));
    }
    println!(
        "ratio decode/memcpy {:.1}x, encode/memcpy {:.1}x, decode/header-only {:.1}x, decode/encode {:.2}",
        dec / mem,
        enc / mem,
        dec / hdr,
        dec / enc
    );
    println!(
        "decode target <= 2000 ns: {}",
        if dec <= 2000.0 { "met" } else { "MISSED" }
    );
}
