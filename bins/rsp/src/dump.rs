//! `rsp dump`: print a registrar's handlespace as a table or JSON.
//!
//! The registrar serves its handlespace on a separate admin listener (default
//! 127.0.0.1:9990, loopback only) speaking line-JSON over TCP: the client sends one line
//! (`dump` or `{"request":"dump"}`), the registrar answers with one JSON document
//! ([`DumpDoc`]) on one line and closes. See `docs/shell.md` for why this is not an ASAP
//! or ENRP message.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rserpool_proto::io::Endpoint;
use rserpool_proto::registrar::HandlespaceSnapshot;
use rserpool_proto::Counters;
use rserpool_wire::{LifetimeUnit, PoolElement, TransportAddr, UserTransport};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::args;

/// Default admin address of `rsp registrar` (loopback only).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9990";

/// The handlespace as `rsp dump --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpDoc {
    /// The registrar's server ID (0x…).
    pub server_id: String,
    pub pool_count: usize,
    pub pe_count: usize,
    pub pools: Vec<PoolDoc>,
    /// Messages received / sent by type since start.
    pub counters: Vec<CounterDoc>,
    /// Accepted connections and what the connection limits did since start.
    #[serde(default)]
    pub connections: ConnectionsDoc,
    /// How often each protection of the registrar acted (refusals, ignored reports …),
    /// the ones that did only.
    #[serde(default)]
    pub protections: Vec<ProtectionDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProtectionDoc {
    pub what: String,
    pub count: u64,
}

/// Accepted connections and the connection limits' actions since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnectionsDoc {
    /// Accepted connections open now.
    pub open: Option<usize>,
    /// Connections without PEs closed after the idle timeout.
    pub idle_closed: u64,
    /// Connections closed to make room for new ones (max_connections).
    pub evicted: u64,
    /// Connections closed to make room for newer ones from the same source.
    pub source_evicted: u64,
    /// New connections refused because every connection that could make room had PEs.
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolDoc {
    /// The pool handle as text, or 0x-hex when not printable.
    pub handle: String,
    /// Policy short name (rr, lu …).
    pub policy: String,
    pub pes: Vec<PeDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeDoc {
    /// PE identifier (0x…).
    pub id: String,
    /// Home registrar (owner) server ID.
    pub home: String,
    /// Policy short name and its value words (loads/degradations 0xFFFFFFFF = 100 %).
    pub policy: String,
    pub policy_values: Vec<u32>,
    /// Load in percent, for policies that carry one.
    pub load_percent: Option<f64>,
    /// Registration Life as registered, in milliseconds.
    pub registration_life_ms: Option<u64>,
    /// Time since the first registration, in milliseconds.
    pub age_ms: Option<u64>,
    /// User transport as a URL (`tcp://127.0.0.1:4000`, `sctp://10.0.0.1,10.0.0.2:4000`).
    pub user_transport: String,
    /// The user transport also takes ASAP control messages (SCTP "data plus control",
    /// as RSPLIB's PEs register); shown as `+ctrl` in the table.
    #[serde(default)]
    pub control_channel: bool,
    /// Each user transport address as `ip:port` / `[ip]:port`.
    pub addresses: Vec<String>,
    /// The PE's ASAP endpoint as the registrar sees it.
    pub asap_transport: Option<String>,
    pub unreachable_reports: u32,
    /// Time since the last keep-alive acknowledgement, in milliseconds.
    pub last_keepalive_ack_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CounterDoc {
    pub message: String,
    pub received: u64,
    pub sent: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A transport as a URL: `sctp://10.0.0.1,10.0.0.2:4000`, `tcp://[::1]:4000`.
pub fn transport_url(t: &TransportAddr) -> String {
    let scheme = t.kind.name();
    let hosts: Vec<String> = t
        .addrs
        .iter()
        .map(|a| match a {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        })
        .collect();
    format!("{scheme}://{}:{}", hosts.join(","), t.port)
}

fn pe_doc(
    pe: &PoolElement,
    bk: &rserpool_proto::handlespace::Bookkeeping,
    now: Instant,
    unit: LifetimeUnit,
) -> PeDoc {
    let (user_transport, addresses) = match &pe.user_transport {
        UserTransport::Ip(t) => (
            transport_url(t),
            t.addrs
                .iter()
                .map(|a| SocketAddr::new(*a, t.port).to_string())
                .collect(),
        ),
        UserTransport::Opaque(b) => (format!("opaque:{}", hex::encode(b)), Vec::new()),
    };
    let policy = pe.policy.policy_type();
    PeDoc {
        id: pe.id.to_string(),
        home: pe.home_registrar.to_string(),
        policy: policy.to_string(),
        policy_values: pe.policy.values().as_slice().to_vec(),
        load_percent: pe
            .policy
            .load()
            .map(|l| (f64::from(l) / f64::from(u32::MAX) * 10000.0).round() / 100.0),
        registration_life_ms: unit.to_duration(pe.registration_life).map(ms),
        age_ms: bk
            .registered_at
            .map(|t| ms(now.saturating_duration_since(t))),
        control_channel: matches!(
            &pe.user_transport,
            UserTransport::Ip(t) if t.use_field == rserpool_wire::TransportUse::DATA_PLUS_CONTROL
        ),
        user_transport,
        addresses,
        asap_transport: pe.asap_transport.as_ref().map(transport_url),
        unreachable_reports: bk.unreachable_reports,
        last_keepalive_ack_ms: bk
            .last_keepalive_ack
            .map(|t| ms(now.saturating_duration_since(t))),
    }
}

impl DumpDoc {
    /// Build from a registrar snapshot taken at `now`.
    pub fn new(
        snap: &HandlespaceSnapshot,
        counters: &Counters,
        now: Instant,
        unit: LifetimeUnit,
    ) -> Self {
        let pools: Vec<PoolDoc> = snap
            .pools
            .iter()
            .map(|p| PoolDoc {
                handle: p.handle.to_string(),
                policy: p.policy.to_string(),
                pes: p
                    .pes
                    .iter()
                    .map(|(pe, bk)| pe_doc(pe, bk, now, unit))
                    .collect(),
            })
            .collect();
        DumpDoc {
            server_id: snap.server_id.to_string(),
            pool_count: pools.len(),
            pe_count: pools.iter().map(|p| p.pes.len()).sum(),
            pools,
            connections: ConnectionsDoc {
                open: None,
                idle_closed: counters.connections.idle_closed,
                evicted: counters.connections.evicted,
                source_evicted: counters.connections.source_evicted,
                refused: counters.connections.refused,
            },
            counters: counters
                .by_type()
                .map(|(message, received, sent)| CounterDoc {
                    message: message.to_owned(),
                    received,
                    sent,
                })
                .collect(),
            protections: counters
                .guards
                .nonzero()
                .map(|(what, count)| ProtectionDoc {
                    what: what.to_owned(),
                    count,
                })
                .collect(),
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "POOL",
            "POLICY",
            "PE",
            "HOME",
            "LOAD",
            "LIFE",
            "AGE",
            "USER TRANSPORT",
            "ASAP TRANSPORT",
        ]
        .map(String::from)];
        for p in &self.pools {
            for pe in &p.pes {
                rows.push([
                    p.handle.clone(),
                    pe.policy.clone(),
                    pe.id.clone(),
                    pe.home.clone(),
                    pe.load_percent
                        .map(|l| format!("{l}%"))
                        .unwrap_or_else(|| "-".into()),
                    pe.registration_life_ms
                        .map(human_ms)
                        .unwrap_or_else(|| "inf".into()),
                    pe.age_ms.map(human_ms).unwrap_or_else(|| "-".into()),
                    if pe.control_channel {
                        format!("{}+ctrl", pe.user_transport)
                    } else {
                        pe.user_transport.clone()
                    },
                    pe.asap_transport.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
        }
        let mut widths = [0usize; 9];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = format!(
            "registrar {}: {} pool(s), {} PE(s)\n",
            self.server_id, self.pool_count, self.pe_count
        );
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        let c = &self.connections;
        if c.idle_closed + c.evicted + c.source_evicted + c.refused > 0 {
            let open = c.open.map(|n| format!("{n} open; ")).unwrap_or_default();
            out.push_str(&format!(
                "connections: {open}closed by the limits: {} idle, {} to make room, {} over the per-source cap; {} refused\n",
                c.idle_closed, c.evicted, c.source_evicted, c.refused
            ));
        }
        for p in &self.protections {
            out.push_str(&format!("{}: {}\n", p.what, p.count));
        }
        out
    }
}

fn human_ms(v: u64) -> String {
    if v >= 10_000 {
        format!("{}s", v / 1000)
    } else if v >= 1000 {
        format!("{:.1}s", v as f64 / 1000.0)
    } else {
        format!("{v}ms")
    }
}

/// Print a registrar's handlespace (pools, PEs, owners, policies, load, lifetimes,
/// addresses) from its admin listener.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The registrar's admin address (`rsp registrar --admin`).
    #[arg(long, default_value = DEFAULT_ADMIN, value_name = "ADDR")]
    pub admin: String,
    /// Print JSON (one document) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub timeout: Duration,
}

pub fn run(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addr = rserpool::url::parse_endpoint(&args.admin, 9990)
        .ok()
        .and_then(|e: Endpoint| e.primary())
        .with_context(|| format!("bad admin address {:?}", args.admin))?;
    let doc = match rt.block_on(fetch(addr, args.timeout)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rsp dump: {e:#}");
            return Ok(ExitCode::from(crate::exit::FAILURE));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", doc.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask a registrar's admin listener for its handlespace.
pub async fn fetch(addr: SocketAddr, timeout: Duration) -> anyhow::Result<DumpDoc> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach the registrar admin listener at {addr}"))?;
        s.write_all(b"dump\n").await?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await?;
        if line.is_empty() {
            bail!("the registrar closed the admin connection without an answer");
        }
        let doc: DumpDoc = serde_json::from_str(&line).context("unexpected admin answer")?;
        Ok(doc)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within {timeout:?}"))?
}
