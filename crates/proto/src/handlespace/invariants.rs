//! [`Handlespace::check_invariants`]: every index checked against the PE table (tests).

use rserpool_wire::PeChecksum;

use super::select::Selector;
use super::{policy, Handlespace, NIL};

impl Handlespace {
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
