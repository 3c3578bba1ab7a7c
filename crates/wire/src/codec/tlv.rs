//! Encode and decode of each parameter TLV: addresses, transports, policy, pool handle,
//! pool element, server information, operation error, checksum; and the standalone TLVs
//! error causes quote.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::params::{is_transport, next_known, Params};
use super::reader::{RawTlv, Reader, Tlv};
use super::writer::Writer;
use super::MAX_MESSAGE_LEN;
use crate::error::{DecodeError, DecodeErrorKind as K};
use crate::types::*;

#[inline]
pub(crate) fn encode_address(w: &mut Writer, a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            let s = w.begin(ParamType::IPV4_ADDRESS.0);
            w.bytes(&v4.octets());
            w.end(s);
        }
        IpAddr::V6(v6) => {
            let s = w.begin(ParamType::IPV6_ADDRESS.0);
            w.bytes(&v6.octets());
            w.end(s);
        }
    }
}

pub(crate) fn encode_transport(w: &mut Writer, t: &TransportAddr) {
    let s = w.begin(t.kind.param_type().0);
    w.u16(t.port);
    w.u16(t.use_field.0);
    if let TransportKind::Dccp { service_code } = t.kind {
        w.u32(service_code);
    }
    for a in &t.addrs {
        encode_address(w, a);
    }
    w.end(s);
}

/// Encode a Pool Member Selection Policy TLV.
pub fn encode_policy(w: &mut Writer, p: &Policy) {
    let s = w.begin(ParamType::POLICY.0);
    w.u32(p.policy_type().0);
    match p {
        Policy::Unknown { data, .. } => w.bytes(data),
        _ => {
            for v in p.values().as_slice() {
                w.u32(*v);
            }
        }
    }
    w.end(s);
}

#[inline]
pub(crate) fn encode_handle(w: &mut Writer, h: &PoolHandle) {
    let s = w.begin(ParamType::POOL_HANDLE.0);
    w.bytes(&h.0);
    w.end(s);
}

#[inline]
pub(crate) fn encode_u32_param(w: &mut Writer, ty: ParamType, v: u32) {
    let s = w.begin(ty.0);
    w.u32(v);
    w.end(s);
}

#[inline]
pub(crate) fn encode_pe_id(w: &mut Writer, id: PeId) {
    encode_u32_param(w, ParamType::PE_IDENTIFIER, id.0);
}

#[inline]
pub(crate) fn encode_bytes_param(w: &mut Writer, ty: ParamType, b: &[u8]) {
    let s = w.begin(ty.0);
    w.bytes(b);
    w.end(s);
}

pub(crate) fn encode_pool_element(w: &mut Writer, pe: &PoolElement) {
    encode_pool_element_with(w, pe, true);
}

/// A Pool Element TLV; without `asap_transport` its ASAP transport is left out (as if it
/// had none).
pub(crate) fn encode_pool_element_with(w: &mut Writer, pe: &PoolElement, asap_transport: bool) {
    let s = w.begin(ParamType::POOL_ELEMENT.0);
    w.u32(pe.id.0);
    w.u32(pe.home_registrar.0);
    w.u32(pe.registration_life);
    match &pe.user_transport {
        UserTransport::Ip(t) => encode_transport(w, t),
        UserTransport::Opaque(b) => encode_bytes_param(w, ParamType::OPAQUE_TRANSPORT, b),
    }
    encode_policy(w, &pe.policy);
    if let Some(t) = pe.asap_transport.as_ref().filter(|_| asap_transport) {
        encode_transport(w, t);
    }
    w.end(s);
}

pub(crate) fn encode_server_info(w: &mut Writer, si: &ServerInfo) {
    let s = w.begin(ParamType::SERVER_INFORMATION.0);
    w.u32(si.server_id.0);
    encode_transport(w, &si.transport);
    w.end(s);
}

pub(crate) fn encode_operation_error(w: &mut Writer, e: &OperationError) {
    let s = w.begin(ParamType::OPERATION_ERROR.0);
    for c in &e.causes {
        let cs = w.begin(c.code.0);
        w.bytes(&c.info);
        w.end(cs);
    }
    w.end(s);
}

pub(crate) fn decode_address(t: &Tlv) -> Result<IpAddr, DecodeError> {
    match t.ty {
        ParamType::IPV4_ADDRESS => match <[u8; 4]>::try_from(t.value) {
            Ok(b) => Ok(IpAddr::V4(Ipv4Addr::from(b))),
            Err(_) => Err(t.bad_length("8")),
        },
        ParamType::IPV6_ADDRESS => match <[u8; 16]>::try_from(t.value) {
            Ok(b) => Ok(IpAddr::V6(Ipv6Addr::from(b))),
            Err(_) => Err(t.bad_length("20")),
        },
        other => Err(t.err(K::UnexpectedParameter {
            found: other,
            context: "transport parameter",
            expected: "IPv4 or IPv6 Address",
        })),
    }
}

pub(crate) fn decode_transport(
    t: &Tlv,
    unknown: &mut Vec<UnknownParam>,
) -> Result<TransportAddr, DecodeError> {
    let mut r = t.reader();
    let port = r.u16("transport port")?;
    let use_field = TransportUse(r.u16("transport use")?);
    let kind = match t.ty {
        ParamType::SCTP_TRANSPORT => TransportKind::Sctp,
        ParamType::TCP_TRANSPORT => TransportKind::Tcp,
        ParamType::UDP_TRANSPORT => TransportKind::Udp,
        ParamType::UDP_LITE_TRANSPORT => TransportKind::UdpLite,
        ParamType::DCCP_TRANSPORT => TransportKind::Dccp {
            service_code: r.u32("DCCP service code")?,
        },
        _ => {
            return Err(t.err(K::InvalidValue {
                context: "transport parameter",
                what: "not a transport type",
            }))
        }
    };
    // At most one address per 8 bytes; capped so hostile input cannot over-allocate.
    let mut addrs = Vec::with_capacity((r.remaining() / 8).min(4));
    while let Some(a) = next_known(&mut r, unknown)? {
        addrs.push(decode_address(&a)?);
    }
    let ok = match kind {
        TransportKind::Sctp => !addrs.is_empty(),
        _ => addrs.len() == 1,
    };
    if !ok {
        return Err(t.err(K::InvalidValue {
            context: kind.name(),
            what: if addrs.is_empty() {
                "transport parameter without an address"
            } else {
                "non-SCTP transport with more than one address"
            },
        }));
    }
    Ok(TransportAddr {
        kind,
        port,
        use_field,
        addrs,
    })
}

pub(crate) fn decode_policy(t: &Tlv) -> Result<Policy, DecodeError> {
    let mut r = t.reader();
    let ty = PolicyType(r.u32("policy type")?);
    let rest = r.rest();
    match Policy::field_count(ty) {
        Some(n) => {
            if rest.len() < 4 * n {
                return Err(t.err(K::PolicyTooShort {
                    policy_type: ty,
                    needed: 4 * n,
                    got: rest.len(),
                }));
            }
            let mut v = [0u32; 4];
            for (i, c) in rest.chunks_exact(4).take(n).enumerate() {
                v[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            }
            Policy::from_values(ty, &v[..n]).ok_or_else(|| {
                t.err(K::InvalidValue {
                    context: "policy",
                    what: "policy values",
                })
            })
        }
        None => Ok(Policy::Unknown {
            policy_type: ty,
            data: rest.to_vec(),
        }),
    }
}

pub(crate) fn decode_handle(t: &Tlv) -> Result<PoolHandle, DecodeError> {
    if t.value.is_empty() {
        return Err(t.err(K::InvalidValue {
            context: "Pool Handle",
            what: "empty pool handle",
        }));
    }
    Ok(PoolHandle(t.value.to_vec()))
}

pub(crate) fn decode_u32_param(t: &Tlv, what: &'static str) -> Result<u32, DecodeError> {
    t.exact(8, "8")?;
    t.reader().u32(what)
}

pub(crate) fn decode_pe_id(t: &Tlv) -> Result<PeId, DecodeError> {
    decode_u32_param(t, "PE identifier").map(PeId)
}

pub(crate) fn decode_pool_element(
    t: &Tlv,
    unknown: &mut Vec<UnknownParam>,
) -> Result<PoolElement, DecodeError> {
    let mut r = t.reader();
    let id = PeId(r.u32("PE identifier")?);
    let home_registrar = ServerId(r.u32("home registrar identifier")?);
    let registration_life = r.u32("registration life")?;
    const CTX: &str = "Pool Element";
    let ut = match next_known(&mut r, unknown)? {
        Some(ut) if is_transport(ut.ty) => ut,
        Some(other) => {
            return Err(other.err(K::UnexpectedParameter {
                found: other.ty,
                context: CTX,
                expected: "user transport",
            }))
        }
        None => {
            return Err(t.err(K::MissingParameter {
                expected: ParamType::SCTP_TRANSPORT,
                context: "Pool Element (user transport)",
            }))
        }
    };
    let user_transport = if ut.ty == ParamType::OPAQUE_TRANSPORT {
        UserTransport::Opaque(ut.value.to_vec())
    } else {
        UserTransport::Ip(decode_transport(&ut, unknown)?)
    };
    let policy_offset = r.offset();
    let policy = match next_known(&mut r, unknown)? {
        Some(pt) if pt.ty == ParamType::POLICY => decode_policy(&pt)?,
        Some(other) => {
            return Err(other.err(K::UnexpectedParameter {
                found: other.ty,
                context: CTX,
                expected: ParamType::POLICY.name(),
            }))
        }
        None => {
            return Err(DecodeError::inside(
                policy_offset,
                Some(t.offset),
                K::MissingParameter {
                    expected: ParamType::POLICY,
                    context: CTX,
                },
            ))
        }
    };
    let end = |other: Tlv| {
        other.err(K::UnexpectedParameter {
            found: other.ty,
            context: CTX,
            expected: "end of parameters",
        })
    };
    let asap_transport = match next_known(&mut r, unknown)? {
        None => None,
        // The ASAP transport: SCTP (RFC 5354, RSPLIB) or TCP (our TCP PEs, whose registrar
        // connection comes from their ASAP control port).
        Some(at) if at.ty == ParamType::SCTP_TRANSPORT || at.ty == ParamType::TCP_TRANSPORT => {
            let a = decode_transport(&at, unknown)?;
            if let Some(other) = next_known(&mut r, unknown)? {
                return Err(end(other));
            }
            Some(a)
        }
        Some(other) => return Err(end(other)),
    };
    Ok(PoolElement {
        id,
        home_registrar,
        registration_life,
        user_transport,
        policy,
        asap_transport,
    })
}

pub(crate) fn decode_server_info(
    t: &Tlv,
    unknown: &mut Vec<UnknownParam>,
) -> Result<ServerInfo, DecodeError> {
    let mut r = t.reader();
    let server_id = ServerId(r.u32("server identifier")?);
    let mut p = Params::new(r, unknown, "Server Information");
    // SCTP (RFC 5353, RSPLIB) or TCP (a registrar whose ENRP listener is TCP).
    let tt = match p.next()? {
        Some(tt) if tt.ty == ParamType::TCP_TRANSPORT => tt,
        Some(tt) if tt.ty == ParamType::SCTP_TRANSPORT => tt,
        Some(other) => {
            return Err(other.err(K::UnexpectedParameter {
                found: other.ty,
                context: "Server Information",
                expected: ParamType::SCTP_TRANSPORT.name(),
            }))
        }
        None => {
            return Err(t.err(K::MissingParameter {
                expected: ParamType::SCTP_TRANSPORT,
                context: "Server Information",
            }))
        }
    };
    let transport = decode_transport(&tt, p.unknown)?;
    p.finish()?;
    Ok(ServerInfo {
        server_id,
        transport,
    })
}

pub(crate) fn decode_operation_error(t: &Tlv) -> Result<OperationError, DecodeError> {
    let mut r = t.reader();
    let mut causes = Vec::new();
    while !r.is_empty() {
        let offset = r.offset();
        match r.raw_tlv() {
            RawTlv::Whole { ty, value } => causes.push(Cause {
                code: CauseCode(ty),
                info: value.to_vec(),
            }),
            RawTlv::TooSmall { .. } => {
                return Err(DecodeError::inside(
                    offset,
                    Some(t.offset),
                    K::InvalidValue {
                        context: "Operation Error",
                        what: "cause length below 4",
                    },
                ))
            }
            RawTlv::Overrun { length, .. } => {
                return Err(DecodeError::inside(
                    offset + 4,
                    Some(t.offset),
                    K::Truncated {
                        what: "cause information",
                        needed: usize::from(length) - 4,
                        available: r.remaining() - 4,
                    },
                ))
            }
            RawTlv::Short => {
                // Name the field that is cut short.
                r.u16("cause code")?;
                r.u16("cause length")?;
            }
        }
    }
    if causes.is_empty() {
        return Err(t.err(K::InvalidValue {
            context: "Operation Error",
            what: "no error cause",
        }));
    }
    Ok(OperationError { causes })
}

pub(crate) fn decode_checksum(t: &Tlv) -> Result<u16, DecodeError> {
    t.exact(6, "6")?;
    t.reader().u16("PE checksum")
}

/// Encode a single policy TLV to bytes (e.g. for cause 0x5's information).
pub fn policy_tlv(p: &Policy) -> Vec<u8> {
    let mut v = Vec::new();
    encode_policy(&mut Writer::new(&mut v), p);
    v
}

/// Encode a Pool Handle TLV (e.g. for cause 0x3's information).
pub fn pool_handle_tlv(h: &PoolHandle) -> Vec<u8> {
    let mut v = Vec::new();
    encode_handle(&mut Writer::new(&mut v), h);
    v
}

/// A Pool Handle TLV carrying at most the first `max` bytes of `h`: how a cause quotes a
/// handle refused for its length (enough to show it, not all of it).
pub fn pool_handle_tlv_prefix(h: &PoolHandle, max: usize) -> Vec<u8> {
    let n = h.0.len().min(max).min(MAX_MESSAGE_LEN - 4);
    let mut v = Vec::new();
    encode_bytes_param(&mut Writer::new(&mut v), ParamType::POOL_HANDLE, &h.0[..n]);
    v
}

/// Encode a Pool Element TLV (e.g. for cause 0x3's information).
pub fn pool_element_tlv(pe: &PoolElement) -> Vec<u8> {
    let mut v = Vec::new();
    encode_pool_element(&mut Writer::new(&mut v), pe);
    v
}

/// Encode a user transport as its TLV (e.g. for cause 0x7's information).
pub fn user_transport_tlv(t: &UserTransport) -> Vec<u8> {
    let mut v = Vec::new();
    let mut w = Writer::new(&mut v);
    match t {
        UserTransport::Ip(ip) => encode_transport(&mut w, ip),
        UserTransport::Opaque(b) => encode_bytes_param(&mut w, ParamType::OPAQUE_TRANSPORT, b),
    }
    v
}

/// Decode a standalone Policy TLV (e.g. the info of cause 0x5).
pub fn decode_policy_tlv(buf: &[u8]) -> Result<Policy, DecodeError> {
    let mut r = Reader::new(buf, 0);
    let t = r.tlv()?;
    if t.ty != ParamType::POLICY {
        return Err(t.err(K::UnexpectedParameter {
            found: t.ty,
            context: "policy TLV",
            expected: "Pool Member Selection Policy",
        }));
    }
    decode_policy(&t)
}

// Parameter sequences the messages share.

pub(crate) fn opt_error(p: &mut Params) -> Result<Option<OperationError>, DecodeError> {
    match p.optional(ParamType::OPERATION_ERROR)? {
        Some(e) => Ok(Some(decode_operation_error(&e)?)),
        None => Ok(None),
    }
}

pub(crate) fn decode_pes(p: &mut Params) -> Result<Vec<PoolElement>, DecodeError> {
    // Capacity hint, capped: a hostile message full of tiny PE TLVs must not reserve much.
    let mut pes = Vec::with_capacity(p.count_pes_ahead().min(64));
    // `p.optional(POOL_ELEMENT)` in a loop, without the peek round trip per PE.
    loop {
        let next = match p.peeked.take() {
            Some(t) => Some(t),
            None => next_known(&mut p.r, p.unknown)?,
        };
        match next {
            Some(pt) if pt.ty == ParamType::POOL_ELEMENT => {
                pes.push(decode_pool_element(&pt, p.unknown)?)
            }
            other => {
                p.peeked = other;
                return Ok(pes);
            }
        }
    }
}
