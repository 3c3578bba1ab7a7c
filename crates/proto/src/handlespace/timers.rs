//! The timer queue: ONE ordered queue `(deadline, seq) -> PE`, at most one timer per PE,
//! remembered in its record so it can be replaced or cleared in O(log n).

use std::time::Instant;

use rserpool_wire::{PeId, PoolHandle};

use super::{Handlespace, TimerKind};

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
        if let Some((d, s, _)) = self.rec(i).timer {
            self.timers.remove(&(d, s));
        }
        self.next_timer_seq += 1;
        let s = self.next_timer_seq;
        self.timers.insert((deadline, s), i);
        self.rec_mut(i).timer = Some((deadline, s, kind));
        true
    }

    pub fn clear_timer(&mut self, handle: &PoolHandle, id: PeId) {
        if let Some((_, i)) = self.find(handle, id) {
            if let Some((d, s, _)) = self.rec_mut(i).timer.take() {
                self.timers.remove(&(d, s));
            }
        }
    }

    pub fn timer_of(&self, handle: &PoolHandle, id: PeId) -> Option<(Instant, TimerKind)> {
        let (_, i) = self.find(handle, id)?;
        self.rec(i).timer.map(|(d, _, k)| (d, k))
    }

    /// Earliest timer deadline (head of the queue).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((d, _), _)| *d)
    }

    /// Pop one timer whose deadline <= now (the PE stays; the caller decides).
    /// Call repeatedly until `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(PoolHandle, PeId, TimerKind)> {
        let (&(d, _), _) = self.timers.first_key_value()?;
        if d > now {
            return None;
        }
        let (_, i) = self.timers.pop_first()?;
        let r = self.pes[i as usize].as_mut().expect("live PE");
        let kind = r.timer.take().map(|(_, _, k)| k)?;
        let id = r.entry.pe.id;
        let p = r.pool;
        Some((self.pool(p).handle.clone(), id, kind))
    }

    /// Number of timers queued.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}
