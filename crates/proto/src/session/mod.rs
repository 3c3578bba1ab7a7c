//! The PU↔PE session layer (procedures §1.11–§1.13), sans-IO: [`SessionUser`] on the pool
//! user's side, [`SessionServer`] on the pool element's side. Both implement
//! [`crate::io::Core`] like the other cores (no sockets, no clock, seeded RNG, one
//! [`crate::Timers`] table).
//!
//! # What travels, and how the core sees it
//!
//! One connection (TCP) or association (SCTP) per session carries both kinds of messages:
//!
//! * ASAP control messages — ASAP_COOKIE, ASAP_COOKIE_ECHO, ASAP_BUSINESS_CARD — with
//!   `RecvMeta.protocol == Protocol::Asap` (SCTP PPID 11, as RSPLIB sends them);
//! * application data with `Protocol::Data(ppid)`, sent with `Outbox::send_data`;
//! * the session layer's own acknowledgements and heartbeats, as `Protocol::Data` with the
//!   private PPIDs [`PPID_SESSION_ACK`], [`PPID_SESSION_HEARTBEAT`] and
//!   [`PPID_SESSION_HEARTBEAT_ACK`]. Over TCP the shell turns them into the ACK, HEARTBEAT
//!   and HEARTBEAT ACK chunks of the session framing
//!   ([`rserpool_wire::framing::SessionFrame::from_message`] and `into_message`); over
//!   SCTP they are messages with those PPIDs. The cores never look at the transport.
//!
//! # Sequence numbers and acknowledgements (the acknowledged mode)
//!
//! Each application message the PU sends gets a session-wide sequence number
//! ([`Outstanding::seq`], from 0, returned by [`SessionUser::send`], which refuses a
//! reserved PPID or a message over [`MAX_MESSAGE_LEN`] with a [`SessionError`]). On the wire the
//! numbering is the mapping draft's TSN, implicit and per connection: the n-th application
//! message on a connection (from 0, control messages and session PPIDs not counted) has
//! TSN n; the PE reports it with [`ServerEvent::Data`]`::tsn`. The PE's application calls
//! [`SessionServer::ack`] with the TSN of the last message it has dealt with (cumulative;
//! or sets [`SessionServerConfig::auto_ack`] to ack on delivery, as the draft's ACK
//! does), which sends one session ACK carrying that TSN. The PU keeps every sent message
//! until it is acknowledged ([`UserEvent::Acked`]); only the PU → PE direction is
//! acknowledged (the PE's messages to the PU are not kept).
//!
//! # Failover (PU side)
//!
//! Failure of the current PE = the transport closes, a send or the connect fails, the
//! connect does not complete in time, or the session heartbeat goes unanswered (a hung
//! host or process keeps its TCP connection / SCTP association up; the heartbeat is
//! answered by the PE's core, so a stopped process does not answer). Then:
//!
//! 1. [`UserEvent::PeFailed`] (the embedding PU turns it into
//!    `PuCommand::ReportFailure`, i.e. one ASAP_ENDPOINT_UNREACHABLE) and, once per
//!    failover, [`UserEvent::FailoverStarted`];
//! 2. messages sent with [`SendMode::NoFailover`] come back in [`UserEvent::Undelivered`];
//!    the unacknowledged [`SendMode::Failover`] ones go through the failover filter
//!    ([`SessionUser::set_failover_filter`]), which returns what to resend — default: all,
//!    in order. What the filter does not return is the application's business (it has
//!    seen it). Resent messages go before the messages not sent yet;
//! 3. the next PE: the first one of the failed PE's business card that has not failed in
//!    this session (BC2; the rest of the card stays for the next failure until a new PE
//!    sends its own), else [`UserEvent::NeedServer`] (the embedding PU asks its
//!    `PoolUserCore` with `GetPrimaryServer` and answers with [`SessionUser::use_server`]
//!    or [`SessionUser::no_server`]);
//! 4. connect; the first message to the new PE is ASAP_COOKIE_ECHO with the latest cookie,
//!    if one was received; then the resent messages; [`UserEvent::FailoverCompleted`].
//!
//! After [`SessionUserConfig::max_attempts`] failures in a row without a sign of life from
//! a PE the session gives up: everything outstanding comes back in
//! [`UserEvent::Undelivered`], then [`UserEvent::Failed`]; a later send starts anew.
//!
//! # Send options (RFC 5352 §6.5.5, procedures §1.13)
//!
//! * [`SendMode::Failover`] (default): resent to the next PE through the filter.
//! * [`SendMode::NoFailover`]: handed back in [`UserEvent::Undelivered`] when its PE fails.
//! * [`SendMode::ToLast`]: only to the PE that got the previous message — sent when the
//!   session is up with it, else handed back at once; if that PE fails before the ack it
//!   is handed back (never resent elsewhere).
//! * To all / to self: [`to_all_targets`] lists the PEs (own ones left out unless to
//!   self); one session per PE with [`SessionUserConfig::failover`] false carries each
//!   copy; a PE that fails hands its copies back and the session ends — no copy moves to
//!   another PE, which has its own.
//!
//! # Cookie authentication (procedures §1.11.4, RFC 5355 threat 2.16)
//!
//! [`SessionServer::set_cookie_key`] ([`CookieKey`], shared by the pool's PEs): each cookie
//! leaves with an HMAC-SHA256 tag appended ([`COOKIE_TAG_LEN`] bytes over a context string
//! and the application's cookie); an echo must carry a valid tag, compared in constant
//! time. Refused echoes ([`ServerEvent::CookieRefused`]: too short, bad signature) are
//! counted and close their session; the application never sees them. Without a key
//! nothing changes (cookies as made, echoes handed over: RSPLIB's PUs echo opaquely).
//! The PU side never looks inside a cookie.
//!
//! # Business cards (§1.12)
//!
//! A PE's card lists its pool's other PEs in [`card_order`] (ring by PE id, capped); the
//! shell learns them from the registrar and sends a changed list to open sessions
//! ([`SessionServer::update_business_card`]). A card with no PE is not sent (RFC 5352
//! requires one; decoders refuse it). A PU follows a card only for the session's own
//! pool; a card naming another pool is reported ([`UserEvent::BusinessCard`]) and the
//! shell resolves that pool (BC1).
//!
//! # Choices
//!
//! * PE selection stays outside: the session asks for a server by event
//!   ([`UserEvent::NeedServer`]) instead of embedding a `PoolUserCore`, so one PU core (one
//!   cache, one home registrar) serves any number of sessions.
//! * Without the acknowledged mode ([`SessionUserConfig::acknowledged`] false, e.g. against
//!   RSPLIB PEs) a sent message is released at once: on failover only the messages not
//!   sent yet are resent (best effort, as RSPLIB over TCP would be).
//! * Delivery after a failover is at least once: a PE that dealt with a message but died
//!   before its ACK left gets it again from the PU (the cookie is the place to carry what
//!   the new PE needs to recognise that).
//!
//! * A business card is followed only when it names the session's pool; a card naming
//!   another pool is reported ([`UserEvent::BusinessCard`]) and otherwise ignored.
//! * The PE side has no heartbeat of its own: it answers the PU's and learns of a dead PU
//!   from the transport (`Closed`).
//! * The first PE failing before it ever answered also counts as a failover
//!   ([`UserEvent::FailoverStarted`] / [`UserEvent::FailoverCompleted`]); without a cookie
//!   nothing is echoed.
//!
//! # Tests
//!
//! Unit tests here (two cores back to back by hand: cookie echo first, card order, ACK
//! release, heartbeat detection, the filter, giving up, bad input); the simulator's
//! `crates/sim/tests/session.rs` runs 1,000 acknowledged messages through registrar, PE
//! and PU cores with a PE crashing or hanging mid-stream and counts every message.
//!
//! # Not done yet
//!
//! * ASAP_SCTP_UNORDER (every message goes ordered on stream 0).
//! * The shell is `rserpool::service::session` (`Session`, `SessionListener`, TCP framing
//!   and SCTP PPIDs): `docs/session.md`.

mod server;
mod user;

pub use rserpool_wire::framing::{
    PPID_SESSION_ACK, PPID_SESSION_HEARTBEAT, PPID_SESSION_HEARTBEAT_ACK,
};
pub use server::{
    CookieKey, CookieRefusal, ServerCommand, ServerEvent, SessionServer, SessionServerConfig,
    COOKIE_TAG_LEN,
};
pub use user::{
    FailoverFilter, FailureReason, SessionUser, SessionUserConfig, UserCommand, UserEvent,
};

/// Largest application message: one DATA frame of the session framing (the same limit on
/// every transport, so a session can fail over between TCP and SCTP PEs).
pub const MAX_MESSAGE_LEN: usize = rserpool_wire::framing::SessionFrame::MAX_DATA;

/// Why a message was refused (nothing was queued).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("message of {len} bytes exceeds the session limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// ASAP, ENRP (also RSPLIB's pre-RFC values) and the session layer's own PPIDs.
    #[error("PPID {0} is reserved for RSerPool or the session layer")]
    ReservedPpid(u32),
    /// The PE side: no such session (closed, or never opened).
    #[error("no such session")]
    NoSession,
}

/// Check one application message before queueing it (the check [`SessionUser::send`] and
/// [`SessionServer::send`] make; a shell may make it before handing the message over).
pub fn check_message(ppid: u32, len: usize) -> Result<(), SessionError> {
    use rserpool_wire::{PPID_ASAP, PPID_ASAP_LEGACY, PPID_ENRP, PPID_ENRP_LEGACY};
    if matches!(
        ppid,
        PPID_ASAP
            | PPID_ENRP
            | PPID_ASAP_LEGACY
            | PPID_ENRP_LEGACY
            | PPID_SESSION_ACK
            | PPID_SESSION_HEARTBEAT
            | PPID_SESSION_HEARTBEAT_ACK
    ) {
        return Err(SessionError::ReservedPpid(ppid));
    }
    if len > MAX_MESSAGE_LEN {
        return Err(SessionError::TooLarge {
            len,
            max: MAX_MESSAGE_LEN,
        });
    }
    Ok(())
}

/// What to do with a message if its PE fails before acknowledging it (RFC 5352 §6.5.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendMode {
    /// ASAP_SEND_FAILOVER (the default): resend it to the next PE (through the filter).
    #[default]
    Failover,
    /// ASAP_SEND_NO_FAILOVER: hand it back in [`UserEvent::Undelivered`].
    NoFailover,
    /// ASAP_SEND_TO_LAST: only to the PE that got the previous message. Sent at once when
    /// the session is up with that PE (any PE if nothing was sent yet) and nothing waits
    /// before it; otherwise (connecting, failing over, moved on) handed back at once in
    /// [`UserEvent::Undelivered`]. If that PE fails before acknowledging it, it comes back
    /// like a no-failover message: it never goes to another PE.
    ToLast,
}

impl SendMode {
    /// The mode of RFC 5352 §6.5.5 send option bits (0x0001 failover, 0x0002 no
    /// failover, 0x0004 to last; the others are not a per-message mode here: to all is
    /// [`to_all_targets`] and one session per PE). Unknown bits: `None`.
    pub fn from_asap_flags(flags: u32) -> Option<SendMode> {
        match flags {
            0x0000 | 0x0001 => Some(SendMode::Failover),
            0x0002 => Some(SendMode::NoFailover),
            0x0004 | 0x0006 => Some(SendMode::ToLast),
            _ => None,
        }
    }
}

/// ASAP_SEND_TO_ALL (RFC 5352 §6.5.5): the PEs a copy goes to, in the order given — every
/// PE of `pool_pes` (a handle resolution's answer) except the sender's own PEs (`own`,
/// empty when the sender is no PE) unless `to_self` (ASAP_SEND_TO_SELF). Each copy goes
/// through a session bound to its PE ([`SessionUserConfig::failover`] false): a PE that
/// fails loses its copy (handed back), none moves to another PE — another PE has its copy
/// already.
pub fn to_all_targets(pool_pes: &[PoolElement], own: &[PeId], to_self: bool) -> Vec<PoolElement> {
    let mut seen = Vec::new();
    pool_pes
        .iter()
        .filter(|pe| to_self || !own.contains(&pe.id))
        .filter(|pe| {
            if seen.contains(&pe.id) {
                return false;
            }
            seen.push(pe.id);
            true
        })
        .cloned()
        .collect()
}

use rserpool_wire::{PeId, PoolElement};

/// The failover list of a PE's business card (§1.12): the other PEs of `pool_pes` (a
/// handle resolution of the PE's own pool) in ring order — those whose PE id follows the
/// PE's own (the smallest of `own`) in ascending order, then, wrapping, the smaller
/// ones — at most `max`. Every PE thus names a fixed successor, the same for all its PUs
/// (they fail over to one known PE, not wherever the policy points at that moment), and
/// the pool's PEs form one ring.
pub fn card_order(pool_pes: &[PoolElement], own: &[PeId], max: usize) -> Vec<PoolElement> {
    let me = own.iter().map(|p| p.0).min().unwrap_or(0);
    let mut others: Vec<PoolElement> = pool_pes
        .iter()
        .filter(|pe| !own.contains(&pe.id))
        .cloned()
        .collect();
    others.sort_by_key(|pe| (pe.id.0 <= me, pe.id.0));
    others.dedup_by_key(|pe| pe.id);
    others.truncate(max);
    others
}

/// A message the PU sent (or queued) and the PE has not acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outstanding {
    /// Session-wide sequence number (from 0, in send order).
    pub seq: u64,
    pub ppid: u32,
    pub data: Vec<u8>,
    pub mode: SendMode,
}

/// Whether TSN `tsn` is at or before `upto` (serial-number order, wrapping at 2³²).
pub(crate) fn tsn_covered(tsn: u32, upto: u32) -> bool {
    (upto.wrapping_sub(tsn) as i32) >= 0
}

#[cfg(test)]
mod tests;
