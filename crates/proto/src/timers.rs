//! A core's timer table: deadlines keyed by a timer id.
//!
//! Every core keeps its own timers in one [`Timers<K>`] (`K` = the core's timer ids, a
//! small enum) instead of loose `Option<Instant>` fields: `poll_timeout` is
//! [`Timers::earliest`], `handle_timeout` runs [`Timers::pop_expired`] until `None`.
//! A timer id is set at most once: setting it again moves it. Timers due at the same
//! instant pop in the order they were set (deterministic, no hash order).

use std::collections::BTreeMap;
use std::time::Instant;

/// Deadlines keyed by timer id `K` (see the module docs).
#[derive(Clone, Debug)]
pub struct Timers<K> {
    /// (deadline, sequence number) -> timer id; the sequence breaks ties in set order.
    queue: BTreeMap<(Instant, u64), K>,
    /// timer id -> its entry in `queue`.
    index: BTreeMap<K, (Instant, u64)>,
    seq: u64,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            queue: BTreeMap::new(),
            index: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<K: Ord + Clone> Timers<K> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Arm `key` for `at` (moving it if it was armed).
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.index.remove(&key) {
            self.queue.remove(&old);
        }
        self.seq += 1;
        let slot = (at, self.seq);
        self.queue.insert(slot, key.clone());
        self.index.insert(key, slot);
    }
    /// Arm `key` for `at`, or cancel it for `None`.
    pub fn set_opt(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(at) => self.set(key, at),
            None => {
                self.cancel(&key);
            }
        }
    }
    /// Disarm `key`; its deadline if it was armed.
    pub fn cancel(&mut self, key: &K) -> Option<Instant> {
        let slot = self.index.remove(key)?;
        self.queue.remove(&slot);
        Some(slot.0)
    }
    /// When `key` fires, if armed.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.index.get(key).map(|s| s.0)
    }
    /// Whether `key` is armed.
    pub fn is_set(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }
    /// Whether `key` is armed and due at `now`.
    pub fn is_due(&self, key: &K, now: Instant) -> bool {
        self.deadline(key).is_some_and(|t| t <= now)
    }
    /// The earliest deadline (for `poll_timeout`).
    pub fn earliest(&self) -> Option<Instant> {
        self.queue.keys().next().map(|s| s.0)
    }
    /// Disarm and return the earliest timer due at `now`, if any.
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let key = entry.remove();
        self.index.remove(&key);
        Some(key)
    }
    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test's arbitrary origin
    fn set_move_cancel_pop() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Timers::new();
        assert_eq!(t.earliest(), None);
        t.set("b", t0 + 2 * s);
        t.set("a", t0 + 3 * s);
        t.set("c", t0 + 2 * s);
        assert_eq!(t.earliest(), Some(t0 + 2 * s));
        t.set("a", t0 + s); // moved
        assert_eq!(t.len(), 3);
        assert_eq!(t.deadline(&"a"), Some(t0 + s));
        assert!(t.is_due(&"a", t0 + s) && !t.is_due(&"b", t0 + s));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(t.pop_expired(t0 + 2 * s), Some("a"));
        // Same deadline: in the order they were set.
        assert_eq!(t.pop_expired(t0 + 2 * s), Some("b"));
        assert_eq!(t.cancel(&"c"), Some(t0 + 2 * s));
        assert_eq!(t.cancel(&"c"), None);
        assert_eq!(t.pop_expired(t0 + 9 * s), None);
        assert!(t.is_empty());
        t.set_opt("d", Some(t0));
        t.set_opt("d", None);
        assert!(!t.is_set(&"d"));
    }
}
