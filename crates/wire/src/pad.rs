//! Padding arithmetic shared by the data types, the codec and the framing (a leaf: it
//! imports nothing from the crate).

/// Round `n` up to a multiple of 4.
#[inline]
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}
