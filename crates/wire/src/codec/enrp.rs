//! ENRP messages (RFC 5353): decode, encode, and the typed message's convenience methods.

use super::params::Params;
use super::reader::split_header;
use super::tlv::*;
use super::writer::Writer;
use super::{fit, Decoded, MAX_MESSAGE_LEN};
use crate::error::{DecodeError, DecodeErrorKind as K, EncodeError};
use crate::message::*;
use crate::types::*;

/// Decode exactly one ENRP message (with optional trailing padding).
pub fn decode_enrp(buf: &[u8]) -> Result<Decoded<EnrpMessage>, DecodeError> {
    use enrp_type as t;
    let (ty, flags, mut r) = split_header(buf)?;
    if !(t::PRESENCE..=t::ERROR).contains(&ty) {
        return Err(DecodeError::new(
            0,
            K::UnknownMessageType {
                protocol: Protocol::Enrp,
                ty,
            },
        ));
    }
    let ctx = enrp_type_name(ty).unwrap_or("ENRP message");
    let sender = ServerId(r.u32("sending server identifier")?);
    let receiver = ServerId(r.u32("receiving server identifier")?);
    let mut unknown = Vec::new();
    let message = match ty {
        t::INIT_TAKEOVER | t::INIT_TAKEOVER_ACK | t::TAKEOVER_SERVER => {
            let target = ServerId(r.u32("target server identifier")?);
            Params::new(r, &mut unknown, ctx).finish()?;
            match ty {
                t::INIT_TAKEOVER => EnrpMessage::InitTakeover {
                    sender,
                    receiver,
                    target,
                },
                t::INIT_TAKEOVER_ACK => EnrpMessage::InitTakeoverAck {
                    sender,
                    receiver,
                    target,
                },
                _ => EnrpMessage::TakeoverServer {
                    sender,
                    receiver,
                    target,
                },
            }
        }
        t::HANDLE_UPDATE => {
            let action = UpdateAction(r.u16("update action")?);
            let _reserved = r.u16("reserved")?;
            let mut p = Params::new(r, &mut unknown, ctx);
            let handle = decode_handle(&p.expect(ParamType::POOL_HANDLE)?)?;
            let pet = p.expect(ParamType::POOL_ELEMENT)?;
            let pe = decode_pool_element(&pet, p.unknown)?;
            p.finish()?;
            EnrpMessage::HandleUpdate {
                takeover: flags & flag::TAKEOVER != 0,
                sender,
                receiver,
                action,
                handle,
                pe,
            }
        }
        _ => {
            let mut p = Params::new(r, &mut unknown, ctx);
            let m = match ty {
                t::PRESENCE => EnrpMessage::Presence {
                    reply_required: flags & flag::REPLY_REQUIRED != 0,
                    sender,
                    receiver,
                    checksum: match p.optional(ParamType::PE_CHECKSUM)? {
                        Some(c) => Some(decode_checksum(&c)?),
                        None => None,
                    },
                    server_info: match p.optional(ParamType::SERVER_INFORMATION)? {
                        Some(s) => Some(decode_server_info(&s, p.unknown)?),
                        None => None,
                    },
                },
                t::HANDLE_TABLE_REQUEST => EnrpMessage::HandleTableRequest {
                    own_children_only: flags & flag::OWN_CHILDREN_ONLY != 0,
                    sender,
                    receiver,
                },
                t::HANDLE_TABLE_RESPONSE => {
                    let mut pools = Vec::new();
                    while let Some(h) = p.optional(ParamType::POOL_HANDLE)? {
                        let handle = decode_handle(&h)?;
                        let pes = decode_pes(&mut p)?;
                        if pes.is_empty() {
                            return Err(h.err(K::MissingParameter {
                                expected: ParamType::POOL_ELEMENT,
                                context: ctx,
                            }));
                        }
                        pools.push(PoolEntry { handle, pes });
                    }
                    EnrpMessage::HandleTableResponse {
                        reject: flags & flag::REJECT != 0,
                        more: flags & flag::MORE != 0,
                        sender,
                        receiver,
                        pools,
                    }
                }
                t::LIST_REQUEST => EnrpMessage::ListRequest { sender, receiver },
                t::LIST_RESPONSE => {
                    let mut servers = Vec::new();
                    while let Some(s) = p.optional(ParamType::SERVER_INFORMATION)? {
                        servers.push(decode_server_info(&s, p.unknown)?);
                    }
                    EnrpMessage::ListResponse {
                        reject: flags & flag::REJECT != 0,
                        sender,
                        receiver,
                        servers,
                    }
                }
                _ => EnrpMessage::Error {
                    sender,
                    receiver,
                    error: decode_operation_error(&p.expect(ParamType::OPERATION_ERROR)?)?,
                },
            };
            p.finish()?;
            m
        }
    };
    Ok(Decoded { message, unknown })
}

/// Append the encoding of an ENRP message (padded to 4 bytes) to `out`; like
/// [`encode_asap`](super::encode_asap), a message that cannot fit appends nothing.
#[inline]
pub fn encode_enrp(m: &EnrpMessage, out: &mut Vec<u8>) {
    let _ = try_encode_enrp(m, out);
}

/// [`try_encode_asap`](super::try_encode_asap) for ENRP: an ENRP_ERROR's quoted causes are cut to fit; any other
/// message that does not fit (e.g. a handle table response with too many pools) is an
/// error, and nothing is appended.
pub fn try_encode_enrp(m: &EnrpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let len = write_enrp(m, out);
    if len <= MAX_MESSAGE_LEN {
        return Ok(());
    }
    out.truncate(start);
    let mut cut = m.clone();
    fit(&mut cut, len, enrp_error_mut, write_enrp, out)
}

fn enrp_error_mut(m: &mut EnrpMessage) -> Option<&mut OperationError> {
    match m {
        EnrpMessage::Error { error, .. } => Some(error),
        _ => None,
    }
}

fn write_enrp(m: &EnrpMessage, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let mut w = Writer::new(out);
    let flags: u8 = match m {
        EnrpMessage::Presence { reply_required, .. } => bit(*reply_required, flag::REPLY_REQUIRED),
        EnrpMessage::HandleTableRequest {
            own_children_only, ..
        } => bit(*own_children_only, flag::OWN_CHILDREN_ONLY),
        EnrpMessage::HandleTableResponse { reject, more, .. } => {
            bit(*reject, flag::REJECT) | bit(*more, flag::MORE)
        }
        EnrpMessage::HandleUpdate { takeover, .. } => bit(*takeover, flag::TAKEOVER),
        EnrpMessage::ListResponse { reject, .. } => bit(*reject, flag::REJECT),
        _ => 0,
    };
    let s = w.begin(u16::from_be_bytes([m.type_code(), flags]));
    let (sender, receiver) = m.servers();
    w.u32(sender.0);
    w.u32(receiver.0);
    match m {
        EnrpMessage::Presence {
            checksum,
            server_info,
            ..
        } => {
            if let Some(c) = checksum {
                let cs = w.begin(ParamType::PE_CHECKSUM.0);
                w.u16(*c);
                w.end(cs);
            }
            if let Some(si) = server_info {
                encode_server_info(&mut w, si);
            }
        }
        EnrpMessage::HandleTableRequest { .. } | EnrpMessage::ListRequest { .. } => {}
        EnrpMessage::HandleTableResponse { pools, .. } => {
            for pool in pools {
                encode_handle(&mut w, &pool.handle);
                for pe in &pool.pes {
                    encode_pool_element(&mut w, pe);
                }
            }
        }
        EnrpMessage::HandleUpdate {
            action, handle, pe, ..
        } => {
            w.u16(action.0);
            w.u16(0);
            encode_handle(&mut w, handle);
            encode_pool_element(&mut w, pe);
        }
        EnrpMessage::ListResponse { servers, .. } => {
            for si in servers {
                encode_server_info(&mut w, si);
            }
        }
        EnrpMessage::InitTakeover { target, .. }
        | EnrpMessage::InitTakeoverAck { target, .. }
        | EnrpMessage::TakeoverServer { target, .. } => w.u32(target.0),
        EnrpMessage::Error { error, .. } => encode_operation_error(&mut w, error),
    }
    w.end(s);
    let pad = w.trailing_pad;
    out.len() - start - pad
}

impl EnrpMessage {
    /// The encoding (empty if the message cannot fit, see [`try_encode_enrp`]).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        encode_enrp(self, &mut v);
        v
    }
    /// The encoding, its quoted causes cut to fit if needed ([`try_encode_enrp`]).
    pub fn try_encode_to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::with_capacity(64);
        try_encode_enrp(self, &mut v)?;
        Ok(v)
    }
    pub fn decode(buf: &[u8]) -> Result<Decoded<EnrpMessage>, DecodeError> {
        decode_enrp(buf)
    }
}

/// `mask` if `set`, else 0.
#[inline]
fn bit(set: bool, mask: u8) -> u8 {
    if set {
        mask
    } else {
        0
    }
}
