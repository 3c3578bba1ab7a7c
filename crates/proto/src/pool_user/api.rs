//! What the pool user core takes and gives: its configuration, commands, events and
//! errors, and `endpoint_of` (a PE's user transport as an endpoint).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_wire::{
    OperationError, PeId, PoolElement, PoolHandle, ServerId, TransportKind, UserTransport,
};

use crate::hunt::HuntConfig;
use crate::io::{ConnId, Endpoint};

/// Configuration of a [`PoolUserCore`](super::PoolUserCore).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUserConfig {
    /// Registrars to hunt through, in configuration order.
    pub registrars: Vec<Endpoint>,
    /// Learn registrars from ASAP_SERVER_ANNOUNCE datagrams. Default true.
    pub accept_announces: bool,
    /// Server hunt knobs.
    pub hunt: HuntConfig,
    /// T1-ENRPrequest: wait this long for a handle resolution response once connected.
    /// RFC 15 s, RSPLIB 3 s. Default 3 s.
    pub request_timeout: Duration,
    /// MAX-REQUEST-RETRANSMIT: after a T1 expiry the request is sent again (to another
    /// registrar) at most this often. Default 2 (RFC).
    pub max_request_retries: u32,
    /// How long a handle resolution answer stays fresh (and a failed PE stays excluded).
    /// The RFC gives no value; RSPLIB takes it from the caller. Default 5 s.
    pub stale_cache_value: Duration,
    /// Items to ask for in the Handle Resolution option; `None` = no option, the registrar's
    /// default (3 for RSPLIB and us). `Some(u32::MAX)` = as many as possible.
    pub hr_items: Option<u32>,
    /// With announces accepted: how long a request that found no registrar waits for one
    /// to be announced (or to come up) before failing with [`PuError::NoRegistrar`].
    /// Default 5 s (the hunt's T5 connect timeout; registrars announce every second).
    pub registrar_wait: Duration,
    /// Ask for push updates (S = 1) in handle resolutions; see the module docs. Default
    /// true.
    pub subscribe: bool,
}

impl Default for PoolUserConfig {
    fn default() -> Self {
        Self {
            registrars: Vec::new(),
            accept_announces: true,
            hunt: HuntConfig::default(),
            request_timeout: Duration::from_secs(3),
            max_request_retries: 2,
            stale_cache_value: Duration::from_secs(5),
            hr_items: None,
            registrar_wait: HuntConfig::default().connect_timeout,
            subscribe: true,
        }
    }
}

/// Identifies one request of the application; echoed in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Requests from the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PuCommand {
    /// A PE of `pool` by the pool's policy (from the cache, or after a handle resolution).
    GetPrimaryServer {
        request: RequestId,
        pool: PoolHandle,
    },
    /// The PE handed out last for `pool` failed: report it, drop it from the cache, and
    /// answer with another PE (like `GetPrimaryServer` otherwise).
    GetNextServer {
        request: RequestId,
        pool: PoolHandle,
    },
    /// Transport.Failure: the application saw `pe_id` fail after sending it data. Reported
    /// and dropped from the cache like in `GetNextServer`; no answer event.
    ReportFailure { pool: PoolHandle, pe_id: PeId },
}

/// Why a request could not be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PuError {
    /// The registrar does not know the pool (negative response, cause 0x9 or any other).
    #[error("unknown pool handle")]
    UnknownPool,
    /// No registrar could be reached.
    #[error("no registrar reachable")]
    NoRegistrar,
    /// The registrars did not answer in time (T1, after all retries).
    #[error("handle resolution timed out")]
    Timeout,
    /// The pool exists but every PE the PU knows of has failed recently.
    #[error("no usable pool element")]
    NoServer,
}

/// What happened, for the application and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PuEvent {
    /// Answer to a request: use this PE (see [`endpoint_of`] for its address).
    Server {
        request: RequestId,
        pool: PoolHandle,
        pe: PoolElement,
    },
    /// A request failed.
    Failed {
        request: RequestId,
        pool: PoolHandle,
        error: PuError,
    },
    /// A (new) home registrar answered on `conn`.
    HomeChanged {
        conn: ConnId,
        server_id: Option<ServerId>,
    },
    /// Every known registrar failed; the next hunt round may start at `retry_at`.
    NoRegistrar { retry_at: Instant },
    /// An ASAP_ERROR arrived.
    ErrorReceived { conn: ConnId, error: OperationError },
    /// A subscribed pool's entry was replaced by a pushed response; `pes` cached now
    /// (0: the pool is gone, the subscription ended).
    Pushed { pool: PoolHandle, pes: usize },
}

/// The endpoint to reach a PE's user transport: SCTP with all its addresses, TCP with its
/// one address. `None` for UDP, UDP-Lite, DCCP and opaque transports (no connection).
pub fn endpoint_of(pe: &PoolElement) -> Option<Endpoint> {
    let UserTransport::Ip(t) = &pe.user_transport else {
        return None;
    };
    match t.kind {
        TransportKind::Sctp if !t.addrs.is_empty() => Some(Endpoint::sctp(
            t.addrs
                .iter()
                .map(|a| SocketAddr::new(*a, t.port))
                .collect(),
        )),
        TransportKind::Tcp => t
            .addrs
            .first()
            .map(|a| Endpoint::tcp(SocketAddr::new(*a, t.port))),
        _ => None,
    }
}
