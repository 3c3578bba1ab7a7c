//! Human-readable trees of decoded messages and of decode errors.
//!
//! Pure functions returning `String`; no colours, no I/O. Used by `rsp decode`.
//!
//! * [`render_asap`], [`render_enrp`], [`render_message`]: a typed message; the header line
//!   shows the flags and length the encoder would produce.
//! * [`render_decoded`]: a message as received: the header line shows the bytes actually
//!   received (including undefined flag bits) and the skipped unknown parameters are listed.
//! * [`render_decode_error`]: a [`DecodeError`] with a hex dump marking its offset.
//! * [`render_raw_params`]: a best-effort TLV walk of raw parameter bytes, as found in error
//!   causes and unknown parameters.
//!
//! Every parameter line has the form `Name (0xCODE): summary`, nested values indented by
//! two spaces per level.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::codec::reader::{RawTlv, Reader, Tlv};
use crate::codec::tlv::{decode_address, decode_policy};
use crate::codec::{decode_policy_tlv, pad4, Decoded};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::message::*;
use crate::types::*;

/// Bytes of a value shown in full before eliding the rest.
const MAX_INLINE_BYTES: usize = 64;
/// Messages up to this size are dumped in full under an error; larger ones around the offset.
const FULL_DUMP_LIMIT: usize = 512;
/// Nesting limit for [`render_raw_params`] (causes may embed messages that embed causes).
const MAX_RAW_DEPTH: usize = 8;

// ----------------------------------------------------------------------------------------
// Public API

pub use crate::codec::Header;
pub use crate::message::{flag_defs, FlagDef};

/// Names of the set flag bits ("R" …), plus `"0xNN"` for set bits the type does not define.
pub fn flag_names(protocol: Protocol, ty: u8, flags: u8) -> Vec<String> {
    let defs = flag_defs(protocol, ty);
    let mut names: Vec<String> = defs
        .iter()
        .filter(|d| flags & d.mask != 0)
        .map(|d| d.letter.to_string())
        .collect();
    let undefined = undefined_flags(defs, flags);
    if undefined != 0 {
        names.push(format!("{undefined:#04x}"));
    }
    names
}

/// The message type name ("ASAP_REGISTRATION"), or `None` for an unknown type.
pub fn type_name(protocol: Protocol, ty: u8) -> Option<&'static str> {
    match protocol {
        Protocol::Asap => asap_type_name(ty),
        Protocol::Enrp => enrp_type_name(ty),
        Protocol::Data(_) => None,
    }
}

/// A short, stable, snake_case name for an error kind (for JSON and scripts).
pub fn error_kind_name(kind: &DecodeErrorKind) -> &'static str {
    use DecodeErrorKind as K;
    match kind {
        K::Truncated { .. } => "truncated",
        K::MessageLengthTooSmall { .. } => "message_length_too_small",
        K::MessageLengthTooBig { .. } => "message_length_too_big",
        K::TrailingBytes { .. } => "trailing_bytes",
        K::UnknownMessageType { .. } => "unknown_message_type",
        K::ParamLengthTooSmall { .. } => "param_length_too_small",
        K::ParamOverrun { .. } => "param_overrun",
        K::ParamBadLength { .. } => "param_bad_length",
        K::UnrecognizedParameter { .. } => "unrecognized_parameter",
        K::MissingParameter { .. } => "missing_parameter",
        K::UnexpectedParameter { .. } => "unexpected_parameter",
        K::InvalidValue { .. } => "invalid_value",
        K::PolicyTooShort { .. } => "policy_too_short",
    }
}

/// A typed ASAP message as a tree; the header shows what the encoder would send.
pub fn render_asap(m: &AsapMessage) -> String {
    let wire = m.encode_to_vec();
    let mut t = Tree::default();
    header_line(&mut t, Protocol::Asap, &wire);
    asap_body(&mut t, 1, m);
    t.0
}

/// A typed ENRP message as a tree; the header shows what the encoder would send.
pub fn render_enrp(m: &EnrpMessage) -> String {
    let wire = m.encode_to_vec();
    let mut t = Tree::default();
    header_line(&mut t, Protocol::Enrp, &wire);
    enrp_body(&mut t, 1, m);
    t.0
}

/// A typed message of either protocol as a tree.
pub fn render_message(m: &Message) -> String {
    match m {
        Message::Asap(a) => render_asap(a),
        Message::Enrp(e) => render_enrp(e),
    }
}

/// A message as received: header from `wire` (the bytes that were decoded), the typed
/// body, then every unknown parameter the decoder skipped, with its offset.
pub fn render_decoded(d: &Decoded<Message>, wire: &[u8]) -> String {
    let mut t = Tree::default();
    header_line(&mut t, d.message.protocol(), wire);
    match &d.message {
        Message::Asap(a) => asap_body(&mut t, 1, a),
        Message::Enrp(e) => enrp_body(&mut t, 1, e),
    }
    for u in &d.unknown {
        unknown_param(&mut t, 1, u);
    }
    t.0
}

/// A decode failure: the error (kind and offset), what the header says, and a hex dump of
/// `wire` with the offending offset marked. `protocol` is the protocol it was decoded as.
pub fn render_decode_error(protocol: Protocol, wire: &[u8], e: &DecodeError) -> String {
    let mut t = Tree::default();
    match Header::parse(wire) {
        Some(h) => {
            let name = type_name(protocol, h.ty).unwrap_or("unknown message type");
            t.line(
                0,
                format!(
                    "{name} ({} type {:#04x}), {}, length {}, {} bytes received: DECODE ERROR",
                    protocol.name(),
                    h.ty,
                    flags_text(protocol, h.ty, h.flags),
                    h.length,
                    wire.len()
                ),
            );
        }
        None => t.line(
            0,
            format!(
                "{} message, {} bytes received: DECODE ERROR",
                protocol.name(),
                wire.len()
            ),
        ),
    }
    t.line(1, format!("error: {e}"));
    t.line(
        1,
        format!("kind: {}, offset: {}", error_kind_name(&e.kind), e.offset),
    );
    match &e.kind {
        DecodeErrorKind::UnrecognizedParameter { tlv, .. } if !tlv.is_empty() => {
            t.line(1, "offending parameter:");
            raw_params(&mut t, 2, tlv, 0);
        }
        _ => {}
    }
    for line in hex_dump_window(wire, Some(e.offset)).lines() {
        t.line(1, line);
    }
    t.0
}

/// Hex dump, 16 bytes per row with offsets and ASCII. With `mark`, the byte at that offset
/// is marked by a `^^` line under its row (an offset at the end of the data is marked just
/// past the last byte).
pub fn hex_dump(bytes: &[u8], mark: Option<usize>) -> String {
    dump_rows(bytes, mark, 0, bytes.len().div_ceil(16).max(1))
}

/// Best-effort tree of a sequence of raw TLVs (e.g. an error cause's information or an
/// unknown parameter), never failing: malformed parts are shown as hex.
pub fn render_raw_params(bytes: &[u8]) -> String {
    let mut t = Tree::default();
    raw_params(&mut t, 0, bytes, 0);
    t.0
}

/// A load (or load degradation) as percent of 0xFFFFFFFF.
pub fn load_percent(v: u32) -> f64 {
    f64::from(v) * 100.0 / f64::from(u32::MAX)
}

/// A DPF value as a fraction of 0xFFFFFFFF = 1.0.
pub fn dpf_fraction(v: u32) -> f64 {
    f64::from(v) / f64::from(u32::MAX)
}

// ----------------------------------------------------------------------------------------
// Tree text

#[derive(Default)]
struct Tree(String);

impl Tree {
    fn line(&mut self, depth: usize, text: impl AsRef<str>) {
        for _ in 0..depth {
            self.0.push_str("  ");
        }
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }
}

fn undefined_flags(defs: &[FlagDef], flags: u8) -> u8 {
    let defined = defs.iter().fold(0u8, |acc, d| acc | d.mask);
    flags & !defined
}

fn flags_text(protocol: Protocol, ty: u8, flags: u8) -> String {
    let defs = flag_defs(protocol, ty);
    let mut parts: Vec<String> = defs
        .iter()
        .filter(|d| flags & d.mask != 0)
        .map(|d| format!("{} {}", d.letter, d.meaning))
        .collect();
    let undefined = undefined_flags(defs, flags);
    if undefined != 0 {
        parts.push(format!("undefined bits {undefined:#04x}, ignored"));
    }
    if parts.is_empty() {
        format!("flags {flags:#04x}")
    } else {
        format!("flags {flags:#04x} [{}]", parts.join(", "))
    }
}

fn header_line(t: &mut Tree, protocol: Protocol, wire: &[u8]) {
    let Some(h) = Header::parse(wire) else {
        t.line(0, format!("{} message (no header)", protocol.name()));
        return;
    };
    let name = type_name(protocol, h.ty).unwrap_or("unknown message type");
    let mut line = format!(
        "{name} ({} type {:#04x}), {}, length {}",
        protocol.name(),
        h.ty,
        flags_text(protocol, h.ty, h.flags),
        h.length
    );
    let len = usize::from(h.length);
    if wire.len() != len && wire.len() != pad4(len) {
        let _ = write!(line, " ({} bytes received)", wire.len());
    } else if wire.len() == len && len % 4 != 0 {
        line.push_str(" (final padding missing)");
    }
    t.line(0, line);
}

fn bytes_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(3 * b.len().min(MAX_INLINE_BYTES));
    for (i, x) in b.iter().take(MAX_INLINE_BYTES).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{x:02x}");
    }
    if b.len() > MAX_INLINE_BYTES {
        let _ = write!(s, " … ({} more)", b.len() - MAX_INLINE_BYTES);
    }
    s
}

fn bytes_summary(b: &[u8]) -> String {
    match b.len() {
        0 => "0 bytes".to_string(),
        1 => format!("1 byte: {}", bytes_hex(b)),
        n => format!("{n} bytes: {}", bytes_hex(b)),
    }
}

fn ptype(ty: ParamType) -> String {
    format!("{} ({:#06x})", ty.name(), ty.0)
}

fn server_id(id: ServerId) -> String {
    if id == ServerId::UNDETERMINED {
        format!("{id} (none)")
    } else {
        id.to_string()
    }
}

fn handle_text(h: &PoolHandle) -> String {
    match h.as_text() {
        Some(s) => format!("{s:?} [{}]", bytes_hex(h.as_bytes())),
        None => format!("{} bytes, not text [{}]", h.len(), bytes_hex(h.as_bytes())),
    }
}

fn handle(t: &mut Tree, d: usize, h: &PoolHandle) {
    t.line(
        d,
        format!("{}: {}", ptype(ParamType::POOL_HANDLE), handle_text(h)),
    );
}

fn pe_id(t: &mut Tree, d: usize, id: PeId) {
    t.line(d, format!("{}: {id}", ptype(ParamType::PE_IDENTIFIER)));
}

/// `1d 2h 3m 4.5s`-style text for a number of seconds.
fn human_secs(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{}s", trim_float(secs));
    }
    let total = secs.floor() as u64;
    let frac = secs - total as f64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let mut out = String::new();
    if d > 0 {
        let _ = write!(out, "{d}d ");
    }
    if d > 0 || h > 0 {
        let _ = write!(out, "{h}h ");
    }
    let _ = write!(out, "{m}m {}s", trim_float(s as f64 + frac));
    out
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn registration_life(raw: u32) -> String {
    let ms = format!(
        "{raw} ms ({}) per RSPLIB/Wireshark",
        human_secs(raw as f64 / 1000.0)
    );
    let s = if raw == u32::MAX {
        "infinite (-1) per RFC 5354".to_string()
    } else if raw > i32::MAX as u32 {
        format!("negative ({}) per RFC 5354: invalid", raw as i32)
    } else if raw < 60 {
        format!("{raw} s per RFC 5354")
    } else {
        format!("{raw} s ({}) per RFC 5354", human_secs(f64::from(raw)))
    };
    format!("{raw} ({raw:#010x}) = {ms}; {s}")
}

fn transport_use(u: TransportUse) -> String {
    match u {
        TransportUse::DATA_ONLY => "DATA only (0)".to_string(),
        TransportUse::DATA_PLUS_CONTROL => "DATA plus CONTROL (1)".to_string(),
        TransportUse(v) => format!("invalid transport use {v:#06x}"),
    }
}

fn address(t: &mut Tree, d: usize, a: &IpAddr) {
    let ty = match a {
        IpAddr::V4(_) => ParamType::IPV4_ADDRESS,
        IpAddr::V6(_) => ParamType::IPV6_ADDRESS,
    };
    t.line(d, format!("{}: {a}", ptype(ty)));
}

fn transport(t: &mut Tree, d: usize, role: &str, tr: &TransportAddr) {
    let mut s = format!("{role}{}: port {}", ptype(tr.kind.param_type()), tr.port);
    match tr.kind {
        TransportKind::Sctp => {
            let _ = write!(s, ", {}", transport_use(tr.use_field));
        }
        TransportKind::Tcp => {
            // Reserved by RFC 5354; RSPLIB reads it as Transport Use (Discrepancy #2).
            let _ = write!(
                s,
                ", reserved {:#06x} (RSPLIB: {})",
                tr.use_field.0,
                transport_use(tr.use_field)
            );
        }
        TransportKind::Dccp { service_code } => {
            let _ = write!(
                s,
                ", service code {service_code} ({service_code:#010x}), reserved {:#06x}",
                tr.use_field.0
            );
        }
        TransportKind::Udp | TransportKind::UdpLite => {
            if tr.use_field.0 != 0 {
                let _ = write!(s, ", reserved {:#06x} (should be 0)", tr.use_field.0);
            }
        }
    }
    t.line(d, s);
    for a in &tr.addrs {
        address(t, d + 1, a);
    }
}

fn policy(t: &mut Tree, d: usize, p: &Policy) {
    let ty = p.policy_type();
    let name = match (ty.long_name(), ty.short_name()) {
        (Some(l), Some(s)) => format!("{l} ({s}, {:#010x})", ty.0),
        _ => {
            let mut n = format!("unknown policy {:#010x}", ty.0);
            if ty.is_private() {
                n.push_str(" (private)");
            }
            if ty.is_adaptive() {
                n.push_str(" (adaptive)");
            }
            n
        }
    };
    t.line(d, format!("{}: {name}", ptype(ParamType::POLICY)));
    let d = d + 1;
    let load = |v: u32| format!("{v:#010x} = {:.3}%", load_percent(v));
    let dpf = |v: u32| format!("{v:#010x} = {:.6} per ms of distance", dpf_fraction(v));
    use Policy::*;
    match *p {
        RoundRobin | Random => {}
        WeightedRoundRobin { weight } | WeightedRandom { weight } => {
            t.line(d, format!("Weight: {weight}"));
        }
        Priority { priority } => t.line(d, format!("Priority: {priority} (larger = preferred)")),
        LeastUsed { load: l } | RandomizedLeastUsed { load: l } => {
            t.line(d, format!("Load: {}", load(l)));
        }
        LeastUsedDegradation {
            load: l,
            degradation,
        }
        | PriorityLeastUsed {
            load: l,
            degradation,
        }
        | RandomizedPriorityLeastUsed {
            load: l,
            degradation,
        }
        | RandomizedLeastUsedDegradation {
            load: l,
            degradation,
        }
        | PriorityLeastUsedDegradation {
            load: l,
            degradation,
        }
        | RandomizedPriorityLeastUsedDegradation {
            load: l,
            degradation,
        } => {
            t.line(d, format!("Load: {}", load(l)));
            t.line(d, format!("Load Degradation: {}", load(degradation)));
        }
        WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        } => {
            t.line(d, format!("Weight: {weight}"));
            t.line(d, format!("Weight DPF: {}", dpf(weight_dpf)));
            t.line(d, format!("Distance: {distance} ms"));
        }
        LeastUsedDpf {
            load: l,
            load_dpf,
            distance,
        } => {
            t.line(d, format!("Load: {}", load(l)));
            t.line(d, format!("Load DPF: {}", dpf(load_dpf)));
            t.line(d, format!("Distance: {distance} ms"));
        }
        LeastUsedDegradationDpf {
            load: l,
            degradation,
            load_dpf,
            distance,
        }
        | PriorityLeastUsedDpf {
            load: l,
            degradation,
            load_dpf,
            distance,
        }
        | PriorityLeastUsedDegradationDpf {
            load: l,
            degradation,
            load_dpf,
            distance,
        } => {
            t.line(d, format!("Load: {}", load(l)));
            t.line(d, format!("Load Degradation: {}", load(degradation)));
            t.line(d, format!("Load DPF: {}", dpf(load_dpf)));
            t.line(d, format!("Distance: {distance} ms"));
        }
        Unknown { ref data, .. } => {
            if !data.is_empty() {
                t.line(d, format!("Policy data: {}", bytes_summary(data)));
            }
        }
    }
}

fn pool_element(t: &mut Tree, d: usize, pe: &PoolElement) {
    t.line(
        d,
        format!("{}: PE {}", ptype(ParamType::POOL_ELEMENT), pe.id),
    );
    let d = d + 1;
    t.line(d, format!("PE Identifier: {}", pe.id));
    let home = if pe.home_registrar == ServerId::UNDETERMINED {
        format!("{} (not yet determined)", pe.home_registrar)
    } else {
        pe.home_registrar.to_string()
    };
    t.line(d, format!("Home ENRP Server Identifier: {home}"));
    t.line(
        d,
        format!(
            "Registration Life: {}",
            registration_life(pe.registration_life)
        ),
    );
    match &pe.user_transport {
        UserTransport::Ip(tr) => transport(t, d, "User Transport: ", tr),
        UserTransport::Opaque(b) => t.line(
            d,
            format!(
                "User Transport: {}: {}",
                ptype(ParamType::OPAQUE_TRANSPORT),
                bytes_summary(b)
            ),
        ),
    }
    policy(t, d, &pe.policy);
    match &pe.asap_transport {
        Some(tr) => transport(t, d, "ASAP Transport: ", tr),
        None => t.line(d, "ASAP Transport: absent"),
    }
}

fn server_info(t: &mut Tree, d: usize, si: &ServerInfo) {
    t.line(
        d,
        format!(
            "{}: server {}",
            ptype(ParamType::SERVER_INFORMATION),
            si.server_id
        ),
    );
    t.line(d + 1, format!("Server Identifier: {}", si.server_id));
    transport(t, d + 1, "ENRP Transport: ", &si.transport);
}

fn operation_error(t: &mut Tree, d: usize, e: &OperationError) {
    let n = e.causes.len();
    t.line(
        d,
        format!(
            "{}: {n} cause{}",
            ptype(ParamType::OPERATION_ERROR),
            if n == 1 { "" } else { "s" }
        ),
    );
    for c in &e.causes {
        cause(t, d + 1, c);
    }
}

fn cause(t: &mut Tree, d: usize, c: &Cause) {
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

fn action_text(ty: ParamType) -> &'static str {
    match ty.unknown_action() {
        UnknownAction::Stop => "00: stop, discard message",
        UnknownAction::StopAndReport => "01: stop, discard message, report",
        UnknownAction::Skip => "10: skip",
        UnknownAction::SkipAndReport => "11: skip, report",
    }
}

fn unknown_param(t: &mut Tree, d: usize, u: &UnknownParam) {
    t.line(
        d,
        format!(
            "Skipped unknown parameter {:#06x} at offset {}, length {} (action {}): {}",
            u.ty.0,
            u.offset,
            u.value.len() + 4,
            action_text(u.ty),
            bytes_summary(&u.value)
        ),
    );
}

fn enrp_servers(t: &mut Tree, d: usize, sender: ServerId, receiver: ServerId) {
    t.line(
        d,
        format!("Sending Server Identifier: {}", server_id(sender)),
    );
    let r = if receiver == ServerId::UNDETERMINED {
        format!("{receiver} (group-cast / unspecified)")
    } else {
        receiver.to_string()
    };
    t.line(d, format!("Receiving Server Identifier: {r}"));
}

fn asap_body(t: &mut Tree, d: usize, m: &AsapMessage) {
    use AsapMessage as A;
    match m {
        A::Registration { handle: h, pe } => {
            handle(t, d, h);
            pool_element(t, d, pe);
        }
        A::Deregistration {
            handle: h,
            pe_id: id,
        }
        | A::EndpointKeepAliveAck {
            handle: h,
            pe_id: id,
        }
        | A::EndpointUnreachable {
            handle: h,
            pe_id: id,
        } => {
            handle(t, d, h);
            pe_id(t, d, *id);
        }
        A::RegistrationResponse {
            handle: h,
            pe_id: id,
            error,
            ..
        }
        | A::DeregistrationResponse {
            handle: h,
            pe_id: id,
            error,
        } => {
            handle(t, d, h);
            pe_id(t, d, *id);
            if let Some(e) = error {
                operation_error(t, d, e);
            }
        }
        A::HandleResolution {
            handle: h, items, ..
        } => {
            handle(t, d, h);
            if let Some(n) = items {
                let what = match *n {
                    0 => "0 = server default".to_string(),
                    u32::MAX => "0xffffffff = as many as possible".to_string(),
                    n => n.to_string(),
                };
                t.line(
                    d,
                    format!(
                        "{}: items {what}",
                        ptype(ParamType::HANDLE_RESOLUTION_OPTION)
                    ),
                );
            }
        }
        A::HandleResolutionResponse {
            handle: h,
            policy: p,
            pes,
            error,
            ..
        } => {
            handle(t, d, h);
            if let Some(p) = p {
                t.line(d, "Overall pool policy:");
                policy(t, d + 1, p);
            }
            for pe in pes {
                pool_element(t, d, pe);
            }
            if let Some(e) = error {
                operation_error(t, d, e);
            }
        }
        A::EndpointKeepAlive {
            server_id: s,
            handle: h,
            pe_id: id,
            ..
        } => {
            t.line(d, format!("Server Identifier: {}", server_id(*s)));
            handle(t, d, h);
            if let Some(id) = id {
                pe_id(t, d, *id);
            }
        }
        A::ServerAnnounce {
            server_id: s,
            transports,
        } => {
            t.line(d, format!("Server Identifier: {}", server_id(*s)));
            if transports.is_empty() {
                t.line(d, "(no transport parameters: use the source address)");
            }
            for tr in transports {
                transport(t, d, "", tr);
            }
        }
        A::Cookie { cookie } | A::CookieEcho { cookie } => {
            t.line(
                d,
                format!("{}: {}", ptype(ParamType::COOKIE), bytes_summary(cookie)),
            );
        }
        A::BusinessCard {
            handle: h,
            policy: p,
            pes,
        } => {
            handle(t, d, h);
            if let Some(p) = p {
                t.line(d, "Policy (RSPLIB extension):");
                policy(t, d + 1, p);
            }
            for pe in pes {
                pool_element(t, d, pe);
            }
        }
        A::Error { error } => operation_error(t, d, error),
    }
}

fn enrp_body(t: &mut Tree, d: usize, m: &EnrpMessage) {
    use EnrpMessage as E;
    let (sender, receiver) = m.servers();
    enrp_servers(t, d, sender, receiver);
    match m {
        E::Presence {
            checksum,
            server_info: si,
            ..
        } => {
            if let Some(c) = checksum {
                t.line(d, format!("{}: {c:#06x}", ptype(ParamType::PE_CHECKSUM)));
            }
            if let Some(si) = si {
                server_info(t, d, si);
            }
        }
        E::HandleTableRequest { .. } | E::ListRequest { .. } => {}
        E::HandleTableResponse { pools, .. } => {
            if pools.is_empty() {
                t.line(d, "(no pool entries)");
            }
            for pool in pools {
                handle(t, d, &pool.handle);
                for pe in &pool.pes {
                    pool_element(t, d + 1, pe);
                }
            }
        }
        E::HandleUpdate {
            action,
            handle: h,
            pe,
            ..
        } => {
            let a = match *action {
                UpdateAction::ADD_PE => "ADD_PE (0)".to_string(),
                UpdateAction::DEL_PE => "DEL_PE (1)".to_string(),
                UpdateAction(v) => format!("unknown action {v:#06x}"),
            };
            t.line(d, format!("Update Action: {a}"));
            handle(t, d, h);
            pool_element(t, d, pe);
        }
        E::ListResponse { servers, .. } => {
            if servers.is_empty() {
                t.line(d, "(no servers)");
            }
            for si in servers {
                server_info(t, d, si);
            }
        }
        E::InitTakeover { target, .. }
        | E::InitTakeoverAck { target, .. }
        | E::TakeoverServer { target, .. } => {
            t.line(
                d,
                format!("Target Server Identifier: {}", server_id(*target)),
            );
        }
        E::Error { error, .. } => operation_error(t, d, error),
    }
}

// ----------------------------------------------------------------------------------------
// Raw TLV walk (error cause information, offending parameters)

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

fn raw_params(t: &mut Tree, d: usize, bytes: &[u8], depth: usize) {
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

// ----------------------------------------------------------------------------------------
// Hex dumps

/// Dump rows `first_row..last_row` (16 bytes each), marking `mark`.
fn dump_rows(bytes: &[u8], mark: Option<usize>, first_row: usize, last_row: usize) -> String {
    let mut out = String::new();
    for row in first_row..last_row {
        let start = row * 16;
        if start > bytes.len() || (start == bytes.len() && start != 0) {
            break;
        }
        let chunk = &bytes[start..(start + 16).min(bytes.len())];
        let mut hex = String::with_capacity(50);
        for i in 0..16 {
            if i == 8 {
                hex.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(hex, "{b:02x} ");
                }
                None => hex.push_str("   "),
            }
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(out, "{start:04x}  {hex} |{ascii}|");
        if let Some(m) = mark {
            let at_end = m >= bytes.len() && (row + 1) * 16 >= bytes.len() && start <= m;
            if (start..start + 16).contains(&m) || at_end {
                let col = m.saturating_sub(start).min(16);
                let pad = 6 + 3 * col + usize::from(col >= 8);
                let what = if m >= bytes.len() {
                    format!("offset {m} (end of data)")
                } else {
                    format!("offset {m}")
                };
                let _ = writeln!(out, "{}^^ {what}", " ".repeat(pad));
            }
        }
    }
    out
}

/// Full dump for small messages, a window around `mark` for big ones.
fn hex_dump_window(bytes: &[u8], mark: Option<usize>) -> String {
    let rows = bytes.len().div_ceil(16).max(1);
    if bytes.len() <= FULL_DUMP_LIMIT {
        return dump_rows(bytes, mark, 0, rows);
    }
    let centre = mark.unwrap_or(0).min(bytes.len()) / 16;
    let first = centre.saturating_sub(8);
    let last = (centre + 9).min(rows);
    let mut out = String::new();
    if first > 0 {
        let _ = writeln!(out, "… {} bytes before", first * 16);
    }
    out.push_str(&dump_rows(bytes, mark, first, last));
    if last < rows {
        let _ = writeln!(out, "… {} bytes after", bytes.len() - last * 16);
    }
    out
}

// ----------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, decode_asap, decode_enrp, encode_asap};

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    const REGISTRATION: &str =
        "01000038 0009000c 4563686f 506f6f6c 000a0028 01020304 00000000 0000003c
         00040010 00070001 00010008 c0000201 00080008 00000001";
    const HANDLE_RESOLUTION: &str = "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003";
    const PRESENCE: &str = "0101002c 11111111 00000000 000f0006 8e4b0000 000b0018 11111111 00040010
         26ad0000 00010008 c000020a";

    fn pe(policy: Policy) -> PoolElement {
        PoolElement {
            id: PeId(0xdeadbeef),
            home_registrar: ServerId(0x2222),
            registration_life: 30_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                8080,
                "2001:db8::1".parse().unwrap(),
            )),
            policy,
            asap_transport: Some(TransportAddr::sctp(
                3863,
                TransportUse::DATA_ONLY,
                vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            )),
        }
    }

    #[test]
    fn registration_worked_example() {
        let wire = hex(REGISTRATION);
        let d = decode(Protocol::Asap, &wire).unwrap();
        let s = render_decoded(&d, &wire);
        let want = "\
ASAP_REGISTRATION (ASAP type 0x01), flags 0x00, length 56
  Pool Handle (0x0009): \"EchoPool\" [45 63 68 6f 50 6f 6f 6c]
  Pool Element (0x000a): PE 0x01020304
    PE Identifier: 0x01020304
    Home ENRP Server Identifier: 0x00000000 (not yet determined)
    Registration Life: 60 (0x0000003c) = 60 ms (0.06s) per RSPLIB/Wireshark; 60 s (1m 0s) per RFC 5354
    User Transport: SCTP Transport (0x0004): port 7, DATA plus CONTROL (1)
      IPv4 Address (0x0001): 192.0.2.1
    Pool Member Selection Policy (0x0008): Round Robin (rr, 0x00000001)
    ASAP Transport: absent
";
        assert_eq!(s, want);
        // The typed renderer gives the same tree (the encoder reproduces the header).
        assert_eq!(render_asap(&decode_asap(&wire).unwrap().message), want);
    }

    #[test]
    fn handle_resolution_worked_example() {
        let wire = hex(HANDLE_RESOLUTION);
        let s = render_asap(&decode_asap(&wire).unwrap().message);
        assert_eq!(
            s,
            "\
ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x00, length 24
  Pool Handle (0x0009): \"EchoPool\" [45 63 68 6f 50 6f 6f 6c]
  Handle Resolution Option (0x803f): items 3
"
        );
    }

    #[test]
    fn presence_worked_example() {
        let wire = hex(PRESENCE);
        let s = render_enrp(&decode_enrp(&wire).unwrap().message);
        assert_eq!(
            s,
            "\
ENRP_PRESENCE (ENRP type 0x01), flags 0x01 [R reply required], length 44
  Sending Server Identifier: 0x11111111
  Receiving Server Identifier: 0x00000000 (group-cast / unspecified)
  PE Checksum (0x000f): 0x8e4b
  Server Information (0x000b): server 0x11111111
    Server Identifier: 0x11111111
    ENRP Transport: SCTP Transport (0x0004): port 9901, DATA only (0)
      IPv4 Address (0x0001): 192.0.2.10
"
        );
    }

    #[test]
    fn flags_by_name_and_undefined_bits() {
        let mut wire = hex(HANDLE_RESOLUTION);
        wire[1] = 0x81;
        let d = decode(Protocol::Asap, &wire).unwrap();
        let s = render_decoded(&d, &wire);
        assert!(
            s.starts_with(
                "ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x81 [S subscribe, undefined bits 0x80, ignored], length 24\n"
            ),
            "{s}"
        );
        assert_eq!(flag_names(Protocol::Asap, 5, 0x81), vec!["S", "0x80"]);
        assert_eq!(flag_names(Protocol::Enrp, 3, 0x03), vec!["R", "M"]);
        assert!(flag_names(Protocol::Asap, 1, 0).is_empty());
    }

    #[test]
    fn policies_show_percent_dpf_and_distance() {
        let p = Policy::LeastUsedDegradationDpf {
            load: u32::MAX / 2,
            degradation: u32::MAX / 4,
            load_dpf: 0x0041_8937,
            distance: 150,
        };
        let mut t = Tree::default();
        policy(&mut t, 0, &p);
        assert_eq!(
            t.0,
            "\
Pool Member Selection Policy (0x0008): Least Used with Degradation and Distance Penalty Factor (lud-dpf, 0xb0002003)
  Load: 0x7fffffff = 50.000%
  Load Degradation: 0x3fffffff = 25.000%
  Load DPF: 0x00418937 = 0.001000 per ms of distance
  Distance: 150 ms
"
        );
        let mut t = Tree::default();
        policy(
            &mut t,
            0,
            &Policy::Unknown {
                policy_type: PolicyType(0xC000_0007),
                data: vec![1, 2, 3, 4],
            },
        );
        assert_eq!(
            t.0,
            "\
Pool Member Selection Policy (0x0008): unknown policy 0xc0000007 (private) (adaptive)
  Policy data: 4 bytes: 01 02 03 04
"
        );
        assert_eq!(load_percent(0), 0.0);
        assert_eq!(load_percent(u32::MAX), 100.0);
    }

    #[test]
    fn registration_life_both_readings() {
        assert_eq!(
            registration_life(30_000),
            "30000 (0x00007530) = 30000 ms (30s) per RSPLIB/Wireshark; 30000 s (8h 20m 0s) per RFC 5354"
        );
        assert!(registration_life(u32::MAX).ends_with("; infinite (-1) per RFC 5354"));
        assert!(registration_life(u32::MAX - 1).ends_with("; negative (-2) per RFC 5354: invalid"));
        assert_eq!(human_secs(90_061.5), "1d 1h 1m 1.5s");
    }

    #[test]
    fn handle_resolution_response_with_pe_and_tcp_ipv6() {
        let m = AsapMessage::HandleResolutionResponse {
            accepted: true,
            handle: PoolHandle(vec![0x00, 0xff, 0x10]),
            policy: Some(Policy::WeightedRandom { weight: 7 }),
            pes: vec![pe(Policy::WeightedRandom { weight: 7 })],
            error: None,
        };
        let s = render_asap(&m);
        for want in [
            "ASAP_HANDLE_RESOLUTION_RESPONSE (ASAP type 0x06), flags 0x01 [A updates accepted], length ",
            "  Pool Handle (0x0009): 3 bytes, not text [00 ff 10]\n",
            "  Overall pool policy:\n    Pool Member Selection Policy (0x0008): Weighted Random (wrand, 0x00000004)\n      Weight: 7\n",
            "    User Transport: TCP Transport (0x0005): port 8080, reserved 0x0000 (RSPLIB: DATA only (0))\n      IPv6 Address (0x0002): 2001:db8::1\n",
            "    ASAP Transport: SCTP Transport (0x0004): port 3863, DATA only (0)\n      IPv4 Address (0x0001): 10.0.0.1\n      IPv4 Address (0x0001): 10.0.0.2\n",
            "    Home ENRP Server Identifier: 0x00002222\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
    }

    #[test]
    fn error_causes_decode_nested_policy_and_parameter_type() {
        let unknown_tlv = vec![0xc1, 0x23, 0x00, 0x06, 0xab, 0xcd, 0x00, 0x00];
        let m = AsapMessage::RegistrationResponse {
            reject: true,
            handle: PoolHandle::from("P"),
            pe_id: PeId(1),
            error: Some(OperationError {
                causes: vec![
                    Cause::inconsistent_policy(&Policy::LeastUsed { load: 0x8000_0000 }),
                    Cause::with_info(CauseCode::UNRECOGNIZED_PARAMETER, unknown_tlv),
                    Cause::new(CauseCode::UNKNOWN_POOL_HANDLE),
                    Cause::with_info(CauseCode(0xf00d), vec![9, 9]),
                ],
            }),
        };
        let s = render_asap(&m);
        let want = "\
  Operation Error (0x000c): 4 causes
    Cause: Inconsistent Pooling Policy (0x0005), 12 info bytes
      Pool's policy:
        Pool Member Selection Policy (0x0008): Least Used (lu, 0x40000001)
          Load: 0x80000000 = 50.000%
    Cause: Unrecognized Parameter (0x0001), 8 info bytes
      Unrecognized parameter type: 0xc123 (Unknown Parameter; action 11: skip, report)
      Unknown Parameter (0xc123), length 6: 2 bytes: ab cd (action 11: skip, report)
    Cause: Unknown Pool Handle (0x0009), 0 info bytes
    Cause: unknown cause (0xf00d), 2 info bytes
      Information: 2 bytes: 09 09
";
        assert!(s.ends_with(want), "{s}");
        assert!(s.starts_with(
            "ASAP_REGISTRATION_RESPONSE (ASAP type 0x03), flags 0x01 [R reject], length"
        ));
    }

    #[test]
    fn invalid_values_cause_walks_the_offending_tlv() {
        // Cause 0x3 carrying an SCTP transport with a v4 and a v6 address.
        let mut info = Vec::new();
        crate::codec::encode_transport(
            &mut crate::codec::Writer::new(&mut info),
            &TransportAddr::sctp(
                0,
                TransportUse(7),
                vec!["192.0.2.1".parse().unwrap(), "::1".parse().unwrap()],
            ),
        );
        let m = EnrpMessage::Error {
            sender: ServerId(5),
            receiver: ServerId(6),
            error: OperationError::single(Cause::with_info(CauseCode::INVALID_VALUES, info)),
        };
        let s = render_enrp(&m);
        let want = "\
    Cause: Invalid Values (0x0003), 36 info bytes
      Offending parameter:
        SCTP Transport (0x0004), length 36: port 0, invalid transport use 0x0007
          IPv4 Address (0x0001), length 8: 192.0.2.1
          IPv6 Address (0x0002), length 20: ::1
";
        assert!(s.ends_with(want), "{s}");
        assert!(s.contains("  Receiving Server Identifier: 0x00000006\n"));
    }

    #[test]
    fn enrp_update_action_and_table() {
        let m = EnrpMessage::HandleUpdate {
            takeover: false,
            sender: ServerId(1),
            receiver: ServerId(2),
            action: UpdateAction::DEL_PE,
            handle: PoolHandle::from("EchoPool"),
            pe: pe(Policy::RoundRobin),
        };
        let s = render_enrp(&m);
        assert!(s.contains("\n  Update Action: DEL_PE (1)\n"), "{s}");
        let m = EnrpMessage::HandleTableResponse {
            reject: false,
            more: true,
            sender: ServerId(1),
            receiver: ServerId(2),
            pools: vec![PoolEntry {
                handle: PoolHandle::from("A"),
                pes: vec![pe(Policy::Priority { priority: 3 })],
            }],
        };
        let s = render_enrp(&m);
        assert!(s.contains("flags 0x02 [M more to send]"), "{s}");
        assert!(
            s.contains(
                "  Pool Handle (0x0009): \"A\" [41]\n    Pool Element (0x000a): PE 0xdeadbeef\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("        Priority: 3 (larger = preferred)\n"),
            "{s}"
        );
    }

    #[test]
    fn skipped_unknown_parameters_are_listed() {
        // HANDLE_RESOLUTION with an extra 0x8123 TLV (action 10: skip) at offset 12.
        let wire = hex("0500001c 00090006 45630000 81230008 01020304 803f0008 00000003");
        let d = decode(Protocol::Asap, &wire).unwrap();
        assert_eq!(d.unknown.len(), 1);
        let s = render_decoded(&d, &wire);
        assert!(
            s.ends_with(
                "  Skipped unknown parameter 0x8123 at offset 12, length 8 (action 10: skip): 4 bytes: 01 02 03 04\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn decode_error_marks_the_offset() {
        // Pool Handle TLV claiming 0x40 bytes in a 24-byte message.
        let mut wire = hex(HANDLE_RESOLUTION);
        wire[7] = 0x40;
        let e = decode_asap(&wire).unwrap_err();
        assert_eq!(e.offset, 4);
        let s = render_decode_error(Protocol::Asap, &wire, &e);
        let want = "\
ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x00, length 24, 24 bytes received: DECODE ERROR
  error: parameter Pool Handle (0x0009): length 64 runs past its container (20 bytes left) (at byte 4)
  kind: param_overrun, offset: 4
  0000  05 00 00 18 00 09 00 40  45 63 68 6f 50 6f 6f 6c  |.......@EchoPool|
                    ^^ offset 4
  0010  80 3f 00 08 00 00 00 03                           |.?......|
";
        assert_eq!(s, want);
    }

    #[test]
    fn decode_error_header_names_flags() {
        let wire = hex("0101001c 11111111 00000000 000f0008 8e4b0000 000b0004 00000000");
        let e = decode_enrp(&wire).unwrap_err();
        let s = render_decode_error(Protocol::Enrp, &wire, &e);
        assert!(
            s.starts_with(
                "ENRP_PRESENCE (ENRP type 0x01), flags 0x01 [R reply required], length 28, 28 bytes received: DECODE ERROR\n  error: parameter PE Checksum (0x000f): length 8, expected 6 (at byte 12)\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn hex_dump_marks_end_and_second_half() {
        let bytes: Vec<u8> = (0u8..20).collect();
        let s = hex_dump(&bytes, Some(9));
        assert!(
            s.contains(&format!("|\n{}^^ offset 9\n0010", " ".repeat(34))),
            "{s}"
        );
        let s = hex_dump(&bytes, Some(20));
        assert!(s.ends_with("^^ offset 20 (end of data)\n"), "{s}");
        let s = hex_dump(&[0u8; 16], Some(16));
        assert_eq!(s.lines().count(), 2, "{s}");
        assert!(s.ends_with(&format!("{}^^ offset 16 (end of data)\n", " ".repeat(55))));
        assert_eq!(
            hex_dump(&[], None),
            "0000                                                    ||\n"
        );
    }

    #[test]
    fn big_message_dump_is_windowed() {
        let bytes = vec![0u8; 4000];
        let s = hex_dump_window(&bytes, Some(2000));
        assert!(s.starts_with("… 1872 bytes before\n"), "{s}");
        assert!(s.contains("07d0  "));
        assert!(s.contains("^^ offset 2000"));
        assert!(s.trim_end().ends_with("bytes after"));
        assert!(s.lines().count() < 25);
    }

    #[test]
    fn raw_params_never_panic_on_garbage() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = render_raw_params(&bytes);
        }
        assert_eq!(
            render_raw_params(&[0, 1, 0, 3]),
            "IPv4 Address (0x0001) with bad length 3 (4 bytes left): 4 bytes: 00 01 00 03\n"
        );
        // A pool element nested in raw bytes is walked.
        let mut buf = Vec::new();
        encode_asap(
            &AsapMessage::Registration {
                handle: PoolHandle::from("X"),
                pe: pe(Policy::RoundRobin),
            },
            &mut buf,
        );
        let s = render_raw_params(&buf[4..]);
        assert!(s.contains("Pool Element (0x000a), length "), "{s}");
        assert!(
            s.contains("PE 0xdeadbeef, home 0x00002222, registration life 30000"),
            "{s}"
        );
        assert!(
            s.contains("    IPv6 Address (0x0002), length 20: 2001:db8::1\n"),
            "{s}"
        );
    }

    #[test]
    fn every_error_kind_has_a_name() {
        let k = DecodeErrorKind::TrailingBytes { extra: 1 };
        assert_eq!(error_kind_name(&k), "trailing_bytes");
    }
}
