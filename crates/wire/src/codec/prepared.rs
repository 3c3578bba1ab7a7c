//! A pool's PEs encoded once for many handle resolution responses: a registrar that
//! answers the same small pool again and again copies each chosen PE's bytes instead of
//! encoding it anew ([`PreparedPes::try_encode_response`] writes the same bytes as
//! [`super::try_encode_resolution_response`], a proptest in `tests/roundtrip.rs`).

use crate::message::{asap_type, flag};
use crate::pad::pad4;
use crate::types::{PoolElement, PoolHandle};

use super::tlv::{encode_handle, encode_pool_element_with};
use super::writer::Writer;
use super::{EncodeError, MAX_MESSAGE_LEN};

/// Where one PE's parameter lies in [`PreparedPes`]'s buffer.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    end: u32,
    /// The PE's Policy TLV (padded), from the PE parameter's start.
    policy_at: u16,
    policy_len: u16,
    /// Padding at the parameter's end that an enclosing length leaves out.
    pad: u8,
}

/// PE parameters encoded back to back, addressed by position.
#[derive(Clone, Debug, Default)]
pub struct PreparedPes {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl PreparedPes {
    /// Encode `pes` (each without its ASAP transport unless `asap_transport`). A PE whose
    /// parameter alone would not fit in a message is left out (it could never be sent).
    pub fn new<'a>(pes: impl IntoIterator<Item = &'a PoolElement>, asap_transport: bool) -> Self {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for pe in pes {
            let start = bytes.len();
            let mut w = Writer::new(&mut bytes);
            encode_pool_element_with(&mut w, pe, asap_transport);
            let pad = w.trailing_pad;
            let len = bytes.len() - start;
            // The Policy TLV follows the three fixed fields and the user transport.
            let policy_at = 4 + 12 + padded_tlv_len(&bytes[start + 16..]);
            let policy_len = padded_tlv_len(&bytes[start + policy_at..]);
            let fits = len <= MAX_MESSAGE_LEN && u32::try_from(bytes.len()).is_ok();
            match (fits, u16::try_from(policy_at), u16::try_from(policy_len)) {
                (true, Ok(policy_at), Ok(policy_len)) => spans.push(Span {
                    start: start as u32,
                    end: bytes.len() as u32,
                    policy_at,
                    policy_len,
                    pad: pad as u8,
                }),
                _ => bytes.truncate(start),
            }
        }
        bytes.shrink_to_fit();
        spans.shrink_to_fit();
        Self { bytes, spans }
    }

    /// PEs held.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * std::mem::size_of::<Span>()
    }

    /// Encoded length of PE `i`'s parameter (padded).
    pub fn pe_len(&self, i: usize) -> usize {
        let s = self.spans[i];
        (s.end - s.start) as usize
    }

    /// Encoded length of PE `i`'s Policy TLV (padded).
    pub fn policy_len(&self, i: usize) -> usize {
        usize::from(self.spans[i].policy_len)
    }

    fn pe(&self, i: usize) -> &[u8] {
        let s = self.spans[i];
        &self.bytes[s.start as usize..s.end as usize]
    }

    /// How many of `picks`, from the first, fit in one response for `handle`: whole PEs
    /// only, with the overall Policy TLV of the first.
    pub fn fitting(&self, handle: &PoolHandle, picks: &[usize]) -> usize {
        let mut room = MAX_MESSAGE_LEN.saturating_sub(4 + pad4(4 + handle.len()));
        for (k, &i) in picks.iter().enumerate() {
            let need = self.pe_len(i) + if k == 0 { self.policy_len(i) } else { 0 };
            if need > room {
                return k;
            }
            room -= need;
        }
        picks.len()
    }

    /// Append a positive ASAP_HANDLE_RESOLUTION_RESPONSE with the PEs at `picks`, the
    /// overall Policy parameter taken from the first: the bytes
    /// [`super::try_encode_resolution_response`] writes for the same PEs. A message longer
    /// than [`MAX_MESSAGE_LEN`] appends nothing; so do no `picks` (there is no policy to
    /// announce: the caller answers with a cause instead).
    pub fn try_encode_response(
        &self,
        accepted: bool,
        handle: &PoolHandle,
        picks: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let Some(&first) = picks.first() else {
            return Ok(());
        };
        let start = out.len();
        let mut w = Writer::new(out);
        let flags = if accepted { flag::ACCEPTED } else { 0 };
        let s = w.begin(u16::from_be_bytes([
            asap_type::HANDLE_RESOLUTION_RESPONSE,
            flags,
        ]));
        encode_handle(&mut w, handle);
        let span = self.spans[first];
        let at = span.start as usize + usize::from(span.policy_at);
        let policy = &self.bytes[at..at + usize::from(span.policy_len)];
        w.bytes(policy);
        w.trailing_pad = policy_pad(policy);
        for &i in picks {
            w.bytes(self.pe(i));
            w.trailing_pad = usize::from(self.spans[i].pad);
        }
        w.end(s);
        let pad = w.trailing_pad;
        let length = out.len() - start - pad;
        if length > MAX_MESSAGE_LEN {
            out.truncate(start);
            return Err(EncodeError::TooLong { length });
        }
        Ok(())
    }
}

/// The padded length of the TLV at the start of `b` (0 when `b` is too short).
fn padded_tlv_len(b: &[u8]) -> usize {
    match b {
        [_, _, h, l, ..] => pad4(usize::from(u16::from_be_bytes([*h, *l]))),
        _ => 0,
    }
}

/// Padding at the end of a whole TLV (its padded size less its length field).
fn policy_pad(tlv: &[u8]) -> usize {
    match tlv {
        [_, _, h, l, ..] => tlv.len() - usize::from(u16::from_be_bytes([*h, *l])),
        _ => 0,
    }
}
