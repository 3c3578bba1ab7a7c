//! Connection limits of a registrar, sans-IO: an idle timeout, a per-source cap and
//! eviction when the table is full.
//!
//! The registrar accepts connections from anybody: PEs that register over them and PUs
//! that resolve handles. A connection costs a file descriptor and two tasks in the shell,
//! so their number is bounded. A bound alone is a lock: connections that each send one
//! handle resolution and then stay open would fill it and shut out every new PU and PE.
//! [`ConnTable`] keeps the accepted connections and decides which of them to close, with
//! three rules:
//!
//! * **Idle timeout** ([`ConnLimits::idle_timeout`], default 30 s): a connection that owns
//!   no PE and has not sent a message for that long is closed (gracefully:
//!   [`TransportCommand::Close`]). A connection over which a PE is registered is never
//!   closed for idleness — the keep-alives and the Registration Life watch it; once its
//!   last PE is gone it counts as idle from that moment. A PU opens a new connection for
//!   its next request when its idle one was closed.
//! * **Per-source cap** ([`ConnLimits::max_per_source`], default 512): at most this many
//!   connections from one source (an IPv4 address; an IPv6 /64, since one host owns at
//!   least that). A newcomer from a source at its cap takes the place of that source's
//!   connection without PEs that was idle longest; if all of them own PEs the newcomer is
//!   closed. One source can thus never push out the connections of others, and a
//!   legitimate client behind the same address still gets in.
//! * **Eviction** ([`ConnLimits::max_connections`], default 4096): when the table is full
//!   a newcomer takes the place of a connection without PEs: one that has not sent a
//!   single message for [`SILENT_GRACE`] if there is one (a port scan, a flood of idle
//!   sockets), else the one idle longest (a newcomer counts as active at its accept, so
//!   it is the last to go). Only when every connection owns a PE is the newcomer closed.
//!   Evictions and refusals close at once ([`TransportCommand::Abort`]).
//!
//! Connections the registrar opens itself are not in the table (nothing to limit).
//!
//! Every action counts in [`ConnCounters`] and is summarised in a [`LimitReport`]: the
//! first action after a quiet period is reported at once, later ones at most once per
//! [`REPORT_PERIOD`], so a flood cannot flood the log.
//!
//! Cost: the connections without PEs are kept in least-recently-active order in
//! intrusive doubly linked lists over a slab (one global list for connections that never
//! spoke, one for the others, one per source), so a message is a hash lookup and a few
//! index writes, the victim of an eviction is a list head, and the idle sweep looks at
//! list heads only: one deadline, no timer per connection or per message. The table is
//! deterministic (no random hashing), as the cores must be.
//!
//! The shell keeps its own hard limit on accepted connections (file descriptors);
//! [`ConnLimits::shell_limit`] gives it some room above `max_connections`, so that this
//! table decides and the shell's limit only acts when the core falls behind a flood.

use crate::timers::Timers;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::counters::ConnCounters;
use crate::io::{ConnId, TransportCommand};

/// Default of [`ConnLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of [`ConnLimits::max_per_source`].
pub const DEFAULT_MAX_PER_SOURCE: usize = 512;
/// Default of [`ConnLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that has not sent a message this long after its accept is evicted before
/// any connection that has.
pub const SILENT_GRACE: Duration = Duration::from_secs(1);
/// At most one [`LimitReport`] per period.
pub const REPORT_PERIOD: Duration = Duration::from_secs(1);

/// The limits (see the module documentation). 0 / `None` switch a rule off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most accepted connections at once; 0 = no limit. Default 4096.
    pub max_connections: usize,
    /// Most accepted connections from one source (IPv4 address, IPv6 /64); 0 = no limit.
    /// Default 512.
    pub max_per_source: usize,
    /// Close connections that own no PE after this long without a message; `None` = never.
    /// Default 30 s.
    pub idle_timeout: Option<Duration>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_source: DEFAULT_MAX_PER_SOURCE,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

impl ConnLimits {
    /// The shell's hard limit to go with these limits: `max_connections` plus room for
    /// connections that are being closed (an eighth, at least 64). No limit: `usize::MAX`.
    pub fn shell_limit(&self) -> usize {
        if self.max_connections == 0 {
            return usize::MAX;
        }
        self.max_connections
            .saturating_add((self.max_connections / 8).max(64))
    }
}

/// Where connections come from, for the per-source cap: an IPv4 address, or the /64 of an
/// IPv6 address (an IPv4-mapped IPv6 address counts as the IPv4 address).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a peer address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = a.segments();
                    Source(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }

    /// The address (for IPv6 the /64 prefix with the host part zero).
    pub fn addr(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// What the limits did since the previous report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitReport {
    /// Connections without PEs closed after the idle timeout.
    pub idle_closed: u64,
    /// Connections closed to make room for a newcomer (total limit).
    pub evicted: u64,
    /// Connections closed to make room for a newcomer from the same source (per-source cap).
    pub source_evicted: u64,
    /// Newcomers closed because every connection they could replace owns a PE.
    pub refused: u64,
    /// The source that most recently hit its cap, if any did.
    pub capped_source: Option<Source>,
    /// Accepted connections open after the actions.
    pub open: usize,
}

impl LimitReport {
    fn is_empty(&self) -> bool {
        self.idle_closed == 0 && self.evicted == 0 && self.source_evicted == 0 && self.refused == 0
    }
}

// ----------------------------------------------------------------------------------------
// The table

mod list;

use list::{push_back, unlink, Links, List, Slot, State, NIL};

#[derive(Debug)]
struct SourceEntry {
    key: Source,
    /// Every connection of the source (owners included).
    count: usize,
    /// Its connections without PEs, least recently active first.
    list: List,
}

/// Hashes a `ConnId` (a counter) with one multiplication: fast and deterministic.
#[derive(Default, Clone, Copy, Debug)]
struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type ConnMap = HashMap<ConnId, u32, BuildHasherDefault<ConnIdHasher>>;

/// The timers of [`ConnTable`] (ids in its [`Timers`] table). The report's moment is
/// derived from the last report, not a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum LimitTimer {
    /// Next look for connections idle too long.
    Sweep,
}

/// Accepted connections and the limits on them. See the module documentation.
#[derive(Debug)]
pub struct ConnTable {
    limits: ConnLimits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: ConnMap,
    silent: List,
    idle: List,
    sources: Vec<SourceEntry>,
    source_free: Vec<u32>,
    source_index: HashMap<Source, u32, BuildHasherDefault<ConnIdHasher>>,
    /// Latest `now` seen (inputs never go back in time for the table).
    clock: Option<Instant>,
    /// The table's timers ([`LimitTimer`]).
    timers: Timers<LimitTimer>,
    commands: VecDeque<TransportCommand>,
    pending: LimitReport,
    last_report: Option<Instant>,
}

impl ConnTable {
    pub fn new(limits: ConnLimits) -> Self {
        Self {
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            index: ConnMap::default(),
            silent: List::EMPTY,
            idle: List::EMPTY,
            sources: Vec::new(),
            source_free: Vec::new(),
            source_index: HashMap::default(),
            clock: None,
            timers: Timers::new(),
            commands: VecDeque::new(),
            pending: LimitReport::default(),
            last_report: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// New limits (a configuration reload). They act from the next event: connections
    /// over a lowered cap are not closed at once, and a changed idle timeout counts from
    /// each connection's last activity.
    pub fn set_limits(&mut self, limits: ConnLimits) {
        self.limits = limits;
    }

    /// Accepted connections in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Connections from `ip`'s source in the table.
    pub fn from_source(&self, ip: IpAddr) -> usize {
        self.source_index
            .get(&Source::of(ip))
            .map_or(0, |&s| self.sources[s as usize].count)
    }

    /// Whether `conn` is in the table (accepted, not closed or being closed by it).
    pub fn contains(&self, conn: ConnId) -> bool {
        self.index.contains_key(&conn)
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(now);
        now
    }

    /// A connection was accepted from `peer`. Makes room for it (closing another one) or
    /// closes it, as the limits say; see [`ConnTable::poll_command`].
    pub fn accepted(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: IpAddr,
        counters: &mut ConnCounters,
    ) {
        let now = self.advance(now);
        if self.index.contains_key(&conn) {
            return;
        }
        let key = Source::of(peer);
        let cap = self.limits.max_per_source;
        if cap > 0 {
            if let Some(&si) = self.source_index.get(&key) {
                let src = &self.sources[si as usize];
                if src.count >= cap {
                    self.pending.capped_source = Some(key);
                    let victim = src.list.head;
                    if victim == NIL {
                        self.refuse(conn, counters);
                        return;
                    }
                    self.remove(victim, Some(TransportCommand::Abort));
                    counters.source_evicted += 1;
                    self.pending.source_evicted += 1;
                }
            }
        }
        let max = self.limits.max_connections;
        if max > 0 && self.index.len() >= max {
            match self.eviction_victim(now) {
                Some(victim) => {
                    self.remove(victim, Some(TransportCommand::Abort));
                    counters.evicted += 1;
                    self.pending.evicted += 1;
                }
                None => {
                    self.refuse(conn, counters);
                    return;
                }
            }
        }
        let si = self.source_entry(key);
        let slot = Slot {
            conn,
            source: si,
            state: State::Silent,
            last: now,
            prev: NIL,
            next: NIL,
            sprev: NIL,
            snext: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).unwrap_or(NIL - 1);
                self.slots.push(slot);
                i
            }
        };
        push_back(&mut self.slots, &mut self.silent, i, Links::Global);
        let src = &mut self.sources[si as usize];
        src.count += 1;
        push_back(&mut self.slots, &mut src.list, i, Links::Source);
        self.index.insert(conn, i);
        self.schedule_sweep(now);
    }

    fn refuse(&mut self, conn: ConnId, counters: &mut ConnCounters) {
        self.commands.push_back(TransportCommand::Abort(conn));
        counters.refused += 1;
        self.pending.refused += 1;
    }

    /// The connection a newcomer replaces when the table is full (see the module docs).
    fn eviction_victim(&self, now: Instant) -> Option<u32> {
        let (s, i) = (self.silent.head, self.idle.head);
        let last = |x: u32| self.slots[x as usize].last;
        if s != NIL && now.saturating_duration_since(last(s)) >= SILENT_GRACE {
            return Some(s);
        }
        match (s, i) {
            (NIL, NIL) => None,
            (NIL, i) => Some(i),
            (s, NIL) => Some(s),
            (s, i) => Some(if last(i) < last(s) { i } else { s }),
        }
    }

    fn source_entry(&mut self, key: Source) -> u32 {
        if let Some(&si) = self.source_index.get(&key) {
            return si;
        }
        let entry = SourceEntry {
            key,
            count: 0,
            list: List::EMPTY,
        };
        let si = match self.source_free.pop() {
            Some(si) => {
                self.sources[si as usize] = entry;
                si
            }
            None => {
                let si = u32::try_from(self.sources.len()).unwrap_or(NIL - 1);
                self.sources.push(entry);
                si
            }
        };
        self.source_index.insert(key, si);
        si
    }

    /// Take slot `i` out of every structure; `cmd` = ask the shell to close it.
    fn remove(&mut self, i: u32, cmd: Option<fn(ConnId) -> TransportCommand>) {
        let (conn, si, state) = {
            let s = &self.slots[i as usize];
            (s.conn, s.source, s.state)
        };
        match state {
            State::Silent => unlink(&mut self.slots, &mut self.silent, i, Links::Global),
            State::Idle => unlink(&mut self.slots, &mut self.idle, i, Links::Global),
            State::Owner => {}
        }
        let src = &mut self.sources[si as usize];
        if state != State::Owner {
            unlink(&mut self.slots, &mut src.list, i, Links::Source);
        }
        src.count -= 1;
        if src.count == 0 {
            let key = src.key;
            self.source_index.remove(&key);
            self.source_free.push(si);
        }
        self.index.remove(&conn);
        self.free.push(i);
        if let Some(make) = cmd {
            self.commands.push_back(make(conn));
        }
    }

    /// A message arrived on `conn`: it is active now. Cheap (called per message).
    pub fn touch(&mut self, now: Instant, conn: ConnId) {
        let Some(&i) = self.index.get(&conn) else {
            return;
        };
        let now = self.advance(now);
        let slot = &mut self.slots[i as usize];
        slot.last = now;
        let si = slot.source;
        match slot.state {
            State::Owner => return,
            State::Silent => {
                slot.state = State::Idle;
                unlink(&mut self.slots, &mut self.silent, i, Links::Global);
                push_back(&mut self.slots, &mut self.idle, i, Links::Global);
            }
            State::Idle => {
                if self.idle.tail != i {
                    unlink(&mut self.slots, &mut self.idle, i, Links::Global);
                    push_back(&mut self.slots, &mut self.idle, i, Links::Global);
                }
            }
        }
        let list = &mut self.sources[si as usize].list;
        if list.tail != i {
            unlink(&mut self.slots, list, i, Links::Source);
            push_back(&mut self.slots, list, i, Links::Source);
        }
    }

    /// Whether PEs are registered over `conn` (call when it gains its first PE and when
    /// it loses its last). A connection with PEs is never closed by the table; one that
    /// lost its last PE counts as idle from the latest input.
    pub fn set_owner(&mut self, conn: ConnId, owns_pes: bool) {
        let Some(&i) = self.index.get(&conn) else {
            return;
        };
        let slot = &mut self.slots[i as usize];
        let (state, si) = (slot.state, slot.source);
        match (state, owns_pes) {
            (State::Owner, true) | (State::Silent | State::Idle, false) => {}
            (State::Silent | State::Idle, true) => {
                slot.state = State::Owner;
                let list = if state == State::Silent {
                    &mut self.silent
                } else {
                    &mut self.idle
                };
                unlink(&mut self.slots, list, i, Links::Global);
                unlink(
                    &mut self.slots,
                    &mut self.sources[si as usize].list,
                    i,
                    Links::Source,
                );
            }
            (State::Owner, false) => {
                let now = self.clock.unwrap_or(slot.last).max(slot.last);
                slot.state = State::Idle;
                slot.last = now;
                push_back(&mut self.slots, &mut self.idle, i, Links::Global);
                push_back(
                    &mut self.slots,
                    &mut self.sources[si as usize].list,
                    i,
                    Links::Source,
                );
                self.schedule_sweep(now);
            }
        }
    }

    /// The connection is gone (closed by the peer, by the shell, or at our request).
    pub fn closed(&mut self, conn: ConnId) {
        if let Some(&i) = self.index.get(&conn) {
            self.remove(i, None);
        }
    }

    fn granularity(timeout: Duration) -> Duration {
        (timeout / 32).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Oldest activity among the connections without PEs.
    fn oldest(&self) -> Option<u32> {
        let (s, i) = (self.silent.head, self.idle.head);
        match (s, i) {
            (NIL, NIL) => None,
            (NIL, i) => Some(i),
            (s, NIL) => Some(s),
            (s, i) => Some(
                if self.slots[i as usize].last < self.slots[s as usize].last {
                    i
                } else {
                    s
                },
            ),
        }
    }

    fn schedule_sweep(&mut self, now: Instant) {
        let Some(t) = self.limits.idle_timeout else {
            return;
        };
        if !self.timers.is_set(&LimitTimer::Sweep) {
            if let Some(o) = self.oldest() {
                let due = self.slots[o as usize].last.checked_add(t);
                let soonest = now.checked_add(Self::granularity(t));
                let at = match (due, soonest) {
                    (Some(d), Some(s)) => Some(d.max(s)),
                    (d, _) => d,
                };
                self.timers.set_opt(LimitTimer::Sweep, at);
            }
        }
    }

    /// Close the connections that have been idle too long; a spurious call is harmless.
    pub fn handle_timeout(&mut self, now: Instant, counters: &mut ConnCounters) {
        let now = self.advance(now);
        let Some(t) = self.limits.idle_timeout else {
            self.timers.cancel(&LimitTimer::Sweep);
            return;
        };
        if !self.timers.is_due(&LimitTimer::Sweep, now) {
            return;
        }
        self.timers.cancel(&LimitTimer::Sweep);
        while let Some(o) = self.oldest() {
            let due = self.slots[o as usize].last.checked_add(t);
            if due.is_some_and(|d| d <= now) {
                self.remove(o, Some(TransportCommand::Close));
                counters.idle_closed += 1;
                self.pending.idle_closed += 1;
            } else {
                break;
            }
        }
        self.schedule_sweep(now);
    }

    /// The next moment [`ConnTable::handle_timeout`] or [`ConnTable::poll_report`] has
    /// something to do (possibly early, never late by more than a small granularity).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let report = if self.pending.is_empty() {
            None
        } else {
            match self.last_report {
                Some(t) => t.checked_add(REPORT_PERIOD),
                None => self.clock,
            }
        };
        crate::io::earliest(self.timers.earliest(), report)
    }

    /// A connection the shell should close, if any (drain after every input).
    pub fn poll_command(&mut self) -> Option<TransportCommand> {
        self.commands.pop_front()
    }

    /// What the limits did since the last report, when it is time to say it: at once
    /// after a quiet period, then at most once per [`REPORT_PERIOD`].
    pub fn poll_report(&mut self, now: Instant) -> Option<LimitReport> {
        if self.pending.is_empty() {
            return None;
        }
        if self
            .last_report
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_PERIOD)
        {
            return None;
        }
        self.last_report = Some(now);
        let mut r = std::mem::take(&mut self.pending);
        r.open = self.index.len();
        Some(r)
    }

    /// Verify every list against the slots (tests).
    #[cfg(test)]
    fn check(&self) {
        let walk = |list: List, which: Links| -> Vec<u32> {
            let mut v = Vec::new();
            let mut prev = NIL;
            let mut i = list.head;
            while i != NIL {
                let s = &self.slots[i as usize];
                let (p, n) = match which {
                    Links::Global => (s.prev, s.next),
                    Links::Source => (s.sprev, s.snext),
                };
                assert_eq!(p, prev);
                v.push(i);
                prev = i;
                i = n;
            }
            assert_eq!(list.tail, prev);
            v
        };
        let silent = walk(self.silent, Links::Global);
        let idle = walk(self.idle, Links::Global);
        for w in [&silent, &idle] {
            for pair in w.windows(2) {
                assert!(self.slots[pair[0] as usize].last <= self.slots[pair[1] as usize].last);
            }
        }
        let mut members = 0;
        for (key, &si) in &self.source_index {
            let src = &self.sources[si as usize];
            assert_eq!(src.key, *key);
            let l = walk(src.list, Links::Source);
            for pair in l.windows(2) {
                assert!(self.slots[pair[0] as usize].last <= self.slots[pair[1] as usize].last);
            }
            for &i in &l {
                assert_eq!(self.slots[i as usize].source, si);
                assert_ne!(self.slots[i as usize].state, State::Owner);
            }
            members += src.count;
            let owners = self
                .index
                .values()
                .filter(|&&i| self.slots[i as usize].source == si)
                .count();
            assert_eq!(owners, src.count);
            assert!(l.len() <= src.count);
        }
        assert_eq!(members, self.index.len());
        for &i in self.index.values() {
            let s = &self.slots[i as usize];
            match s.state {
                State::Silent => assert!(silent.contains(&i)),
                State::Idle => assert!(idle.contains(&i)),
                State::Owner => assert!(!silent.contains(&i) && !idle.contains(&i)),
            }
        }
        assert!(silent.len() + idle.len() <= self.index.len());
    }
}

#[cfg(test)]
mod tests;
