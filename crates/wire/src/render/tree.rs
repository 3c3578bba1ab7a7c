//! The text tree and the small formatting helpers shared by the renderers.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{flag_defs, type_name, FlagDef, Header, MAX_INLINE_BYTES};
use crate::codec::pad4;
use crate::message::*;
use crate::types::*;

#[derive(Default)]
pub(super) struct Tree(pub(super) String);

impl Tree {
    pub(super) fn line(&mut self, depth: usize, text: impl AsRef<str>) {
        for _ in 0..depth {
            self.0.push_str("  ");
        }
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }
}

pub(super) fn undefined_flags(defs: &[FlagDef], flags: u8) -> u8 {
    let defined = defs.iter().fold(0u8, |acc, d| acc | d.mask);
    flags & !defined
}

pub(super) fn flags_text(protocol: Protocol, ty: u8, flags: u8) -> String {
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

pub(super) fn header_line(t: &mut Tree, protocol: Protocol, wire: &[u8]) {
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

pub(super) fn bytes_summary(b: &[u8]) -> String {
    match b.len() {
        0 => "0 bytes".to_string(),
        1 => format!("1 byte: {}", bytes_hex(b)),
        n => format!("{n} bytes: {}", bytes_hex(b)),
    }
}

pub(super) fn ptype(ty: ParamType) -> String {
    format!("{} ({:#06x})", ty.name(), ty.0)
}

pub(super) fn server_id(id: ServerId) -> String {
    if id == ServerId::UNDETERMINED {
        format!("{id} (none)")
    } else {
        id.to_string()
    }
}

pub(super) fn handle_text(h: &PoolHandle) -> String {
    match h.as_text() {
        Some(s) => format!("{s:?} [{}]", bytes_hex(h.as_bytes())),
        None => format!("{} bytes, not text [{}]", h.len(), bytes_hex(h.as_bytes())),
    }
}

pub(super) fn handle(t: &mut Tree, d: usize, h: &PoolHandle) {
    t.line(
        d,
        format!("{}: {}", ptype(ParamType::POOL_HANDLE), handle_text(h)),
    );
}

pub(super) fn pe_id(t: &mut Tree, d: usize, id: PeId) {
    t.line(d, format!("{}: {id}", ptype(ParamType::PE_IDENTIFIER)));
}

/// `1d 2h 3m 4.5s`-style text for a number of seconds.
pub(super) fn human_secs(secs: f64) -> String {
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

pub(super) fn registration_life(raw: u32) -> String {
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

pub(super) fn transport_use(u: TransportUse) -> String {
    match u {
        TransportUse::DATA_ONLY => "DATA only (0)".to_string(),
        TransportUse::DATA_PLUS_CONTROL => "DATA plus CONTROL (1)".to_string(),
        TransportUse(v) => format!("invalid transport use {v:#06x}"),
    }
}

pub(super) fn address(t: &mut Tree, d: usize, a: &IpAddr) {
    let ty = match a {
        IpAddr::V4(_) => ParamType::IPV4_ADDRESS,
        IpAddr::V6(_) => ParamType::IPV6_ADDRESS,
    };
    t.line(d, format!("{}: {a}", ptype(ty)));
}

pub(super) fn action_text(ty: ParamType) -> &'static str {
    match ty.unknown_action() {
        UnknownAction::Stop => "00: stop, discard message",
        UnknownAction::StopAndReport => "01: stop, discard message, report",
        UnknownAction::Skip => "10: skip",
        UnknownAction::SkipAndReport => "11: skip, report",
    }
}
