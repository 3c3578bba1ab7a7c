//! The ENRP side of the registrar (RFC 5353, procedures §2), sans-IO, beside the ASAP
//! side in `asap.rs` and sharing the state of `mod.rs`.
//!
//! Files: `peers.rs` (the peer list, identification, one connection per peer),
//! `presence.rs` (heartbeat, presences, failure detection), `download.rs` (mentor choice,
//! List and Handle Table requests and responses, download sessions), `update.rs` (handle
//! updates sent and applied), `takeover.rs`, `audit.rs` (checksums and
//! re-synchronisation), `config.rs` (settings and the peer view), `tests.rs`.
//!
//! Every ENRP message comes through [`Registrar::on_enrp_message`] (a connection: the
//! ENRP port or SCTP PPID 12) or [`Registrar::on_enrp_datagram`] (a multicast presence).
//! ENRP timers are variants of the registrar's one timer table; per-PE timers (the
//! lifetime of PEs owned elsewhere) stay in the handlespace's single queue. What happens
//! leaves the core as [`RegistrarEvent::Enrp`] events; what was refused or ignored is
//! counted in [`crate::counters::EnrpCounters`].
//!
//! Choices, and where RFC 5353 and RSPLIB differ (procedures §2):
//!
//! * Peers come from `EnrpConfig::peers` (static, unidentified until they speak), from
//!   presences on the multicast group (`presence_group`, RSPLIB's 239.0.0.51:9901, never
//!   required), from a mentor's List Response, and from any ENRP message of an unknown
//!   server (RFC §2.4: added, and sent a presence with R = 1) — unless
//!   `accept_unlisted_peers` is off: then it is dropped and counted. A static endpoint
//!   that answers with a new server ID (a restarted registrar) gives the new server the
//!   static entry; the old ID is monitored until found dead. A static entry still
//!   unidentified when its server is already known (it spoke first over a connection it
//!   opened, or names another address in its Server Information, e.g. 0.0.0.0) is merged
//!   into that peer once the server answers over the connection we opened to the static
//!   endpoint (or names it): one entry, the configured endpoint, one connection. At most
//!   256 peers.
//! * Messages with our own server ID as sender are ignored: looped back from multicast
//!   (counted as `own_id_looped`), or over a connection (a claim: `own_id_claims`). A
//!   sender ID of 0 is dropped.
//! * One connection per peer: we send on the connection the peer last spoke on or the one
//!   we opened (`Dest::Conn`), else to its endpoint (`Dest::Endpoint`, the shell opens a
//!   connection labelled ENRP). When two live connections join one pair (both opened at
//!   once), the one opened by the lower server ID stays and the other is closed
//!   (`TransportCommand::Close`), by both sides alike. Peer connections are exempt from
//!   the connection limits' idle timeout once the peer is identified.
//! * Start-up: with static peers or a presence group, phase `Discovering` for
//!   `mentor_discovery_timeout` (RSPLIB 5 s) while presences (R = 1 to unidentified
//!   static peers) go out; the first peer heard is the mentor: List Request and Handle
//!   Table Request (W = 0) at once, phase `Synchronizing`; the final response
//!   (M = 0) makes it `Serving`. A mentor that rejects (R = 1), does not answer within
//!   MAX-TIME-NO-RESPONSE or dies is replaced by another identified peer, else the
//!   registrar serves alone. Without peers it serves at once. ASAP is served in every
//!   phase. We answer handle table and list requests in every phase (the RFC lets a
//!   starting server reject; two registrars starting together would otherwise wait for
//!   each other), and from any identified peer (RSPLIB answers unlisted servers R = 1;
//!   an unlisted server is added first, or dropped with `accept_unlisted_peers` off).
//! * Handle tables: at most `max_pes_per_response` PEs (RSPLIB 128) and at most 60,000
//!   bytes per response (well within the 16-bit length); one download session per
//!   requester, resumed by a cursor (pool handle, PE ID) for W = 0 or by the list of the
//!   owner's PEs taken at the first request for W = 1, so a download of n PEs costs O(n)
//!   in total; a session ends with M = 0, when the requester asks with another W, or
//!   after `download_session_timeout` without a next request. PEs whose home is the
//!   receiver itself are skipped when merging (we know our own PEs best).
//! * Handle updates: ADD_PE after every registration and re-registration granted here,
//!   DEL_PE after every removal of a PE we own, to every identified peer not being taken
//!   over. A receiver applies ADD_PE with ownership moving to the sender (its home field
//!   is set to the sender's ID), creating the pool if needed; a PE of a pool with
//!   another policy (or otherwise refused by the handlespace) is not applied and
//!   answered with ENRP_ERROR carrying the handlespace's cause (0x5 with the pool's
//!   policy, 0x7, 0x8, 0x3). ADD_PE naming us as home is ignored (RSPLIB). DEL_PE is
//!   applied only when the sender is the PE's home in our copy (a late DEL from a former
//!   owner must not remove a PE that moved). PEs owned elsewhere expire by their
//!   Registration Life unless refreshed by an update (RSPLIB; one timer per PE in the
//!   handlespace queue). Remote changes leave no per-PE `PeAdded`/`PeRemoved` event
//!   except removals (`PeRemoved` with [`RemovalReason::PeerUpdate`] /
//!   [`RemovalReason::Resync`] / lifetime expiry).
//! * Takeover suggestion (T flag, draft-dreibholz-rserpool-enrp-takeover, RSPLIB's
//!   `-supporttakeoversuggestion`): off by default; when on, an ADD_PE also goes with
//!   T = 1 to the one peer whose (server ID XOR PE ID) is the largest, if larger than
//!   ours, and a receiver of T = 1 sends the PE a keep-alive with H = 1.
//! * Failure detection: a peer silent for `max_time_last_heard` (RSPLIB 5 s; RFC 61 s)
//!   gets a presence with R = 1; no answer within `max_time_no_response` (5 s) makes it
//!   dead. A dead peer owning no PEs in our copy, or one already being taken over by
//!   another server, is dropped from the list (a static one goes back to unidentified).
//! * Takeover: INIT_TAKEOVER to every peer (the target included); ACKs are awaited from
//!   every identified peer except the target; with nobody to ask we win at once (RSPLIB
//!   never completes then). Concurrent takeovers are decided by `takeover_election`:
//!   RSPLIB's lowest ID wins (default) or the RFC's highest. A presence from the target
//!   aborts; missing ACKs after `takeover_expiry` abandon it (RSPLIB) and drop the target
//!   from the list, its PEs then age out by Registration Life. The winner sends
//!   TAKEOVER_SERVER to the peers, becomes home of the target's PEs and sends each a
//!   keep-alive with H = 1 to `Dest::Endpoint` of its ASAP transport (ASAP); the ACK on
//!   that registrar-opened connection binds the PE to it; no ACK within the keep-alive
//!   timeout removes the PE — counted from when that connection is up (`Connected`),
//!   not from when the keep-alive was queued (a slow host takes a while to accept);
//!   `ConnectFailed` for the PE's endpoint counts as a failed keep-alive. INIT_TAKEOVER or TAKEOVER_SERVER naming us as target is
//!   answered with a presence to every peer (we are alive) and counted.
//! * Audit: every presence carries our own PE checksum; a presence over a connection
//!   whose checksum differs from our copy's for that peer starts a re-synchronisation
//!   (one per peer at a time; not during the start-up download, not for a peer being
//!   taken over): mark its PEs, Handle Table Request W = 1, merge, purge the PEs still
//!   marked after the final part. Multicast presences are not audited (RSPLIB: they may
//!   overtake the updates on the association).
//! * A PE's ASAP transport in updates and tables is the TCP or SCTP TLV the ASAP side
//!   recorded; `rewrite_tcp_asap_for_sctp_peers` rewrites TCP into SCTP towards SCTP
//!   peers.
//! * Bad input: an undecodable message gets an ENRP_ERROR with the codec's cause (or
//!   nothing for a silent drop); parameters with report bits get their report;
//!   responses nobody asked for are counted and dropped; an ENRP_ERROR is never answered.

mod audit;
mod config;
mod download;
mod peers;
mod presence;
mod takeover;
#[cfg(test)]
mod tests;
mod update;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use rserpool_wire::{
    Cause, CauseCode, EnrpMessage, OperationError, PeId, PoolElement, PoolHandle, Protocol,
    ServerId,
};

use super::{Registrar, RegistrarEvent, RegistrarTimer};
use crate::common::{decode_inbound, Inbound, Received};
use crate::io::{ConnId, Dest, Endpoint, RecvMeta, TransportCommand};

pub use config::{
    EnrpConfig, EnrpPhase, PeerInfo, PeerState, TakeoverElection, DEFAULT_PRESENCE_GROUP, ENRP_PORT,
};
use download::Session;
use peers::Peer;

/// Most peers in the list (static ones included).
const MAX_PEERS: usize = 256;

/// Largest handle table response we build (the 16-bit Message Length is the hard limit).
const MAX_RESPONSE_BYTES: usize = 60_000;

/// Something that happened on the ENRP side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpEvent {
    /// A peer was identified (first message from its server ID).
    PeerUp {
        server_id: ServerId,
        endpoint: Option<Endpoint>,
    },
    /// A peer did not answer its probe: dead (a takeover of its PEs may follow).
    PeerDown { server_id: ServerId },
    /// A peer left the peer list.
    PeerRemoved { server_id: ServerId },
    /// Start-up: this peer is our mentor.
    MentorChosen { server_id: ServerId },
    /// Start-up done: the mentor's handlespace is merged (`mentor` = None: nobody to
    /// sync with). `pes` = PEs received.
    SyncDone {
        mentor: Option<ServerId>,
        pes: usize,
    },
    /// We started to take over `target`.
    TakeoverStarted { target: ServerId },
    /// We won: `pes` PEs of `target` are ours now (keep-alives with H = 1 are on their way).
    TakeoverWon { target: ServerId, pes: usize },
    /// We gave up taking over `target`.
    TakeoverAbandoned {
        target: ServerId,
        reason: &'static str,
    },
    /// Peer `by` took over `target`: `pes` PEs moved to it.
    TakenOver {
        target: ServerId,
        by: ServerId,
        pes: usize,
    },
    /// A presence's checksum differs from ours for that peer: re-synchronising.
    AuditMismatch {
        peer: ServerId,
        expected: u16,
        reported: u16,
    },
    /// A re-synchronisation with `peer` finished.
    ResyncDone {
        peer: ServerId,
        received: usize,
        purged: usize,
    },
    /// A handle update from `peer` was refused with `cause` (and answered with ENRP_ERROR).
    UpdateRefused {
        peer: ServerId,
        handle: PoolHandle,
        pe_id: PeId,
        cause: CauseCode,
    },
    /// An ENRP_ERROR arrived.
    ErrorReceived {
        peer: ServerId,
        error: OperationError,
    },
    /// A handle update (ADD_PE) from `peer` stored `pe` (homed at `peer`); `new` when the
    /// PE was not in our handlespace before. PEs that arrive in a handle table (start-up
    /// download, re-synchronisation) are not reported one by one: `SyncDone` and
    /// `ResyncDone` say a batch arrived. Removals by peers are `RegistrarEvent::PeRemoved`
    /// with reason `PeerUpdate`.
    PeLearned {
        peer: ServerId,
        handle: PoolHandle,
        pe: PoolElement,
        new: bool,
    },
}

impl fmt::Display for EnrpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrpEvent::PeerUp {
                server_id,
                endpoint,
            } => match endpoint {
                Some(e) => write!(f, "peer {server_id} up at {e}"),
                None => write!(f, "peer {server_id} up"),
            },
            EnrpEvent::PeerDown { server_id } => write!(f, "peer {server_id} down"),
            EnrpEvent::PeerRemoved { server_id } => write!(f, "peer {server_id} removed"),
            EnrpEvent::MentorChosen { server_id } => write!(f, "mentor {server_id}"),
            EnrpEvent::SyncDone { mentor, pes } => match mentor {
                Some(m) => write!(f, "synchronised with mentor {m}: {pes} PEs"),
                None => write!(f, "no mentor: serving alone"),
            },
            EnrpEvent::TakeoverStarted { target } => write!(f, "taking over {target}"),
            EnrpEvent::TakeoverWon { target, pes } => {
                write!(f, "took over {target}: {pes} PEs")
            }
            EnrpEvent::TakeoverAbandoned { target, reason } => {
                write!(f, "takeover of {target} abandoned: {reason}")
            }
            EnrpEvent::TakenOver { target, by, pes } => {
                write!(f, "{by} took over {target}: {pes} PEs")
            }
            EnrpEvent::AuditMismatch {
                peer,
                expected,
                reported,
            } => write!(
                f,
                "audit: {peer} reports checksum {reported:#06x}, expected {expected:#06x}"
            ),
            EnrpEvent::ResyncDone {
                peer,
                received,
                purged,
            } => write!(
                f,
                "re-synchronised with {peer}: {received} PEs, {purged} purged"
            ),
            EnrpEvent::UpdateRefused {
                peer,
                handle,
                pe_id,
                cause,
            } => write!(
                f,
                "handle update from {peer} for {pe_id} in {handle} refused: {cause}"
            ),
            EnrpEvent::ErrorReceived { peer, error } => {
                write!(f, "ENRP_ERROR from {peer}: {error}")
            }
            EnrpEvent::PeLearned {
                peer,
                handle,
                pe,
                new,
            } => {
                let what = if *new { "added" } else { "updated" };
                write!(f, "{peer} {what} {} in {handle}", pe.id)
            }
        }
    }
}

/// The ENRP state of a registrar.
#[derive(Debug)]
pub(in crate::registrar) struct EnrpState {
    phase: EnrpPhase,
    peers: Vec<Peer>,
    /// Start-up: the mentor we download from, and the peers tried so far.
    mentor: Option<ServerId>,
    mentors_tried: BTreeSet<ServerId>,
    synced_pes: usize,
    /// Our takeovers: target → peers whose ACK we still wait for.
    takeovers: BTreeMap<ServerId, BTreeSet<ServerId>>,
    /// Download sessions we serve, per requester.
    sessions: BTreeMap<ServerId, Session>,
    /// Our re-synchronisations: peer → its PEs still marked, and PEs received.
    resyncs: BTreeMap<ServerId, (BTreeSet<(PoolHandle, PeId)>, usize)>,
    /// Transport commands (closing a second connection to a peer).
    pub(in crate::registrar) cmds: VecDeque<TransportCommand>,
    /// Adopted PEs whose keep-alive (H = 1) waits for the connection to their ASAP
    /// transport: the ACK wait starts when it is up (`Connected`); `ConnectFailed` counts
    /// as a failed keep-alive.
    /// (Keyed access only, never iterated.)
    claims: HashMap<Endpoint, Vec<(PoolHandle, PeId)>>,
}

impl EnrpState {
    pub(in crate::registrar) fn new(cfg: &EnrpConfig) -> Self {
        let alone = cfg.peers.is_empty() && cfg.presence_group.is_none();
        let mut peers = Vec::new();
        for ep in &cfg.peers {
            if !peers.iter().any(|p: &Peer| p.endpoint.as_ref() == Some(ep)) {
                peers.push(Peer::unidentified(ep.clone()));
            }
        }
        Self {
            phase: if alone {
                EnrpPhase::Serving
            } else {
                EnrpPhase::Discovering
            },
            peers,
            mentor: None,
            mentors_tried: BTreeSet::new(),
            synced_pes: 0,
            takeovers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            resyncs: BTreeMap::new(),
            cmds: VecDeque::new(),
            claims: HashMap::new(),
        }
    }
}

impl Registrar {
    /// The peer registrars as data.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.enrp
            .peers
            .iter()
            .map(|p| PeerInfo {
                server_id: p.id,
                endpoint: p.endpoint.clone(),
                state: p.state,
                last_heard: p.last_heard,
                checksum_expected: if p.id.0 == 0 {
                    self.hs.checksum(ServerId(0))
                } else {
                    self.hs.checksum(p.id)
                },
                checksum_reported: p.checksum_reported,
                owned_pes: if p.id.0 == 0 {
                    0
                } else {
                    self.hs.owned_count(p.id)
                },
                mentor: p.mentor,
            })
            .collect()
    }

    /// Where the registrar is in its ENRP start-up.
    pub fn enrp_phase(&self) -> EnrpPhase {
        self.enrp.phase
    }

    fn enrp_event(&mut self, ev: EnrpEvent) {
        self.events.push_back(RegistrarEvent::Enrp(ev));
    }

    /// Queue an ENRP message.
    fn enrp_send(&mut self, dest: Dest, msg: &EnrpMessage) {
        self.out.send(&mut self.counters, dest, msg);
    }

    /// ENRP_ERROR with `causes` (nothing for an empty list).
    fn enrp_error(&mut self, dest: Dest, receiver: ServerId, causes: Vec<Cause>) {
        if causes.is_empty() {
            return;
        }
        self.counters.enrp.errors_sent += 1;
        let msg = EnrpMessage::Error {
            sender: self.server_id,
            receiver,
            error: OperationError { causes },
        };
        self.enrp_send(dest, &msg);
    }

    /// The first input: start-up phase and heartbeat.
    pub(super) fn enrp_start(&mut self, now: Instant) {
        if self.enrp.phase == EnrpPhase::Discovering {
            let t = crate::common::later(now, self.cfg.enrp.mentor_discovery_timeout);
            self.timers.set(RegistrarTimer::MentorDiscovery, t);
            self.timers.set(RegistrarTimer::Heartbeat, now);
        }
    }

    /// One ENRP message received on a connection (SCTP PPID 12, or the ENRP port).
    pub(super) fn on_enrp_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        meta: &RecvMeta,
        bytes: &[u8],
    ) {
        let Received::Enrp(inbound) = decode_inbound(Protocol::Enrp, bytes, &mut self.counters)
        else {
            return;
        };
        match inbound {
            Inbound::Message(msg, reports) => {
                if !matches!(msg, EnrpMessage::Error { .. }) {
                    let to = msg.servers().0;
                    self.enrp_error(Dest::Conn(conn), to, reports);
                }
                self.on_enrp(now, Some(conn), meta, msg);
            }
            Inbound::Invalid(cause) => {
                self.enrp_error(Dest::Conn(conn), ServerId(0), cause.into_iter().collect());
            }
        }
    }

    /// One decoded (and counted) ENRP datagram, e.g. a multicast Presence.
    pub(super) fn on_enrp_datagram(
        &mut self,
        now: Instant,
        meta: &RecvMeta,
        inbound: Inbound<EnrpMessage>,
    ) {
        match inbound {
            Inbound::Message(msg @ EnrpMessage::Presence { .. }, _) => {
                self.on_enrp(now, None, meta, msg)
            }
            // Only presences travel by multicast.
            Inbound::Message(..) => self.counters.dropped += 1,
            Inbound::Invalid(_) => {}
        }
    }

    /// One decoded ENRP message from a connection (`conn`) or a datagram (`None`).
    fn on_enrp(&mut self, now: Instant, conn: Option<ConnId>, meta: &RecvMeta, msg: EnrpMessage) {
        let (sender, _) = msg.servers();
        if sender == self.server_id {
            match conn {
                None => self.counters.enrp.own_id_looped += 1,
                Some(_) => self.counters.enrp.own_id_claims += 1,
            }
            return;
        }
        if sender.0 == 0 {
            self.counters.enrp.unlisted_dropped += 1;
            return;
        }
        let info = match &msg {
            EnrpMessage::Presence { server_info, .. } => server_info.as_ref(),
            _ => None,
        };
        let Some(i) = self.identify(now, sender, conn, meta, info) else {
            return;
        };
        self.heard(now, i, conn);
        match msg {
            EnrpMessage::Presence {
                reply_required,
                checksum,
                server_info,
                ..
            } => self.on_presence(
                now,
                sender,
                conn,
                meta,
                reply_required,
                checksum,
                server_info,
            ),
            EnrpMessage::HandleTableRequest {
                own_children_only, ..
            } => self.on_handle_table_request(now, sender, conn, own_children_only),
            EnrpMessage::HandleTableResponse {
                reject,
                more,
                pools,
                ..
            } => self.on_handle_table_response(now, sender, conn, reject, more, pools),
            EnrpMessage::HandleUpdate {
                takeover,
                action,
                handle,
                pe,
                ..
            } => self.on_handle_update(now, sender, conn, takeover, action, handle, pe),
            EnrpMessage::ListRequest { .. } => self.on_list_request(sender, conn),
            EnrpMessage::ListResponse {
                reject, servers, ..
            } => self.on_list_response(now, sender, meta, reject, servers),
            EnrpMessage::InitTakeover { target, .. } => {
                self.on_init_takeover(now, sender, conn, target)
            }
            EnrpMessage::InitTakeoverAck { target, .. } => {
                self.on_init_takeover_ack(now, sender, target)
            }
            EnrpMessage::TakeoverServer { target, .. } => {
                self.on_takeover_server(now, sender, target)
            }
            EnrpMessage::Error { error, .. } => {
                self.counters.enrp.errors_received += 1;
                self.enrp_event(EnrpEvent::ErrorReceived {
                    peer: sender,
                    error,
                });
            }
        }
    }

    /// An ENRP timer is due.
    pub(super) fn on_enrp_timer(&mut self, now: Instant, t: RegistrarTimer) {
        match t {
            RegistrarTimer::Announce => {}
            RegistrarTimer::Heartbeat => self.heartbeat(now),
            RegistrarTimer::MentorDiscovery => {
                if self.enrp.phase == EnrpPhase::Discovering {
                    self.finish_sync(None);
                }
            }
            RegistrarTimer::LastHeard(id) => self.probe_peer(now, id),
            RegistrarTimer::NoResponse(id) => self.peer_dead(now, id),
            RegistrarTimer::Request(id) => self.request_timed_out(now, id),
            RegistrarTimer::TakeoverExpiry(id) => {
                self.abandon_takeover(id, "INIT_TAKEOVER_ACKs missing");
                self.remove_peer(now, id);
            }
            RegistrarTimer::Session(id) => {
                if self.enrp.sessions.remove(&id).is_some() {
                    self.counters.guards.download_sessions_expired += 1;
                }
            }
        }
    }
}
