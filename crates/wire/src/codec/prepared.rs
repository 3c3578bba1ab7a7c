//! A pool's PEs encoded once for many handle resolution responses: a registrar that
//! answers the same small pool again and again copies each chosen PE's bytes instead of
//! encoding it anew ([`PreparedPes::try_encode_response`] writes the same bytes as
//! [`super::try_encode_resolution_response`], a proptest in `tests/roundtrip.rs`).

use crate::pad::pad4;
use crate::types::{PeId, PoolElement, PoolHandle};

use super::asap::encode_resolution_response;
use super::tlv::encode_pool_element_with;
use super::writer::Writer;
use super::{EncodeError, MAX_MESSAGE_LEN};

/// PE parameters encoded back to back, addressed by position.
#[derive(Clone, Debug, Default)]
pub struct PreparedPes {
    bytes: Vec<u8>,
    /// Where each PE's parameter ends in `bytes` (it starts where the one before ends).
    ends: Vec<u32>,
}

impl PreparedPes {
    /// Encode `pes` (each without its ASAP transport unless `asap_transport`). A PE whose
    /// parameter alone would not fit in a message is left out (it could never be sent).
    pub fn new<'a>(pes: impl IntoIterator<Item = &'a PoolElement>, asap_transport: bool) -> Self {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for pe in pes {
            let start = bytes.len();
            let mut w = Writer::new(&mut bytes);
            encode_pool_element_with(&mut w, pe, asap_transport);
            match u32::try_from(bytes.len()) {
                Ok(end) if bytes.len() - start <= MAX_MESSAGE_LEN => ends.push(end),
                _ => bytes.truncate(start),
            }
        }
        bytes.shrink_to_fit();
        ends.shrink_to_fit();
        Self { bytes, ends }
    }

    /// PEs held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn pe(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// Encoded length of PE `i`'s parameter (padded).
    pub fn pe_len(&self, i: usize) -> usize {
        self.pe(i).len()
    }

    /// PE `i`'s identifier.
    pub fn id(&self, i: usize) -> PeId {
        let b = self.pe(i);
        PeId(u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
    }

    /// PE `i`'s Policy TLV (padded): after the PE parameter's header, its three fixed
    /// fields and the user transport.
    fn policy(&self, i: usize) -> &[u8] {
        let pe = self.pe(i);
        let at = 16 + padded_tlv_len(&pe[16..]);
        let len = padded_tlv_len(&pe[at..]);
        &pe[at..at + len]
    }

    /// Encoded length of PE `i`'s Policy TLV (padded).
    pub fn policy_len(&self, i: usize) -> usize {
        self.policy(i).len()
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
        encode_resolution_response(accepted, handle, out, |w| {
            let policy = self.policy(first);
            w.bytes(policy);
            w.trailing_pad = trailing_pad(policy);
            for &i in picks {
                let pe = self.pe(i);
                w.bytes(pe);
                w.trailing_pad = trailing_pad(pe);
            }
        })
    }
}

/// The padded length of the TLV at the start of `b` (0 when `b` is too short).
fn padded_tlv_len(b: &[u8]) -> usize {
    match b {
        [_, _, h, l, ..] => pad4(usize::from(u16::from_be_bytes([*h, *l]))),
        _ => 0,
    }
}

/// Padding at the end of a whole TLV that an enclosing length leaves out: its padded
/// size less its length field (which leaves out the padding of its last nested TLV).
fn trailing_pad(tlv: &[u8]) -> usize {
    match tlv {
        [_, _, h, l, ..] => tlv.len() - usize::from(u16::from_be_bytes([*h, *l])),
        _ => 0,
    }
}
