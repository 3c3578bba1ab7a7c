//! `rsp bench resolve|register`: an end-to-end load generator against a registrar.
//!
//! For each client count (1, 16, 256 by default) it opens that many TCP connections and
//! runs a closed loop on each (send one request, wait for its answer, repeat) for
//! `--duration`, recording every latency. Then it runs the same load generator against a
//! trivial in-process echo server that speaks the same framing (messages back-to-back,
//! [`Deframer`]) — the practical limit of loopback on this machine — and prints the
//! registrar's throughput as a ratio of it.
//!
//! Both servers run on their own runtime (two worker threads) and the clients on another,
//! like separate processes on one host.
//!
//! Over SCTP (`--registrar sctp://…`) every request is one SCTP message with PPID 11 and
//! the baseline is an SCTP echo server. `--versus URL` measures a second registrar (e.g.
//! RSPLIB's `rspregistrar`) in the same rounds with the same clients and prints the ratio
//! of the two; `tests/sctp-vm/bench.sh` runs that inside the SCTP VM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rserpool::pe::{PeOptions, PoolElement};
use rserpool::service::bench::{self, MessageConn as Conn};
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_wire::{
    asap_type, AsapMessage, PeId, Policy, PoolElement as WirePe, PoolHandle, ServerId,
    TransportAddr, TransportUse, UserTransport,
};

use crate::args;

/// What `rsp bench flood` floods with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloodKind {
    Resolve,
    Register,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// ASAP_HANDLE_RESOLUTION of a pool with 10 PEs (3 returned per answer).
    Resolve,
    /// ASAP_REGISTRATION (re-registering 100 PEs per client in turn).
    Register,
    /// A well-behaved pool user's resolutions/s alone and beside a flood of pipelined
    /// resolutions from another source address (issue 14's fairness figure).
    Flood,
}

/// Measure a registrar end to end: ops/s and latency for 1, 16 and 256 concurrent
/// clients, compared with an echo server on the same framing.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What each request is.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Length of each run (one per client count and target).
    #[arg(long, default_value = "3s", value_parser = args::duration)]
    pub duration: Duration,
    /// Registrar to measure, tcp://, mptcp://, tls:// or sctp:// (default: one started in
    /// this process on an ephemeral TCP port; an mptcp:// one is compared with an MPTCP
    /// echo server). The register workload registers 100 PEs per client from
    /// one address: an `rsp registrar` needs `--max-pes-per-source` of at least 100 ×
    /// clients (or 0) for it.
    #[arg(long, value_name = "URL", value_parser = args::asap_endpoint)]
    pub registrar: Option<Endpoint>,
    /// A second registrar measured in the same rounds by the same clients (e.g. RSPLIB's
    /// rspregistrar); the table adds "versus" rows and the ratio registrar ÷ versus.
    #[arg(long, value_name = "URL", value_parser = args::asap_endpoint)]
    pub versus: Option<Endpoint>,
    /// Concurrent clients per run (comma-separated).
    #[arg(long, default_value = "1,16,256", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Skip the echo-server baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Split each run into this many rounds, alternating registrar and echo, so both see
    /// the same background load (a shared machine drifts).
    #[arg(long, default_value = "3")]
    pub rounds: u32,
    /// Trust anchors (and a client certificate) for tls:// targets.
    #[command(flatten)]
    pub tls: args::TlsClientArgs,
    /// flood: resolutions the flooding client keeps unanswered (below the registrar's
    /// write queue, 1024 by default).
    #[arg(long, default_value = "500")]
    pub flood_window: u64,
    /// flood: what the flooding client sends: handle resolutions of the pool, or
    /// registrations with a fresh PE identifier each.
    #[arg(long, value_enum, default_value = "resolve")]
    pub flood_kind: FloodKind,
    /// flood: messages per second the flooding client sends (0 = as fast as the
    /// registrar takes them; default 100,000 resolutions or 10,000 registrations, the
    /// rates of issue 14).
    #[arg(long)]
    pub flood_rate: Option<u64>,
    /// flood: the in-process registrar's per-source handle-resolution rate
    /// (`--max-hr-rate`; 0 = unlimited).
    #[arg(long, default_value = "20000")]
    pub max_hr_rate: u32,
    /// flood: the well-behaved pool user resolves at most this often per second
    /// (default: one at a time, as fast as answers come).
    #[arg(long)]
    pub pace: Option<u32>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.workload == Workload::Flood {
        return crate::bench_flood::run(args);
    }
    if args.clients.is_empty() || args.clients.contains(&0) {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "--clients needs positive numbers, e.g. 1,16,256"
        )));
    }
    crate::registrar::raise_fd_limit(args.clients.iter().max().copied().unwrap_or(1) * 2 + 64);
    let tls = args.tls.load().map_err(crate::exit::usage)?;
    let servers = server_runtime()?;
    let (registrar, label, _keep) = match &args.registrar {
        Some(ep) => (Target::of(ep, &tls)?, format!("registrar {ep}"), None),
        None => {
            let (a, running) = in_process(&servers, start_registrar())?;
            (
                Target::Tcp(a),
                format!("in-process registrar tcp://{a}"),
                Some(running),
            )
        }
    };
    let versus = args
        .versus
        .as_ref()
        .map(|v| Target::of(v, &tls))
        .transpose()?;
    // A TLS registrar is compared with the plain TCP echo (and with `--versus tcp://…`).
    let echo = match &registrar {
        Target::Tcp(_) | Target::Tls(..) => servers.block_on(start_echo(false))?,
        // An MPTCP registrar against an MPTCP echo (`--versus tcp://…` for TCP).
        Target::Mptcp(_) => servers.block_on(start_echo(true))?,
        Target::Sctp(addrs) => servers.block_on(start_sctp_echo(addrs[0]))?,
    };
    let clients = args::runtime()?;
    let mut pools = vec![clients.block_on(prepare(args.workload, &registrar))?];
    if let Some(v) = &versus {
        pools.push(clients.block_on(prepare(args.workload, v))?);
    }

    eprintln!(
        "rsp bench {}: {label}{}; {:?} per run; clients {:?}",
        workload_name(args.workload),
        args.versus
            .as_ref()
            .map(|v| format!(" versus {v}"))
            .unwrap_or_default(),
        args.duration,
        args.clients
    );
    let mut rows = Vec::new();
    let rounds = args.rounds.max(1);
    let slice = args.duration / rounds;
    for &n in &args.clients {
        let mut reg: Option<RunResult> = None;
        let mut vs: Option<RunResult> = None;
        let mut baseline: Option<RunResult> = None;
        for _ in 0..rounds {
            let r = clients.block_on(measure(args.workload, &registrar, n, slice, "registrar"))?;
            merge(&mut reg, r);
            if let Some(v) = &versus {
                let r = clients.block_on(measure(args.workload, v, n, slice, "versus"))?;
                merge(&mut vs, r);
            }
            if !args.no_baseline {
                let e = clients.block_on(measure(args.workload, &echo, n, slice, "echo"))?;
                merge(&mut baseline, e);
            }
        }
        let reg = reg.context("no registrar run")?;
        report(&reg, "registrar", n);
        if let Some(v) = &vs {
            report(v, "versus", n);
        }
        if let Some(e) = &baseline {
            report(e, "echo", n);
        }
        rows.push((n, reg, vs, baseline));
    }
    drop(pools);
    print_table(args.workload, &rows);
    Ok(ExitCode::SUCCESS)
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp(SocketAddr),
    Mptcp(SocketAddr),
    /// All addresses of one (multi-homed) SCTP endpoint.
    Sctp(Vec<SocketAddr>),
    /// TLS over TCP, with the settings its clients use.
    Tls(SocketAddr, Arc<rserpool::transport::tls::TlsSettings>),
}

impl Target {
    pub(crate) fn of(
        ep: &Endpoint,
        tls: &Option<Arc<rserpool::transport::tls::TlsSettings>>,
    ) -> anyhow::Result<Target> {
        let a = ep.primary().context("registrar URL without address")?;
        Ok(match ep.transport {
            TransportProto::Sctp => Target::Sctp(ep.addrs.clone()),
            TransportProto::Tcp => Target::Tcp(a),
            TransportProto::Mptcp => {
                rserpool::transport::tcp::mptcp_available("use tcp:// instead of mptcp://")?;
                Target::Mptcp(a)
            }
            TransportProto::Tls => match tls {
                Some(t) => Target::Tls(a, t.clone()),
                None => bail!("a tls:// registrar needs trust anchors (--tls-ca FILE)"),
            },
            other => {
                bail!("rsp bench measures tcp://, mptcp://, tls:// or sctp:// registrars, not {other:?}")
            }
        })
    }
    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Target::Tcp(a) => Endpoint::tcp(*a),
            Target::Mptcp(a) => Endpoint {
                transport: TransportProto::Mptcp,
                addrs: vec![*a],
            },
            Target::Sctp(addrs) => Endpoint::sctp(addrs.clone()),
            Target::Tls(a, _) => Endpoint {
                transport: TransportProto::Tls,
                addrs: vec![*a],
            },
        }
    }
    fn tls(&self) -> Option<Arc<rserpool::transport::tls::TlsSettings>> {
        match self {
            Target::Tls(_, t) => Some(t.clone()),
            _ => None,
        }
    }
    /// The local address a PE of the benchmark registers: the one the kernel would use
    /// towards the registrar (RSPLIB refuses loopback-only PEs; on one host that gives
    /// e.g. 10.0.0.1 for a registrar at 10.0.0.1).
    fn pe_address(&self) -> std::net::IpAddr {
        let reg = match self {
            Target::Tcp(a) | Target::Mptcp(a) | Target::Tls(a, _) => *a,
            Target::Sctp(addrs) => addrs[0],
        };
        let probe = std::net::UdpSocket::bind(SocketAddr::new(
            if reg.is_ipv6() {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            },
            0,
        ))
        .and_then(|s| s.connect(reg).and_then(|()| s.local_addr()));
        match probe {
            Ok(a) if !a.ip().is_unspecified() => a.ip(),
            _ => reg.ip(),
        }
    }
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Resolve => "resolve",
        Workload::Register => "register",
        Workload::Flood => "flood",
    }
}

pub(crate) fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .context("server runtime")
}

/// Start a registrar on `servers` and return its TCP address with it.
pub(crate) fn in_process(
    servers: &tokio::runtime::Runtime,
    start: impl std::future::Future<Output = anyhow::Result<crate::registrar::Running>>,
) -> anyhow::Result<(SocketAddr, crate::registrar::Running)> {
    let running = servers.block_on(start)?;
    let a = running
        .endpoints
        .first()
        .and_then(Endpoint::primary)
        .context("in-process registrar without endpoint")?;
    Ok((a, running))
}

async fn start_registrar() -> anyhow::Result<crate::registrar::Running> {
    let settings = crate::registrar::Settings {
        listen: vec!["tcp://127.0.0.1:0".into()],
        admin: Some("off".into()),
        announce: Some(false),
        enrp_listen: vec!["off".into()],
        // Every client of the benchmark comes from 127.0.0.1.
        max_connections_per_source: Some(0),
        // The register workload keeps up to 100 PEs per client connection registered
        // from 127.0.0.1 (25,600 with 256 clients): no per-source quota.
        max_pes_per_source: Some(0),
        // Each client re-registers its PEs back to back.
        max_registration_rate: Some(0),
        ..Default::default()
    };
    crate::registrar::start(settings.resolve()?).await
}

/// The baseline: every message received is sent straight back.
async fn start_echo(mptcp: bool) -> anyhow::Result<Target> {
    let a = bench::start_tcp_echo(mptcp).await?;
    Ok(if mptcp {
        Target::Mptcp(a)
    } else {
        Target::Tcp(a)
    })
}

/// The SCTP baseline: every message is sent straight back (same PPID).
async fn start_sctp_echo(near: SocketAddr) -> anyhow::Result<Target> {
    Ok(Target::Sctp(vec![bench::start_sctp_echo(near)?]))
}

pub(crate) const RESOLVE_POOL: &str = "BenchPool";
const REGISTER_POOL: &str = "BenchRegPool";
const PES_PER_CLIENT: u32 = 100;

/// Resolve: 10 PEs (real pool elements, answering keep-alives) in the benchmark pool.
/// Over SCTP they register SCTP user transports (RSPLIB takes no TCP ones).
pub(crate) async fn prepare(w: Workload, registrar: &Target) -> anyhow::Result<Vec<PoolElement>> {
    if w == Workload::Register {
        return Ok(Vec::new());
    }
    let ip = registrar.pe_address();
    let mut pes = Vec::new();
    for i in 0..10u16 {
        let mut opts = PeOptions::new(RESOLVE_POOL)
            .registrar(registrar.endpoint())
            .no_announces();
        if let Some(t) = registrar.tls() {
            opts = opts.link(rserpool::link::RegistrarLink {
                registrars: vec![registrar.endpoint()],
                announce_group: None,
                connect_timeout: None,
                tls: Some(t),
            });
        }
        let opts = match registrar {
            Target::Tcp(_) | Target::Mptcp(_) | Target::Tls(..) => {
                opts.tcp_user_transport(SocketAddr::new(ip, 20000 + i))
            }
            Target::Sctp(_) => opts.sctp_user_transport(20000 + i, vec![ip], true),
        };
        pes.push(PoolElement::start(opts)?);
    }
    for pe in &pes {
        tokio::time::timeout(Duration::from_secs(10), pe.registered())
            .await
            .context("benchmark PEs did not register")??;
    }
    Ok(pes)
}

pub(crate) fn requests(w: Workload, client: usize, target: &Target) -> Vec<Vec<u8>> {
    let ip = target.pe_address();
    match w {
        Workload::Resolve | Workload::Flood => vec![AsapMessage::HandleResolution {
            subscribe: false,
            handle: RESOLVE_POOL.into(),
            items: None,
        }
        .encode_to_vec()],
        Workload::Register => (0..PES_PER_CLIENT)
            .map(|k| {
                let id = (client as u32) * PES_PER_CLIENT + k + 1;
                let port = (id % 60000) as u16 + 1024;
                let user_transport = match target {
                    Target::Tcp(_) | Target::Mptcp(_) | Target::Tls(..) => {
                        TransportAddr::tcp(port, ip)
                    }
                    Target::Sctp(_) => {
                        TransportAddr::sctp(port, TransportUse::DATA_PLUS_CONTROL, vec![ip])
                    }
                };
                AsapMessage::Registration {
                    handle: PoolHandle::from(REGISTER_POOL),
                    pe: WirePe {
                        id: PeId(id),
                        home_registrar: ServerId(0),
                        registration_life: 60_000,
                        user_transport: UserTransport::Ip(user_transport),
                        policy: Policy::RoundRobin,
                        asap_transport: None,
                    },
                }
                .encode_to_vec()
            })
            .collect(),
    }
}

fn answer_type(w: Workload) -> u8 {
    match w {
        Workload::Resolve | Workload::Flood => asap_type::HANDLE_RESOLUTION_RESPONSE,
        Workload::Register => asap_type::REGISTRATION_RESPONSE,
    }
}

/// Results of one run.
struct RunResult {
    ops: u64,
    errors: u64,
    /// What the first error was (for the report).
    first_error: Option<String>,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn measure(
    w: Workload,
    to: &Target,
    n: usize,
    duration: Duration,
    target: &'static str,
) -> anyhow::Result<RunResult> {
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::with_capacity(n);
    let connecting = Instant::now();
    for _ in 0..n {
        let c = match to {
            Target::Tls(_, t) => Conn::connect_tls(&to.endpoint(), t).await,
            _ => Conn::connect(&to.endpoint()).await,
        }
        .with_context(|| format!("connect to {target} at {}", to.endpoint()))?;
        conns.push(c);
    }
    if n >= 16 {
        eprintln!(
            "  {target} {}: {n} connections in {:.1} ms ({:.0} µs each, handshakes included)",
            to.endpoint().transport.scheme(),
            connecting.elapsed().as_secs_f64() * 1e3,
            connecting.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    let is_echo = target == "echo";
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let reqs = requests(w, i, to);
            let want = if is_echo { reqs[0][0] } else { answer_type(w) };
            tokio::spawn(client(s, reqs, want, ops.clone(), stop.clone()))
        })
        .collect();
    let tty = std::io::stderr().is_terminal();
    let mut last_print = Instant::now();
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = ops.load(Ordering::Relaxed);
        let t = start.elapsed().as_secs_f64();
        let line = format!(
            "{:<9} {:>4} clients  {:>5.1}s/{:.1}s  {:>10} ops  {:>10.0} ops/s",
            target,
            n,
            t,
            duration.as_secs_f64(),
            done,
            done as f64 / t.max(1e-9)
        );
        if tty {
            eprint!("\r{line}   ");
        } else if last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!("{line}");
            last_print = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut hist = Histogram::<u64>::new(3).context("histogram")?;
    let mut errors = 0;
    let mut total = 0;
    let mut first_error = None;
    for t in tasks {
        let (h, ok, err, why) = t.await.context("client task")?;
        if first_error.is_none() {
            first_error = why;
        }
        hist.add(&h).ok();
        total += ok;
        errors += err;
    }
    if tty {
        eprint!("\r{:80}\r", "");
    }
    Ok(RunResult {
        ops: total,
        errors,
        first_error,
        elapsed,
        hist,
    })
}

fn merge(into: &mut Option<RunResult>, r: RunResult) {
    match into {
        None => *into = Some(r),
        Some(acc) => {
            acc.ops += r.ops;
            acc.errors += r.errors;
            if acc.first_error.is_none() {
                acc.first_error = r.first_error;
            }
            acc.elapsed += r.elapsed;
            let _ = acc.hist.add(&r.hist);
        }
    }
}

fn report(r: &RunResult, target: &str, n: usize) {
    eprintln!(
        "{target:<9} {n:>4} clients: {:>9.0} ops/s  p50 {}  p99 {}{}",
        r.rate(),
        micros(r.hist.value_at_quantile(0.5)),
        micros(r.hist.value_at_quantile(0.99)),
        if r.errors > 0 {
            format!(
                "  ({} errors, first: {})",
                r.errors,
                r.first_error.as_deref().unwrap_or("?")
            )
        } else {
            String::new()
        }
    );
}

/// One closed-loop client: returns its latency histogram (µs), successes and errors.
async fn client(
    mut c: Conn,
    reqs: Vec<Vec<u8>>,
    want: u8,
    ops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (Histogram<u64>, u64, u64, Option<String>) {
    let mut hist = Histogram::<u64>::new(3).expect("3 significant figures are valid");
    let (mut ok, mut err) = (0u64, 0u64);
    let mut why: Option<String> = None;
    let note = |why: &mut Option<String>, what: String| {
        if why.is_none() {
            *why = Some(what);
        }
    };
    let mut k = 0usize;
    let mut last_pe: Option<PeId> = None;
    'outer: while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let req = &reqs[k % reqs.len()];
        if let Err(e) = c.send(req).await {
            err += 1;
            note(&mut why, format!("send failed: {e}"));
            break;
        }
        if let Ok(d) = AsapMessage::decode(req) {
            if let AsapMessage::Registration { pe, .. } = d.message {
                last_pe = Some(pe.id);
            }
        }
        k += 1;
        // Read until the answer; acknowledge keep-alives on the way.
        loop {
            let msg = match c.recv().await {
                Ok(m) => m,
                Err(e) => {
                    err += 1;
                    note(&mut why, e);
                    break 'outer;
                }
            };
            // A refused registration (R flag) is an error, not an operation.
            if msg[0] == want
                && want == asap_type::REGISTRATION_RESPONSE
                && msg.get(1).is_some_and(|f| f & 0x01 != 0)
            {
                err += 1;
                let what = match AsapMessage::decode(&msg).map(|d| d.message) {
                    Ok(AsapMessage::RegistrationResponse { pe_id, error, .. }) => {
                        match error.as_ref().and_then(|e| e.first_code()) {
                            Some(c) => format!("registration of PE {pe_id} refused: {c}"),
                            None => format!("registration of PE {pe_id} refused"),
                        }
                    }
                    _ => "registration refused".to_owned(),
                };
                note(&mut why, what);
                break;
            }
            if msg[0] == want {
                let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = hist.record(us.max(1));
                ok += 1;
                ops.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if msg[0] == asap_type::ENDPOINT_KEEP_ALIVE {
                if let Ok(d) = AsapMessage::decode(&msg) {
                    if let AsapMessage::EndpointKeepAlive { handle, pe_id, .. } = d.message {
                        // Without a PE Identifier the keep-alive is for all our PEs of the
                        // pool: acknowledge the one registered last.
                        if let Some(pe_id) = pe_id.or(last_pe) {
                            let ack = AsapMessage::EndpointKeepAliveAck { handle, pe_id };
                            if c.send(&ack.encode_to_vec()).await.is_err() {
                                err += 1;
                                break 'outer;
                            }
                        }
                    }
                }
                continue;
            }
            err += 1;
            note(
                &mut why,
                match AsapMessage::decode(&msg) {
                    Ok(d) => format!("unexpected {:?}", d.message),
                    Err(e) => format!("undecodable answer: {e}"),
                },
            );
            break;
        }
    }
    (hist, ok, err, why)
}

pub(crate) fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

fn print_table(w: Workload, rows: &[(usize, RunResult, Option<RunResult>, Option<RunResult>)]) {
    println!();
    println!(
        "{:>7}  {:<9}  {:>10}  {:>9}  {:>9}  {:>8}  {:>6}  {:>6}",
        "clients", "target", "ops/s", "p50", "p99", "errors", "ratio", "vs"
    );
    let row = |n: usize, name: &str, r: &RunResult, ratio: String, vs: String| {
        println!(
            "{:>7}  {:<9}  {:>10.0}  {:>9}  {:>9}  {:>8}  {:>6}  {:>6}",
            n,
            name,
            r.rate(),
            micros(r.hist.value_at_quantile(0.5)),
            micros(r.hist.value_at_quantile(0.99)),
            r.errors,
            ratio,
            vs
        );
    };
    let ratio = |a: &RunResult, b: Option<&RunResult>| {
        b.map(|b| format!("{:.2}", a.rate() / b.rate().max(1e-9)))
            .unwrap_or_else(|| "-".into())
    };
    for (n, reg, versus, echo) in rows {
        row(
            *n,
            "registrar",
            reg,
            ratio(reg, echo.as_ref()),
            ratio(reg, versus.as_ref()),
        );
        if let Some(v) = versus {
            row(*n, "versus", v, ratio(v, echo.as_ref()), String::new());
        }
        if let Some(e) = echo {
            row(*n, "echo", e, String::new(), String::new());
        }
    }
    println!(
        "ratio = ops/s ÷ echo ops/s ({} requests; echo = same framing, no work); \
         vs = registrar ops/s ÷ versus ops/s",
        workload_name(w)
    );
}
