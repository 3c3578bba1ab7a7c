//! ENRP settings and the peer view the registrar exposes (for `rsp dump`, metrics and
//! readiness). Defaults are RSPLIB's where they differ from RFC 5353's (procedures §3):
//! the RFC's PEER-HEARTBEAT-CYCLE of 30 s and MAX-TIME-LAST-HEARD of 61 s would take a
//! minute to notice a dead registrar.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_wire::{ServerId, TransportAddr};

use crate::io::Endpoint;

/// RSPLIB's ENRP presence multicast group (never required).
pub const DEFAULT_PRESENCE_GROUP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 51)), 9901);

/// The ENRP port (SCTP, RSPLIB; and ours over TCP).
pub const ENRP_PORT: u16 = 9901;

/// Which registrar wins when two try to take over the same dead peer (procedures §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TakeoverElection {
    /// RSPLIB: the lowest server ID wins (default, so mixed pools with RSPLIB converge).
    #[default]
    Lowest,
    /// RFC 5353 §3.5: the highest server ID wins.
    Highest,
}

impl TakeoverElection {
    pub fn name(self) -> &'static str {
        match self {
            TakeoverElection::Lowest => "lowest",
            TakeoverElection::Highest => "highest",
        }
    }

    /// Whether this election prefers registrar `a` to registrar `b` (`a` wins).
    pub fn prefers(self, a: ServerId, b: ServerId) -> bool {
        match self {
            TakeoverElection::Lowest => a < b,
            TakeoverElection::Highest => a > b,
        }
    }
}

/// ENRP part of [`super::super::RegistrarConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpConfig {
    /// Static peers (`--peer tcp://…`, `--peer sctp://…`).
    pub peers: Vec<Endpoint>,
    /// Send ENRP_PRESENCE to this multicast group every heartbeat cycle (and learn peers
    /// from the presences received there); `None` = off (default).
    pub presence_group: Option<SocketAddr>,
    /// Our ENRP listening transports (real ports, filled in by the shell): what our
    /// Server Information parameter names.
    pub own_transports: Vec<TransportAddr>,
    /// PEER-HEARTBEAT-CYCLE: presence to every peer, randomised by ±12.5 %. Default
    /// 2444 ms (RSPLIB; RFC 30 s).
    pub heartbeat_cycle: Duration,
    /// MAX-TIME-LAST-HEARD: silence before a peer is probed. Default 5 s (RSPLIB; RFC 61 s).
    pub max_time_last_heard: Duration,
    /// MAX-TIME-NO-RESPONSE: wait for a probe's answer (and a mentor's). Default 5 s.
    pub max_time_no_response: Duration,
    /// Wait this long for every INIT_TAKEOVER_ACK, then abandon. Default 5 s (RSPLIB).
    pub takeover_expiry: Duration,
    /// Start-up phase listening for a mentor before serving alone. Default 5 s (RSPLIB).
    pub mentor_discovery_timeout: Duration,
    /// Most PEs per HANDLE_TABLE_RESPONSE. Default 128 (RSPLIB).
    pub max_pes_per_response: usize,
    /// Drop a download session whose next request does not come within this. Default 5 s.
    pub download_session_timeout: Duration,
    /// Election rule for concurrent takeovers. Default [`TakeoverElection::Lowest`].
    pub takeover_election: TakeoverElection,
    /// Send and honour takeover suggestions (T flag on ADD_PE). Default false (RSPLIB).
    pub takeover_suggestion: bool,
    /// Accept ENRP from servers that are neither static peers nor listed by one (RFC 5353
    /// §2.4 adds any sender to the peer list). Default true.
    pub accept_unlisted_peers: bool,
    /// In handle updates and handle tables sent over SCTP peer associations, rewrite a
    /// PE's TCP ASAP transport TLV (type 0x5) into an SCTP one (type 0x4) with the same
    /// address and port. Default true: RSPLIB's PE parameter parser reads SCTP, TCP and
    /// UDP transport TLVs in that position, but its handlespace refuses a PE whose ASAP
    /// transport is not SCTP (`RSPERR_INVALID_REGISTRATOR`), so a TCP PE would be missing
    /// at an RSPLIB peer; RSPLIB speaks ENRP only over SCTP, our registrars peer over TCP
    /// by default. Turn it off when every SCTP peer is ours.
    pub rewrite_tcp_asap_for_sctp_peers: bool,
}

impl Default for EnrpConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            presence_group: None,
            own_transports: Vec::new(),
            heartbeat_cycle: Duration::from_millis(2444),
            max_time_last_heard: Duration::from_secs(5),
            max_time_no_response: Duration::from_secs(5),
            takeover_expiry: Duration::from_secs(5),
            mentor_discovery_timeout: Duration::from_secs(5),
            max_pes_per_response: 128,
            download_session_timeout: Duration::from_secs(5),
            takeover_election: TakeoverElection::Lowest,
            takeover_suggestion: false,
            accept_unlisted_peers: true,
            rewrite_tcp_asap_for_sctp_peers: true,
        }
    }
}

/// Where the registrar is in its ENRP life (procedures §2.2). ASAP is served in every
/// phase; `Serving` is what readiness means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnrpPhase {
    /// Listening for a mentor (start-up phase).
    Discovering,
    /// Downloading the handlespace from a mentor.
    Synchronizing,
    /// Initial synchronisation done (or nobody to sync with).
    Serving,
}

impl EnrpPhase {
    pub fn name(self) -> &'static str {
        match self {
            EnrpPhase::Discovering => "discovering",
            EnrpPhase::Synchronizing => "synchronizing",
            EnrpPhase::Serving => "serving",
        }
    }
}

/// A peer's state as the registrar sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Configured, not heard from yet (server ID unknown).
    Unidentified,
    /// Heard within MAX-TIME-LAST-HEARD.
    Active,
    /// Silent: probed with a presence (R = 1), waiting for the answer.
    Probing,
    /// Found dead; a takeover of its PEs is under way (by us or another registrar).
    TakingOver,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Unidentified => "unidentified",
            PeerState::Active => "active",
            PeerState::Probing => "probing",
            PeerState::TakingOver => "taking-over",
        }
    }
}

/// One peer registrar, as data (for `rsp dump`, metrics and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// `ServerId(0)` while unidentified.
    pub server_id: ServerId,
    /// Where we reach it (static peer, or its Server Information).
    pub endpoint: Option<Endpoint>,
    pub state: PeerState,
    /// Last message from it.
    pub last_heard: Option<Instant>,
    /// Our checksum over the PEs whose home it is (folded to 16 bits).
    pub checksum_expected: u16,
    /// The checksum its last presence reported.
    pub checksum_reported: Option<u16>,
    /// PEs whose home it is, in our copy.
    pub owned_pes: usize,
    /// It was our mentor (start-up download source).
    pub mentor: bool,
}
