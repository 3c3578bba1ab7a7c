//! `rsp soak`: hold a registrar at scale for a set time and watch it once a second.
//!
//! N PEs (default 1,000,000) in P pools (default 100,000; PE `i` is in pool `i mod P`)
//! register over N / `--pes-per-connection` TCP connections, re-register every
//! `--reregister` (spread), and answer every keep-alive — except the PEs that "die":
//! `--die-percent-per-minute` of the PEs (default 1 %) stop answering and stop
//! re-registering, and the registrar is expected to remove them. `--resolvers` PUs
//! resolve random pools in a closed loop, asking for every PE of the pool, and each answer
//! checks the pool against what the soak knows:
//!
//! * a live PE whose registration was confirmed before the request was sent and that is
//!   missing is LOST (counted once; the soak exits 1 if any was lost);
//! * a dead PE missing is a confirmed (expected) removal; one still listed later than
//!   keep-alive interval + timeout + 1 s after it died is LATE.
//!
//! First an idle phase (`--baseline`): only the PEs of the first 1 % of the pools
//! register and the PUs resolve those pools, which gives the idle resolution p99; then
//! every PE registers and the run lasts `--duration`. The summary gives the run's p99
//! over all of it and once every PE was in (the registration storm left out). The PUs
//! run on a thread of their own, so their latency is the registrar's, not the wait
//! behind this process's PE connections; they run closed loops, or on a schedule with
//! `--resolve-rate`. The simulated PEs' threads run `--generator-nice` steps below the
//! rest (they stand for other hosts).
//!
//! Without `--registrar` it starts `rsp registrar` (this executable) as a child process
//! on an ephemeral loopback port with the limits raised for the run (printed). RSS and CPU
//! come from `/proc/PID/status` and `/proc/PID/stat` of the registrar (`--registrar-pid`
//! for one started elsewhere). The registrar's CPU covers all its work; keep-alives are
//! most of it in the steady state (the `ka/s` column).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use rserpool::service::bench::MessageConn;
use rserpool_proto::io::Endpoint;
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, PoolHandle, ServerId, TransportAddr, UserTransport,
};

use crate::args;

/// Hold a registrar with many PEs, re-registrations, keep-alives, dying PEs and
/// resolving PUs; print rates, removals, RSS per PE, CPU and resolution p99 every second.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Registrar to soak (tcp://); default: start `rsp registrar` as a child process.
    #[arg(long, value_name = "URL", value_parser = args::asap_endpoint)]
    pub registrar: Option<Endpoint>,
    /// Process ID of `--registrar` (for its RSS and CPU).
    #[arg(long, value_name = "PID")]
    pub registrar_pid: Option<u32>,
    /// Pool elements.
    #[arg(long, default_value = "1000000")]
    pub pes: usize,
    /// Pools (PE i is in pool i mod POOLS).
    #[arg(long, default_value = "100000")]
    pub pools: usize,
    /// PEs registered over one connection (≤ the registrar's max_pes_per_connection).
    #[arg(long, default_value = "1000")]
    pub pes_per_connection: usize,
    /// Length of the run after the idle phase.
    #[arg(long, default_value = "60s", value_parser = args::duration)]
    pub duration: Duration,
    /// Idle phase: resolution p99 with 1 % of the pools registered.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub baseline: Duration,
    /// Percentage of the PEs that die (stop answering) per minute.
    #[arg(long, default_value = "1")]
    pub die_percent_per_minute: f64,
    /// Each PE re-registers this often (spread over the period).
    #[arg(long, default_value = "120s", value_parser = args::duration)]
    pub reregister: Duration,
    /// Concurrent resolving PUs (one connection each).
    #[arg(long, default_value = "4")]
    pub resolvers: usize,
    /// Resolutions per second of all resolvers together, spread evenly (open loop: a
    /// resolver sends on schedule, not when its last answer came); 0 = closed loop, each
    /// resolver sends as soon as its answer came, which keeps the registrar saturated.
    #[arg(long, default_value = "0")]
    pub resolve_rate: u32,
    /// Keep-alive interval of the started registrar (and what removals are expected in).
    #[arg(long, default_value = "3s", value_parser = args::duration)]
    pub keepalive_interval: Duration,
    /// Keep-alive timeout of the started registrar (and what removals are expected in).
    #[arg(long, default_value = "2s", value_parser = args::duration)]
    pub keepalive_timeout: Duration,
    /// Run the simulated PEs' threads this much nicer (lower CPU priority) than the rest of
    /// the soak and the registrar it starts: the PEs stand for other hosts, so on one
    /// machine they should not take the registrar's or the PUs' turn (they need a small
    /// part of a core and still get it). 0 = same priority.
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u8).range(0..=19))]
    pub generator_nice: u8,
    /// Another flag for the started registrar (repeatable), e.g. --registrar-arg=--keepalive-batch=0.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub registrar_arg: Vec<String>,
}

/// Registration Life asked for by the soak's PEs: a few re-registration periods.
fn registration_life(a: &SoakArgs) -> Duration {
    (a.reregister * 3).max(Duration::from_secs(30))
}

// Per-PE state bits (one AtomicU64 each): registered, lost counted, removal confirmed,
// late counted; the low 32 bits are the time of death in ms since start + 1 (0 = alive).
const REGISTERED: u64 = 1 << 63;
const LOST: u64 = 1 << 62;
const CONFIRMED: u64 = 1 << 61;
const LATE: u64 = 1 << 60;
const DEATH: u64 = 0xffff_ffff;

struct Shared {
    start: Instant,
    pes: usize,
    pools: usize,
    state: Vec<AtomicU64>,
    /// First confirmed registration, ms since start + 1.
    registered_at: Vec<AtomicU32>,
    /// All PEs may register (the idle phase is over).
    all_in: AtomicBool,
    stop: AtomicBool,
    registrations: AtomicU64,
    refused: AtomicU64,
    registered: AtomicU64,
    resolutions: AtomicU64,
    keepalives: AtomicU64,
    dead: AtomicU64,
    confirmed: AtomicU64,
    late: AtomicU64,
    lost: AtomicU64,
    conn_errors: AtomicU64,
    /// Paced resolutions sent more than one period after their scheduled time.
    behind: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    /// The ms after a death by which the PE must be gone.
    removal_bound_ms: u64,
}

impl Shared {
    fn ms(&self) -> u64 {
        #[allow(clippy::disallowed_methods)] // a load generator's own clock
        let now = Instant::now();
        now.duration_since(self.start).as_millis() as u64
    }
    fn idle_pools(&self) -> usize {
        (self.pools / 100).max(1)
    }
}

fn handle_of(pool: usize) -> PoolHandle {
    PoolHandle::from(format!("soak-{pool}").as_str())
}

fn registration(i: usize, pools: usize, life_ms: u32) -> Vec<u8> {
    let id = i as u32 + 1;
    let ip = std::net::Ipv4Addr::new(127, 1, (i >> 16) as u8, (i >> 8) as u8).into();
    AsapMessage::Registration {
        handle: handle_of(i % pools),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: life_ms,
            user_transport: UserTransport::Ip(TransportAddr::tcp(1024 + (i % 60000) as u16, ip)),
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    }
    .encode_to_vec()
}

/// A small xorshift generator (no cryptographic needs here).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn run(a: &SoakArgs) -> anyhow::Result<ExitCode> {
    if a.pes == 0 || a.pools == 0 || a.pes_per_connection == 0 || a.resolvers == 0 {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "--pes, --pools, --pes-per-connection and --resolvers must be positive"
        )));
    }
    let conns = a.pes.div_ceil(a.pes_per_connection);
    crate::registrar::raise_fd_limit(conns + a.resolvers + 64);
    let (target, pid, child) = match &a.registrar {
        Some(ep) => (ep.clone(), a.registrar_pid, None),
        None => {
            let (ep, child) = start_registrar(a, conns)?;
            let pid = child.0.id();
            (ep, Some(pid), Some(child))
        }
    };
    // The registrar's RSS before any PE: what the per-PE figure leaves out.
    let base_rss = pid.and_then(rss_bytes).unwrap_or(0);
    let life_ms = u32::try_from(registration_life(a).as_millis()).unwrap_or(u32::MAX);
    #[allow(clippy::disallowed_methods)] // a load generator's own clock
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        pes: a.pes,
        pools: a.pools,
        state: (0..a.pes).map(|_| AtomicU64::new(0)).collect(),
        registered_at: (0..a.pes).map(|_| AtomicU32::new(0)).collect(),
        all_in: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        registrations: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        registered: AtomicU64::new(0),
        resolutions: AtomicU64::new(0),
        keepalives: AtomicU64::new(0),
        dead: AtomicU64::new(0),
        confirmed: AtomicU64::new(0),
        late: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        conn_errors: AtomicU64::new(0),
        behind: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 2)?),
        removal_bound_ms: (a.keepalive_interval + a.keepalive_timeout).as_millis() as u64 + 1000,
    });
    eprintln!(
        "rsp soak: registrar {target}{}; {} PEs in {} pools over {conns} connections, \
         re-registration every {:?} (life {:?}), {} % die per minute, {} resolvers ({}), {:?} idle \
         + {:?}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        a.pes,
        a.pools,
        a.reregister,
        registration_life(a),
        a.die_percent_per_minute,
        a.resolvers,
        match a.resolve_rate {
            0 => "closed loop".to_owned(),
            r => format!("{r} resolutions/s paced"),
        },
        a.baseline,
        a.duration
    );
    let rt = generator_runtime(a.generator_nice)?;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let lo = c * a.pes_per_connection;
        let hi = (lo + a.pes_per_connection).min(a.pes);
        let s = shared.clone();
        let ep = target.clone();
        let rereg = a.reregister;
        tasks.push(rt.spawn(async move {
            if let Err(e) = pe_conn(&s, &ep, lo..hi, rereg, life_ms, c as u64).await {
                if !s.stop.load(Ordering::Relaxed) {
                    s.conn_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("rsp soak: PE connection {c}: {e:#}");
                }
            }
        }));
    }
    // The resolvers run on a thread of their own: what they measure is the registrar's
    // latency, not how long their tasks wait behind the PE connections' in this process.
    let resolvers = {
        let s = shared.clone();
        let ep = target.clone();
        let n = a.resolvers;
        // Each resolver's period in paced mode, phases spread over it.
        let period = (a.resolve_rate > 0)
            .then(|| Duration::from_secs_f64(n as f64 / f64::from(a.resolve_rate)));
        let rrt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the resolvers' runtime")?;
        std::thread::Builder::new()
            .name("soak-resolvers".into())
            .spawn(move || {
                rrt.block_on(async move {
                    let mut set = Vec::new();
                    for p in 0..n {
                        let s = s.clone();
                        let ep = ep.clone();
                        set.push(tokio::spawn(async move {
                            let pace = period.map(|d| (d, d.mul_f64(p as f64 / n as f64)));
                            if let Err(e) = resolver(&s, &ep, p as u64, pace).await {
                                if !s.stop.load(Ordering::Relaxed) {
                                    s.conn_errors.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("rsp soak: resolver {p}: {e:#}");
                                }
                            }
                        }));
                    }
                    for t in set {
                        let _ = t.await;
                    }
                });
            })
            .context("cannot start the resolvers' thread")?
    };

    // Idle phase.
    let tty = std::io::stderr().is_terminal();
    let mut mon = Monitor::new(pid, base_rss);
    let idle_pes = (0..a.pes)
        .filter(|i| i % a.pools < shared.idle_pools())
        .count() as u64;
    let idle_end = start + a.baseline;
    while now() < idle_end || shared.registered.load(Ordering::Relaxed) < idle_pes {
        std::thread::sleep(Duration::from_secs(1));
        mon.line(&shared, "idle", 0.0);
        if now() > idle_end + Duration::from_secs(120) {
            bail!("the idle phase's PEs did not all register within 2 minutes");
        }
    }
    let idle_p99 = mon.total_p99(&shared);
    mon.reset(&shared);
    eprintln!(
        "rsp soak: idle resolution p99 {} (pools 0..{}); all PEs register now",
        micros(idle_p99),
        shared.idle_pools()
    );
    shared.all_in.store(true, Ordering::Relaxed);
    let run_start = now();
    let end = run_start + a.duration;
    let per_second = a.pes as f64 * a.die_percent_per_minute / 100.0 / 60.0;
    let mut owed = 0.0f64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut full_at: Option<Instant> = None;
    while now() < end {
        std::thread::sleep(Duration::from_secs(1));
        if full_at.is_none() && shared.registered.load(Ordering::Relaxed) as usize >= a.pes {
            full_at = Some(now());
            // What the resolvers measured until now goes to the run's total only.
            mon.total_p99(&shared);
            mon.in_steady = true;
        }
        // Deaths (among registered, live PEs).
        owed += per_second;
        let ms = shared.ms() + 1;
        let mut tries = 0;
        while owed >= 1.0 && tries < 100_000 {
            tries += 1;
            let i = rng.below(a.pes);
            let st = &shared.state[i];
            let v = st.load(Ordering::Relaxed);
            if v & REGISTERED != 0 && v & DEATH == 0 {
                st.fetch_or(ms.min(DEATH), Ordering::Relaxed);
                shared.dead.fetch_add(1, Ordering::Relaxed);
                owed -= 1.0;
            }
        }
        let frac = now().duration_since(run_start).as_secs_f64() / a.duration.as_secs_f64();
        mon.line(&shared, "run", frac.min(1.0));
        if tty {
            let _ = std::io::stderr().flush();
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let run_p99 = mon.total_p99(&shared);
    let summary = mon.summary(&shared, run_start, full_at, idle_p99, run_p99);
    println!("{summary}");
    drop(child);
    // The resolvers end after their current resolution (or when the registrar went).
    let until = now() + Duration::from_secs(2);
    while !resolvers.is_finished() && now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    let lost = shared.lost.load(Ordering::Relaxed);
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}

/// The PE connections' runtime; its threads `nice` steps below the calling thread.
fn generator_runtime(nice: u8) -> anyhow::Result<tokio::runtime::Runtime> {
    let base = rustix::process::getpriority_process(None).unwrap_or(0);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("soak-pes")
        .on_thread_start(move || {
            if nice > 0 {
                // Linux: PRIO_PROCESS with a thread ID sets that thread only.
                let tid = rustix::thread::gettid();
                let prio = (base + i32::from(nice)).min(19);
                if let Err(e) = rustix::process::setpriority_process(Some(tid), prio) {
                    eprintln!("rsp soak: cannot lower the PE threads' priority: {e}");
                }
            }
        })
        .build()
        .context("cannot start the PE connections' runtime")
}

fn now() -> Instant {
    #[allow(clippy::disallowed_methods)] // a load generator's own clock
    Instant::now()
}

struct ChildGuard(Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `rsp registrar` with the limits this run needs; its ASAP endpoint and process.
fn start_registrar(a: &SoakArgs, conns: usize) -> anyhow::Result<(Endpoint, ChildGuard)> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut flags: Vec<String> = [
        "registrar",
        "--listen",
        "tcp://127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--announce=false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let raised = [
        ("--max-pes", (a.pes + a.pes / 10 + 1000).to_string()),
        ("--max-pes-per-source", "0".to_owned()),
        (
            "--max-pes-per-connection",
            a.pes_per_connection.max(1000).to_string(),
        ),
        (
            "--max-connections",
            (conns + a.resolvers + 64).max(4096).to_string(),
        ),
        ("--max-connections-per-source", "0".to_owned()),
        ("--keepalive-interval", human(a.keepalive_interval)),
        ("--keepalive-timeout", human(a.keepalive_timeout)),
    ];
    for (k, v) in &raised {
        flags.push(format!("{k}={v}"));
    }
    flags.extend(a.registrar_arg.iter().cloned());
    eprintln!("rsp soak: starting rsp {}", flags.join(" "));
    let mut child = std::process::Command::new(exe)
        .args(&flags)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start rsp registrar")?;
    let out = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let guard = ChildGuard(child);
    let line = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("rsp registrar:") => break l,
            Some(Ok(_)) => continue,
            _ => bail!("rsp registrar ended before its startup line"),
        }
    };
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("tcp://"))
        .context("no tcp:// endpoint in the registrar's startup line")?;
    let ep = args::asap_endpoint(url).map_err(anyhow::Error::msg)?;
    Ok((ep, guard))
}

fn human(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// One PE connection: register its PEs (the idle pools' first), answer keep-alives
/// unless dead, re-register on schedule.
async fn pe_conn(
    s: &Shared,
    ep: &Endpoint,
    range: std::ops::Range<usize>,
    rereg: Duration,
    life_ms: u32,
    seed: u64,
) -> anyhow::Result<()> {
    let idle = s.idle_pools();
    // A PE connects when it registers: a connection with nothing to register in the idle
    // phase opens once every PE registers (the registrar closes connections that own no
    // PE after its idle timeout, 30 s by default).
    if !range.clone().any(|i| i % s.pools < idle) {
        while !s.all_in.load(Ordering::Relaxed) {
            if s.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut conn = MessageConn::connect(ep)
        .await
        .with_context(|| format!("connect to {ep}"))?;
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    // Next re-registration per PE (ms since start); u64::MAX = not registered yet.
    let mut next: Vec<u64> = vec![u64::MAX; range.len()];
    let mut all_sent = false;
    let mut out: Vec<u8> = Vec::new();
    let mut first = true;
    let mut msgs = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let period = rereg.as_millis().max(1) as u64;
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        tokio::select! {
            r = conn.recv_many(&mut msgs) => {
                r.map_err(anyhow::Error::msg)?;
                let ms = s.ms();
                for m in msgs.drain(..) {
                    let Ok(d) = AsapMessage::decode(&m) else { continue };
                    match d.message {
                        AsapMessage::EndpointKeepAlive { handle, pe_id: Some(id), .. } => {
                            s.keepalives.fetch_add(1, Ordering::Relaxed);
                            let i = id.0 as usize - 1;
                            if i < s.pes && s.state[i].load(Ordering::Relaxed) & DEATH == 0 {
                                out.extend(
                                    AsapMessage::EndpointKeepAliveAck { handle, pe_id: id }
                                        .encode_to_vec(),
                                );
                            }
                        }
                        AsapMessage::RegistrationResponse { pe_id, reject, error, .. } => {
                            s.registrations.fetch_add(1, Ordering::Relaxed);
                            let i = pe_id.0 as usize - 1;
                            if reject || error.is_some() {
                                s.refused.fetch_add(1, Ordering::Relaxed);
                            } else if i < s.pes {
                                let old = s.state[i].fetch_or(REGISTERED, Ordering::Relaxed);
                                if old & REGISTERED == 0 {
                                    s.registered_at[i]
                                        .store((ms + 1) as u32, Ordering::Relaxed);
                                    s.registered.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ = tick.tick() => {
                let ms = s.ms();
                let all_in = s.all_in.load(Ordering::Relaxed);
                for (k, i) in range.clone().enumerate() {
                    let due = next[k];
                    let initial = due == u64::MAX;
                    if initial {
                        if (first && i % s.pools < idle) || (all_in && !all_sent) {
                            out.extend(registration(i, s.pools, life_ms));
                            next[k] = ms + period / 2 + rng.next() % period;
                        }
                        continue;
                    }
                    if due <= ms {
                        next[k] = ms + period;
                        if s.state[i].load(Ordering::Relaxed) & DEATH == 0 {
                            out.extend(registration(i, s.pools, life_ms));
                        }
                    }
                }
                first = false;
                if all_in {
                    all_sent = true;
                }
            }
        }
        if !out.is_empty() {
            conn.send(&out).await.context("send")?;
            out.clear();
        }
    }
}

/// One PU: resolve random pools (the idle ones first), asking for every PE, and check
/// each answer against the PEs' state.
///
/// Paced (`pace` = period and phase), a resolution whose scheduled time has passed by
/// more than one period when it is sent counts from its scheduled time, so a registrar
/// that falls behind is not hidden by the resolver waiting for it (coordinated omission).
async fn resolver(
    s: &Shared,
    ep: &Endpoint,
    seed: u64,
    pace: Option<(Duration, Duration)>,
) -> anyhow::Result<()> {
    let mut conn = MessageConn::connect(ep)
        .await
        .with_context(|| format!("connect to {ep}"))?;
    let mut rng = Rng((seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let per_pool = s.pes.div_ceil(s.pools);
    let items = u32::try_from(per_pool.clamp(1, 128)).unwrap_or(128);
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)?;
    let mut last_flush = now();
    let mut due = pace.map(|(_, phase)| tokio::time::Instant::now() + phase);
    while !s.stop.load(Ordering::Relaxed) {
        let mut late_since = None;
        if let (Some(d), Some((period, _))) = (due.as_mut(), pace) {
            tokio::time::sleep_until(*d).await;
            let at = tokio::time::Instant::now();
            if at > *d + period {
                late_since = Some(d.into_std());
                s.behind.fetch_add(1, Ordering::Relaxed);
            }
            *d += period;
        }
        let pools = if s.all_in.load(Ordering::Relaxed) {
            s.pools
        } else {
            s.idle_pools()
        };
        let pool = rng.below(pools);
        let req = AsapMessage::HandleResolution {
            subscribe: false,
            handle: handle_of(pool),
            items: Some(items),
        }
        .encode_to_vec();
        let sent_ms = s.ms();
        let t = late_since.unwrap_or_else(now);
        conn.send(&req).await.context("send")?;
        let answer = loop {
            let m = conn.recv().await.map_err(anyhow::Error::msg)?;
            if let Ok(d) = AsapMessage::decode(&m) {
                if let AsapMessage::HandleResolutionResponse { pes, .. } = d.message {
                    break pes;
                }
            }
        };
        let _ = local.record(t.elapsed().as_micros() as u64);
        s.resolutions.fetch_add(1, Ordering::Relaxed);
        let got_ms = s.ms();
        let listed: Vec<u32> = answer.iter().map(|p| p.id.0).collect();
        let mut i = pool;
        while i < s.pes {
            check(s, i, listed.contains(&(i as u32 + 1)), sent_ms, got_ms);
            i += s.pools;
        }
        if last_flush.elapsed() >= Duration::from_millis(200) {
            if let Ok(mut h) = s.hist.lock() {
                let _ = h.add(&local);
            }
            local.reset();
            last_flush = now();
        }
    }
    Ok(())
}

/// One PE of a resolved pool: listed or not, against what it should be.
fn check(s: &Shared, i: usize, listed: bool, sent_ms: u64, got_ms: u64) {
    let v = s.state[i].load(Ordering::Relaxed);
    let death = v & DEATH;
    let reg = u64::from(s.registered_at[i].load(Ordering::Relaxed));
    if death == 0 {
        // Alive: it must be listed if its registration was confirmed before we asked.
        if !listed && reg != 0 && reg < sent_ms && v & LOST == 0 {
            let old = s.state[i].fetch_or(LOST, Ordering::Relaxed);
            if old & LOST == 0 && old & DEATH == 0 {
                s.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    } else if !listed {
        if v & CONFIRMED == 0 && s.state[i].fetch_or(CONFIRMED, Ordering::Relaxed) & CONFIRMED == 0
        {
            s.confirmed.fetch_add(1, Ordering::Relaxed);
        }
    } else if got_ms > death - 1 + s.removal_bound_ms
        && v & LATE == 0
        && s.state[i].fetch_or(LATE, Ordering::Relaxed) & LATE == 0
    {
        s.late.fetch_add(1, Ordering::Relaxed);
    }
}

/// The once-a-second line: rates since the last line, registrar RSS and CPU.
struct Monitor {
    pid: Option<u32>,
    /// The registrar's RSS before any PE registered.
    base_rss: u64,
    last: Instant,
    regs: u64,
    res: u64,
    kas: u64,
    cpu: Option<u64>,
    /// All resolutions of the phase.
    total: Histogram<u64>,
    /// The run's resolutions once every PE is in (the registration storm left out).
    steady: Histogram<u64>,
    /// Add to `steady` from now on.
    in_steady: bool,
    cpu_sum: f64,
    cpu_n: u32,
    rss_max: u64,
    kas_sum: f64,
}

impl Monitor {
    fn new(pid: Option<u32>, base_rss: u64) -> Self {
        Monitor {
            pid,
            base_rss,
            last: now(),
            regs: 0,
            res: 0,
            kas: 0,
            cpu: pid.and_then(cpu_ticks),
            total: Histogram::new_with_bounds(1, 60_000_000, 2).expect("histogram bounds"),
            steady: Histogram::new_with_bounds(1, 60_000_000, 2).expect("histogram bounds"),
            in_steady: false,
            cpu_sum: 0.0,
            cpu_n: 0,
            rss_max: 0,
            kas_sum: 0.0,
        }
    }

    fn reset(&mut self, _s: &Shared) {
        self.total.reset();
        self.cpu_sum = 0.0;
        self.cpu_n = 0;
        self.kas_sum = 0.0;
    }

    fn total_p99(&mut self, s: &Shared) -> u64 {
        if let Ok(mut h) = s.hist.lock() {
            let _ = self.total.add(&*h);
            if self.in_steady {
                let _ = self.steady.add(&*h);
            }
            h.reset();
        }
        self.total.value_at_quantile(0.99)
    }

    fn line(&mut self, s: &Shared, phase: &str, progress: f64) {
        let dt = self.last.elapsed().as_secs_f64().max(0.001);
        self.last = now();
        let regs = s.registrations.load(Ordering::Relaxed);
        let res = s.resolutions.load(Ordering::Relaxed);
        let kas = s.keepalives.load(Ordering::Relaxed);
        let (dr, dq, dk) = (regs - self.regs, res - self.res, kas - self.kas);
        (self.regs, self.res, self.kas) = (regs, res, kas);
        let p99 = match s.hist.lock() {
            Ok(mut h) => {
                let p = h.value_at_quantile(0.99);
                let _ = self.total.add(&*h);
                if self.in_steady {
                    let _ = self.steady.add(&*h);
                }
                h.reset();
                p
            }
            Err(_) => 0,
        };
        let cpu = self.pid.and_then(cpu_ticks);
        let cpu_pct = match (cpu, self.cpu) {
            (Some(c), Some(o)) => (c - o) as f64 / dt, // ticks of 10 ms per s = %
            _ => f64::NAN,
        };
        self.cpu = cpu;
        if cpu_pct.is_finite() && phase == "run" {
            self.cpu_sum += cpu_pct;
            self.cpu_n += 1;
            self.kas_sum += dk as f64 / dt;
        }
        let rss = self.pid.and_then(rss_bytes).unwrap_or(0);
        self.rss_max = self.rss_max.max(rss);
        let held = s.registered.load(Ordering::Relaxed) - s.confirmed.load(Ordering::Relaxed);
        let per_pe = rss
            .saturating_sub(self.base_rss)
            .checked_div(held)
            .unwrap_or(0);
        println!(
            "{:>5.0}s {phase}: reg/s {:>7.0} res/s {:>6.0} ka/s {:>7.0} | dead {} removed {} late {} LOST {} | rss {} MiB ({} B/PE over start) cpu {:.0} % | p99 {}",
            s.start.elapsed().as_secs_f64(),
            dr as f64 / dt,
            dq as f64 / dt,
            dk as f64 / dt,
            s.dead.load(Ordering::Relaxed),
            s.confirmed.load(Ordering::Relaxed),
            s.late.load(Ordering::Relaxed),
            s.lost.load(Ordering::Relaxed),
            rss >> 20,
            per_pe,
            cpu_pct,
            micros(p99),
        );
        eprintln!(
            "progress: {phase} {:.0} %, {} of {} PEs registered, {} refused, {} connection errors",
            progress * 100.0,
            s.registered.load(Ordering::Relaxed),
            s.pes,
            s.refused.load(Ordering::Relaxed),
            s.conn_errors.load(Ordering::Relaxed),
        );
    }

    fn summary(
        &self,
        s: &Shared,
        run_start: Instant,
        full_at: Option<Instant>,
        idle_p99: u64,
        run_p99: u64,
    ) -> String {
        let held = s.registered.load(Ordering::Relaxed) - s.confirmed.load(Ordering::Relaxed);
        let steady_p99 = self.steady.value_at_quantile(0.99);
        format!(
            "rsp soak summary: ran {:.0} s ({}); registered {} PEs, refused {}; dead {} removed {} late {} lost {}; \
             keep-alives {:.0}/s; registrar rss max {} MiB = {} B/PE over its start, cpu {:.0} % of a core (mean); \
             resolution p99 {} (idle {}, ratio {:.2}), once all PEs were in {} (ratio {:.2}); {} paced resolutions sent late; {} connection errors",
            run_start.elapsed().as_secs_f64(),
            match full_at {
                Some(t) => format!("all PEs in after {:.0} s", t.duration_since(run_start).as_secs_f64()),
                None => "not all PEs in".to_owned(),
            },
            s.registered.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed),
            s.dead.load(Ordering::Relaxed),
            s.confirmed.load(Ordering::Relaxed),
            s.late.load(Ordering::Relaxed),
            s.lost.load(Ordering::Relaxed),
            self.kas_sum / f64::from(self.cpu_n.max(1)),
            self.rss_max >> 20,
            self.rss_max.saturating_sub(self.base_rss) / held.max(1),
            self.cpu_sum / f64::from(self.cpu_n.max(1)),
            micros(run_p99),
            micros(idle_p99),
            run_p99 as f64 / idle_p99.max(1) as f64,
            micros(steady_p99),
            steady_p99 as f64 / idle_p99.max(1) as f64,
            s.behind.load(Ordering::Relaxed),
            s.conn_errors.load(Ordering::Relaxed),
        )
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 per second on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a process in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
