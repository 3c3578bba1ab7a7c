//! Registrar core, ASAP side (procedures §1.2–§1.6, §1.9) and ENRP side (§2, in
//! `registrar/enrp/`), sans-IO.
//!
//! Serves registration, re-registration, de-registration and handle resolution from PEs
//! and PUs on any connection (TCP or SCTP), keeps its own PEs alive with
//! ASAP_ENDPOINT_KEEP_ALIVE, expires registrations whose Registration Life ran out,
//! counts unreachability reports, and announces itself by multicast when configured.
//!
//! Every handlespace change leaves the core as a [`RegistrarEvent`] (`PeAdded`,
//! `PeUpdated`, `PeRemoved` with the full PE) so ENRP can replicate it to peers. Every
//! PE carries its home registrar's server ID ([`Registrar::server_id`]); timers and
//! keep-alives only act as owner for PEs whose home is this registrar.
//!
//! The core is idle until its first input; call `handle_timeout(now)` once after
//! [`Registrar::new`] so the server announces start.
//!
//! Choices where the RFC leaves room or RSPLIB differs (see also the crate docs):
//!
//! * The PE's ASAP transport is the registering connection's peer: an SCTP transport TLV
//!   (type 0x4) with its port and addresses for SCTP, a TCP transport TLV (type 0x5) for
//!   TCP and MPTCP (our PEs connect from the port of their ASAP control listener, so that
//!   is where a takeover winner reaches them). RSPLIB's PE parameter parser reads SCTP,
//!   TCP and UDP TLVs there but its handlespace keeps only PEs with an SCTP one, so
//!   `EnrpConfig::rewrite_tcp_asap_for_sctp_peers` (default on) rewrites TCP into SCTP
//!   towards SCTP peers. A registration from the PE's
//!   own ASAP transport (same address and port) over another connection is the same PE
//!   process (e.g. over the connection a takeover opened to it), not an identifier
//!   hijack.
//! * ENRP (RFC 5353) lives in `registrar/enrp/`: its module docs list every choice where the RFC
//!   and RSPLIB differ. Every change of an owned PE is replicated to the peers (ADD_PE /
//!   DEL_PE); PEs owned elsewhere expire by their Registration Life unless refreshed.
//! * A registration carrying an ASAP transport TLV is refused with 0x3 (Discrepancy #28);
//!   so is a PE ID 0, a Registration Life of 0, and what the handlespace refuses (handle
//!   length, policy and transport consistency 0x5/0x7/0x8, limits 0x6). Every refusal
//!   leaves as [`RegistrarEvent::RegistrationRejected`] with a [`Refusal`] saying why, and
//!   bumps a [`GuardCounters`](crate::counters::GuardCounters) counter when a protection
//!   below acted.
//!
//! Protections against valid messages used as attacks (no TLS assumed; RFC 5355):
//!
//! * Unusable user transports are refused with 0x3 quoting the transport TLV: port 0;
//!   an unspecified (0.0.0.0/8, ::), broadcast (255.255.255.255), multicast (224/4,
//!   ff00::/8) or reserved (240/4) address (an IPv4-mapped IPv6 address counts as its IPv4
//!   address); an SCTP or TCP Transport Use other than 0 or 1; an address whose
//!   [`AddressScope`] is below `min_address_scope` (default loopback, i.e. any; RSPLIB's
//!   `-minaddressscope` defaults to site-local and drops such addresses rather than
//!   refusing); a loopback address over a connection that does not come from loopback.
//!   One such address refuses a multi-homed SCTP transport whole (RSPLIB drops it and
//!   keeps the rest). A Registration Life above `max_registration_life` (default 1 h; infinite counts as
//!   above) is refused with 0x3 quoting the Pool Element TLV, like 0.
//! * PE identifier reuse ([`PeIdMove`], default `WhenGone`): a registration naming an
//!   owned PE registered over *another live* connection is not applied at once. If the PE
//!   failed a keep-alive (one outstanding past `keepalive_timeout`) it moves; otherwise
//!   the holder is probed with a keep-alive (or the outstanding one decides) and the
//!   answer waits: an ACK (or a re-registration over the holder's connection) refuses it
//!   with 0xa; a failed probe, the holder's connection closing or the PE leaving grants
//!   it. So a PE whose old connection died silently re-registers within one keep-alive
//!   timeout, and one whose old connection closed at once. At most one waiting
//!   registration per PE (others are refused with 0xa), 16 per connection, and at most
//!   one such probe per PE per keep-alive timeout (a PE that answered one that recently
//!   is not probed again: 0xa at once). `Always` is the old behaviour (RSPLIB).
//! * Quotas, refused with 0x6: `max_pes_per_connection` (default 1000) PEs registered over
//!   one connection, `max_pes_per_source` (default 10000) owned PEs whose registering
//!   connection came from one source (an IPv4 address or an IPv6 /64, over all its
//!   connections and as long as the PEs live), the handlespace's `max_pes_per_pool` and
//!   `max_pes`. 0 = unlimited for the first two. Counts are kept incrementally; a
//!   re-registration over the same connection / from the same source does not count
//!   again. With TLS, `max_pes_per_identity` (default 10000) owned PEs registered by one
//!   certificate identity (its first name), over all connections and sources.
//! * Registration rates, refused with 0x6: `max_registration_rate` (default 1000 per
//!   second, a burst of one second's worth) registrations per connection and
//!   `max_registration_rate_per_identity` (default 10000) per TLS identity, re-registrations
//!   included. Answered rather than dropped: a PE whose message is dropped retransmits
//!   after its registration timeout, so a drop adds traffic; the answer is the same size
//!   as an acceptance (no amplification) and the PE retries at its own pace.
//! * Keep-alive: after each (re-)registration or ACK wait `keepalive_interval` (reduced by
//!   a random 0…`keepalive_jitter_percent` % to spread probes), send a keep-alive with
//!   H = 0 and RSPLIB's PE Identifier, wait `keepalive_timeout` for the ACK, else remove.
//!   Defaults 3 s + 2 s: a silent PE is gone ≤ 5 s after its last sign of life (RSPLIB
//!   5 s + 5 s). A re-registration is a sign of life: it restarts the period, so a PE
//!   that re-registers more often than the period is never probed. A PE new to the
//!   registrar has its first period cut by a second jitter, so a registration storm's
//!   PEs are first probed spread over twice the jitter instead of together. Batching
//!   (`keepalive_batch`, default 500 ms): the next keep-alive moves *earlier* onto the
//!   grid of its registration connection (phase from the connection ID), so a
//!   connection's keep-alives leave in one wake-up (one write) and its ACKs come back
//!   together, while different connections' bursts stay spread; never later, so the
//!   bound holds (docs/liveness.md).
//! * Unreachable reports (RFC 5355 threat 2.13): a report is heard only from a connection
//!   that resolved the PE's pool (and got PEs; the last 32 pools per connection are
//!   remembered); others are ignored and counted. A heard report counts once per
//!   connection until the PE next answers a keep-alive (16 connections at most, or
//!   `max_bad_pe_reports`). With `probe_on_unreachable` (default) a heard report probes an
//!   owned PE with a keep-alive (RFC 5352 §3.5) unless one is under way (it decides) or the
//!   PE answered such a probe less than `keepalive_timeout` ago, so reports cost a PE at
//!   most one extra keep-alive per keep-alive timeout (threat 2.9). A PE that answers
//!   stays whatever the number of reports (the RFC's MAX-BAD-PE-REPORT removal is not
//!   applied: forged reports could empty a pool); no ACK, a failed send or a vanished
//!   connection removes it ([`RemovalReason::Unreachable`]). Without probing
//!   (RSPLIB) the PE is removed when `max_bad_pe_reports` connections reported it (RSPLIB
//!   "≥ 3"; the RFC says "exceeds"), and that count is never reset while the entry lives.
//!   `Bookkeeping::unreachable_reports` counts the reports that counted.
//! * The protections' state is bounded: per connection the last 32 resolved pools and 16
//!   waiting registrations (dropped when it closes); per PE up to 16 (or
//!   `max_bad_pe_reports`) reporters, the last extra probe and one waiting registration
//!   (dropped when the PE answers with nothing left to remember, or leaves); per source
//!   one counter.
//! * A closed connection does not remove its PEs (unless `remove_pes_on_close`, RSPLIB's
//!   behaviour): keep-alive and lifetime take care of them, so a PE may reconnect and
//!   re-register.
//! * De-registration of an unknown PE is answered with success; de-registration of a PE
//!   that is registered over another live connection is refused with 0xa (no
//!   de-registration by proxy).
//! * Handle resolution: `default_hr_items` PEs without the HR option or with 0, at most
//!   `max_hr_items` (0xFFFFFFFF = that cap). The overall policy TLV is always included,
//!   copied from the first selected PE (RSPLIB). PEs carry their ASAP transport unless
//!   `hr_include_asap_transport` is off (RSPLIB omits it); a PU uses it to recognise the
//!   entries of one PE process.
//! * Subscriptions (S = 1 → A = 1, `registrar/subs.rs`): a subscribed connection gets a
//!   fresh response pushed when the pool changes, at most once per
//!   `subscription_interval` per pool, within `max_subscriptions_per_connection` and
//!   `max_subscriptions` (over them: A = 0). Registrar-local; RSPLIB never sets A.
//! * Unexpected messages (responses, keep-alives, cookies, business cards) are answered
//!   with ASAP_ERROR cause 0x2 carrying the message; an ASAP_ERROR is never answered.
//! * Accepted connections are limited by [`crate::conn_limits`] (`connections`): idle
//!   ones without PEs are closed, one source gets a bounded share, and a full table makes
//!   room for a newcomer instead of locking it out; connections with PEs are never closed
//!   by these rules. Its closes leave through [`Core::poll_command`], its summaries as
//!   [`RegistrarEvent::ConnectionLimits`].
//! * A handle refused for its length (over `max_handle_len`) is quoted in cause 0x3 by its
//!   first `max_handle_len + 1` bytes (enough to show it is too long; the response echoes
//!   the whole handle anyway). Every reply fits its 16-bit length: the codec cuts quoted
//!   cause information, and a response that cannot fit even so (a handle too long to echo
//!   beside the rest, e.g. 65,520 bytes in a negative handle resolution response) is
//!   replaced by an ASAP_ERROR with cause 0x3 quoting the handle that way.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{
    AsapMessage, Cause, CauseCode, OperationError, PeId, PoolElement, PoolHandle, Protocol,
    ServerId, TransportAddr, TransportKind, TransportUse, UserTransport,
};

use rserpool_wire::codec;

use crate::common::{decode_inbound, later, random_nonzero, Inbound, Outbox, Received};
use crate::conn_limits::{ConnTable, LimitReport};
use crate::counters::Counters;
use crate::handlespace::{Bookkeeping, Handlespace, RegisterOutcome, TimerKind};
use crate::io::{
    earliest, ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
    TransportProto,
};
use crate::timers::Timers;

mod access;
mod asap;
mod config;
mod enrp;
mod fast;
mod guard;
mod liveness;
mod rates;
mod snapshot;
mod subs;
mod view;

pub use access::{handle_matches, AccessPolicy, AccessRule};
pub use enrp::{
    EnrpConfig, EnrpEvent, EnrpPhase, PeerInfo, PeerState, TakeoverElection,
    DEFAULT_PRESENCE_GROUP, ENRP_PORT,
};
pub use fast::{FastConn, FastResolver, FAST_MAX_PES, MAX_NOTES};
pub use guard::{scope_of, AddressScope, PeIdMove, Refusal, ReportOutcome, SourceKey};
use guard::{ConnGuard, PeGuards, PendingMove, PENDING_MOVES_PER_CONN, REPORTERS_PER_PE};
pub use snapshot::{HandlespaceSnapshot, PoolSnapshot, SnapshotCursor};
pub use subs::{
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
    DEFAULT_SUBSCRIPTION_INTERVAL,
};

pub use config::*;

/// Admin requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrarCommand {
    /// Emit a [`RegistrarEvent::Snapshot`] of the handlespace.
    DumpHandlespace,
    /// Remove a PE as if it had been found dead.
    RemovePe { handle: PoolHandle, pe_id: PeId },
}

/// Why a PE left the handlespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalReason {
    /// ASAP_DEREGISTRATION.
    Deregistered,
    /// Registration Life ran out without re-registration.
    LifetimeExpired,
    /// No KEEP_ALIVE_ACK within the keep-alive timeout.
    KeepAliveTimeout,
    /// A keep-alive could not be sent (connection gone or send failed).
    KeepAliveFailed,
    /// Reported unreachable: the probe the reports triggered failed, or (without
    /// `probe_on_unreachable`) `max_bad_pe_reports` connections reported it.
    Unreachable,
    /// Its registration connection closed (`remove_pes_on_close`).
    ConnectionClosed,
    /// [`RegistrarCommand::RemovePe`].
    Admin,
    /// A peer registrar that owned it announced its removal (ENRP DEL_PE).
    PeerUpdate,
    /// Re-synchronisation with its home registrar: that registrar no longer lists it, or
    /// it was not refreshed within its Registration Life (RSPLIB) while owned elsewhere.
    Resync,
}

/// What happened. The `Pe*` events are the handlespace changes ENRP replicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A new PE (ENRP: ADD_PE). `pe` is complete: home ID and ASAP transport set.
    PeAdded { handle: PoolHandle, pe: PoolElement },
    /// A re-registration (ENRP: ADD_PE); `owner_changed` when it moved to this registrar.
    PeUpdated {
        handle: PoolHandle,
        pe: PoolElement,
        owner_changed: bool,
    },
    /// A PE left (ENRP: DEL_PE when this registrar owned it, `pe.home_registrar`).
    PeRemoved {
        handle: PoolHandle,
        pe: PoolElement,
        reason: RemovalReason,
    },
    /// A registration was refused with `cause`, for `reason`.
    RegistrationRejected {
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
        cause: CauseCode,
        reason: Refusal,
    },
    /// A registration names a PE registered over another live connection: the holder is
    /// probed, the answer waits for the outcome.
    RegistrationHeld {
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
        holder: ConnId,
    },
    /// An ASAP_ENDPOINT_UNREACHABLE arrived; `outcome` says what it caused.
    UnreachableReport {
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
        outcome: ReportOutcome,
    },
    /// An ASAP_ERROR arrived.
    ErrorReceived { conn: ConnId, error: OperationError },
    /// Answer to [`RegistrarCommand::DumpHandlespace`].
    Snapshot(HandlespaceSnapshot),
    /// The connection limits closed connections (at most one per second; see
    /// [`crate::conn_limits`]).
    ConnectionLimits(LimitReport),
    /// Something happened on the ENRP side (peers, synchronisation, takeover, audit).
    Enrp(EnrpEvent),
}

/// The registrar's own timers (ids in its [`Timers`] table; ENRP's join here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum RegistrarTimer {
    /// Next server announce (T6).
    Announce,
    /// Next ENRP presence to every peer (PEER-HEARTBEAT-CYCLE).
    Heartbeat,
    /// End of the start-up phase listening for a mentor.
    MentorDiscovery,
    /// A peer's last-heard timer (MAX-TIME-LAST-HEARD): probe it.
    LastHeard(ServerId),
    /// A probed peer's answer is due (MAX-TIME-NO-RESPONSE): it is dead.
    NoResponse(ServerId),
    /// Our outstanding HANDLE_TABLE_REQUEST (mentor download or re-synchronisation) to
    /// this peer is due (MAX-TIME-NO-RESPONSE).
    Request(ServerId),
    /// A takeover of this peer waits for its INIT_TAKEOVER_ACKs until then.
    TakeoverExpiry(ServerId),
    /// The download session of this requester ends unless it asks for more.
    Session(ServerId),
}

/// The registrar core. See the module documentation.
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    rng: ChaCha8Rng,
    server_id: ServerId,
    hs: Handlespace,
    conns: BTreeSet<ConnId>,
    /// PEs registered over each connection (owned PEs only).
    conn_pes: BTreeMap<ConnId, BTreeSet<(PoolHandle, PeId)>>,
    /// Owned PEs by source address (the first address of their ASAP transport).
    source_pes: BTreeMap<SourceKey, usize>,
    /// PEs registered by a TLS identity (its first name), and that count per identity.
    pe_identity: HashMap<(PoolHandle, PeId), Arc<str>>,
    identity_pes: HashMap<Arc<str>, usize>,
    /// Pools each connection resolved, registrations it has waiting (bounded).
    conn_guard: BTreeMap<ConnId, ConnGuard>,
    /// Per-source unreachability report rates (the resolution rates are in `fast`, shared
    /// with the readers).
    eu_rates: rates::SourceRates,
    /// Registration rates per connection and per TLS identity.
    reg_conn_rates: rates::Rates<ConnId>,
    reg_identity_rates: rates::Rates<Arc<str>>,
    /// Reports, probes and waiting registrations per PE.
    pe_guard: PeGuards,
    /// Waiting registrations whose PE identifier became free: answered at the end of the
    /// current input.
    freed: Vec<PendingMove>,
    started: bool,
    /// The first input's time: the origin of the keep-alive batching grid.
    epoch: Option<Instant>,
    /// The registrar's own timers ([`RegistrarTimer`]); the per-PE timers are in the
    /// handlespace's queue, the connection limits' in [`ConnTable`].
    timers: Timers<RegistrarTimer>,
    /// Accepted connections and their limits.
    limits: ConnTable,
    counters: Counters,
    out: Outbox,
    events: VecDeque<RegistrarEvent>,
    /// Connections this registrar opened (peers, adopted PEs), with their endpoint.
    opened: BTreeMap<ConnId, Endpoint>,
    /// The ENRP side's state ([`enrp`]).
    enrp: enrp::EnrpState,
    /// Handle resolution subscriptions ([`subs`]).
    subs: subs::Subscriptions,
    /// Copies of small pools for resolutions answered outside the lock ([`fast`]).
    fast: fast::FastResolver,
}

/// The registering connection as the PE's ASAP transport: an SCTP TLV (primary address
/// first) for SCTP, a TCP TLV for TCP and MPTCP (our PEs connect from their ASAP control
/// port, so the source address and port is where a registrar reaches them).
fn asap_transport_of(meta: &RecvMeta) -> TransportAddr {
    if matches!(
        meta.transport,
        TransportProto::Tcp | TransportProto::Mptcp | TransportProto::Tls
    ) {
        let mut t = TransportAddr::tcp(meta.peer.port(), meta.peer.ip());
        t.use_field = TransportUse::DATA_ONLY;
        return t;
    }
    let mut addrs = vec![meta.peer.ip()];
    for a in &meta.peer_addrs {
        if !addrs.contains(a) {
            addrs.push(*a);
        }
    }
    TransportAddr::sctp(meta.peer.port(), TransportUse::DATA_ONLY, addrs)
}

/// Where a registrar reaches a PE with ASAP (its ASAP transport): TCP or SCTP.
pub(crate) fn asap_endpoint_of(pe: &PoolElement) -> Option<Endpoint> {
    let t = pe.asap_transport.as_ref()?;
    let addrs: Vec<SocketAddr> = t
        .addrs
        .iter()
        .map(|a| SocketAddr::new(*a, t.port))
        .collect();
    match t.kind {
        TransportKind::Tcp => addrs.first().map(|a| Endpoint::tcp(*a)),
        TransportKind::Sctp if !addrs.is_empty() => Some(Endpoint::sctp(addrs)),
        _ => None,
    }
}

/// Whom an owned PE counts against in the per-source quota: the first address of its
/// ASAP transport (the registering connection's peer).
fn source_of(pe: &PoolElement) -> Option<SourceKey> {
    pe.asap_transport
        .as_ref()
        .and_then(|t| t.addrs.first())
        .map(|ip| SourceKey::of(*ip))
}

const MIN_PERIOD: Duration = Duration::from_millis(1);

/// Per-PE timers (keep-alive transmissions, keep-alive timeouts, lifetimes) handled by one
/// [`Core::handle_timeout`] call at most. When more are due, the rest stay due:
/// `poll_timeout()` stays at or before `now`, and the shell serves the messages waiting
/// meanwhile before it calls again, so a burst of thousands of keep-alives (a connection's
/// batch, the wave after a registration storm) or removals does not hold up a handle
/// resolution for its whole length. Due timers are handled oldest first.
pub const TIMERS_PER_CALL: usize = 64;

impl Registrar {
    /// Where this registrar reaches a PE's ASAP control endpoint: its ASAP transport,
    /// over TLS instead of TCP with `pe_control_tls`.
    pub(crate) fn pe_endpoint(&self, pe: &PoolElement) -> Option<Endpoint> {
        let mut ep = asap_endpoint_of(pe)?;
        if self.cfg.pe_control_tls && ep.transport == TransportProto::Tcp {
            ep.transport = TransportProto::Tls;
        }
        Some(ep)
    }

    /// A new registrar; idle until its first input (call `handle_timeout(now)` once).
    pub fn new(config: RegistrarConfig, rng_seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let server_id = match config.server_id {
            Some(id) if id.0 != 0 => id,
            _ => ServerId(random_nonzero(&mut rng)),
        };
        let hs = Handlespace::new(config.handlespace.clone(), rng.gen());
        let limits = ConnTable::new(config.connections.clone());
        let enrp = enrp::EnrpState::new(&config.enrp);
        let fast = fast::FastResolver::default();
        fast.set_settings(fast::FastSettings::of(&config));
        Self {
            cfg: config,
            rng,
            server_id,
            hs,
            conns: BTreeSet::new(),
            conn_pes: BTreeMap::new(),
            source_pes: BTreeMap::new(),
            conn_guard: BTreeMap::new(),
            eu_rates: rates::SourceRates::default(),
            reg_conn_rates: rates::Rates::default(),
            reg_identity_rates: rates::Rates::default(),
            pe_identity: HashMap::new(),
            identity_pes: HashMap::new(),
            pe_guard: PeGuards::default(),
            freed: Vec::new(),
            started: false,
            epoch: None,
            timers: Timers::new(),
            limits,
            counters: Counters::default(),
            out: Outbox::default(),
            events: VecDeque::new(),
            opened: BTreeMap::new(),
            enrp,
            subs: subs::Subscriptions::default(),
            fast,
        }
    }

    /// This registrar's server ID (the home ID of every PE it owns).
    pub fn server_id(&self) -> ServerId {
        self.server_id
    }

    /// The handlespace (read-only).
    pub fn handlespace(&self) -> &Handlespace {
        &self.hs
    }

    /// Message counters (with the resolutions answered outside the lock).
    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        let fast = self.fast.answered();
        c.rx[usize::from(rserpool_wire::asap_type::HANDLE_RESOLUTION)] += fast;
        c.tx[usize::from(rserpool_wire::asap_type::HANDLE_RESOLUTION_RESPONSE)] += fast;
        c.fast_resolutions = fast;
        c
    }

    /// The copies of small pools the shell's readers answer resolutions from ([`fast`]).
    pub fn fast_resolver(&self) -> FastResolver {
        self.fast.clone()
    }

    /// Handle resolution subscriptions in force, in all and of one connection.
    pub fn subscriptions(&self, conn: Option<ConnId>) -> usize {
        match conn {
            Some(c) => self.subs.of_conn(c),
            None => self.subs.len(),
        }
    }

    /// Entries of the protections' per-PE and per-connection state (to check its bounds).
    #[doc(hidden)]
    pub fn guard_state_len(&self) -> (usize, usize) {
        (self.pe_guard.len(), self.conn_guard.len())
    }

    /// The start of every input: start once, and take in what the readers' fast answers
    /// noted since the last input ([`fast`]).
    fn ensure_started(&mut self, now: Instant) {
        self.apply_fast_notes();
        if !self.started {
            self.started = true;
            self.epoch = Some(now);
            if self.cfg.announce_group.is_some() {
                self.timers.set(RegistrarTimer::Announce, now);
            }
            self.enrp_start(now);
        }
    }

    fn send(&mut self, dest: Dest, msg: &AsapMessage) {
        let Err((dest, _)) = self.out.try_send(&mut self.counters, dest, msg) else {
            return;
        };
        self.counters.unencodable += 1;
        // A response echoes the request's pool handle; when the handle leaves no room for
        // the rest (e.g. a 65,520-byte handle and cause 0x9), answer with an ASAP_ERROR
        // quoting the handle instead of a frame whose length field cannot say its size.
        let handle = match msg {
            AsapMessage::RegistrationResponse { handle, .. }
            | AsapMessage::DeregistrationResponse { handle, .. }
            | AsapMessage::HandleResolutionResponse { handle, .. } => handle,
            _ => return,
        };
        let cause = Cause::with_info(CauseCode::INVALID_VALUES, self.handle_quote(handle));
        self.out.send_error(&mut self.counters, dest, vec![cause]);
    }

    /// How a cause quotes a pool handle: a Pool Handle TLV with at most
    /// `max_handle_len + 1` bytes of it, enough to show that it is over the limit (a
    /// response echoes the whole handle in its own Pool Handle parameter anyway).
    fn handle_quote(&self, handle: &PoolHandle) -> Vec<u8> {
        let max = self.cfg.handlespace.max_handle_len.saturating_add(1);
        codec::pool_handle_tlv_prefix(handle, max)
    }

    fn remove_pe(
        &mut self,
        handle: &PoolHandle,
        id: PeId,
        reason: RemovalReason,
    ) -> Option<PoolElement> {
        let entry = self.hs.deregister(handle, id)?;
        self.pool_changed(handle);
        if let Some(c) = entry.bookkeeping.conn {
            self.unindex_conn(ConnId(c), handle, id);
        }
        self.uncount_identity(handle, id);
        if entry.pe.home_registrar == self.server_id {
            self.uncount_source(source_of(&entry.pe));
            // ENRP: the owner announces the removal (DEL_PE) to its peers.
            self.enrp_replicate(rserpool_wire::UpdateAction::DEL_PE, handle, &entry.pe);
        }
        // A registration waiting for this identifier gets it at the end of this input.
        if let Some(p) = self.pe_guard.remove(handle, id).and_then(|g| g.pending) {
            self.freed.push(p);
        }
        self.events.push_back(RegistrarEvent::PeRemoved {
            handle: handle.clone(),
            pe: entry.pe.clone(),
            reason,
        });
        Some(entry.pe)
    }

    fn unindex_conn(&mut self, conn: ConnId, handle: &PoolHandle, id: PeId) {
        if let Some(set) = self.conn_pes.get_mut(&conn) {
            set.remove(&(handle.clone(), id));
            if set.is_empty() {
                self.conn_pes.remove(&conn);
                self.limits.set_owner(conn, false);
            }
        }
    }

    fn announce(&mut self, now: Instant) {
        let Some(group) = self.cfg.announce_group else {
            self.timers.cancel(&RegistrarTimer::Announce);
            return;
        };
        // RSPLIB knows no TCP transport TLV in an announce: after an SCTP TLV it drops the
        // whole message; as the first TLV it takes the announce as one without transports
        // and connects to the datagram's source port (Discrepancy #8), i.e. nowhere. So an
        // announce with SCTP TLVs only comes first, then (if we listen on TCP too) one with
        // the SCTP TLVs followed by the TCP ones, which RSPLIB drops and we read whole.
        let all = &self.cfg.asap_transports;
        let sctp: Vec<TransportAddr> = all
            .iter()
            .filter(|t| t.kind == TransportKind::Sctp)
            .cloned()
            .collect();
        let announces: Vec<Vec<TransportAddr>> = if all.is_empty() {
            vec![Vec::new()] // no TLVs: SCTP to the datagram's source (RFC 5352 §3.2)
        } else if sctp.is_empty() || sctp.len() == all.len() {
            vec![all.clone()]
        } else {
            let mut both = sctp.clone();
            both.extend(
                all.iter()
                    .filter(|t| t.kind != TransportKind::Sctp)
                    .cloned(),
            );
            vec![sctp, both]
        };
        for transports in announces {
            let msg = AsapMessage::ServerAnnounce {
                server_id: self.server_id,
                transports,
            };
            self.send(Dest::Datagram(group), &msg);
        }
        // ±12.5 % (RSPLIB).
        let base = self.cfg.announce_interval.max(Duration::from_millis(10));
        let spread = base.as_nanos() / 8;
        let offset = self.rng.gen_range(0..=2 * spread);
        let nanos = base.as_nanos() - spread + offset;
        let period = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.timers
            .set(RegistrarTimer::Announce, later(now, period));
    }

    /// Connection gone (closed or a send failed).
    fn on_conn_lost(&mut self, conn: ConnId, send_failed: bool) {
        self.conns.remove(&conn);
        self.limits.closed(conn);
        self.opened.remove(&conn);
        let ended = self.subs.conn_closed(conn);
        self.counters.guards.subscriptions_ended += ended as u64;
        self.enrp_conn_lost(conn);
        // Its waiting registrations go unanswered; what it resolved no longer matters.
        if let Some(g) = self.conn_guard.remove(&conn) {
            for (h, id) in g.pending {
                if let Some(pg) = self.pe_guard.get_mut(&h, id) {
                    if pg.pending.as_ref().is_some_and(|p| p.conn == conn) {
                        pg.pending = None;
                    }
                }
            }
        }
        // Connection IDs are never reused: the index entry can go.
        self.reg_conn_rates.forget(&conn);
        let pes = self.conn_pes.remove(&conn).unwrap_or_default();
        let victims: Vec<(PoolHandle, PeId, bool)> = pes
            .into_iter()
            .filter_map(|(h, id)| {
                let e = self.hs.get(&h, id)?;
                let outstanding = Self::keepalive_outstanding(&e.bookkeeping);
                Some((h, id, outstanding))
            })
            .collect();
        for (handle, id, outstanding) in victims {
            if self.cfg.remove_pes_on_close {
                self.remove_pe(&handle, id, RemovalReason::ConnectionClosed);
            } else if send_failed && outstanding {
                // The keep-alive towards it could not be delivered.
                self.remove_pe(&handle, id, RemovalReason::KeepAliveFailed);
            } else if let Some(p) = self
                .pe_guard
                .get_mut(&handle, id)
                .and_then(|g| g.pending.take())
            {
                // The holder is gone: a registration waiting for the identifier gets it.
                self.freed.push(p);
            }
        }
    }

    /// Summarise what the connection limits did, when it is time (rate-limited).
    fn report_limits(&mut self, now: Instant) {
        if let Some(r) = self.limits.poll_report(now) {
            self.events.push_back(RegistrarEvent::ConnectionLimits(r));
        }
    }

    /// The connection limits (open connections, per source).
    pub fn connections(&self) -> &ConnTable {
        &self.limits
    }
}

impl Core for Registrar {
    type Event = RegistrarEvent;
    type Command = RegistrarCommand;

    fn handle_message(&mut self, now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        self.ensure_started(now);
        self.limits.touch(now, conn);
        self.conns.insert(conn);
        match meta.protocol {
            Protocol::Asap => {}
            Protocol::Enrp => {
                if !self.cfg.access.may_peer(meta) {
                    self.counters.guards.enrp_refused_access += 1;
                    return;
                }
                self.on_enrp_message(now, conn, meta, bytes);
                return self.end_input(now);
            }
            // Application data has no business with a registrar.
            Protocol::Data(_) => {
                self.counters.wrong_protocol += 1;
                return;
            }
        }
        self.on_asap_message(now, conn, meta, bytes);
        self.end_input(now);
    }

    fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, bytes: &[u8]) {
        self.ensure_started(now);
        match decode_inbound(meta.protocol, bytes, &mut self.counters) {
            // Other registrars' announces (and our own looped back): nothing to do yet.
            Received::Asap(Inbound::Message(AsapMessage::ServerAnnounce { .. }, _)) => {}
            Received::Asap(Inbound::Message(..)) => self.counters.dropped += 1,
            Received::Asap(Inbound::Invalid(_)) => {}
            Received::Enrp(_) if !self.cfg.access.hears_datagrams() => {
                self.counters.guards.enrp_refused_access += 1;
            }
            Received::Enrp(inbound) => self.on_enrp_datagram(now, meta, inbound),
            Received::Data(_) => self.counters.wrong_protocol += 1,
        }
        self.end_input(now);
    }

    fn handle_transport(&mut self, now: Instant, event: TransportEvent) {
        self.ensure_started(now);
        match event {
            TransportEvent::Accepted { conn, meta } => {
                self.conns.insert(conn);
                let peer = meta.peer.ip();
                self.limits
                    .accepted(now, conn, peer, &mut self.counters.connections);
            }
            TransportEvent::Connected { conn, endpoint } => {
                self.conns.insert(conn);
                self.enrp_connected(now, conn, &endpoint);
                self.opened.insert(conn, endpoint);
            }
            TransportEvent::ConnectFailed { endpoint } => self.claim_failed(&endpoint),
            TransportEvent::Closed { conn } => self.on_conn_lost(conn, false),
            TransportEvent::SendFailed { conn } => self.on_conn_lost(conn, true),
        }
        self.report_limits(now);
        self.grant_freed(now);
        self.end_input(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ensure_started(now);
        self.limits
            .handle_timeout(now, &mut self.counters.connections);
        // At most TIMERS_PER_CALL per-PE timers per call: the rest stay due, so
        // `poll_timeout()` stays at (or before) `now` and the shell calls again after
        // serving what waits meanwhile (resolutions are not held up by a burst of
        // keep-alives or removals).
        for _ in 0..TIMERS_PER_CALL {
            let Some((handle, id, kind)) = self.hs.pop_expired(now) else {
                break;
            };
            self.on_pe_timer(now, handle, id, kind);
        }
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                RegistrarTimer::Announce => self.announce(now),
                other => self.on_enrp_timer(now, other),
            }
        }
        self.report_limits(now);
        self.grant_freed(now);
        self.end_input(now);
    }

    fn command(&mut self, now: Instant, cmd: RegistrarCommand) {
        self.ensure_started(now);
        match cmd {
            RegistrarCommand::DumpHandlespace => {
                let s = self.snapshot();
                self.events.push_back(RegistrarEvent::Snapshot(s));
            }
            RegistrarCommand::RemovePe { handle, pe_id } => {
                self.remove_pe(&handle, pe_id, RemovalReason::Admin);
            }
        }
        self.grant_freed(now);
        self.end_input(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let t = earliest(self.hs.poll_timeout(), self.timers.earliest());
        let t = earliest(t, self.subs.poll_timeout());
        earliest(t, self.limits.poll_timeout())
    }

    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.limits
            .poll_command()
            .or_else(|| self.enrp.cmds.pop_front())
    }

    fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }
}

/// Run-time reconfiguration.
impl Registrar {
    /// The configuration in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Apply a new configuration at run time (a reload). The server ID, the announced
    /// ASAP transports and the ENRP transports stay as they are (they belong to the
    /// listeners). New static ENRP peers are added (unidentified), dropped ones stop being
    /// static (an unidentified one leaves the list; a known one stays until it dies). New limits apply to
    /// the next registration; keep-alive timings from each PE's next timer; the lifetime
    /// unit to the next registration. Announces start or stop at once.
    pub fn reconfigure(&mut self, now: Instant, mut config: RegistrarConfig) {
        config.server_id = Some(self.server_id);
        config.asap_transports = std::mem::take(&mut self.cfg.asap_transports);
        config.enrp.own_transports = std::mem::take(&mut self.cfg.enrp.own_transports);
        self.hs.set_config(config.handlespace.clone());
        self.limits.set_limits(config.connections.clone());
        let announced = self.cfg.announce_group.is_some();
        self.cfg = config;
        // Copies follow the new settings (items, transports, access, max_increment).
        self.fast.set_settings(fast::FastSettings::of(&self.cfg));
        self.retire_all_copies();
        self.enrp_reconfigure(now);
        match (announced, self.cfg.announce_group.is_some()) {
            (false, true) if self.started => self.timers.set(RegistrarTimer::Announce, now),
            (_, false) => {
                self.timers.cancel(&RegistrarTimer::Announce);
            }
            _ => {}
        }
    }
}
