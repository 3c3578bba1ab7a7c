//! The registrar service: a [`Registrar`] core on a [`Driver`], its ASAP listeners (SCTP
//! endpoints grouped into multi-homed listeners, TCP/MPTCP), its ENRP listeners (the same
//! way, on port 9901: TCP with back-to-back messages, SCTP with PPID 12) and the ENRP
//! presence multicast group, the admin listener for `rsp dump` ([`super::admin`]) and the
//! event log ([`super::oplog`]).
//!
//! Peer connections the core opens (`Dest::Endpoint`, `TransportCommand::Connect`) are the
//! driver's: one per peer endpoint, dropped when the core closes or aborts it.
//!
//! [`start`] binds everything from a checked [`ServiceConfig`] and returns [`Running`];
//! [`Running::apply`] puts a new [`RegistrarConfig`] (and summary period) into force on a
//! running registrar (what a SIGHUP reload does). Settings parsing, validation and
//! printing stay with the caller (the `rsp registrar` CLI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{Protocol, ServerId, TransportAddr, TransportUse};

use crate::driver::{Driver, DriverConfig, DriverHandle};
use crate::transport::udp::MulticastSpec;
use crate::transport::{sctp, tcp, MessageListener, TransportConfig};
use crate::wirelog::WireLog;

/// Default admin listener (`rsp dump`), loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9990";
/// The admin port when an address is given without one.
pub const ADMIN_PORT: u16 = 9990;

/// Default ASAP listen endpoints: SCTP on every address (dual-stack), TCP on IPv4 and IPv6.
pub const DEFAULT_LISTEN: [&str; 3] = ["sctp://[::]:3863", "tcp://0.0.0.0:3863", "tcp://[::]:3863"];

/// Default ENRP listen endpoints (port [`rserpool_proto::registrar::ENRP_PORT`]): SCTP on
/// every address (as RSPLIB; skipped with a warning on a kernel without SCTP), TCP on IPv4
/// and IPv6.
pub const DEFAULT_ENRP_LISTEN: [&str; 3] =
    ["sctp://[::]:9901", "tcp://0.0.0.0:9901", "tcp://[::]:9901"];

/// What a registrar service needs to start: checked settings, defaults filled in.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// ASAP listen endpoints.
    pub listen: Vec<Endpoint>,
    /// The endpoints were given by the user: a failure to bind one is fatal.
    pub explicit_listen: bool,
    /// ENRP listen endpoints (empty = no ENRP listener: peers are only reached by the
    /// connections this registrar opens).
    pub enrp_listen: Vec<Endpoint>,
    /// The ENRP endpoints were given by the user: a failure to bind one is fatal (a
    /// default one that cannot be bound is a warning).
    pub explicit_enrp_listen: bool,
    /// Admin listener for `rsp dump`; `None` = off.
    pub admin: Option<SocketAddr>,
    /// The admin address was given by the user: a failure to bind it is fatal.
    pub explicit_admin: bool,
    pub core: RegistrarConfig,
    pub transport: TransportConfig,
    /// `label=HEX` wire log (else `RSERPOOL_WIRE_LOG`).
    pub wire_log: Option<PathBuf>,
    /// Summary of handlespace changes at info level; `None` = off.
    pub log_summary_interval: Option<Duration>,
    /// The DNS view of the pools ([`super::dns`]); `None` = off.
    pub dns: Option<super::dns::DnsConfig>,
    /// Component Status Protocol reports ([`super::csp`]); `None` = off.
    pub csp: Option<super::csp::CspConfig>,
}

/// A registrar running in this process.
pub struct Running {
    pub handle: DriverHandle<Registrar>,
    pub server_id: ServerId,
    /// The ASAP endpoints listened on (real ports).
    pub endpoints: Vec<Endpoint>,
    /// The ENRP endpoints listened on (real ports).
    pub enrp_endpoints: Vec<Endpoint>,
    /// The transports bound (real ports), ASAP and ENRP: what a reload keeps.
    bound_transports: (Vec<TransportAddr>, Vec<TransportAddr>),
    /// Where `rsp dump` reaches it.
    pub admin: Option<SocketAddr>,
    task: tokio::task::JoinHandle<Registrar>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// Period of the info-level summaries (`None` = off), for reloads.
    pub summary_interval: tokio::sync::watch::Sender<Option<Duration>>,
    /// Where the DNS view answers (real port).
    pub dns: Option<SocketAddr>,
    /// The CSP reporter (FINAL report on stop).
    csp: Option<super::csp::CspReporter>,
}

impl Running {
    /// Serve until `signal`, then shut down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        if let Some(csp) = self.csp {
            csp.stop().await;
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Stop now (gracefully).
    pub async fn stop(self) {
        self.run_until(async {}).await;
    }
}

/// Bind everything and start the registrar's driver.
pub async fn start(mut cfg: ServiceConfig) -> anyhow::Result<Running> {
    let wire_log = match &cfg.wire_log {
        Some(p) => Some(WireLog::open(p).with_context(|| format!("wire log {}", p.display()))?),
        None => WireLog::from_env(),
    };
    let bound = bind_listeners(&cfg)?;
    let enrp = bind_enrp_listeners(&cfg)?;
    // Open SCTP associations to peers from the ENRP port: RSPLIB only takes a peer whose
    // association comes from the address and port its Server Information names.
    if cfg.transport.sctp_source_port.is_none() {
        cfg.transport.sctp_source_port = enrp
            .sctp
            .first()
            .and_then(|l| l.local_addrs().ok())
            .and_then(|a| a.first().map(SocketAddr::port));
    }
    // Announce the endpoints actually bound (with their real ports).
    cfg.core.asap_transports = bound.announced;
    cfg.core.enrp.own_transports = enrp.announced;
    let bound_transports = (
        cfg.core.asap_transports.clone(),
        cfg.core.enrp.own_transports.clone(),
    );
    let presence_group = cfg.core.enrp.presence_group;
    let unit = cfg.core.lifetime_unit;
    let core = Registrar::new(cfg.core.clone(), crate::random_seed());
    let server_id = core.server_id();
    let fast = core.fast_resolver();
    let driver_cfg = DriverConfig {
        transport: cfg.transport.clone(),
        wire_log,
        ..DriverConfig::default()
    };
    let stats = std::sync::Arc::new(super::oplog::Stats::default());
    let recorder = stats.clone();
    let hub =
        std::sync::Arc::new(super::http_admin::events::Hub::default().with_lengths(&cfg.transport));
    let driver_cfg = DriverConfig {
        resolution_timer: Some(hub.resolution_time.clone()),
        ..driver_cfg
    };
    let events = hub.clone();
    let (mut driver, handle) = Driver::new(core, driver_cfg, move |ev| {
        events.record(&ev, server_id);
        recorder.record(ev);
    });
    driver.fast_resolutions(fast);
    let (summary_interval, interval_rx) = tokio::sync::watch::channel(cfg.log_summary_interval);
    tokio::spawn(super::oplog::summaries(stats, handle.clone(), interval_rx));
    for l in bound.sctp {
        driver.listen(l, Protocol::Asap);
    }
    for l in bound.tcp {
        driver.listen(l, Protocol::Asap);
    }
    for l in bound.tls {
        if let Ok(mut list) = hub.tls.lock() {
            list.push(l.listener_stats());
        }
        driver.listen(l, Protocol::Asap);
    }
    let endpoints = driver.local_endpoints().to_vec();
    for l in enrp.sctp {
        driver.listen(l, Protocol::Enrp);
    }
    for l in enrp.tcp {
        driver.listen(l, Protocol::Enrp);
    }
    for l in enrp.tls {
        if let Ok(mut list) = hub.tls.lock() {
            list.push(l.listener_stats());
        }
        driver.listen(l, Protocol::Enrp);
    }
    let enrp_endpoints = driver.local_endpoints()[endpoints.len()..].to_vec();
    if let Some(group) = presence_group {
        driver.multicast(MulticastSpec {
            group,
            protocol: Protocol::Enrp,
        });
    }
    let admin = match cfg.admin {
        Some(a) => match super::http_admin::bind(a) {
            Ok(l) => {
                let local = l.local_addr()?;
                let api =
                    super::http_admin::registrar::RegistrarApi::new(handle.clone(), unit, hub);
                let stop = handle.clone();
                super::http_admin::spawn(l, api.router(), Some(api.legacy()), async move {
                    stop.stopped().await;
                })?;
                Some(local)
            }
            Err(e) if !cfg.explicit_admin => {
                tracing::warn!("admin listener {a} unavailable: {e}; `rsp dump` will not work");
                None
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on admin {a}")),
        },
        None => None,
    };
    let dns = match &cfg.dns {
        Some(d) => {
            let socket = super::dns::bind(d.listen)
                .with_context(|| format!("cannot listen for DNS on udp://{}", d.listen))?;
            let local = socket.local_addr()?;
            // DNS over TCP on the same port (answers too big for UDP, `dig … ANY`).
            let tcp = match super::dns::bind_tcp(local) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!("DNS over TCP on {local} unavailable: {e}; UDP only");
                    None
                }
            };
            tokio::spawn(super::dns::serve(socket, tcp, d.clone(), handle.clone()));
            Some(local)
        }
        None => None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(async {
        let _ = stopped.await;
    }));
    let csp = match cfg.csp.clone() {
        Some(c) => {
            let addrs: Vec<SocketAddr> = endpoints
                .iter()
                .filter_map(|e| e.primary())
                .filter(|a| !a.ip().is_unspecified())
                .collect();
            let server = c.server;
            Some(
                super::csp::spawn_registrar_reporter(c, handle.clone(), &addrs)
                    .await
                    .with_context(|| format!("CSP reports to {server}"))?,
            )
        }
        None => None,
    };
    Ok(Running {
        handle,
        server_id,
        endpoints,
        enrp_endpoints,
        bound_transports,
        admin,
        task,
        stop,
        summary_interval,
        dns,
        csp,
    })
}

/// The listeners of a registrar and what it announces.
pub struct Bound {
    /// Listeners bound, not yet given to a driver.
    pub sctp: Vec<sctp::SctpMessageListener>,
    pub tcp: Vec<crate::transport::tcp::TcpMessageListener>,
    pub tls: Vec<crate::transport::tls::TlsMessageListener>,
    /// The ASAP transports to announce (real ports; TLS listeners are not announced).
    pub announced: Vec<TransportAddr>,
}

/// SCTP endpoints grouped by port: one multi-homed listener each. A wildcard in a group
/// binds the wildcard alone (`[::]` = every IPv4 and IPv6 address when the group has an
/// IPv6 address, else `0.0.0.0`).
pub fn sctp_groups(eps: &[Endpoint]) -> Vec<Vec<SocketAddr>> {
    let mut groups: Vec<Vec<SocketAddr>> = Vec::new();
    for a in eps
        .iter()
        .filter(|e| e.transport == TransportProto::Sctp)
        .flat_map(|e| e.addrs.iter().copied())
    {
        match groups.iter_mut().find(|g| g[0].port() == a.port()) {
            Some(g) if !g.contains(&a) => g.push(a),
            Some(_) => {}
            None => groups.push(vec![a]),
        }
    }
    for g in &mut groups {
        if g.iter().any(|a| a.ip().is_unspecified()) {
            let port = g[0].port();
            let ip: std::net::IpAddr = if g.iter().any(SocketAddr::is_ipv6) {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            *g = vec![SocketAddr::new(ip, port)];
        }
    }
    groups
}

fn url_of(addrs: &[SocketAddr]) -> String {
    Endpoint::sctp(addrs.to_vec()).to_string()
}

/// Bind every ASAP listener. SCTP on a kernel without it: a warning if a TCP listener is
/// configured too, else an error naming the problem.
pub fn bind_listeners(cfg: &ServiceConfig) -> anyhow::Result<Bound> {
    let bound = bind_set(
        &cfg.listen,
        cfg.explicit_listen,
        Protocol::Asap,
        &cfg.transport,
    )?;
    if bound.sctp.is_empty() && bound.tcp.is_empty() && bound.tls.is_empty() {
        bail!("no listening endpoint could be bound");
    }
    Ok(bound)
}

/// Bind every ENRP listener. Defaults that cannot be bound (port taken, no SCTP, no IPv6)
/// are warnings: the registrar still reaches its peers over the connections it opens.
/// Explicit endpoints must all be bound.
pub fn bind_enrp_listeners(cfg: &ServiceConfig) -> anyhow::Result<Bound> {
    let bound = bind_set(
        &cfg.enrp_listen,
        cfg.explicit_enrp_listen,
        Protocol::Enrp,
        &cfg.transport,
    )?;
    if bound.sctp.is_empty()
        && bound.tcp.is_empty()
        && bound.tls.is_empty()
        && !cfg.enrp_listen.is_empty()
    {
        tracing::warn!(
            "no ENRP endpoint could be bound: peers cannot connect to this registrar \
             (it still connects to its --peer registrars)"
        );
    }
    Ok(bound)
}

/// Bind the listeners of one protocol. With `explicit`, a failure is fatal (except SCTP
/// missing from the kernel while a TCP endpoint is configured too); without, a warning,
/// except for an IPv4 ASAP endpoint (the one default a registrar cannot do without).
fn bind_set(
    eps: &[Endpoint],
    explicit: bool,
    protocol: Protocol,
    transport: &TransportConfig,
) -> anyhow::Result<Bound> {
    let mut bound = Bound {
        sctp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
        announced: Vec::new(),
    };
    let has_tcp = eps.iter().any(|e| e.transport != TransportProto::Sctp);
    for group in sctp_groups(eps) {
        let url = url_of(&group);
        // ENRP: shared with the associations we open to peers (sctp_source_port).
        let bound_group = if protocol == Protocol::Enrp {
            sctp::bind_shared(&group, protocol, transport)
        } else {
            sctp::bind(&group, protocol, transport)
        };
        match bound_group {
            Ok(l) => {
                let local = l.local_addrs().unwrap_or_default();
                let ips: Vec<std::net::IpAddr> = local.iter().map(SocketAddr::ip).collect();
                let port = local.first().map_or(group[0].port(), SocketAddr::port);
                let addrs = sctp::announceable(&ips);
                if !addrs.is_empty() {
                    bound
                        .announced
                        .push(TransportAddr::sctp(port, TransportUse::DATA_ONLY, addrs));
                }
                bound.sctp.push(l);
            }
            // The ASAP listeners have said it already.
            Err(e)
                if crate::sctp::is_sctp_unavailable(&e)
                    && protocol == Protocol::Enrp
                    && !explicit =>
            {
                tracing::debug!("not listening on {url}: {e}");
            }
            Err(e) if crate::sctp::is_sctp_unavailable(&e) && has_tcp => {
                tracing::warn!("not listening on {url}: {e}; continuing with TCP only");
            }
            Err(e) if crate::sctp::is_sctp_unavailable(&e) => {
                // The io::Error stays in the chain: callers tell this configuration
                // error from a runtime failure by it.
                return Err(e).with_context(|| format!("cannot listen on {url}"));
            }
            Err(e) if !explicit => tracing::warn!("not listening on {url}: {e}"),
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {url}")),
        }
    }
    for ep in eps.iter().filter(|e| e.transport == TransportProto::Tls) {
        let Some(addr) = ep.primary() else { continue };
        let Some(tls) = transport.tls.as_deref().filter(|t| t.can_serve()) else {
            bail!("cannot listen on {ep}: TLS needs a certificate and key (--tls-cert, --tls-key)");
        };
        let l = crate::transport::tls::bind(addr, protocol, transport, tls)
            .with_context(|| format!("cannot listen on {ep}"))?;
        bound.tls.push(l);
    }
    for ep in eps
        .iter()
        .filter(|e| !matches!(e.transport, TransportProto::Sctp | TransportProto::Tls))
    {
        let Some(addr) = ep.primary() else { continue };
        let mptcp = ep.transport == TransportProto::Mptcp;
        match tcp::bind(addr, protocol, mptcp, transport) {
            Ok(l) => {
                if let Some(a) = l.local_endpoint().ok().and_then(|e| e.primary()) {
                    bound.announced.push(TransportAddr::tcp(a.port(), a.ip()));
                }
                bound.tcp.push(l);
            }
            Err(e) if !explicit && (addr.is_ipv6() || protocol == Protocol::Enrp) => {
                tracing::warn!("not listening on {ep}: {e}");
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {ep}")),
        }
    }
    Ok(bound)
}

impl Running {
    /// Put a new core configuration and summary period into force (a reload). What
    /// needs a restart (sockets, server id, presence group) is the caller's to keep
    /// unchanged in `core`; the transports bound (ASAP and ENRP) are put in here.
    /// `Err` = the registrar is shutting down.
    pub async fn apply(
        &self,
        mut core: RegistrarConfig,
        log_summary_interval: Option<Duration>,
    ) -> Result<(), crate::DriverGone> {
        core.asap_transports = self.bound_transports.0.clone();
        core.enrp.own_transports = self.bound_transports.1.clone();
        self.handle
            .query(move |c: &mut Registrar, now| c.reconfigure(now, core))
            .await?;
        self.summary_interval.send_replace(log_summary_interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_endpoint;
    use rserpool_wire::ASAP_PORT;

    fn eps(urls: &[&str]) -> Vec<Endpoint> {
        urls.iter()
            .map(|u| parse_endpoint(u, ASAP_PORT).unwrap_or_else(|e| panic!("{u}: {e}")))
            .collect()
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn sctp_endpoints_group_by_port() {
        let g = sctp_groups(&eps(&[
            "sctp://10.0.0.1:3863",
            "tcp://0.0.0.0:3863",
            "sctp://10.0.0.2,[2001:db8::1]:3863",
            "sctp://127.0.0.1:4000",
            "sctp://10.0.0.1:3863",
        ]));
        assert_eq!(
            g,
            vec![
                vec![
                    sa("10.0.0.1:3863"),
                    sa("10.0.0.2:3863"),
                    sa("[2001:db8::1]:3863")
                ],
                vec![sa("127.0.0.1:4000")],
            ]
        );
        // A wildcard swallows the group; with an IPv6 address in it, it is dual-stack.
        let g = sctp_groups(&eps(&["sctp://0.0.0.0:3863", "sctp://[::1]:3863"]));
        assert_eq!(g, vec![vec![sa("[::]:3863")]]);
        let g = sctp_groups(&eps(&["sctp://0.0.0.0:3863", "sctp://10.0.0.1:3863"]));
        assert_eq!(g, vec![vec![sa("0.0.0.0:3863")]]);
        assert!(sctp_groups(&eps(&["tcp://0.0.0.0:3863"])).is_empty());
    }
}
