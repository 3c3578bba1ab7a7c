//! The timer queue: ONE ordered queue `(deadline, seq) -> PE`, at most one entry per PE,
//! remembered in its record so it can be replaced or cleared in O(log n).
//!
//! Timers are mostly moved later: every re-registration and keep-alive answer pushes the
//! PE's next probe out. Such a move only writes the record; the PE keeps its (earlier)
//! queue entry, and when that entry comes up [`Handlespace::pop_expired`] re-queues it at
//! the timer's deadline. A PE re-registering many times per keep-alive period so costs
//! one re-queue per period instead of a removal and an insertion per re-registration.
//! Moving a timer earlier, clearing it and removing the PE update the queue at once.

use std::time::Instant;

use rserpool_wire::{PeId, PoolHandle};

use super::{Handlespace, TimerKind};

/// Queue entries [`Handlespace::poll_timeout`] looks at for moved timers before it
/// answers with an earlier (safe) deadline.
const PEEK: usize = 8;

impl Handlespace {
    /// Set (replace) the PE's single timer. False for an unknown PE.
    pub fn set_timer(
        &mut self,
        handle: &PoolHandle,
        id: PeId,
        deadline: Instant,
        kind: TimerKind,
    ) -> bool {
        let Some((_, i)) = self.find(handle, id) else {
            return false;
        };
        self.next_timer_seq += 1;
        let key = (deadline, self.next_timer_seq);
        let r = self.rec_mut(i);
        r.timer = Some((key, kind));
        match r.queued {
            // Moved later (or kept): the entry stays until it comes up.
            Some((q, _)) if q <= deadline => {}
            queued => {
                if let Some(q) = queued {
                    self.timers.remove(&q);
                }
                self.enqueue(i, key);
            }
        }
        true
    }

    fn enqueue(&mut self, i: u32, key: (Instant, u64)) {
        self.timers.insert(key, i);
        self.rec_mut(i).queued = Some(key);
    }

    pub fn clear_timer(&mut self, handle: &PoolHandle, id: PeId) {
        if let Some((_, i)) = self.find(handle, id) {
            let r = self.rec_mut(i);
            r.timer = None;
            if let Some(q) = r.queued.take() {
                self.timers.remove(&q);
            }
        }
    }

    pub fn timer_of(&self, handle: &PoolHandle, id: PeId) -> Option<(Instant, TimerKind)> {
        let (_, i) = self.find(handle, id)?;
        self.rec(i).timer.map(|((d, _), k)| (d, k))
    }

    /// The earliest timer deadline, or an earlier one when more than a few timers at the
    /// head of the queue were moved later (waking early is safe: [`Self::pop_expired`]
    /// then re-queues them and returns nothing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        for (n, (&(q, _), &i)) in self.timers.iter().enumerate() {
            if best.is_some_and(|b| b <= q) {
                break;
            }
            if n == PEEK {
                return Some(q);
            }
            let d = self.rec(i).timer.map_or(q, |((d, _), _)| d);
            best = Some(best.map_or(d, |b| b.min(d)));
        }
        best
    }

    /// Pop one timer whose deadline <= now, earliest first (the PE stays; the caller
    /// decides). Call repeatedly until `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(PoolHandle, PeId, TimerKind)> {
        loop {
            let (&(q, _), _) = self.timers.first_key_value()?;
            if q > now {
                return None;
            }
            let (entry, i) = self.timers.pop_first()?;
            let r = self.pes[i as usize].as_mut().expect("live PE");
            r.queued = None;
            match r.timer {
                // Moved later: back into the queue under the key it was set with (timers
                // still come out in deadline order, ties in the order they were set).
                Some((key, _)) if key != entry => self.enqueue(i, key),
                Some((_, kind)) => {
                    r.timer = None;
                    let id = r.entry.pe.id;
                    let p = r.pool;
                    return Some((self.pool(p).handle.clone(), id, kind));
                }
                None => {}
            }
        }
    }

    /// Number of timers set.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}
