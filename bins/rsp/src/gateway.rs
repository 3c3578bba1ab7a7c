//! `rsp gateway`: plain TCP (or HTTP) towards RSerPool-unaware clients, RSerPool towards
//! the pools (the service is `rserpool::service::gateway`; this module parses, prints and
//! picks the exit code).
//!
//! Prints `rsp gateway: pid 4242 mode tcp` and one `listening tcp://[::1]:8080 pool
//! WebPool` line per mapping on stdout; SIGINT / SIGTERM stop accepting and drain the open
//! connections (at most --drain-timeout), then exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rserpool::pu::{PoolUser, PuOptions};
use rserpool::service::gateway::{Gateway, GatewayConfig, Mapping, Mode};
use rserpool_proto::io::TransportProto;
use serde::Deserialize;

use crate::args::{self, RegistrarArgs};
use rserpool::service::http_admin;

/// Run a gateway: client connections on each --map address go to a PE of its pool.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// LISTEN=POOL: accept TCP clients on LISTEN (tcp://ADDR:PORT, IPv4 or IPv6;
    /// mptcp://ADDR:PORT for MPTCP clients, plain TCP ones too) and forward each to a PE of
    /// POOL chosen by the pool's policy (repeatable), e.g. tcp://[::]:8080=WebPool.
    #[arg(long = "map", short = 'm', value_name = "LISTEN=POOL", value_parser = map_spec)]
    pub maps: Vec<Mapping>,
    /// HTTP mode: choose a PE per HTTP request (kept-alive connections to the PEs,
    /// idempotent requests retried on another PE, X-Forwarded-For). Default: TCP mode,
    /// one PE per client connection.
    #[arg(long)]
    pub http: bool,
    /// TCP mode: move the bytes with splice(2) (kernel to kernel) instead of copying them
    /// through the gateway's buffers.
    #[arg(long, conflicts_with = "http")]
    pub splice: bool,
    /// TOML file with the same settings (`map = ["tcp://[::]:8080=WebPool"]`, `http`,
    /// `registrar = [...]`, `connect_timeout = "2s"` …); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub registrars: RegistrarArgs,
    /// Give up connecting to a PE after this long and try the next one. Default 2s.
    #[arg(long, value_parser = args::duration)]
    pub connect_timeout: Option<Duration>,
    /// Close a connection on which nothing moved this long (0 = never; HTTP mode: the wait
    /// for a request's headers). Default 5m.
    #[arg(long, value_parser = args::duration)]
    pub idle_timeout: Option<Duration>,
    /// Most simultaneous client connections; more are closed at once. Default 20000.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// After SIGTERM, how long open connections may go on. Default 10s.
    #[arg(long, value_parser = args::duration)]
    pub drain_timeout: Option<Duration>,
    /// PEs tried per connection (TCP) or request (HTTP) before giving up. Default 4.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<usize>,
    /// HTTP admin endpoint (status, /metrics, /healthz, /readyz; see docs/http-api.md),
    /// e.g. 127.0.0.1:9992. Default: off. (`--http` is the gateway's HTTP mode.)
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// HTTP mode: largest request body buffered for retries (idempotent methods, bodies up
    /// to 64 KiB) or announced by Content-Length; larger ones get 413. Default 16777216.
    #[arg(long, value_name = "BYTES")]
    pub max_body: Option<usize>,
    #[command(flatten)]
    pub csp: args::CspArgs,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    map: Vec<String>,
    http: Option<bool>,
    splice: Option<bool>,
    #[serde(default)]
    registrar: Vec<String>,
    connect_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    drain_timeout: Option<String>,
    max_attempts: Option<usize>,
    max_body: Option<usize>,
    admin: Option<String>,
}

/// clap value parser for `--map`: `tcp://ADDR:PORT=POOL` (the scheme may be left out).
pub fn map_spec(s: &str) -> Result<Mapping, String> {
    let (listen, pool) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected LISTEN=POOL, e.g. tcp://[::]:8080=WebPool"))?;
    if pool.is_empty() {
        return Err(format!("{s:?}: empty pool handle"));
    }
    let ep = rserpool::url::parse_endpoint(listen, 0).map_err(|e| e.to_string())?;
    if !matches!(ep.transport, TransportProto::Tcp | TransportProto::Mptcp) {
        return Err(format!(
            "{s:?}: the gateway listens on tcp:// or mptcp://, not {}",
            ep.transport.scheme()
        ));
    }
    let addr: SocketAddr = ep
        .primary()
        .ok_or_else(|| format!("{s:?}: no address to listen on"))?;
    Ok(Mapping {
        listen: addr,
        pool: pool.into(),
        mptcp: ep.transport == TransportProto::Mptcp,
    })
}

fn dur(key: &str, v: Option<&String>) -> anyhow::Result<Option<Duration>> {
    v.map(|s| args::parse_duration(s).with_context(|| key.to_string()))
        .transpose()
}

/// Defaults, then the file, then the flags; checked.
pub fn resolve(
    a: &GatewayArgs,
) -> anyhow::Result<(GatewayConfig, RegistrarArgs, Option<SocketAddr>)> {
    let file: FileSettings = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", p.display()))?
        }
        None => FileSettings::default(),
    };
    let maps = if a.maps.is_empty() {
        file.map
            .iter()
            .map(|m| map_spec(m).map_err(|e| anyhow!("map: {e}")))
            .collect::<anyhow::Result<_>>()?
    } else {
        a.maps.clone()
    };
    let mut cfg = GatewayConfig {
        maps,
        ..GatewayConfig::default()
    };
    if cfg.maps.is_empty() {
        bail!("nothing to do: give at least one --map LISTEN=POOL");
    }
    if a.http || file.http == Some(true) {
        cfg.mode = Mode::Http;
    }
    cfg.splice = a.splice || file.splice == Some(true);
    if cfg.splice && cfg.mode == Mode::Http {
        bail!("splice is for TCP mode; HTTP mode reads the requests");
    }
    if let Some(d) = a
        .connect_timeout
        .or(dur("connect_timeout", file.connect_timeout.as_ref())?)
    {
        if d.is_zero() {
            bail!("connect_timeout must be above 0");
        }
        cfg.connect_timeout = d;
    }
    if let Some(d) = a
        .idle_timeout
        .or(dur("idle_timeout", file.idle_timeout.as_ref())?)
    {
        cfg.idle_timeout = d;
    }
    if let Some(d) = a
        .drain_timeout
        .or(dur("drain_timeout", file.drain_timeout.as_ref())?)
    {
        cfg.drain_timeout = d;
    }
    if let Some(n) = a.max_connections.or(file.max_connections) {
        if !(1..=1_000_000).contains(&n) {
            bail!("max_connections must be within 1..1000000, not {n}");
        }
        cfg.max_connections = n;
    }
    if let Some(n) = a.max_attempts.or(file.max_attempts) {
        if !(1..=64).contains(&n) {
            bail!("max_attempts must be within 1..64, not {n}");
        }
        cfg.max_attempts = n;
    }
    if let Some(n) = a.max_body.or(file.max_body) {
        cfg.max_body = n;
    }
    let mut regs = a.registrars.clone();
    if regs.registrars.is_empty() {
        for r in &file.registrar {
            regs.registrars
                .push(args::asap_endpoint(r).map_err(|e| anyhow!("registrar: {e}"))?);
        }
    }
    let admin = match a.admin.as_ref().or(file.admin.as_ref()) {
        Some(s) if s != "off" => Some(
            crate::dump::http_addr(s)
                .ok_or_else(|| anyhow!("admin {s:?}: expected an address like 127.0.0.1:9992"))?,
        ),
        _ => None,
    };
    Ok((cfg, regs, admin))
}

pub fn run(a: &GatewayArgs) -> anyhow::Result<ExitCode> {
    let (cfg, regs, admin) = resolve(a).map_err(crate::exit::usage)?;
    let csp = a.csp.config().map_err(crate::exit::usage)?;
    raise_fd_limit(cfg.max_connections as u64 * 2 + 256);
    args::runtime()?.block_on(async move {
        // Every PE of the pool in each handle resolution: the gateway spreads over all.
        let pu = Arc::new(PoolUser::start(
            regs.pu_options(PuOptions::default())?.hr_items(u32::MAX),
        ));
        let (mode, splice) = (cfg.mode, cfg.splice);
        let gw = Gateway::bind(cfg, pu)?;
        println!(
            "rsp gateway: pid {} mode {}",
            std::process::id(),
            match (mode, splice) {
                (Mode::Http, _) => "http",
                (Mode::Tcp, true) => "tcp (splice)",
                (Mode::Tcp, false) => "tcp",
            }
        );
        for (url, pool) in gw.listen_urls() {
            println!(
                "listening {url} pool {}",
                String::from_utf8_lossy(pool.as_bytes())
            );
        }
        if let Some(addr) = admin {
            let api = http_admin::gateway::GatewayApi {
                stats: gw.stats(),
                mappings: gw
                    .listen_urls()
                    .into_iter()
                    .map(|(u, p)| (u, p.to_string()))
                    .collect(),
                started: std::time::Instant::now(),
            };
            let local = http_admin::start(addr, Arc::new(api))
                .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
            println!("http http://{local}/");
        }
        // A pool user to the CSP monitor: what the gateway carried so far.
        let csp = match csp {
            Some(c) => {
                let stats = gw.stats();
                let addrs: Vec<_> = gw.local_addrs().into_iter().map(|(a, _)| a).collect();
                let pools: Vec<String> = gw
                    .local_addrs()
                    .into_iter()
                    .map(|(_, p)| String::from_utf8_lossy(p.as_bytes()).into_owned())
                    .collect();
                let pools = pools.join(",");
                let status = move || {
                    use std::sync::atomic::Ordering::Relaxed;
                    format!(
                        "Gateway {pools}: {} open, {} accepted, {} failovers",
                        stats.active.load(Relaxed),
                        stats.accepted.load(Relaxed),
                        stats.pe_unreachable.load(Relaxed) + stats.retried.load(Relaxed)
                    )
                };
                Some(rserpool::service::csp::spawn_pu_reporter(c, &addrs, status).await?)
            }
            None => None,
        };
        let left = gw.run(rserpool::signal::terminate()).await;
        if let Some(c) = csp {
            c.stop().await;
        }
        if left > 0 {
            eprintln!("rsp gateway: {left} connections cut at the end of the drain");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Two descriptors per client connection (client and PE side): raise the soft limit, and
/// the hard one when allowed (root), towards `want`.
fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current.is_some_and(|c| c >= want) {
        return;
    }
    let raised = Rlimit {
        current: Some(want),
        maximum: Some(cur.maximum.map_or(want, |h| h.max(want))),
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        return;
    }
    let target = cur.maximum.map_or(want, |h| h.min(want));
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: cur.maximum,
        },
    );
    tracing::warn!(
        "open-file limit {target}: fewer than --max-connections × 2 descriptors; \
         connections beyond it fail to be accepted"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse() {
        let m = map_spec("tcp://[::]:8080=WebPool").unwrap();
        assert_eq!(m.listen, "[::]:8080".parse().unwrap());
        assert_eq!(m.pool.as_bytes(), b"WebPool");
        let m = map_spec("127.0.0.1:0=Echo=Pool").unwrap();
        assert_eq!(m.pool.as_bytes(), b"Echo=Pool");
        assert!(map_spec("tcp://127.0.0.1:1=").is_err());
        assert!(map_spec("sctp://127.0.0.1:1=P").is_err());
        let m = map_spec("mptcp://10.0.0.1:80=WebPool").unwrap();
        assert!(m.mptcp && m.listen == "10.0.0.1:80".parse().unwrap());
        assert!(!map_spec("tcp://10.0.0.1:80=WebPool").unwrap().mptcp);
        assert!(map_spec("WebPool").is_err());
    }

    #[test]
    fn file_and_flags() {
        use clap::Parser;
        let dir = std::env::temp_dir().join(format!("rsp-gw-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("gw.toml");
        std::fs::write(
            &f,
            "map = [\"tcp://127.0.0.1:0=WebPool\"]\nhttp = true\nconnect_timeout = \"500ms\"\n",
        )
        .unwrap();
        let cli = crate::Cli::try_parse_from([
            "rsp",
            "gateway",
            "--config",
            f.to_str().unwrap(),
            "--max-attempts",
            "2",
        ])
        .unwrap();
        let crate::Command::Gateway(a) = cli.cmd else {
            panic!("not gateway")
        };
        let (cfg, _, _) = resolve(&a).unwrap();
        assert_eq!(cfg.mode, Mode::Http);
        assert_eq!(cfg.connect_timeout, Duration::from_millis(500));
        assert_eq!(cfg.max_attempts, 2);
        assert_eq!(cfg.maps.len(), 1);
        std::fs::write(&f, "mapp = []\n").unwrap();
        assert!(resolve(&a).is_err(), "unknown keys are refused");
        let _ = std::fs::remove_dir_all(dir);
    }
}
