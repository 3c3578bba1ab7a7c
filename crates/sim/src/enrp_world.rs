//! The ENRP fault world: 5 peering registrars (fixed server IDs in half the seeds, so a
//! restart keeps its ID; random in the others), 200 PEs, 20 PUs; faults for a while
//! (registrar crash and restart, partitions of the registrars into two groups that heal,
//! message loss, duplication and reordering, PE crashes and restarts, PU requests), then
//! quiet: within [`CONVERGENCE_BOUND`] every registrar holds the same handlespace, every
//! live PE has exactly one home and that home is alive, no live PE is missing anywhere,
//! nothing dead is held, and every PU resolution yields only live PEs.
//!
//! Used by `tests/enrp_seeds.rs` (100 seeds in the normal test run) and by the binary
//! (`cargo run -p rserpool-sim --release -- --seeds 1000`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_proto::io::Endpoint;
use rserpool_proto::{
    EnrpConfig, HuntConfig, HuntOrder, PoolElementConfig, PoolUserConfig, PuCommand, PuEvent,
    RegistrarConfig, RequestId,
};
use rserpool_wire::{PeId, Policy, PoolHandle, TransportAddr, UserTransport};

use crate::{LinkConfig, NodeId, World};

/// Registrars in the world.
pub const REGISTRARS: u8 = 5;
/// PEs in the world.
pub const PES: u16 = 200;
/// PUs in the world.
pub const PUS: u16 = 20;
/// Pools the PEs are spread over.
pub const POOLS: u16 = 4;
/// Virtual time with faults.
pub const FAULT_TIME: Duration = Duration::from_secs(20);
/// After the faults stop, the world must converge within this (virtual time): a
/// restarted registrar's discovery and download (≤ 5 s + a few round trips), the
/// detection of the old incarnations (5 s last heard + 5 s no response) and their
/// takeover, hunts with back-off (≤ 4 s), dead PEs found by keep-alive (5 s + 2 s) or
/// their Registration Life (30 s) run out, the audit of the next presences.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(60);

/// What one seed did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Virtual time from the end of the faults to convergence.
    pub converged_after: Duration,
    pub registrar_crashes: u32,
    pub partitions: u32,
    pub pe_crashes: u32,
    pub pu_answers: u32,
    pub live_pes: usize,
}

fn asap_endpoint(i: u8) -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, i], 3863)))
}

fn hunt(rng: &mut ChaCha8Rng) -> HuntConfig {
    HuntConfig {
        order: if rng.gen_bool(0.5) {
            HuntOrder::InOrder
        } else {
            HuntConfig::default().order
        },
        backoff_max: Duration::from_secs(4),
        ..HuntConfig::default()
    }
}

/// 1–3 registrars of the 5, in a random order.
fn some_registrars(rng: &mut ChaCha8Rng) -> Vec<Endpoint> {
    let mut all: Vec<u8> = (1..=REGISTRARS).collect();
    all.shuffle(rng);
    let k = rng.gen_range(1..=3);
    all[..k].iter().map(|i| asap_endpoint(*i)).collect()
}

fn pool(n: u16) -> PoolHandle {
    PoolHandle::from(format!("pool{}", n % POOLS).as_str())
}

/// Build the world and run the faults, then check convergence and resolutions. Panics
/// (with the seed in the world's messages) on a violation.
pub fn run(w: &mut World) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(w.seed() ^ 0x0e2b_5eed);
    let mut out = Outcome::default();
    // Per-event checks would be O(n) each: the handlespace indexes are checked once per
    // fault step instead; the cheap invariants run after every event.
    w.set_check_handlespace(false);
    w.add_invariant("no PE without a home registrar", |w| {
        for r in w.registrar_nodes() {
            if !w.is_down(r) && w.registrar(r).handlespace().owned_count(Default::default()) != 0 {
                return Err(format!("registrar {r} holds PEs with home 0"));
            }
        }
        Ok(())
    });
    let link = LinkConfig {
        latency: Duration::from_millis(rng.gen_range(1..5)),
        jitter: Duration::from_millis(rng.gen_range(0..5)),
        loss: rng.gen_range(0.0..0.02),
        duplicate: rng.gen_range(0.0..0.02),
        reorder: rng.gen_bool(0.3),
    };
    w.set_default_link(link.clone());
    // Half the seeds: fixed server IDs (a restarted registrar keeps its ID); else random
    // ones (a restart is a new server).
    let fixed_ids = rng.gen_bool(0.5);
    let regs: Vec<NodeId> = (1..=REGISTRARS)
        .map(|i| {
            let cfg = RegistrarConfig {
                server_id: fixed_ids.then(|| rserpool_wire::ServerId(0x100 * u32::from(i))),
                enrp: EnrpConfig {
                    peers: (1..=REGISTRARS)
                        .filter(|j| *j != i)
                        .map(World::enrp_endpoint)
                        .collect(),
                    mentor_discovery_timeout: Duration::from_secs(2),
                    ..EnrpConfig::default()
                },
                keepalive_interval: Some(Duration::from_secs(5)),
                ..RegistrarConfig::default()
            };
            w.add_peering_registrar(i, cfg)
        })
        .collect();
    let pes: Vec<NodeId> = (1..=PES)
        .map(|n| {
            let cfg = PoolElementConfig {
                pool_handle: pool(n),
                pe_id: Some(PeId(0x10000 + u32::from(n))),
                user_transports: vec![UserTransport::Ip(TransportAddr::tcp(
                    7000,
                    IpAddr::from([10, 1, (n >> 8) as u8, n as u8]),
                ))],
                policy: Policy::RoundRobin,
                registrars: some_registrars(&mut rng),
                registration_life: Duration::from_secs(30),
                reregistration_interval: Duration::from_secs(10),
                hunt: hunt(&mut rng),
                ..PoolElementConfig::default()
            };
            w.add_pe_n(n, cfg)
        })
        .collect();
    let pus: Vec<NodeId> = (1..=PUS)
        .map(|n| {
            let cfg = PoolUserConfig {
                registrars: some_registrars(&mut rng),
                hunt: hunt(&mut rng),
                stale_cache_value: Duration::from_secs(2),
                ..PoolUserConfig::default()
            };
            w.add_pu(n as u8, cfg)
        })
        .collect();
    let mut req = 0u64;

    // Faults.
    let end = w.now() + FAULT_TIME;
    let mut partitioned = false;
    while w.now() < end {
        match rng.gen_range(0..20) {
            0 | 1 => {
                let r = regs[rng.gen_range(0..regs.len())];
                let down = regs.iter().filter(|&&x| w.is_down(x)).count();
                if w.is_down(r) {
                    w.restart(r);
                } else if down + 2 < regs.len() {
                    out.registrar_crashes += 1;
                    w.crash(r);
                }
            }
            2 if !partitioned => {
                let mut order = regs.clone();
                order.shuffle(&mut rng);
                let k = rng.gen_range(1..regs.len());
                w.partition(&order[..k], &order[k..]);
                partitioned = true;
                out.partitions += 1;
            }
            3 if partitioned => {
                w.heal();
                partitioned = false;
            }
            4..=6 => {
                let pe = pes[rng.gen_range(0..pes.len())];
                if w.is_down(pe) {
                    w.restart(pe);
                } else {
                    out.pe_crashes += 1;
                    w.crash(pe);
                }
            }
            7..=9 => {
                let pu = pus[rng.gen_range(0..pus.len())];
                req += 1;
                let handle = pool(rng.gen_range(0..POOLS));
                w.pu_command(
                    pu,
                    PuCommand::GetPrimaryServer {
                        request: RequestId(req),
                        pool: handle,
                    },
                );
            }
            _ => {}
        }
        w.run(Duration::from_millis(rng.gen_range(200..1200)));
        w.check_handlespaces_now();
    }

    // The faults stop: everything comes back, links are clean.
    w.heal();
    w.set_default_link(LinkConfig {
        loss: 0.0,
        duplicate: 0.0,
        ..link
    });
    for &r in &regs {
        if w.is_down(r) {
            w.restart(r);
        }
    }
    let quiet = w.now();
    // Checked every 100 ms of virtual time (each check is O(PEs × registrars)).
    let converged = |w: &World| {
        w.handlespaces_agree().is_ok() && w.homes_consistent().is_ok() && w.only_live_pes().is_ok()
    };
    let mut ok = converged(w);
    while !ok && w.now() - quiet < CONVERGENCE_BOUND {
        w.run(Duration::from_millis(100));
        ok = converged(w);
    }
    assert!(
        ok,
        "seed {}: no convergence within {CONVERGENCE_BOUND:?} after the faults: agree: {:?}; homes: {:?}; live: {:?}",
        w.seed(),
        w.handlespaces_agree(),
        w.homes_consistent(),
        w.only_live_pes()
    );
    out.converged_after = w.now() - quiet;
    w.check_handlespaces_now();
    let live: BTreeSet<PeId> = pes
        .iter()
        .filter(|&&p| !w.is_down(p))
        .filter_map(|&p| w.pe_id_of(p))
        .collect();
    out.live_pes = live.len();
    // PU caches from the fault phase age out (stale_cache_value 2 s).
    w.run(Duration::from_secs(3));
    let live_pools: BTreeSet<PoolHandle> = live
        .iter()
        .map(|id| pool((id.0 - 0x10000) as u16))
        .collect();
    for (k, &pu) in pus.iter().enumerate() {
        req += 1;
        let handle = pool(k as u16);
        let name = String::from_utf8_lossy(handle.as_bytes()).into_owned();
        match w.try_ask(pu, req, &name, false, Duration::from_secs(20)) {
            Some(PuEvent::Server { pe, .. }) => {
                assert!(
                    live.contains(&pe.id),
                    "seed {}: PU {pu} was handed {:?}, not a live PE",
                    w.seed(),
                    pe.id
                );
                out.pu_answers += 1;
            }
            // An empty pool (all its PEs crashed) is a correct answer.
            Some(PuEvent::Failed { .. }) => assert!(
                !live_pools.contains(&handle),
                "seed {}: PU {pu} got no server for {name}",
                w.seed()
            ),
            other => panic!("seed {}: PU {pu}: {other:?}", w.seed()),
        }
    }
    // One association per pair of registrars (a second one, opened by both at once, is
    // closed; a closed one is reopened by the next presence).
    let one_each = |w: &World| {
        regs.iter().enumerate().all(|(k, &a)| {
            regs[k + 1..]
                .iter()
                .all(|&b| w.open_conns_between(a, b) == 1)
        })
    };
    let ok = w.run_until(Duration::from_secs(10), one_each);
    assert!(
        ok,
        "seed {}: not one connection per pair of registrars: {:?}",
        w.seed(),
        regs.iter()
            .flat_map(|&a| regs.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| ((a, b), w.open_conns_between(a, b)))
            .collect::<Vec<_>>()
    );
    // Still converged after the resolutions.
    w.handlespaces_agree()
        .unwrap_or_else(|e| panic!("seed {}: {e}", w.seed()));
    out
}
