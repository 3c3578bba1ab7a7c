//! The pool element API: register a service in a pool and keep it registered.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rserpool::pe::{PoolElement, PeOptions};
//! let opts = PeOptions::new("EchoPool")
//!     .registrar(rserpool::url::parse_endpoint("tcp://127.0.0.1:3863", 3863)?)
//!     .tcp_user_transport("127.0.0.1:7000".parse()?);
//! let pe = PoolElement::start(opts)?;
//! pe.registered().await?;          // every entry registered at a home registrar
//! pe.set_load(0x4000_0000)?;       // least-used policies: report a new load
//! pe.deregister().await;           // or just drop it: dropping deregisters too
//! # Ok(()) }
//! ```
//!
//! One [`PoolElement`] owns one [`PoolElementCore`] on its own driver task. A TCP user
//! transport carries one address, so a service listening on an IPv4 and an IPv6 address
//! registers one PE entry per address ([`PoolElement::pe_ids`]).
//!
//! The ASAP control endpoint ([`PeOptions::asap_control`], on by default): the PE listens
//! for ASAP on a TCP port of its own (0.0.0.0, and [::] on the same port when it can) and
//! makes its TCP and MPTCP registrar connections *from* that port (`SO_REUSEPORT` on both
//! sides). A registrar records the registering connection's source as the PE's ASAP
//! transport (a TCP transport TLV), so a registrar that takes the PE over after its home
//! failed connects there and sends a keep-alive with H = 1; the core acks it on that
//! connection and makes it its home (later re-registrations go there). Connections a
//! registrar opens are accepted connections of the PE's driver, limited by
//! [`DEFAULT_PE_MAX_CONNECTIONS`]. The same for SCTP when the PE may use an SCTP
//! registrar (one configured, or announces heard): an SCTP listener on every address
//! (`[::]`, a kernel-chosen port) whose port the registrar associations are opened from;
//! the registrar records it in an SCTP transport TLV.
//!
//! A PE with a TLS certificate serves its control endpoint over TLS only and requires the
//! registrar's certificate there (mutual TLS): it must chain to the PE's trust anchors
//! and, with [`PeOptions::registrar_identities`], name one of them. Everyone else fails
//! the handshake before any ASAP message is read ([`PoolElement::control_tls_stats`]
//! counts them).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use rserpool_proto::io::Endpoint;
use rserpool_proto::{PeCommand, PeEvent, PeStatus, PoolElementConfig, PoolElementCore};
use rserpool_wire::{
    CauseCode, LifetimeUnit, PeId, Policy, PoolHandle, Protocol, TransportAddr, TransportUse,
    UserTransport,
};
use tokio::sync::broadcast;

use crate::driver::{Driver, DriverConfig, DriverGone, DriverHandle};
use crate::link::{registrar_link_builders, RegistrarLink};
use crate::transport::{tcp, MessageListener, TransportConfig};

/// Default of the PE driver's [`TransportConfig::max_connections`]: connections registrars
/// (or anyone) open to the ASAP control listener at once; beyond it the oldest silent
/// one makes room.
pub const DEFAULT_PE_MAX_CONNECTIONS: usize = 16;

/// Everything needed to start a pool element.
#[derive(Clone, Debug)]
pub struct PeOptions {
    pub core: PoolElementConfig,
    /// Registrars, announces, connect timeout (shared with [`crate::pu::PuOptions`]).
    pub link: RegistrarLink,
    pub driver: DriverConfig,
    /// RNG seed of the core; `None` = a fresh random seed.
    pub seed: Option<u64>,
    /// Open the ASAP control listener and make TCP registrar connections from its port
    /// (see the module docs). Default true.
    pub asap_control: bool,
    /// Over TLS: the names (DNS or IP subjectAltName, or subject common name) a
    /// registrar's client certificate must carry to reach the control endpoint; empty =
    /// any certificate chaining to the trust anchors.
    pub registrar_identities: Vec<String>,
}

impl PeOptions {
    /// Defaults for `pool`: round robin, 30 s registration life, announces heard on
    /// 239.0.0.50:3863.
    pub fn new(pool: impl Into<PoolHandle>) -> Self {
        Self {
            core: PoolElementConfig {
                pool_handle: pool.into(),
                ..PoolElementConfig::default()
            },
            link: RegistrarLink::default(),
            driver: DriverConfig {
                transport: TransportConfig {
                    max_connections: DEFAULT_PE_MAX_CONNECTIONS,
                    ..TransportConfig::default()
                },
                ..DriverConfig::default()
            },
            seed: None,
            asap_control: true,
            registrar_identities: Vec::new(),
        }
    }
    /// Accept only registrars whose certificate names one of `names` on the TLS control
    /// endpoint (see [`PeOptions::registrar_identities`]).
    pub fn registrar_identities(mut self, names: Vec<String>) -> Self {
        self.registrar_identities = names;
        self
    }
    /// Open an ASAP control listener (default) or not (see the module docs).
    pub fn asap_control(mut self, on: bool) -> Self {
        self.asap_control = on;
        self
    }
    registrar_link_builders!();
    /// Add a TCP user transport (the service's listening address).
    pub fn tcp_user_transport(mut self, addr: SocketAddr) -> Self {
        self.core
            .user_transports
            .push(UserTransport::Ip(TransportAddr::tcp(
                addr.port(),
                addr.ip(),
            )));
        self
    }
    /// Add an SCTP user transport: the service's port and every address it listens on
    /// (multi-homed). `control` = the service also accepts ASAP control messages (cookie
    /// echo, business card) on PPID 11 of its associations (transport use "data plus
    /// control", as RSPLIB's PEs register).
    pub fn sctp_user_transport(mut self, port: u16, addrs: Vec<IpAddr>, control: bool) -> Self {
        let use_field = if control {
            TransportUse::DATA_PLUS_CONTROL
        } else {
            TransportUse::DATA_ONLY
        };
        self.core
            .user_transports
            .push(UserTransport::Ip(TransportAddr::sctp(
                port, use_field, addrs,
            )));
        self
    }
    pub fn policy(mut self, policy: Policy) -> Self {
        self.core.policy = policy;
        self
    }
    pub fn pe_id(mut self, id: PeId) -> Self {
        self.core.pe_id = Some(id);
        self
    }
    pub fn registration_life(mut self, life: Duration) -> Self {
        self.core.registration_life = life;
        self
    }
    pub fn reregistration_interval(mut self, every: Duration) -> Self {
        self.core.reregistration_interval = every;
        self
    }
    pub fn lifetime_unit(mut self, unit: LifetimeUnit) -> Self {
        self.core.lifetime_unit = unit;
        self
    }
}

/// Why waiting for a registration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("registration of PE {pe_id} rejected: {cause}")]
    Rejected { pe_id: PeId, cause: CauseCode },
    #[error(transparent)]
    Gone(#[from] DriverGone),
}

/// A running pool element. Dropping it deregisters (if the runtime keeps running).
#[derive(Debug)]
pub struct PoolElement {
    handle: DriverHandle<PoolElementCore>,
    events: broadcast::Sender<PeEvent>,
    pe_ids: Vec<PeId>,
    control: Vec<Endpoint>,
    control_tls_stats: Vec<crate::transport::tls::ListenerStats>,
    policy: Mutex<Policy>,
    task: Mutex<Option<tokio::task::JoinHandle<PoolElementCore>>>,
}

impl PoolElement {
    /// Start registering (returns at once; see [`PoolElement::registered`]).
    pub fn start(opts: PeOptions) -> Result<Self, std::io::Error> {
        if opts.core.user_transports.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a pool element needs at least one user transport",
            ));
        }
        let mut opts = opts;
        if opts.driver.transport.sctp_bind.is_empty() {
            // RFC 5352 §2.1: the registration association is bound to every address the
            // PE registers (SCTP registrars only; TCP connections ignore this).
            opts.driver.transport.sctp_bind = registered_ips(&opts.core.user_transports);
        }
        opts.link.configure(
            &mut opts.core.registrars,
            &mut opts.core.accept_announces,
            &mut opts.driver,
        );
        // A PE with a certificate (TLS towards its registrars) takes ASAP over TLS on its
        // control endpoint too: a registrar taking it over must then use TLS and gets
        // its certificate checked (the registrar's `pe_control_tls`), and the registrar
        // must show a certificate the PE trusts (and one of the expected names).
        let control_tls = match opts
            .driver
            .transport
            .tls
            .clone()
            .filter(|t| t.can_serve() && opts.asap_control)
            .filter(|_| opts.driver.transport.tcp_source_port.is_none())
        {
            Some(t) => {
                let checked = t.requiring_clients(&opts.registrar_identities);
                Some(checked.map_err(|e| {
                    let why = format!("the TLS ASAP control endpoint checks registrars: {e}");
                    std::io::Error::new(e.kind(), why)
                })?)
            }
            None => None,
        };
        let control = if control_tls.is_none()
            && opts.asap_control
            && opts.driver.transport.tcp_source_port.is_none()
        {
            bind_control(&opts.driver.transport)
        } else {
            Vec::new()
        };
        let control_tls = match control_tls {
            Some(t) => bind_tls_control(&opts.driver.transport, &t),
            None => Vec::new(),
        };
        if let Some(l) = control.first() {
            opts.driver.transport.tcp_source_port =
                l.local_endpoint()?.addrs.first().map(|a| a.port());
        }
        if let Some(l) = control_tls.first() {
            opts.driver.transport.tcp_source_port =
                l.local_endpoint()?.addrs.first().map(|a| a.port());
        }
        #[cfg(target_os = "linux")]
        let sctp_control = if opts.asap_control
            && opts.driver.transport.sctp_source_port.is_none()
            && (opts.core.accept_announces
                || opts
                    .core
                    .registrars
                    .iter()
                    .any(|e| e.transport == rserpool_proto::io::TransportProto::Sctp))
        {
            bind_sctp_control(&opts.driver.transport)
        } else {
            None
        };
        #[cfg(target_os = "linux")]
        if let Some(l) = &sctp_control {
            opts.driver.transport.sctp_source_port =
                l.local_endpoint()?.addrs.first().map(|a| a.port());
        }
        let seed = opts.seed.unwrap_or_else(crate::random_seed);
        let policy = opts.core.policy.clone();
        let core = PoolElementCore::new(opts.core, seed);
        let pe_ids = core.pe_ids();
        let (events, _) = broadcast::channel(256);
        let tx = events.clone();
        let (mut driver, handle) = Driver::new(core, opts.driver, move |ev: PeEvent| {
            log_event(&ev);
            let _ = tx.send(ev);
        });
        if let Some(spec) = opts.link.announces() {
            driver.multicast(spec);
        }
        for l in control {
            driver.listen(l, Protocol::Asap);
        }
        let control_tls_stats: Vec<_> = control_tls.iter().map(|l| l.listener_stats()).collect();
        for l in control_tls {
            driver.listen(l, Protocol::Asap);
        }
        #[cfg(target_os = "linux")]
        if let Some(l) = sctp_control {
            driver.listen(l, Protocol::Asap);
        }
        let control = driver.local_endpoints().to_vec();
        let task = driver.spawn();
        Ok(Self {
            handle,
            events,
            pe_ids,
            control,
            control_tls_stats,
            policy: Mutex::new(policy),
            task: Mutex::new(Some(task)),
        })
    }

    /// The PE IDs of this element's entries (one per user transport).
    pub fn pe_ids(&self) -> &[PeId] {
        &self.pe_ids
    }

    /// The ASAP control listener's endpoints (empty without one): where a registrar
    /// reaches this PE, and the source port of its TCP registrar connections.
    pub fn control_endpoints(&self) -> &[Endpoint] {
        &self.control
    }

    /// The handshake counters of the TLS control listeners (empty without TLS): who
    /// reached the endpoint, who had no trusted certificate, whose name was refused.
    pub fn control_tls_stats(&self) -> &[crate::transport::tls::ListenerStats] {
        &self.control_tls_stats
    }

    /// Events as they happen (registered, home changed, rejected …).
    pub fn subscribe(&self) -> broadcast::Receiver<PeEvent> {
        self.events.subscribe()
    }

    /// Registration state of each entry.
    pub async fn status(&self) -> Result<Vec<(PeId, PeStatus)>, DriverGone> {
        self.handle.query(|c, _| c.status()).await
    }

    /// Wait until every entry is registered; a rejection is an error.
    pub async fn registered(&self) -> Result<(), RegisterError> {
        let mut rx = self.subscribe();
        loop {
            let status = self.status().await?;
            if status.iter().all(|(_, s)| *s == PeStatus::Registered) {
                return Ok(());
            }
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                () = self.handle.stopped() => return Err(DriverGone.into()),
            };
            match ev {
                Ok(PeEvent::RegistrationFailed { pe_id, cause, .. }) => {
                    return Err(RegisterError::Rejected { pe_id, cause })
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(DriverGone.into()),
            }
        }
    }

    /// Register with new policy values (re-registers now).
    pub fn set_policy(&self, policy: Policy) -> Result<(), DriverGone> {
        if let Ok(mut p) = self.policy.lock() {
            *p = policy.clone();
        }
        self.handle.command(PeCommand::UpdatePolicy(policy))
    }

    /// Report a new load (for the least-used family of policies; ignored by others).
    pub fn set_load(&self, load: u32) -> Result<(), DriverGone> {
        let policy = {
            let Ok(mut p) = self.policy.lock() else {
                return Ok(());
            };
            if !p.set_load(load) {
                return Ok(());
            }
            p.clone()
        };
        self.handle.command(PeCommand::UpdatePolicy(policy))
    }

    /// Deregister every entry and stop; returns when the registrar answered (or the
    /// shutdown grace period ended).
    pub async fn deregister(&self) {
        self.handle.shutdown();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The driver handle, for direct access to the core.
    pub fn driver(&self) -> &DriverHandle<PoolElementCore> {
        &self.handle
    }
}

/// The ASAP control listener: 0.0.0.0 on a port the kernel picks, then [::] on the same
/// port when that is free (best effort). None when IPv4 cannot be bound (logged).
fn bind_control(config: &TransportConfig) -> Vec<tcp::TcpMessageListener> {
    let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    let first = match tcp::bind_shared(v4, Protocol::Asap, false, config) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "cannot open the ASAP control listener ({e}); a registrar taking this PE \
                 over cannot reach it"
            );
            return Vec::new();
        }
    };
    let port = first
        .local_endpoint()
        .ok()
        .and_then(|e| e.addrs.first().map(|a| a.port()));
    let mut out = vec![first];
    if let Some(port) = port {
        let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        match tcp::bind_shared(v6, Protocol::Asap, false, config) {
            Ok(l) => out.push(l),
            Err(e) => tracing::debug!(port, "no IPv6 ASAP control listener: {e}"),
        }
    }
    out
}

/// The ASAP control listener over TLS (the PE's certificate): 0.0.0.0 on a port the
/// kernel picks, then [::] on the same port when free. Empty when IPv4 cannot be bound.
fn bind_tls_control(
    config: &TransportConfig,
    tls: &crate::transport::tls::TlsSettings,
) -> Vec<crate::transport::tls::TlsMessageListener> {
    use crate::transport::tls;
    let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    let first = match tls::bind_shared(v4, Protocol::Asap, config, tls) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "cannot open the TLS ASAP control listener ({e}); a registrar taking this \
                 PE over cannot reach it"
            );
            return Vec::new();
        }
    };
    let port = first
        .local_endpoint()
        .ok()
        .and_then(|e| e.addrs.first().map(|a| a.port()));
    let mut out = vec![first];
    if let Some(port) = port {
        let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        match tls::bind_shared(v6, Protocol::Asap, config, tls) {
            Ok(l) => out.push(l),
            Err(e) => tracing::debug!(port, "no IPv6 TLS ASAP control listener: {e}"),
        }
    }
    out
}

/// The SCTP ASAP control listener: every address ([::], dual-stack) on a port the kernel
/// picks; registrar associations are then opened from that port. None without kernel SCTP.
#[cfg(target_os = "linux")]
fn bind_sctp_control(
    config: &TransportConfig,
) -> Option<crate::transport::sctp::SctpMessageListener> {
    let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    match crate::transport::sctp::bind_shared(&[any], Protocol::Asap, config) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!("no SCTP ASAP control listener: {e}");
            None
        }
    }
}

/// The specific addresses of the user transports, each once.
fn registered_ips(transports: &[UserTransport]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for t in transports.iter().filter_map(UserTransport::as_ip) {
        for a in &t.addrs {
            if !a.is_unspecified() && !out.contains(a) {
                out.push(*a);
            }
        }
    }
    out
}

fn log_event(ev: &PeEvent) {
    match ev {
        PeEvent::Registered { pe_id, home, conn } => match home {
            Some(h) => tracing::info!(%pe_id, home = %h, %conn, "registered"),
            None => tracing::info!(%pe_id, %conn, "registered"),
        },
        PeEvent::RegistrationFailed { pe_id, cause, .. } => {
            tracing::warn!(%pe_id, %cause, "registration rejected")
        }
        PeEvent::RegistrationRefused { pe_id, cause, .. } => {
            tracing::warn!(%pe_id, %cause, "registration refused for now; retrying later")
        }
        PeEvent::RegistrationLost { pe_id } => {
            tracing::warn!(%pe_id, "registrar dropped the registration; re-registering")
        }
        PeEvent::HomeChanged { server_id, conn } => {
            tracing::info!(home = %server_id, %conn, "new home registrar")
        }
        PeEvent::Deregistered { pe_id, confirmed } => {
            tracing::info!(%pe_id, confirmed, "deregistered")
        }
        PeEvent::NoRegistrar { .. } => tracing::warn!("no registrar reachable; retrying"),
        PeEvent::ErrorReceived { conn, error } => {
            tracing::warn!(%conn, %error, "ASAP_ERROR from registrar")
        }
    }
}
