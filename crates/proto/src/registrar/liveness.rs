//! The keep-alive side of the registrar (RFC 5352 §3.5, procedures.md §1.5): each owned
//! PE's one timer (next keep-alive, ACK timeout or lifetime), the jittered and batched
//! period, a new PE's spread first probe, and what a due timer does. The rules and their
//! defaults are in `mod.rs`; costs and measurements in `docs/liveness.md`.

use super::*;

/// A well-mixed 64-bit value of `x` (SplitMix64's finaliser): a connection's phase on the
/// keep-alive batching grid.
pub(super) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Registrar {
    pub(super) fn life_of(&self, handle: &PoolHandle, id: PeId) -> Option<Instant> {
        self.hs
            .get(handle, id)
            .and_then(|e| e.bookkeeping.expires_at)
    }

    /// Keep-alive period with jitter.
    pub(super) fn ka_period(&mut self) -> Option<Duration> {
        let base = self.cfg.keepalive_interval?.max(MIN_PERIOD);
        Some(base.saturating_sub(self.ka_jitter()).max(MIN_PERIOD))
    }

    /// A random 0…`keepalive_jitter_percent` % of the keep-alive interval.
    pub(super) fn ka_jitter(&mut self) -> Duration {
        let Some(base) = self.cfg.keepalive_interval else {
            return Duration::ZERO;
        };
        let pct = u128::from(self.cfg.keepalive_jitter_percent.min(90));
        let max_cut = base.max(MIN_PERIOD).as_nanos() * pct / 100;
        let cut = if max_cut > 0 {
            self.rng.gen_range(0..=max_cut)
        } else {
            0
        };
        Duration::from_nanos(u64::try_from(cut).unwrap_or(u64::MAX))
    }

    /// The next keep-alive of a PE registered over `conn`, `period` after `now`, moved
    /// earlier onto the connection's grid of `keepalive_batch` (its phase is derived from
    /// the connection ID), so one connection's keep-alives leave together. Never later
    /// than `now + period`; unbatched when the batch is zero, not shorter than the period,
    /// or the grid point would not lie after `now`.
    pub(super) fn ka_batched(&self, now: Instant, period: Duration, conn: Option<u64>) -> Instant {
        let due = later(now, period);
        let batch = self.cfg.keepalive_batch.as_nanos();
        let (Some(epoch), Some(conn)) = (self.epoch, conn) else {
            return due;
        };
        if batch == 0 || batch >= period.as_nanos() {
            return due;
        }
        let phase = u128::from(mix64(conn)) % batch;
        let since = due.saturating_duration_since(epoch).as_nanos();
        if since < phase {
            return due;
        }
        let back = (since - phase) % batch;
        let back = Duration::from_nanos(u64::try_from(back).unwrap_or(0));
        match due.checked_sub(back) {
            Some(t) if t > now => t,
            _ => due,
        }
    }

    /// Arm the PE's one timer: `next` (a keep-alive step) or its lifetime, whichever is
    /// first.
    pub(super) fn arm(
        &mut self,
        handle: &PoolHandle,
        id: PeId,
        next: Option<(Instant, TimerKind)>,
    ) {
        let life = self.life_of(handle, id);
        let choice = match (next, life) {
            (Some((t, _)), Some(l)) if l <= t => Some((l, TimerKind::Lifetime)),
            (Some(x), _) => Some(x),
            (None, Some(l)) => Some((l, TimerKind::Lifetime)),
            (None, None) => None,
        };
        match choice {
            Some((t, k)) => {
                self.hs.set_timer(handle, id, t, k);
            }
            None => self.hs.clear_timer(handle, id),
        }
    }

    /// Arm the next keep-alive transmission (or only the lifetime when disabled or not
    /// owned).
    pub(super) fn arm_keepalive(&mut self, now: Instant, handle: &PoolHandle, id: PeId) {
        self.arm_keepalive_in(now, handle, id, false);
    }

    /// [`Self::arm_keepalive`]; with `first` (a PE new to this registrar) the jittered
    /// period is shortened by a second random 0…`keepalive_jitter_percent` % of the
    /// interval, so the PEs of a registration storm come due spread over twice the jitter
    /// (half the interval at the default 25 %) and keep spread phases afterwards. Only
    /// ever earlier, so the bound holds.
    pub(super) fn arm_keepalive_in(
        &mut self,
        now: Instant,
        handle: &PoolHandle,
        id: PeId,
        first: bool,
    ) {
        let (owned, conn) = self.hs.get(handle, id).map_or((false, None), |e| {
            (e.pe.home_registrar == self.server_id, e.bookkeeping.conn)
        });
        let next = if owned {
            self.ka_period().map(|p| {
                let p = if first {
                    p.saturating_sub(self.ka_jitter()).max(MIN_PERIOD)
                } else {
                    p
                };
                (self.ka_batched(now, p, conn), TimerKind::KeepAliveTransmit)
            })
        } else {
            None
        };
        self.arm(handle, id, next);
    }

    /// Send a keep-alive (H = 0, with the PE ID) to an owned PE and arm the ACK timeout.
    /// Returns false when there is no live connection to send it on.
    pub(super) fn send_keepalive(&mut self, now: Instant, handle: &PoolHandle, id: PeId) -> bool {
        let conn = self
            .hs
            .get(handle, id)
            .and_then(|e| e.bookkeeping.conn)
            .map(ConnId)
            .filter(|c| self.conns.contains(c));
        if let Some(bk) = self.hs.bookkeeping_mut(handle, id) {
            bk.last_keepalive_sent = Some(now);
        }
        let timeout = self.cfg.keepalive_timeout.max(MIN_PERIOD);
        self.arm(
            handle,
            id,
            Some((later(now, timeout), TimerKind::KeepAliveTimeout)),
        );
        let Some(conn) = conn else {
            return false;
        };
        let msg = AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: self.server_id,
            handle: handle.clone(),
            pe_id: Some(id),
        };
        self.send(Dest::Conn(conn), &msg);
        true
    }

    pub(super) fn keepalive_outstanding(bk: &Bookkeeping) -> bool {
        match (bk.last_keepalive_sent, bk.last_keepalive_ack) {
            (Some(s), Some(a)) => s > a,
            (Some(_), None) => true,
            _ => false,
        }
    }

    pub(super) fn on_pe_timer(
        &mut self,
        now: Instant,
        handle: PoolHandle,
        id: PeId,
        kind: TimerKind,
    ) {
        let Some(entry) = self.hs.get(&handle, id) else {
            return;
        };
        let owned = entry.pe.home_registrar == self.server_id;
        let outstanding = Self::keepalive_outstanding(&entry.bookkeeping);
        let conn = entry.bookkeeping.conn.map(ConnId);
        if self.life_of(&handle, id).is_some_and(|l| l <= now) {
            let removed = self.remove_pe(&handle, id, RemovalReason::LifetimeExpired);
            // Tell the PE (procedures §1.3 step 5).
            if let (true, Some(conn), Some(_)) = (owned, conn, removed) {
                if self.conns.contains(&conn) {
                    let msg = AsapMessage::DeregistrationResponse {
                        handle,
                        pe_id: id,
                        error: None,
                    };
                    self.send(Dest::Conn(conn), &msg);
                }
            }
            return;
        }
        match kind {
            TimerKind::KeepAliveTransmit if owned && self.cfg.keepalive_interval.is_some() => {
                self.send_keepalive(now, &handle, id);
            }
            TimerKind::KeepAliveTimeout if owned && outstanding => {
                // Reports were waiting for this keep-alive: they were right.
                let reason = if self.pe_guard.get(&handle, id).is_some_and(|g| g.probing) {
                    RemovalReason::Unreachable
                } else {
                    RemovalReason::KeepAliveTimeout
                };
                self.remove_pe(&handle, id, reason);
            }
            _ => self.arm_keepalive(now, &handle, id),
        }
    }
}
