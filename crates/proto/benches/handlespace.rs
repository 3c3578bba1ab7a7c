//! Handlespace benchmarks: memory per PE at 1,000,000 PEs, register / re-register in a
//! populated handlespace, handle resolution (3 PEs) per policy and pool size, takeover
//! of 100k PEs, expiry of 100k timers.
//!
//! Run: `cargo bench -p rserpool-proto --bench handlespace -- --warm-up-time 1 --measurement-time 2`
//! Memory is the RSS delta (/proc/self/statm) of building the handlespace, divided by the
//! number of PEs (no counting allocator: the workspace denies unsafe code).
//!
//! `HS_BENCH_CLOCK=cpu` makes every measurement report the thread's on-CPU time
//! (`/proc/thread-self/schedstat`) instead of wall time — for a shared, loaded machine,
//! where wall time mostly measures waiting for a core. That counter only advances at
//! scheduler ticks and switches, so every group uses flat sampling (equal, long samples).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_proto::handlespace::{Handlespace, HandlespaceConfig, TimerKind};
use rserpool_wire::{
    PeId, Policy, PolicyType, PoolElement, PoolHandle, ServerId, TransportAddr, TransportUse,
    UserTransport,
};

const BIG_PES: u32 = 1_000_000;
const BIG_POOLS: u32 = 100_000;
const OWNERS: u32 = 10;

#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn cpu_clock() -> bool {
    std::env::var("HS_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// Thread on-CPU time in ns (first field of /proc/thread-self/schedstat).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A stopwatch on the wall clock or (HS_BENCH_CLOCK=cpu) on the thread's CPU time.
struct Watch {
    wall: Instant,
    cpu: u64,
}

impl Watch {
    fn start() -> Self {
        Self {
            cpu: if cpu_clock() { cpu_ns() } else { 0 },
            wall: now(),
        }
    }
    fn elapsed(&self) -> Duration {
        if cpu_clock() {
            Duration::from_nanos(cpu_ns().saturating_sub(self.cpu))
        } else {
            self.wall.elapsed()
        }
    }
}

/// `iters` calls of `f`, timed with [`Watch`].
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let w = Watch::start();
    for _ in 0..iters {
        f();
    }
    w.elapsed()
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn config() -> HandlespaceConfig {
    HandlespaceConfig {
        max_pes: 10_000_000,
        max_pes_per_pool: 1_000_000,
        ..HandlespaceConfig::default()
    }
}

fn handle(i: u32) -> PoolHandle {
    PoolHandle::new(format!("pool-{i:06}"))
}

/// A realistic PE: SCTP with an IPv4 and an IPv6 address, plus an ASAP endpoint.
fn pe(id: u32, owner: u32, policy: Policy) -> PoolElement {
    let v4 = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (id & 0xFFFF)));
    let v6 = IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        0,
        0,
        (id >> 16) as u16,
        id as u16,
    ));
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(owner),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::sctp(
            9000,
            TransportUse::DATA_ONLY,
            vec![v4, v6],
        )),
        policy,
        asap_transport: Some(TransportAddr::sctp(3863, TransportUse::DATA_ONLY, vec![v4])),
    }
}

fn policy_for(ty: PolicyType, rng: &mut ChaCha8Rng) -> Policy {
    let load = rng.gen_range(0..1000u32) * 4_000_000;
    let v = [
        match ty {
            PolicyType::WEIGHTED_ROUND_ROBIN | PolicyType::WEIGHTED_RANDOM => rng.gen_range(1..10),
            PolicyType::PRIORITY => rng.gen_range(0..16),
            _ => load,
        },
        rng.gen_range(0..1000u32) * 100_000,
        1000,
        50,
    ];
    Policy::from_values(ty, &v).expect("known policy")
}

/// 1M PEs (LU) in 100k pools, 10 owners, one lifetime timer each (due 1–31 s after
/// the returned instant).
fn build_big() -> (Handlespace, Instant) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut hs = Handlespace::new(config(), 1);
    let t = now();
    for i in 0..BIG_PES {
        let pool = i % BIG_POOLS;
        let id = i / BIG_POOLS + 1;
        let h = handle(pool);
        let p = policy_for(PolicyType::LEAST_USED, &mut rng);
        hs.register(t, &h, pe(id, 1 + i % OWNERS, p))
            .expect("register");
        hs.set_timer(
            &h,
            PeId(id),
            t + Duration::from_millis(1000 + u64::from(i % 30_000)),
            TimerKind::Lifetime,
        );
    }
    (hs, t)
}

fn big(c: &mut Criterion) {
    let before = rss_bytes();
    let t = now();
    let (mut hs, t_build) = build_big();
    let build = t.elapsed();
    let after = rss_bytes();
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "memory: {} PEs in {} pools: RSS +{:.1} MiB = {:.0} bytes/PE (build {:.2} s, {:.0} ns/PE incl. timer)",
            hs.len(),
            hs.pool_count(),
            (a - b) as f64 / 1048576.0,
            (a - b) as f64 / f64::from(BIG_PES),
            build.as_secs_f64(),
            build.as_nanos() as f64 / f64::from(BIG_PES)
        );
    }

    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut g = c.benchmark_group("populated_1M");
    g.sample_size(30).sampling_mode(SamplingMode::Flat);
    // Insert a new PE into a random existing pool (removed again outside the timing).
    let mut next_id = 1_000_000u32;
    g.bench_function("register_new", |b| {
        b.iter_custom(|iters| {
            let mut added = Vec::with_capacity(iters as usize);
            let mut pes = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                next_id += 1;
                let h = handle(rng.gen_range(0..BIG_POOLS));
                let p = policy_for(PolicyType::LEAST_USED, &mut rng);
                pes.push((h, pe(next_id, 1, p)));
            }
            let t = now();
            let w = Watch::start();
            for (h, p) in pes {
                let id = p.id;
                black_box(hs.register(t, &h, p).expect("register"));
                added.push((h, id));
            }
            let el = w.elapsed();
            for (h, id) in added {
                hs.deregister(&h, id);
            }
            el
        })
    });
    // Re-register an existing PE with a new load (full registration path).
    g.bench_function("reregister_load", |b| {
        b.iter_custom(|iters| {
            let mut pes = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                let i = rng.gen_range(0..BIG_PES);
                let h = handle(i % BIG_POOLS);
                let p = policy_for(PolicyType::LEAST_USED, &mut rng);
                pes.push((h, pe(i / BIG_POOLS + 1, 1 + i % OWNERS, p)));
            }
            let t = now();
            let w = Watch::start();
            for (h, p) in pes {
                black_box(hs.register(t, &h, p).expect("re-register"));
            }
            w.elapsed()
        })
    });
    // Cheap path: update_load only.
    g.bench_function("update_load", |b| {
        b.iter_custom(|iters| {
            let ops: Vec<(PoolHandle, PeId, u32)> = (0..iters)
                .map(|_| {
                    let i = rng.gen_range(0..BIG_PES);
                    (handle(i % BIG_POOLS), PeId(i / BIG_POOLS + 1), rng.gen())
                })
                .collect();
            let w = Watch::start();
            for (h, id, load) in &ops {
                black_box(hs.update_load(h, *id, *load));
            }
            w.elapsed()
        })
    });
    // Handle resolution in a 10-PE pool of the big handlespace (pool lookup dominates).
    g.bench_function("select3_10pe_pool", |b| {
        b.iter_custom(|iters| {
            let hs_: Vec<PoolHandle> = (0..iters)
                .map(|_| handle(rng.gen_range(0..BIG_POOLS)))
                .collect();
            let w = Watch::start();
            for h in &hs_ {
                black_box(hs.select(h, 3));
            }
            w.elapsed()
        })
    });
    g.finish();

    // Takeover of one owner's 100k PEs: each iteration moves them to a fresh owner id.
    let mut g = c.benchmark_group("owner_100k");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let mut owner = 1u32;
    let mut fresh = 1000u32;
    g.bench_function("take_over", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fresh += 1;
                let w = Watch::start();
                let moved = hs.take_over(ServerId(owner), ServerId(fresh));
                total += w.elapsed();
                assert_eq!(moved.len(), 100_000);
                owner = fresh;
            }
            total
        })
    });
    g.bench_function("checksum_o1", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                black_box(hs.checksum(ServerId(owner)));
            })
        })
    });
    // Expire 100k timers due at the same instant (pop only; the PEs stay).
    let owned: Vec<(PoolHandle, PeId)> = hs
        .owned_by(ServerId(owner))
        .map(|(h, e)| (h.clone(), e.pe.id))
        .collect();
    // Before every timer set at build time.
    let base = t_build;
    g.bench_function("pop_expired_100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for (h, id) in &owned {
                    hs.set_timer(h, *id, base, TimerKind::Lifetime);
                }
                let w = Watch::start();
                let mut n = 0;
                while hs.pop_expired(base).is_some() {
                    n += 1;
                }
                total += w.elapsed();
                assert_eq!(n, 100_000);
            }
            total
        })
    });
    g.finish();

    // One-shot: remove an owner's 100k PEs.
    let w = Watch::start();
    let removed = hs.remove_owner(ServerId(owner));
    println!(
        "remove_owner: {} PEs in {:.1} ms",
        removed.len(),
        w.elapsed().as_secs_f64() * 1e3
    );
}

const SEL_POLICIES: [PolicyType; 7] = [
    PolicyType::ROUND_ROBIN,
    PolicyType::WEIGHTED_ROUND_ROBIN,
    PolicyType::LEAST_USED,
    PolicyType::LEAST_USED_DEGRADATION,
    PolicyType::PRIORITY,
    PolicyType::RANDOM,
    PolicyType::WEIGHTED_RANDOM,
];

fn one_pool(ty: PolicyType, size: u32) -> (Handlespace, PoolHandle) {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(size));
    let mut hs = Handlespace::new(config(), 3);
    let h = PoolHandle::from("bench-pool");
    let t = now();
    for id in 1..=size {
        hs.register(t, &h, pe(id, 1, policy_for(ty, &mut rng)))
            .expect("register");
    }
    (hs, h)
}

fn selection(c: &mut Criterion) {
    for ty in SEL_POLICIES {
        let mut g = c.benchmark_group(format!("select3/{ty}"));
        g.sample_size(30).sampling_mode(SamplingMode::Flat);
        for size in [100u32, 1_000, 10_000, 100_000] {
            let (mut hs, h) = one_pool(ty, size);
            g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
                b.iter_custom(|iters| {
                    timed(iters, || {
                        black_box(hs.select(&h, 3));
                    })
                })
            });
        }
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    big(&mut c);
    selection(&mut c);
    c.final_summary();
}
