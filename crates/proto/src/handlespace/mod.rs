//! The handlespace: every pool, every PE, who owns it, when it expires, and how the next
//! PEs of a pool are chosen (RFC 5351–5356, `spec/policies.md`).
//!
//! # Layout
//!
//! * PEs live in one slab (`Vec` with a free list) and are addressed internally by a
//!   `u32` slot index. A PE record holds the [`PeEntry`] (the registered
//!   [`PoolElement`], registrar [`Bookkeeping`], private selection state) plus the links
//!   into every index below.
//! * Pools: `HashMap<PoolHandle, pool index>` for lookups plus a `BTreeMap` of the same
//!   for sorted iteration; each pool holds a `BTreeMap<PeId, slot>` of its members and its
//!   selection structure.
//! * Owners: per home registrar an intrusive doubly linked list through the PE records
//!   (O(1) link/unlink, O(k) walk) with the PE count and the incrementally maintained
//!   RFC 5353 PE checksum.
//! * Timers: ONE ordered queue `BTreeMap<(deadline, seq), slot>`; at most one timer per
//!   PE, remembered in its record so it can be replaced or cleared in O(log n).
//! * Selection: per pool either an ordered set `(SortKey, seq, slot)` (RR, WRR, PRIO, LU,
//!   LUD, PLU, PLUD and the LU-DPF family), a 16-ary cumulative-weight tree (WRAND,
//!   WRAND-DPF, RLU, RLUD, RPLU, RPLUD) or, for RAND, a dense array sampled by a partial
//!   Fisher–Yates shuffle. See [`policy`].
//!
//! Files: `mod.rs` holds the types, the PE slab and pool table, registration and reads;
//! `owners.rs` the owner index (and takeover / owner removal), `timers.rs` the timer
//! queue, `select.rs` the per-pool selection structures and [`Handlespace::select`]
//! (over `policy.rs` and `sumtree.rs`), `invariants.rs` [`Handlespace::check_invariants`].
//!
//! # Complexity (n = PEs in the pool, N = PEs selected, k = PEs of one owner)
//!
//! register / re-register / deregister / update_load / set_timer: O(log n);
//! select: O(log n) per chosen PE; take_over / owned_by: O(k); remove_owner: O(k log n);
//! pop_expired: O(log T) per timer; checksum: O(1).
//!
//! # Selection semantics (deviations chosen where policies.md leaves a choice)
//!
//! * Sorted engine: the first `MaxIncrement` returned PEs get a new (highest) sequence
//!   number and the WRR counter step; degradation (`deg += D`) is applied to *every*
//!   returned PE (RFC rule), also for RLUD / RPLUD ("intended" behaviour).
//! * WRR PEs with weight 0 are not in the ring (never selected).
//! * WRAND-DPF: `W − round(W·dist·wdpf/MAX)`; a negative result becomes 1, exactly 0
//!   stays 0 (policies.md §3, read literally).
//! * The pool's policy (announced to PUs, carried in cause 0x5) is the Policy TLV of the
//!   PE that created the pool ([`Handlespace::pool_policy_value`]).
//! * `registered_at` is set on the first registration and kept on re-registration;
//!   re-registration keeps all bookkeeping and the timer.
//! * RLU uses the RFC weight `MAX − load` (a fully loaded PE is never drawn); the RSPLIB
//!   private randomized policies clamp their weight to at least 1.
//! * All sorted keys are clamped to `0xFFFFFFFF` (RSPLIB `sat`).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_wire::checksum::pe_block_sum;
use rserpool_wire::{
    Cause, CauseCode, PeId, Policy, PolicyType, PoolElement, PoolHandle, ServerId, TransportKind,
    UserTransport,
};

mod invariants;
mod owners;
pub mod policy;
pub mod pu;
mod select;
mod shared;
mod sumtree;
mod timers;

use owners::OwnerIndex;
use policy::{Engine, SelState, SortKey};
pub use pu::PuCache;
use select::Selector;
pub use shared::SharedPick;
use sumtree::WeightTree;

const NIL: u32 = u32::MAX;

/// Limits and selection options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlespaceConfig {
    /// Longest accepted pool handle in bytes (default 64; RSPLIB uses 32). Longer or
    /// empty handles are refused with Invalid Values (0x3).
    pub max_handle_len: usize,
    /// Most PEs in the whole handlespace (default 1,000,000); beyond → Lack of Resources.
    pub max_pes: usize,
    /// Most PEs in one pool (default 100,000); beyond → Lack of Resources.
    pub max_pes_per_pool: usize,
    /// RSPLIB MaxIncrement: how many of the returned PEs are re-sequenced (moved behind
    /// equal keys) per selection. `None` or `Some(0)` = policy default (policies.md §4).
    pub max_increment: Option<u32>,
}

impl Default for HandlespaceConfig {
    fn default() -> Self {
        Self {
            max_handle_len: 64,
            max_pes: 1_000_000,
            max_pes_per_pool: 100_000,
            max_increment: None,
        }
    }
}

/// Per-PE registrar bookkeeping that the handlespace stores but never interprets
/// (mutable through [`Handlespace::bookkeeping_mut`] without disturbing any index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    pub unreachable_reports: u32,
    pub last_keepalive_sent: Option<Instant>,
    pub last_keepalive_ack: Option<Instant>,
    /// Time of the first registration (kept on re-registration).
    pub registered_at: Option<Instant>,
    /// Registrar's `ConnId.0` of the PE's registration connection.
    pub conn: Option<u64>,
    /// When the Registration Life runs out (`None` = infinite or not tracked).
    pub expires_at: Option<Instant>,
}

/// One PE as stored.
#[derive(Clone, Debug)]
pub struct PeEntry {
    /// As last (re-)registered; `pe.home_registrar` is the owner.
    pub pe: PoolElement,
    pub bookkeeping: Bookkeeping,
    sel: SelState,
}

impl PeEntry {
    /// Round-robin sequence number (position in the ring / among equal keys).
    pub fn sequence(&self) -> u64 {
        self.sel.seq
    }
    /// Degradation accumulated since the last (re-)registration, in load units.
    pub fn degradation(&self) -> u32 {
        self.sel.deg
    }
    /// How often this PE was returned by [`Handlespace::select`] (a registrar's answers
    /// from a pool's copy are not counted here).
    pub fn selection_count(&self) -> u64 {
        self.sel.selected
    }
    /// WRR (round, virtual) counters.
    pub fn wrr_counters(&self) -> (u64, u32) {
        (self.sel.wrr_round, self.sel.wrr_virtual)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    Lifetime,
    KeepAliveTransmit,
    KeepAliveTimeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    Added,
    Updated { owner_changed: bool },
}

/// A refused registration; `cause` goes into the registration response.
///
/// Codes: 0x3 (PE id 0, empty/oversized handle, unknown policy type, IP transport without
/// addresses, opaque/IP transport mismatch), 0x5 (carries the pool's policy TLV),
/// 0x6 (limits), 0x7 (carries a transport TLV of the pool's type), 0x8 (transport use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registration refused: {cause:?}")]
pub struct RegisterError {
    pub cause: Cause,
}

impl RegisterError {
    fn code(code: CauseCode) -> Self {
        Self {
            cause: Cause::new(code),
        }
    }
    /// Invalid Values (0x3) quoting the parameter that holds the bad value.
    fn invalid(tlv: Vec<u8>) -> Self {
        Self {
            cause: Cause::with_info(CauseCode::INVALID_VALUES, tlv),
        }
    }
}

#[derive(Clone, Debug)]
struct PeRecord {
    entry: PeEntry,
    pool: u32,
    owner_prev: u32,
    owner_next: u32,
    /// (deadline, queue sequence, kind)
    timer: Option<(Instant, u64, TimerKind)>,
    /// Weighted engine: slot in the pool's weight tree; RAND: position in the array.
    slot: u32,
    /// Sorted engine: current key in the pool's ordered set (`None` = not selectable).
    key: Option<SortKey>,
}

#[derive(Clone, Debug)]
struct Pool {
    handle: PoolHandle,
    /// The policy as registered by the PE that created the pool (announced to PUs,
    /// carried in cause 0x5).
    policy: Policy,
    /// User transport of the creating PE (template for consistency checks and 0x7).
    transport: UserTransport,
    members: BTreeMap<PeId, u32>,
    sel: Selector,
    /// Copied out for selection outside the registrar's lock ([`Handlespace::share_pool`]),
    /// with the copy's round-robin moves: its next change first folds them in, then lists
    /// the pool for [`Handlespace::take_changed`].
    shared: Option<Arc<AtomicU64>>,
}

/// The registrar's handlespace. See the module documentation.
#[derive(Clone, Debug)]
pub struct Handlespace {
    config: HandlespaceConfig,
    rng: ChaCha8Rng,
    pes: Vec<Option<PeRecord>>,
    pe_free: Vec<u32>,
    len: usize,
    /// Sorted pool index (for [`Handlespace::pools`]).
    by_handle: BTreeMap<PoolHandle, u32>,
    /// Hashed pool index for lookups: a B-tree lookup over 100k heap-allocated handles
    /// costs a cache miss per comparison. Only used for lookups, never iterated, so its
    /// random hash keys cannot make behaviour nondeterministic.
    lookup: HashMap<PoolHandle, u32>,
    pools: Vec<Option<Pool>>,
    pool_free: Vec<u32>,
    owners: BTreeMap<ServerId, OwnerIndex>,
    timers: BTreeMap<(Instant, u64), u32>,
    next_timer_seq: u64,
    next_seq: u64,
    /// Shared pools that changed since the last [`Handlespace::take_changed`].
    changed: Vec<PoolHandle>,
    /// The last PE [`Handlespace::find`] looked up: (pool, slot).
    last_found: Cell<Option<(u32, u32)>>,
}

fn transport_param_type(t: &UserTransport) -> Option<u16> {
    t.as_ip().map(|t| t.kind.param_type().0)
}

/// Overwrite a stored PE with its re-registration. Unchanged transports are kept, so the
/// (cold) stored allocations are not freed; the (hot) new ones are dropped instead.
fn store_pe(old: &mut PoolElement, new: PoolElement) {
    let PoolElement {
        id,
        home_registrar,
        registration_life,
        user_transport,
        policy,
        asap_transport,
    } = new;
    old.id = id;
    old.home_registrar = home_registrar;
    old.registration_life = registration_life;
    old.policy = policy;
    if old.user_transport != user_transport {
        old.user_transport = user_transport;
    }
    if old.asap_transport != asap_transport {
        old.asap_transport = asap_transport;
    }
}

impl Handlespace {
    pub fn new(config: HandlespaceConfig, rng_seed: u64) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            pes: Vec::new(),
            pe_free: Vec::new(),
            len: 0,
            by_handle: BTreeMap::new(),
            lookup: HashMap::new(),
            pools: Vec::new(),
            pool_free: Vec::new(),
            owners: BTreeMap::new(),
            timers: BTreeMap::new(),
            next_timer_seq: 0,
            next_seq: 0,
            changed: Vec::new(),
            last_found: Cell::new(None),
        }
    }

    pub fn config(&self) -> &HandlespaceConfig {
        &self.config
    }

    // ------------------------------------------------------------------------------------
    // internal lookups

    fn pool_idx(&self, handle: &PoolHandle) -> Option<u32> {
        self.lookup.get(handle).copied()
    }

    fn pool(&self, p: u32) -> &Pool {
        self.pools[p as usize].as_ref().expect("live pool")
    }

    fn rec(&self, i: u32) -> &PeRecord {
        self.pes[i as usize].as_ref().expect("live PE")
    }

    fn rec_mut(&mut self, i: u32) -> &mut PeRecord {
        self.pes[i as usize].as_mut().expect("live PE")
    }

    /// The PE's pool and slot. One message's handling looks up the same PE several
    /// times; the last answer is checked first (a live slot of that pool holding that
    /// identifier is the PE, so the hint needs no invalidation).
    fn find(&self, handle: &PoolHandle, id: PeId) -> Option<(u32, u32)> {
        if let Some((p, i)) = self.last_found.get() {
            if let Some(Some(r)) = self.pes.get(i as usize) {
                if r.pool == p && r.entry.pe.id == id && self.pool(p).handle == *handle {
                    return Some((p, i));
                }
            }
        }
        let p = self.pool_idx(handle)?;
        let i = *self.pool(p).members.get(&id)?;
        self.last_found.set(Some((p, i)));
        Some((p, i))
    }

    /// A pool is about to change: if it is shared, fold its copy's round-robin moves in
    /// first (as if they had been made here, before the change) and list it (once) for
    /// [`Self::take_changed`].
    fn touch_pool(&mut self, p: u32) {
        if self.unshare_at(p) {
            let handle = self.pool(p).handle.clone();
            self.changed.push(handle);
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    // ------------------------------------------------------------------------------------
    // changes

    fn validate(&self, handle: &PoolHandle, pe: &PoolElement) -> Result<(), RegisterError> {
        if handle.is_empty() || handle.len() > self.config.max_handle_len {
            return Err(RegisterError::invalid(
                rserpool_wire::codec::pool_handle_tlv(handle),
            ));
        }
        let invalid = || {
            Err(RegisterError::invalid(
                rserpool_wire::codec::pool_element_tlv(pe),
            ))
        };
        if pe.id.0 == 0 {
            return invalid();
        }
        if matches!(pe.policy, Policy::Unknown { .. })
            || policy::engine_of(pe.policy.policy_type()).is_none()
        {
            return invalid();
        }
        if let UserTransport::Ip(t) = &pe.user_transport {
            if t.addrs.is_empty() {
                return invalid();
            }
        }
        Ok(())
    }

    fn check_consistency(pool: &Pool, pe: &PoolElement) -> Result<(), RegisterError> {
        if pe.policy.policy_type() != pool.policy.policy_type() {
            return Err(RegisterError {
                cause: Cause::inconsistent_policy(&pool.policy),
            });
        }
        match (&pool.transport, &pe.user_transport) {
            (UserTransport::Ip(a), UserTransport::Ip(b)) => {
                if transport_param_type(&pool.transport) != transport_param_type(&pe.user_transport)
                {
                    return Err(RegisterError {
                        cause: Cause::with_info(
                            CauseCode::INCONSISTENT_TRANSPORT,
                            rserpool_wire::codec::user_transport_tlv(&pool.transport),
                        ),
                    });
                }
                let has_use = matches!(a.kind, TransportKind::Sctp | TransportKind::Tcp);
                if has_use && a.use_field != b.use_field {
                    return Err(RegisterError::code(CauseCode::INCONSISTENT_DATA_CONTROL));
                }
                Ok(())
            }
            (UserTransport::Opaque(_), UserTransport::Opaque(_)) => Ok(()),
            _ => Err(RegisterError::invalid(
                rserpool_wire::codec::user_transport_tlv(&pe.user_transport),
            )),
        }
    }

    /// Register or re-register `pe` (its `home_registrar` field is the owner to record).
    ///
    /// Checks pool consistency: policy type (0x5), user transport kind (0x7), transport
    /// use (0x8). Re-registration updates policy values, transports, lifetime and owner in
    /// place, keeps the RR position (sequence number) and bookkeeping, resets degradation.
    /// Timers are not touched (the caller sets them).
    pub fn register(
        &mut self,
        now: Instant,
        handle: &PoolHandle,
        pe: PoolElement,
    ) -> Result<RegisterOutcome, RegisterError> {
        self.validate(handle, &pe)?;
        let p = match self.pool_idx(handle) {
            Some(p) => {
                let pool = self.pool(p);
                Self::check_consistency(pool, &pe)?;
                if let Some(&i) = pool.members.get(&pe.id) {
                    return Ok(self.update(p, i, pe));
                }
                if self.len >= self.config.max_pes
                    || pool.members.len() >= self.config.max_pes_per_pool
                {
                    return Err(RegisterError::code(CauseCode::LACK_OF_RESOURCES));
                }
                p
            }
            None => {
                if self.len >= self.config.max_pes || self.config.max_pes_per_pool == 0 {
                    return Err(RegisterError::code(CauseCode::LACK_OF_RESOURCES));
                }
                self.create_pool(handle, &pe)
            }
        };
        self.add(now, p, pe);
        Ok(RegisterOutcome::Added)
    }

    fn create_pool(&mut self, handle: &PoolHandle, pe: &PoolElement) -> u32 {
        let engine = policy::engine_of(pe.policy.policy_type()).unwrap_or(Engine::Sorted);
        let pool = Pool {
            handle: handle.clone(),
            policy: pe.policy.clone(),
            transport: pe.user_transport.clone(),
            members: BTreeMap::new(),
            sel: match engine {
                _ if pe.policy.policy_type() == PolicyType::RANDOM => Selector::Uniform(Vec::new()),
                Engine::Sorted => Selector::Sorted(BTreeSet::new()),
                Engine::Weighted => Selector::Weighted(WeightTree::new()),
            },
            shared: None,
        };
        let p = match self.pool_free.pop() {
            Some(p) => {
                self.pools[p as usize] = Some(pool);
                p
            }
            None => {
                self.pools.push(Some(pool));
                (self.pools.len() - 1) as u32
            }
        };
        self.by_handle.insert(handle.clone(), p);
        self.lookup.insert(handle.clone(), p);
        p
    }

    fn add(&mut self, now: Instant, p: u32, pe: PoolElement) {
        self.touch_pool(p);
        let seq = self.next_seq();
        let owner = pe.home_registrar;
        let id = pe.id;
        let rec = PeRecord {
            entry: PeEntry {
                pe,
                bookkeeping: Bookkeeping {
                    registered_at: Some(now),
                    ..Bookkeeping::default()
                },
                sel: SelState {
                    seq,
                    ..SelState::default()
                },
            },
            pool: p,
            owner_prev: NIL,
            owner_next: NIL,
            timer: None,
            slot: NIL,
            key: None,
        };
        let i = match self.pe_free.pop() {
            Some(i) => {
                self.pes[i as usize] = Some(rec);
                i
            }
            None => {
                self.pes.push(Some(rec));
                (self.pes.len() - 1) as u32
            }
        };
        self.len += 1;
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        pool.members.insert(id, i);
        let block = pe_block_sum(&pool.handle, id);
        let r = self.pes[i as usize].as_mut().expect("live PE");
        Self::sel_attach(pool, i, r, true);
        self.owner_link(i, owner, block);
    }

    fn update(&mut self, p: u32, i: u32, pe: PoolElement) -> RegisterOutcome {
        let old_owner = self.rec(i).entry.pe.home_registrar;
        let new_owner = pe.home_registrar;
        let owner_changed = old_owner != new_owner;
        if owner_changed {
            let block = pe_block_sum(&self.pool(p).handle, pe.id);
            self.owner_unlink(i, old_owner, block);
            self.owner_link(i, new_owner, block);
        }
        if self.pool(p).shared.is_some() && self.rec(i).entry.pe != pe {
            self.touch_pool(p);
        }
        // Whether the PE was in the ring must be read before it is taken out of it.
        let was_in_ring = self.rec(i).key.is_some();
        self.with_reattach(p, i, |r| {
            store_pe(&mut r.entry.pe, pe);
            r.entry.sel.deg = 0;
            if let Policy::WeightedRoundRobin { weight } = r.entry.pe.policy {
                if !was_in_ring || r.entry.sel.wrr_virtual == 0 {
                    return true;
                }
                r.entry.sel.wrr_virtual = r.entry.sel.wrr_virtual.min(weight);
            }
            false
        });
        RegisterOutcome::Updated { owner_changed }
    }

    /// Update only the load value of a PE's policy (if its policy has one) and reset its
    /// degradation. Returns false for an unknown PE or a policy without load.
    pub fn update_load(&mut self, handle: &PoolHandle, id: PeId, load: u32) -> bool {
        let Some((p, i)) = self.find(handle, id) else {
            return false;
        };
        if self.rec(i).entry.pe.policy.load().is_none() {
            return false;
        }
        self.touch_pool(p);
        self.with_reattach(p, i, |r| {
            r.entry.pe.policy.set_load(load);
            r.entry.sel.deg = 0;
            false
        });
        true
    }

    /// Remove a PE (its pool is removed when it becomes empty). Returns the removed entry.
    pub fn deregister(&mut self, handle: &PoolHandle, id: PeId) -> Option<PeEntry> {
        let (p, i) = self.find(handle, id)?;
        Some(self.remove_at(p, i))
    }

    fn remove_at(&mut self, p: u32, i: u32) -> PeEntry {
        self.touch_pool(p);
        let (owner, id, timer) = {
            let r = self.rec(i);
            (r.entry.pe.home_registrar, r.entry.pe.id, r.timer)
        };
        if let Some((d, s, _)) = timer {
            self.timers.remove(&(d, s));
        }
        let block = pe_block_sum(&self.pool(p).handle, id);
        self.owner_unlink(i, owner, block);
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let mut rec = self.pes[i as usize].take().expect("live PE");
        let moved = Self::sel_remove(pool, i, &mut rec);
        pool.members.remove(&id);
        if pool.members.is_empty() {
            let pool = self.pools[p as usize].take().expect("live pool");
            self.by_handle.remove(&pool.handle);
            self.lookup.remove(&pool.handle);
            self.pool_free.push(p);
        }
        if let Some((m, pos)) = moved {
            self.rec_mut(m).slot = pos;
        }
        self.pe_free.push(i);
        self.len -= 1;
        rec.entry
    }

    // ------------------------------------------------------------------------------------
    // reads

    pub fn get(&self, handle: &PoolHandle, id: PeId) -> Option<&PeEntry> {
        let (_, i) = self.find(handle, id)?;
        Some(&self.rec(i).entry)
    }

    pub fn contains(&self, handle: &PoolHandle, id: PeId) -> bool {
        self.find(handle, id).is_some()
    }

    pub fn bookkeeping_mut(&mut self, handle: &PoolHandle, id: PeId) -> Option<&mut Bookkeeping> {
        let (_, i) = self.find(handle, id)?;
        Some(&mut self.rec_mut(i).entry.bookkeeping)
    }

    pub fn pool_policy(&self, handle: &PoolHandle) -> Option<PolicyType> {
        self.pool_policy_value(handle).map(Policy::policy_type)
    }

    /// The pool's policy TLV value as fixed by the PE that created the pool.
    pub fn pool_policy_value(&self, handle: &PoolHandle) -> Option<&Policy> {
        self.pool_idx(handle).map(|p| &self.pool(p).policy)
    }

    /// The user transport of the PE that created the pool (the pool's transport type).
    pub fn pool_transport(&self, handle: &PoolHandle) -> Option<&UserTransport> {
        self.pool_idx(handle).map(|p| &self.pool(p).transport)
    }

    pub fn pool_len(&self, handle: &PoolHandle) -> usize {
        self.pool_idx(handle)
            .map(|p| self.pool(p).members.len())
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pool_count(&self) -> usize {
        self.by_handle.len()
    }

    /// Pool handles, sorted.
    pub fn pools(&self) -> impl Iterator<Item = &PoolHandle> {
        self.by_handle.keys()
    }

    /// A pool's PEs by PE id (empty for an unknown pool).
    pub fn pool_entries<'a>(
        &'a self,
        handle: &PoolHandle,
    ) -> impl Iterator<Item = &'a PeEntry> + 'a {
        self.pool_idx(handle)
            .into_iter()
            .flat_map(move |p| self.pool(p).members.values())
            .map(move |&i| &self.rec(i).entry)
    }
}

#[cfg(test)]
mod tests;

/// Paged reads (a dump of a large handlespace in bounded pieces) and run-time limits
/// (a registrar reloading its configuration).
impl Handlespace {
    /// Pool handles from `from` on (included, if it exists), sorted.
    pub fn pools_from<'a>(&'a self, from: &PoolHandle) -> impl Iterator<Item = &'a PoolHandle> {
        self.by_handle
            .range::<PoolHandle, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            .map(|(h, _)| h)
    }

    /// A pool's PEs with a PE ID above `after` (all of them for `None`), by PE ID.
    pub fn pool_entries_after<'a>(
        &'a self,
        handle: &PoolHandle,
        after: Option<PeId>,
    ) -> impl Iterator<Item = &'a PeEntry> + 'a {
        let from = match after {
            Some(id) => std::ops::Bound::Excluded(id),
            None => std::ops::Bound::Unbounded,
        };
        self.pool_idx(handle)
            .into_iter()
            .flat_map(move |p| {
                self.pool(p)
                    .members
                    .range((from, std::ops::Bound::Unbounded))
                    .map(|(_, &i)| i)
            })
            .map(move |i| &self.rec(i).entry)
    }

    /// Replace the limits and selection options. Entries already stored stay (a lower
    /// `max_pes` refuses new registrations until the handlespace shrinks below it).
    pub fn set_config(&mut self, config: HandlespaceConfig) {
        self.config = config;
    }
}
