//! Pool user core: handle resolution with a cache, PE selection and failover
//! (procedures §1.4, §1.6, §1.7, §1.8, §1.13), sans-IO.
//!
//! The application asks for a server with [`PuCommand::GetPrimaryServer`] and, after a
//! failure, [`PuCommand::GetNextServer`] (the applicability statement's minimal service).
//! Each request carries a [`RequestId`] and is answered by exactly one
//! [`PuEvent::Server`] or [`PuEvent::Failed`].
//!
//! * Cache (C1–C4): one entry per pool handle, filled by an ASAP_HANDLE_RESOLUTION_RESPONSE
//!   and fresh for `stale_cache_value`. A fresh entry answers at once; a stale or missing
//!   one queues the request behind a new handle resolution (blocking, as RSPLIB). If that
//!   resolution fails (no registrar, timeout) the stale entry still answers.
//! * Selection: the pool's overall policy from the response, run over the cached PEs by
//!   [`PuCache`] (round robin rotates, least-used picks the lowest load …).
//! * Failover: `GetNextServer` reports the PE handed out last for that pool as failed: it
//!   leaves the cache, is not taken from a fresh response for `stale_cache_value`, and one
//!   ASAP_ENDPOINT_UNREACHABLE goes to the home registrar (one per failure: a PE is only
//!   reported while it is in the cache). Other entries with the same ASAP transport (other
//!   transports of the same PE process, e.g. its IPv4 and IPv6 entries) are tried only
//!   after every other PE of the pool.
//! * Subscriptions ([`PoolUserConfig::subscribe`], default on): handle resolutions carry
//!   S = 1. When the registrar answers A = 1 the pool's entry is kept up to date by the
//!   responses it pushes ([`PuEvent::Pushed`]) and stays fresh while the subscription
//!   stands (no re-resolution on the stale timer); with A = 0 (RSPLIB, or a registrar at
//!   its limit) the stale timer applies as before. A subscription stands on the
//!   connection it was accepted on while that is the home connection: when the home
//!   fails or changes, the subscribed pools are resolved (and subscribed) again at the
//!   new home, and meanwhile their entries age by the stale timer from the last push. A
//!   pushed negative response (the pool is gone) empties the entry and ends the
//!   subscription. Pools not asked about for 10 × `stale_cache_value` (at least a
//!   minute) are forgotten and unsubscribed (S = 0).
//! * Registrar: server hunt like the PE core (`Dest::Endpoint` to a candidate with the
//!   first pending request). T1 ([`PoolUserConfig::request_timeout`]) expiry moves to
//!   another registrar, up to [`PoolUserConfig::max_request_retries`] times.
//! * No registrar: when every known registrar failed, a request with a (stale) cache entry
//!   is answered from it at once. Without one, and when announces are accepted, it waits
//!   up to [`PoolUserConfig::registrar_wait`] for a registrar: a newly announced one is
//!   tried at once (also in the middle of a hunt round), and a new round starts after
//!   each back-off. Only then does it fail with [`PuError::NoRegistrar`]. Without
//!   announces it fails as soon as the round is over.
//!
//! The core needs no start: it acts on commands only.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_wire::{
    AsapMessage, OperationError, PeId, Policy, PolicyType, PoolElement, PoolHandle, Protocol,
    ServerId, TransportAddr,
};

use crate::common::{decode_asap_inbound, later, Inbound, Outbox};
use crate::counters::Counters;
use crate::handlespace::PuCache;
use crate::hunt::{Fired, Hunter, Step};
use crate::io::{earliest, ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportEvent};
use crate::timers::Timers;

mod api;
pub use api::*;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Sent {
    Endpoint(Endpoint),
    Conn(ConnId),
}

#[derive(Debug)]
struct Hr {
    sent_to: Option<Sent>,
    /// T1; armed once the request went out on a known connection.
    deadline: Option<Instant>,
    retries: u32,
}

#[derive(Debug)]
struct Failed {
    id: PeId,
    /// ASAP transport of the failed PE: entries sharing it belong to the same process.
    group: Option<TransportAddr>,
    until: Instant,
}

#[derive(Debug)]
struct Cached {
    sel: PuCache,
    fetched: Instant,
    /// Marked stale by the application ([`PoolUserCore::mark_stale`]).
    expired: bool,
}

impl Cached {
    fn fresh(&self, now: Instant, stale: Duration) -> bool {
        !self.expired && now < later(self.fetched, stale)
    }
}

#[derive(Debug, Default)]
struct PoolState {
    cache: Option<Cached>,
    /// Other transports of failed PEs, tried after every other PE.
    alternates: Vec<PoolElement>,
    failed: Vec<Failed>,
    last: Option<PoolElement>,
    waiting: Vec<RequestId>,
    hr: Option<Hr>,
    /// The connection the registrar accepted our subscription on (A = 1).
    subscribed: Option<ConnId>,
    /// When the application last asked for this pool.
    used: Option<Instant>,
    /// The pending resolution only renews a lost subscription (no request waits): it
    /// keeps hunting (with the hunt's back-off) instead of failing.
    resub: bool,
}

impl PoolState {
    fn is_failed(&self, pe: &PoolElement, now: Instant) -> bool {
        self.failed.iter().any(|f| {
            f.until > now && (f.id == pe.id || (f.group.is_some() && f.group == pe.asap_transport))
        })
    }

    /// A resolution that only renews a subscription, with no request waiting for it.
    fn background(&self) -> bool {
        self.resub && self.waiting.is_empty()
    }

    /// Whether a request could be answered from what is cached (fresh or stale).
    fn has_candidates(&self) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|c| !c.sel.entries().is_empty())
            || !self.alternates.is_empty()
    }

    /// One PE: the cache by policy, then the alternates.
    fn select(&mut self, rng: &mut ChaCha8Rng) -> Option<PoolElement> {
        if let Some(c) = &mut self.cache {
            if let Some(pe) = c.sel.select(rng) {
                return Some(pe.clone());
            }
        }
        self.alternates.first().cloned()
    }
}

/// The timers of [`PoolUserCore`] (ids in its [`Timers`] table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PuTimer {
    /// Every registrar failed: pending requests wait for an announced one until then.
    RegistrarWait,
}

/// The pool user core. See the module documentation.
#[derive(Debug)]
pub struct PoolUserCore {
    cfg: PoolUserConfig,
    rng: ChaCha8Rng,
    hunter: Hunter,
    conns: BTreeMap<ConnId, Endpoint>,
    home: Option<ConnId>,
    pools: BTreeMap<PoolHandle, PoolState>,
    /// Unreachable reports waiting for a home registrar.
    pending_reports: Vec<(PoolHandle, PeId)>,
    /// Unsubscriptions (S = 0) sent whose answers are still to come, per connection and
    /// pool: those answers are not taken for the answer to a later request.
    unsubscribing: BTreeMap<(ConnId, PoolHandle), u32>,
    /// The core's timers ([`PuTimer`]); each handle resolution's own T1 stays in its
    /// request (`Hr::deadline`), with the rest of the request's state.
    timers: Timers<PuTimer>,
    counters: Counters,
    out: Outbox,
    events: VecDeque<PuEvent>,
}

const MAX_PENDING_REPORTS: usize = 64;
const MAX_UNSUBSCRIBING: usize = 1024;

impl PoolUserCore {
    /// A new core.
    pub fn new(config: PoolUserConfig, rng_seed: u64) -> Self {
        let hunter = Hunter::new(
            config.hunt.clone(),
            config.registrars.clone(),
            config.accept_announces,
        );
        Self {
            cfg: config,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            hunter,
            conns: BTreeMap::new(),
            home: None,
            pools: BTreeMap::new(),
            pending_reports: Vec::new(),
            unsubscribing: BTreeMap::new(),
            timers: Timers::new(),
            counters: Counters::default(),
            out: Outbox::default(),
            events: VecDeque::new(),
        }
    }

    /// Message counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The home registrar's connection.
    pub fn home(&self) -> Option<ConnId> {
        self.home
    }

    /// The cached PEs of a pool (in cache order; failed PEs removed) and whether the entry
    /// is still fresh at `now`.
    pub fn cached(&self, pool: &PoolHandle, now: Instant) -> Option<(Vec<PoolElement>, bool)> {
        let c = self.pools.get(pool)?.cache.as_ref()?;
        Some((
            c.sel.entries().to_vec(),
            c.fresh(now, self.cfg.stale_cache_value),
        ))
    }

    /// Take the cached entry of `pool` as stale: the next request for it resolves the
    /// handle again (e.g. to check that a PE is still registered).
    pub fn mark_stale(&mut self, pool: &PoolHandle) {
        if let Some(c) = self.pools.get_mut(pool).and_then(|s| s.cache.as_mut()) {
            c.expired = true;
        }
    }

    /// The registrars a hunt would try now: the configured ones, then those heard
    /// announcing themselves (while their announce is valid).
    pub fn known_registrars(&self, now: Instant) -> Vec<Endpoint> {
        self.hunter.known(now)
    }

    fn answer(
        &mut self,
        request: RequestId,
        pool: &PoolHandle,
        result: Result<PoolElement, PuError>,
    ) {
        let ev = match result {
            Ok(pe) => {
                if let Some(st) = self.pools.get_mut(pool) {
                    st.last = Some(pe.clone());
                }
                PuEvent::Server {
                    request,
                    pool: pool.clone(),
                    pe,
                }
            }
            Err(error) => PuEvent::Failed {
                request,
                pool: pool.clone(),
                error,
            },
        };
        self.events.push_back(ev);
    }

    fn get_server(&mut self, now: Instant, request: RequestId, pool: PoolHandle) {
        let stale = self.cfg.stale_cache_value;
        let home = self.home;
        let st = self.pools.entry(pool.clone()).or_default();
        st.used = Some(now);
        if st.hr.is_some() {
            st.waiting.push(request);
            return;
        }
        // A standing subscription keeps the entry fresh (pushes replace it).
        let pushed = st.subscribed.is_some() && st.subscribed == home;
        let fresh = st
            .cache
            .as_ref()
            .is_some_and(|c| c.fresh(now, stale) || (pushed && !c.expired));
        if fresh {
            if let Some(pe) = st.select(&mut self.rng) {
                self.answer(request, &pool, Ok(pe));
                return;
            }
        }
        st.waiting.push(request);
        st.hr = Some(Hr {
            sent_to: None,
            deadline: None,
            retries: 0,
        });
        self.dispatch(now);
    }

    /// `pe_id` of `pool` failed: drop it from the cache, exclude it, park the other
    /// transports of the same PE, and report it once.
    fn fail_pe(&mut self, now: Instant, pool: &PoolHandle, pe_id: PeId) {
        let stale = self.cfg.stale_cache_value;
        let Some(st) = self.pools.get_mut(pool) else {
            return;
        };
        let mut known: Option<PoolElement> = None;
        if let Some(c) = &mut st.cache {
            known = c.sel.entries().iter().find(|p| p.id == pe_id).cloned();
            c.sel.remove(pe_id);
        }
        let in_cache = known.is_some();
        if let Some(pos) = st.alternates.iter().position(|p| p.id == pe_id) {
            let pe = st.alternates.remove(pos);
            known.get_or_insert(pe);
        }
        if known.is_none() {
            known = st.last.clone().filter(|p| p.id == pe_id);
        }
        if st.last.as_ref().is_some_and(|p| p.id == pe_id) {
            st.last = None;
        }
        let group = known.as_ref().and_then(|p| p.asap_transport.clone());
        // Park the other transports of the same PE process behind every other PE.
        if let (Some(g), Some(c)) = (&group, &mut st.cache) {
            let mates: Vec<PoolElement> = c
                .sel
                .entries()
                .iter()
                .filter(|p| p.asap_transport.as_ref() == Some(g))
                .cloned()
                .collect();
            for m in mates {
                c.sel.remove(m.id);
                st.alternates.push(m);
            }
        }
        st.failed.retain(|f| f.until > now && f.id != pe_id);
        st.failed.push(Failed {
            id: pe_id,
            group,
            until: later(now, stale),
        });
        if in_cache {
            self.report_unreachable(pool.clone(), pe_id);
        }
    }

    fn report_unreachable(&mut self, pool: PoolHandle, pe_id: PeId) {
        match self.home {
            Some(conn) => {
                let msg = AsapMessage::EndpointUnreachable {
                    handle: pool,
                    pe_id,
                };
                self.out.send(&mut self.counters, Dest::Conn(conn), &msg);
            }
            None => {
                if self.pending_reports.len() < MAX_PENDING_REPORTS {
                    self.pending_reports.push((pool, pe_id));
                }
            }
        }
    }

    fn send_hr(&mut self, now: Instant, pool: &PoolHandle, dest: Dest) {
        let deadline = match &dest {
            Dest::Conn(_) => Some(later(now, self.cfg.request_timeout)),
            _ => None,
        };
        let sent = match &dest {
            Dest::Conn(c) => Sent::Conn(*c),
            Dest::Endpoint(e) => Sent::Endpoint(e.clone()),
            Dest::Datagram(_) => return,
        };
        if let Some(hr) = self.pools.get_mut(pool).and_then(|s| s.hr.as_mut()) {
            hr.sent_to = Some(sent);
            hr.deadline = deadline;
        }
        let msg = AsapMessage::HandleResolution {
            subscribe: self.cfg.subscribe,
            handle: pool.clone(),
            items: self.cfg.hr_items,
        };
        self.out.send(&mut self.counters, dest, &msg);
    }

    fn sent_on(&self, sent: &Option<Sent>, conn: ConnId) -> bool {
        match sent {
            Some(Sent::Conn(c)) => *c == conn,
            Some(Sent::Endpoint(ep)) => self.conns.get(&conn) == Some(ep),
            None => false,
        }
    }

    /// Send the pending handle resolutions: on the home connection, on the hunt's
    /// candidate connection, or start a hunt.
    fn dispatch(&mut self, now: Instant) {
        let conn = self.home.or_else(|| self.hunter.current_conn());
        if let Some(conn) = conn {
            let t1 = later(now, self.cfg.request_timeout);
            let mut todo = Vec::new();
            for (p, s) in &self.pools {
                let Some(h) = &s.hr else { continue };
                if !self.sent_on(&h.sent_to, conn) {
                    todo.push(p.clone());
                }
            }
            // Requests already on this connection (the hunt's opener): arm T1.
            for s in self.pools.values_mut() {
                if let Some(h) = &mut s.hr {
                    if h.deadline.is_none() && h.sent_to.is_some() {
                        h.deadline = Some(t1);
                    }
                }
            }
            for p in todo {
                self.send_hr(now, &p, Dest::Conn(conn));
            }
            return;
        }
        if self.hunter.in_backoff() {
            // Every registrar failed a moment ago: do not wait for the back-off (but for
            // an announce, when they are accepted).
            self.no_registrar(now);
        } else if !self.hunter.is_hunting() {
            let step = self.hunter.start(now, &mut self.rng, None);
            self.on_step(now, step);
        }
    }

    fn start_hunt(&mut self, now: Instant, avoid: Option<Endpoint>) {
        self.home = None;
        for st in self.pools.values_mut() {
            if let Some(hr) = &mut st.hr {
                hr.sent_to = None;
                hr.deadline = None;
            }
        }
        if !self.pools.values().any(|s| s.hr.is_some()) {
            self.hunter.stop();
            return;
        }
        let step = self.hunter.start(now, &mut self.rng, avoid.as_ref());
        self.on_step(now, step);
    }

    fn on_step(&mut self, now: Instant, step: Step) {
        match step {
            Step::Try(ep) => {
                if let Some(conn) = self.conn_to(&ep) {
                    // Already connected (e.g. the registrar that just timed out, retried).
                    self.hunter.connected(conn, &ep);
                    self.dispatch(now);
                    return;
                }
                let opener = self
                    .pools
                    .iter()
                    .find(|(_, s)| s.hr.is_some())
                    .map(|(p, _)| p.clone());
                match opener {
                    Some(p) => self.send_hr(now, &p, Dest::Endpoint(ep)),
                    None => self.hunter.stop(),
                }
            }
            Step::Exhausted(retry_at) => {
                self.events.push_back(PuEvent::NoRegistrar { retry_at });
                self.no_registrar(now);
            }
        }
    }

    /// Every known registrar failed. Requests a (stale) cache entry can answer are
    /// answered now; the others wait for an announced registrar until `registrar_wait`
    /// has passed (announces accepted), else they fail.
    fn no_registrar(&mut self, now: Instant) {
        if !self.cfg.accept_announces {
            self.timers.cancel(&PuTimer::RegistrarWait);
            self.fail_pending(now, PuError::NoRegistrar);
            return;
        }
        let until = match self.timers.deadline(&PuTimer::RegistrarWait) {
            Some(t) => t,
            None => {
                let t = later(now, self.cfg.registrar_wait);
                self.timers.set(PuTimer::RegistrarWait, t);
                t
            }
        };
        if now >= until {
            self.timers.cancel(&PuTimer::RegistrarWait);
            self.fail_pending(now, PuError::NoRegistrar);
            return;
        }
        let answerable: Vec<PoolHandle> = self
            .pools
            .iter()
            .filter(|(_, s)| s.hr.is_some() && s.has_candidates() && !s.background())
            .map(|(p, _)| p.clone())
            .collect();
        for p in answerable {
            self.fail_pool(now, &p, PuError::NoRegistrar);
        }
        if !self.pending() {
            self.timers.cancel(&PuTimer::RegistrarWait);
        }
    }

    /// Whether a handle resolution is pending.
    fn pending(&self) -> bool {
        self.pools.values().any(|s| s.hr.is_some())
    }

    /// A registrar was announced for the first time: while requests wait for one, try it
    /// now instead of at the end of the back-off.
    fn announced(&mut self, now: Instant, new: bool) {
        if new && self.home.is_none() && self.hunter.in_backoff() && self.pending() {
            self.start_hunt(now, None);
        }
    }

    /// Give up on every pending handle resolution a request waits for; stale cache
    /// entries still answer. Renewals of subscriptions go on hunting.
    fn fail_pending(&mut self, now: Instant, error: PuError) {
        let pools: Vec<PoolHandle> = self
            .pools
            .iter()
            .filter(|(_, s)| s.hr.is_some() && !s.background())
            .map(|(p, _)| p.clone())
            .collect();
        for p in pools {
            self.fail_pool(now, &p, error);
        }
    }

    fn fail_pool(&mut self, _now: Instant, pool: &PoolHandle, error: PuError) {
        let Some(st) = self.pools.get_mut(pool) else {
            return;
        };
        st.hr = None;
        st.resub = false;
        let waiting = std::mem::take(&mut st.waiting);
        for request in waiting {
            let st = self.pools.get_mut(pool);
            let pick = st.and_then(|s| s.select(&mut self.rng));
            self.answer(request, pool, pick.ok_or(error));
        }
    }

    fn adopt_home(&mut self, now: Instant, conn: ConnId, server_id: Option<ServerId>) {
        if self.home == Some(conn) {
            return;
        }
        self.home = Some(conn);
        self.timers.cancel(&PuTimer::RegistrarWait);
        self.hunter.succeeded();
        // Subscriptions are registrar-local: subscribe again at the new home.
        self.resubscribe(|c| c != conn);
        let server_id = server_id.or_else(|| {
            self.conns
                .get(&conn)
                .and_then(|ep| self.hunter.server_id_of(ep))
        });
        self.events
            .push_back(PuEvent::HomeChanged { conn, server_id });
        for (pool, pe_id) in std::mem::take(&mut self.pending_reports) {
            self.report_unreachable(pool, pe_id);
        }
        self.dispatch(now);
    }

    /// Pools subscribed on a connection matching `lost` lose the subscription; those
    /// still in use are resolved (and subscribed) again with the next dispatch.
    fn resubscribe(&mut self, lost: impl Fn(ConnId) -> bool) {
        for st in self.pools.values_mut() {
            let Some(c) = st.subscribed else { continue };
            if !lost(c) {
                continue;
            }
            st.subscribed = None;
            if st.hr.is_none() {
                st.resub = true;
                st.hr = Some(Hr {
                    sent_to: None,
                    deadline: None,
                    retries: 0,
                });
            }
        }
    }

    fn home_failed(&mut self, now: Instant) {
        let avoid = self.home.take().and_then(|c| self.conns.get(&c).cloned());
        self.start_hunt(now, avoid);
    }

    fn attempt_failed(&mut self, now: Instant) {
        for st in self.pools.values_mut() {
            if let Some(hr) = &mut st.hr {
                hr.deadline = None;
                hr.sent_to = None;
            }
        }
        let step = self.hunter.advance(now);
        self.on_step(now, step);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_hr_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        accepted: bool,
        handle: PoolHandle,
        policy: Option<Policy>,
        pes: Vec<PoolElement>,
        error: Option<OperationError>,
    ) {
        let key = (conn, handle);
        if let Some(n) = self.unsubscribing.get_mut(&key) {
            // The answer to an unsubscription (answers come in order on a connection).
            *n -= 1;
            if *n == 0 {
                self.unsubscribing.remove(&key);
            }
            return;
        }
        let (conn, handle) = key;
        let Some(st) = self.pools.get(&handle) else {
            self.counters.dropped += 1;
            return;
        };
        // Without a request outstanding only a push on the subscribed connection counts.
        let push = st.hr.is_none();
        if push && st.subscribed != Some(conn) {
            self.counters.dropped += 1;
            return;
        }
        if self.home.is_none() {
            self.hunter.note_conn(conn);
            self.adopt_home(now, conn, None);
        }
        let subscribed = (accepted && self.cfg.subscribe).then_some(conn);
        if let Some(st) = self.pools.get_mut(&handle) {
            st.subscribed = subscribed;
        }
        if error.is_some() || pes.is_empty() {
            if let Some(st) = self.pools.get_mut(&handle) {
                st.cache = None;
                st.alternates.clear();
                st.subscribed = None;
            }
            if push {
                self.events.push_back(PuEvent::Pushed {
                    pool: handle.clone(),
                    pes: 0,
                });
            }
            self.fail_pool(now, &handle, PuError::UnknownPool);
            return;
        }
        let policy_type = policy
            .as_ref()
            .map(Policy::policy_type)
            .unwrap_or(PolicyType::ROUND_ROBIN);
        let Some(st) = self.pools.get_mut(&handle) else {
            return;
        };
        st.failed.retain(|f| f.until > now);
        let mut fresh = Vec::new();
        let mut parked = Vec::new();
        let mut seen = Vec::new();
        for pe in pes {
            if seen.contains(&pe.id) {
                continue; // a PE appears at most once
            }
            seen.push(pe.id);
            if st.is_failed(&pe, now) {
                if !st.failed.iter().any(|f| f.id == pe.id) {
                    parked.push(pe); // another transport of a failed PE
                }
            } else {
                fresh.push(pe);
            }
        }
        st.alternates = parked;
        let cached = fresh.len();
        st.cache = Some(Cached {
            sel: PuCache::new(policy_type, fresh),
            fetched: now,
            expired: false,
        });
        st.hr = None;
        st.resub = false;
        if push {
            self.events.push_back(PuEvent::Pushed {
                pool: handle.clone(),
                pes: cached,
            });
        }
        let Some(st) = self.pools.get_mut(&handle) else {
            return;
        };
        let waiting = std::mem::take(&mut st.waiting);
        for request in waiting {
            let pick = self
                .pools
                .get_mut(&handle)
                .and_then(|s| s.select(&mut self.rng));
            self.answer(request, &handle, pick.ok_or(PuError::NoServer));
        }
    }

    fn on_error(&mut self, now: Instant, conn: ConnId, error: OperationError) {
        self.events
            .push_back(PuEvent::ErrorReceived { conn, error });
        if self.home == Some(conn) {
            self.home_failed(now);
        } else if self.hunter.current_conn() == Some(conn) {
            self.attempt_failed(now);
        }
    }

    /// Forget pools nobody asked about for a long time (10 × `stale_cache_value`, at
    /// least a minute); their stale entries are no use as a fallback any more.
    fn purge(&mut self, now: Instant, asked: &PoolHandle) {
        let keep_for = self
            .cfg
            .stale_cache_value
            .saturating_mul(10)
            .max(Duration::from_secs(60));
        let mut unsubscribe = Vec::new();
        self.pools.retain(|p, s| {
            let keep = p == asked
                || s.hr.is_some()
                || !s.waiting.is_empty()
                || s.used.is_some_and(|t| now < later(t, keep_for))
                || (s.subscribed.is_none()
                    && s.cache
                        .as_ref()
                        .is_some_and(|c| now < later(c.fetched, keep_for)))
                || s.failed.iter().any(|f| f.until > now);
            if !keep {
                if let Some(c) = s.subscribed {
                    unsubscribe.push((p.clone(), c));
                }
            }
            keep
        });
        for (handle, conn) in unsubscribe {
            if self.unsubscribing.len() >= MAX_UNSUBSCRIBING || !self.conns.contains_key(&conn) {
                continue; // it ends with the connection
            }
            *self
                .unsubscribing
                .entry((conn, handle.clone()))
                .or_insert(0) += 1;
            let msg = AsapMessage::HandleResolution {
                subscribe: false,
                handle,
                items: Some(1),
            };
            self.out.send(&mut self.counters, Dest::Conn(conn), &msg);
        }
    }

    /// An open connection to `ep`, if we have one.
    fn conn_to(&self, ep: &Endpoint) -> Option<ConnId> {
        self.conns.iter().find(|(_, e)| *e == ep).map(|(c, _)| *c)
    }

    fn conn_failed(&mut self, now: Instant, conn: ConnId) {
        self.resubscribe(|c| c == conn);
        self.unsubscribing.retain(|(c, _), _| *c != conn);
        if self.home == Some(conn) {
            self.home_failed(now);
        } else if self.hunter.current_conn() == Some(conn) {
            self.attempt_failed(now);
        }
    }
}

impl Core for PoolUserCore {
    type Event = PuEvent;
    type Command = PuCommand;

    fn handle_message(&mut self, now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        if meta.protocol != Protocol::Asap {
            self.counters.wrong_protocol += 1;
            return;
        }
        // Errors and reports (action `11` parameters) are answered inside `accept`.
        let Some(msg) = self.out.accept(&mut self.counters, conn, bytes) else {
            return;
        };
        match msg {
            AsapMessage::HandleResolutionResponse {
                accepted,
                handle,
                policy,
                pes,
                error,
            } => self.on_hr_response(now, conn, accepted, handle, policy, pes, error),
            AsapMessage::EndpointKeepAlive {
                home: true,
                server_id,
                ..
            } => {
                // A registrar re-points this PU to itself (procedures §1.10).
                self.adopt_home(now, conn, Some(server_id));
            }
            AsapMessage::ServerAnnounce {
                server_id,
                transports,
            } => {
                let new = self
                    .hunter
                    .on_announce(now, meta.peer, server_id, &transports);
                self.announced(now, new);
            }
            AsapMessage::Error { error } => self.on_error(now, conn, error),
            _ => self.counters.dropped += 1,
        }
    }

    fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, bytes: &[u8]) {
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
                self.announced(now, new);
            }
            Inbound::Message(..) => self.counters.dropped += 1,
            Inbound::Invalid(_) => {}
        }
    }

    fn handle_transport(&mut self, now: Instant, event: TransportEvent) {
        match event {
            TransportEvent::Accepted { .. } => {}
            TransportEvent::Connected { conn, endpoint } => {
                self.conns.insert(conn, endpoint.clone());
                if self.home.is_none() && self.hunter.connected(conn, &endpoint) {
                    self.dispatch(now);
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
                self.conn_failed(now, conn);
                self.conns.remove(&conn);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.hunter.handle_timeout(now) {
            Some(Fired::AttemptTimedOut) => self.attempt_failed(now),
            // Requests still wait for a registrar (announces accepted): another round.
            Some(Fired::BackoffOver) if self.home.is_none() && self.pending() => {
                self.start_hunt(now, None);
            }
            Some(Fired::BackoffOver) | None => {}
        }
        if self.timers.is_due(&PuTimer::RegistrarWait, now) {
            self.timers.cancel(&PuTimer::RegistrarWait);
            if self.home.is_none() {
                self.fail_pending(now, PuError::NoRegistrar);
            }
        }
        let expired: Vec<(PoolHandle, Option<Sent>)> = self
            .pools
            .iter()
            .filter_map(|(p, s)| {
                let hr = s.hr.as_ref()?;
                (hr.deadline? <= now).then(|| (p.clone(), hr.sent_to.clone()))
            })
            .collect();
        let mut failed_conn: Option<ConnId> = None;
        for (pool, sent) in expired {
            let max = self.cfg.max_request_retries;
            let Some(hr) = self.pools.get_mut(&pool).and_then(|s| s.hr.as_mut()) else {
                continue;
            };
            hr.deadline = None;
            hr.retries += 1;
            if hr.retries > max {
                self.fail_pool(now, &pool, PuError::Timeout);
                continue;
            }
            let conn = match sent {
                Some(Sent::Conn(c)) => Some(c),
                Some(Sent::Endpoint(ep)) => self.conn_to(&ep),
                None => None,
            };
            failed_conn = failed_conn.or(conn);
        }
        if let Some(c) = failed_conn {
            // §1.8 B: that registrar did not answer; hunt (it is tried last) and resend.
            let avoid = self.conns.get(&c).cloned();
            self.home = None;
            self.hunter.stop();
            self.start_hunt(now, avoid);
        }
    }

    fn command(&mut self, now: Instant, cmd: PuCommand) {
        let asked = match &cmd {
            PuCommand::GetPrimaryServer { pool, .. }
            | PuCommand::GetNextServer { pool, .. }
            | PuCommand::ReportFailure { pool, .. } => pool.clone(),
        };
        self.purge(now, &asked);
        match cmd {
            PuCommand::GetPrimaryServer { request, pool } => self.get_server(now, request, pool),
            PuCommand::GetNextServer { request, pool } => {
                let last = self
                    .pools
                    .get(&pool)
                    .and_then(|s| s.last.as_ref())
                    .map(|p| p.id);
                if let Some(id) = last {
                    self.fail_pe(now, &pool, id);
                }
                self.get_server(now, request, pool);
            }
            PuCommand::ReportFailure { pool, pe_id } => self.fail_pe(now, &pool, pe_id),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let hr = self
            .pools
            .values()
            .filter_map(|s| s.hr.as_ref().and_then(|h| h.deadline))
            .min();
        earliest(
            earliest(self.hunter.poll_timeout(), hr),
            self.timers.earliest(),
        )
    }

    fn poll_event(&mut self) -> Option<PuEvent> {
        self.events.pop_front()
    }
}
