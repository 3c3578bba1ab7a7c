//! `rsp serve echo|discard|daytime|chargen|http|pingpong|files`: a demo service over TCP
//! or SCTP (http: TCP only) that registers itself as a pool element, and deregisters on
//! SIGINT / SIGTERM. pingpong and files run on the session layer
//! ([`rserpool::service::session::SessionListener`], `docs/session.md`); over TCP echo,
//! discard, daytime and chargen serve session clients (`rsp call`) through it too.
//!
//! Over SCTP (`--listen sctp://…`) the service is one multi-homed listener registered as
//! one PE entry with an SCTP user transport (transport use "data plus control", like
//! RSPLIB's PEs, so both kinds can share a pool). Session data travels as SCTP messages:
//! echo sends each message back with its PPID and stream; daytime and chargen send with
//! [`rserpool::service::session::DATA_PPID`]. Messages with PPID 11 are ASAP control messages of the
//! session (ASAP_COOKIE_ECHO, ASAP_BUSINESS_CARD from RSPLIB pool users): they are decoded,
//! logged and otherwise ignored — the demo services keep no session state to restore.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rserpool::pe::{PeOptions, PoolElement};
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_proto::{PeEvent, PeStatus};
use rserpool_wire::{CauseCode, LifetimeUnit, PeId};
use tokio::sync::{broadcast, mpsc};

use crate::args::{self, PolicyArgs, RegistrarArgs};
use rserpool::service::demo::{self, LoadTracker};
use rserpool::service::http_pe;
use rserpool::service::session::{ListenerOptions, SessionBind, SessionListener};
use rserpool::service::{calcapp, files, pingpong, relay};
use rserpool::transport::tcp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Sends back whatever it receives (RFC 862).
    Echo,
    /// Reads and throws away (RFC 863).
    Discard,
    /// Sends the date and time, then closes (RFC 867).
    Daytime,
    /// Sends lines of characters until the client goes away (RFC 864).
    Chargen,
    /// HTTP/1.1: every request gets one fixed body (--body-size bytes, or --file) and an
    /// X-Rsp-Pe header naming the PE (for the gateway's tests and benchmarks). TCP only.
    Http,
    /// RSPLIB's Ping Pong (PPID 33) over the session layer: a Pong per Ping, a cookie
    /// after each so another PE continues the reply counter after a failover.
    Pingpong,
    /// The files of DIR over the session layer (`rsp fetch`): downloads resume at their
    /// offset on another PE when this one dies.
    Files,
    /// RSPLIB's CalcApp (PPID 34) over the session layer: jobs of N calculations at
    /// --calc-capacity per second; a job continues on another PE from the cookie.
    Calcapp,
    /// A PE of RelayPool serving each session through a session to the pool of --to
    /// (both hops fail over).
    Relay,
}

impl Service {
    /// The library's demo service of that name (`None` for http).
    pub fn demo(self) -> Option<demo::Service> {
        match self {
            Service::Echo => Some(demo::Service::Echo),
            Service::Discard => Some(demo::Service::Discard),
            Service::Daytime => Some(demo::Service::Daytime),
            Service::Chargen => Some(demo::Service::Chargen),
            Service::Http
            | Service::Pingpong
            | Service::Files
            | Service::Calcapp
            | Service::Relay => None,
        }
    }
    /// Served through the session layer ([`rserpool::service::session::SessionListener`]).
    fn on_sessions(self) -> bool {
        matches!(
            self,
            Service::Pingpong | Service::Files | Service::Calcapp | Service::Relay
        )
    }
    fn default_pool(self) -> &'static str {
        match self {
            Service::Http => "WebPool",
            Service::Pingpong => pingpong::DEFAULT_POOL,
            Service::Files => "FilePool",
            Service::Calcapp => calcapp::DEFAULT_POOL,
            Service::Relay => relay::DEFAULT_POOL,
            _ => self.demo().map_or("WebPool", demo::Service::default_pool),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Service::Http => "http",
            Service::Pingpong => "pingpong",
            Service::Files => "files",
            Service::Calcapp => "calcapp",
            Service::Relay => "relay",
            _ => self.demo().map_or("http", demo::Service::name),
        }
    }
}

/// Run a demo service as a pool element.
///
/// Prints `rsp serve: pid 4242 pool EchoPool`, one line per listening address
/// (`listening echo tcp://127.0.0.1:40001`) and, once registered, one line per PE entry
/// (`registered pool=EchoPool pe=0x1a2b3c4d addr=tcp://127.0.0.1:40001 pid=4242`) on
/// stdout. A TCP entry carries one address, so the default listeners (0.0.0.0 and ::)
/// register two entries, one per address family. When the registrar refuses the
/// registration for good (e.g. the pool uses another policy), the service says why on
/// stderr, stops and exits with status 1; a refusal that may pass (lack of resources) is
/// retried with a growing pause.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which service.
    #[arg(value_enum)]
    pub service: Service,
    /// files: the directory whose files are served (every regular file in it).
    #[arg(value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Pool handle to join (default: EchoPool, DiscardPool, DaytimePool or CharGenPool).
    #[arg(long)]
    pub pool: Option<String>,
    /// Where to listen, port 0 = ephemeral (repeatable): ADDR or tcp://ADDR for TCP,
    /// mptcp://ADDR for MPTCP (registered as TCP, since ASAP has no MPTCP transport; it
    /// takes plain TCP users too, and MPTCP ones, e.g. `--session-mptcp`, get a subflow
    /// per path), sctp://ADDR[,ADDR…]:PORT for SCTP (multi-homed). One PE entry is
    /// registered per TCP or MPTCP address and one per SCTP listener. An unspecified TCP
    /// address (0.0.0.0, ::) registers the local address that routes to the first
    /// registrar of that family (loopback when there is none); an unspecified SCTP address
    /// registers every address of the host except loopback (loopback only when there is
    /// nothing else).
    /// Default: 0.0.0.0:0 and [::]:0 (TCP).
    #[arg(long = "listen", short = 'l', value_name = "URL", value_parser = listen_spec)]
    pub listen: Vec<Listen>,
    /// Register SCTP listeners as "data only" instead of "data plus control" (RSPLIB's
    /// PEs register data plus control; a pool takes only one kind).
    #[arg(long)]
    pub data_only: bool,
    #[command(flatten)]
    pub registrars: RegistrarArgs,
    /// With --tls-cert: a registrar that takes this PE over must show a certificate
    /// (chaining to --tls-ca) naming NAME (DNS or IP subjectAltName, or subject common
    /// name) on the TLS control endpoint (repeatable; default: any certificate chaining
    /// to --tls-ca).
    #[arg(long = "registrar-identity", value_name = "NAME", requires = "cert")]
    pub registrar_identities: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// PE identifier of the first entry (hex 0x… or decimal; default random).
    #[arg(long, value_parser = args::integer)]
    pub pe_id: Option<u32>,
    /// Registration lifetime announced to the registrar.
    #[arg(long, default_value = "30s", value_parser = args::duration)]
    pub registration_life: Duration,
    /// Re-register this often (at most half the lifetime).
    #[arg(long, default_value = "10s", value_parser = args::duration)]
    pub reregister: Duration,
    /// Unit of the Registration Life field: ms (RSPLIB, Wireshark) or s (RFC 5354), as
    /// on `rsp registrar`. Default ms.
    #[arg(long, value_name = "ms|s", value_parser = args::lifetime_unit)]
    pub lifetime_unit: Option<LifetimeUnit>,
    /// Same as `--lifetime-unit s` (the older spelling, kept for scripts).
    #[arg(long, hide = true, conflicts_with = "lifetime_unit")]
    pub lifetime_seconds: bool,
    /// Least-used policies: report load = open connections / CAPACITY (re-registers on
    /// every change).
    #[arg(long, value_name = "CAPACITY")]
    pub capacity: Option<u32>,
    /// http: size of the fixed body in bytes (default 1024).
    #[arg(long, value_name = "BYTES", conflicts_with = "file")]
    pub body_size: Option<usize>,
    /// relay: the pool each session is relayed to.
    #[arg(long, value_name = "POOL")]
    pub to: Option<String>,
    /// Session services (pingpong, calcapp, files, relay): sign cookies and check their
    /// echoes with the key in FILE (HMAC-SHA256; all PEs of the pool need the same file,
    /// at least 16 bytes, e.g. `head -c 32 /dev/urandom > key`). A cookie echo without
    /// a valid signature is refused (logged, counted) and its session closed. Default:
    /// cookies unsigned, as RSPLIB's PEs send them.
    #[arg(long, value_name = "FILE")]
    pub cookie_key: Option<std::path::PathBuf>,
    /// calcapp: calculations per second, shared by the running jobs.
    #[arg(long, default_value = "1000000", value_name = "N")]
    pub calc_capacity: u64,
    /// calcapp: jobs at once (more are rejected).
    #[arg(long, default_value = "4", value_name = "N")]
    pub max_jobs: u32,
    /// http: answer with this file's contents instead of a fixed body.
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
    /// HTTP admin endpoint of this PE (status, /metrics, /healthz, /readyz; see
    /// docs/http-api.md), e.g. 127.0.0.1:9991. Default: off.
    #[arg(long, visible_alias = "admin", value_name = "ADDR", value_parser = http_spec)]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub csp: args::CspArgs,
    #[command(flatten)]
    pub session_tls: crate::session_args::SessionServeTlsArgs,
}

/// clap value parser for `--http`: `127.0.0.1:9991` or `http://127.0.0.1:9991/`.
fn http_spec(s: &str) -> Result<SocketAddr, String> {
    crate::dump::http_addr(s)
        .ok_or_else(|| format!("{s:?}: expected an address like 127.0.0.1:9991"))
}

/// One `--listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// MPTCP, registered as TCP.
    Mptcp(SocketAddr),
    /// All addresses of one multi-homed SCTP listener (one port).
    Sctp(Vec<SocketAddr>),
}

/// clap value parser for `--listen`.
pub fn listen_spec(s: &str) -> Result<Listen, String> {
    let ep = rserpool::url::parse_endpoint(s, 0).map_err(|e| e.to_string())?;
    match ep.transport {
        TransportProto::Tcp => ep
            .primary()
            .map(Listen::Tcp)
            .ok_or_else(|| format!("no address in {s:?}")),
        TransportProto::Mptcp => ep
            .primary()
            .map(Listen::Mptcp)
            .ok_or_else(|| format!("no address in {s:?}")),
        TransportProto::Sctp => Ok(Listen::Sctp(ep.addrs)),
        other => Err(format!(
            "{s:?}: the demo services run over tcp://, mptcp:// or sctp://, not {}",
            other.scheme()
        )),
    }
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let policy = args.policy.policy().map_err(crate::exit::usage)?;
    let csp = args.csp.config().map_err(crate::exit::usage)?;
    if args.service != Service::Http && (args.body_size.is_some() || args.file.is_some()) {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "--body-size and --file are for `rsp serve http`"
        )));
    }
    if args.service == Service::Http && args.listen.iter().any(|l| matches!(l, Listen::Sctp(_))) {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "`rsp serve http` listens on TCP only"
        )));
    }
    if (args.service == Service::Relay) != args.to.is_some() {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "`rsp serve relay --to POOL` names the pool to relay to; the other services take no --to"
        )));
    }
    if (args.service == Service::Files) != args.dir.is_some() {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "`rsp serve files DIR` takes a directory; the other services take none"
        )));
    }
    let body = match &args.file {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read {}", p.display()))
                .map_err(crate::exit::usage)?,
        ),
        None => None,
    };
    args::runtime()?.block_on(serve(args, policy, body, csp))
}

async fn serve(
    args: &ServeArgs,
    policy: rserpool_wire::Policy,
    file: Option<Vec<u8>>,
    csp: Option<rserpool::service::csp::CspConfig>,
) -> anyhow::Result<ExitCode> {
    let registrars = args.registrars.endpoints();
    let listen = if args.listen.is_empty() {
        vec![
            Listen::Tcp(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
            Listen::Tcp(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0)),
        ]
    } else {
        args.listen.clone()
    };
    let mut listeners = Vec::new();
    let mut schemes = Vec::new();
    let mut sctp_listeners = Vec::new();
    for spec in &listen {
        match spec {
            Listen::Tcp(addr) | Listen::Mptcp(addr) => {
                let mptcp = matches!(spec, Listen::Mptcp(_));
                let scheme = if mptcp { "mptcp" } else { "tcp" };
                match tcp::bind_stream(*addr, mptcp) {
                    Ok(l) => {
                        listeners.push(l);
                        schemes.push(scheme);
                    }
                    // The default IPv6 listener is optional (hosts without IPv6).
                    Err(e) if args.listen.is_empty() && addr.is_ipv6() => {
                        tracing::warn!("not listening on {addr}: {e}");
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot listen on {scheme}://{addr}"))
                    }
                }
            }
            Listen::Sctp(addrs) => {
                let url = Endpoint::sctp(addrs.clone());
                let l =
                    demo::bind_sctp(addrs).with_context(|| format!("cannot listen on {url}"))?;
                sctp_listeners.push(l);
            }
        }
    }
    let pool = args
        .pool
        .clone()
        .unwrap_or_else(|| args.service.default_pool().to_owned());
    args::warn_long_handle("serve", &pool);
    println!("rsp serve: pid {} pool {pool}", std::process::id());
    let mut opts = args
        .registrars
        .pe_options(PeOptions::new(pool.as_str()))
        .map_err(crate::exit::usage)?
        .registrar_identities(args.registrar_identities.clone())
        .policy(policy.clone())
        .registration_life(args.registration_life)
        .reregistration_interval(args.reregister)
        .lifetime_unit(if args.lifetime_seconds {
            LifetimeUnit::Seconds
        } else {
            args.lifetime_unit.unwrap_or(LifetimeUnit::Milliseconds)
        });
    if let Some(id) = args.pe_id {
        opts = opts.pe_id(PeId(id));
    }
    let mut registered: Vec<Endpoint> = Vec::new();
    let mut advertised = Vec::new();
    for (l, scheme) in listeners.iter().zip(schemes) {
        let local = l.local_addr()?;
        let addr = SocketAddr::new(advertised_ip(local.ip(), &registrars), local.port());
        println!("listening {} {scheme}://{local}", args.service.name());
        registered.push(Endpoint::tcp(addr));
        advertised.push(addr);
        if !args.service.on_sessions() {
            opts = opts.tcp_user_transport(addr);
        }
    }
    let mut sctp_registered = Vec::new();
    for l in &sctp_listeners {
        let (port, ips) = l.registered()?;
        println!(
            "listening {} {}",
            args.service.name(),
            Endpoint::sctp(l.local_addrs()?)
        );
        registered.push(Endpoint::sctp(
            ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
        ));
        sctp_registered.push((port, ips.clone()));
        if !args.service.on_sessions() {
            opts = opts.sctp_user_transport(port, ips, !args.data_only);
        }
    }
    if args.service.on_sessions() {
        return serve_sessions(
            args,
            opts,
            listeners.into_iter().zip(advertised).collect(),
            sctp_listeners.into_iter().zip(sctp_registered).collect(),
            Watched {
                pool: pool.clone(),
                policy: policy.policy_type().to_string(),
                registered,
            },
        )
        .await;
    }
    let csp_addrs: Vec<SocketAddr> = registered.iter().filter_map(Endpoint::primary).collect();
    let pe = Arc::new(PoolElement::start(opts)?);
    let events = pe.subscribe();
    let active = Arc::new(AtomicU32::new(0));
    let policy_name = policy.policy_type().to_string();
    let load_policy = policy.load().is_some().then_some(policy);
    let pe_ids = pe.pe_ids().to_vec();
    for (i, l) in listeners.into_iter().enumerate() {
        let tracker = args
            .capacity
            .zip(load_policy.clone())
            .map(|(cap, p)| LoadTracker::new(pe.clone(), active.clone(), cap, p));
        match args.service.demo() {
            Some(service) => {
                tokio::spawn(demo::serve_tcp(l, service, tracker));
            }
            None => {
                let what = http_pe::HttpBody {
                    body: match &file {
                        Some(f) => f.clone().into(),
                        None => http_pe::filler(args.body_size.unwrap_or(1024)),
                    },
                    content_type: if file.is_some() {
                        "application/octet-stream"
                    } else {
                        "text/plain"
                    },
                    pe: pe_ids.get(i).map(ToString::to_string).unwrap_or_default(),
                };
                tokio::spawn(http_pe::serve_http(l, what, tracker));
            }
        }
    }
    for l in sctp_listeners {
        let tracker = args
            .capacity
            .zip(load_policy.clone())
            .map(|(cap, p)| LoadTracker::new(pe.clone(), active.clone(), cap, p));
        if let Some(service) = args.service.demo() {
            tokio::spawn(demo::serve_sctp(l, service, tracker));
        }
    }
    let csp = match csp {
        Some(c) => {
            let label = format!("{pool} {}", args.service.name());
            let registrar_protocol = args
                .registrars
                .registrars
                .first()
                .map_or(6, |e| rserpool::service::csp::ip_protocol(e.transport));
            let (active, capacity) = (active.clone(), args.capacity);
            let workload = move || {
                capacity.map(|c| {
                    f64::from(active.load(std::sync::atomic::Ordering::Relaxed))
                        / f64::from(c.max(1))
                })
            };
            Some(
                rserpool::service::csp::spawn_pe_reporter(
                    c,
                    pe.clone(),
                    label,
                    &csp_addrs,
                    registrar_protocol,
                    workload,
                )
                .await?,
            )
        }
        None => None,
    };
    if let Some(addr) = args.http {
        let api = rserpool::service::http_admin::pe::PeApi {
            pe: pe.clone(),
            pool: pool.clone(),
            service: args.service.name().to_owned(),
            sessions: active.clone(),
            started: std::time::Instant::now(),
        };
        let local = rserpool::service::http_admin::start(addr, Arc::new(api))
            .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
        println!("http http://{local}/");
    }
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    tokio::spawn(watch(
        pe.clone(),
        Watched {
            pool: pool.clone(),
            policy: policy_name,
            registered,
        },
        events,
        fatal_tx,
    ));
    let code = tokio::select! {
        () = rserpool::signal::terminate() => ExitCode::SUCCESS,
        Some(why) = fatal_rx.recv() => {
            eprintln!("rsp serve: {why}");
            ExitCode::from(crate::exit::FAILURE)
        }
    };
    if let Some(c) = csp {
        c.stop().await;
    }
    pe.deregister().await;
    Ok(code)
}

/// The services of the session layer: a [`SessionListener`] registers the PE.
async fn serve_sessions(
    args: &ServeArgs,
    opts: PeOptions,
    tcp: Vec<(tokio::net::TcpListener, SocketAddr)>,
    sctp: Vec<(demo::SctpServiceListener, (u16, Vec<IpAddr>))>,
    watched: Watched,
) -> anyhow::Result<ExitCode> {
    let catalogue = match &args.dir {
        Some(dir) => {
            let d = dir.clone();
            let cat = tokio::task::spawn_blocking(move || files::Catalogue::scan(&d))
                .await?
                .with_context(|| format!("cannot read {}", dir.display()))?;
            println!("serving {} files from {}", cat.len(), dir.display());
            Some(Arc::new(cat))
        }
        None => None,
    };
    let mut binds = Vec::new();
    let session_tls = args.session_tls.load().map_err(crate::exit::usage)?;
    for (listener, advertise) in tcp {
        binds.push(match &session_tls {
            Some(tls) => SessionBind::Tls {
                listener,
                advertise,
                tls: tls.clone(),
            },
            None => SessionBind::Tcp {
                listener,
                advertise,
            },
        });
    }
    if let Some(tls) = session_tls {
        let mut hangup = rserpool::signal::Hangup::new().context("cannot catch SIGHUP")?;
        tokio::spawn(async move {
            loop {
                hangup.recv().await;
                match tls.reload() {
                    Ok(()) => println!("session TLS certificate reloaded"),
                    Err(e) => eprintln!("rsp serve: session TLS certificate not reloaded: {e}"),
                }
            }
        });
    }
    for (l, (port, addrs)) in sctp {
        binds.push(SessionBind::Sctp {
            listener: l.into_listener(),
            port,
            addrs,
        });
    }
    let mut lopts = ListenerOptions::default();
    if let Some(path) = &args.cookie_key {
        lopts.cookie_key = Some(cookie_key(path).map_err(crate::exit::usage)?);
    }
    let listener = Arc::new(SessionListener::start(opts, binds, lopts)?);
    let pe = listener
        .pool_element()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the session listener registered no PE"))?;
    let events = pe.subscribe();
    match (catalogue, args.service) {
        (Some(cat), _) => {
            tokio::spawn(files::serve(listener.clone(), cat));
        }
        (None, Service::Relay) => {
            let pu = Arc::new(rserpool::pu::PoolUser::start(
                args.registrars
                    .pu_options(rserpool::pu::PuOptions::default())
                    .map_err(crate::exit::usage)?
                    .hr_items(u32::MAX),
            ));
            let to = args.to.clone().unwrap_or_default();
            tokio::spawn(relay::serve(listener.clone(), pu, to));
        }
        (None, Service::Calcapp) => {
            let cfg = calcapp::CalcAppConfig {
                capacity: args.calc_capacity.max(1),
                max_jobs: args.max_jobs.max(1),
                ..calcapp::CalcAppConfig::default()
            };
            tokio::spawn(calcapp::serve(listener.clone(), cfg));
        }
        (None, _) => {
            tokio::spawn(pingpong::serve(listener.clone()));
        }
    }
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    tokio::spawn(watch(pe.clone(), watched, events, fatal_tx));
    let code = tokio::select! {
        () = rserpool::signal::terminate() => ExitCode::SUCCESS,
        Some(why) = fatal_rx.recv() => {
            eprintln!("rsp serve: {why}");
            ExitCode::from(crate::exit::FAILURE)
        }
    };
    pe.deregister().await;
    Ok(code)
}

/// The cookie key in `path` (a trailing newline is not part of it).
fn cookie_key(path: &std::path::Path) -> anyhow::Result<rserpool::service::session::CookieKey> {
    let mut key =
        std::fs::read(path).with_context(|| format!("--cookie-key {}", path.display()))?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.len() < 16 {
        anyhow::bail!(
            "--cookie-key {}: {} bytes; at least 16 wanted",
            path.display(),
            key.len()
        );
    }
    Ok(rserpool::service::session::CookieKey::new(&key))
}

/// What [`watch`] reports about.
struct Watched {
    pool: String,
    policy: String,
    /// User address of each entry, in PE ID order.
    registered: Vec<Endpoint>,
}

/// Follow the registration: print the `registered` lines once every entry is in, say
/// when a refusal will be retried, and end the service (via `fatal`) on a refusal that
/// waiting does not cure: never serve unregistered for ever.
async fn watch(
    pe: Arc<PoolElement>,
    w: Watched,
    mut events: broadcast::Receiver<PeEvent>,
    fatal: mpsc::Sender<String>,
) {
    let pid = std::process::id();
    let pool = &w.pool;
    let mut printed = false;
    loop {
        let Ok(status) = pe.status().await else {
            return;
        };
        if status.iter().any(|(_, s)| *s == PeStatus::Rejected) && !printed {
            // Rejected before we listened (the event went by): say so all the same.
            let ids: Vec<String> = status
                .iter()
                .filter(|(_, s)| *s == PeStatus::Rejected)
                .map(|(id, _)| id.to_string())
                .collect();
            let _ = fatal
                .send(format!(
                    "the registrar refused PE {} of pool {pool}; not serving unregistered",
                    ids.join(", ")
                ))
                .await;
            return;
        }
        if !printed && status.iter().all(|(_, s)| *s == PeStatus::Registered) {
            printed = true;
            for ((id, _), addr) in status.iter().zip(&w.registered) {
                println!("registered pool={pool} pe={id} addr={addr} pid={pid}");
            }
        }
        match events.recv().await {
            Ok(PeEvent::RegistrationFailed {
                pe_id,
                cause,
                error,
            }) => {
                let why = error.map_or_else(|| cause.to_string(), |e| e.to_string());
                let hint = if cause == CauseCode::INCONSISTENT_POLICY {
                    format!("; this PE asked for {} (--policy)", w.policy)
                } else {
                    String::new()
                };
                let _ = fatal
                    .send(format!(
                        "the registrar refused PE {pe_id} in pool {pool}: {why}{hint}; \
                         not serving unregistered"
                    ))
                    .await;
                return;
            }
            Ok(PeEvent::RegistrationRefused {
                pe_id,
                cause,
                retry_at,
                ..
            }) => {
                let wait = retry_at.saturating_duration_since(rserpool::clock::now());
                eprintln!(
                    "rsp serve: the registrar refused PE {pe_id} in pool {pool} for now \
                     ({cause}); trying again in {:.1}s",
                    wait.as_secs_f64()
                );
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The address to register for a listener bound to `ip`.
fn advertised_ip(ip: IpAddr, registrars: &[Endpoint]) -> IpAddr {
    if !ip.is_unspecified() {
        return ip;
    }
    let same_family = registrars
        .iter()
        .filter_map(Endpoint::primary)
        .find(|a| a.is_ipv6() == ip.is_ipv6());
    let routed = same_family.and_then(|reg| {
        // A connected UDP socket reveals the source address the kernel would pick.
        let any: SocketAddr = SocketAddr::new(ip, 0);
        let s = UdpSocket::bind(any).ok()?;
        s.connect(reg).ok()?;
        s.local_addr().ok().map(|a| a.ip())
    });
    routed.unwrap_or(if ip.is_ipv6() {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_urls() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            listen_spec("127.0.0.1:0"),
            Ok(Listen::Tcp(sa("127.0.0.1:0")))
        );
        assert_eq!(listen_spec("tcp://[::]:7"), Ok(Listen::Tcp(sa("[::]:7"))));
        assert_eq!(
            listen_spec("sctp://0.0.0.0"),
            Ok(Listen::Sctp(vec![sa("0.0.0.0:0")]))
        );
        assert_eq!(
            listen_spec("sctp://10.0.0.1,[::1]:4000"),
            Ok(Listen::Sctp(vec![sa("10.0.0.1:4000"), sa("[::1]:4000")]))
        );
        assert_eq!(
            listen_spec("mptcp://10.0.0.1:9"),
            Ok(Listen::Mptcp(sa("10.0.0.1:9")))
        );
        assert!(listen_spec("udp://127.0.0.1:1").is_err());
        assert!(listen_spec("sctp://").is_err());
    }

    #[test]
    fn the_lifetime_unit_is_spelled_as_on_the_registrar() {
        use clap::Parser;
        let unit = |extra: &[&str]| {
            let mut argv = vec!["rsp", "serve", "echo"];
            argv.extend_from_slice(extra);
            let cli = crate::Cli::try_parse_from(argv).expect("parses");
            let crate::Command::Serve(a) = cli.cmd else {
                panic!("not serve")
            };
            (a.lifetime_unit, a.lifetime_seconds)
        };
        assert_eq!(unit(&[]), (None, false));
        assert_eq!(
            unit(&["--lifetime-unit", "s"]),
            (Some(LifetimeUnit::Seconds), false)
        );
        assert_eq!(
            unit(&["--lifetime-unit", "ms"]),
            (Some(LifetimeUnit::Milliseconds), false)
        );
        assert_eq!(unit(&["--lifetime-seconds"]), (None, true), "hidden alias");
        let mut argv = vec!["rsp", "serve", "echo", "--lifetime-unit", "minutes"];
        assert!(crate::Cli::try_parse_from(argv.clone()).is_err());
        argv.truncate(3);
        argv.extend(["--lifetime-unit", "s", "--lifetime-seconds"]);
        assert!(
            crate::Cli::try_parse_from(argv).is_err(),
            "one or the other"
        );
    }
}
