//! ASAP (RFC 5352) and ENRP (RFC 5353) messages.

use std::fmt;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::types::*;

/// Which protocol a message belongs to (the type spaces overlap; PPID or port decides).
///
/// `Data` is application data between a PU and a PE (the session layer): opaque bytes
/// sent with the application's SCTP PPID, never decoded by this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum Protocol {
    Asap,
    Enrp,
    /// Application data with this SCTP payload protocol identifier.
    Data(u32),
}

impl Protocol {
    /// SCTP payload protocol identifier.
    pub fn ppid(self) -> u32 {
        match self {
            Protocol::Asap => PPID_ASAP,
            Protocol::Enrp => PPID_ENRP,
            Protocol::Data(ppid) => ppid,
        }
    }
    /// The RSerPool protocol of a received PPID (RSPLIB's pre-RFC PPIDs included);
    /// `None` for any other PPID (application data is the shell's to label as `Data`).
    pub fn from_ppid(ppid: u32) -> Option<Protocol> {
        match ppid {
            PPID_ASAP | PPID_ASAP_LEGACY => Some(Protocol::Asap),
            PPID_ENRP | PPID_ENRP_LEGACY => Some(Protocol::Enrp),
            _ => None,
        }
    }
    /// True for ASAP and ENRP, false for application data.
    pub fn is_rserpool(self) -> bool {
        !matches!(self, Protocol::Data(_))
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Asap => "ASAP",
            Protocol::Enrp => "ENRP",
            Protocol::Data(_) => "DATA",
        }
    }
}

pub const PPID_ASAP: u32 = 11;
pub const PPID_ENRP: u32 = 12;
/// Historic RSPLIB PPIDs, accepted on receipt.
pub const PPID_ASAP_LEGACY: u32 = 0xFAEE_B5D1;
pub const PPID_ENRP_LEGACY: u32 = 0xFAEE_B5D2;
pub const ASAP_PORT: u16 = 3863;
pub const ASAP_TLS_PORT: u16 = 3864;
pub const ENRP_PORT: u16 = 9901;

/// ASAP message type codes.
pub mod asap_type {
    pub const REGISTRATION: u8 = 0x01;
    pub const DEREGISTRATION: u8 = 0x02;
    pub const REGISTRATION_RESPONSE: u8 = 0x03;
    pub const DEREGISTRATION_RESPONSE: u8 = 0x04;
    pub const HANDLE_RESOLUTION: u8 = 0x05;
    pub const HANDLE_RESOLUTION_RESPONSE: u8 = 0x06;
    pub const ENDPOINT_KEEP_ALIVE: u8 = 0x07;
    pub const ENDPOINT_KEEP_ALIVE_ACK: u8 = 0x08;
    pub const ENDPOINT_UNREACHABLE: u8 = 0x09;
    pub const SERVER_ANNOUNCE: u8 = 0x0a;
    pub const COOKIE: u8 = 0x0b;
    pub const COOKIE_ECHO: u8 = 0x0c;
    pub const BUSINESS_CARD: u8 = 0x0d;
    pub const ERROR: u8 = 0x0e;
}

/// ENRP message type codes.
pub mod enrp_type {
    pub const PRESENCE: u8 = 0x01;
    pub const HANDLE_TABLE_REQUEST: u8 = 0x02;
    pub const HANDLE_TABLE_RESPONSE: u8 = 0x03;
    pub const HANDLE_UPDATE: u8 = 0x04;
    pub const LIST_REQUEST: u8 = 0x05;
    pub const LIST_RESPONSE: u8 = 0x06;
    pub const INIT_TAKEOVER: u8 = 0x07;
    pub const INIT_TAKEOVER_ACK: u8 = 0x08;
    pub const TAKEOVER_SERVER: u8 = 0x09;
    pub const ERROR: u8 = 0x0a;
}

/// Message flag bits (the second header byte), by the letter the RFCs give them. Each
/// bit means something only in the message types [`flag_defs`] lists it for; the codec
/// and the renderer both read them from here.
pub mod flag {
    /// R (reject): ASAP_REGISTRATION_RESPONSE, ENRP_HANDLE_TABLE_RESPONSE, ENRP_LIST_RESPONSE.
    pub const REJECT: u8 = 0x01;
    /// S (subscribe): ASAP_HANDLE_RESOLUTION.
    pub const SUBSCRIBE: u8 = 0x01;
    /// A (updates accepted): ASAP_HANDLE_RESOLUTION_RESPONSE.
    pub const ACCEPTED: u8 = 0x01;
    /// H (become home): ASAP_ENDPOINT_KEEP_ALIVE.
    pub const HOME: u8 = 0x01;
    /// R (reply required): ENRP_PRESENCE.
    pub const REPLY_REQUIRED: u8 = 0x01;
    /// W (own children only): ENRP_HANDLE_TABLE_REQUEST.
    pub const OWN_CHILDREN_ONLY: u8 = 0x01;
    /// M (more to send): ENRP_HANDLE_TABLE_RESPONSE.
    pub const MORE: u8 = 0x02;
    /// T (takeover suggested): ENRP_HANDLE_UPDATE.
    pub const TAKEOVER: u8 = 0x01;
}

/// One defined flag bit of a message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagDef {
    pub mask: u8,
    /// Letter used by the RFCs ("R", "S", "M" …).
    pub letter: &'static str,
    pub meaning: &'static str,
}

const fn flag_def(mask: u8, letter: &'static str, meaning: &'static str) -> FlagDef {
    FlagDef {
        mask,
        letter,
        meaning,
    }
}

const R_REJECT: &[FlagDef] = &[flag_def(flag::REJECT, "R", "reject")];
const S_SUBSCRIBE: &[FlagDef] = &[flag_def(flag::SUBSCRIBE, "S", "subscribe")];
const A_ACCEPTED: &[FlagDef] = &[flag_def(flag::ACCEPTED, "A", "updates accepted")];
const H_HOME: &[FlagDef] = &[flag_def(flag::HOME, "H", "become home")];
const R_REPLY: &[FlagDef] = &[flag_def(flag::REPLY_REQUIRED, "R", "reply required")];
const W_OWN: &[FlagDef] = &[flag_def(flag::OWN_CHILDREN_ONLY, "W", "own children only")];
const R_M: &[FlagDef] = &[
    flag_def(flag::REJECT, "R", "reject"),
    flag_def(flag::MORE, "M", "more to send"),
];
const T_TAKEOVER: &[FlagDef] = &[flag_def(flag::TAKEOVER, "T", "takeover suggested")];

/// The flag bits defined for a message type (wire-format.md §7, §8).
pub fn flag_defs(protocol: Protocol, ty: u8) -> &'static [FlagDef] {
    match (protocol, ty) {
        (Protocol::Asap, asap_type::REGISTRATION_RESPONSE) => R_REJECT,
        (Protocol::Asap, asap_type::HANDLE_RESOLUTION) => S_SUBSCRIBE,
        (Protocol::Asap, asap_type::HANDLE_RESOLUTION_RESPONSE) => A_ACCEPTED,
        (Protocol::Asap, asap_type::ENDPOINT_KEEP_ALIVE) => H_HOME,
        (Protocol::Enrp, enrp_type::PRESENCE) => R_REPLY,
        (Protocol::Enrp, enrp_type::HANDLE_TABLE_REQUEST) => W_OWN,
        (Protocol::Enrp, enrp_type::HANDLE_TABLE_RESPONSE) => R_M,
        (Protocol::Enrp, enrp_type::HANDLE_UPDATE) => T_TAKEOVER,
        (Protocol::Enrp, enrp_type::LIST_RESPONSE) => R_REJECT,
        _ => &[],
    }
}

/// An ASAP message. Flag bits are named fields; undefined flag bits are sent as 0 and
/// ignored on receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum AsapMessage {
    /// 0x01: PE → home registrar.
    Registration { handle: PoolHandle, pe: PoolElement },
    /// 0x02: PE → home registrar.
    Deregistration { handle: PoolHandle, pe_id: PeId },
    /// 0x03: flag R (reject); an error with `reject == false` is a warning.
    RegistrationResponse {
        reject: bool,
        handle: PoolHandle,
        pe_id: PeId,
        error: Option<OperationError>,
    },
    /// 0x04: an error means the de-registration was refused.
    DeregistrationResponse {
        handle: PoolHandle,
        pe_id: PeId,
        error: Option<OperationError>,
    },
    /// 0x05: flag S (subscribe); `items` from the Handle Resolution option (0x803f).
    HandleResolution {
        subscribe: bool,
        handle: PoolHandle,
        items: Option<u32>,
    },
    /// 0x06: flag A (updates accepted). Negative response: no PEs and an error.
    HandleResolutionResponse {
        accepted: bool,
        handle: PoolHandle,
        policy: Option<Policy>,
        pes: Vec<PoolElement>,
        error: Option<OperationError>,
    },
    /// 0x07: flag H (become home). `pe_id` is RSPLIB's optional trailing PE Identifier.
    EndpointKeepAlive {
        home: bool,
        server_id: ServerId,
        handle: PoolHandle,
        pe_id: Option<PeId>,
    },
    /// 0x08.
    EndpointKeepAliveAck { handle: PoolHandle, pe_id: PeId },
    /// 0x09.
    EndpointUnreachable { handle: PoolHandle, pe_id: PeId },
    /// 0x0a: only SCTP or TCP transports.
    ServerAnnounce {
        server_id: ServerId,
        transports: Vec<TransportAddr>,
    },
    /// 0x0b.
    Cookie { cookie: Vec<u8> },
    /// 0x0c.
    CookieEcho { cookie: Vec<u8> },
    /// 0x0d: `policy` is RSPLIB's extra Policy TLV after the handle (Discrepancy #6).
    BusinessCard {
        handle: PoolHandle,
        policy: Option<Policy>,
        pes: Vec<PoolElement>,
    },
    /// 0x0e.
    Error { error: OperationError },
}

impl AsapMessage {
    pub fn type_code(&self) -> u8 {
        use asap_type::*;
        match self {
            AsapMessage::Registration { .. } => REGISTRATION,
            AsapMessage::Deregistration { .. } => DEREGISTRATION,
            AsapMessage::RegistrationResponse { .. } => REGISTRATION_RESPONSE,
            AsapMessage::DeregistrationResponse { .. } => DEREGISTRATION_RESPONSE,
            AsapMessage::HandleResolution { .. } => HANDLE_RESOLUTION,
            AsapMessage::HandleResolutionResponse { .. } => HANDLE_RESOLUTION_RESPONSE,
            AsapMessage::EndpointKeepAlive { .. } => ENDPOINT_KEEP_ALIVE,
            AsapMessage::EndpointKeepAliveAck { .. } => ENDPOINT_KEEP_ALIVE_ACK,
            AsapMessage::EndpointUnreachable { .. } => ENDPOINT_UNREACHABLE,
            AsapMessage::ServerAnnounce { .. } => SERVER_ANNOUNCE,
            AsapMessage::Cookie { .. } => COOKIE,
            AsapMessage::CookieEcho { .. } => COOKIE_ECHO,
            AsapMessage::BusinessCard { .. } => BUSINESS_CARD,
            AsapMessage::Error { .. } => ERROR,
        }
    }
    pub fn name(&self) -> &'static str {
        asap_type_name(self.type_code()).unwrap_or("?")
    }
}

pub fn asap_type_name(t: u8) -> Option<&'static str> {
    use asap_type::*;
    Some(match t {
        REGISTRATION => "ASAP_REGISTRATION",
        DEREGISTRATION => "ASAP_DEREGISTRATION",
        REGISTRATION_RESPONSE => "ASAP_REGISTRATION_RESPONSE",
        DEREGISTRATION_RESPONSE => "ASAP_DEREGISTRATION_RESPONSE",
        HANDLE_RESOLUTION => "ASAP_HANDLE_RESOLUTION",
        HANDLE_RESOLUTION_RESPONSE => "ASAP_HANDLE_RESOLUTION_RESPONSE",
        ENDPOINT_KEEP_ALIVE => "ASAP_ENDPOINT_KEEP_ALIVE",
        ENDPOINT_KEEP_ALIVE_ACK => "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
        ENDPOINT_UNREACHABLE => "ASAP_ENDPOINT_UNREACHABLE",
        SERVER_ANNOUNCE => "ASAP_SERVER_ANNOUNCE",
        COOKIE => "ASAP_COOKIE",
        COOKIE_ECHO => "ASAP_COOKIE_ECHO",
        BUSINESS_CARD => "ASAP_BUSINESS_CARD",
        ERROR => "ASAP_ERROR",
        _ => return None,
    })
}

pub fn enrp_type_name(t: u8) -> Option<&'static str> {
    use enrp_type::*;
    Some(match t {
        PRESENCE => "ENRP_PRESENCE",
        HANDLE_TABLE_REQUEST => "ENRP_HANDLE_TABLE_REQUEST",
        HANDLE_TABLE_RESPONSE => "ENRP_HANDLE_TABLE_RESPONSE",
        HANDLE_UPDATE => "ENRP_HANDLE_UPDATE",
        LIST_REQUEST => "ENRP_LIST_REQUEST",
        LIST_RESPONSE => "ENRP_LIST_RESPONSE",
        INIT_TAKEOVER => "ENRP_INIT_TAKEOVER",
        INIT_TAKEOVER_ACK => "ENRP_INIT_TAKEOVER_ACK",
        TAKEOVER_SERVER => "ENRP_TAKEOVER_SERVER",
        ERROR => "ENRP_ERROR",
        _ => return None,
    })
}

/// ENRP Handle Update action.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct UpdateAction(pub u16);

impl UpdateAction {
    pub const ADD_PE: UpdateAction = UpdateAction(0);
    pub const DEL_PE: UpdateAction = UpdateAction(1);
}

impl fmt::Debug for UpdateAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ADD_PE => f.write_str("ADD_PE"),
            Self::DEL_PE => f.write_str("DEL_PE"),
            UpdateAction(v) => write!(f, "UpdateAction({v})"),
        }
    }
}

/// One pool of an ENRP Handle Table Response: a handle and its PEs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PoolEntry {
    pub handle: PoolHandle,
    pub pes: Vec<PoolElement>,
}

/// An ENRP message. Every message carries the sending and receiving server IDs
/// (receiver 0 for group-casts).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum EnrpMessage {
    /// 0x01: flag R (reply required).
    Presence {
        reply_required: bool,
        sender: ServerId,
        receiver: ServerId,
        checksum: Option<u16>,
        server_info: Option<ServerInfo>,
    },
    /// 0x02: flag W (own children only).
    HandleTableRequest {
        own_children_only: bool,
        sender: ServerId,
        receiver: ServerId,
    },
    /// 0x03: flags R (reject), M (more to send).
    HandleTableResponse {
        reject: bool,
        more: bool,
        sender: ServerId,
        receiver: ServerId,
        pools: Vec<PoolEntry>,
    },
    /// 0x04: flag T (takeover suggested, draft-dreibholz-rserpool-enrp-takeover).
    HandleUpdate {
        takeover: bool,
        sender: ServerId,
        receiver: ServerId,
        action: UpdateAction,
        handle: PoolHandle,
        pe: PoolElement,
    },
    /// 0x05.
    ListRequest {
        sender: ServerId,
        receiver: ServerId,
    },
    /// 0x06: flag R (reject).
    ListResponse {
        reject: bool,
        sender: ServerId,
        receiver: ServerId,
        servers: Vec<ServerInfo>,
    },
    /// 0x07.
    InitTakeover {
        sender: ServerId,
        receiver: ServerId,
        target: ServerId,
    },
    /// 0x08.
    InitTakeoverAck {
        sender: ServerId,
        receiver: ServerId,
        target: ServerId,
    },
    /// 0x09.
    TakeoverServer {
        sender: ServerId,
        receiver: ServerId,
        target: ServerId,
    },
    /// 0x0a.
    Error {
        sender: ServerId,
        receiver: ServerId,
        error: OperationError,
    },
}

impl EnrpMessage {
    pub fn type_code(&self) -> u8 {
        use enrp_type::*;
        match self {
            EnrpMessage::Presence { .. } => PRESENCE,
            EnrpMessage::HandleTableRequest { .. } => HANDLE_TABLE_REQUEST,
            EnrpMessage::HandleTableResponse { .. } => HANDLE_TABLE_RESPONSE,
            EnrpMessage::HandleUpdate { .. } => HANDLE_UPDATE,
            EnrpMessage::ListRequest { .. } => LIST_REQUEST,
            EnrpMessage::ListResponse { .. } => LIST_RESPONSE,
            EnrpMessage::InitTakeover { .. } => INIT_TAKEOVER,
            EnrpMessage::InitTakeoverAck { .. } => INIT_TAKEOVER_ACK,
            EnrpMessage::TakeoverServer { .. } => TAKEOVER_SERVER,
            EnrpMessage::Error { .. } => ERROR,
        }
    }
    pub fn name(&self) -> &'static str {
        enrp_type_name(self.type_code()).unwrap_or("?")
    }
    /// (sender, receiver) server IDs.
    pub fn servers(&self) -> (ServerId, ServerId) {
        use EnrpMessage::*;
        match *self {
            Presence {
                sender, receiver, ..
            }
            | HandleTableRequest {
                sender, receiver, ..
            }
            | HandleTableResponse {
                sender, receiver, ..
            }
            | HandleUpdate {
                sender, receiver, ..
            }
            | ListRequest { sender, receiver }
            | ListResponse {
                sender, receiver, ..
            }
            | InitTakeover {
                sender, receiver, ..
            }
            | InitTakeoverAck {
                sender, receiver, ..
            }
            | TakeoverServer {
                sender, receiver, ..
            }
            | Error {
                sender, receiver, ..
            } => (sender, receiver),
        }
    }
}

/// A message of either protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum Message {
    Asap(AsapMessage),
    Enrp(EnrpMessage),
}

impl Message {
    pub fn protocol(&self) -> Protocol {
        match self {
            Message::Asap(_) => Protocol::Asap,
            Message::Enrp(_) => Protocol::Enrp,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Message::Asap(m) => m.name(),
            Message::Enrp(m) => m.name(),
        }
    }
}

impl From<AsapMessage> for Message {
    fn from(m: AsapMessage) -> Self {
        Message::Asap(m)
    }
}
impl From<EnrpMessage> for Message {
    fn from(m: EnrpMessage) -> Self {
        Message::Enrp(m)
    }
}
