//! Pool element core: registration at a home registrar (procedures §1.1, §1.3, §1.5,
//! §1.7, §1.10), sans-IO.
//!
//! One core registers one pool handle. Each configured user transport becomes one PE entry
//! (a TCP or UDP transport TLV carries a single address, so a dual-stack PE registers two
//! entries); the first entry uses the configured PE ID, the others random ones. All
//! entries share the home registrar.
//!
//! Life cycle: the core is idle until its first input (call `handle_timeout(now)` once
//! after [`PoolElementCore::new`]); it then hunts for a registrar and registers every
//! entry. It re-registers every T4 ([`PoolElementConfig::reregistration_interval`]),
//! answers keep-alives (acking the named PE, or all its PEs of that pool when the
//! keep-alive names none), follows a registrar that claims it with the H flag, and hunts
//! for another registrar when its home fails (request timeout T2, connection closed,
//! ASAP_ERROR), re-registering there. [`PeCommand::Deregister`] de-registers for an
//! orderly shutdown.
//!
//! Refusals (R = 1): a cause that will not go away by waiting ([`refusal_is_permanent`]:
//! inconsistent policy, invalid values, …) leaves the entry `Rejected` until the
//! application changes something ([`PeEvent::RegistrationFailed`]). Lack of resources,
//! an unspecified error and causes nobody defined may pass: the entry is registered again
//! after an exponential back-off with ±25 % jitter from the core's RNG
//! ([`HuntConfig::backoff_initial`] doubling up to [`HuntConfig::backoff_max`];
//! [`PeEvent::RegistrationRefused`] says when).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{
    AsapMessage, CauseCode, LifetimeUnit, OperationError, PeId, Policy, PoolElement, PoolHandle,
    Protocol, ServerId, UserTransport,
};

use crate::common::{decode_asap_inbound, later, random_nonzero, Inbound, Outbox};
use crate::counters::Counters;
use crate::hunt::{Fired, HuntConfig, Hunter, Step};
use crate::io::{earliest, ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportEvent};
use crate::timers::Timers;

/// Configuration of a [`PoolElementCore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolElementConfig {
    /// The pool to join (created by the first PE that registers it).
    pub pool_handle: PoolHandle,
    /// PE ID of the first entry; `None` = random non-zero from the core's RNG.
    pub pe_id: Option<PeId>,
    /// One PE entry per user transport (see the module docs). Empty = nothing to register.
    pub user_transports: Vec<UserTransport>,
    /// Policy type and this PE's values; the type must match the pool's policy.
    /// Default Round Robin.
    pub policy: Policy,
    /// Registration Life sent to the registrar. Default 30 s.
    pub registration_life: Duration,
    /// Unit of the Registration Life field on the wire (design §8). Default milliseconds.
    pub lifetime_unit: LifetimeUnit,
    /// T4: re-register this often; capped at half the registration life. Default 10 s.
    pub reregistration_interval: Duration,
    /// T2/T3: wait this long for a (de-)registration response once connected.
    /// RFC 30 s, RSPLIB 3 s. Default 3 s.
    pub request_timeout: Duration,
    /// Registrars to hunt through, in configuration order.
    pub registrars: Vec<Endpoint>,
    /// Learn registrars from ASAP_SERVER_ANNOUNCE datagrams. Default true.
    pub accept_announces: bool,
    /// Server hunt knobs.
    pub hunt: HuntConfig,
}

impl Default for PoolElementConfig {
    fn default() -> Self {
        Self {
            pool_handle: PoolHandle::default(),
            pe_id: None,
            user_transports: Vec::new(),
            policy: Policy::RoundRobin,
            registration_life: Duration::from_secs(30),
            lifetime_unit: LifetimeUnit::Milliseconds,
            reregistration_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(3),
            registrars: Vec::new(),
            accept_announces: true,
            hunt: HuntConfig::default(),
        }
    }
}

/// Requests from the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeCommand {
    /// (Re-)start registering, e.g. after [`PeCommand::Deregister`] or a rejection.
    Register,
    /// De-register every entry (orderly shutdown); no re-registration afterwards.
    Deregister,
    /// New policy values (e.g. a new load): re-register now. Also retries entries the
    /// registrar rejected.
    UpdatePolicy(Policy),
}

/// What happened, for the application and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeEvent {
    /// The entry is registered at a (new) home registrar. Not repeated for periodic
    /// re-registrations at the same registrar. `home` is the registrar's server ID when
    /// known (from an announce or a keep-alive; a registration response does not carry it).
    Registered {
        pe_id: PeId,
        home: Option<ServerId>,
        conn: ConnId,
    },
    /// The registrar rejected the entry (R = 1) for a cause that does not pass by waiting
    /// ([`refusal_is_permanent`]). It is not retried unchanged: send
    /// [`PeCommand::UpdatePolicy`] or [`PeCommand::Register`] to retry.
    RegistrationFailed {
        pe_id: PeId,
        cause: CauseCode,
        error: Option<OperationError>,
    },
    /// The registrar refused the entry for a cause that may pass (lack of resources,
    /// unspecified, undefined causes); the core registers it again at `retry_at`.
    RegistrationRefused {
        pe_id: PeId,
        cause: CauseCode,
        error: Option<OperationError>,
        retry_at: Instant,
    },
    /// The home registrar dropped the entry (unsolicited DEREGISTRATION_RESPONSE, e.g. its
    /// Registration Life expired); the core re-registers at once.
    RegistrationLost { pe_id: PeId },
    /// A registrar claimed this PE with a keep-alive carrying the H flag; it is the new home.
    HomeChanged { server_id: ServerId, conn: ConnId },
    /// De-registered; `confirmed` = the registrar answered (false: no home reachable or
    /// T3 expired; the registration will lapse by its Registration Life).
    Deregistered { pe_id: PeId, confirmed: bool },
    /// Every known registrar failed; the next hunt round starts at `retry_at`.
    NoRegistrar { retry_at: Instant },
    /// An ASAP_ERROR arrived.
    ErrorReceived { conn: ConnId, error: OperationError },
}

/// Whether a registration refused with `cause` stays refused however long the PE waits:
/// the request itself is wrong or clashes with the pool (unrecognized parameter or message,
/// invalid values, non-unique PE identifier, inconsistent policy / transport /
/// data-control configuration, unknown pool handle, rejected for security, RSPLIB's
/// invalid-… codes). Lack of resources (0x6), an unspecified error (0x0) and codes nobody
/// defined are worth retrying later.
pub fn refusal_is_permanent(cause: CauseCode) -> bool {
    !(cause == CauseCode::LACK_OF_RESOURCES
        || cause == CauseCode::UNSPECIFIED
        || cause.name().is_none())
}

/// Registration state of one PE entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeStatus {
    /// Not registered (yet), or waiting for the first response.
    Unregistered,
    /// Registered at the home registrar.
    Registered,
    /// Rejected by the registrar; waiting for the application.
    Rejected,
    /// De-registration sent.
    Deregistering,
    /// De-registered (stopped).
    Deregistered,
}

/// Where a registration was sent (to tell whether a connection already carries it).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sent {
    Endpoint(Endpoint),
    Conn(ConnId),
}

#[derive(Debug)]
struct Entry {
    pe: PoolElement,
    status: PeStatus,
    /// A REGISTRATION is outstanding.
    pending: bool,
    sent_to: Option<Sent>,
    /// Connection of the registrar that last accepted this entry.
    registered_on: Option<ConnId>,
}

#[derive(Debug)]
struct Home {
    conn: ConnId,
    server_id: Option<ServerId>,
}

/// The timers of [`PoolElementCore`] (ids in its [`Timers`] table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PeTimer {
    /// T2/T3 on the connection we wait on (home, or the hunt's current candidate).
    Request,
    /// T4: register again.
    Reregister,
    /// A temporary refusal: register the refused entries again then.
    Retry,
}

/// The pool element core. See the module documentation.
#[derive(Debug)]
pub struct PoolElementCore {
    cfg: PoolElementConfig,
    rng: ChaCha8Rng,
    started: bool,
    entries: Vec<Entry>,
    hunter: Hunter,
    conns: BTreeMap<ConnId, Endpoint>,
    home: Option<Home>,
    /// The core's timers (besides the hunt's): see [`PeTimer`].
    timers: Timers<PeTimer>,
    stopping: bool,
    /// Policy changed while a registration was outstanding: re-register after it.
    dirty: bool,
    /// Next back-off after a temporary refusal (doubles, reset by an acceptance).
    refusal_backoff: Duration,
    counters: Counters,
    out: Outbox,
    events: VecDeque<PeEvent>,
}

impl PoolElementCore {
    /// A new core; idle until its first input (call `handle_timeout(now)` once).
    pub fn new(config: PoolElementConfig, rng_seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let life = config
            .lifetime_unit
            .from_duration(Some(config.registration_life));
        let mut entries = Vec::new();
        for (i, ut) in config.user_transports.iter().enumerate() {
            let id = match (i, config.pe_id) {
                (0, Some(id)) => id,
                _ => loop {
                    let id = PeId(random_nonzero(&mut rng));
                    if Some(id) != config.pe_id && !entries.iter().any(|e: &Entry| e.pe.id == id) {
                        break id;
                    }
                },
            };
            entries.push(Entry {
                pe: PoolElement {
                    id,
                    home_registrar: ServerId::UNDETERMINED,
                    registration_life: life,
                    user_transport: ut.clone(),
                    policy: config.policy.clone(),
                    asap_transport: None,
                },
                status: PeStatus::Unregistered,
                pending: false,
                sent_to: None,
                registered_on: None,
            });
        }
        let hunter = Hunter::new(
            config.hunt.clone(),
            config.registrars.clone(),
            config.accept_announces,
        );
        let refusal_backoff = config.hunt.backoff_initial;
        Self {
            cfg: config,
            rng,
            started: false,
            entries,
            hunter,
            conns: BTreeMap::new(),
            home: None,
            timers: Timers::new(),
            stopping: false,
            dirty: false,
            refusal_backoff,
            counters: Counters::default(),
            out: Outbox::default(),
            events: VecDeque::new(),
        }
    }

    /// The PE IDs of all entries, in configuration order.
    pub fn pe_ids(&self) -> Vec<PeId> {
        self.entries.iter().map(|e| e.pe.id).collect()
    }

    /// Each entry's registration state.
    pub fn status(&self) -> Vec<(PeId, PeStatus)> {
        self.entries.iter().map(|e| (e.pe.id, e.status)).collect()
    }

    /// The home registrar's connection and server ID (when known).
    pub fn home(&self) -> Option<(ConnId, Option<ServerId>)> {
        self.home.as_ref().map(|h| (h.conn, h.server_id))
    }

    /// Message counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn t4(&self) -> Duration {
        self.cfg
            .reregistration_interval
            .min(self.cfg.registration_life / 2)
            .max(Duration::from_millis(10))
    }

    fn ensure_started(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.register_all(now, None);
        }
    }

    fn send_registration(&mut self, i: usize, dest: Dest) {
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        e.sent_to = Some(match &dest {
            Dest::Endpoint(ep) => Sent::Endpoint(ep.clone()),
            Dest::Conn(c) => Sent::Conn(*c),
            Dest::Datagram(_) => return,
        });
        let msg = AsapMessage::Registration {
            handle: self.cfg.pool_handle.clone(),
            pe: e.pe.clone(),
        };
        self.out.send(&mut self.counters, dest, &msg);
    }

    /// Whether entry `i`'s outstanding registration already went to `conn`.
    fn sent_on(&self, i: usize, conn: ConnId) -> bool {
        match &self.entries[i].sent_to {
            Some(Sent::Conn(c)) => *c == conn,
            Some(Sent::Endpoint(ep)) => self.conns.get(&conn) == Some(ep),
            None => false,
        }
    }

    /// Send every pending registration not yet sent on `conn`; arm T2.
    fn flush_pending_to(&mut self, now: Instant, conn: ConnId) {
        let mut any = false;
        for i in 0..self.entries.len() {
            if self.entries[i].pending {
                any = true;
                if !self.sent_on(i, conn) {
                    self.send_registration(i, Dest::Conn(conn));
                }
            }
        }
        if any {
            self.timers
                .set(PeTimer::Request, later(now, self.cfg.request_timeout));
        }
    }

    /// (Re-)register every entry that should be registered: at home, or via a hunt.
    fn register_all(&mut self, now: Instant, avoid: Option<Endpoint>) {
        if self.stopping {
            return;
        }
        let mut any = false;
        for e in &mut self.entries {
            if matches!(e.status, PeStatus::Unregistered | PeStatus::Registered) {
                e.pending = true;
                e.sent_to = None;
                any = true;
            }
        }
        if !any {
            return;
        }
        self.timers.cancel(&PeTimer::Reregister);
        if let Some(conn) = self.home.as_ref().map(|h| h.conn) {
            self.flush_pending_to(now, conn);
        } else if let Some(conn) = self.hunter.current_conn() {
            self.flush_pending_to(now, conn);
        } else if !self.hunter.is_hunting() {
            self.start_hunt(now, avoid);
        }
    }

    fn start_hunt(&mut self, now: Instant, avoid: Option<Endpoint>) {
        self.home = None;
        self.timers.cancel(&PeTimer::Request);
        let step = self.hunter.start(now, &mut self.rng, avoid.as_ref());
        self.on_step(now, step);
    }

    fn on_step(&mut self, now: Instant, step: Step) {
        match step {
            Step::Try(ep) if !self.entries.iter().any(|e| e.pending) => {
                let _ = ep;
                self.hunter.stop();
            }
            Step::Try(ep) if self.conns.values().any(|e| *e == ep) => {
                // Already connected to it (e.g. retrying the only registrar).
                if let Some(conn) = self.conns.iter().find(|(_, e)| **e == ep).map(|(c, _)| *c) {
                    self.hunter.connected(conn, &ep);
                    self.flush_pending_to(now, conn);
                }
            }
            Step::Try(ep) => match self.entries.iter().position(|e| e.pending) {
                // The opener: one registration carries the connection set-up; the others
                // follow once the connection is known (flush_pending_to).
                Some(i) => self.send_registration(i, Dest::Endpoint(ep)),
                None => self.hunter.stop(),
            },
            Step::Exhausted(retry_at) => self.events.push_back(PeEvent::NoRegistrar { retry_at }),
        }
    }

    /// The home failed (timeout, closed, error): hunt for another one and re-register.
    /// `gone`: the endpoint of the home's connection when it is already forgotten.
    fn home_failed(&mut self, now: Instant, gone: Option<Endpoint>) {
        let avoid = self
            .home
            .take()
            .and_then(|h| self.conns.get(&h.conn).cloned())
            .or(gone);
        self.timers.cancel(&PeTimer::Request);
        if self.stopping {
            self.finish_deregistration(false);
            return;
        }
        for e in &mut self.entries {
            e.pending = false;
        }
        self.register_all(now, avoid);
    }

    /// The hunt's current candidate failed: next candidate.
    fn attempt_failed(&mut self, now: Instant) {
        self.timers.cancel(&PeTimer::Request);
        for e in &mut self.entries {
            e.sent_to = None;
        }
        let step = self.hunter.advance(now);
        self.on_step(now, step);
    }

    fn finish_deregistration(&mut self, confirmed: bool) {
        for e in &mut self.entries {
            if e.status == PeStatus::Deregistering {
                e.status = PeStatus::Deregistered;
                self.events.push_back(PeEvent::Deregistered {
                    pe_id: e.pe.id,
                    confirmed,
                });
            }
        }
        self.timers.cancel(&PeTimer::Request);
    }

    fn deregister(&mut self, now: Instant) {
        self.stopping = true;
        self.dirty = false;
        self.timers.cancel(&PeTimer::Reregister);
        self.timers.cancel(&PeTimer::Retry);
        self.timers.cancel(&PeTimer::Request);
        self.hunter.stop();
        let home = self.home.as_ref().map(|h| h.conn);
        let handle = self.cfg.pool_handle.clone();
        let mut sent = false;
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            let was_active = e.status == PeStatus::Registered || e.pending;
            e.pending = false;
            if !was_active {
                if e.status != PeStatus::Rejected {
                    e.status = PeStatus::Deregistered;
                }
                continue;
            }
            let pe_id = e.pe.id;
            match home {
                Some(conn) => {
                    e.status = PeStatus::Deregistering;
                    let msg = AsapMessage::Deregistration {
                        handle: handle.clone(),
                        pe_id,
                    };
                    self.out.send(&mut self.counters, Dest::Conn(conn), &msg);
                    sent = true;
                }
                None => {
                    e.status = PeStatus::Deregistered;
                    self.events.push_back(PeEvent::Deregistered {
                        pe_id,
                        confirmed: false,
                    });
                }
            }
        }
        if sent {
            self.timers
                .set(PeTimer::Request, later(now, self.cfg.request_timeout));
        }
    }

    /// A connection answered during a hunt, or a registrar claimed us: make it home.
    fn adopt_home(&mut self, now: Instant, conn: ConnId, server_id: Option<ServerId>) {
        let server_id = server_id.or_else(|| {
            self.conns
                .get(&conn)
                .and_then(|ep| self.hunter.server_id_of(ep))
        });
        self.home = Some(Home { conn, server_id });
        self.hunter.succeeded();
        self.timers.cancel(&PeTimer::Request);
        if self.entries.iter().any(|e| e.pending) {
            self.flush_pending_to(now, conn);
        }
    }

    fn all_answered(&mut self, now: Instant) {
        self.timers.cancel(&PeTimer::Request);
        if self.stopping {
            return;
        }
        if self.dirty {
            self.dirty = false;
            self.register_all(now, None);
            return;
        }
        if self
            .entries
            .iter()
            .any(|e| e.status == PeStatus::Registered)
        {
            self.timers.set(PeTimer::Reregister, later(now, self.t4()));
        }
    }

    fn on_registration_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        reject: bool,
        handle: &PoolHandle,
        pe_id: PeId,
        error: Option<OperationError>,
    ) {
        let Some(i) = self
            .entries
            .iter()
            .position(|e| e.pe.id == pe_id && e.pending)
        else {
            self.counters.dropped += 1;
            return;
        };
        if handle != &self.cfg.pool_handle {
            self.counters.dropped += 1;
            return;
        }
        match self.home.as_ref().map(|h| h.conn) {
            Some(h) if h == conn => {}
            Some(_) => {
                // A late answer from a registrar we gave up on: ignore it; that
                // registration lapses by its Registration Life.
                self.counters.dropped += 1;
                return;
            }
            None => {
                self.hunter.note_conn(conn);
                self.adopt_home(now, conn, None);
            }
        }
        let home_id = self.home.as_ref().and_then(|h| h.server_id);
        let e = &mut self.entries[i];
        e.pending = false;
        e.sent_to = None;
        if reject {
            e.registered_on = None;
            let cause = error
                .as_ref()
                .and_then(OperationError::first_code)
                .unwrap_or(CauseCode::UNSPECIFIED);
            if refusal_is_permanent(cause) {
                e.status = PeStatus::Rejected;
                self.events.push_back(PeEvent::RegistrationFailed {
                    pe_id,
                    cause,
                    error,
                });
            } else {
                e.status = PeStatus::Unregistered;
                let retry_at = self.schedule_retry(now);
                self.events.push_back(PeEvent::RegistrationRefused {
                    pe_id,
                    cause,
                    error,
                    retry_at,
                });
            }
        } else {
            self.refusal_backoff = self.cfg.hunt.backoff_initial;
            let new_home = e.status != PeStatus::Registered || e.registered_on != Some(conn);
            e.status = PeStatus::Registered;
            e.registered_on = Some(conn);
            if new_home {
                self.events.push_back(PeEvent::Registered {
                    pe_id,
                    home: home_id,
                    conn,
                });
            }
        }
        if !self.entries.iter().any(|e| e.pending) {
            self.all_answered(now);
        }
    }

    /// After a temporary refusal: when to register again (exponential back-off, ±25 %
    /// jitter), shared by every entry refused meanwhile.
    fn schedule_retry(&mut self, now: Instant) -> Instant {
        if let Some(at) = self.timers.deadline(&PeTimer::Retry) {
            return at;
        }
        let jitter = self.rng.gen_range(0.75..1.25);
        let at = later(now, self.refusal_backoff.mul_f64(jitter));
        self.refusal_backoff = self
            .refusal_backoff
            .saturating_mul(2)
            .min(self.cfg.hunt.backoff_max.max(self.cfg.hunt.backoff_initial));
        self.timers.set(PeTimer::Retry, at);
        at
    }

    fn on_deregistration_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: &PoolHandle,
        pe_id: PeId,
        error: Option<OperationError>,
    ) {
        let home = self.home.as_ref().map(|h| h.conn);
        let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.pe.id == pe_id && handle == &self.cfg.pool_handle)
        else {
            self.counters.dropped += 1;
            return;
        };
        match e.status {
            PeStatus::Deregistering if home == Some(conn) => {
                e.status = PeStatus::Deregistered;
                self.events.push_back(PeEvent::Deregistered {
                    pe_id,
                    confirmed: error.is_none(),
                });
                if !self
                    .entries
                    .iter()
                    .any(|e| e.status == PeStatus::Deregistering)
                {
                    self.timers.cancel(&PeTimer::Request);
                }
            }
            PeStatus::Registered if e.registered_on == Some(conn) && !e.pending => {
                // Unsolicited: the registrar expired us. Register again at once.
                e.status = PeStatus::Unregistered;
                e.registered_on = None;
                self.events.push_back(PeEvent::RegistrationLost { pe_id });
                if home == Some(conn) {
                    e.pending = true;
                    e.sent_to = None;
                    self.flush_pending_to(now, conn);
                } else {
                    self.register_all(now, None);
                }
            }
            _ => self.counters.dropped += 1,
        }
    }

    fn on_keep_alive(
        &mut self,
        now: Instant,
        conn: ConnId,
        home_flag: bool,
        server_id: ServerId,
        handle: PoolHandle,
        pe_id: Option<PeId>,
    ) {
        // KA1: only for our pool.
        if handle != self.cfg.pool_handle {
            self.counters.dropped += 1;
            return;
        }
        let alive = |e: &Entry| e.status == PeStatus::Registered || e.pending;
        let ids: Vec<PeId> = match pe_id {
            Some(id) => self
                .entries
                .iter()
                .filter(|e| e.pe.id == id && alive(e))
                .map(|e| e.pe.id)
                .collect(),
            None => self
                .entries
                .iter()
                .filter(|e| alive(e))
                .map(|e| e.pe.id)
                .collect(),
        };
        if ids.is_empty() {
            self.counters.dropped += 1;
            return;
        }
        // KA2: acknowledge on the connection the keep-alive came in on.
        for id in ids {
            let msg = AsapMessage::EndpointKeepAliveAck {
                handle: handle.clone(),
                pe_id: id,
            };
            self.out.send(&mut self.counters, Dest::Conn(conn), &msg);
        }
        let (home_conn, home_id) = match &self.home {
            Some(h) => (Some(h.conn), h.server_id),
            None => (None, None),
        };
        if self.stopping {
            return;
        }
        if home_flag && (home_conn != Some(conn) || home_id != Some(server_id)) {
            // KA2.4: the sender becomes our home.
            let changed = home_conn != Some(conn) || home_id.is_some();
            self.adopt_home(now, conn, Some(server_id));
            for e in &mut self.entries {
                if e.status == PeStatus::Registered {
                    e.registered_on = Some(conn);
                }
            }
            if changed {
                self.events
                    .push_back(PeEvent::HomeChanged { server_id, conn });
            }
        } else if home_conn == Some(conn) && home_id.is_none() {
            if let Some(h) = &mut self.home {
                h.server_id = Some(server_id);
            }
        }
    }

    fn on_error(&mut self, now: Instant, conn: ConnId, error: OperationError) {
        self.events
            .push_back(PeEvent::ErrorReceived { conn, error });
        // RSPLIB: an ASAP_ERROR makes the PE drop that registrar and hunt again.
        if self.home.as_ref().map(|h| h.conn) == Some(conn) {
            self.home_failed(now, None);
        } else if self.hunter.current_conn() == Some(conn) {
            self.attempt_failed(now);
        }
    }
}

impl Core for PoolElementCore {
    type Event = PeEvent;
    type Command = PeCommand;

    fn handle_message(&mut self, now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        self.ensure_started(now);
        if meta.protocol != Protocol::Asap {
            self.counters.wrong_protocol += 1;
            return;
        }
        // Errors and reports (action `11` parameters) are answered inside `accept`.
        let Some(msg) = self.out.accept(&mut self.counters, conn, bytes) else {
            return;
        };
        match msg {
            AsapMessage::RegistrationResponse {
                reject,
                handle,
                pe_id,
                error,
            } => self.on_registration_response(now, conn, reject, &handle, pe_id, error),
            AsapMessage::DeregistrationResponse {
                handle,
                pe_id,
                error,
            } => self.on_deregistration_response(now, conn, &handle, pe_id, error),
            AsapMessage::EndpointKeepAlive {
                home,
                server_id,
                handle,
                pe_id,
            } => self.on_keep_alive(now, conn, home, server_id, handle, pe_id),
            AsapMessage::ServerAnnounce {
                server_id,
                transports,
            } => {
                self.hunter
                    .on_announce(now, meta.peer, server_id, &transports);
            }
            AsapMessage::Error { error } => self.on_error(now, conn, error),
            // Not for a PE's registrar channel (cookies and business cards belong to the
            // PU↔PE session): ignore, as RSPLIB does.
            _ => self.counters.dropped += 1,
        }
    }

    fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, bytes: &[u8]) {
        self.ensure_started(now);
        match decode_asap_inbound(bytes, &mut self.counters) {
            Inbound::Message(
                AsapMessage::ServerAnnounce {
                    server_id,
                    transports,
                },
                _,
            ) => {
                let new = self
                    .hunter
                    .on_announce(now, meta.peer, server_id, &transports);
                // RSPLIB: a newly heard registrar ends a back-off at once.
                if new && self.hunter.in_backoff() && self.entries.iter().any(|e| e.pending) {
                    self.start_hunt(now, None);
                }
            }
            Inbound::Message(..) => self.counters.dropped += 1,
            Inbound::Invalid(_) => {}
        }
    }

    fn handle_transport(&mut self, now: Instant, event: TransportEvent) {
        self.ensure_started(now);
        match event {
            TransportEvent::Accepted { .. } => {}
            TransportEvent::Connected { conn, endpoint } => {
                self.conns.insert(conn, endpoint.clone());
                if self.home.is_none() && self.hunter.connected(conn, &endpoint) {
                    self.flush_pending_to(now, conn);
                }
            }
            TransportEvent::ConnectFailed { endpoint } => {
                if self.hunter.is_current_endpoint(&endpoint)
                    && self.hunter.current_conn().is_none()
                {
                    self.attempt_failed(now);
                }
            }
            TransportEvent::Closed { conn } | TransportEvent::SendFailed { conn } => {
                // Forget it first, so the hunt that may follow does not pick it again.
                let endpoint = self.conns.remove(&conn);
                if self.home.as_ref().map(|h| h.conn) == Some(conn) {
                    self.home_failed(now, endpoint);
                } else if self.hunter.current_conn() == Some(conn) {
                    self.attempt_failed(now);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ensure_started(now);
        match self.hunter.handle_timeout(now) {
            Some(Fired::AttemptTimedOut) => self.attempt_failed(now),
            Some(Fired::BackoffOver) if self.entries.iter().any(|e| e.pending) => {
                self.start_hunt(now, None);
            }
            _ => {}
        }
        if self.timers.is_due(&PeTimer::Request, now) {
            self.timers.cancel(&PeTimer::Request);
            if self.stopping {
                self.finish_deregistration(false);
            } else if self.home.is_some() {
                self.home_failed(now, None);
            } else if self.hunter.current_conn().is_some() {
                self.attempt_failed(now);
            }
        }
        if self.timers.is_due(&PeTimer::Reregister, now) {
            self.timers.cancel(&PeTimer::Reregister);
            self.register_all(now, None);
        }
        if self.timers.is_due(&PeTimer::Retry, now) {
            self.timers.cancel(&PeTimer::Retry);
            if !self.entries.iter().any(|e| e.pending) {
                self.register_all(now, None);
            } else {
                // A registration is under way: retry the refused ones right after it.
                self.dirty = true;
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: PeCommand) {
        self.ensure_started(now);
        match cmd {
            PeCommand::Register => {
                self.stopping = false;
                for e in &mut self.entries {
                    if e.status != PeStatus::Registered {
                        e.status = PeStatus::Unregistered;
                    }
                }
                self.register_all(now, None);
            }
            PeCommand::Deregister => self.deregister(now),
            PeCommand::UpdatePolicy(policy) => {
                for e in &mut self.entries {
                    e.pe.policy = policy.clone();
                    if e.status == PeStatus::Rejected {
                        e.status = PeStatus::Unregistered;
                    }
                }
                self.cfg.policy = policy;
                if self.stopping {
                    return;
                }
                if self.entries.iter().any(|e| e.pending) {
                    self.dirty = true;
                } else {
                    self.register_all(now, None);
                }
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.hunter.poll_timeout(), self.timers.earliest())
    }

    fn poll_event(&mut self) -> Option<PeEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
