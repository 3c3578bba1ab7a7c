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
use rserpool_proto::io::Endpoint;
use rserpool_wire::framing::Deframer;
use rserpool_wire::{
    asap_type, AsapMessage, PeId, Policy, PoolElement as WirePe, PoolHandle, ServerId,
    TransportAddr, UserTransport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// ASAP_HANDLE_RESOLUTION of a pool with 10 PEs (3 returned per answer).
    Resolve,
    /// ASAP_REGISTRATION (re-registering 100 PEs per client in turn).
    Register,
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
    /// Registrar to measure (default: one started in this process on an ephemeral port).
    #[arg(long, value_name = "URL", value_parser = args::asap_endpoint)]
    pub registrar: Option<Endpoint>,
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
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients needs positive numbers, e.g. 1,16,256");
    }
    crate::registrar::raise_fd_limit(args.clients.iter().max().copied().unwrap_or(1) * 2 + 64);
    let servers = server_runtime()?;
    let (registrar_addr, label, _keep) = match &args.registrar {
        Some(ep) => {
            let a = ep.primary().context("registrar URL without address")?;
            (a, format!("registrar {ep}"), None)
        }
        None => {
            let running = servers.block_on(start_registrar())?;
            let a = running
                .endpoints
                .first()
                .and_then(Endpoint::primary)
                .context("in-process registrar without endpoint")?;
            (a, format!("in-process registrar tcp://{a}"), Some(running))
        }
    };
    let echo_addr = servers.block_on(start_echo())?;
    let clients = args::runtime()?;
    let pool = clients.block_on(prepare(args.workload, registrar_addr))?;

    eprintln!(
        "rsp bench {}: {label}; {:?} per run; clients {:?}",
        workload_name(args.workload),
        args.duration,
        args.clients
    );
    let mut rows = Vec::new();
    let rounds = args.rounds.max(1);
    let slice = args.duration / rounds;
    for &n in &args.clients {
        let mut reg: Option<RunResult> = None;
        let mut echo: Option<RunResult> = None;
        for _ in 0..rounds {
            let r = clients.block_on(measure(
                args.workload,
                registrar_addr,
                n,
                slice,
                "registrar",
            ))?;
            merge(&mut reg, r);
            if !args.no_baseline {
                let e = clients.block_on(measure(args.workload, echo_addr, n, slice, "echo"))?;
                merge(&mut echo, e);
            }
        }
        let reg = reg.context("no registrar run")?;
        report(&reg, "registrar", n);
        if let Some(e) = &echo {
            report(e, "echo", n);
        }
        rows.push((n, reg, echo));
    }
    drop(pool);
    print_table(args.workload, &rows);
    Ok(ExitCode::SUCCESS)
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Resolve => "resolve",
        Workload::Register => "register",
    }
}

fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .context("server runtime")
}

async fn start_registrar() -> anyhow::Result<crate::registrar::Running> {
    let settings = crate::registrar::Settings {
        listen: vec!["tcp://127.0.0.1:0".into()],
        admin: Some("off".into()),
        announce: Some(false),
        ..Default::default()
    };
    crate::registrar::start(settings.resolve()?).await
}

/// The baseline: every message received is sent straight back.
async fn start_echo() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(echo_conn(s));
        }
    });
    Ok(addr)
}

async fn echo_conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut d = Deframer::default();
    let mut buf = vec![0u8; 16384];
    let mut out = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        d.push(&buf[..n]);
        out.clear();
        while let Ok(Some(m)) = d.next_message() {
            out.extend_from_slice(m);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

const RESOLVE_POOL: &str = "BenchPool";
const REGISTER_POOL: &str = "BenchRegPool";
const PES_PER_CLIENT: u32 = 100;

/// Resolve: 10 PEs (real pool elements, answering keep-alives) in the benchmark pool.
async fn prepare(w: Workload, registrar: SocketAddr) -> anyhow::Result<Vec<PoolElement>> {
    if w != Workload::Resolve {
        return Ok(Vec::new());
    }
    let mut pes = Vec::new();
    for i in 0..10u16 {
        let opts = PeOptions::new(RESOLVE_POOL)
            .registrar(Endpoint::tcp(registrar))
            .tcp_user_transport(SocketAddr::from(([127, 0, 0, 1], 20000 + i)))
            .no_announces();
        pes.push(PoolElement::start(opts)?);
    }
    for pe in &pes {
        tokio::time::timeout(Duration::from_secs(10), pe.registered())
            .await
            .context("benchmark PEs did not register")??;
    }
    Ok(pes)
}

fn requests(w: Workload, client: usize) -> Vec<Vec<u8>> {
    match w {
        Workload::Resolve => vec![AsapMessage::HandleResolution {
            subscribe: false,
            handle: RESOLVE_POOL.into(),
            items: None,
        }
        .encode_to_vec()],
        Workload::Register => (0..PES_PER_CLIENT)
            .map(|k| {
                let id = (client as u32) * PES_PER_CLIENT + k + 1;
                AsapMessage::Registration {
                    handle: PoolHandle::from(REGISTER_POOL),
                    pe: WirePe {
                        id: PeId(id),
                        home_registrar: ServerId(0),
                        registration_life: 60_000,
                        user_transport: UserTransport::Ip(TransportAddr::tcp(
                            (id % 60000) as u16 + 1024,
                            [127, 0, 0, 1].into(),
                        )),
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
        Workload::Resolve => asap_type::HANDLE_RESOLUTION_RESPONSE,
        Workload::Register => asap_type::REGISTRATION_RESPONSE,
    }
}

/// Results of one run.
struct RunResult {
    ops: u64,
    errors: u64,
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
    addr: SocketAddr,
    n: usize,
    duration: Duration,
    target: &'static str,
) -> anyhow::Result<RunResult> {
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {target} at {addr}"))?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let is_echo = target == "echo";
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let reqs = requests(w, i);
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
    for t in tasks {
        let (h, ok, err) = t.await.context("client task")?;
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
            format!("  ({} errors)", r.errors)
        } else {
            String::new()
        }
    );
}

/// One closed-loop client: returns its latency histogram (µs), successes and errors.
async fn client(
    s: TcpStream,
    reqs: Vec<Vec<u8>>,
    want: u8,
    ops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (Histogram<u64>, u64, u64) {
    let mut hist = Histogram::<u64>::new(3).expect("3 significant figures are valid");
    let (mut rd, mut wr) = s.into_split();
    let mut d = Deframer::default();
    let mut buf = vec![0u8; 65536];
    let (mut ok, mut err) = (0u64, 0u64);
    let mut k = 0usize;
    'outer: while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        if wr.write_all(&reqs[k % reqs.len()]).await.is_err() {
            err += 1;
            break;
        }
        k += 1;
        // Read until the answer; acknowledge keep-alives on the way.
        loop {
            let msg = match d.next_message() {
                Ok(Some(m)) => m.to_vec(),
                Ok(None) => match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        err += 1;
                        break 'outer;
                    }
                    Ok(n) => {
                        d.push(&buf[..n]);
                        continue;
                    }
                },
                Err(_) => {
                    err += 1;
                    break 'outer;
                }
            };
            if msg[0] == want {
                let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = hist.record(us.max(1));
                ok += 1;
                ops.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if msg[0] == asap_type::ENDPOINT_KEEP_ALIVE {
                if let Ok(d) = AsapMessage::decode(&msg) {
                    if let AsapMessage::EndpointKeepAlive {
                        handle,
                        pe_id: Some(pe_id),
                        ..
                    } = d.message
                    {
                        let ack = AsapMessage::EndpointKeepAliveAck { handle, pe_id };
                        if wr.write_all(&ack.encode_to_vec()).await.is_err() {
                            err += 1;
                            break 'outer;
                        }
                    }
                }
                continue;
            }
            err += 1;
            break;
        }
    }
    (hist, ok, err)
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

fn print_table(w: Workload, rows: &[(usize, RunResult, Option<RunResult>)]) {
    println!();
    println!(
        "{:>7}  {:<9}  {:>10}  {:>9}  {:>9}  {:>8}  {:>6}",
        "clients", "target", "ops/s", "p50", "p99", "errors", "ratio"
    );
    for (n, reg, echo) in rows {
        let ratio = echo
            .as_ref()
            .map(|e| format!("{:.2}", reg.rate() / e.rate().max(1e-9)))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:>7}  {:<9}  {:>10.0}  {:>9}  {:>9}  {:>8}  {:>6}",
            n,
            "registrar",
            reg.rate(),
            micros(reg.hist.value_at_quantile(0.5)),
            micros(reg.hist.value_at_quantile(0.99)),
            reg.errors,
            ratio
        );
        if let Some(e) = echo {
            println!(
                "{:>7}  {:<9}  {:>10.0}  {:>9}  {:>9}  {:>8}  {:>6}",
                n,
                "echo",
                e.rate(),
                micros(e.hist.value_at_quantile(0.5)),
                micros(e.hist.value_at_quantile(0.99)),
                e.errors,
                ""
            );
        }
    }
    println!(
        "ratio = registrar ops/s ÷ echo ops/s ({} requests; echo = same framing, no work)",
        workload_name(w)
    );
}
