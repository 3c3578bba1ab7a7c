//! The registrar's configuration ([`RegistrarConfig`]) and its defaults.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rserpool_wire::{LifetimeUnit, ServerId, TransportAddr};

use crate::conn_limits::ConnLimits;
use crate::handlespace::HandlespaceConfig;

use super::*;

/// RSPLIB's ASAP announce group (design §8).
pub const DEFAULT_ANNOUNCE_GROUP: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(239, 0, 0, 50)), 3863);

/// Configuration of a [`Registrar`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Own server ID; `None` = random non-zero from the core's RNG.
    pub server_id: Option<ServerId>,
    /// Handlespace limits and selection options.
    pub handlespace: HandlespaceConfig,
    /// Unit of the Registration Life field (design §8). Default milliseconds.
    pub lifetime_unit: LifetimeUnit,
    /// Keep-alive period towards own PEs; `None` disables keep-alives. Default 3 s.
    pub keepalive_interval: Option<Duration>,
    /// Wait this long for a KEEP_ALIVE_ACK before removing the PE. Default 2 s.
    pub keepalive_timeout: Duration,
    /// Each keep-alive period is shortened by a random 0…this % (spreads probes). Default 25.
    pub keepalive_jitter_percent: u8,
    /// Keep-alive batching: each PE's next keep-alive is moved *earlier* onto its
    /// connection's grid of this period (a per-connection phase), so the keep-alives of
    /// one connection leave in one wake-up and one write, and their ACKs come back in one
    /// read, while the connections' bursts stay spread over the period. Never later than
    /// unbatched, so a silent PE is still removed within `keepalive_interval` +
    /// `keepalive_timeout` of its last sign of life. Zero = off (each PE on its own
    /// deadline). Ignored when it is not shorter than the jittered period.
    /// Default [`DEFAULT_KEEPALIVE_BATCH`] (see `docs/liveness.md`).
    pub keepalive_batch: Duration,
    /// Without `probe_on_unreachable`: remove a PE when this many connections reported it
    /// unreachable (each having resolved its pool). Unused while probing. Default 3.
    pub max_bad_pe_reports: u32,
    /// A counted unreachability report probes the PE with a keep-alive; only a failed
    /// probe removes it (RFC 5352 §3.5 without its counter, RFC 5355 threat 2.13).
    /// Default true.
    pub probe_on_unreachable: bool,
    /// PEs per handle resolution when the request names no count. Default 3 (RSPLIB).
    pub default_hr_items: u32,
    /// Most PEs per handle resolution. Default 128 (RSPLIB).
    pub max_hr_items: u32,
    /// Put each PE's ASAP transport into handle resolution responses. Default true.
    pub hr_include_asap_transport: bool,
    /// Send ASAP_SERVER_ANNOUNCE to this multicast group; `None` = no announces (default).
    /// RSPLIB's group is [`DEFAULT_ANNOUNCE_GROUP`].
    pub announce_group: Option<SocketAddr>,
    /// Announce period, randomised by ±12.5 % (RSPLIB). Default 1 s (T6).
    pub announce_interval: Duration,
    /// Our ASAP listening transports, listed in the announces. With SCTP and TCP ones, two
    /// announces go out: SCTP TLVs only (for RSPLIB, which cannot parse a TCP TLV), then
    /// SCTP followed by TCP TLVs (RSPLIB drops it; our PEs and PUs read both).
    pub asap_transports: Vec<TransportAddr>,
    /// Remove a connection's PEs when it closes (RSPLIB). Default false.
    pub remove_pes_on_close: bool,
    /// Limits on accepted connections: idle timeout, per-source cap, eviction
    /// ([`crate::conn_limits`]).
    pub connections: ConnLimits,
    /// Who may register a PE identifier registered over another live connection.
    /// Default [`PeIdMove::WhenGone`].
    pub pe_id_move: PeIdMove,
    /// Longest Registration Life accepted (longer: refused with 0x3); `None` = no limit.
    /// Default 1 hour.
    pub max_registration_life: Option<Duration>,
    /// Lowest scope of a user transport address (below: refused with 0x3). Default
    /// loopback (everything; loopback addresses only over a loopback connection).
    pub min_address_scope: AddressScope,
    /// Most PEs registered over one connection; 0 = unlimited. Default 1000.
    pub max_pes_per_connection: usize,
    /// Most PEs registered from one source (IPv4 address or IPv6 /64), over all its
    /// connections; 0 = unlimited. Default 10000.
    pub max_pes_per_source: usize,
    /// Most PEs registered by one TLS identity (the first name of its certificate), over
    /// all its connections and sources and as long as the PEs live; 0 = unlimited.
    /// Default 10000.
    pub max_pes_per_identity: usize,
    /// Registrations (re-registrations included) accepted per second over one
    /// connection, a burst of one second's worth; over it refused with 0x6. 0 =
    /// unlimited. Default 1000.
    pub max_registration_rate: u32,
    /// Registrations accepted per second from one TLS identity, over all its
    /// connections; over it refused with 0x6. 0 = unlimited. Default 10000.
    pub max_registration_rate_per_identity: u32,
    /// Handle resolutions accepted per second from one source (IPv4 address or IPv6
    /// /64); over the limit a PU is answered Unknown Pool Handle (0x9), as RSPLIB's
    /// `-maxhrrate`. 0 = unlimited (default, as RSPLIB).
    pub max_hr_rate: u32,
    /// Unreachability reports heard per second from one source; more are ignored, as
    /// RSPLIB's `-maxeurate`. 0 = unlimited (default, as RSPLIB).
    pub max_eu_rate: u32,
    /// Reach PEs' ASAP control endpoints (a takeover's keep-alive, later keep-alives and
    /// re-registrations over the connection it opens) with TLS instead of TCP; the
    /// shell's TLS settings check the PE's certificate. Default false.
    pub pe_control_tls: bool,
    /// Who may register, resolve and peer; secure mode ([`AccessPolicy`]). Default: no
    /// rules, plaintext allowed.
    pub access: AccessPolicy,
    /// Handle resolution subscriptions (S = 1 → A = 1 and pushes): most pools one
    /// connection may subscribe to; over it A = 0. 0 = no subscriptions. Default 256.
    pub max_subscriptions_per_connection: usize,
    /// Most subscriptions in all (over it A = 0). Default 100,000.
    pub max_subscriptions: usize,
    /// A subscribed pool is pushed at most once per this interval: the first change after
    /// a quiet interval at once, later ones together at its end. Default 1 s.
    pub subscription_interval: Duration,
    /// ENRP: peers, presence, timers, takeover ([`EnrpConfig`]).
    pub enrp: EnrpConfig,
    /// Answer plain handle resolutions of small round-robin and random pools from copies,
    /// outside the core's lock ([`super::fast`]). Default true.
    pub fast_resolutions: bool,
}

/// Default of [`RegistrarConfig::max_registration_life`].
pub const DEFAULT_MAX_REGISTRATION_LIFE: Duration = Duration::from_secs(3600);
/// Default of [`RegistrarConfig::keepalive_batch`].
pub const DEFAULT_KEEPALIVE_BATCH: Duration = Duration::from_millis(500);
/// Default of [`RegistrarConfig::max_pes_per_connection`].
pub const DEFAULT_MAX_PES_PER_CONNECTION: usize = 1000;
/// Default of [`RegistrarConfig::max_pes_per_source`].
pub const DEFAULT_MAX_PES_PER_SOURCE: usize = 10_000;
/// Default of [`RegistrarConfig::max_pes_per_identity`].
pub const DEFAULT_MAX_PES_PER_IDENTITY: usize = 10_000;
/// Default of [`RegistrarConfig::max_registration_rate`].
pub const DEFAULT_MAX_REGISTRATION_RATE: u32 = 1000;
/// Default of [`RegistrarConfig::max_registration_rate_per_identity`].
pub const DEFAULT_MAX_REGISTRATION_RATE_PER_IDENTITY: u32 = 10_000;

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            server_id: None,
            handlespace: HandlespaceConfig::default(),
            lifetime_unit: LifetimeUnit::Milliseconds,
            keepalive_interval: Some(Duration::from_secs(3)),
            keepalive_timeout: Duration::from_secs(2),
            keepalive_jitter_percent: 25,
            keepalive_batch: DEFAULT_KEEPALIVE_BATCH,
            max_bad_pe_reports: 3,
            probe_on_unreachable: true,
            default_hr_items: 3,
            max_hr_items: 128,
            hr_include_asap_transport: true,
            announce_group: None,
            announce_interval: Duration::from_secs(1),
            asap_transports: Vec::new(),
            remove_pes_on_close: false,
            connections: ConnLimits::default(),
            pe_id_move: PeIdMove::WhenGone,
            max_registration_life: Some(DEFAULT_MAX_REGISTRATION_LIFE),
            min_address_scope: AddressScope::Loopback,
            max_pes_per_connection: DEFAULT_MAX_PES_PER_CONNECTION,
            max_pes_per_source: DEFAULT_MAX_PES_PER_SOURCE,
            max_pes_per_identity: DEFAULT_MAX_PES_PER_IDENTITY,
            max_registration_rate: DEFAULT_MAX_REGISTRATION_RATE,
            max_registration_rate_per_identity: DEFAULT_MAX_REGISTRATION_RATE_PER_IDENTITY,
            max_hr_rate: 0,
            max_eu_rate: 0,
            pe_control_tls: false,
            access: AccessPolicy::default(),
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            subscription_interval: DEFAULT_SUBSCRIPTION_INTERVAL,
            enrp: EnrpConfig::default(),
            fast_resolutions: true,
        }
    }
}
