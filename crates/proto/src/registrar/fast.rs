//! Handle resolutions answered outside the core's lock (issue: speed and scale).
//!
//! The registrar core runs behind one lock in the shell, and everything it does — keep-
//! alives, their acknowledgements, registrations, removals — competes for it with the
//! pool users' handle resolutions. Most resolutions only read: they choose PEs of a small
//! pool and encode them. So the core hands out **copies** of the pools it was asked about
//! ([`PoolCopy`]: the PEs encoded once, [`PreparedPes`], and how to choose among them,
//! [`SharedPick`]) through a [`FastResolver`] that the shell's connection readers consult
//! before they queue a message for the core:
//!
//! * A copy is made when the core answers a resolution of a pool that has none, if the
//!   pool has at most [`FAST_MAX_PES`] PEs and its policy chooses the same from a copy:
//!   round robin (the copy holds the round-robin position, an atomic counter), and the
//!   random policies whose weights do not change with use (RAND, WRAND, the randomized
//!   least-used ones without degradation). Other policies stay with the core.
//! * Every change of a copied pool (a PE added, removed, re-registered with other values,
//!   taken over, a new load) first folds the copy's round-robin moves into the handlespace
//!   (as if they had been made there, before the change) and lists the pool
//!   ([`crate::handlespace::Handlespace::take_changed`]); at the end of that input, before
//!   its answers leave, the core drops the copy, and the next resolution makes a fresh
//!   one. While a copy exists the core chooses from it too (subscription pushes, SCTP
//!   users, the DNS view), so there is one round-robin position. (Selections answered
//!   from a copy are not in the PEs' `selection_count`.)
//! * The reader answers only a plain resolution (no subscription, no parameter to report)
//!   that the access rules allow and the per-source rate admits (one token bucket table
//!   for both paths), on a connection with nothing queued for the core (answers keep their
//!   order) and that never subscribed. Anything else goes to the core as before.
//! * What the core must learn from a fast answer comes back as notes, applied at the
//!   start of its next input: the connection was active (its idle timer), and it resolved
//!   the pool (its unreachability reports about the pool count). Counters are atomics
//!   added to the core's.
//!
//! The resolver holds no clock and no global RNG: the shell passes `now`, and each
//! connection's [`FastConn`] has its own seeded generator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_wire::codec::PreparedPes;
use rserpool_wire::{asap_type, decode_asap, AsapMessage, PeId, PoolElement, PoolHandle, Protocol};

use super::access::AccessPolicy;
use super::rates::SourceRates;
use crate::conn_limits::Source;
use crate::handlespace::SharedPick;
use crate::io::{ConnId, RecvMeta};

/// Most PEs of a pool that is copied for answers outside the lock: a bigger pool stays
/// with the core (a copy is re-made after each change, which must stay cheap).
pub const FAST_MAX_PES: usize = 64;

/// Pools a connection's notes name before the oldest is forgotten (the core keeps as
/// many per connection, `guard::RESOLVED_POOLS_PER_CONN`).
const NOTED_POOLS: usize = 16;

/// A connection answered only outside the lock tells the core it is active this often.
const TOUCH_EVERY: Duration = Duration::from_millis(500);

/// Notes waiting for the core at most: beyond, resolutions go to the core (whose input
/// takes the notes in), so a flood cycling through pools cannot grow them while the core
/// has nothing else to do.
pub const MAX_NOTES: usize = 4096;

/// One pool as copied out of the handlespace.
#[derive(Debug)]
pub struct PoolCopy {
    pes: PreparedPes,
    pick: SharedPick,
    /// Round robin: selections' moves since the copy was made (shared with the
    /// handlespace, which folds them in when the pool changes).
    cursor: Arc<AtomicU64>,
}

impl PoolCopy {
    fn new(
        pick: SharedPick,
        pes: &[&PoolElement],
        cursor: Arc<AtomicU64>,
        asap_transport: bool,
    ) -> Option<Self> {
        let prepared = PreparedPes::new(pes.iter().copied(), asap_transport);
        // A PE too long for any message: the core answers for this pool.
        if prepared.len() != pes.len() {
            return None;
        }
        Some(Self {
            pes: prepared,
            pick,
            cursor,
        })
    }

    /// Up to `n` distinct PEs (positions in the copy) as the pool's policy chooses them.
    fn choose(&self, n: usize, rng: &mut impl Rng, out: &mut Vec<usize>) {
        let len = self.pes.len();
        let m = n.min(len);
        match &self.pick {
            SharedPick::RoundRobin { step } => {
                let at = self
                    .cursor
                    .fetch_add((*step).min(m) as u64, Ordering::Relaxed);
                let at = (at % len as u64) as usize;
                out.extend((0..m).map(|j| (at + j) % len));
            }
            SharedPick::Uniform => {
                let mut all: Vec<usize> = (0..len).collect();
                for k in 0..m {
                    let j = k + rng.gen_range(0..len - k);
                    all.swap(k, j);
                }
                out.extend_from_slice(&all[..m]);
            }
            SharedPick::Weighted(weights) => {
                let mut w = weights.clone();
                for _ in 0..m {
                    let total: u64 = w.iter().sum();
                    if total == 0 {
                        break;
                    }
                    let mut r = rng.gen_range(0..total);
                    let Some(i) = w.iter().position(|&x| {
                        if r < x {
                            true
                        } else {
                            r -= x;
                            false
                        }
                    }) else {
                        break;
                    };
                    w[i] = 0;
                    out.push(i);
                }
            }
        }
    }

    /// Choose and cut to what fits in one message: the positions to answer with.
    pub(super) fn answer(&self, handle: &PoolHandle, n: usize, rng: &mut impl Rng) -> Vec<usize> {
        let mut picks = Vec::with_capacity(n.min(self.pes.len()));
        self.choose(n, rng, &mut picks);
        picks.truncate(self.pes.fitting(handle, &picks));
        picks
    }

    /// The positive response with the PEs at `picks` (empty when none or too long).
    pub(super) fn encode(&self, accepted: bool, handle: &PoolHandle, picks: &[usize]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + handle.len() + 64 * picks.len());
        if self
            .pes
            .try_encode_response(accepted, handle, picks, &mut out)
            .is_err()
        {
            out.clear();
        }
        out
    }

    /// The PE at position `i`.
    pub(super) fn id(&self, i: usize) -> PeId {
        self.pes.id(i)
    }
}

/// What the fast path needs of the registrar's configuration.
#[derive(Clone, Debug, Default)]
pub(super) struct FastSettings {
    pub enabled: bool,
    pub access: AccessPolicy,
    pub default_items: u32,
    pub max_items: u32,
    pub max_hr_rate: u32,
}

/// PEs a handle resolution asking for `items` gets: the default when it names none (or
/// 0), never more than `max` (both paths, [`super::RegistrarConfig::default_hr_items`]).
pub(super) fn hr_items(default: u32, max: u32, items: Option<u32>) -> usize {
    let cap = max.max(1);
    let n = match items {
        None | Some(0) => default.clamp(1, cap),
        Some(k) => k.min(cap),
    };
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// What a fast answer tells the core.
#[derive(Debug)]
pub(super) struct Note {
    pub conn: ConnId,
    pub at: Instant,
    /// The pool it resolved (once per connection and pool), or only activity.
    pub handle: Option<PoolHandle>,
}

#[derive(Debug, Default)]
struct Inner {
    settings: RwLock<Arc<FastSettings>>,
    pools: RwLock<HashMap<PoolHandle, Arc<PoolCopy>>>,
    /// The per-source resolution rate, shared by both paths.
    hr_rates: Mutex<SourceRates>,
    notes: Mutex<Vec<Note>>,
    /// `notes.len()` as last left by the lock's holder (read without the lock).
    pending_notes: AtomicUsize,
    /// Resolutions answered outside the lock (received and sent).
    answered: AtomicU64,
}

/// The registrar's pools as copied for answers outside its lock (see the module docs).
/// Cloned into the shell; the core keeps it up to date.
#[derive(Clone, Debug, Default)]
pub struct FastResolver {
    inner: Arc<Inner>,
}

/// One connection's state on the fast path (kept by its reader).
#[derive(Debug)]
pub struct FastConn {
    rng: ChaCha8Rng,
    /// The connection subscribed once: all its resolutions go to the core.
    off: bool,
    noted: Vec<PoolHandle>,
    touched: Option<Instant>,
}

impl FastConn {
    /// A connection's state, its random choices seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            off: false,
            noted: Vec::new(),
            touched: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FastResolver {
    /// Answer `bytes`, a message received on `conn`, without the core: the response to
    /// send, or `None` when the core must take the message (it then does exactly what it
    /// did before). The caller must have nothing of this connection queued for the core.
    pub fn try_answer(
        &self,
        now: Instant,
        conn: ConnId,
        meta: &RecvMeta,
        bytes: &[u8],
        st: &mut FastConn,
    ) -> Option<Vec<u8>> {
        if st.off
            || meta.protocol != Protocol::Asap
            || bytes.first() != Some(&asap_type::HANDLE_RESOLUTION)
        {
            return None;
        }
        let settings = self.settings();
        if !settings.enabled {
            return None;
        }
        let decoded = decode_asap(bytes).ok()?;
        if !decoded.report_causes().is_empty() {
            return None;
        }
        let AsapMessage::HandleResolution {
            handle,
            items,
            subscribe,
        } = decoded.message
        else {
            return None;
        };
        if subscribe {
            st.off = true;
            return None;
        }
        if !settings.access.may_resolve(meta, &handle) {
            return None;
        }
        let copy = self.copy(&handle)?;
        if self.inner.pending_notes.load(Ordering::Relaxed) >= MAX_NOTES {
            return None;
        }
        if settings.max_hr_rate != 0
            && !lock(&self.inner.hr_rates).allow(
                now,
                Source::of(meta.peer.ip()),
                settings.max_hr_rate,
            )
        {
            return None;
        }
        let picks = copy.answer(
            &handle,
            hr_items(settings.default_items, settings.max_items, items),
            &mut st.rng,
        );
        if picks.is_empty() {
            return None;
        }
        let out = copy.encode(false, &handle, &picks);
        if out.is_empty() {
            return None;
        }
        self.note(now, conn, handle, st);
        self.inner.answered.fetch_add(1, Ordering::Relaxed);
        Some(out)
    }

    fn note(&self, now: Instant, conn: ConnId, handle: PoolHandle, st: &mut FastConn) {
        let new_pool = !st.noted.contains(&handle);
        let stale = st
            .touched
            .is_none_or(|t| now.saturating_duration_since(t) >= TOUCH_EVERY);
        if !new_pool && !stale {
            return;
        }
        st.touched = Some(now);
        let handle = if new_pool {
            if st.noted.len() >= NOTED_POOLS {
                st.noted.remove(0);
            }
            st.noted.push(handle.clone());
            Some(handle)
        } else {
            None
        };
        let mut notes = lock(&self.inner.notes);
        notes.push(Note {
            conn,
            at: now,
            handle,
        });
        self.inner
            .pending_notes
            .store(notes.len(), Ordering::Relaxed);
        drop(notes);
    }

    // ---- the core's side -----------------------------------------------------------------

    pub(super) fn settings(&self) -> Arc<FastSettings> {
        self.inner
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_settings(&self, s: FastSettings) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    /// The copy of a pool, if there is one.
    pub(super) fn copy(&self, handle: &PoolHandle) -> Option<Arc<PoolCopy>> {
        self.inner
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(handle)
            .cloned()
    }

    /// Make a copy of a pool from its shared PEs; false when it cannot be copied.
    pub(super) fn publish(
        &self,
        handle: &PoolHandle,
        pick: SharedPick,
        pes: &[&PoolElement],
        cursor: Arc<AtomicU64>,
        asap_transport: bool,
    ) -> bool {
        let Some(copy) = PoolCopy::new(pick, pes, cursor, asap_transport) else {
            return false;
        };
        self.inner
            .pools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.clone(), Arc::new(copy));
        true
    }

    /// Drop a pool's copy; returns it (its round-robin moves and counts to fold back).
    pub(super) fn retire(&self, handle: &PoolHandle) -> Option<Arc<PoolCopy>> {
        self.inner
            .pools
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(handle)
    }

    /// Every pool with a copy.
    pub(super) fn copied(&self) -> Vec<PoolHandle> {
        self.inner
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Resolutions answered outside the lock since start.
    pub fn answered(&self) -> u64 {
        self.inner.answered.load(Ordering::Relaxed)
    }

    /// The notes since the last call.
    pub(super) fn take_notes(&self) -> Vec<Note> {
        if self.inner.pending_notes.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut notes = lock(&self.inner.notes);
        self.inner.pending_notes.store(0, Ordering::Relaxed);
        std::mem::take(&mut *notes)
    }

    /// The per-source resolution rate table (both paths).
    pub(super) fn hr_rates(&self) -> MutexGuard<'_, SourceRates> {
        lock(&self.inner.hr_rates)
    }
}

// ---- the registrar's side ----------------------------------------------------------------

impl FastSettings {
    pub(super) fn of(cfg: &super::RegistrarConfig) -> Self {
        Self {
            enabled: cfg.fast_resolutions,
            access: cfg.access.clone(),
            default_items: cfg.default_hr_items,
            max_items: cfg.max_hr_items,
            max_hr_rate: cfg.max_hr_rate,
        }
    }
}

impl super::Registrar {
    /// What the readers' fast answers noted: the connection was active, it resolved a
    /// pool (so its reports about the pool count).
    pub(super) fn apply_fast_notes(&mut self) {
        for n in self.fast.take_notes() {
            if !self.conns.contains(&n.conn) {
                continue;
            }
            self.limits.touch(n.at, n.conn);
            if let Some(h) = n.handle {
                self.conn_guard.entry(n.conn).or_default().note_resolved(&h);
            }
        }
    }

    /// The end of every input: drop the copies of pools that changed (the handlespace
    /// folded their round-robin moves in before the change), then send the subscription
    /// pushes that are due.
    pub(super) fn end_input(&mut self, now: Instant) {
        for handle in self.hs.take_changed() {
            self.retire_copy(&handle);
        }
        self.push_updates(now);
    }

    fn retire_copy(&mut self, handle: &PoolHandle) {
        if self.fast.retire(handle).is_some() {
            self.hs.unshare(handle);
        }
    }

    pub(super) fn retire_all_copies(&mut self) {
        for handle in self.fast.copied() {
            self.retire_copy(&handle);
        }
    }

    /// Copy a pool for answers outside the lock, if it can be (after the core answered a
    /// resolution of it).
    pub(super) fn share(&mut self, handle: &PoolHandle) {
        if !self.cfg.fast_resolutions {
            return;
        }
        let include = self.cfg.hr_include_asap_transport;
        let Some((pick, pes, moves)) = self.hs.share_pool(handle, FAST_MAX_PES) else {
            return;
        };
        if !self.fast.publish(handle, pick, &pes, moves, include) {
            self.hs.unshare(handle);
        }
    }

    /// PEs of a copied pool as a resolution chooses them (the core's own answers while a
    /// copy exists: one round-robin position).
    pub(super) fn choose_from_copy(
        &mut self,
        handle: &PoolHandle,
        n: usize,
    ) -> Option<(Arc<PoolCopy>, Vec<usize>)> {
        let copy = self.fast.copy(handle)?;
        if !self.hs.is_shared(handle) {
            // Changed earlier in this input: the copy goes at its end; not from it now.
            return None;
        }
        let picks = copy.answer(handle, n, &mut self.rng);
        Some((copy, picks))
    }
}
