//! [`SessionUser`]: the pool user's side of a session (see the module docs of
//! [`crate::session`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{AsapMessage, PeId, PoolElement, PoolHandle, Protocol};

use super::{
    check_message, tsn_covered, Outstanding, SendMode, SessionError, PPID_SESSION_ACK,
    PPID_SESSION_HEARTBEAT, PPID_SESSION_HEARTBEAT_ACK,
};
use crate::common::{later, Outbox};
use crate::counters::Counters;
use crate::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
};
use crate::pool_user::endpoint_of;
use crate::timers::Timers;

/// PEs remembered as failed in one session (skipped in business cards, listed in
/// `NeedServer`); the oldest is forgotten first.
const MAX_FAILED: usize = 64;

/// Configuration of a [`SessionUser`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUserConfig {
    /// The pool the session talks to.
    pub pool: PoolHandle,
    /// Keep sent messages until the PE acknowledges them (needs a PE that acks: ours).
    /// Default true.
    pub acknowledged: bool,
    /// Send a session heartbeat this often while connected; `None`: no heartbeat (an RSPLIB
    /// PE would not answer it). Default 200 ms.
    pub heartbeat_interval: Option<Duration>,
    /// A PE that sends nothing for this long after a heartbeat has failed. Default 600 ms
    /// (a hung PE is detected within interval + timeout).
    pub heartbeat_timeout: Duration,
    /// A connect that has not completed after this long has failed. Default 5 s.
    pub connect_timeout: Duration,
    /// Give up after this many PE failures in a row without a sign of life. Default 8.
    pub max_attempts: u32,
    /// A PU that is itself a PE sends its own business card (pool handle and failover
    /// list) to every PE it connects to (§1.12). Default `None`.
    pub own_card: Option<(PoolHandle, Vec<PoolElement>)>,
    /// Move to another PE when the current one fails (default true). False: the session
    /// is bound to the first PE it gets (a "to all" copy, [`super::to_all_targets`]):
    /// when that PE fails, everything outstanding comes back in
    /// [`UserEvent::Undelivered`] and the session gives up ([`UserEvent::Failed`]).
    pub failover: bool,
}

impl SessionUserConfig {
    pub fn new(pool: PoolHandle) -> Self {
        Self {
            pool,
            acknowledged: true,
            heartbeat_interval: Some(Duration::from_millis(200)),
            heartbeat_timeout: Duration::from_millis(600),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 8,
            own_card: None,
            failover: true,
        }
    }
}

/// Why a PE counts as failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The connection closed or the association was lost.
    Closed,
    /// A send on the connection failed.
    SendFailed,
    /// Connecting failed.
    ConnectFailed,
    /// Connecting took longer than [`SessionUserConfig::connect_timeout`].
    ConnectTimeout,
    /// No answer to the session heartbeat in time.
    HeartbeatTimeout,
    /// The PE has no connectable user transport (UDP, opaque).
    NoTransport,
    /// The application said so ([`SessionUser::report_failure`]).
    User,
}

/// The failover filter: given the old PE and the unacknowledged messages (in order), it
/// returns the messages to resend to the next PE. Without one, all are resent.
pub type FailoverFilter = Box<dyn FnMut(PeId, Vec<Outstanding>) -> Vec<Outstanding> + Send>;

/// Requests from the application (the same as the inherent methods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserCommand {
    Connect,
    Send {
        ppid: u32,
        data: Vec<u8>,
        mode: SendMode,
    },
    UseServer(PoolElement),
    NoServer,
    ReportFailure,
    Close,
}

/// What happened, for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserEvent {
    /// Pick a PE of `pool` (answer with [`SessionUser::use_server`] or
    /// [`SessionUser::no_server`]); `exclude` lists the PEs that failed in this session.
    NeedServer {
        pool: PoolHandle,
        exclude: Vec<PeId>,
    },
    /// The first PE of the session (or after a close / give-up) is connected.
    Connected {
        pe: PeId,
    },
    /// `pe` failed: report it to the registrar (ASAP_ENDPOINT_UNREACHABLE).
    PeFailed {
        pool: PoolHandle,
        pe: PeId,
        reason: FailureReason,
    },
    FailoverStarted {
        old: PeId,
    },
    FailoverCompleted {
        old: PeId,
        new: PeId,
    },
    /// The PE sent a cookie (it replaces the one held).
    CookieReceived {
        cookie: Vec<u8>,
    },
    /// The PE sent its business card: the preferred failover order (followed only when it
    /// names the session's pool).
    BusinessCard {
        pool: PoolHandle,
        pes: Vec<PoolElement>,
    },
    /// Application data from the PE.
    Data {
        ppid: u32,
        data: Vec<u8>,
    },
    /// The PE acknowledged the message `seq`.
    Acked {
        seq: u64,
    },
    /// Messages handed back unsent or unacknowledged (no-failover messages of a failed PE,
    /// or everything when the session gives up or is closed).
    Undelivered {
        messages: Vec<Outstanding>,
    },
    /// A [`UserCommand::Send`] was refused (the method returns the error instead).
    SendRefused {
        error: SessionError,
    },
    /// The session gave up (after `max_attempts` failures in a row, or no server).
    Failed {
        reason: FailureReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum UserTimer {
    Heartbeat,
    HeartbeatTimeout,
    ConnectTimeout,
}

#[derive(Debug)]
enum State {
    Idle,
    WaitingServer,
    Connecting { pe: PoolElement, endpoint: Endpoint },
    Up { pe: PoolElement, conn: ConnId },
}

/// The PU side of a session (see the module docs of [`crate::session`]).
pub struct SessionUser {
    config: SessionUserConfig,
    rng: ChaCha8Rng,
    counters: Counters,
    outbox: Outbox,
    timers: Timers<UserTimer>,
    events: VecDeque<UserEvent>,
    commands: VecDeque<TransportCommand>,
    state: State,
    cookie: Option<Vec<u8>>,
    card: Vec<PoolElement>,
    failed: Vec<PeId>,
    next_seq: u64,
    /// Not sent yet (no PE connected).
    queue: VecDeque<Outstanding>,
    /// Sent on the current connection, not acknowledged: (TSN, message).
    unacked: VecDeque<(u32, Outstanding)>,
    /// TSN of the next application message on the current connection.
    tx_tsn: u32,
    attempts: u32,
    /// The PE whose failure started the failover in progress.
    failover_from: Option<PeId>,
    connected_once: bool,
    /// The PE that got the last message sent ("to last").
    last_pe: Option<PeId>,
    filter: Option<FailoverFilter>,
}

impl fmt::Debug for SessionUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionUser")
            .field("pool", &self.config.pool)
            .field("state", &self.state)
            .field("queued", &self.queue.len())
            .field("unacked", &self.unacked.len())
            .finish_non_exhaustive()
    }
}

impl SessionUser {
    pub fn new(config: SessionUserConfig, rng_seed: u64) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            counters: Counters::default(),
            outbox: Outbox::default(),
            timers: Timers::new(),
            events: VecDeque::new(),
            commands: VecDeque::new(),
            state: State::Idle,
            cookie: None,
            card: Vec::new(),
            failed: Vec::new(),
            next_seq: 0,
            queue: VecDeque::new(),
            unacked: VecDeque::new(),
            tx_tsn: 0,
            attempts: 0,
            failover_from: None,
            connected_once: false,
            last_pe: None,
            filter: None,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The PE the session is connected or connecting to.
    pub fn current_pe(&self) -> Option<PeId> {
        match &self.state {
            State::Connecting { pe, .. } | State::Up { pe, .. } => Some(pe.id),
            _ => None,
        }
    }
    /// The connection to the current PE, once up.
    pub fn conn(&self) -> Option<ConnId> {
        match &self.state {
            State::Up { conn, .. } => Some(*conn),
            _ => None,
        }
    }
    /// The cookie that would be echoed on the next failover.
    pub fn cookie(&self) -> Option<&[u8]> {
        self.cookie.as_deref()
    }
    /// Messages sent and not yet acknowledged, plus those not sent yet.
    pub fn outstanding(&self) -> usize {
        self.unacked.len() + self.queue.len()
    }
    /// Install the failover filter (see [`FailoverFilter`]).
    pub fn set_failover_filter(&mut self, filter: FailoverFilter) {
        self.filter = Some(filter);
    }

    /// Start the session (ask for a PE) if it is idle; sending does this too.
    pub fn connect(&mut self, _now: Instant) {
        if matches!(self.state, State::Idle) {
            self.need_server();
        }
    }

    /// Queue one application message; returns its sequence number. A reserved PPID or a
    /// message over [`super::MAX_MESSAGE_LEN`] is refused (nothing queued).
    pub fn send(
        &mut self,
        now: Instant,
        ppid: u32,
        data: Vec<u8>,
        mode: SendMode,
    ) -> Result<u64, SessionError> {
        check_message(ppid, data.len())?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let m = Outstanding {
            seq,
            ppid,
            data,
            mode,
        };
        if mode == SendMode::ToLast && !self.at_last_pe() {
            // ASAP_SEND_TO_LAST: only the PE of the previous message may have it.
            self.events
                .push_back(UserEvent::Undelivered { messages: vec![m] });
            return Ok(seq);
        }
        self.queue.push_back(m);
        match self.state {
            State::Idle => self.connect(now),
            State::Up { .. } => self.flush(),
            _ => {}
        }
        Ok(seq)
    }

    /// Whether a "to last" message can go now: the session is up with the PE that got
    /// the previous message (any PE when none was sent yet), nothing waits before it.
    fn at_last_pe(&self) -> bool {
        match &self.state {
            State::Up { pe, .. } => {
                self.queue.is_empty() && self.last_pe.is_none_or(|last| last == pe.id)
            }
            _ => false,
        }
    }

    /// The PE that got the last message sent (`None` before the first).
    pub fn last_pe(&self) -> Option<PeId> {
        self.last_pe
    }

    /// The answer to [`UserEvent::NeedServer`].
    pub fn use_server(&mut self, now: Instant, pe: PoolElement) {
        if matches!(self.state, State::WaitingServer | State::Idle) {
            self.start_connect(now, pe);
        }
    }

    /// No PE can be had: the session gives up.
    pub fn no_server(&mut self, _now: Instant) {
        if matches!(self.state, State::WaitingServer) {
            self.give_up(FailureReason::ConnectFailed);
        }
    }

    /// Transport.Failure: the application considers the current PE failed.
    pub fn report_failure(&mut self, now: Instant) {
        self.fail(now, FailureReason::User);
    }

    /// End the session: close the connection, hand back what is outstanding.
    pub fn close(&mut self, _now: Instant) {
        if let State::Up { conn, .. } = self.state {
            self.commands.push_back(TransportCommand::Close(conn));
        }
        self.reset_timers();
        self.state = State::Idle;
        self.failover_from = None;
        self.connected_once = false;
        let messages = self.drain_outstanding();
        if !messages.is_empty() {
            self.events.push_back(UserEvent::Undelivered { messages });
        }
    }

    fn drain_outstanding(&mut self) -> Vec<Outstanding> {
        let mut all: Vec<Outstanding> = self.unacked.drain(..).map(|(_, m)| m).collect();
        all.extend(self.queue.drain(..));
        all
    }

    fn reset_timers(&mut self) {
        self.timers.cancel(&UserTimer::Heartbeat);
        self.timers.cancel(&UserTimer::HeartbeatTimeout);
        self.timers.cancel(&UserTimer::ConnectTimeout);
    }

    fn need_server(&mut self) {
        self.state = State::WaitingServer;
        self.events.push_back(UserEvent::NeedServer {
            pool: self.config.pool.clone(),
            exclude: self.failed.clone(),
        });
    }

    fn start_connect(&mut self, now: Instant, pe: PoolElement) {
        let Some(endpoint) = endpoint_of(&pe) else {
            self.pe_failed(now, pe, None, FailureReason::NoTransport);
            return;
        };
        self.commands.push_back(TransportCommand::Connect {
            endpoint: endpoint.clone(),
            protocol: Protocol::Asap,
        });
        self.timers.set(
            UserTimer::ConnectTimeout,
            later(now, self.config.connect_timeout),
        );
        self.state = State::Connecting { pe, endpoint };
    }

    fn on_connected(&mut self, now: Instant, conn: ConnId) {
        let State::Connecting { pe, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        self.timers.cancel(&UserTimer::ConnectTimeout);
        let new = pe.id;
        self.state = State::Up { pe, conn };
        self.tx_tsn = 0;
        self.card.clear();
        if self.failover_from.is_some() {
            if let Some(cookie) = self.cookie.clone() {
                let msg = AsapMessage::CookieEcho { cookie };
                self.outbox.send(&mut self.counters, Dest::Conn(conn), &msg);
            }
        }
        if let Some((handle, pes)) = self.config.own_card.clone() {
            let msg = AsapMessage::BusinessCard {
                handle,
                policy: None,
                pes,
            };
            self.outbox.send(&mut self.counters, Dest::Conn(conn), &msg);
        }
        self.flush();
        if let Some(every) = self.config.heartbeat_interval {
            self.timers.set(UserTimer::Heartbeat, later(now, every));
        }
        match self.failover_from.take() {
            Some(old) => self
                .events
                .push_back(UserEvent::FailoverCompleted { old, new }),
            None => {
                if !self.connected_once {
                    self.events.push_back(UserEvent::Connected { pe: new });
                }
            }
        }
        self.connected_once = true;
    }

    /// Send every queued message on the current connection.
    fn flush(&mut self) {
        let State::Up { conn, ref pe } = self.state else {
            return;
        };
        if !self.queue.is_empty() {
            self.last_pe = Some(pe.id);
        }
        while let Some(m) = self.queue.pop_front() {
            self.outbox
                .send_data(&mut self.counters, Dest::Conn(conn), m.ppid, m.data.clone());
            if self.config.acknowledged {
                self.unacked.push_back((self.tx_tsn, m));
            }
            self.tx_tsn = self.tx_tsn.wrapping_add(1);
        }
    }

    /// The current PE failed: report, sort out the outstanding messages, go to the next.
    fn fail(&mut self, now: Instant, reason: FailureReason) {
        let (pe, conn) = match std::mem::replace(&mut self.state, State::Idle) {
            State::Connecting { pe, .. } => (pe, None),
            State::Up { pe, conn } => (pe, Some(conn)),
            other => {
                self.state = other;
                return;
            }
        };
        self.pe_failed(now, pe, conn, reason);
    }

    fn pe_failed(
        &mut self,
        now: Instant,
        pe: PoolElement,
        conn: Option<ConnId>,
        reason: FailureReason,
    ) {
        self.state = State::Idle;
        self.reset_timers();
        if let Some(conn) = conn {
            if !matches!(reason, FailureReason::Closed) {
                self.commands.push_back(TransportCommand::Abort(conn));
            }
        }
        if !self.failed.contains(&pe.id) {
            if self.failed.len() >= MAX_FAILED {
                self.failed.remove(0);
            }
            self.failed.push(pe.id);
        }
        self.events.push_back(UserEvent::PeFailed {
            pool: self.config.pool.clone(),
            pe: pe.id,
            reason,
        });
        let old = match self.failover_from {
            Some(old) => old,
            None => {
                self.failover_from = Some(pe.id);
                self.events
                    .push_back(UserEvent::FailoverStarted { old: pe.id });
                pe.id
            }
        };
        // Unacknowledged messages: no-failover ones back to the application, the others
        // through the filter, before the ones not sent yet.
        let mut resend = Vec::new();
        let mut back = Vec::new();
        for (_, m) in self.unacked.drain(..) {
            match m.mode {
                SendMode::Failover => resend.push(m),
                SendMode::NoFailover | SendMode::ToLast => back.push(m),
            }
        }
        let queued: Vec<Outstanding> = self.queue.drain(..).collect();
        for m in queued {
            match m.mode {
                SendMode::Failover => self.queue.push_back(m),
                SendMode::NoFailover | SendMode::ToLast => back.push(m),
            }
        }
        if !back.is_empty() {
            self.events
                .push_back(UserEvent::Undelivered { messages: back });
        }
        if !self.config.failover {
            // Bound to this PE: no filter, no other PE; everything comes back.
            for m in resend.into_iter().rev() {
                self.queue.push_front(m);
            }
            self.give_up(reason);
            return;
        }
        if !resend.is_empty() {
            let resend = match self.filter.as_mut() {
                Some(f) => f(old, resend),
                None => resend,
            };
            for m in resend.into_iter().rev() {
                self.queue.push_front(m);
            }
        }
        self.attempts += 1;
        if self.attempts >= self.config.max_attempts {
            self.give_up(reason);
            return;
        }
        // BC2: the card's PEs first, in its order; the rest of the card stays for the
        // next failure (a new PE's own card replaces it).
        let mut card = std::mem::take(&mut self.card);
        match card.iter().position(|c| !self.failed.contains(&c.id)) {
            Some(i) => {
                let next = card.remove(i);
                self.card = card.split_off(i);
                self.start_connect(now, next);
            }
            None => self.need_server(),
        }
    }

    fn give_up(&mut self, reason: FailureReason) {
        self.reset_timers();
        self.state = State::Idle;
        self.failover_from = None;
        self.connected_once = false;
        self.attempts = 0;
        let messages = self.drain_outstanding();
        if !messages.is_empty() {
            self.events.push_back(UserEvent::Undelivered { messages });
        }
        self.events.push_back(UserEvent::Failed { reason });
    }

    fn on_ack(&mut self, body: &[u8]) {
        let upto = match body.len() {
            4 => u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            // The bare form: one more message.
            0 => match self.unacked.front() {
                Some((tsn, _)) => *tsn,
                None => return,
            },
            _ => {
                self.counters.rx_invalid += 1;
                return;
            }
        };
        // An ACK beyond what was sent is ignored (a confused or forged peer).
        if !tsn_covered(upto, self.tx_tsn.wrapping_sub(1)) {
            self.counters.rx_invalid += 1;
            return;
        }
        while let Some((tsn, _)) = self.unacked.front() {
            if !tsn_covered(*tsn, upto) {
                break;
            }
            if let Some((_, m)) = self.unacked.pop_front() {
                self.events.push_back(UserEvent::Acked { seq: m.seq });
            }
        }
    }
}

impl Core for SessionUser {
    type Event = UserEvent;
    type Command = UserCommand;

    fn handle_message(&mut self, now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        let State::Up { conn: current, .. } = self.state else {
            return;
        };
        if conn != current {
            return;
        }
        // Any message is a sign of life.
        self.timers.cancel(&UserTimer::HeartbeatTimeout);
        match meta.protocol {
            Protocol::Asap => {
                let Some(msg) = self.outbox.accept(&mut self.counters, conn, bytes) else {
                    return;
                };
                match msg {
                    AsapMessage::Cookie { cookie } => {
                        self.cookie = Some(cookie.clone());
                        self.events.push_back(UserEvent::CookieReceived { cookie });
                    }
                    AsapMessage::BusinessCard { handle, pes, .. } => {
                        // BC2 for our pool only: a card naming another pool is reported,
                        // never followed (a PE cannot send the PU to a foreign pool).
                        if handle == self.config.pool {
                            self.card = pes.clone();
                        }
                        self.events
                            .push_back(UserEvent::BusinessCard { pool: handle, pes });
                    }
                    _ => {}
                }
            }
            Protocol::Data(PPID_SESSION_ACK) => {
                self.counters.on_rx(meta.protocol, 0);
                self.attempts = 0;
                self.on_ack(bytes);
            }
            Protocol::Data(PPID_SESSION_HEARTBEAT) => {
                self.counters.on_rx(meta.protocol, 0);
                self.outbox.send_data(
                    &mut self.counters,
                    Dest::Conn(conn),
                    PPID_SESSION_HEARTBEAT_ACK,
                    bytes.to_vec(),
                );
            }
            Protocol::Data(PPID_SESSION_HEARTBEAT_ACK) => {
                self.counters.on_rx(meta.protocol, 0);
            }
            Protocol::Data(ppid) => {
                self.counters.on_rx(meta.protocol, 0);
                self.attempts = 0;
                self.events.push_back(UserEvent::Data {
                    ppid,
                    data: bytes.to_vec(),
                });
            }
            Protocol::Enrp => {
                self.counters.wrong_protocol += 1;
            }
        }
        let _ = now;
    }

    fn handle_datagram(&mut self, _now: Instant, _meta: &RecvMeta, _bytes: &[u8]) {}

    fn handle_transport(&mut self, now: Instant, event: TransportEvent) {
        match event {
            TransportEvent::Connected { conn, endpoint } => {
                if matches!(&self.state, State::Connecting { endpoint: e, .. } if *e == endpoint) {
                    self.on_connected(now, conn);
                }
            }
            TransportEvent::ConnectFailed { endpoint } => {
                if matches!(&self.state, State::Connecting { endpoint: e, .. } if *e == endpoint) {
                    self.fail(now, FailureReason::ConnectFailed);
                }
            }
            TransportEvent::Closed { conn } => {
                if self.conn() == Some(conn) {
                    self.fail(now, FailureReason::Closed);
                }
            }
            TransportEvent::SendFailed { conn } => {
                if self.conn() == Some(conn) {
                    self.fail(now, FailureReason::SendFailed);
                }
            }
            TransportEvent::Accepted { .. } => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                UserTimer::Heartbeat => {
                    let (Some(conn), Some(every)) = (self.conn(), self.config.heartbeat_interval)
                    else {
                        continue;
                    };
                    let info = self.rng.next_u64().to_be_bytes().to_vec();
                    self.outbox.send_data(
                        &mut self.counters,
                        Dest::Conn(conn),
                        PPID_SESSION_HEARTBEAT,
                        info,
                    );
                    self.timers.set(UserTimer::Heartbeat, later(now, every));
                    if !self.timers.is_set(&UserTimer::HeartbeatTimeout) {
                        self.timers.set(
                            UserTimer::HeartbeatTimeout,
                            later(now, self.config.heartbeat_timeout),
                        );
                    }
                }
                UserTimer::HeartbeatTimeout => self.fail(now, FailureReason::HeartbeatTimeout),
                UserTimer::ConnectTimeout => self.fail(now, FailureReason::ConnectTimeout),
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: UserCommand) {
        match cmd {
            UserCommand::Connect => self.connect(now),
            UserCommand::Send { ppid, data, mode } => {
                if let Err(error) = self.send(now, ppid, data, mode) {
                    self.events.push_back(UserEvent::SendRefused { error });
                }
            }
            UserCommand::UseServer(pe) => self.use_server(now, pe),
            UserCommand::NoServer => self.no_server(now),
            UserCommand::ReportFailure => self.report_failure(now),
            UserCommand::Close => self.close(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.earliest()
    }
    fn poll_event(&mut self) -> Option<UserEvent> {
        self.events.pop_front()
    }
    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.commands.pop_front()
    }
}
