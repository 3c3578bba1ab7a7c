//! Parameter rendering: transports, policies, pool elements, server information,
//! operation errors and skipped unknown parameters.

use std::fmt::Write as _;

use super::cause::cause;
use super::tree::{
    action_text, address, bytes_summary, ptype, registration_life, transport_use, Tree,
};
use super::{dpf_fraction, load_percent};
use crate::types::*;

pub(super) fn transport(t: &mut Tree, d: usize, role: &str, tr: &TransportAddr) {
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

pub(super) fn policy(t: &mut Tree, d: usize, p: &Policy) {
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

pub(super) fn pool_element(t: &mut Tree, d: usize, pe: &PoolElement) {
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

pub(super) fn server_info(t: &mut Tree, d: usize, si: &ServerInfo) {
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

pub(super) fn operation_error(t: &mut Tree, d: usize, e: &OperationError) {
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

pub(super) fn unknown_param(t: &mut Tree, d: usize, u: &UnknownParam) {
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
