//! Error cause rendering (the causes of an Operation Error).

use super::params::policy;
use super::raw::raw_params;
use super::tree::{action_text, bytes_summary, Tree};
use super::Header;
use crate::codec::decode_policy_tlv;
use crate::message::*;
use crate::types::*;

pub(super) fn cause(t: &mut Tree, d: usize, c: &Cause) {
    let name = c.code.name().unwrap_or("unknown cause");
    t.line(
        d,
        format!(
            "Cause: {name} ({:#06x}), {} info byte{}",
            c.code.0,
            c.info.len(),
            if c.info.len() == 1 { "" } else { "s" }
        ),
    );
    if c.info.is_empty() {
        return;
    }
    let d = d + 1;
    match c.code {
        CauseCode::INCONSISTENT_POLICY => match decode_policy_tlv(&c.info) {
            Ok(p) => {
                t.line(d, "Pool's policy:");
                policy(t, d + 1, &p);
            }
            Err(e) => {
                t.line(d, format!("Policy TLV does not decode: {e}"));
                raw_params(t, d + 1, &c.info, 0);
            }
        },
        CauseCode::UNRECOGNIZED_PARAMETER => {
            match Header::parse(&c.info) {
                Some(h) => {
                    let ty = ParamType(u16::from_be_bytes([h.ty, h.flags]));
                    t.line(
                        d,
                        format!(
                            "Unrecognized parameter type: {:#06x} ({}; action {})",
                            ty.0,
                            ty.name(),
                            action_text(ty)
                        ),
                    );
                }
                None => t.line(d, "Unrecognized parameter: (shorter than a TLV header)"),
            }
            raw_params(t, d, &c.info, 0);
        }
        CauseCode::UNRECOGNIZED_MESSAGE => {
            match Header::parse(&c.info) {
                Some(h) => {
                    let asap = asap_type_name(h.ty).unwrap_or("not an ASAP type");
                    let enrp = enrp_type_name(h.ty).unwrap_or("not an ENRP type");
                    t.line(
                        d,
                        format!(
                            "Unrecognized message: type {:#04x} ({asap} / {enrp}), flags {:#04x}, length {}",
                            h.ty, h.flags, h.length
                        ),
                    );
                }
                None => t.line(d, "Unrecognized message: (shorter than a header)"),
            }
            t.line(d, format!("Message bytes: {}", bytes_summary(&c.info)));
        }
        CauseCode::INVALID_VALUES | CauseCode::INCONSISTENT_TRANSPORT => {
            t.line(d, "Offending parameter:");
            raw_params(t, d + 1, &c.info, 0);
        }
        CauseCode(0x11) => {
            // RSPLIB's "invalid value" carries the offending TLV as well.
            t.line(d, "Offending parameter (RSPLIB):");
            raw_params(t, d + 1, &c.info, 0);
        }
        _ => t.line(d, format!("Information: {}", bytes_summary(&c.info))),
    }
}
