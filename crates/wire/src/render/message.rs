//! Message-level rendering: the bodies of ASAP and ENRP messages.

use super::params::{operation_error, policy, pool_element, server_info, transport};
use super::tree::{bytes_summary, handle, pe_id, ptype, server_id, Tree};
use crate::message::*;
use crate::types::*;

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

pub(super) fn asap_body(t: &mut Tree, d: usize, m: &AsapMessage) {
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

pub(super) fn enrp_body(t: &mut Tree, d: usize, m: &EnrpMessage) {
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
