//! ASAP messages (RFC 5352): decode, encode, and the typed message's convenience methods.

use super::params::{is_hr_option, Params};
use super::reader::split_header;
use super::tlv::*;
use super::writer::Writer;
use super::{fit, Decoded, MAX_MESSAGE_LEN};
use crate::error::{DecodeError, DecodeErrorKind as K, EncodeError};
use crate::message::*;
use crate::types::*;

/// Decode exactly one ASAP message (with optional trailing padding).
pub fn decode_asap(buf: &[u8]) -> Result<Decoded<AsapMessage>, DecodeError> {
    use asap_type as t;
    let (ty, flags, r) = split_header(buf)?;
    let mut unknown = Vec::new();
    let ctx = asap_type_name(ty).unwrap_or("ASAP message");
    let message = {
        let mut fixed = r;
        let mut p = Params::new(r, &mut unknown, ctx);
        let m = match ty {
            t::REGISTRATION => {
                let handle = decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?;
                let pet = p.expect(ParamType::POOL_ELEMENT)?;
                let pe = decode_pool_element(&pet, p.unknown)?;
                AsapMessage::Registration { handle, pe }
            }
            t::DEREGISTRATION => AsapMessage::Deregistration {
                handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                pe_id: decode_pe_id(&p.expect(ParamType::PE_IDENTIFIER)?)?,
            },
            t::REGISTRATION_RESPONSE => AsapMessage::RegistrationResponse {
                reject: flags & flag::REJECT != 0,
                handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                pe_id: decode_pe_id(&p.expect(ParamType::PE_IDENTIFIER)?)?,
                error: opt_error(&mut p)?,
            },
            t::DEREGISTRATION_RESPONSE => AsapMessage::DeregistrationResponse {
                handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                pe_id: decode_pe_id(&p.expect(ParamType::PE_IDENTIFIER)?)?,
                error: opt_error(&mut p)?,
            },
            t::HANDLE_RESOLUTION => AsapMessage::HandleResolution {
                subscribe: flags & flag::SUBSCRIBE != 0,
                handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                items: {
                    p.hr_option = true;
                    match p.peek()? {
                        Some(o) if is_hr_option(o.ty) => {
                            p.next()?;
                            Some(decode_u32_param(&o, "handle resolution items")?)
                        }
                        _ => None,
                    }
                },
            },
            t::HANDLE_RESOLUTION_RESPONSE => {
                let handle = decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?;
                let policy = match p.optional(ParamType::POLICY)? {
                    Some(pt) => Some(decode_policy(&pt)?),
                    None => None,
                };
                let pes = decode_pes(&mut p)?;
                let error = opt_error(&mut p)?;
                AsapMessage::HandleResolutionResponse {
                    accepted: flags & flag::ACCEPTED != 0,
                    handle,
                    policy,
                    pes,
                    error,
                }
            }
            t::ENDPOINT_KEEP_ALIVE => {
                let server_id = ServerId(fixed.u32("server identifier")?);
                p = Params::new(fixed, p.unknown, ctx);
                AsapMessage::EndpointKeepAlive {
                    home: flags & flag::HOME != 0,
                    server_id,
                    handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                    pe_id: match p.optional(ParamType::PE_IDENTIFIER)? {
                        Some(i) => Some(decode_pe_id(&i)?),
                        None => None,
                    },
                }
            }
            t::ENDPOINT_KEEP_ALIVE_ACK => AsapMessage::EndpointKeepAliveAck {
                handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                pe_id: decode_pe_id(&p.expect(ParamType::PE_IDENTIFIER)?)?,
            },
            t::ENDPOINT_UNREACHABLE => AsapMessage::EndpointUnreachable {
                handle: decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?,
                pe_id: decode_pe_id(&p.expect(ParamType::PE_IDENTIFIER)?)?,
            },
            t::SERVER_ANNOUNCE => {
                let server_id = ServerId(fixed.u32("server identifier")?);
                p = Params::new(fixed, p.unknown, ctx);
                let mut transports = Vec::new();
                while let Some(tt) = p.next()? {
                    if tt.ty != ParamType::SCTP_TRANSPORT && tt.ty != ParamType::TCP_TRANSPORT {
                        return Err(tt.err(K::UnexpectedParameter {
                            found: tt.ty,
                            context: ctx,
                            expected: "SCTP or TCP Transport",
                        }));
                    }
                    transports.push(decode_transport(&tt, p.unknown)?);
                }
                AsapMessage::ServerAnnounce {
                    server_id,
                    transports,
                }
            }
            t::COOKIE => AsapMessage::Cookie {
                cookie: p.expect(ParamType::COOKIE)?.value.to_vec(),
            },
            t::COOKIE_ECHO => AsapMessage::CookieEcho {
                cookie: p.expect(ParamType::COOKIE)?.value.to_vec(),
            },
            t::BUSINESS_CARD => {
                let handle = decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?;
                let policy = match p.optional(ParamType::POLICY)? {
                    Some(pt) => Some(decode_policy(&pt)?),
                    None => None,
                };
                let pes = decode_pes(&mut p)?;
                if pes.is_empty() {
                    return Err(DecodeError::inside(
                        4,
                        Some(0),
                        K::MissingParameter {
                            expected: ParamType::POOL_ELEMENT,
                            context: ctx,
                        },
                    ));
                }
                AsapMessage::BusinessCard {
                    handle,
                    policy,
                    pes,
                }
            }
            t::ERROR => AsapMessage::Error {
                error: decode_operation_error(&p.expect(ParamType::OPERATION_ERROR)?)?,
            },
            _ => {
                return Err(DecodeError::new(
                    0,
                    K::UnknownMessageType {
                        protocol: Protocol::Asap,
                        ty,
                    },
                ))
            }
        };
        p.finish()?;
        m
    };
    Ok(Decoded { message, unknown })
}

/// Append the encoding of an ASAP message (padded to 4 bytes) to `out`.
///
/// A message too long for its 16-bit length field even with its quoted causes cut (see
/// [`try_encode_asap`]) appends nothing: no caller can emit a frame whose length field
/// lies. Callers sending messages whose size depends on received data use
/// [`try_encode_asap`] and answer the error.
#[inline]
pub fn encode_asap(m: &AsapMessage, out: &mut Vec<u8>) {
    let _ = try_encode_asap(m, out);
}

/// Append the encoding of an ASAP message (padded to 4 bytes) to `out`, keeping it within
/// [`MAX_MESSAGE_LEN`]: when the message would be longer, the information its error causes
/// quote (the only variable-size part a responder controls) is cut, from the last cause
/// backwards, to its first bytes (a multiple of 4); when even causes without information
/// do not fit, nothing is appended and the error says how long the message would be.
pub fn try_encode_asap(m: &AsapMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let len = write_asap(m, out);
    if len <= MAX_MESSAGE_LEN {
        return Ok(());
    }
    out.truncate(start);
    let mut cut = m.clone();
    fit(&mut cut, len, asap_error_mut, write_asap, out)
}

fn asap_error_mut(m: &mut AsapMessage) -> Option<&mut OperationError> {
    match m {
        AsapMessage::RegistrationResponse { error, .. }
        | AsapMessage::DeregistrationResponse { error, .. }
        | AsapMessage::HandleResolutionResponse { error, .. } => error.as_mut(),
        AsapMessage::Error { error } => Some(error),
        _ => None,
    }
}

/// Encode `m` at the end of `out`; returns its length as the length field must say it
/// (padding excluded), which may exceed what the 16-bit field can hold.
fn write_asap(m: &AsapMessage, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let mut w = Writer::new(out);
    let flags: u8 = match m {
        AsapMessage::RegistrationResponse { reject: true, .. } => flag::REJECT,
        AsapMessage::HandleResolution {
            subscribe: true, ..
        } => flag::SUBSCRIBE,
        AsapMessage::HandleResolutionResponse { accepted: true, .. } => flag::ACCEPTED,
        AsapMessage::EndpointKeepAlive { home: true, .. } => flag::HOME,
        _ => 0,
    };
    let s = w.begin(u16::from_be_bytes([m.type_code(), flags]));
    match m {
        AsapMessage::Registration { handle, pe } => {
            encode_handle(&mut w, handle);
            encode_pool_element(&mut w, pe);
        }
        AsapMessage::Deregistration { handle, pe_id }
        | AsapMessage::EndpointKeepAliveAck { handle, pe_id }
        | AsapMessage::EndpointUnreachable { handle, pe_id } => {
            encode_handle(&mut w, handle);
            encode_pe_id(&mut w, *pe_id);
        }
        AsapMessage::RegistrationResponse {
            handle,
            pe_id,
            error,
            ..
        }
        | AsapMessage::DeregistrationResponse {
            handle,
            pe_id,
            error,
        } => {
            encode_handle(&mut w, handle);
            encode_pe_id(&mut w, *pe_id);
            if let Some(e) = error {
                encode_operation_error(&mut w, e);
            }
        }
        AsapMessage::HandleResolution { handle, items, .. } => {
            encode_handle(&mut w, handle);
            if let Some(n) = items {
                encode_u32_param(&mut w, ParamType::HANDLE_RESOLUTION_OPTION, *n);
            }
        }
        AsapMessage::HandleResolutionResponse {
            handle,
            policy,
            pes,
            error,
            ..
        } => {
            encode_handle(&mut w, handle);
            if let Some(p) = policy {
                encode_policy(&mut w, p);
            }
            for pe in pes {
                encode_pool_element(&mut w, pe);
            }
            if let Some(e) = error {
                encode_operation_error(&mut w, e);
            }
        }
        AsapMessage::EndpointKeepAlive {
            server_id,
            handle,
            pe_id,
            ..
        } => {
            w.u32(server_id.0);
            encode_handle(&mut w, handle);
            if let Some(id) = pe_id {
                encode_pe_id(&mut w, *id);
            }
        }
        AsapMessage::ServerAnnounce {
            server_id,
            transports,
        } => {
            w.u32(server_id.0);
            for t in transports {
                encode_transport(&mut w, t);
            }
        }
        AsapMessage::Cookie { cookie } | AsapMessage::CookieEcho { cookie } => {
            encode_bytes_param(&mut w, ParamType::COOKIE, cookie);
        }
        AsapMessage::BusinessCard {
            handle,
            policy,
            pes,
        } => {
            encode_handle(&mut w, handle);
            if let Some(p) = policy {
                encode_policy(&mut w, p);
            }
            for pe in pes {
                encode_pool_element(&mut w, pe);
            }
        }
        AsapMessage::Error { error } => encode_operation_error(&mut w, error),
    }
    w.end(s);
    let pad = w.trailing_pad;
    out.len() - start - pad
}

/// Append a positive ASAP_HANDLE_RESOLUTION_RESPONSE built from borrowed PEs: the same
/// bytes as [`AsapMessage::HandleResolutionResponse`] with `policy: Some(policy)`, these
/// `pes` (each without its ASAP transport unless `asap_transport`) and no error, but
/// without cloning a PE (a registrar answers from its handlespace). A message longer
/// than [`MAX_MESSAGE_LEN`] appends nothing and says how long it would be.
pub fn try_encode_resolution_response(
    accepted: bool,
    handle: &PoolHandle,
    policy: &Policy,
    pes: &[&PoolElement],
    asap_transport: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_resolution_response(accepted, handle, out, |w| {
        encode_policy(w, policy);
        for pe in pes {
            encode_pool_element_with(w, pe, asap_transport);
        }
    })
}

/// Append an ASAP_HANDLE_RESOLUTION_RESPONSE: its header (A flag from `accepted`) and
/// Pool Handle, then what `body` writes. A message longer than [`MAX_MESSAGE_LEN`]
/// appends nothing and says how long it would be.
pub(super) fn encode_resolution_response(
    accepted: bool,
    handle: &PoolHandle,
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Writer),
) -> Result<(), EncodeError> {
    let start = out.len();
    let mut w = Writer::new(out);
    let flags = if accepted { flag::ACCEPTED } else { 0 };
    let s = w.begin(u16::from_be_bytes([
        asap_type::HANDLE_RESOLUTION_RESPONSE,
        flags,
    ]));
    encode_handle(&mut w, handle);
    body(&mut w);
    w.end(s);
    let pad = w.trailing_pad;
    let length = out.len() - start - pad;
    if length > MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLong { length });
    }
    Ok(())
}

impl AsapMessage {
    /// The encoding (empty if the message cannot fit, see [`try_encode_asap`]).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        encode_asap(self, &mut v);
        v
    }
    /// The encoding, its quoted causes cut to fit if needed ([`try_encode_asap`]).
    pub fn try_encode_to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::with_capacity(64);
        try_encode_asap(self, &mut v)?;
        Ok(v)
    }
    pub fn decode(buf: &[u8]) -> Result<Decoded<AsapMessage>, DecodeError> {
        decode_asap(buf)
    }
}
