//! The parameter walker: known parameters in sequence, unknown ones skipped and recorded
//! or stopping the decode, per their action bits.

use super::reader::{Reader, Tlv};
use crate::error::{DecodeError, DecodeErrorKind as K};
use crate::pad::pad4;
use crate::types::*;

/// Walks a TLV list in order, skipping (and recording) unknown parameters per their
/// action bits, and lets the message parser demand known parameters in sequence.
pub(crate) struct Params<'a, 'u> {
    pub(crate) r: Reader<'a>,
    pub(crate) peeked: Option<Tlv<'a>>,
    pub(crate) unknown: &'u mut Vec<UnknownParam>,
    pub(crate) context: &'static str,
    /// Accept the Handle Resolution option (only in ASAP_HANDLE_RESOLUTION).
    pub(crate) hr_option: bool,
}

pub(crate) fn is_known(ty: ParamType) -> bool {
    matches!(ty.0, 0x0001..=0x0010)
}

/// The Handle Resolution option is known only inside ASAP_HANDLE_RESOLUTION; elsewhere its
/// action bits (`10`) make an old-style receiver skip it. RSPLIB matches it on the low 14 bits
/// (0x003f with any action bits), so we accept that spelling there too.
pub(crate) fn is_hr_option(ty: ParamType) -> bool {
    ty.0 & 0x3fff == 0x003f
}

pub(crate) fn is_transport(ty: ParamType) -> bool {
    matches!(ty.0, 0x0003..=0x0007 | 0x0010)
}

/// The next known TLV of `r`, or `None` at its end. Unknown TLVs are skipped and recorded
/// or stop decoding, per their action bits.
#[inline(always)]
pub(crate) fn next_known<'a>(
    r: &mut Reader<'a>,
    unknown: &mut Vec<UnknownParam>,
) -> Result<Option<Tlv<'a>>, DecodeError> {
    next_known_in(r, unknown, false)
}

/// [`next_known`], optionally also accepting the Handle Resolution option.
pub(crate) fn next_known_in<'a>(
    r: &mut Reader<'a>,
    unknown: &mut Vec<UnknownParam>,
    hr_option: bool,
) -> Result<Option<Tlv<'a>>, DecodeError> {
    while !r.is_empty() {
        let start = r.pos;
        let t = r.tlv()?;
        if is_known(t.ty) || (hr_option && is_hr_option(t.ty)) {
            return Ok(Some(t));
        }
        // The whole TLV including the padding actually present.
        unknown_param(unknown, &t, &r.buf[start..r.pos])?;
    }
    Ok(None)
}

/// An unrecognised parameter: stop (error) or record and skip, per its action bits.
#[cold]
#[inline(never)]
pub(crate) fn unknown_param(
    unknown: &mut Vec<UnknownParam>,
    t: &Tlv,
    raw: &[u8],
) -> Result<(), DecodeError> {
    if t.ty.unknown_action().stops() {
        return Err(t.err(K::UnrecognizedParameter {
            ty: t.ty,
            tlv: raw.to_vec(),
        }));
    }
    unknown.push(UnknownParam {
        ty: t.ty,
        value: t.value.to_vec(),
        offset: t.offset,
    });
    Ok(())
}

impl<'a, 'u> Params<'a, 'u> {
    pub(crate) fn new(
        r: Reader<'a>,
        unknown: &'u mut Vec<UnknownParam>,
        context: &'static str,
    ) -> Self {
        Self {
            r,
            peeked: None,
            unknown,
            context,
            hr_option: false,
        }
    }

    /// Next known TLV, or `None` at the end.
    #[inline]
    pub(crate) fn peek(&mut self) -> Result<Option<Tlv<'a>>, DecodeError> {
        if self.peeked.is_none() && !self.r.is_empty() {
            self.fill()?;
        }
        Ok(self.peeked)
    }

    /// Read TLVs until a known one (stored in `peeked`) or the end.
    pub(crate) fn fill(&mut self) -> Result<(), DecodeError> {
        self.peeked = next_known_in(&mut self.r, self.unknown, self.hr_option)?;
        Ok(())
    }

    /// How many Pool Element TLVs follow back to back (a capacity hint; lengths are not
    /// validated here, the count stops at the first non-PE or broken header).
    pub(crate) fn count_pes_ahead(&self) -> usize {
        let mut n = usize::from(matches!(self.peeked, Some(t) if t.ty == ParamType::POOL_ELEMENT));
        if self.peeked.is_some() && n == 0 {
            return 0;
        }
        let b = &self.r.buf[self.r.pos.min(self.r.buf.len())..];
        let mut i = 0;
        while i + 4 <= b.len() && u16::from_be_bytes([b[i], b[i + 1]]) == ParamType::POOL_ELEMENT.0
        {
            let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
            if len < 4 {
                break;
            }
            n += 1;
            i += pad4(len);
        }
        n
    }

    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Tlv<'a>>, DecodeError> {
        let t = self.peek()?;
        self.peeked = None;
        Ok(t)
    }

    /// The next parameter if it has type `ty`.
    #[inline]
    pub(crate) fn optional(&mut self, ty: ParamType) -> Result<Option<Tlv<'a>>, DecodeError> {
        match self.peek()? {
            Some(t) if t.ty == ty => self.next(),
            _ => Ok(None),
        }
    }

    /// The next parameter, which must have type `ty`.
    #[inline]
    pub(crate) fn expect(&mut self, ty: ParamType) -> Result<Tlv<'a>, DecodeError> {
        let offset = self.r.offset();
        match self.next()? {
            Some(t) if t.ty == ty => Ok(t),
            Some(t) => Err(t.err(K::UnexpectedParameter {
                found: t.ty,
                context: self.context,
                expected: ty.name(),
            })),
            None => Err(DecodeError::inside(
                offset,
                self.r.container(),
                K::MissingParameter {
                    expected: ty,
                    context: self.context,
                },
            )),
        }
    }

    /// No known parameter may follow.
    pub(crate) fn finish(mut self) -> Result<(), DecodeError> {
        match self.next()? {
            None => Ok(()),
            Some(t) => Err(t.err(K::UnexpectedParameter {
                found: t.ty,
                context: self.context,
                expected: "end of parameters",
            })),
        }
    }
}
