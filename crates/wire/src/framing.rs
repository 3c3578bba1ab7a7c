//! Framing for byte streams (`spec/tcp-mapping.md` §4).
//!
//! * [`Deframer`]: ASAP/ENRP messages written back-to-back on a TCP stream, each delimited
//!   by its own Message Length (then padded to 4). Copes with partial reads and several
//!   messages per read, and rejects absurd lengths.
//! * [`SessionFrame`] / [`SessionDeframer`]: the PU↔PE session channel, which carries
//!   application data and ASAP control messages on one connection. Each frame carries a
//!   PPID, modelled on the DATA chunk of draft-ietf-rserpool-tcpmapping-03 with TSN and
//!   stream fields omitted (INIT flags 0x03): `type 0 | flags | length | PPID | data | pad`.
//!   An ACK chunk (type 3) carries the TSN of the last application message the receiver's
//!   application acknowledged (cumulative; messages numbered from 0 per connection): the
//!   session layer's acknowledged mode.
//!
//! # The session layer's own messages on the seam
//!
//! The sans-IO session core (`rserpool_proto::session`) does not know the transport. It
//! hands its acknowledgements and heartbeats to the shell as application data with the
//! private PPIDs [`PPID_SESSION_ACK`], [`PPID_SESSION_HEARTBEAT`] and
//! [`PPID_SESSION_HEARTBEAT_ACK`]. Over TCP the shell maps them to the ACK, HEARTBEAT and
//! HEARTBEAT ACK chunks ([`SessionFrame::from_message`] / [`SessionFrame::into_message`]);
//! over SCTP they travel as messages with those PPIDs (our peers only: RSPLIB knows no
//! acknowledged mode and no session heartbeat, so a session to an RSPLIB PE runs with
//! both off).

use crate::codec::Header;
use crate::pad::pad4;

/// Smallest legal message: a bare 4-byte header.
pub const MIN_MESSAGE_LEN: usize = 4;
/// Default maximum message length accepted from a stream (the u16 length field allows
/// 65535; a peer may lower it).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 65535;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message length {length} is below the 4-byte minimum (stream offset {offset})")]
    TooShort { length: usize, offset: u64 },
    #[error("message length {length} exceeds the limit {limit} (stream offset {offset})")]
    TooLong {
        length: usize,
        limit: usize,
        offset: u64,
    },
    #[error("unknown session chunk type {ty} (stream offset {offset})")]
    UnknownChunk { ty: u8, offset: u64 },
}

/// Splits a byte stream into whole messages (each returned with its padding removed).
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
    max_len: usize,
    consumed: u64,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_LEN)
    }
}

impl Deframer {
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_len: max_len.clamp(MIN_MESSAGE_LEN, DEFAULT_MAX_MESSAGE_LEN),
            consumed: 0,
        }
    }
    /// Append bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }
    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
    /// The buffered bytes not yet returned as a message (e.g. to report a stream's tail).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    /// Total stream bytes consumed as messages so far.
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }
    /// The next complete message (exactly `Message Length` bytes, padding dropped),
    /// `Ok(None)` if more bytes are needed. After an error the stream is unusable.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(header) = Header::parse(avail) else {
            return Ok(None);
        };
        let length = usize::from(header.length);
        if length < MIN_MESSAGE_LEN {
            return Err(FrameError::TooShort {
                length,
                offset: self.consumed,
            });
        }
        if length > self.max_len {
            return Err(FrameError::TooLong {
                length,
                limit: self.max_len,
                offset: self.consumed,
            });
        }
        let total = pad4(length);
        if avail.len() < total {
            return Ok(None);
        }
        let s = self.start;
        self.start += total;
        self.consumed += total as u64;
        Ok(Some(&self.buf[s..s + length]))
    }
}

/// Session-channel chunk types (tcpmapping-03 numbering).
pub mod chunk_type {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const ACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
}

/// Private PPID of a session acknowledgement on the seam (body: u32 TSN of the last
/// acknowledged application message on the connection, cumulative: the ACK chunk's value).
pub const PPID_SESSION_ACK: u32 = 0x5253_5003;
/// Private PPID of a session heartbeat on the seam (body: the opaque heartbeat info).
pub const PPID_SESSION_HEARTBEAT: u32 = 0x5253_5004;
/// Private PPID of a session heartbeat acknowledgement (body: the echoed info).
pub const PPID_SESSION_HEARTBEAT_ACK: u32 = 0x5253_5005;

/// INIT flags we send: TSN omitted (0x01) and stream id/sequence omitted (0x02); PPID kept.
pub const SESSION_INIT_FLAGS: u8 = 0x03;

/// One frame on the session channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionFrame {
    /// First frame on a connection from each side.
    Init {
        flags: u8,
    },
    /// A message with its payload protocol identifier (11 = ASAP control).
    Data {
        ppid: u32,
        data: Vec<u8>,
    },
    Heartbeat {
        info: Vec<u8>,
    },
    HeartbeatAck {
        info: Vec<u8>,
    },
    /// Application messages acknowledged so far: `Some(tsn)` = every message up to TSN
    /// `tsn` (the 8-byte form, which we always send), `None` = the draft's bare 4-byte form
    /// (one more message acknowledged).
    Ack {
        tsn: Option<u32>,
    },
}

impl SessionFrame {
    /// Append the frame's encoding to `out`. Payloads larger than 65527 bytes must be split
    /// by the caller ([`SessionFrame::MAX_DATA`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            SessionFrame::Init { flags } => {
                out.extend_from_slice(&[chunk_type::INIT, *flags, 0, 4]);
            }
            SessionFrame::Data { ppid, data } => {
                let len = (8 + data.len()).min(usize::from(u16::MAX)) as u16;
                out.extend_from_slice(&[chunk_type::DATA, 0]);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&ppid.to_be_bytes());
                out.extend_from_slice(&data[..usize::from(len) - 8]);
            }
            SessionFrame::Heartbeat { info } | SessionFrame::HeartbeatAck { info } => {
                let ty = if matches!(self, SessionFrame::Heartbeat { .. }) {
                    chunk_type::HEARTBEAT
                } else {
                    chunk_type::HEARTBEAT_ACK
                };
                let info = &info[..info.len().min(usize::from(u16::MAX) - 8)];
                let len = (8 + info.len()) as u16;
                out.extend_from_slice(&[ty, 0]);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&((4 + info.len()) as u16).to_be_bytes());
                out.extend_from_slice(info);
            }
            SessionFrame::Ack { tsn } => {
                let len: u16 = if tsn.is_some() { 8 } else { 4 };
                out.extend_from_slice(&[chunk_type::ACK, 0]);
                out.extend_from_slice(&len.to_be_bytes());
                if let Some(t) = tsn {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
        }
        let padded = start + pad4(out.len() - start);
        out.resize(padded, 0);
    }

    /// The frame for one message the session core hands to the shell with SCTP PPID
    /// `ppid`: the session PPIDs become ACK / HEARTBEAT / HEARTBEAT ACK chunks, anything
    /// else (ASAP control on PPID 11, application data) a DATA chunk. A session ACK whose
    /// body is not 4 bytes becomes the bare form.
    pub fn from_message(ppid: u32, bytes: Vec<u8>) -> SessionFrame {
        match ppid {
            PPID_SESSION_ACK => SessionFrame::Ack {
                tsn: <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(u32::from_be_bytes),
            },
            PPID_SESSION_HEARTBEAT => SessionFrame::Heartbeat { info: bytes },
            PPID_SESSION_HEARTBEAT_ACK => SessionFrame::HeartbeatAck { info: bytes },
            _ => SessionFrame::Data { ppid, data: bytes },
        }
    }

    /// The inverse of [`SessionFrame::from_message`]: the (PPID, bytes) to hand to the
    /// session core; `None` for INIT (connection set-up, the shell's business). A bare
    /// ACK becomes an empty session ACK body.
    pub fn into_message(self) -> Option<(u32, Vec<u8>)> {
        match self {
            SessionFrame::Init { .. } => None,
            SessionFrame::Data { ppid, data } => Some((ppid, data)),
            SessionFrame::Heartbeat { info } => Some((PPID_SESSION_HEARTBEAT, info)),
            SessionFrame::HeartbeatAck { info } => Some((PPID_SESSION_HEARTBEAT_ACK, info)),
            SessionFrame::Ack { tsn } => Some((
                PPID_SESSION_ACK,
                tsn.map(|t| t.to_be_bytes().to_vec()).unwrap_or_default(),
            )),
        }
    }

    /// Largest payload of one DATA frame.
    pub const MAX_DATA: usize = 65535 - 8;
}

/// Splits the session channel into frames.
#[derive(Debug, Default)]
pub struct SessionDeframer {
    inner: Deframer,
}

impl SessionDeframer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, data: &[u8]) {
        self.inner.push(data);
    }
    pub fn next_frame(&mut self) -> Result<Option<SessionFrame>, FrameError> {
        let offset = self.inner.stream_offset();
        let Some(chunk) = self.inner.next_message()? else {
            return Ok(None);
        };
        let ty = chunk[0];
        let body = &chunk[4..];
        let short = || FrameError::TooShort {
            length: chunk.len(),
            offset,
        };
        Ok(Some(match ty {
            chunk_type::INIT => SessionFrame::Init { flags: chunk[1] },
            chunk_type::DATA => {
                if body.len() < 4 {
                    return Err(short());
                }
                SessionFrame::Data {
                    ppid: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    data: body[4..].to_vec(),
                }
            }
            chunk_type::HEARTBEAT | chunk_type::HEARTBEAT_ACK => {
                if body.len() < 4 {
                    return Err(short());
                }
                let info = body[4..].to_vec();
                if ty == chunk_type::HEARTBEAT {
                    SessionFrame::Heartbeat { info }
                } else {
                    SessionFrame::HeartbeatAck { info }
                }
            }
            chunk_type::ACK => match body.len() {
                0 => SessionFrame::Ack { tsn: None },
                4 => SessionFrame::Ack {
                    tsn: Some(u32::from_be_bytes([body[0], body[1], body[2], body[3]])),
                },
                _ => return Err(short()),
            },
            _ => return Err(FrameError::UnknownChunk { ty, offset }),
        }))
    }
}
