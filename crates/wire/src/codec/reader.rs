//! The bounds-checked reader: a cursor over part of a message, one TLV at a time, and the
//! message header. Every length is checked against the bytes actually present.

use crate::error::{DecodeError, DecodeErrorKind as K};
use crate::pad::pad4;
use crate::types::*;

/// A bounds-checked cursor over part of a message; `base` is the offset of `buf[0]` in
/// the whole message, so errors can name absolute offsets.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) base: usize,
}

/// One TLV as found in the input.
#[derive(Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub ty: ParamType,
    pub value: &'a [u8],
    /// Offset of the TLV header in the message.
    pub offset: usize,
}

impl<'a> Tlv<'a> {
    pub(crate) fn reader(&self) -> Reader<'a> {
        Reader {
            buf: self.value,
            pos: 0,
            base: self.offset + 4,
        }
    }
    pub(crate) fn err(&self, kind: K) -> DecodeError {
        DecodeError::new(self.offset, kind)
    }
    pub(crate) fn len(&self) -> u16 {
        // Value length was checked to fit a u16 length field.
        (self.value.len() + 4) as u16
    }
    pub(crate) fn exact(&self, n: usize, expected: &'static str) -> Result<(), DecodeError> {
        if self.value.len() + 4 != n {
            return Err(self.bad_length(expected));
        }
        Ok(())
    }
    #[cold]
    pub(crate) fn bad_length(&self, expected: &'static str) -> DecodeError {
        self.err(K::ParamBadLength {
            ty: self.ty,
            length: self.len(),
            expected,
        })
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }
    #[inline]
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }
    /// The parameter this reader walks (its header offset), or 0 for the message value.
    #[inline]
    pub(crate) fn container(&self) -> Option<usize> {
        self.base.checked_sub(4)
    }
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    #[inline]
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::inside(
                self.offset(),
                self.container(),
                K::Truncated {
                    what,
                    needed: n,
                    available: self.remaining(),
                },
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    #[inline]
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    #[inline]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline]
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }

    /// The TLV-shaped item (a parameter, or an error cause: 16-bit type, 16-bit length
    /// counting the 4 header bytes, value padded to 4) at the reader's position. A whole
    /// item is stepped over with its padding, tolerating a missing pad at the end of the
    /// container (RSPLIB's and the RFC's nested lengths both decode); otherwise the reader
    /// does not move. The one TLV walk shared by the decoder and the renderer.
    #[inline(always)]
    pub(crate) fn raw_tlv(&mut self) -> RawTlv<'a> {
        let rest = &self.buf[self.pos..];
        let [t0, t1, l0, l1, ..] = *rest else {
            return RawTlv::Short;
        };
        let ty = u16::from_be_bytes([t0, t1]);
        let length = u16::from_be_bytes([l0, l1]);
        if length < 4 {
            return RawTlv::TooSmall { ty, length };
        }
        let len = usize::from(length);
        if len > rest.len() {
            return RawTlv::Overrun { ty, length };
        }
        let value = &rest[4..len];
        self.pos = (self.pos + pad4(len)).min(self.buf.len());
        RawTlv::Whole { ty, value }
    }

    /// Read the next TLV (see [`Reader::raw_tlv`]); a broken one is an error at its offset.
    #[inline(always)]
    pub(crate) fn tlv(&mut self) -> Result<Tlv<'a>, DecodeError> {
        let offset = self.offset();
        match self.raw_tlv() {
            RawTlv::Whole { ty, value } => Ok(Tlv {
                ty: ParamType(ty),
                value,
                offset,
            }),
            broken => Err(self.tlv_error(broken)),
        }
    }

    /// The error for a TLV [`Reader::raw_tlv`] found broken at the reader's position.
    #[cold]
    #[inline(never)]
    fn tlv_error(&self, broken: RawTlv) -> DecodeError {
        let kind = match broken {
            RawTlv::Short | RawTlv::Whole { .. } => K::Truncated {
                what: "parameter header",
                needed: 4,
                available: self.remaining(),
            },
            RawTlv::TooSmall { ty, length } => K::ParamLengthTooSmall {
                ty: ParamType(ty),
                length,
            },
            RawTlv::Overrun { ty, length } => K::ParamOverrun {
                ty: ParamType(ty),
                length,
                available: self.remaining(),
            },
        };
        DecodeError::inside(self.offset(), self.container(), kind)
    }
}

/// What [`Reader::raw_tlv`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RawTlv<'a> {
    /// Fewer than 4 bytes left: no header.
    Short,
    /// The length field is below 4.
    TooSmall { ty: u16, length: u16 },
    /// The length field runs past the bytes left.
    Overrun { ty: u16, length: u16 },
    /// A whole item: its type word and value (padding excluded).
    Whole { ty: u16, value: &'a [u8] },
}

/// The four header fields of a message as they appear on the wire, unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: u8,
    pub flags: u8,
    pub length: u16,
}

impl Header {
    /// The header of `bytes`, or `None` when fewer than 4 bytes are present.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        match bytes {
            [ty, flags, l0, l1, ..] => Some(Header {
                ty: *ty,
                flags: *flags,
                length: u16::from_be_bytes([*l0, *l1]),
            }),
            _ => None,
        }
    }
}

/// Header of a message: (type, flags, length, value reader).
pub(crate) fn split_header(buf: &[u8]) -> Result<(u8, u8, Reader<'_>), DecodeError> {
    let Some(header) = Header::parse(buf) else {
        return Err(DecodeError::new(
            0,
            K::Truncated {
                what: "message header",
                needed: 4,
                available: buf.len(),
            },
        ));
    };
    let length = header.length;
    let len = usize::from(length);
    if len < 4 {
        return Err(DecodeError::new(2, K::MessageLengthTooSmall { length }));
    }
    if len > buf.len() {
        return Err(DecodeError::new(
            2,
            K::MessageLengthTooBig {
                length,
                available: buf.len(),
            },
        ));
    }
    if buf.len() > pad4(len) {
        return Err(DecodeError::new(
            pad4(len),
            K::TrailingBytes {
                extra: buf.len() - pad4(len),
            },
        ));
    }
    Ok((header.ty, header.flags, Reader::new(&buf[4..len], 4)))
}
