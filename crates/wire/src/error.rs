//! Decode errors: what went wrong and where.

use crate::message::Protocol;
use crate::types::{Cause, CauseCode, ParamType, PolicyType, MAX_REPORTED_INFO};

/// A decode failure: the problem and the byte offset (from the start of the message)
/// of the header or parameter where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

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
        Self { offset, kind }
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
    pub fn report_cause(&self, message: &[u8]) -> Option<Cause> {
        if self.is_silent() {
            return None;
        }
        Some(match &self.kind {
            DecodeErrorKind::UnknownMessageType { .. } => {
                // Bounded so the report still fits in an ASAP_ERROR / ENRP_ERROR.
                let n = message.len().min(MAX_REPORTED_INFO);
                Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, message[..n].to_vec())
            }
            DecodeErrorKind::UnrecognizedParameter { tlv, .. } => {
                let n = tlv.len().min(MAX_REPORTED_INFO);
                Cause::with_info(CauseCode::UNRECOGNIZED_PARAMETER, tlv[..n].to_vec())
            }
            // A bad value inside a well-formed parameter: cause 0x3 carries that parameter.
            DecodeErrorKind::ParamBadLength { .. }
            | DecodeErrorKind::UnexpectedParameter { .. }
            | DecodeErrorKind::InvalidValue { .. }
            | DecodeErrorKind::PolicyTooShort { .. } => match tlv_at(message, self.offset) {
                Some(tlv) => Cause::with_info(CauseCode::INVALID_VALUES, tlv),
                None => Cause::new(CauseCode::UNSPECIFIED),
            },
            // Broken framing (truncation, impossible lengths, missing parameters): there is
            // no parameter to quote, and 0x3 without one is not well-formed (Wireshark
            // flags it), so report Unspecified Error.
            _ => Cause::new(CauseCode::UNSPECIFIED),
        })
    }
}

/// The complete TLV starting at `offset` in `message` (zero-padded to 4), if one is there.
fn tlv_at(message: &[u8], offset: usize) -> Option<Vec<u8>> {
    let hdr = message.get(offset..offset.checked_add(4)?)?;
    let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if !(4..=MAX_REPORTED_INFO).contains(&len) {
        return None;
    }
    let mut tlv = message.get(offset..offset + len)?.to_vec();
    tlv.resize(crate::codec::pad4(len), 0);
    Some(tlv)
}
