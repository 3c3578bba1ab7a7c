//! Handle resolution subscriptions (the S and A flags, procedures §1.4 "Dynamic updates").
//!
//! A connection that sends ASAP_HANDLE_RESOLUTION with S = 1 for an existing pool is
//! answered with A = 1 and subscribed to that pool; each change of the pool (a PE added,
//! removed, or re-registered with another policy, load or transport) then pushes a fresh
//! ASAP_HANDLE_RESOLUTION_RESPONSE (A = 1) to every subscriber, selected like an answer to
//! its request (the count it asked for, by the pool's policy).
//!
//! * Coalesced per pool: the first change after a quiet `subscription_interval` is pushed
//!   at the end of the input that caused it (a connection closing with ten PEs is one
//!   push); later changes within the interval are pushed together when it ends. So a
//!   subscriber gets at most one push per pool per interval.
//! * Bounded: `max_subscriptions_per_connection` pools per connection and
//!   `max_subscriptions` in all; over either limit the request is answered as usual with
//!   A = 0 (and counted). 0 = no subscriptions at all.
//! * A subscription ends when its connection closes, when the connection asks for the
//!   pool again with S = 0, and when the pool disappears: its subscribers get a last push,
//!   a negative response (Unknown Pool Handle, A = 0). No subscription is made for a pool
//!   that does not exist, nor for an answer refused by the access policy or the rate limit.
//! * Registrar-local, as the RFC says: not replicated by ENRP; a PU re-subscribes at its
//!   new home. PEs learned from peers push like own ones.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rserpool_wire::PoolHandle;

use crate::common::later;
use crate::io::ConnId;

/// Default of `RegistrarConfig::subscription_interval`.
pub const DEFAULT_SUBSCRIPTION_INTERVAL: Duration = Duration::from_secs(1);
/// Default of `RegistrarConfig::max_subscriptions_per_connection`.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 256;
/// Default of `RegistrarConfig::max_subscriptions`.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 100_000;

#[derive(Debug, Default)]
struct PoolSubs {
    /// Subscriber → the PE count it asked for.
    subscribers: BTreeMap<ConnId, Option<u32>>,
    last_push: Option<Instant>,
    /// A push is scheduled for then (a change within the interval).
    due: Option<Instant>,
}

/// A pool's subscribers and the PE count each asked for.
pub(super) type Subscribers = Vec<(ConnId, Option<u32>)>;

/// Why a subscription was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    PerConnection,
    Total,
}

#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    pools: BTreeMap<PoolHandle, PoolSubs>,
    conns: BTreeMap<ConnId, BTreeSet<PoolHandle>>,
    total: usize,
    /// Pools changed during the current input.
    dirty: BTreeSet<PoolHandle>,
    due: BTreeSet<(Instant, PoolHandle)>,
}

impl Subscriptions {
    /// Subscribe `conn` to `handle` (again: the count is updated, nothing is counted).
    /// `Ok(true)` when new.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        handle: &PoolHandle,
        items: Option<u32>,
        per_conn: usize,
        max_total: usize,
    ) -> Result<bool, Refused> {
        if let Some(s) = self.pools.get_mut(handle) {
            if let Some(i) = s.subscribers.get_mut(&conn) {
                *i = items;
                return Ok(false);
            }
        }
        if self.conns.get(&conn).map_or(0, BTreeSet::len) >= per_conn {
            return Err(Refused::PerConnection);
        }
        if self.total >= max_total {
            return Err(Refused::Total);
        }
        self.pools
            .entry(handle.clone())
            .or_default()
            .subscribers
            .insert(conn, items);
        self.conns.entry(conn).or_default().insert(handle.clone());
        self.total += 1;
        Ok(true)
    }

    /// End `conn`'s subscription to `handle`; true if there was one.
    pub(super) fn unsubscribe(&mut self, conn: ConnId, handle: &PoolHandle) -> bool {
        let Some(s) = self.pools.get_mut(handle) else {
            return false;
        };
        if s.subscribers.remove(&conn).is_none() {
            return false;
        }
        if s.subscribers.is_empty() {
            self.forget_pool(handle);
        }
        if let Some(set) = self.conns.get_mut(&conn) {
            set.remove(handle);
            if set.is_empty() {
                self.conns.remove(&conn);
            }
        }
        self.total -= 1;
        true
    }

    /// The connection closed: its subscriptions end. Returns how many.
    pub(super) fn conn_closed(&mut self, conn: ConnId) -> usize {
        let handles = self.conns.remove(&conn).unwrap_or_default();
        let n = handles.len();
        for h in handles {
            if let Some(s) = self.pools.get_mut(&h) {
                s.subscribers.remove(&conn);
                if s.subscribers.is_empty() {
                    self.forget_pool(&h);
                }
            }
        }
        self.total -= n;
        n
    }

    /// The pool disappeared: every subscription to it ends. Returns the subscribers.
    pub(super) fn drop_pool(&mut self, handle: &PoolHandle) -> Vec<ConnId> {
        let Some(s) = self.pools.get(handle) else {
            return Vec::new();
        };
        let conns: Vec<ConnId> = s.subscribers.keys().copied().collect();
        for c in &conns {
            self.unsubscribe(*c, handle);
        }
        conns
    }

    fn forget_pool(&mut self, handle: &PoolHandle) {
        if let Some(s) = self.pools.remove(handle) {
            if let Some(t) = s.due {
                self.due.remove(&(t, handle.clone()));
            }
        }
        self.dirty.remove(handle);
    }

    /// Whether anyone subscribed to `handle`.
    pub(super) fn watched(&self, handle: &PoolHandle) -> bool {
        self.pools.contains_key(handle)
    }

    /// The pool changed. True when the change joins a push already pending (coalesced).
    pub(super) fn changed(&mut self, handle: &PoolHandle) -> bool {
        let Some(s) = self.pools.get(handle) else {
            return false;
        };
        s.due.is_some() || !self.dirty.insert(handle.clone())
    }

    /// The pools to push now, with their subscribers; changes within the interval after
    /// the last push are scheduled for its end.
    pub(super) fn take_ready(
        &mut self,
        now: Instant,
        interval: Duration,
    ) -> Vec<(PoolHandle, Subscribers)> {
        let mut ready = Vec::new();
        for h in std::mem::take(&mut self.dirty) {
            let Some(s) = self.pools.get_mut(&h) else {
                continue;
            };
            if s.due.is_some() {
                continue;
            }
            match s.last_push.map(|t| later(t, interval)) {
                Some(at) if at > now => {
                    s.due = Some(at);
                    self.due.insert((at, h));
                }
                _ => ready.push(h),
            }
        }
        while let Some((at, h)) = self.due.first().cloned() {
            if at > now {
                break;
            }
            self.due.pop_first();
            ready.push(h);
        }
        ready
            .into_iter()
            .filter_map(|h| {
                let s = self.pools.get_mut(&h)?;
                s.due = None;
                s.last_push = Some(now);
                let subs = s.subscribers.iter().map(|(c, i)| (*c, *i)).collect();
                Some((h, subs))
            })
            .collect()
    }

    /// When the next coalesced push is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Subscriptions in force.
    pub(super) fn len(&self) -> usize {
        self.total
    }

    /// Subscriptions of one connection.
    pub(super) fn of_conn(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, BTreeSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> PoolHandle {
        PoolHandle::from(s)
    }

    #[test]
    fn limits_and_bookkeeping() {
        let mut s = Subscriptions::default();
        let (a, b) = (ConnId(1), ConnId(2));
        assert_eq!(s.subscribe(a, &h("p1"), None, 2, 3), Ok(true));
        assert_eq!(s.subscribe(a, &h("p1"), Some(5), 2, 3), Ok(false));
        assert_eq!(s.subscribe(a, &h("p2"), None, 2, 3), Ok(true));
        assert_eq!(
            s.subscribe(a, &h("p3"), None, 2, 3),
            Err(Refused::PerConnection)
        );
        assert_eq!(s.subscribe(b, &h("p1"), None, 2, 3), Ok(true));
        assert_eq!(s.subscribe(b, &h("p2"), None, 2, 3), Err(Refused::Total));
        assert_eq!(s.len(), 3);
        assert!(s.unsubscribe(a, &h("p2")));
        assert!(!s.unsubscribe(a, &h("p2")));
        assert!(!s.watched(&h("p2")));
        assert_eq!(s.conn_closed(a), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.drop_pool(&h("p1")), vec![b]);
        assert_eq!(s.len(), 0);
        assert!(s.pools.is_empty() && s.conns.is_empty());
    }

    #[test]
    fn coalesces_per_interval() {
        let mut s = Subscriptions::default();
        #[allow(clippy::disallowed_methods)] // a test's start of time
        let t0 = Instant::now();
        let iv = Duration::from_secs(1);
        s.subscribe(ConnId(1), &h("p"), None, 10, 10).unwrap();
        // Unsubscribed pools are not tracked.
        assert!(!s.changed(&h("other")));
        assert!(s.take_ready(t0, iv).is_empty());
        // First change: pushed at once; a second change in the same input joins it.
        assert!(!s.changed(&h("p")));
        assert!(s.changed(&h("p")));
        assert_eq!(s.take_ready(t0, iv).len(), 1);
        // Within the interval: scheduled for its end, further changes coalesce.
        let t1 = t0 + Duration::from_millis(100);
        assert!(!s.changed(&h("p")));
        assert!(s.take_ready(t1, iv).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + iv));
        assert!(s.changed(&h("p")));
        assert!(s.take_ready(t0 + Duration::from_millis(999), iv).is_empty());
        let r = s.take_ready(t0 + iv, iv);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1, vec![(ConnId(1), None)]);
        assert_eq!(s.poll_timeout(), None);
        // A scheduled push of a pool whose last subscriber left is forgotten.
        assert!(!s.changed(&h("p")));
        assert!(s
            .take_ready(t0 + iv + Duration::from_millis(1), iv)
            .is_empty());
        assert!(s.poll_timeout().is_some());
        s.conn_closed(ConnId(1));
        assert_eq!(s.poll_timeout(), None);
    }
}
