//! Typed values carried by ASAP and ENRP messages.
//!
//! Code points are open newtypes with named constants: an unknown value is data,
//! not an error, wherever the RFCs allow it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

pub use crate::policy::{Policy, PolicyType, PolicyValues};

/// A pool handle: an opaque byte string (RFC 5354 §3.9), not text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PoolHandle(pub Vec<u8>);

impl PoolHandle {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The handle as text when it is printable UTF-8, else `None`.
    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.0)
            .ok()
            .filter(|s| s.chars().all(|c| !c.is_control()))
    }
}

impl From<&str> for PoolHandle {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for PoolHandle {
    fn from(s: &[u8]) -> Self {
        Self(s.to_vec())
    }
}

impl fmt::Display for PoolHandle {
    /// Printable handles are shown as text, others as `0x` hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(s) => f.write_str(s),
            None => {
                f.write_str("0x")?;
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolHandle({self})")
    }
}

/// Pool element identifier (32 bits; 0 is never allocated, Discrepancy #26).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PeId(pub u32);

impl fmt::Display for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}
impl fmt::Debug for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeId({:#010x})", self.0)
    }
}

/// Registrar (ENRP server) identifier. 0 = "not yet determined".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ServerId(pub u32);

impl ServerId {
    pub const UNDETERMINED: ServerId = ServerId(0);
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}
impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerId({:#010x})", self.0)
    }
}

/// Unit of the Registration Life field (design §8, Discrepancy #1).
///
/// RSPLIB and Wireshark read the field as milliseconds; RFC 5354 says seconds with
/// −1 meaning infinite. The wire value is kept raw in [`PoolElement::registration_life`];
/// this switch converts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum LifetimeUnit {
    #[default]
    Milliseconds,
    Seconds,
}

impl LifetimeUnit {
    /// Wire value → duration; `None` means infinite (RFC −1 in seconds mode).
    pub fn to_duration(self, raw: u32) -> Option<Duration> {
        match self {
            LifetimeUnit::Milliseconds => Some(Duration::from_millis(u64::from(raw))),
            LifetimeUnit::Seconds if raw == u32::MAX => None,
            LifetimeUnit::Seconds => Some(Duration::from_secs(u64::from(raw))),
        }
    }
    /// Duration → wire value (`None` = infinite). Saturates; seconds round up.
    pub fn from_duration(self, d: Option<Duration>) -> u32 {
        match (self, d) {
            (LifetimeUnit::Milliseconds, None) => u32::MAX,
            (LifetimeUnit::Seconds, None) => u32::MAX,
            (LifetimeUnit::Milliseconds, Some(d)) => {
                u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
            }
            (LifetimeUnit::Seconds, Some(d)) => {
                let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                u32::try_from(s).unwrap_or(u32::MAX - 1).min(u32::MAX - 1)
            }
        }
    }
}

/// Transport Use field of an SCTP (and, per RSPLIB, TCP) transport parameter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TransportUse(pub u16);

impl TransportUse {
    pub const DATA_ONLY: TransportUse = TransportUse(0);
    pub const DATA_PLUS_CONTROL: TransportUse = TransportUse(1);
}

impl fmt::Debug for TransportUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DATA_ONLY => f.write_str("DataOnly"),
            Self::DATA_PLUS_CONTROL => f.write_str("DataPlusControl"),
            TransportUse(v) => write!(f, "TransportUse({v})"),
        }
    }
}

/// Which transport a transport parameter describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TransportKind {
    /// 0x0004: several addresses allowed, Transport Use field.
    Sctp,
    /// 0x0005: one address; bytes 6–7 reserved by RFC, Transport Use for RSPLIB.
    Tcp,
    /// 0x0006: one address; bytes 6–7 reserved.
    Udp,
    /// 0x0007: one address; bytes 6–7 reserved.
    UdpLite,
    /// 0x0003: one address, with a 32-bit service code.
    Dccp { service_code: u32 },
}

impl TransportKind {
    pub fn param_type(self) -> ParamType {
        match self {
            TransportKind::Sctp => ParamType::SCTP_TRANSPORT,
            TransportKind::Tcp => ParamType::TCP_TRANSPORT,
            TransportKind::Udp => ParamType::UDP_TRANSPORT,
            TransportKind::UdpLite => ParamType::UDP_LITE_TRANSPORT,
            TransportKind::Dccp { .. } => ParamType::DCCP_TRANSPORT,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Sctp => "sctp",
            TransportKind::Tcp => "tcp",
            TransportKind::Udp => "udp",
            TransportKind::UdpLite => "udp-lite",
            TransportKind::Dccp { .. } => "dccp",
        }
    }
}

/// A transport parameter: port, addresses and the per-kind extra field.
///
/// For SCTP `use_field` is the Transport Use; for TCP it is the reserved word RSPLIB reads
/// as Transport Use (Discrepancy #2); for UDP, UDP-Lite and DCCP it is the reserved word,
/// kept so re-encoding is exact. Non-SCTP kinds carry exactly one address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct TransportAddr {
    pub kind: TransportKind,
    pub port: u16,
    pub use_field: TransportUse,
    pub addrs: Vec<IpAddr>,
}

impl TransportAddr {
    pub fn sctp(port: u16, transport_use: TransportUse, addrs: Vec<IpAddr>) -> Self {
        Self {
            kind: TransportKind::Sctp,
            port,
            use_field: transport_use,
            addrs,
        }
    }
    pub fn tcp(port: u16, addr: IpAddr) -> Self {
        Self {
            kind: TransportKind::Tcp,
            port,
            use_field: TransportUse::DATA_ONLY,
            addrs: vec![addr],
        }
    }
    pub fn udp(port: u16, addr: IpAddr) -> Self {
        Self {
            kind: TransportKind::Udp,
            port,
            use_field: TransportUse::DATA_ONLY,
            addrs: vec![addr],
        }
    }
}

/// The user transport of a pool element: one IP-based transport or opaque data (0x0010).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum UserTransport {
    Ip(TransportAddr),
    Opaque(Vec<u8>),
}

impl UserTransport {
    pub fn as_ip(&self) -> Option<&TransportAddr> {
        match self {
            UserTransport::Ip(t) => Some(t),
            UserTransport::Opaque(_) => None,
        }
    }
}

/// A pool element parameter (RFC 5354 §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PoolElement {
    pub id: PeId,
    pub home_registrar: ServerId,
    /// Raw Registration Life; convert with [`LifetimeUnit`].
    pub registration_life: u32,
    pub user_transport: UserTransport,
    pub policy: Policy,
    /// The PE's ASAP (control) endpoint as seen by its home registrar; absent in
    /// registrations, present in ENRP updates and handle tables.
    pub asap_transport: Option<TransportAddr>,
}

/// Server Information parameter (0x000b): a registrar's ID and ENRP SCTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ServerInfo {
    pub server_id: ServerId,
    pub transport: TransportAddr,
}

/// Error cause code (RFC 5354 §3.11.1); RSPLIB's internal codes are kept as values.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CauseCode(pub u16);

impl CauseCode {
    pub const UNSPECIFIED: Self = Self(0x0000);
    pub const UNRECOGNIZED_PARAMETER: Self = Self(0x0001);
    pub const UNRECOGNIZED_MESSAGE: Self = Self(0x0002);
    pub const INVALID_VALUES: Self = Self(0x0003);
    pub const NON_UNIQUE_PE_ID: Self = Self(0x0004);
    pub const INCONSISTENT_POLICY: Self = Self(0x0005);
    pub const LACK_OF_RESOURCES: Self = Self(0x0006);
    pub const INCONSISTENT_TRANSPORT: Self = Self(0x0007);
    pub const INCONSISTENT_DATA_CONTROL: Self = Self(0x0008);
    pub const UNKNOWN_POOL_HANDLE: Self = Self(0x0009);
    pub const REJECTED_SECURITY: Self = Self(0x000a);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "Unspecified Error",
            0x1 => "Unrecognized Parameter",
            0x2 => "Unrecognized Message",
            0x3 => "Invalid Values",
            0x4 => "Non-unique PE Identifier",
            0x5 => "Inconsistent Pooling Policy",
            0x6 => "Lack of Resources",
            0x7 => "Inconsistent Transport Type",
            0x8 => "Inconsistent Data/Control Configuration",
            0x9 => "Unknown Pool Handle",
            0xa => "Rejected due to security considerations",
            0x10 => "RSPLIB: invalid message",
            0x11 => "RSPLIB: invalid value",
            0x100a => "RSPLIB: wrong protocol",
            0xf003 => "RSPLIB: invalid pool policy",
            0xf004 => "RSPLIB: invalid pool handle",
            0xf005 => "RSPLIB: invalid addresses",
            0xf006 => "RSPLIB: invalid registrator",
            0xf007 => "RSPLIB: no usable ASAP addresses",
            0xf008 => "RSPLIB: no usable user addresses",
            _ => return None,
        })
    }
}

impl CauseCode {
    /// The cause in running text: the RFC 5354 name in lower case ("unknown pool handle"),
    /// RSPLIB's private codes as RSPLIB names them; `None` for a code nobody defined.
    pub fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "unspecified error",
            0x1 => "unrecognized parameter",
            0x2 => "unrecognized message",
            0x3 => "invalid values",
            0x4 => "non-unique PE identifier",
            0x5 => "inconsistent pooling policy",
            0x6 => "lack of resources",
            0x7 => "inconsistent transport type",
            0x8 => "inconsistent data/control configuration",
            0x9 => "unknown pool handle",
            0xa => "rejected due to security considerations",
            _ => return self.name(),
        })
    }
}

impl fmt::Display for CauseCode {
    /// `unknown pool handle (0x9)`; an undefined code as `unknown cause 0x1234`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(n) => write!(f, "{n} ({:#x})", self.0),
            None => write!(f, "unknown cause {:#x}", self.0),
        }
    }
}
impl fmt::Debug for CauseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CauseCode({:#06x})", self.0)
    }
}

/// One error cause: code plus cause-specific information bytes (an offending TLV,
/// a message, a policy TLV …), kept verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Cause {
    pub code: CauseCode,
    pub info: Vec<u8>,
}

impl Cause {
    pub fn new(code: CauseCode) -> Self {
        Self {
            code,
            info: Vec::new(),
        }
    }
    pub fn with_info(code: CauseCode, info: Vec<u8>) -> Self {
        Self { code, info }
    }
}

/// Largest cause information a report carries: with it as the only cause, an ENRP_ERROR
/// (20 bytes of headers) or ASAP_ERROR (12) still fits the 16-bit Message Length.
/// Longer offending messages or TLVs are reported truncated to this size.
pub const MAX_REPORTED_INFO: usize = 65535 - 20;

/// Operation Error parameter (0x000c): one or more causes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OperationError {
    pub causes: Vec<Cause>,
}

impl OperationError {
    pub fn single(cause: Cause) -> Self {
        Self {
            causes: vec![cause],
        }
    }
    pub fn code(code: CauseCode) -> Self {
        Self::single(Cause::new(code))
    }
    /// First cause code, if any.
    pub fn first_code(&self) -> Option<CauseCode> {
        self.causes.first().map(|c| c.code)
    }
}

impl fmt::Display for OperationError {
    /// Each cause in words, separated by `; ` (`unknown pool handle (0x9)`); an Operation
    /// Error without causes reads `no cause given`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.causes.is_empty() {
            return f.write_str("no cause given");
        }
        for (i, c) in self.causes.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Parameter type code (16 bits; the top two bits are the unknown-parameter action).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ParamType(pub u16);

impl ParamType {
    pub const IPV4_ADDRESS: Self = Self(0x0001);
    pub const IPV6_ADDRESS: Self = Self(0x0002);
    pub const DCCP_TRANSPORT: Self = Self(0x0003);
    pub const SCTP_TRANSPORT: Self = Self(0x0004);
    pub const TCP_TRANSPORT: Self = Self(0x0005);
    pub const UDP_TRANSPORT: Self = Self(0x0006);
    pub const UDP_LITE_TRANSPORT: Self = Self(0x0007);
    pub const POLICY: Self = Self(0x0008);
    pub const POOL_HANDLE: Self = Self(0x0009);
    pub const POOL_ELEMENT: Self = Self(0x000a);
    pub const SERVER_INFORMATION: Self = Self(0x000b);
    pub const OPERATION_ERROR: Self = Self(0x000c);
    pub const COOKIE: Self = Self(0x000d);
    pub const PE_IDENTIFIER: Self = Self(0x000e);
    pub const PE_CHECKSUM: Self = Self(0x000f);
    pub const OPAQUE_TRANSPORT: Self = Self(0x0010);
    pub const HANDLE_RESOLUTION_OPTION: Self = Self(0x803f);

    pub fn name(self) -> &'static str {
        match self.0 {
            0x0001 => "IPv4 Address",
            0x0002 => "IPv6 Address",
            0x0003 => "DCCP Transport",
            0x0004 => "SCTP Transport",
            0x0005 => "TCP Transport",
            0x0006 => "UDP Transport",
            0x0007 => "UDP-Lite Transport",
            0x0008 => "Pool Member Selection Policy",
            0x0009 => "Pool Handle",
            0x000a => "Pool Element",
            0x000b => "Server Information",
            0x000c => "Operation Error",
            0x000d => "Cookie",
            0x000e => "PE Identifier",
            0x000f => "PE Checksum",
            0x0010 => "Opaque Transport",
            0x803f => "Handle Resolution Option",
            _ => "Unknown Parameter",
        }
    }

    /// What to do with this type when it is not recognised (RFC 5354 §2, top two bits).
    pub fn unknown_action(self) -> UnknownAction {
        match self.0 >> 14 {
            0b00 => UnknownAction::Stop,
            0b01 => UnknownAction::StopAndReport,
            0b10 => UnknownAction::Skip,
            _ => UnknownAction::SkipAndReport,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.0)
    }
}
impl fmt::Debug for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParamType({:#06x})", self.0)
    }
}

/// Action for an unrecognised parameter type (its two most significant bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownAction {
    /// `00`: discard the whole message silently.
    Stop,
    /// `01`: discard the message, report with cause 0x1.
    StopAndReport,
    /// `10`: skip the parameter silently.
    Skip,
    /// `11`: skip the parameter, report with cause 0x1.
    SkipAndReport,
}

impl UnknownAction {
    pub fn reports(self) -> bool {
        matches!(
            self,
            UnknownAction::StopAndReport | UnknownAction::SkipAndReport
        )
    }
    pub fn stops(self) -> bool {
        matches!(self, UnknownAction::Stop | UnknownAction::StopAndReport)
    }
}

/// A parameter the decoder skipped (action bits `10`/`11`), kept as data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct UnknownParam {
    pub ty: ParamType,
    pub value: Vec<u8>,
    /// Offset of the TLV from the start of the message.
    pub offset: usize,
}

impl UnknownParam {
    /// Must this parameter be reported in an ASAP/ENRP Error (action `11`)?
    pub fn must_report(&self) -> bool {
        self.ty.unknown_action().reports()
    }
    /// The complete TLV bytes (header, value, padding), as cause 0x1 carries it.
    pub fn tlv_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.value.len() + 3);
        let len = u16::try_from(4 + self.value.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&self.ty.0.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }
    /// Cause 0x1 (Unrecognized Parameter) for this TLV (truncated to
    /// [`MAX_REPORTED_INFO`] so the report fits in an Error message).
    pub fn to_cause(&self) -> Cause {
        let mut tlv = self.tlv_bytes();
        tlv.truncate(MAX_REPORTED_INFO);
        Cause::with_info(CauseCode::UNRECOGNIZED_PARAMETER, tlv)
    }
}
