//! Component Status Protocol reports (RSPLIB's `cspmonitor`): a task that sends the
//! component's status by UDP every interval, and a FINAL report when it stops.
//!
//! Settings as in RSPLIB: `--csp-server ADDR[:PORT]` (port 2960 by default) and
//! `--csp-interval MS`, or the environment variables `CSP_SERVER` / `CSP_INTERVAL`. The
//! report layout is in [`rserpool_wire::csp`]. Component identifiers carry the group in
//! the top byte: 1 registrar (object = server ID), 2 pool element (object = PE
//! identifier), 3 pool user (object = a random 56-bit number per process).
//!
//! Status texts: a registrar says `N[M] PEs in P Pools, K Peers` as RSPLIB's does (N all
//! PEs, M owned); a PE names its pool, its state and home registrar; a pool user (the
//! gateway) its connections and failovers. Associations: a registrar lists its peers
//! (ENRP, PPID 12), a PE its home registrar (ASAP, PPID 11).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rserpool_proto::io::TransportProto;
use rserpool_proto::registrar::{PeerState, Registrar};
use rserpool_wire::csp::{
    component_id, CspAssociation, CspReport, CSP_DEFAULT_PORT, CSP_GROUP_POOL_ELEMENT,
    CSP_GROUP_REGISTRAR,
};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::driver::DriverHandle;

/// Where and how often to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CspConfig {
    pub server: SocketAddr,
    pub interval: Duration,
}

/// RSPLIB's default report interval.
pub const DEFAULT_CSP_INTERVAL: Duration = Duration::from_secs(1);
/// Reports are never sent more often than this.
pub const MIN_CSP_INTERVAL: Duration = Duration::from_millis(100);

impl CspConfig {
    /// `ADDR[:PORT]` (`127.0.0.1`, `127.0.0.1:2960`, `[::1]:2960`, `::1`) and an interval.
    pub fn new(server: &str, interval: Option<Duration>) -> anyhow::Result<Self> {
        let server = parse_server(server)?;
        let interval = interval.unwrap_or(DEFAULT_CSP_INTERVAL);
        if interval < MIN_CSP_INTERVAL {
            bail!("CSP interval {interval:?} is below the {MIN_CSP_INTERVAL:?} minimum");
        }
        Ok(Self { server, interval })
    }

    /// From the command line's values, else the environment (`CSP_SERVER`,
    /// `CSP_INTERVAL` in ms); `None` when no server is given.
    pub fn from_args_or_env(
        server: Option<&str>,
        interval: Option<Duration>,
    ) -> anyhow::Result<Option<Self>> {
        let env_server = std::env::var("CSP_SERVER").ok().filter(|s| !s.is_empty());
        let Some(server) = server.map(str::to_owned).or(env_server) else {
            return Ok(None);
        };
        let interval = match interval {
            Some(i) => Some(i),
            None => match std::env::var("CSP_INTERVAL") {
                Ok(v) if !v.is_empty() => {
                    Some(parse_interval(&v).with_context(|| format!("CSP_INTERVAL={v:?}"))?)
                }
                _ => None,
            },
        };
        Self::new(&server, interval).map(Some)
    }
}

/// `ADDR[:PORT]`, port 2960 when absent.
pub fn parse_server(s: &str) -> anyhow::Result<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, CSP_DEFAULT_PORT));
    }
    bail!("{s:?} is not a CSP monitor address (e.g. 127.0.0.1:2960 or [::1]:2960)")
}

/// An interval as RSPLIB gives it (a plain number of milliseconds) or with a unit
/// (`500ms`, `2s`).
pub fn parse_interval(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("{s:?} is not an interval (milliseconds, or e.g. 500ms, 2s)");
    };
    let v: f64 = num.trim().parse().with_context(|| format!("{s:?}"))?;
    if !v.is_finite() || !(0.0..=86_400.0).contains(&(v * mul)) {
        bail!("interval {s:?} out of range");
    }
    Ok(Duration::from_secs_f64(v * mul))
}

/// What a component reports each time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CspStatus {
    pub status: String,
    /// Load in 0..=1; `None` unknown.
    pub workload: Option<f64>,
    pub associations: Vec<CspAssociation>,
}

/// "host: addr, addr" as RSPLIB's location text (the host name, then where it listens).
pub fn location(addrs: &[SocketAddr]) -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    if list.is_empty() {
        host
    } else {
        format!("{host}: {}", list.join(", "))
    }
}

/// A running reporter. Dropping it stops the reports without a FINAL one; [`stop`]
/// sends the FINAL report first.
///
/// [`stop`]: CspReporter::stop
pub struct CspReporter {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl CspReporter {
    /// Report as `id` from `location`: every interval `source()` gives the status; when it
    /// gives `None` (the component is gone) the FINAL report goes out and the task ends.
    pub async fn spawn<F, Fut>(
        cfg: CspConfig,
        id: u64,
        location: String,
        mut source: F,
    ) -> std::io::Result<Self>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Option<CspStatus>> + Send,
    {
        let local: SocketAddr = if cfg.server.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let interval_us = u32::try_from(cfg.interval.as_micros()).unwrap_or(u32::MAX);
            let report = |status: Option<CspStatus>| {
                let fin = status.is_none();
                let s = status.unwrap_or_default();
                CspReport {
                    final_report: fin,
                    sender: id,
                    timestamp_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
                    interval_us,
                    location: if fin { String::new() } else { location.clone() },
                    status: s.status,
                    workload: s.workload,
                    associations: s.associations,
                }
            };
            let mut tick = tokio::time::interval(cfg.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        let Some(status) = source().await else { break };
                        let bytes = report(Some(status)).encode();
                        if let Err(e) = socket.send_to(&bytes, cfg.server).await {
                            tracing::debug!("CSP report to {}: {e}", cfg.server);
                        }
                    }
                }
            }
            let _ = socket.send_to(&report(None).encode(), cfg.server).await;
        });
        Ok(Self {
            stop: Some(stop),
            task,
        })
    }

    /// Send the FINAL report and end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for CspReporter {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

/// IP protocol number of a transport (for associations).
pub fn ip_protocol(t: TransportProto) -> u16 {
    match t {
        TransportProto::Sctp => 132,
        TransportProto::Udp => 17,
        TransportProto::Tcp | TransportProto::Mptcp | TransportProto::Tls => 6,
    }
}

/// A registrar's status, RSPLIB's text: "N[M] PEs in P Pools, K Peers".
pub fn registrar_status(r: &Registrar) -> CspStatus {
    let hs = r.handlespace();
    let peers: Vec<_> = r
        .peers()
        .into_iter()
        .filter(|p| p.server_id.0 != 0 && p.state != PeerState::Unidentified)
        .collect();
    CspStatus {
        status: format!(
            "{}[{}] PEs in {} Pools, {} Peers",
            hs.len(),
            hs.owned_count(r.server_id()),
            hs.pool_count(),
            peers.len()
        ),
        workload: None,
        associations: peers
            .iter()
            .map(|p| CspAssociation {
                receiver: component_id(CSP_GROUP_REGISTRAR, u64::from(p.server_id.0)),
                duration_us: None,
                flags: 0,
                protocol: p.endpoint.as_ref().map_or(6, |e| ip_protocol(e.transport)),
                ppid: rserpool_wire::PPID_ENRP,
            })
            .collect(),
    }
}

/// Report a registrar's status until its driver stops.
pub async fn spawn_registrar_reporter(
    cfg: CspConfig,
    handle: DriverHandle<Registrar>,
    addrs: &[SocketAddr],
) -> std::io::Result<CspReporter> {
    let id = handle
        .query(|r, _| u64::from(r.server_id().0))
        .await
        .unwrap_or(0);
    CspReporter::spawn(
        cfg,
        component_id(CSP_GROUP_REGISTRAR, id),
        location(addrs),
        move || {
            let h = handle.clone();
            async move { h.query(|r, _| registrar_status(r)).await.ok() }
        },
    )
    .await
}

/// Report a pool element's status (`label: registered, home $…`) until `pe` stops.
/// `workload` gives the load to show (0..=1), if the service knows one.
pub async fn spawn_pe_reporter(
    cfg: CspConfig,
    pe: std::sync::Arc<crate::pe::PoolElement>,
    label: String,
    addrs: &[SocketAddr],
    registrar_protocol: u16,
    workload: impl Fn() -> Option<f64> + Send + Sync + 'static,
) -> std::io::Result<CspReporter> {
    let id = pe.pe_ids().first().map_or(0, |p| u64::from(p.0));
    CspReporter::spawn(
        cfg,
        component_id(CSP_GROUP_POOL_ELEMENT, id),
        location(addrs),
        move || {
            let pe = pe.clone();
            let load = workload();
            let label = label.clone();
            async move {
                let home = pe
                    .driver()
                    .query(|c, _| c.home().and_then(|(_, id)| id))
                    .await
                    .ok()?;
                let status = pe.status().await.ok()?;
                let registered = status
                    .iter()
                    .filter(|(_, s)| *s == rserpool_proto::pool_element::PeStatus::Registered)
                    .count();
                let state = if registered == status.len() && !status.is_empty() {
                    "registered".to_owned()
                } else if registered == 0 {
                    "looking for a registrar".to_owned()
                } else {
                    format!("{registered} of {} entries registered", status.len())
                };
                let mut text = format!("{label}: {state}");
                if let Some(h) = home {
                    text.push_str(&format!(", home ${:08x}", h.0));
                }
                Some(CspStatus {
                    status: text,
                    workload: load,
                    associations: home
                        .map(|h| CspAssociation {
                            receiver: component_id(CSP_GROUP_REGISTRAR, u64::from(h.0)),
                            duration_us: None,
                            flags: 0,
                            protocol: registrar_protocol,
                            ppid: rserpool_wire::PPID_ASAP,
                        })
                        .into_iter()
                        .collect(),
                })
            }
        },
    )
    .await
}

/// Report a pool user's status: `status()` gives the text each time (the process's
/// object identifier is random, as RSPLIB's pool users').
pub async fn spawn_pu_reporter(
    cfg: CspConfig,
    addrs: &[SocketAddr],
    status: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<CspReporter> {
    let object = crate::random_seed() & 0x00ff_ffff_ffff_ffff;
    let status = std::sync::Arc::new(status);
    CspReporter::spawn(
        cfg,
        component_id(rserpool_wire::csp::CSP_GROUP_POOL_USER, object.max(1)),
        location(addrs),
        move || {
            let text = status();
            async move {
                Some(CspStatus {
                    status: text,
                    workload: None,
                    associations: Vec::new(),
                })
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_intervals_parse_as_rsplib_gives_them() {
        assert_eq!(
            parse_server("127.0.0.1").unwrap(),
            "127.0.0.1:2960".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:3000").unwrap(),
            "[::1]:3000".parse().unwrap()
        );
        assert_eq!(parse_server("::1").unwrap(), "[::1]:2960".parse().unwrap());
        assert!(parse_server("monitor.example").is_err());
        assert_eq!(parse_interval("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_interval("fast").is_err());
        assert!(CspConfig::new("127.0.0.1", Some(Duration::from_millis(10))).is_err());
    }
}
