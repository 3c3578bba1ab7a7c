//! Encoding and decoding of ASAP and ENRP messages.
//!
//! Decoding never panics and allocates at most a small constant multiple of the input's
//! size: every length comes from a field that was bounds-checked against the bytes
//! actually present, and capacity hints are capped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{DecodeError, DecodeErrorKind as K, EncodeError};
use crate::message::*;
use crate::types::*;

/// Round `n` up to a multiple of 4.
#[inline]
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

// ----------------------------------------------------------------------------------------
// Writer

/// Appends big-endian fields and TLVs to a `Vec<u8>`. TLV lengths are back-filled in one
/// place ([`Writer::end`]), which also pads to 4 bytes. A container's length excludes the
/// padding of its last nested TLV (RFC 5354 §2).
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    /// Padding bytes at the current end of `buf` (not counted in enclosing lengths).
    trailing_pad: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self {
            buf,
            trailing_pad: 0,
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
        self.trailing_pad = 0;
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self.trailing_pad = 0;
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self.trailing_pad = 0;
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
        if !v.is_empty() {
            self.trailing_pad = 0;
        }
    }
    /// Start a TLV (or message: pass the first two header bytes as `ty`); returns its start.
    pub fn begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.u16(ty);
        self.u16(0);
        start
    }
    /// Back-fill the length of the TLV or message begun at `start` and pad to 4 bytes.
    pub fn end(&mut self, start: usize) {
        let unpadded = self.buf.len() - self.trailing_pad;
        let len = u16::try_from(unpadded - start).unwrap_or(u16::MAX);
        self.buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        let padded = pad4(self.buf.len() - start) + start;
        let extra = padded - self.buf.len();
        self.buf.resize(padded, 0);
        self.trailing_pad += extra;
    }
}

// ----------------------------------------------------------------------------------------
// Reader

/// A bounds-checked cursor over part of a message; `base` is the offset of `buf[0]` in
/// the whole message, so errors can name absolute offsets.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

/// One TLV as found in the input.
#[derive(Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub ty: ParamType,
    pub value: &'a [u8],
    /// Offset of the TLV header in the message.
    pub offset: usize,
}

impl<'a> Tlv<'a> {
    fn reader(&self) -> Reader<'a> {
        Reader {
            buf: self.value,
            pos: 0,
            base: self.offset + 4,
        }
    }
    fn err(&self, kind: K) -> DecodeError {
        DecodeError::new(self.offset, kind)
    }
    fn len(&self) -> u16 {
        // Value length was checked to fit a u16 length field.
        (self.value.len() + 4) as u16
    }
    fn exact(&self, n: usize, expected: &'static str) -> Result<(), DecodeError> {
        if self.value.len() + 4 != n {
            return Err(self.bad_length(expected));
        }
        Ok(())
    }
    #[cold]
    fn bad_length(&self, expected: &'static str) -> DecodeError {
        self.err(K::ParamBadLength {
            ty: self.ty,
            length: self.len(),
            expected,
        })
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }
    #[inline]
    fn offset(&self) -> usize {
        self.base + self.pos
    }
    /// The parameter this reader walks (its header offset), or 0 for the message value.
    #[inline]
    fn container(&self) -> Option<usize> {
        self.base.checked_sub(4)
    }
    #[inline]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    #[inline]
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::inside(
                self.offset(),
                self.container(),
                K::Truncated {
                    what,
                    needed: n,
                    available: self.remaining(),
                },
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    #[inline]
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    #[inline]
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline]
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }

    /// Read the next TLV. Advances past its padding, tolerating a missing pad at the end
    /// of the container (RSPLIB's and the RFC's nested lengths both decode).
    #[inline(always)]
    fn tlv(&mut self) -> Result<Tlv<'a>, DecodeError> {
        let offset = self.offset();
        let start = self.pos;
        let hdr = self.take(4, "parameter header")?;
        let ty = ParamType(u16::from_be_bytes([hdr[0], hdr[1]]));
        let length = u16::from_be_bytes([hdr[2], hdr[3]]);
        if length < 4 {
            return Err(DecodeError::inside(
                offset,
                self.container(),
                K::ParamLengthTooSmall { ty, length },
            ));
        }
        let vlen = usize::from(length) - 4;
        if vlen > self.remaining() {
            return Err(DecodeError::inside(
                offset,
                self.container(),
                K::ParamOverrun {
                    ty,
                    length,
                    available: self.remaining() + 4,
                },
            ));
        }
        let value = &self.buf[self.pos..self.pos + vlen];
        let end = (start + pad4(usize::from(length))).min(self.buf.len());
        self.pos = end;
        Ok(Tlv { ty, value, offset })
    }
}

// ----------------------------------------------------------------------------------------
// Parameter sequences

/// Walks a TLV list in order, skipping (and recording) unknown parameters per their
/// action bits, and lets the message parser demand known parameters in sequence.
struct Params<'a, 'u> {
    r: Reader<'a>,
    peeked: Option<Tlv<'a>>,
    unknown: &'u mut Vec<UnknownParam>,
    context: &'static str,
    /// Accept the Handle Resolution option (only in ASAP_HANDLE_RESOLUTION).
    hr_option: bool,
}

fn is_known(ty: ParamType) -> bool {
    matches!(ty.0, 0x0001..=0x0010)
}

/// The Handle Resolution option is known only inside ASAP_HANDLE_RESOLUTION; elsewhere its
/// action bits (`10`) make an old-style receiver skip it. RSPLIB matches it on the low 14 bits
/// (0x003f with any action bits), so we accept that spelling there too.
fn is_hr_option(ty: ParamType) -> bool {
    ty.0 & 0x3fff == 0x003f
}

fn is_transport(ty: ParamType) -> bool {
    matches!(ty.0, 0x0003..=0x0007 | 0x0010)
}

/// The next known TLV of `r`, or `None` at its end. Unknown TLVs are skipped and recorded
/// or stop decoding, per their action bits.
#[inline(always)]
fn next_known<'a>(
    r: &mut Reader<'a>,
    unknown: &mut Vec<UnknownParam>,
) -> Result<Option<Tlv<'a>>, DecodeError> {
    next_known_in(r, unknown, false)
}

/// [`next_known`], optionally also accepting the Handle Resolution option.
fn next_known_in<'a>(
    r: &mut Reader<'a>,
    unknown: &mut Vec<UnknownParam>,
    hr_option: bool,
) -> Result<Option<Tlv<'a>>, DecodeError> {
    while !r.is_empty() {
        let start = r.pos;
        let t = r.tlv()?;
        if is_known(t.ty) || (hr_option && is_hr_option(t.ty)) {
            return Ok(Some(t));
        }
        // The whole TLV including the padding actually present.
        unknown_param(unknown, &t, &r.buf[start..r.pos])?;
    }
    Ok(None)
}

/// An unrecognised parameter: stop (error) or record and skip, per its action bits.
#[cold]
#[inline(never)]
fn unknown_param(unknown: &mut Vec<UnknownParam>, t: &Tlv, raw: &[u8]) -> Result<(), DecodeError> {
    if t.ty.unknown_action().stops() {
        return Err(t.err(K::UnrecognizedParameter {
            ty: t.ty,
            tlv: raw.to_vec(),
        }));
    }
    unknown.push(UnknownParam {
        ty: t.ty,
        value: t.value.to_vec(),
        offset: t.offset,
    });
    Ok(())
}

impl<'a, 'u> Params<'a, 'u> {
    fn new(r: Reader<'a>, unknown: &'u mut Vec<UnknownParam>, context: &'static str) -> Self {
        Self {
            r,
            peeked: None,
            unknown,
            context,
            hr_option: false,
        }
    }

    /// Next known TLV, or `None` at the end.
    #[inline]
    fn peek(&mut self) -> Result<Option<Tlv<'a>>, DecodeError> {
        if self.peeked.is_none() && !self.r.is_empty() {
            self.fill()?;
        }
        Ok(self.peeked)
    }

    /// Read TLVs until a known one (stored in `peeked`) or the end.
    fn fill(&mut self) -> Result<(), DecodeError> {
        self.peeked = next_known_in(&mut self.r, self.unknown, self.hr_option)?;
        Ok(())
    }

    /// How many Pool Element TLVs follow back to back (a capacity hint; lengths are not
    /// validated here, the count stops at the first non-PE or broken header).
    fn count_pes_ahead(&self) -> usize {
        let mut n = usize::from(matches!(self.peeked, Some(t) if t.ty == ParamType::POOL_ELEMENT));
        if self.peeked.is_some() && n == 0 {
            return 0;
        }
        let b = &self.r.buf[self.r.pos.min(self.r.buf.len())..];
        let mut i = 0;
        while i + 4 <= b.len() && u16::from_be_bytes([b[i], b[i + 1]]) == ParamType::POOL_ELEMENT.0
        {
            let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
            if len < 4 {
                break;
            }
            n += 1;
            i += pad4(len);
        }
        n
    }

    #[inline]
    fn next(&mut self) -> Result<Option<Tlv<'a>>, DecodeError> {
        let t = self.peek()?;
        self.peeked = None;
        Ok(t)
    }

    /// The next parameter if it has type `ty`.
    #[inline]
    fn optional(&mut self, ty: ParamType) -> Result<Option<Tlv<'a>>, DecodeError> {
        match self.peek()? {
            Some(t) if t.ty == ty => self.next(),
            _ => Ok(None),
        }
    }

    /// The next parameter, which must have type `ty`.
    #[inline]
    fn expect(&mut self, ty: ParamType) -> Result<Tlv<'a>, DecodeError> {
        let offset = self.r.offset();
        match self.next()? {
            Some(t) if t.ty == ty => Ok(t),
            Some(t) => Err(t.err(K::UnexpectedParameter {
                found: t.ty,
                context: self.context,
                expected: ty.name(),
            })),
            None => Err(DecodeError::inside(
                offset,
                self.r.container(),
                K::MissingParameter {
                    expected: ty,
                    context: self.context,
                },
            )),
        }
    }

    /// No known parameter may follow.
    fn finish(mut self) -> Result<(), DecodeError> {
        match self.next()? {
            None => Ok(()),
            Some(t) => Err(t.err(K::UnexpectedParameter {
                found: t.ty,
                context: self.context,
                expected: "end of parameters",
            })),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Parameters: encode

fn encode_address(w: &mut Writer, a: &IpAddr) {
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

fn encode_handle(w: &mut Writer, h: &PoolHandle) {
    let s = w.begin(ParamType::POOL_HANDLE.0);
    w.bytes(&h.0);
    w.end(s);
}

fn encode_u32_param(w: &mut Writer, ty: ParamType, v: u32) {
    let s = w.begin(ty.0);
    w.u32(v);
    w.end(s);
}

fn encode_pe_id(w: &mut Writer, id: PeId) {
    encode_u32_param(w, ParamType::PE_IDENTIFIER, id.0);
}

fn encode_bytes_param(w: &mut Writer, ty: ParamType, b: &[u8]) {
    let s = w.begin(ty.0);
    w.bytes(b);
    w.end(s);
}

pub(crate) fn encode_pool_element(w: &mut Writer, pe: &PoolElement) {
    let s = w.begin(ParamType::POOL_ELEMENT.0);
    w.u32(pe.id.0);
    w.u32(pe.home_registrar.0);
    w.u32(pe.registration_life);
    match &pe.user_transport {
        UserTransport::Ip(t) => encode_transport(w, t),
        UserTransport::Opaque(b) => encode_bytes_param(w, ParamType::OPAQUE_TRANSPORT, b),
    }
    encode_policy(w, &pe.policy);
    if let Some(t) = &pe.asap_transport {
        encode_transport(w, t);
    }
    w.end(s);
}

fn encode_server_info(w: &mut Writer, si: &ServerInfo) {
    let s = w.begin(ParamType::SERVER_INFORMATION.0);
    w.u32(si.server_id.0);
    encode_transport(w, &si.transport);
    w.end(s);
}

fn encode_operation_error(w: &mut Writer, e: &OperationError) {
    let s = w.begin(ParamType::OPERATION_ERROR.0);
    for c in &e.causes {
        let cs = w.begin(c.code.0);
        w.bytes(&c.info);
        w.end(cs);
    }
    w.end(s);
}

// ----------------------------------------------------------------------------------------
// Parameters: decode

fn decode_address(t: &Tlv) -> Result<IpAddr, DecodeError> {
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

fn decode_transport(
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

fn decode_policy(t: &Tlv) -> Result<Policy, DecodeError> {
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

fn decode_handle(t: &Tlv) -> Result<PoolHandle, DecodeError> {
    if t.value.is_empty() {
        return Err(t.err(K::InvalidValue {
            context: "Pool Handle",
            what: "empty pool handle",
        }));
    }
    Ok(PoolHandle(t.value.to_vec()))
}

fn decode_u32_param(t: &Tlv, what: &'static str) -> Result<u32, DecodeError> {
    t.exact(8, "8")?;
    t.reader().u32(what)
}

fn decode_pe_id(t: &Tlv) -> Result<PeId, DecodeError> {
    decode_u32_param(t, "PE identifier").map(PeId)
}

fn decode_pool_element(
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
        Some(at) if at.ty == ParamType::SCTP_TRANSPORT => {
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

fn decode_server_info(t: &Tlv, unknown: &mut Vec<UnknownParam>) -> Result<ServerInfo, DecodeError> {
    let mut r = t.reader();
    let server_id = ServerId(r.u32("server identifier")?);
    let mut p = Params::new(r, unknown, "Server Information");
    let tt = p.expect(ParamType::SCTP_TRANSPORT)?;
    let transport = decode_transport(&tt, p.unknown)?;
    p.finish()?;
    Ok(ServerInfo {
        server_id,
        transport,
    })
}

fn decode_operation_error(t: &Tlv) -> Result<OperationError, DecodeError> {
    let mut r = t.reader();
    let mut causes = Vec::new();
    while !r.is_empty() {
        let offset = r.offset();
        let code = CauseCode(r.u16("cause code")?);
        let len = r.u16("cause length")?;
        if len < 4 {
            return Err(DecodeError::inside(
                offset,
                Some(t.offset),
                K::InvalidValue {
                    context: "Operation Error",
                    what: "cause length below 4",
                },
            ));
        }
        let info_len = usize::from(len) - 4;
        let info = r.take(info_len, "cause information")?;
        let pad = pad4(info_len) - info_len;
        let _ = r.take(pad.min(r.remaining()), "cause padding");
        causes.push(Cause {
            code,
            info: info.to_vec(),
        });
    }
    if causes.is_empty() {
        return Err(t.err(K::InvalidValue {
            context: "Operation Error",
            what: "no error cause",
        }));
    }
    Ok(OperationError { causes })
}

fn decode_checksum(t: &Tlv) -> Result<u16, DecodeError> {
    t.exact(6, "6")?;
    t.reader().u16("PE checksum")
}

// ----------------------------------------------------------------------------------------
// Messages

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

/// Header of a message: (type, flags, length, value reader).
fn split_header(buf: &[u8]) -> Result<(u8, u8, Reader<'_>), DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::new(
            0,
            K::Truncated {
                what: "message header",
                needed: 4,
                available: buf.len(),
            },
        ));
    }
    let length = u16::from_be_bytes([buf[2], buf[3]]);
    let len = usize::from(length);
    if len < 4 {
        return Err(DecodeError::new(2, K::MessageLengthTooSmall { length }));
    }
    if len > buf.len() {
        return Err(DecodeError::new(
            2,
            K::MessageLengthTooBig {
                length,
                available: buf.len(),
            },
        ));
    }
    if buf.len() > pad4(len) {
        return Err(DecodeError::new(
            pad4(len),
            K::TrailingBytes {
                extra: buf.len() - pad4(len),
            },
        ));
    }
    Ok((buf[0], buf[1], Reader::new(&buf[4..len], 4)))
}

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
                reject: flags & 0x01 != 0,
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
                subscribe: flags & 0x01 != 0,
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
                    accepted: flags & 0x01 != 0,
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
                    home: flags & 0x01 != 0,
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

fn opt_error(p: &mut Params) -> Result<Option<OperationError>, DecodeError> {
    match p.optional(ParamType::OPERATION_ERROR)? {
        Some(e) => Ok(Some(decode_operation_error(&e)?)),
        None => Ok(None),
    }
}

fn decode_pes(p: &mut Params) -> Result<Vec<PoolElement>, DecodeError> {
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
                takeover: flags & 0x01 != 0,
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
                    reply_required: flags & 0x01 != 0,
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
                    own_children_only: flags & 0x01 != 0,
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
                        reject: flags & 0x01 != 0,
                        more: flags & 0x02 != 0,
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
                        reject: flags & 0x01 != 0,
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
            K::UnknownMessageType {
                protocol,
                ty: buf.first().copied().unwrap_or(0),
            },
        )),
    }
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

/// Cut the cause information of `m` (whose encoding is `len` bytes) until it encodes
/// within [`MAX_MESSAGE_LEN`]; append it to `out`, or nothing and the error.
#[cold]
#[inline(never)]
fn fit<M>(
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
fn cut_causes(e: &mut OperationError, mut over: usize) -> bool {
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

fn asap_error_mut(m: &mut AsapMessage) -> Option<&mut OperationError> {
    match m {
        AsapMessage::RegistrationResponse { error, .. }
        | AsapMessage::DeregistrationResponse { error, .. }
        | AsapMessage::HandleResolutionResponse { error, .. } => error.as_mut(),
        AsapMessage::Error { error } => Some(error),
        _ => None,
    }
}

fn enrp_error_mut(m: &mut EnrpMessage) -> Option<&mut OperationError> {
    match m {
        EnrpMessage::Error { error, .. } => Some(error),
        _ => None,
    }
}

/// Encode `m` at the end of `out`; returns its length as the length field must say it
/// (padding excluded), which may exceed what the 16-bit field can hold.
fn write_asap(m: &AsapMessage, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let mut w = Writer::new(out);
    let flags: u8 = match m {
        AsapMessage::RegistrationResponse { reject: true, .. } => 0x01,
        AsapMessage::HandleResolution {
            subscribe: true, ..
        } => 0x01,
        AsapMessage::HandleResolutionResponse { accepted: true, .. } => 0x01,
        AsapMessage::EndpointKeepAlive { home: true, .. } => 0x01,
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

/// Append the encoding of an ENRP message (padded to 4 bytes) to `out`; like
/// [`encode_asap`], a message that cannot fit appends nothing.
#[inline]
pub fn encode_enrp(m: &EnrpMessage, out: &mut Vec<u8>) {
    let _ = try_encode_enrp(m, out);
}

/// [`try_encode_asap`] for ENRP: an ENRP_ERROR's quoted causes are cut to fit; any other
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

fn write_enrp(m: &EnrpMessage, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let mut w = Writer::new(out);
    let flags: u8 = match m {
        EnrpMessage::Presence { reply_required, .. } => u8::from(*reply_required),
        EnrpMessage::HandleTableRequest {
            own_children_only, ..
        } => u8::from(*own_children_only),
        EnrpMessage::HandleTableResponse { reject, more, .. } => {
            u8::from(*reject) | (u8::from(*more) << 1)
        }
        EnrpMessage::HandleUpdate { takeover, .. } => u8::from(*takeover),
        EnrpMessage::ListResponse { reject, .. } => u8::from(*reject),
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

impl Message {
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        encode(self, &mut v);
        v
    }
}

/// Encode a single policy TLV to bytes (e.g. for cause 0x5's information).
pub fn policy_tlv(p: &Policy) -> Vec<u8> {
    let mut v = Vec::new();
    encode_policy(&mut Writer::new(&mut v), p);
    v
}

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
