//! Cumulative-weight tree for the weighted-random family.
//!
//! A Fenwick (binary indexed) tree over slots; a PE occupies one slot, freed slots are
//! reused (free list), so the tree never has to be rebuilt. Adding a slot, changing a
//! weight and finding the slot whose cumulative interval holds `r` are all O(log n).

/// Slot marker for "no PE here".
pub const EMPTY: u32 = u32::MAX;

#[derive(Clone, Debug, Default)]
pub struct WeightTree {
    /// 1-based Fenwick array; `tree[0]` unused.
    tree: Vec<u64>,
    /// Current weight per slot (0-based), for O(1) reads.
    weights: Vec<u64>,
    /// PE index per slot (0-based), `EMPTY` when free.
    owner: Vec<u32>,
    free: Vec<u32>,
    used: usize,
}

impl WeightTree {
    pub fn new() -> Self {
        Self {
            tree: vec![0],
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.used
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.prefix(self.weights.len())
    }

    /// Sum of weights of slots `0..i`.
    fn prefix(&self, mut i: usize) -> u64 {
        let mut s = 0u64;
        while i > 0 {
            s += self.tree[i];
            i &= i - 1;
        }
        s
    }

    fn add(&mut self, slot: usize, delta: i128) {
        let mut i = slot + 1;
        while i < self.tree.len() {
            self.tree[i] = (i128::from(self.tree[i]) + delta) as u64;
            i += i & i.wrapping_neg();
        }
    }

    /// Put PE `pe` into a slot with weight `w`; returns the slot.
    pub fn insert(&mut self, pe: u32, w: u64) -> u32 {
        self.used += 1;
        if let Some(slot) = self.free.pop() {
            let s = slot as usize;
            self.owner[s] = pe;
            self.set(slot, w);
            return slot;
        }
        let slot = self.weights.len();
        let i = slot + 1;
        // Node i covers slots (i − lowbit(i), i]: its own weight plus the range before it.
        let low = i & i.wrapping_neg();
        let range = self.prefix(i - 1) - self.prefix(i - low);
        self.tree.push(range + w);
        self.weights.push(w);
        self.owner.push(pe);
        slot as u32
    }

    /// Free a slot (its weight drops to 0).
    pub fn remove(&mut self, slot: u32) {
        self.set(slot, 0);
        self.owner[slot as usize] = EMPTY;
        self.free.push(slot);
        self.used -= 1;
    }

    /// Change a slot's weight.
    pub fn set(&mut self, slot: u32, w: u64) {
        let s = slot as usize;
        let old = self.weights[s];
        if old != w {
            self.weights[s] = w;
            self.add(s, i128::from(w) - i128::from(old));
        }
    }

    pub fn weight(&self, slot: u32) -> u64 {
        self.weights[slot as usize]
    }

    pub fn owner(&self, slot: u32) -> u32 {
        self.owner[slot as usize]
    }

    /// The slot whose cumulative interval `[prefix(s), prefix(s+1))` contains `r`
    /// (`r < total()`); `None` if out of range.
    pub fn find(&self, mut r: u64) -> Option<u32> {
        let n = self.tree.len() - 1;
        if n == 0 {
            return None;
        }
        let mut pos = 0usize;
        let mut step = 1usize << (usize::BITS - 1 - n.leading_zeros());
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        // pos = number of slots whose prefix sum ≤ original r → slot index `pos`.
        if pos < n && self.weights[pos] > 0 {
            Some(pos as u32)
        } else {
            None
        }
    }

    /// Slots in use with their PE index and weight.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.owner
            .iter()
            .zip(&self.weights)
            .enumerate()
            .filter(|(_, (o, _))| **o != EMPTY)
            .map(|(s, (o, w))| (s as u32, *o, *w))
    }

    /// Debug check: the Fenwick sums equal the per-slot weights; free slots weigh 0.
    pub fn check(&self) {
        let mut acc = 0u64;
        for (s, w) in self.weights.iter().enumerate() {
            acc += *w;
            assert_eq!(self.prefix(s + 1), acc, "fenwick prefix at slot {s}");
            if self.owner[s] == EMPTY {
                assert_eq!(*w, 0, "free slot {s} has weight");
            }
        }
        let free_set: std::collections::BTreeSet<u32> = self.free.iter().copied().collect();
        assert_eq!(free_set.len(), self.free.len(), "free list has duplicates");
        for f in &self.free {
            assert_eq!(self.owner[*f as usize], EMPTY);
        }
        assert_eq!(self.used + self.free.len(), self.weights.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_and_reuse() {
        let mut t = WeightTree::new();
        let a = t.insert(10, 3);
        let b = t.insert(11, 0);
        let c = t.insert(12, 5);
        t.check();
        assert_eq!(t.total(), 8);
        assert_eq!(t.find(0), Some(a));
        assert_eq!(t.find(2), Some(a));
        assert_eq!(t.find(3), Some(c));
        assert_eq!(t.find(7), Some(c));
        assert_eq!(t.find(8), None);
        t.remove(a);
        t.check();
        assert_eq!(t.find(0), Some(c));
        let d = t.insert(13, 2);
        assert_eq!(d, a, "slot reused");
        t.set(b, 1);
        t.check();
        assert_eq!(t.total(), 8);
        assert_eq!(t.find(2), Some(b));
        for n in 0..100u32 {
            t.insert(100 + n, u64::from(n % 7));
            t.check();
        }
    }
}
