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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_wire::checksum::pe_block_sum;
use rserpool_wire::{
    Cause, CauseCode, PeChecksum, PeId, Policy, PolicyType, PoolElement, PoolHandle, ServerId,
    TransportKind, UserTransport,
};

pub mod policy;
pub mod pu;
mod sumtree;

use policy::{Engine, SelState, SortKey};
pub use pu::PuCache;
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
    /// How often this PE was returned by [`Handlespace::select`].
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
enum Selector {
    Sorted(BTreeSet<(SortKey, u64, u32)>),
    Weighted(WeightTree),
    /// RAND: a dense array of the pool's PEs (`PeRecord::slot` = position); a selection
    /// is a partial Fisher–Yates shuffle, undone afterwards. O(1) per chosen PE.
    Uniform(Vec<u32>),
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
}

#[derive(Clone, Debug)]
struct OwnerIndex {
    head: u32,
    count: usize,
    checksum: PeChecksum,
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

    fn find(&self, handle: &PoolHandle, id: PeId) -> Option<(u32, u32)> {
        let p = self.pool_idx(handle)?;
        let i = *self.pool(p).members.get(&id)?;
        Some((p, i))
    }

    fn max_increment(&self, ty: PolicyType) -> usize {
        match self.config.max_increment {
            Some(m) if m > 0 => m as usize,
            _ => policy::default_max_increment(ty) as usize,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    // ------------------------------------------------------------------------------------
    // owner index (intrusive list)

    fn owner_link(&mut self, i: u32, owner: ServerId, block: u64) {
        let o = self.owners.entry(owner).or_insert(OwnerIndex {
            head: NIL,
            count: 0,
            checksum: PeChecksum::new(),
        });
        let old_head = o.head;
        o.head = i;
        o.count += 1;
        o.checksum.add_sum(block);
        if old_head != NIL {
            self.rec_mut(old_head).owner_prev = i;
        }
        let r = self.rec_mut(i);
        r.owner_prev = NIL;
        r.owner_next = old_head;
    }

    fn owner_unlink(&mut self, i: u32, owner: ServerId, block: u64) {
        let (prev, next) = {
            let r = self.rec_mut(i);
            let pn = (r.owner_prev, r.owner_next);
            r.owner_prev = NIL;
            r.owner_next = NIL;
            pn
        };
        if prev != NIL {
            self.rec_mut(prev).owner_next = next;
        }
        if next != NIL {
            self.rec_mut(next).owner_prev = prev;
        }
        let empty = match self.owners.get_mut(&owner) {
            Some(o) => {
                if o.head == i {
                    o.head = next;
                }
                o.count -= 1;
                o.checksum.remove_sum(block);
                o.count == 0
            }
            None => false,
        };
        if empty {
            self.owners.remove(&owner);
        }
    }

    // ------------------------------------------------------------------------------------
    // selection structures

    /// Take the PE out of the ordering (sorted engine); the weighted slot stays.
    fn sel_detach(pool: &mut Pool, i: u32, r: &mut PeRecord) {
        if let Selector::Sorted(set) = &mut pool.sel {
            if let Some(k) = r.key.take() {
                set.remove(&(k, r.entry.sel.seq, i));
            }
        }
    }

    /// (Re-)insert the PE with its current values. `fresh`: first entry into the ring
    /// (WRR counters start at the current first PE's round).
    fn sel_attach(pool: &mut Pool, i: u32, r: &mut PeRecord, fresh: bool) {
        let p = &r.entry.pe.policy;
        match &mut pool.sel {
            Selector::Sorted(set) => {
                if let Policy::WeightedRoundRobin { weight } = *p {
                    if fresh {
                        r.entry.sel.wrr_round = set.first().map(|(k, _, _)| k.a).unwrap_or(0);
                        r.entry.sel.wrr_virtual = weight;
                    }
                }
                r.key = policy::sort_key(p, &r.entry.sel);
                if let Some(k) = r.key {
                    set.insert((k, r.entry.sel.seq, i));
                }
            }
            Selector::Weighted(tree) => {
                let w = policy::weight(p, &r.entry.sel);
                if r.slot == NIL {
                    r.slot = tree.insert(i, w);
                } else {
                    tree.set(r.slot, w);
                }
            }
            Selector::Uniform(all) => {
                if r.slot == NIL {
                    r.slot = all.len() as u32;
                    all.push(i);
                }
            }
        }
    }

    /// Take the PE out of every selection structure. RAND: returns the PE moved into the
    /// freed array position, which the caller must re-point.
    fn sel_remove(pool: &mut Pool, i: u32, r: &mut PeRecord) -> Option<(u32, u32)> {
        Self::sel_detach(pool, i, r);
        let slot = std::mem::replace(&mut r.slot, NIL);
        if slot == NIL {
            return None;
        }
        match &mut pool.sel {
            Selector::Sorted(_) => None,
            Selector::Weighted(tree) => {
                tree.remove(slot);
                None
            }
            Selector::Uniform(all) => {
                all.swap_remove(slot as usize);
                all.get(slot as usize).map(|&moved| (moved, slot))
            }
        }
    }

    /// Run `f` on a PE's record with the PE taken out of its pool's ordering, then put it
    /// back with its new values.
    fn with_reattach(&mut self, p: u32, i: u32, f: impl FnOnce(&mut PeRecord) -> bool) {
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let r = self.pes[i as usize].as_mut().expect("live PE");
        Self::sel_detach(pool, i, r);
        let fresh = f(r);
        Self::sel_attach(pool, i, r, fresh);
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

    /// Move every PE owned by `from` to `to` (ENRP takeover); returns the (handle, id)
    /// moved. O(k).
    pub fn take_over(&mut self, from: ServerId, to: ServerId) -> Vec<(PoolHandle, PeId)> {
        let idxs = self.owned_indices(from);
        let mut out = Vec::with_capacity(idxs.len());
        for &i in &idxs {
            let r = self.rec(i);
            let handle = &self.pool(r.pool).handle;
            out.push((handle.clone(), r.entry.pe.id));
        }
        if from == to || idxs.is_empty() {
            return out;
        }
        let Some(old) = self.owners.remove(&from) else {
            return out;
        };
        // Splice the whole list in front of `to`'s list: O(k) for the owner fields.
        for &i in &idxs {
            self.rec_mut(i).entry.pe.home_registrar = to;
        }
        let tail = *idxs.last().expect("non-empty");
        let o = self.owners.entry(to).or_insert(OwnerIndex {
            head: NIL,
            count: 0,
            checksum: PeChecksum::new(),
        });
        let old_head = o.head;
        o.head = old.head;
        o.count += old.count;
        // Block sums are additive: O(k) over the moved PEs (handles ≤ max_handle_len).
        for (h, id) in &out {
            o.checksum.add_sum(pe_block_sum(h, *id));
        }
        self.rec_mut(tail).owner_next = old_head;
        if old_head != NIL {
            self.rec_mut(old_head).owner_prev = tail;
        }
        out
    }

    fn owned_indices(&self, owner: ServerId) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.owned_count(owner));
        let mut cur = self.owners.get(&owner).map(|o| o.head).unwrap_or(NIL);
        while cur != NIL {
            v.push(cur);
            cur = self.rec(cur).owner_next;
        }
        v
    }

    /// Remove every PE owned by `owner`; returns them.
    pub fn remove_owner(&mut self, owner: ServerId) -> Vec<(PoolHandle, PoolElement)> {
        let idxs = self.owned_indices(owner);
        let mut out = Vec::with_capacity(idxs.len());
        for i in idxs {
            let p = self.rec(i).pool;
            let handle = self.pool(p).handle.clone();
            let e = self.remove_at(p, i);
            out.push((handle, e.pe));
        }
        out
    }

    // ------------------------------------------------------------------------------------
    // timers

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

    /// Every PE owned by `owner` with its pool handle. O(k).
    pub fn owned_by(&self, owner: ServerId) -> impl Iterator<Item = (&PoolHandle, &PeEntry)> {
        let mut cur = self.owners.get(&owner).map(|o| o.head).unwrap_or(NIL);
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let r = self.rec(cur);
            cur = r.owner_next;
            Some((&self.pool(r.pool).handle, &r.entry))
        })
    }

    pub fn owned_count(&self, owner: ServerId) -> usize {
        self.owners.get(&owner).map(|o| o.count).unwrap_or(0)
    }

    /// RFC 5353 PE checksum of `owner`'s PEs (0xFFFF when it owns none). O(1).
    pub fn checksum(&self, owner: ServerId) -> u16 {
        self.owners
            .get(&owner)
            .map(|o| o.checksum.value())
            .unwrap_or_else(|| PeChecksum::new().value())
    }

    /// Owners with their PE counts, by server id.
    pub fn owners(&self) -> impl Iterator<Item = (ServerId, usize)> + '_ {
        self.owners.iter().map(|(s, o)| (*s, o.count))
    }

    // ------------------------------------------------------------------------------------
    // selection

    /// Up to `n` distinct PEs of the pool by its policy (policies.md), in order; advances
    /// policy state (RR head by one, WRR counters, degradation…). `None` if the pool is
    /// unknown. O(log n) per chosen PE.
    pub fn select(&mut self, handle: &PoolHandle, n: usize) -> Option<Vec<PeId>> {
        let p = self.pool_idx(handle)?;
        let k = self.max_increment(self.pool(p).policy.policy_type());
        let pool = self.pools[p as usize].as_mut().expect("live pool");
        let pes = &mut self.pes;
        let mut out = Vec::with_capacity(n.min(pool.members.len()));
        match &mut pool.sel {
            Selector::Sorted(set) => {
                let picked: Vec<(SortKey, u64, u32)> = set.iter().take(n).copied().collect();
                for (pos, &(key, seq, i)) in picked.iter().enumerate() {
                    let r = pes[i as usize].as_mut().expect("live PE");
                    out.push(r.entry.pe.id);
                    r.entry.sel.selected += 1;
                    let resequence = pos < k;
                    let degrade = policy::degrades(&r.entry.pe.policy);
                    if !(resequence || degrade) {
                        continue;
                    }
                    set.remove(&(key, seq, i));
                    if resequence {
                        self.next_seq += 1;
                        r.entry.sel.seq = self.next_seq;
                        policy::wrr_step(&r.entry.pe.policy, &mut r.entry.sel);
                    }
                    policy::degrade(&r.entry.pe.policy, &mut r.entry.sel);
                    r.key = policy::sort_key(&r.entry.pe.policy, &r.entry.sel);
                    if let Some(nk) = r.key {
                        set.insert((nk, r.entry.sel.seq, i));
                    }
                }
            }
            Selector::Uniform(all) => {
                let m = n.min(all.len());
                let mut swaps = Vec::with_capacity(m);
                for k in 0..m {
                    let j = k + self.rng.gen_range(0..all.len() - k);
                    all.swap(k, j);
                    swaps.push(j);
                    let r = pes[all[k] as usize].as_mut().expect("live PE");
                    out.push(r.entry.pe.id);
                    r.entry.sel.selected += 1;
                }
                for (k, j) in swaps.into_iter().enumerate().rev() {
                    all.swap(k, j);
                }
            }
            Selector::Weighted(tree) => {
                let mut picked: Vec<u32> = Vec::with_capacity(n.min(tree.len()));
                for _ in 0..n.min(tree.len()) {
                    let total = tree.total();
                    if total == 0 {
                        break;
                    }
                    let r = self.rng.gen_range(0..total);
                    let Some(slot) = tree.find(r) else { break };
                    tree.set(slot, 0);
                    picked.push(slot);
                }
                for slot in picked {
                    let i = tree.owner(slot);
                    let r = pes[i as usize].as_mut().expect("live PE");
                    out.push(r.entry.pe.id);
                    r.entry.sel.selected += 1;
                    policy::degrade(&r.entry.pe.policy, &mut r.entry.sel);
                    tree.set(slot, policy::weight(&r.entry.pe.policy, &r.entry.sel));
                }
            }
        }
        Some(out)
    }

    /// The pool's PEs in the order the sorted engine would return them now (without
    /// advancing any state); `None` for an unknown pool or a weighted-random policy.
    pub fn peek_order(&self, handle: &PoolHandle) -> Option<Vec<PeId>> {
        let p = self.pool_idx(handle)?;
        match &self.pool(p).sel {
            Selector::Sorted(set) => Some(
                set.iter()
                    .map(|&(_, _, i)| self.rec(i).entry.pe.id)
                    .collect(),
            ),
            Selector::Weighted(_) | Selector::Uniform(_) => None,
        }
    }

    // ------------------------------------------------------------------------------------
    // invariants

    /// Check every index against the PE table; panics with a description on violation.
    /// O(total size); meant for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        // PE table ↔ pools
        let mut live = 0usize;
        for (i, slot) in self.pes.iter().enumerate() {
            let Some(r) = slot else { continue };
            live += 1;
            let pool = self.pools[r.pool as usize]
                .as_ref()
                .unwrap_or_else(|| panic!("PE {i} in dead pool {}", r.pool));
            assert_eq!(
                pool.members.get(&r.entry.pe.id),
                Some(&(i as u32)),
                "PE {i} not a member of its pool"
            );
            assert_eq!(
                r.entry.pe.policy.policy_type(),
                pool.policy.policy_type(),
                "PE {i} policy type differs from pool"
            );
            assert_ne!(r.entry.pe.id.0, 0);
        }
        assert_eq!(live, self.len, "len");
        assert_eq!(live + self.pe_free.len(), self.pes.len(), "PE free list");
        for f in &self.pe_free {
            assert!(self.pes[*f as usize].is_none(), "free PE slot in use");
        }
        let mut members = 0usize;
        let mut live_pools = 0usize;
        for (p, pool) in self.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            live_pools += 1;
            assert!(!pool.members.is_empty(), "empty pool kept");
            assert_eq!(self.by_handle.get(&pool.handle), Some(&(p as u32)));
            assert_eq!(self.lookup.get(&pool.handle), Some(&(p as u32)));
            for (id, &i) in &pool.members {
                let r = self.pes[i as usize].as_ref().expect("member is live");
                assert_eq!(r.pool, p as u32, "member points to another pool");
                assert_eq!(r.entry.pe.id, *id);
                members += 1;
            }
            // selection structure
            match &pool.sel {
                Selector::Sorted(set) => {
                    let mut in_set = 0usize;
                    for &i in pool.members.values() {
                        let r = self.rec(i);
                        let k = policy::sort_key(&r.entry.pe.policy, &r.entry.sel);
                        assert_eq!(r.key, k, "stale sort key for PE {i}");
                        assert_eq!(r.slot, NIL);
                        if let Some(k) = k {
                            assert!(set.contains(&(k, r.entry.sel.seq, i)), "PE {i} not in set");
                            in_set += 1;
                        }
                    }
                    assert_eq!(set.len(), in_set, "sorted set has extra entries");
                }
                Selector::Weighted(tree) => {
                    tree.check();
                    assert_eq!(tree.len(), pool.members.len(), "weight tree size");
                    for &i in pool.members.values() {
                        let r = self.rec(i);
                        assert!(r.key.is_none());
                        assert_eq!(tree.owner(r.slot), i, "slot owner");
                        assert_eq!(
                            tree.weight(r.slot),
                            policy::weight(&r.entry.pe.policy, &r.entry.sel),
                            "stale weight for PE {i}"
                        );
                    }
                    for (slot, o, _) in tree.iter() {
                        assert_eq!(self.rec(o).slot, slot, "slot back link");
                    }
                }
                Selector::Uniform(all) => {
                    assert_eq!(all.len(), pool.members.len(), "uniform array size");
                    for &i in pool.members.values() {
                        let r = self.rec(i);
                        assert!(r.key.is_none());
                        assert_eq!(all.get(r.slot as usize), Some(&i), "array position");
                    }
                }
            }
        }
        assert_eq!(members, self.len, "members total");
        assert_eq!(live_pools, self.by_handle.len(), "pool count");
        assert_eq!(live_pools, self.lookup.len(), "pool lookup count");
        // owners
        let mut owned = 0usize;
        for (owner, o) in &self.owners {
            assert!(o.count > 0, "empty owner kept");
            let mut cur = o.head;
            let mut prev = NIL;
            let mut n = 0usize;
            let mut sum = PeChecksum::new();
            while cur != NIL {
                let r = self.rec(cur);
                assert_eq!(r.owner_prev, prev, "owner list back link");
                assert_eq!(r.entry.pe.home_registrar, *owner, "PE in wrong owner list");
                sum.add(&self.pool(r.pool).handle, r.entry.pe.id);
                n += 1;
                assert!(n <= self.len, "owner list cycle");
                prev = cur;
                cur = r.owner_next;
            }
            assert_eq!(n, o.count, "owner count");
            assert_eq!(sum, o.checksum, "owner checksum sum");
            let scratch = PeChecksum::compute(self.owned_by(*owner).map(|(h, e)| (h, e.pe.id)));
            assert_eq!(scratch, o.checksum.value(), "checksum from scratch");
            owned += n;
        }
        assert_eq!(owned, self.len, "every PE has exactly one owner");
        // timers
        let mut with_timer = 0usize;
        for (i, slot) in self.pes.iter().enumerate() {
            if let Some(Some((d, s, _))) = slot.as_ref().map(|r| r.timer) {
                with_timer += 1;
                assert_eq!(
                    self.timers.get(&(d, s)),
                    Some(&(i as u32)),
                    "timer not queued"
                );
            }
        }
        assert_eq!(
            with_timer,
            self.timers.len(),
            "timer queue has extra entries"
        );
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
