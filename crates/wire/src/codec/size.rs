//! Encoded sizes of parameters, so a sender can keep a message within the 65,535 bytes
//! its length field allows.

use crate::pad::pad4;
use crate::types::*;

/// Encoded size of a transport TLV, padding included.
pub fn transport_len(t: &TransportAddr) -> usize {
    let fixed = if matches!(t.kind, TransportKind::Dccp { .. }) {
        12
    } else {
        8
    };
    fixed
        + t.addrs
            .iter()
            .map(|a| if a.is_ipv4() { 8 } else { 20 })
            .sum::<usize>()
}

/// Encoded size of a Policy TLV, padding included.
pub fn policy_len(p: &Policy) -> usize {
    match p {
        Policy::Unknown { data, .. } => pad4(8 + data.len()),
        _ => 8 + 4 * p.values().as_slice().len(),
    }
}

/// Encoded size of a Pool Element TLV, padding included (what it adds to a message), so a
/// sender can keep a message within the 65,535 bytes its length field allows.
pub fn pool_element_len(pe: &PoolElement) -> usize {
    let user = match &pe.user_transport {
        UserTransport::Ip(t) => transport_len(t),
        UserTransport::Opaque(b) => pad4(4 + b.len()),
    };
    16 + user + policy_len(&pe.policy) + pe.asap_transport.as_ref().map_or(0, transport_len)
}

/// Largest encodable message: the Message Length field is 16 bits.
pub const MAX_MESSAGE_LEN: usize = 65535;
