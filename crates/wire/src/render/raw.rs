//! Best-effort walk of raw TLV bytes (error cause information, offending parameters).

use std::fmt::Write as _;

use super::cause::cause;
use super::params::policy;
use super::tree::{action_text, bytes_summary, handle_text, ptype, transport_use, Tree};
use super::MAX_RAW_DEPTH;
use crate::codec::reader::{RawTlv, Reader, Tlv};
use crate::codec::tlv::{decode_address, decode_policy};
use crate::types::*;

/// Fixed value bytes before nested TLVs, for the container parameter types.
fn fixed_prefix(ty: ParamType) -> Option<usize> {
    match ty {
        ParamType::SCTP_TRANSPORT
        | ParamType::TCP_TRANSPORT
        | ParamType::UDP_TRANSPORT
        | ParamType::UDP_LITE_TRANSPORT => Some(4),
        ParamType::DCCP_TRANSPORT => Some(8),
        ParamType::POOL_ELEMENT => Some(12),
        ParamType::SERVER_INFORMATION => Some(4),
        _ => None,
    }
}

/// A value that is exactly one 32-bit word.
fn be32(b: &[u8]) -> Option<u32> {
    Reader::new(b, 0).u32("value").ok()
}

pub(super) fn raw_params(t: &mut Tree, d: usize, bytes: &[u8], depth: usize) {
    let mut r = Reader::new(bytes, 0);
    while !r.is_empty() {
        let rest = &bytes[r.pos..];
        match r.raw_tlv() {
            RawTlv::Whole { ty, value } => raw_param(t, d, ParamType(ty), value, depth),
            RawTlv::Short => {
                t.line(d, format!("(trailing {}, not a TLV)", bytes_summary(rest)));
                return;
            }
            RawTlv::TooSmall { ty, length } | RawTlv::Overrun { ty, length } => {
                t.line(
                    d,
                    format!(
                        "{} with bad length {length} ({} bytes left): {}",
                        ptype(ParamType(ty)),
                        rest.len(),
                        bytes_summary(rest)
                    ),
                );
                return;
            }
        }
    }
}

fn raw_param(t: &mut Tree, d: usize, ty: ParamType, v: &[u8], depth: usize) {
    let head = format!("{}, length {}", ptype(ty), v.len() + 4);
    let summary = match ty {
        ParamType::IPV4_ADDRESS | ParamType::IPV6_ADDRESS => decode_address(&Tlv {
            ty,
            value: v,
            offset: 0,
        })
        .ok()
        .map(|a| a.to_string()),
        ParamType::POOL_HANDLE => Some(handle_text(&PoolHandle::from(v))),
        ParamType::PE_IDENTIFIER => (v.len() == 4)
            .then(|| be32(v))
            .flatten()
            .map(|x| PeId(x).to_string()),
        ParamType::HANDLE_RESOLUTION_OPTION => (v.len() == 4)
            .then(|| be32(v))
            .flatten()
            .map(|x| format!("items {x}")),
        ParamType::PE_CHECKSUM => (v.len() == 2).then(|| format!("{:#04x}{:02x}", v[0], v[1])),
        _ => None,
    };
    if let Some(s) = summary {
        t.line(d, format!("{head}: {s}"));
        return;
    }
    if ty == ParamType::POLICY {
        let tlv = Tlv {
            ty,
            value: v,
            offset: 0,
        };
        if let Ok(p) = decode_policy(&tlv) {
            policy(t, d, &p);
            return;
        }
    }
    match fixed_prefix(ty) {
        Some(n) if v.len() >= n && depth < MAX_RAW_DEPTH => {
            // The fixed fields, read with the codec's reader (all `n` bytes are present).
            let mut f = Reader::new(&v[..n], 0);
            let mut u32_field = || f.u32("fixed field").unwrap_or(0);
            let fields = match ty {
                ParamType::POOL_ELEMENT => format!(
                    "PE {}, home {}, registration life {}",
                    PeId(u32_field()),
                    ServerId(u32_field()),
                    u32_field()
                ),
                ParamType::SERVER_INFORMATION => {
                    format!("server {}", ServerId(u32_field()))
                }
                _ => {
                    let port_word = u32_field();
                    let (port, word) = ((port_word >> 16) as u16, port_word as u16);
                    let mut s = format!("port {port}");
                    if ty == ParamType::SCTP_TRANSPORT {
                        let _ = write!(s, ", {}", transport_use(TransportUse(word)));
                    } else {
                        let _ = write!(s, ", reserved {word:#06x}");
                    }
                    if ty == ParamType::DCCP_TRANSPORT {
                        let _ = write!(s, ", service code {}", u32_field());
                    }
                    s
                }
            };
            t.line(d, format!("{head}: {fields}"));
            raw_params(t, d + 1, &v[n..], depth + 1);
        }
        _ if ty == ParamType::OPERATION_ERROR && depth < MAX_RAW_DEPTH => {
            t.line(d, head);
            raw_causes(t, d + 1, v);
        }
        _ => {
            let mut line = format!("{head}: {}", bytes_summary(v));
            if ty.name() == "Unknown Parameter" {
                let _ = write!(line, " (action {})", action_text(ty));
            }
            t.line(d, line);
        }
    }
}

fn raw_causes(t: &mut Tree, d: usize, v: &[u8]) {
    let mut r = Reader::new(v, 0);
    while !r.is_empty() {
        let rest = &v[r.pos..];
        match r.raw_tlv() {
            RawTlv::Whole { ty, value } => cause(
                t,
                d,
                &Cause {
                    code: CauseCode(ty),
                    info: value.to_vec(),
                },
            ),
            RawTlv::Short => {
                t.line(d, format!("(trailing {})", bytes_summary(rest)));
                return;
            }
            RawTlv::TooSmall { length, .. } | RawTlv::Overrun { length, .. } => {
                t.line(
                    d,
                    format!("cause with bad length {length}: {}", bytes_summary(rest)),
                );
                return;
            }
        }
    }
}
