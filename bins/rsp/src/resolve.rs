//! `rsp resolve POOL`: send ASAP_HANDLE_RESOLUTION to one registrar and print what it
//! selects — the registrar's view of a pool and its policy at work, without a PU cache.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rserpool::transport::{self, MessageRead, MessageStream, MessageWrite, Outgoing};
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_wire::{AsapMessage, PoolElement, PoolHandle, Protocol, UserTransport};

use crate::args;

/// Ask a registrar for the PEs of a pool (ASAP handle resolution), COUNT times on one
/// connection, and print one line per answer:
/// `resolution 1: pool=EchoPool policy=rr pes=0x1a2b3c4d,0x5e6f7a8b`.
/// With --details every PE returned is listed once as
/// `pe=0x… transport=sctp://10.0.0.1:40000 ctrl=yes policy=rr asap=sctp://…`.
/// Exit status 1 if the registrar does not know the pool or does not answer (the reason
/// goes to stderr).
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Pool handle, e.g. EchoPool.
    pub pool: String,
    /// The registrar, e.g. sctp://10.0.0.1:3863 or tcp://127.0.0.1:3863. Default: the
    /// first of tcp://127.0.0.1:3863 and tcp://[::1]:3863 that accepts a connection (as
    /// `rsp call` and `rsp serve`; announces are not listened to).
    #[arg(long = "registrar", short = 'r', value_name = "URL", value_parser = args::asap_endpoint)]
    pub registrar: Option<Endpoint>,
    /// How many resolutions to send (one after the other).
    #[arg(long, short = 'n', default_value = "1")]
    pub count: u32,
    /// PEs wanted per resolution (Handle Resolution option; 0 = registrar's default).
    #[arg(long, default_value = "0")]
    pub items: u32,
    /// Print every PE returned once, with its transports and policy.
    #[arg(long)]
    pub details: bool,
    /// Give up on an answer after this long.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: args::TlsClientArgs,
}

pub fn run(args: &ResolveArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(resolve(args)) {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::from(crate::exit::FAILURE)),
        Err(e) => {
            eprintln!("rsp resolve: {e:#}");
            Ok(ExitCode::from(crate::exit::FAILURE))
        }
    }
}

async fn resolve(args: &ResolveArgs) -> anyhow::Result<bool> {
    args::warn_long_handle("resolve", &args.pool);
    if let Some(ep) = &args.registrar {
        return resolve_at(args, ep).await;
    }
    // The defaults, in turn: the first that accepts a connection answers.
    let defaults = args::default_registrars();
    let mut failures = Vec::new();
    for ep in &defaults {
        match resolve_at(args, ep).await {
            Err(e) => match e.downcast_ref::<Unreachable>() {
                Some(u) => failures.push(format!("{}: {}", u.endpoint, u.reason)),
                None => return Err(e),
            },
            other => return other,
        }
    }
    bail!(
        "no registrar reachable ({}); give one with -r URL",
        failures.join("; ")
    )
}

/// Could not connect (the next default registrar may do).
#[derive(Debug)]
struct Unreachable {
    endpoint: Endpoint,
    reason: String,
}

impl Unreachable {
    fn new(endpoint: &Endpoint, reason: impl ToString) -> Self {
        Self {
            endpoint: endpoint.clone(),
            reason: reason.to_string(),
        }
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to {}: {}", self.endpoint, self.reason)
    }
}

impl std::error::Error for Unreachable {}

async fn resolve_at(args: &ResolveArgs, ep: &Endpoint) -> anyhow::Result<bool> {
    let config = transport::TransportConfig::default();
    let timed_out = |_| Unreachable::new(ep, format!("timed out after {:?}", args.timeout));
    match ep.transport {
        TransportProto::Sctp => {
            let s = tokio::time::timeout(
                args.timeout,
                transport::sctp::connect(&ep.addrs, Protocol::Asap, &config),
            )
            .await
            .map_err(timed_out)?
            .map_err(|e| Unreachable::new(ep, e))?;
            session(s, args, ep).await
        }
        TransportProto::Tcp | TransportProto::Mptcp => {
            let mptcp = ep.transport == TransportProto::Mptcp;
            let s = tokio::time::timeout(
                args.timeout,
                transport::tcp::connect(&ep.addrs, Protocol::Asap, mptcp, &config),
            )
            .await
            .map_err(timed_out)?
            .map_err(|e| Unreachable::new(ep, e))?;
            session(s, args, ep).await
        }
        TransportProto::Tls => {
            let Some(tls) = args.tls.load()? else {
                bail!("a tls:// registrar needs trust anchors (--tls-ca FILE)");
            };
            let s = tokio::time::timeout(
                args.timeout,
                transport::tls::connect(&ep.addrs, Protocol::Asap, &config, &tls),
            )
            .await
            .map_err(timed_out)?
            .map_err(|e| Unreachable::new(ep, e))?;
            session(s, args, ep).await
        }
        TransportProto::Udp => bail!("ASAP does not run over udp://"),
    }
}

async fn session<S: MessageStream>(
    stream: S,
    args: &ResolveArgs,
    ep: &Endpoint,
) -> anyhow::Result<bool> {
    let (mut rd, mut wr) = stream.into_split();
    let mut seen: Vec<PoolElement> = Vec::new();
    let mut all_ok = true;
    for i in 1..=args.count.max(1) {
        let request = AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from(args.pool.as_str()),
            items: (args.items > 0).then_some(args.items),
        };
        let mut bytes = Vec::new();
        rserpool_wire::try_encode_asap(&request, &mut bytes).with_context(|| {
            format!(
                "a pool handle of {} bytes is too long for an ASAP message",
                args.pool.len()
            )
        })?;
        wr.send(&[Outgoing {
            protocol: Protocol::Asap,
            bytes,
        }])
        .await?;
        let reply = loop {
            let next = tokio::time::timeout(args.timeout, rd.recv())
                .await
                .map_err(|_| anyhow!("no answer from {ep} within {:?}", args.timeout))??;
            match next {
                Some((Protocol::Asap, m)) => break m,
                Some(_) => continue,
                None => bail!("{ep} closed the connection"),
            }
        };
        let decoded = rserpool_wire::decode_asap(&reply).context("undecodable answer")?;
        match decoded.message {
            AsapMessage::HandleResolutionResponse {
                pes, policy, error, ..
            } => {
                if pes.is_empty() {
                    all_ok = false;
                    let why = error
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "no PEs".into());
                    println!("resolution {i}: pool={} none: {why}", args.pool);
                    if i == 1 {
                        eprintln!("rsp resolve: pool {} at {ep}: {why}", args.pool);
                    }
                    continue;
                }
                let ids: Vec<String> = pes.iter().map(|p| p.id.to_string()).collect();
                let policy = policy
                    .map(|p| p.policy_type().to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "resolution {i}: pool={} policy={policy} pes={}",
                    args.pool,
                    ids.join(",")
                );
                for pe in pes {
                    if !seen.iter().any(|s| s.id == pe.id) {
                        seen.push(pe);
                    }
                }
            }
            other => bail!("unexpected answer from {ep}: {}", other.name()),
        }
    }
    let _ = wr.close().await;
    if args.details {
        for pe in &seen {
            let (transport, ctrl) = match &pe.user_transport {
                UserTransport::Ip(t) => (
                    crate::dump::transport_url(t),
                    if t.use_field == rserpool_wire::TransportUse::DATA_PLUS_CONTROL {
                        "yes"
                    } else {
                        "no"
                    },
                ),
                UserTransport::Opaque(b) => (format!("opaque:{}", hex::encode(b)), "no"),
            };
            let asap = pe
                .asap_transport
                .as_ref()
                .map(crate::dump::transport_url)
                .unwrap_or_else(|| "-".into());
            println!(
                "pe={} transport={transport} ctrl={ctrl} policy={} home={} asap={asap}",
                pe.id,
                pe.policy.policy_type(),
                pe.home_registrar
            );
        }
    }
    Ok(all_ok)
}
