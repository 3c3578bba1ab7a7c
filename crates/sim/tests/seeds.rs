//! Many seeds of today's single-registrar world: registrar crash/restart, PE crashes and
//! hangs, PU failover, message loss and jitter. Every seed runs twice with identical traces
//! (`rserpool_sim::seeds::check_seeds`); `RSERPOOL_SIM_SEED=<n>` reruns one seed.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_proto::io::Endpoint;
use rserpool_proto::{
    HuntConfig, HuntOrder, PoolElementConfig, PoolUserConfig, PuCommand, PuEvent, RegistrarConfig,
};
use rserpool_sim::{seeds::check_seeds, LinkConfig, NodeId, World};
use rserpool_wire::{PeId, Policy, PoolHandle, TransportAddr, UserTransport};

const POOL: &str = "EchoPool";
const PES: u8 = 4;
const PUS: u8 = 2;
/// Keep-alive interval (3 s) + keep-alive timeout (2 s) + slack for latency and loss.
const DEAD_PE_BOUND: Duration = Duration::from_secs(10);
/// The PU's `stale_cache_value` (default 5 s).
const STALE_CACHE: Duration = Duration::from_secs(5);
/// A request is answered (a server or a failure with its reason) within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

fn reg_endpoint() -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, 1], 3863)))
}

/// Hunting backs off to 8 s at most, so the heal phase sees every PE back.
fn hunt() -> HuntConfig {
    HuntConfig {
        order: HuntOrder::InOrder,
        backoff_max: Duration::from_secs(8),
        ..HuntConfig::default()
    }
}

fn pe_cfg(i: u8) -> PoolElementConfig {
    PoolElementConfig {
        pool_handle: PoolHandle::from(POOL),
        pe_id: Some(PeId(0x1000 + u32::from(i))),
        user_transports: vec![UserTransport::Ip(TransportAddr::tcp(
            7000 + u16::from(i),
            IpAddr::from([10, 0, 1, i]),
        ))],
        policy: Policy::RoundRobin,
        registrars: vec![reg_endpoint()],
        hunt: hunt(),
        ..PoolElementConfig::default()
    }
}

fn pu_cfg() -> PoolUserConfig {
    PoolUserConfig {
        registrars: vec![reg_endpoint()],
        hunt: hunt(),
        ..PoolUserConfig::default()
    }
}

struct Cast {
    reg: NodeId,
    pes: Vec<NodeId>,
    pus: Vec<NodeId>,
    /// No message loss in this seed: a PU must not hand out a PE that is long dead.
    clean: bool,
}

/// What the seeds did, added up (both runs of each seed count).
#[derive(Default)]
struct Tally {
    served: Cell<u64>,
    failed: Cell<u64>,
    failovers: Cell<u64>,
    registrar_restarts: Cell<u64>,
    pe_crashes: Cell<u64>,
    lost: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn live_pe_ids(w: &World, cast: &Cast) -> BTreeSet<PeId> {
    cast.pes
        .iter()
        .filter(|&&p| !w.is_down(p) && !w.is_hung(p))
        .filter_map(|&p| w.pe_id_of(p))
        .collect()
}

fn ids_at_registrar(w: &World, reg: NodeId) -> BTreeSet<PeId> {
    let hs = w.registrar(reg).handlespace();
    hs.pool_entries(&PoolHandle::from(POOL))
        .map(|e| e.pe.id)
        .collect()
}

/// One PU request: a server, or a failure with a reason, within `ANSWER_WITHIN`. A server
/// the world knows to be dead is reported and the PU fails over to the next one.
fn use_a_server(w: &mut World, cast: &Cast, pu: NodeId, req: &mut u64, tally: &Tally) {
    for attempt in 0..4 {
        *req += 1;
        let ev = w
            .try_ask(pu, *req, POOL, attempt > 0, ANSWER_WITHIN)
            .unwrap_or_else(|| panic!("request {req} of PU {pu} neither served nor failed"));
        match ev {
            PuEvent::Server { pe, .. } => {
                if live_pe_ids(w, cast).contains(&pe.id) {
                    bump(&tally.served);
                    return;
                }
                if cast.clean && !w.is_down(cast.reg) {
                    // Gone longer than the registrar keeps it plus the PU's cache value.
                    let since = w.gone_pes().find(|(id, _)| *id == pe.id).map(|(_, t)| t);
                    if let Some(since) = since {
                        assert!(
                            w.now() - since <= DEAD_PE_BOUND + STALE_CACHE,
                            "PU {pu} handed out {:?}, dead for {:?}",
                            pe.id,
                            w.now() - since
                        );
                    }
                }
                bump(&tally.failovers);
                w.pu_command(
                    pu,
                    PuCommand::ReportFailure {
                        pool: PoolHandle::from(POOL),
                        pe_id: pe.id,
                    },
                );
            }
            PuEvent::Failed { .. } => {
                bump(&tally.failed);
                return;
            }
            other => panic!("not an answer: {other:?}"),
        }
    }
}

fn scenario(w: &mut World, tally: &Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(w.seed() ^ 0x5eed_5eed);
    w.set_dead_pe_bound(Some(DEAD_PE_BOUND));
    let clean = rng.gen_bool(0.25);
    let loss = if clean { 0.0 } else { rng.gen_range(0.0..0.03) };
    w.set_default_link(LinkConfig {
        latency: Duration::from_millis(rng.gen_range(0..5)),
        jitter: Duration::from_millis(rng.gen_range(0..5)),
        loss,
        duplicate: 0.0,
        reorder: false,
    });
    let reg = w.add_registrar(1, RegistrarConfig::default());
    let pes: Vec<NodeId> = (1..=PES).map(|i| w.add_pe(i, pe_cfg(i))).collect();
    let pus: Vec<NodeId> = (1..=PUS).map(|i| w.add_pu(i, pu_cfg())).collect();
    let cast = Cast {
        reg,
        pes,
        pus,
        clean,
    };
    let mut req = 0u64;

    // Faults, one decision per virtual second.
    for _ in 0..40 {
        match rng.gen_range(0..20) {
            0 => w.crash(cast.reg),
            1 | 2 if w.is_down(cast.reg) => {
                bump(&tally.registrar_restarts);
                w.restart(cast.reg);
            }
            3 | 4 => {
                let pe = cast.pes[rng.gen_range(0..cast.pes.len())];
                if w.is_down(pe) {
                    w.restart(pe);
                } else {
                    bump(&tally.pe_crashes);
                    w.crash(pe);
                }
            }
            5 => {
                let pe = cast.pes[rng.gen_range(0..cast.pes.len())];
                let hung = w.is_hung(pe);
                w.mute(pe, !hung);
            }
            6..=9 => {
                let pu = cast.pus[rng.gen_range(0..cast.pus.len())];
                use_a_server(w, &cast, pu, &mut req, tally);
            }
            _ => {}
        }
        w.run(Duration::from_millis(rng.gen_range(200..1500)));
    }

    // Heal: everything back but one PE, which stays dead; a clean network.
    w.set_default_link(LinkConfig::with_latency(Duration::from_millis(1)));
    if w.is_down(cast.reg) {
        w.restart(cast.reg);
    }
    let dead = cast.pes[rng.gen_range(0..cast.pes.len())];
    for &pe in &cast.pes {
        if pe == dead {
            if !w.is_down(pe) {
                w.crash(pe);
            }
        } else if w.is_down(pe) {
            w.restart(pe);
        } else if w.is_hung(pe) {
            w.mute(pe, false);
        }
    }
    // Re-registration interval (10 s) and keep-alive timeout pass.
    w.run(Duration::from_secs(25));

    let live = live_pe_ids(w, &cast);
    assert_eq!(live.len(), usize::from(PES) - 1);
    assert_eq!(ids_at_registrar(w, cast.reg), live, "live PEs registered");
    for &pu in &cast.pus {
        w.with_pu(pu, |c, _| c.mark_stale(&PoolHandle::from(POOL)));
        let mut seen = BTreeSet::new();
        for _ in 0..2 * live.len() {
            req += 1;
            match w.ask(pu, req, POOL, false, ANSWER_WITHIN) {
                PuEvent::Server { pe, .. } => {
                    assert!(live.contains(&pe.id), "dead PE {:?} handed out", pe.id);
                    seen.insert(pe.id);
                }
                other => panic!("PU {pu}: no server after healing: {other:?}"),
            }
        }
        assert_eq!(seen, live, "every live PE resolvable by PU {pu}");
    }
    assert!(w.events_checked() > 100);
    tally.lost.set(tally.lost.get() + w.stats().lost);
}

#[test]
fn single_registrar_world_survives_faults_on_many_seeds() {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let tally = Tally::default();
    let n = check_seeds(start, 200, |w| scenario(w, &tally));
    if n >= 50 {
        // The faults happened and were survived, not skipped.
        for (what, c) in [
            ("served", &tally.served),
            ("failed", &tally.failed),
            ("failovers", &tally.failovers),
            ("registrar restarts", &tally.registrar_restarts),
            ("PE crashes", &tally.pe_crashes),
            ("lost messages", &tally.lost),
        ] {
            assert!(c.get() > 0, "no {what} in {n} seeds");
        }
    }
}
