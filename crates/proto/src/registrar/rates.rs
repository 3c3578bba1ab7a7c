//! Rate limits: handle resolutions and unreachability reports per source (RSPLIB's
//! `-maxhrrate` / `-maxeurate`; RFC 5355 threats 2.1 and 2.13 from one flooding PU), and
//! registrations per connection and per TLS identity (threat 2.1).
//!
//! One token bucket per key (a source — an IPv4 address or an IPv6 /64, as the connection
//! quotas count them —, a connection, or an identity): `rate` tokens per second, a burst
//! of one second's worth. The table is
//! bounded without changing what it decides: a bucket left alone for a second is full
//! again, the same as no bucket, so such buckets are dropped when the table is full. Only
//! when more than [`MAX_SOURCES`] sources were all active within the last second is a
//! new source let through untracked (counted as `untracked`).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::conn_limits::Source;

/// Most keys (sources, connections, identities) tracked at once per limit.
pub const MAX_SOURCES: usize = 16_384;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per key for one limit.
#[derive(Debug)]
pub(super) struct Rates<K> {
    buckets: HashMap<K, Bucket>,
    /// Keys let through because the table was full of active ones.
    pub(super) untracked: u64,
}

/// Token buckets per source (IPv4 address, IPv6 /64).
pub(super) type SourceRates = Rates<Source>;

impl<K> Default for Rates<K> {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            untracked: 0,
        }
    }
}

impl<K: Hash + Eq> Rates<K> {
    /// Whether one more message from `source` is within `rate` per second (0 = no limit).
    pub(super) fn allow(&mut self, now: Instant, source: K, rate: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = f64::from(rate);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_SOURCES {
            let second = Duration::from_secs(1);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < second);
            if self.buckets.len() >= MAX_SOURCES {
                self.untracked += 1;
                return true;
            }
        }
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * cap).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget a key (its connection closed).
    pub(super) fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[allow(clippy::disallowed_methods)] // a test's arbitrary origin
    fn t0() -> Instant {
        Instant::now()
    }

    fn src(i: u32) -> Source {
        Source::of(IpAddr::from(i.to_be_bytes()))
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let now = t0();
        let mut r = SourceRates::default();
        let allowed = (0..250).filter(|_| r.allow(now, src(1), 100)).count();
        assert_eq!(allowed, 100);
        // Another source has its own bucket.
        assert!(r.allow(now, src(2), 100));
        // 50 ms later: 5 more.
        let later = now + Duration::from_millis(50);
        assert_eq!((0..20).filter(|_| r.allow(later, src(1), 100)).count(), 5);
        // No limit.
        assert!((0..10_000).all(|_| r.allow(now, src(3), 0)));
    }

    #[test]
    fn the_table_stays_bounded_and_idle_sources_lose_nothing() {
        let now = t0();
        let mut r = SourceRates::default();
        for i in 0..MAX_SOURCES as u32 {
            assert!(r.allow(now, src(i), 10));
        }
        assert_eq!(r.len(), MAX_SOURCES);
        // All active within the second: a newcomer passes untracked.
        assert!(r.allow(now, src(u32::MAX), 10));
        assert_eq!(r.untracked, 1);
        assert_eq!(r.len(), MAX_SOURCES);
        // A second later they are all full again: dropped, the newcomer tracked.
        let later = now + Duration::from_secs(1);
        assert!(r.allow(later, src(u32::MAX), 10));
        assert_eq!(r.len(), 1);
    }
}
