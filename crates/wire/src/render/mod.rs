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

use self::dump::{dump_rows, hex_dump_window};
use self::message::{asap_body, enrp_body};
use self::params::unknown_param;
use self::raw::raw_params;
use self::tree::{flags_text, header_line, undefined_flags, Tree};
use crate::codec::Decoded;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::message::*;

mod cause;
mod dump;
mod message;
mod params;
mod raw;
#[cfg(test)]
mod tests;
mod tree;

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
