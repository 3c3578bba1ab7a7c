//! The owner index: per home registrar an intrusive doubly linked list through the PE
//! records (O(1) link/unlink, O(k) walk), the owner's PE count and its incrementally
//! maintained RFC 5353 PE checksum; takeover and removal of everything one owner holds.
//! ENRP's per-registrar views (ownership, checksums, takeover) grow here.

use rserpool_wire::checksum::pe_block_sum;
use rserpool_wire::{PeChecksum, PeId, PoolElement, PoolHandle, ServerId};

use super::{Handlespace, PeEntry, NIL};

#[derive(Clone, Debug)]
pub(super) struct OwnerIndex {
    pub(super) head: u32,
    pub(super) count: usize,
    pub(super) checksum: PeChecksum,
}

impl Handlespace {
    pub(super) fn owner_link(&mut self, i: u32, owner: ServerId, block: u64) {
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

    pub(super) fn owner_unlink(&mut self, i: u32, owner: ServerId, block: u64) {
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
            let p = self.rec(i).pool;
            self.touch_pool(p);
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

    pub(super) fn owned_indices(&self, owner: ServerId) -> Vec<u32> {
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
}
