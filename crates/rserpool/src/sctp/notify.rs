//! Association notifications: the subscribed `SCTP_ASSOC_CHANGE`, `SCTP_SHUTDOWN_EVENT`
//! and `SCTP_PEER_ADDR_CHANGE` (plus any other type, by name) decoded into [`AssocEvent`].
//! No I/O; the bytes come from [`SctpStream::recv`](super::SctpStream::recv).
#![forbid(unsafe_code)]

use std::mem::{offset_of, size_of};
use std::net::SocketAddr;

use super::addr::parse_sockaddr;
use super::sys::{
    SctpAssocChange, SctpNotificationHeader, ASSOC_CHANGE_LEN, PADDR_ADDR_OFF, PADDR_CHANGE_LEN,
    PADDR_ERROR_OFF, PADDR_STATE_OFF, SCTP_ADAPTATION_INDICATION, SCTP_ASSOC_CHANGE,
    SCTP_CANT_STR_ASSOC, SCTP_COMM_LOST, SCTP_COMM_UP, SCTP_PARTIAL_DELIVERY_EVENT,
    SCTP_PEER_ADDR_CHANGE, SCTP_REMOTE_ERROR, SCTP_RESTART, SCTP_SENDER_DRY_EVENT,
    SCTP_SEND_FAILED, SCTP_SEND_FAILED_EVENT, SCTP_SHUTDOWN_COMP, SCTP_SHUTDOWN_EVENT,
};
use super::{rd_u16, rd_u32};

/// SCTP notifications surfaced by [`SctpStream::recv`](super::SctpStream::recv).
/// Subscribed: association change, shutdown event, peer address change; other types show
/// up as [`AssocEvent::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssocEvent {
    /// `SCTP_ASSOC_CHANGE` / `SCTP_COMM_UP`: the association is established.
    Up {
        outbound_streams: u16,
        inbound_streams: u16,
    },
    /// `SCTP_COMM_LOST`: the association failed (ABORT received, retransmissions exhausted).
    /// `error` is the `sac_error` field as an SCTP error cause code (RFC 9260 §3.3.10;
    /// 12 = User-Initiated Abort, e.g. peer process killed with unread data; 0 = none).
    /// After this, [`SctpStream::recv`](super::SctpStream::recv) returns `Eof`.
    Lost { error: u16 },
    /// `SCTP_RESTART`: the peer restarted (new association with the same addresses).
    Restart {
        outbound_streams: u16,
        inbound_streams: u16,
    },
    /// `SCTP_SHUTDOWN_COMP`: graceful shutdown completed.
    ShutdownComplete,
    /// `SCTP_CANT_STR_ASSOC`: the association could not be started.
    CantStart { error: u16 },
    /// `SCTP_SHUTDOWN_EVENT`: the peer sent SHUTDOWN; no more data will arrive.
    Shutdown,
    /// `SCTP_PEER_ADDR_CHANGE` for one of the peer's addresses.
    PeerAddrChange {
        addr: Option<SocketAddr>,
        state: PeerAddrState,
        error: i32,
    },
    /// Any other notification type (`sn_type`), e.g. `SCTP_SEND_FAILED_EVENT`.
    Other { sn_type: u16, name: &'static str },
}

/// `spc_state` of a peer address change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddrState {
    Available,
    Unreachable,
    Removed,
    Added,
    MadePrimary,
    Confirmed,
    PotentiallyFailed,
    Unknown(i32),
}

impl PeerAddrState {
    fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::Available,
            1 => Self::Unreachable,
            2 => Self::Removed,
            3 => Self::Added,
            4 => Self::MadePrimary,
            5 => Self::Confirmed,
            6 => Self::PotentiallyFailed,
            v => Self::Unknown(v),
        }
    }
}

pub(super) fn parse_notification(b: &[u8]) -> AssocEvent {
    let other = |sn_type: u16| AssocEvent::Other {
        sn_type,
        name: notification_name(sn_type),
    };
    if b.len() < size_of::<SctpNotificationHeader>() {
        return other(0);
    }
    let sn_type = rd_u16(b, offset_of!(SctpNotificationHeader, sn_type));
    match sn_type {
        SCTP_ASSOC_CHANGE if b.len() >= ASSOC_CHANGE_LEN => {
            let state = rd_u16(b, offset_of!(SctpAssocChange, sac_state));
            // The kernel fills sac_error with the SCTP error cause code in network byte
            // order (e.g. 0x0c00 on x86 for cause 12, User-Initiated Abort).
            let error = u16::from_be(rd_u16(b, offset_of!(SctpAssocChange, sac_error)));
            let outbound_streams = rd_u16(b, offset_of!(SctpAssocChange, sac_outbound_streams));
            let inbound_streams = rd_u16(b, offset_of!(SctpAssocChange, sac_inbound_streams));
            match state {
                SCTP_COMM_UP => AssocEvent::Up {
                    outbound_streams,
                    inbound_streams,
                },
                SCTP_COMM_LOST => AssocEvent::Lost { error },
                SCTP_RESTART => AssocEvent::Restart {
                    outbound_streams,
                    inbound_streams,
                },
                SCTP_SHUTDOWN_COMP => AssocEvent::ShutdownComplete,
                SCTP_CANT_STR_ASSOC => AssocEvent::CantStart { error },
                _ => other(sn_type),
            }
        }
        SCTP_SHUTDOWN_EVENT => AssocEvent::Shutdown,
        SCTP_PEER_ADDR_CHANGE if b.len() >= PADDR_CHANGE_LEN => AssocEvent::PeerAddrChange {
            addr: parse_sockaddr(&b[PADDR_ADDR_OFF..PADDR_STATE_OFF]).map(|(a, _)| a),
            state: PeerAddrState::from_raw(rd_u32(b, PADDR_STATE_OFF) as i32),
            error: rd_u32(b, PADDR_ERROR_OFF) as i32,
        },
        t => other(t),
    }
}

fn notification_name(t: u16) -> &'static str {
    match t {
        SCTP_ASSOC_CHANGE => "SCTP_ASSOC_CHANGE",
        SCTP_PEER_ADDR_CHANGE => "SCTP_PEER_ADDR_CHANGE",
        SCTP_SEND_FAILED => "SCTP_SEND_FAILED",
        SCTP_REMOTE_ERROR => "SCTP_REMOTE_ERROR",
        SCTP_SHUTDOWN_EVENT => "SCTP_SHUTDOWN_EVENT",
        SCTP_PARTIAL_DELIVERY_EVENT => "SCTP_PARTIAL_DELIVERY_EVENT",
        SCTP_ADAPTATION_INDICATION => "SCTP_ADAPTATION_INDICATION",
        SCTP_SENDER_DRY_EVENT => "SCTP_SENDER_DRY_EVENT",
        SCTP_SEND_FAILED_EVENT => "SCTP_SEND_FAILED_EVENT",
        _ => "unknown",
    }
}
