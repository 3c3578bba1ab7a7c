//! Decode errors (what went wrong and where) and encode errors.

use crate::message::Protocol;
use crate::types::{Cause, CauseCode, ParamType, PolicyType, MAX_REPORTED_INFO};

/// A decode failure: the problem and the byte offset (from the start of the message)
/// of the header or parameter where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    pub offset: usize,
    pub kind: DecodeErrorKind,
    /// Where the problem lies when `offset` points inside something rather than at a
    /// parameter header: the offset of the enclosing parameter, or 0 for the message
    /// itself; `None` when `offset` is the offending parameter or nothing encloses it.
    /// Used by [`DecodeError::report_cause`] to quote the right bytes. Kept as a `u32`
    /// ([`NOT_WITHIN`] = none; offsets are below 65,536) so the error stays small.
    within: u32,
}

/// `DecodeError::within` when nothing encloses the problem.
const NOT_WITHIN: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("truncated: {what} needs {needed} bytes, only {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("message length {length} is below the 4-byte minimum")]
    MessageLengthTooSmall { length: u16 },
    #[error("message length {length} exceeds the {available} bytes received")]
    MessageLengthTooBig { length: u16, available: usize },
    #[error("{extra} unexpected bytes after the end of the message")]
    TrailingBytes { extra: usize },
    #[error("{protocol:?} message type {ty:#04x} is not known")]
    UnknownMessageType { protocol: Protocol, ty: u8 },
    #[error("parameter {ty}: length {length} is below the 4-byte minimum")]
    ParamLengthTooSmall { ty: ParamType, length: u16 },
    #[error("parameter {ty}: length {length} runs past its container ({available} bytes left)")]
    ParamOverrun {
        ty: ParamType,
        length: u16,
        available: usize,
    },
    #[error("parameter {ty}: length {length}, expected {expected}")]
    ParamBadLength {
        ty: ParamType,
        length: u16,
        expected: &'static str,
    },
    #[error("unrecognized parameter {ty} stops processing of the message")]
    UnrecognizedParameter { ty: ParamType, tlv: Vec<u8> },
    #[error("missing mandatory parameter {expected} in {context}")]
    MissingParameter {
        expected: ParamType,
        context: &'static str,
    },
    #[error("unexpected parameter {found} in {context} (expected {expected})")]
    UnexpectedParameter {
        found: ParamType,
        context: &'static str,
        expected: &'static str,
    },
    #[error("invalid value in {context}: {what}")]
    InvalidValue {
        context: &'static str,
        what: &'static str,
    },
    #[error("policy {policy_type} needs {needed} value bytes, has {got}")]
    PolicyTooShort {
        policy_type: PolicyType,
        needed: usize,
        got: usize,
    },
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        Self {
            offset,
            kind,
            within: NOT_WITHIN,
        }
    }

    /// An error at `offset` inside the parameter starting at `within` (0 = the message).
    pub(crate) fn inside(offset: usize, within: Option<usize>, kind: DecodeErrorKind) -> Self {
        Self {
            offset,
            kind,
            within: within
                .and_then(|w| u32::try_from(w).ok())
                .unwrap_or(NOT_WITHIN),
        }
    }

    /// The parameter (its offset) whose value holds the problem, or `Some(0)` for the
    /// message itself, when the error points inside it (a truncated field, a missing
    /// mandatory parameter); `None` when [`DecodeError::offset`] names the parameter.
    pub fn within(&self) -> Option<usize> {
        (self.within != NOT_WITHIN).then_some(self.within as usize)
    }

    /// Whether RFC 5352/5353 say to drop this message without any report
    /// (unknown message type with action bits `00`, unknown parameter with `00`).
    pub fn is_silent(&self) -> bool {
        match &self.kind {
            DecodeErrorKind::UnknownMessageType { ty, .. } => ty >> 6 != 0b01,
            DecodeErrorKind::UnrecognizedParameter { ty, .. } => !ty.unknown_action().reports(),
            _ => false,
        }
    }

    /// The error cause to report in an ASAP_ERROR / ENRP_ERROR, or `None` when the message
    /// is to be dropped silently. `message` is the complete received message.
    ///
    /// The most specific cause, always with the offending bytes (cut to
    /// [`MAX_REPORTED_INFO`]):
    ///
    /// | problem | cause | information |
    /// |---|---|---|
    /// | unknown message type with report bits `01` | 0x2 | the message |
    /// | unknown parameter with report bits `01` | 0x1 | the parameter |
    /// | a bad value in a well-delimited parameter (wrong fixed length, wrong parameter in this place, bad value, policy too short) | 0x3 | that parameter |
    /// | a parameter whose Length runs past its container (e.g. 0xFFFF) | 0x3 | the parameter's bytes up to the end of its container |
    /// | a parameter whose Length is below 4 | 0x3 | its 4 header bytes |
    /// | a truncated field or a missing mandatory parameter inside a parameter | 0x3 | the enclosing parameter |
    /// | the same at message level, a bad Message Length, trailing bytes | 0x2 | the message |
    /// | an empty input | 0x0 | none (nothing to quote) |
    ///
    /// A cause 0x3 quoting a parameter whose own Length is broken is inherently malformed
    /// to a dissector that reads the quote (Wireshark flags it); a cause 0x3 never goes
    /// out without information.
    pub fn report_cause(&self, message: &[u8]) -> Option<Cause> {
        if self.is_silent() {
            return None;
        }
        let whole = || quote_message(message);
        Some(match &self.kind {
            DecodeErrorKind::UnknownMessageType { .. } => whole(),
            DecodeErrorKind::UnrecognizedParameter { tlv, .. } => {
                let n = tlv.len().min(MAX_REPORTED_INFO);
                Cause::with_info(CauseCode::UNRECOGNIZED_PARAMETER, tlv[..n].to_vec())
            }
            // A bad value inside a well-formed parameter: cause 0x3 carries that parameter.
            DecodeErrorKind::ParamBadLength { .. }
            | DecodeErrorKind::UnexpectedParameter { .. }
            | DecodeErrorKind::InvalidValue { .. }
            | DecodeErrorKind::PolicyTooShort { .. } => {
                match tlv_at(message, self.offset).or_else(|| self.enclosing(message)) {
                    Some(tlv) => Cause::with_info(CauseCode::INVALID_VALUES, tlv),
                    None => whole(),
                }
            }
            // The Length field itself is the bad value: quote the parameter as far as it
            // goes (header included), or its header when the length is below 4.
            DecodeErrorKind::ParamOverrun { available, .. } => {
                invalid_raw(message, self.offset, *available)
            }
            DecodeErrorKind::ParamLengthTooSmall { .. } => invalid_raw(message, self.offset, 4),
            // Something missing or cut short: quote what encloses it.
            DecodeErrorKind::MissingParameter { .. } | DecodeErrorKind::Truncated { .. } => {
                match self.within() {
                    Some(0) => whole(),
                    _ => match self
                        .enclosing(message)
                        .or_else(|| tlv_at(message, self.offset))
                    {
                        Some(tlv) => Cause::with_info(CauseCode::INVALID_VALUES, tlv),
                        None => whole(),
                    },
                }
            }
            // Broken message framing: the message is all there is to quote.
            DecodeErrorKind::MessageLengthTooSmall { .. }
            | DecodeErrorKind::MessageLengthTooBig { .. }
            | DecodeErrorKind::TrailingBytes { .. } => whole(),
        })
    }

    /// The enclosing parameter (complete), when the error lies inside one.
    fn enclosing(&self, message: &[u8]) -> Option<Vec<u8>> {
        match self.within() {
            Some(o) if o > 0 => tlv_at(message, o),
            _ => None,
        }
    }
}

/// Cause 0x2 quoting (a prefix of) the message; Unspecified Error when nothing arrived.
fn quote_message(message: &[u8]) -> Cause {
    if message.is_empty() {
        return Cause::new(CauseCode::UNSPECIFIED);
    }
    // Bounded so the report still fits in an ASAP_ERROR / ENRP_ERROR.
    let n = message.len().min(MAX_REPORTED_INFO);
    Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, message[..n].to_vec())
}

/// Cause 0x3 quoting `len` bytes of `message` from `offset` (as many as there are, at most
/// [`MAX_REPORTED_INFO`]); cause 0x2 with the message if there is nothing at `offset`.
fn invalid_raw(message: &[u8], offset: usize, len: usize) -> Cause {
    let end = offset
        .saturating_add(len.min(MAX_REPORTED_INFO))
        .min(message.len());
    match message.get(offset..end) {
        Some(b) if !b.is_empty() => Cause::with_info(CauseCode::INVALID_VALUES, b.to_vec()),
        _ => quote_message(message),
    }
}

/// The complete TLV starting at `offset` in `message` (zero-padded to 4), if one is there;
/// cut to [`MAX_REPORTED_INFO`] bytes.
fn tlv_at(message: &[u8], offset: usize) -> Option<Vec<u8>> {
    let hdr = message.get(offset..offset.checked_add(4)?)?;
    let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if len < 4 {
        return None;
    }
    let mut tlv = message.get(offset..offset + len)?.to_vec();
    tlv.resize(crate::pad::pad4(len).min(MAX_REPORTED_INFO), 0);
    Some(tlv)
}

/// A message that cannot be encoded: longer than the 65,535 bytes its 16-bit Message
/// Length can say, even with the information of its error causes cut away.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {length} bytes does not fit its 16-bit length field (at most 65535)")]
    TooLong { length: usize },
}
