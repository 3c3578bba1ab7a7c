//! `rsp dump`: print a registrar's handlespace as a table or JSON.
//!
//! The registrar side (the admin listener, the paged JSON streaming and the document
//! types) lives in [`rserpool::service::admin`]; this module is the client. With
//! `--enrp URL` the handlespace comes from any ENRP registrar (ours or RSPLIB's) through
//! Handle Table Requests instead ([`rserpool::service::enrp_dump`]), printed the same way.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rserpool::service::enrp_dump;
use rserpool::service::http_admin::client;
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_proto::registrar::ENRP_PORT;
use rserpool_wire::LifetimeUnit;

use crate::args;

pub use rserpool::service::admin::*;

/// Print a registrar's handlespace (pools, PEs, home registrars, policies, load,
/// lifetimes, addresses), its ENRP phase and its peer registrars (ID, endpoint, state,
/// last heard, checksum expected/reported, PEs owned) from its HTTP endpoint
/// (`GET /v1/handlespace`).
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The registrar's HTTP endpoint (`rsp registrar --http`; `--admin` is the older
    /// name): `127.0.0.1:9990` or `http://127.0.0.1:9990/`.
    #[arg(long = "http", visible_alias = "admin", default_value = DEFAULT_ADMIN, value_name = "ADDR")]
    pub admin: String,
    /// Print JSON (one document) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this pool (repeatable). A name starting with 0x also matches the pool whose
    /// handle has those bytes (as the table shows handles that are not text).
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,
    /// Give up when the registrar sends nothing for this long.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub timeout: Duration,
    /// Read the handlespace as an ENRP peer from this registrar's ENRP endpoint
    /// (`tcp://host:9901` or `sctp://host:9901`; port 9901 by default) with Handle Table
    /// Requests, like RSPLIB's hsdump; works with any ENRP registrar. Ages, reports and
    /// keep-alive times are not in the handle table and show as `-`.
    #[arg(long, value_name = "URL")]
    pub enrp: Option<String>,
    /// With --enrp: stop with an error beyond this many PEs.
    #[arg(long, default_value_t = enrp_dump::DEFAULT_MAX_PES as u32, value_parser = args::integer)]
    pub max_pes: u32,
}

pub fn run(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(url) = &args.enrp {
        return run_enrp(&rt, args, url);
    }
    let addr = http_addr(&args.admin)
        .with_context(|| format!("bad HTTP endpoint address {:?}", args.admin))
        .map_err(crate::exit::usage)?;
    let doc = match rt.block_on(fetch_pools(addr, args.timeout, &args.pools)) {
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

/// `127.0.0.1:9990`, `http://[::1]:9990/` (port 9990 when left out).
pub fn http_addr(s: &str) -> Option<SocketAddr> {
    let bare = s
        .strip_prefix("http://")
        .map_or(s, |r| r.trim_end_matches('/'));
    rserpool::url::parse_endpoint(bare, ADMIN_PORT)
        .ok()
        .and_then(|e: Endpoint| e.primary())
}

fn run_enrp(rt: &tokio::runtime::Runtime, args: &DumpArgs, url: &str) -> anyhow::Result<ExitCode> {
    let endpoint = rserpool::url::parse_endpoint(url, ENRP_PORT)
        .map_err(anyhow::Error::from)
        .and_then(|e| match e.transport {
            TransportProto::Udp => bail!("ENRP runs over tcp:// or sctp://, not {url}"),
            _ => Ok(e),
        })
        .with_context(|| format!("bad --enrp URL {url:?}"))
        .map_err(crate::exit::usage)?;
    let mut opts = enrp_dump::EnrpDumpOptions::new(endpoint);
    opts.timeout = args.timeout;
    opts.max_pes = args.max_pes as usize;
    let hs = match rt.block_on(enrp_dump::fetch(&opts)) {
        Ok(hs) => hs,
        Err(e) => {
            eprintln!("rsp dump: {e}");
            return Ok(ExitCode::from(crate::exit::FAILURE));
        }
    };
    let mut doc = hs.to_doc(LifetimeUnit::Milliseconds);
    if !args.pools.is_empty() {
        let wanted: Vec<String> = args
            .pools
            .iter()
            .flat_map(|n| pool_candidates(n))
            .map(|h| h.to_string())
            .collect();
        doc.pools.retain(|p| wanted.contains(&p.handle));
        doc.pool_count = doc.pools.len();
        doc.pe_count = doc.pools.iter().map(|p| p.pes.len()).sum();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", doc.table());
        eprintln!(
            "rsp dump: {} PE(s) in {} handle table response(s) from registrar {} (we were peer {})",
            hs.pe_count(),
            hs.responses,
            hs.registrar,
            hs.client
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask a registrar's HTTP endpoint for its handlespace.
pub async fn fetch(addr: SocketAddr, timeout: Duration) -> anyhow::Result<DumpDoc> {
    fetch_pools(addr, timeout, &[]).await
}

/// Ask a registrar's HTTP endpoint (`GET /v1/handlespace`) for some pools (all for an
/// empty list). `timeout` bounds each wait for data, not the whole transfer.
pub async fn fetch_pools(
    addr: SocketAddr,
    timeout: Duration,
    pools: &[String],
) -> anyhow::Result<DumpDoc> {
    let query: Vec<String> = pools
        .iter()
        .map(|p| format!("pool={}", client::encode(p.as_bytes())))
        .collect();
    let path = if query.is_empty() {
        "/v1/handlespace".to_owned()
    } else {
        format!("/v1/handlespace?{}", query.join("&"))
    };
    client::get_json(addr, &path, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}").context("registrar HTTP endpoint"))
}
