//! The writer: big-endian fields and TLVs, lengths back-filled in one place.

use crate::pad::pad4;

/// Appends big-endian fields and TLVs to a `Vec<u8>`. TLV lengths are back-filled in one
/// place ([`Writer::end`]), which also pads to 4 bytes. A container's length excludes the
/// padding of its last nested TLV (RFC 5354 §2).
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    /// Padding bytes at the current end of `buf` (not counted in enclosing lengths).
    pub(crate) trailing_pad: usize,
}

impl<'a> Writer<'a> {
    #[inline]
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self {
            buf,
            trailing_pad: 0,
        }
    }
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
        self.trailing_pad = 0;
    }
    #[inline]
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self.trailing_pad = 0;
    }
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self.trailing_pad = 0;
    }
    #[inline]
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
        if !v.is_empty() {
            self.trailing_pad = 0;
        }
    }
    /// Start a TLV (or message: pass the first two header bytes as `ty`); returns its start.
    #[inline]
    pub fn begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.u16(ty);
        self.u16(0);
        start
    }
    /// Back-fill the length of the TLV or message begun at `start` and pad to 4 bytes.
    #[inline]
    pub fn end(&mut self, start: usize) {
        let unpadded = self.buf.len() - self.trailing_pad;
        let len = u16::try_from(unpadded - start).unwrap_or(u16::MAX);
        self.buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        let padded = pad4(self.buf.len() - start) + start;
        let extra = padded - self.buf.len();
        self.buf.resize(padded, 0);
        self.trailing_pad += extra;
    }
}
