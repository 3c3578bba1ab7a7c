//! Encoding and decoding of ASAP and ENRP messages.
//!
//! Decoding never panics and allocates at most a small constant multiple of the input's
//! size: every length comes from a field that was bounds-checked against the bytes
//! actually present, and capacity hints are capped.
//!
//! * `reader`: the bounds-checked `Reader`, one TLV at a time (`Reader::raw_tlv`, the
//!   one TLV walk, shared with `render`), and the message [`Header`].
//! * `writer`: [`Writer`], big-endian fields and TLVs with their lengths back-filled.
//! * `params`: the parameter walker (unknown parameters per their action bits).
//! * `tlv`: encode / decode of each parameter (handle, PE, transport, policy, causes …).
//! * `cause`: the causes that quote an encoded parameter ([`Cause::inconsistent_policy`]).
//! * `asap`, `enrp`: the messages of each protocol.
//! * `size`: encoded sizes, so senders can keep messages within [`MAX_MESSAGE_LEN`].
//!
//! The codec depends on the data modules (`types`, `policy`, `message`, `error`); they
//! never import it.

mod asap;
mod cause;
mod enrp;
mod params;
mod prepared;
pub(crate) mod reader;
mod size;
pub(crate) mod tlv;
mod writer;

pub use crate::pad::pad4;
pub use asap::{decode_asap, encode_asap, try_encode_asap, try_encode_resolution_response};
pub use enrp::{decode_enrp, encode_enrp, try_encode_enrp};
pub use prepared::PreparedPes;
pub use reader::Header;
pub use size::{policy_len, pool_element_len, transport_len, MAX_MESSAGE_LEN};
#[cfg(test)]
pub(crate) use tlv::encode_transport;
pub use tlv::{
    decode_policy_tlv, encode_policy, policy_tlv, pool_element_tlv, pool_handle_tlv,
    pool_handle_tlv_prefix, user_transport_tlv,
};
pub use writer::Writer;

use crate::error::{DecodeError, EncodeError};
use crate::message::*;
use crate::types::*;

/// A decoded message plus the unknown parameters that were skipped (action bits `10`
/// and `11`). Those with [`UnknownParam::must_report`] belong in an Error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<M> {
    pub message: M,
    pub unknown: Vec<UnknownParam>,
}

impl<M> Decoded<M> {
    /// Causes to report for skipped parameters (action `11`), one per TLV.
    pub fn report_causes(&self) -> Vec<Cause> {
        self.unknown
            .iter()
            .filter(|u| u.must_report())
            .map(UnknownParam::to_cause)
            .collect()
    }
}

/// Decode one message of the given protocol.
pub fn decode(protocol: Protocol, buf: &[u8]) -> Result<Decoded<Message>, DecodeError> {
    match protocol {
        Protocol::Asap => decode_asap(buf).map(|d| Decoded {
            message: Message::Asap(d.message),
            unknown: d.unknown,
        }),
        Protocol::Enrp => decode_enrp(buf).map(|d| Decoded {
            message: Message::Enrp(d.message),
            unknown: d.unknown,
        }),
        // Application data has no RSerPool message to decode.
        Protocol::Data(_) => Err(DecodeError::new(
            0,
            crate::error::DecodeErrorKind::UnknownMessageType {
                protocol,
                ty: buf.first().copied().unwrap_or(0),
            },
        )),
    }
}

/// Cut the cause information of `m` (whose encoding is `len` bytes) until it encodes
/// within [`MAX_MESSAGE_LEN`]; append it to `out`, or nothing and the error.
#[cold]
#[inline(never)]
pub(crate) fn fit<M>(
    m: &mut M,
    mut len: usize,
    error_of: fn(&mut M) -> Option<&mut OperationError>,
    write: fn(&M, &mut Vec<u8>) -> usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    loop {
        let over = len - MAX_MESSAGE_LEN;
        let progress = error_of(m).is_some_and(|e| cut_causes(e, over));
        if !progress {
            return Err(EncodeError::TooLong { length: len });
        }
        len = write(m, out);
        if len <= MAX_MESSAGE_LEN {
            return Ok(());
        }
        out.truncate(start);
    }
}

/// Shorten cause information, last cause first, by at least `over` bytes of the encoded
/// message if possible; each cut quote keeps its first bytes, a multiple of 4 long.
/// Returns whether anything was cut.
pub(crate) fn cut_causes(e: &mut OperationError, mut over: usize) -> bool {
    let mut cut = false;
    for c in e.causes.iter_mut().rev() {
        if over == 0 {
            break;
        }
        if c.info.is_empty() {
            continue;
        }
        let keep = c.info.len().saturating_sub(over) & !3;
        // The encoding shrinks by at least this much (more when padding goes too).
        over = over.saturating_sub(c.info.len() - keep);
        c.info.truncate(keep);
        cut = true;
    }
    cut
}

/// Append the encoding of a message of either protocol (nothing if it cannot fit).
pub fn encode(m: &Message, out: &mut Vec<u8>) {
    let _ = try_encode(m, out);
}

/// [`try_encode_asap`] / [`try_encode_enrp`] for a message of either protocol.
pub fn try_encode(m: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match m {
        Message::Asap(a) => try_encode_asap(a, out),
        Message::Enrp(e) => try_encode_enrp(e, out),
    }
}

impl Message {
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        encode(self, &mut v);
        v
    }
}
