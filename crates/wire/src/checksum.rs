//! PE checksum (RFC 5353 §3.6.2; digest `wire-format.md` §6).
//!
//! The checksum over a set of PEs is the RFC 1071 Internet checksum of the concatenated
//! blocks `pool handle (zero-padded to 4) ‖ PE identifier (u32 BE)`. Because the sum is
//! order-independent it is kept incrementally: [`PeChecksum`] holds the un-folded sum in a
//! `u64` and folds only when read.

use crate::types::{PeId, PoolHandle};

/// Un-folded 16-bit word sum of one PE's block.
pub fn pe_block_sum(handle: &PoolHandle, id: PeId) -> u64 {
    let mut sum = 0u64;
    let h = handle.as_bytes();
    let mut chunks = h.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum += u64::from(id.0 >> 16) + u64::from(id.0 & 0xFFFF);
    sum
}

/// Fold a wide sum to 16 bits and complement it.
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xFFFF) + (s >> 16);
    }
    !(s as u16)
}

/// Incrementally maintained PE checksum of one owner's PEs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeChecksum {
    sum: u64,
}

impl PeChecksum {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, handle: &PoolHandle, id: PeId) {
        self.sum += pe_block_sum(handle, id);
    }
    /// Remove a PE previously added. Exact because the sum is kept un-folded.
    pub fn remove(&mut self, handle: &PoolHandle, id: PeId) {
        self.sum = self.sum.saturating_sub(pe_block_sum(handle, id));
    }
    pub fn add_sum(&mut self, block_sum: u64) {
        self.sum += block_sum;
    }
    pub fn remove_sum(&mut self, block_sum: u64) {
        self.sum = self.sum.saturating_sub(block_sum);
    }
    /// The 16-bit checksum as sent in the PE Checksum parameter.
    pub fn value(&self) -> u16 {
        fold(self.sum)
    }
    /// Checksum from scratch over a set of (handle, PE id).
    pub fn compute<'a>(pes: impl IntoIterator<Item = (&'a PoolHandle, PeId)>) -> u16 {
        let mut c = PeChecksum::new();
        for (h, id) in pes {
            c.add(h, id);
        }
        c.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_vectors() {
        let echo = PoolHandle::from("EchoPool");
        let x = PoolHandle::from("X");
        assert_eq!(PeChecksum::compute([]), 0xFFFF);
        assert_eq!(PeChecksum::compute([(&echo, PeId(0x01020304))]), 0x8E4B);
        assert_eq!(
            PeChecksum::compute([
                (&echo, PeId(0x01020304)),
                (&echo, PeId(0xA0B0C0D0)),
                (&x, PeId(0x00000001)),
            ]),
            0x671A
        );
    }

    #[test]
    fn incremental_add_remove() {
        let echo = PoolHandle::from("EchoPool");
        let x = PoolHandle::from("X");
        let mut c = PeChecksum::new();
        c.add(&echo, PeId(0x01020304));
        c.add(&echo, PeId(0xA0B0C0D0));
        c.add(&x, PeId(1));
        assert_eq!(c.value(), 0x671A);
        c.remove(&echo, PeId(0xA0B0C0D0));
        c.remove(&x, PeId(1));
        assert_eq!(c.value(), 0x8E4B);
        c.remove(&echo, PeId(0x01020304));
        assert_eq!(c.value(), 0xFFFF);
    }

    #[test]
    fn padding_to_two_or_four_is_the_same() {
        // Odd-length handle: the trailing byte is padded with zero either way.
        let h = PoolHandle::from("abc");
        let mut block = b"abc\0".to_vec();
        block.extend_from_slice(&7u32.to_be_bytes());
        let manual: u64 = block
            .chunks(2)
            .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        assert_eq!(pe_block_sum(&h, PeId(7)), manual);
    }
}
