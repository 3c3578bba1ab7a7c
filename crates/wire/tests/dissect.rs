//! Independent decoder check: our encodings, decoded by Wireshark's own ASAP/ENRP
//! dissectors through `shared/tools/rserpool-dissect` (tshark + an RFC lint).
//!
//! Every ASAP and ENRP message type is encoded, all messages of a protocol go to the tool
//! in one `--hex-lines` batch, and for each message the test asserts the verdict and that
//! every field Wireshark decoded (pool handle, PE identifier, home server, registration
//! life, policy type and values, addresses, ports, transport use, flags, server IDs,
//! cause codes, cookie, HR items, checksum, update action …) equals what was encoded, both
//! as raw bytes at the position Wireshark read them and as Wireshark's displayed value.
//!
//! The tool (and tshark) must be present: a missing tool fails the test, it never skips.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use rserpool_wire::*;
use serde_json::Value;
use std::net::IpAddr;
use std::process::Command;

const TOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/tools/rserpool-dissect"
);

// ----------------------------------------------------------------------------------------
// Expected fields, derived from the message value (not from our encoder's bytes)

#[derive(Debug)]
enum Show {
    /// Don't check the displayed value (raw bytes are still compared).
    Any,
    Text(String),
    /// FT_DOUBLE: value / 0xFFFFFFFF × factor (100 for loads, 1 for DPFs).
    Ratio(u32, f64),
}

#[derive(Debug)]
struct Exp {
    name: String,
    raw: String,
    show: Show,
}

struct Fields {
    proto: &'static str,
    v: Vec<Exp>,
}

/// Field names (after the `asap.` / `enrp.` prefix) the walker below produces; the tool's
/// output restricted to these names must equal the walker's list exactly, in order.
const TRACKED: &[&str] = &[
    "pool_handle_pool_handle",
    "pool_element_pe_identifier",
    "pool_element_home_enrp_server_identifier",
    "pool_element_registration_life",
    "pe_identifier",
    "sctp_transport_port",
    "tcp_transport_port",
    "udp_transport_port",
    "udp_lite_transport_port",
    "dccp_transport_port",
    "transport_use",
    "udp_transport_reserved",
    "udp_lite_transport_reserved",
    "dccp_transport_reserved",
    "dccp_transport_service_code",
    "ipv4_address",
    "ipv6_address",
    "pool_member_selection_policy_type",
    "pool_member_selection_policy_weight",
    "pool_member_selection_policy_priority",
    "pool_member_selection_policy_load",
    "pool_member_selection_policy_degradation",
    "pool_member_selection_policy_load_dpf",
    "pool_member_selection_policy_weight_dpf",
    "pool_member_selection_policy_distance",
    "pool_member_selection_policy_value",
    "cause_code",
    "cause_length",
    "cause_info",
    "cookie",
    "hropt_items",
    "server_identifier",
    "pe_checksum",
    "server_information_server_identifier",
    "sender_servers_id",
    "receiver_servers_id",
    "target_servers_id",
    "update_action",
];

impl Fields {
    fn new(proto: &'static str) -> Self {
        Self { proto, v: vec![] }
    }
    fn push(&mut self, name: &str, raw: String, show: Show) {
        assert!(TRACKED.contains(&name), "untracked field {name}");
        self.v.push(Exp {
            name: format!("{}.{name}", self.proto),
            raw,
            show,
        });
    }
    fn bytes(&mut self, name: &str, b: &[u8]) {
        self.push(name, hex::encode(b), Show::Any);
    }
    fn id32(&mut self, name: &str, x: u32) {
        self.push(name, format!("{x:08x}"), Show::Text(format!("{x:#010x}")));
    }
    fn dec32(&mut self, name: &str, x: u32) {
        self.push(name, format!("{x:08x}"), Show::Text(x.to_string()));
    }
    fn dec16(&mut self, name: &str, x: u16) {
        self.push(name, format!("{x:04x}"), Show::Text(x.to_string()));
    }
    fn ratio(&mut self, name: &str, x: u32, factor: f64) {
        self.push(name, format!("{x:08x}"), Show::Ratio(x, factor));
    }

    fn addr(&mut self, a: &IpAddr) {
        match a {
            IpAddr::V4(v4) => self.push(
                "ipv4_address",
                hex::encode(v4.octets()),
                Show::Text(v4.to_string()),
            ),
            IpAddr::V6(v6) => self.push(
                "ipv6_address",
                hex::encode(v6.octets()),
                Show::Text(v6.to_string()),
            ),
        }
    }

    fn transport(&mut self, t: &TransportAddr) {
        let (port, second) = match t.kind {
            TransportKind::Sctp => ("sctp_transport_port", "transport_use"),
            // Wireshark reads TCP bytes 6–7 as Transport Use (Discrepancy #2).
            TransportKind::Tcp => ("tcp_transport_port", "transport_use"),
            TransportKind::Udp => ("udp_transport_port", "udp_transport_reserved"),
            TransportKind::UdpLite => ("udp_lite_transport_port", "udp_lite_transport_reserved"),
            TransportKind::Dccp { .. } => ("dccp_transport_port", "dccp_transport_reserved"),
        };
        self.dec16(port, t.port);
        self.dec16(second, t.use_field.0);
        if let TransportKind::Dccp { service_code } = t.kind {
            self.dec32("dccp_transport_service_code", service_code);
        }
        for a in &t.addrs {
            self.addr(a);
        }
    }

    fn policy(&mut self, p: &Policy) {
        let ty = p.policy_type();
        self.id32("pool_member_selection_policy_type", ty.0);
        let v = p.values();
        let v = v.as_slice();
        const PCT: f64 = 100.0;
        match ty {
            PolicyType::ROUND_ROBIN | PolicyType::RANDOM => {}
            PolicyType::WEIGHTED_ROUND_ROBIN | PolicyType::WEIGHTED_RANDOM => {
                self.dec32("pool_member_selection_policy_weight", v[0])
            }
            PolicyType::PRIORITY => self.dec32("pool_member_selection_policy_priority", v[0]),
            PolicyType::LEAST_USED | PolicyType::RANDOMIZED_LEAST_USED => {
                self.ratio("pool_member_selection_policy_load", v[0], PCT)
            }
            PolicyType::LEAST_USED_DEGRADATION | PolicyType::PRIORITY_LEAST_USED => {
                self.ratio("pool_member_selection_policy_load", v[0], PCT);
                self.ratio("pool_member_selection_policy_degradation", v[1], PCT);
            }
            PolicyType::WEIGHTED_RANDOM_DPF => {
                self.dec32("pool_member_selection_policy_weight", v[0]);
                self.ratio("pool_member_selection_policy_weight_dpf", v[1], 1.0);
                self.dec32("pool_member_selection_policy_distance", v[2]);
            }
            PolicyType::LEAST_USED_DPF => {
                self.ratio("pool_member_selection_policy_load", v[0], PCT);
                self.ratio("pool_member_selection_policy_load_dpf", v[1], 1.0);
                self.dec32("pool_member_selection_policy_distance", v[2]);
            }
            // Types Wireshark does not decode (PLUD 0xB0001003 is named but not decoded;
            // other RSPLIB private and unknown types): the value bytes after the type word.
            _ => {
                let bytes: Vec<u8> = match p {
                    Policy::Unknown { data, .. } => data.clone(),
                    _ => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
                };
                assert!(!bytes.is_empty(), "use a non-empty unknown policy");
                self.bytes("pool_member_selection_policy_value", &bytes);
            }
        }
    }

    fn handle(&mut self, h: &PoolHandle) {
        self.bytes("pool_handle_pool_handle", h.as_bytes());
    }

    fn pe(&mut self, pe: &PoolElement) {
        self.id32("pool_element_pe_identifier", pe.id.0);
        self.id32(
            "pool_element_home_enrp_server_identifier",
            pe.home_registrar.0,
        );
        // FT_INT32, displayed signed.
        self.push(
            "pool_element_registration_life",
            format!("{:08x}", pe.registration_life),
            Show::Text((pe.registration_life as i32).to_string()),
        );
        match &pe.user_transport {
            UserTransport::Ip(t) => self.transport(t),
            UserTransport::Opaque(_) => panic!("Wireshark does not decode opaque transports"),
        }
        self.policy(&pe.policy);
        if let Some(t) = &pe.asap_transport {
            self.transport(t);
        }
    }

    fn error(&mut self, e: &OperationError) {
        for c in &e.causes {
            self.id16("cause_code", c.code.0);
            self.dec16("cause_length", u16::try_from(4 + c.info.len()).unwrap());
            match c.code.0 {
                // Info is a TLV: Wireshark dissects it as a parameter.
                0x1 | 0x3 | 0x5 | 0x7 => {
                    let ty = u16::from_be_bytes([c.info[0], c.info[1]]);
                    let len = usize::from(u16::from_be_bytes([c.info[2], c.info[3]]));
                    match ty {
                        0x0008 => self.policy(&codec::decode_policy_tlv(&c.info).unwrap()),
                        0x0009 => self.bytes("pool_handle_pool_handle", &c.info[4..len]),
                        0x000e => self.id32(
                            "pe_identifier",
                            u32::from_be_bytes(c.info[4..8].try_into().unwrap()),
                        ),
                        t => assert!(t & 0x3fff > 0x10, "unsupported cause TLV {t:#x}"),
                    }
                }
                // Info is a message: nothing tracked inside (use an unknown type).
                0x2 => assert!(c.info[0] > 0x0e),
                _ if c.info.is_empty() => {}
                _ => self.bytes("cause_info", &c.info),
            }
        }
    }

    fn id16(&mut self, name: &str, x: u16) {
        self.push(name, format!("{x:04x}"), Show::Text(format!("{x:#06x}")));
    }

    fn asap(m: &AsapMessage) -> Self {
        use AsapMessage as A;
        let mut f = Fields::new("asap");
        match m {
            A::Registration { handle, pe } => {
                f.handle(handle);
                f.pe(pe);
            }
            A::Deregistration { handle, pe_id }
            | A::EndpointKeepAliveAck { handle, pe_id }
            | A::EndpointUnreachable { handle, pe_id } => {
                f.handle(handle);
                f.id32("pe_identifier", pe_id.0);
            }
            A::RegistrationResponse {
                handle,
                pe_id,
                error,
                ..
            }
            | A::DeregistrationResponse {
                handle,
                pe_id,
                error,
            } => {
                f.handle(handle);
                f.id32("pe_identifier", pe_id.0);
                if let Some(e) = error {
                    f.error(e);
                }
            }
            A::HandleResolution { handle, items, .. } => {
                f.handle(handle);
                if let Some(n) = items {
                    f.dec32("hropt_items", *n);
                }
            }
            A::HandleResolutionResponse {
                handle,
                policy,
                pes,
                error,
                ..
            } => {
                f.handle(handle);
                if let Some(p) = policy {
                    f.policy(p);
                }
                for pe in pes {
                    f.pe(pe);
                }
                if let Some(e) = error {
                    f.error(e);
                }
            }
            A::EndpointKeepAlive {
                server_id,
                handle,
                pe_id,
                ..
            } => {
                f.id32("server_identifier", server_id.0);
                f.handle(handle);
                if let Some(id) = pe_id {
                    f.id32("pe_identifier", id.0);
                }
            }
            A::ServerAnnounce {
                server_id,
                transports,
            } => {
                f.id32("server_identifier", server_id.0);
                for t in transports {
                    f.transport(t);
                }
            }
            A::Cookie { cookie } | A::CookieEcho { cookie } => f.bytes("cookie", cookie),
            A::BusinessCard {
                handle,
                policy,
                pes,
            } => {
                f.handle(handle);
                if let Some(p) = policy {
                    f.policy(p);
                }
                for pe in pes {
                    f.pe(pe);
                }
            }
            A::Error { error } => f.error(error),
        }
        f
    }

    fn enrp(m: &EnrpMessage) -> Self {
        use EnrpMessage as E;
        let mut f = Fields::new("enrp");
        let (s, r) = m.servers();
        f.id32("sender_servers_id", s.0);
        f.id32("receiver_servers_id", r.0);
        match m {
            E::Presence {
                checksum,
                server_info,
                ..
            } => {
                if let Some(c) = checksum {
                    f.id16("pe_checksum", *c);
                }
                if let Some(si) = server_info {
                    f.id32("server_information_server_identifier", si.server_id.0);
                    f.transport(&si.transport);
                }
            }
            E::HandleTableRequest { .. } | E::ListRequest { .. } => {}
            E::HandleTableResponse { pools, .. } => {
                for p in pools {
                    f.handle(&p.handle);
                    for pe in &p.pes {
                        f.pe(pe);
                    }
                }
            }
            E::HandleUpdate {
                action, handle, pe, ..
            } => {
                f.dec16("update_action", action.0);
                f.handle(handle);
                f.pe(pe);
            }
            E::ListResponse { servers, .. } => {
                for si in servers {
                    f.id32("server_information_server_identifier", si.server_id.0);
                    f.transport(&si.transport);
                }
            }
            E::InitTakeover { target, .. }
            | E::InitTakeoverAck { target, .. }
            | E::TakeoverServer { target, .. } => f.id32("target_servers_id", target.0),
            E::Error { error, .. } => f.error(error),
        }
        f
    }
}

/// Flag bits Wireshark decodes for this message, with their expected values.
fn asap_bits(m: &AsapMessage) -> Vec<(&'static str, bool)> {
    match m {
        AsapMessage::RegistrationResponse { reject, .. } => vec![("asap.r_bit", *reject)],
        AsapMessage::EndpointKeepAlive { home, .. } => vec![("asap.h_bit", *home)],
        _ => vec![],
    }
}

fn enrp_bits(m: &EnrpMessage) -> Vec<(&'static str, bool)> {
    match m {
        EnrpMessage::Presence { reply_required, .. } => vec![("enrp.r_bit", *reply_required)],
        EnrpMessage::HandleTableRequest {
            own_children_only, ..
        } => vec![("enrp.w_bit", *own_children_only)],
        EnrpMessage::HandleTableResponse { reject, more, .. } => {
            vec![("enrp.m_bit", *more), ("enrp.r_bit", *reject)]
        }
        EnrpMessage::HandleUpdate { takeover, .. } => vec![("enrp.t_bit", *takeover)],
        EnrpMessage::ListResponse { reject, .. } => vec![("enrp.r_bit", *reject)],
        _ => vec![],
    }
}

// ----------------------------------------------------------------------------------------
// Sample messages

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sctp(port: u16, addrs: &[&str]) -> TransportAddr {
    TransportAddr::sctp(
        port,
        TransportUse::DATA_PLUS_CONTROL,
        addrs.iter().map(|a| ip(a)).collect(),
    )
}

fn one(kind: TransportKind, port: u16, a: &str) -> UserTransport {
    UserTransport::Ip(TransportAddr {
        kind,
        port,
        use_field: TransportUse::DATA_ONLY,
        addrs: vec![ip(a)],
    })
}

fn pe(id: u32, ut: UserTransport, policy: Policy, asap: bool) -> PoolElement {
    // A PE registered over TCP carries a TCP transport TLV as its ASAP transport.
    let over_tcp = matches!(&ut, UserTransport::Ip(t) if t.kind == TransportKind::Tcp);
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(if asap { 0x5EED_0001 } else { 0 }),
        registration_life: if id.is_multiple_of(2) {
            30_000
        } else {
            u32::MAX
        },
        user_transport: ut,
        policy,
        asap_transport: asap.then(|| {
            if over_tcp {
                TransportAddr::tcp(40123, ip("2001:db8::c9"))
            } else {
                sctp(3863, &["192.0.2.200", "2001:db8::c8"])
            }
        }),
    }
}

fn pes(asap: bool) -> Vec<PoolElement> {
    vec![
        pe(
            0x1000_0001,
            UserTransport::Ip(sctp(7, &["192.0.2.1", "2001:db8::1", "10.1.2.3"])),
            Policy::WeightedRandomDpf {
                weight: 17,
                weight_dpf: 0x0001_0000,
                distance: 150,
            },
            asap,
        ),
        pe(
            0x1000_0002,
            one(TransportKind::Tcp, 80, "2001:db8::2"),
            Policy::LeastUsedDpf {
                load: 0x4000_0000,
                load_dpf: 0x0000_1000,
                distance: 50,
            },
            asap,
        ),
        pe(
            0x1000_0003,
            one(TransportKind::Udp, 53, "198.51.100.3"),
            Policy::PriorityLeastUsedDegradation {
                load: 0x8000_0000,
                degradation: 0x0100_0000,
            },
            asap,
        ),
        pe(
            0x1000_0004,
            one(TransportKind::UdpLite, 5004, "2001:db8:4::4"),
            Policy::LeastUsedDegradation {
                load: 0xFFFF_FFFF,
                degradation: 1,
            },
            asap,
        ),
        pe(
            0x1000_0005,
            one(
                TransportKind::Dccp {
                    service_code: 0x0102_0304,
                },
                5001,
                "203.0.113.5",
            ),
            Policy::PriorityLeastUsed {
                load: 0x2000_0000,
                degradation: 0x0800_0000,
            },
            asap,
        ),
        pe(
            0x1000_0006,
            one(TransportKind::Udp, 9, "::ffff:192.0.2.6"),
            // RSPLIB private, unknown to Wireshark: shown as raw policy value.
            Policy::LeastUsedDegradationDpf {
                load: 1,
                degradation: 2,
                load_dpf: 3,
                distance: 4,
            },
            asap,
        ),
        pe(
            0x1000_0007,
            UserTransport::Ip(sctp(8, &["fe80::7"])),
            Policy::WeightedRoundRobin { weight: 3 },
            asap,
        ),
        pe(
            0x1000_0008,
            one(TransportKind::Tcp, 443, "192.0.2.8"),
            Policy::Priority { priority: 9 },
            asap,
        ),
        pe(
            0x1000_0009,
            one(TransportKind::Udp, 1, "192.0.2.9"),
            Policy::RandomizedLeastUsed { load: 0x1234_5678 },
            asap,
        ),
        pe(
            0x1000_000a,
            one(TransportKind::Udp, 2, "192.0.2.10"),
            Policy::WeightedRandom { weight: 0 },
            asap,
        ),
        pe(
            0x1000_000b,
            one(TransportKind::Udp, 3, "192.0.2.11"),
            Policy::Random,
            asap,
        ),
        pe(
            0x1000_000c,
            one(TransportKind::Udp, 4, "192.0.2.12"),
            Policy::LeastUsed { load: 0 },
            asap,
        ),
        pe(
            0x1000_000d,
            one(TransportKind::Udp, 5, "192.0.2.13"),
            Policy::Unknown {
                policy_type: PolicyType(0xB000_1001 + 0x0F00),
                data: vec![0xde, 0xad, 0xbe, 0xef],
            },
            asap,
        ),
        pe(
            0x1000_000e,
            one(TransportKind::Udp, 6, "192.0.2.14"),
            Policy::RandomizedPriorityLeastUsed {
                load: 5,
                degradation: 6,
            },
            asap,
        ),
    ]
}

fn errors() -> OperationError {
    OperationError {
        causes: vec![
            // Unrecognized parameter: the whole (padded) unknown TLV.
            Cause::with_info(
                CauseCode::UNRECOGNIZED_PARAMETER,
                hex::decode("c0770007 78797a00".replace(' ', "")).unwrap(),
            ),
            // Odd-length RSPLIB-style info, not last: its padding is inside the Operation Error.
            Cause::with_info(CauseCode::UNSPECIFIED, b"odd".to_vec()),
            // Inconsistent policy: the pool's policy TLV.
            Cause::inconsistent_policy(&Policy::LeastUsedDegradation {
                load: 0x4000_0000,
                degradation: 0x0001_0000,
            }),
            // Invalid values: the offending TLV (a PE identifier).
            Cause::with_info(
                CauseCode::INVALID_VALUES,
                hex::decode("000e000812345678").unwrap(),
            ),
            Cause::new(CauseCode::UNKNOWN_POOL_HANDLE),
        ],
    }
}

fn handle() -> PoolHandle {
    PoolHandle::from("EchoPool")
}

fn asap_samples() -> Vec<(&'static str, AsapMessage, bool)> {
    use AsapMessage as A;
    let all = pes(false);
    let mut v: Vec<(&'static str, AsapMessage, bool)> = vec![];
    let labels = [
        "registration_sctp_multi_wrand_dpf",
        "registration_tcp_v6_lu_dpf",
        "registration_udp_v4_plud",
        "registration_udplite_v6_lud",
        "registration_dccp_v4_plu",
        "registration_udp_mapped_lud_dpf",
        "registration_sctp_ll_wrr",
        "registration_tcp_prio",
        "registration_udp_rlu",
        "registration_udp_wrand",
        "registration_udp_rand",
        "registration_udp_lu",
        "registration_udp_unknown_policy",
        "registration_udp_rplu",
    ];
    for (label, p) in labels.iter().zip(all.iter()) {
        v.push((
            label,
            A::Registration {
                handle: handle(),
                pe: p.clone(),
            },
            true,
        ));
    }
    v.extend([
        (
            "deregistration",
            A::Deregistration {
                handle: handle(),
                pe_id: PeId(0x1000_0001),
            },
            true,
        ),
        (
            "registration_response_ok",
            A::RegistrationResponse {
                reject: false,
                handle: PoolHandle::from("P"),
                pe_id: PeId(0xFFFF_FFFF),
                error: None,
            },
            true,
        ),
        (
            "registration_response_reject",
            A::RegistrationResponse {
                reject: true,
                handle: handle(),
                pe_id: PeId(0x1000_0001),
                error: Some(errors()),
            },
            true,
        ),
        (
            "deregistration_response_refused",
            A::DeregistrationResponse {
                handle: PoolHandle(vec![0, 1, 2, 0xff, 0xfe]),
                pe_id: PeId(1),
                error: Some(OperationError::code(CauseCode::LACK_OF_RESOURCES)),
            },
            true,
        ),
        (
            "handle_resolution_max_items",
            A::HandleResolution {
                subscribe: true,
                handle: handle(),
                items: Some(u32::MAX),
            },
            true,
        ),
        (
            "handle_resolution_plain",
            A::HandleResolution {
                subscribe: false,
                handle: PoolHandle::from("a-32-byte-long-pool-handle-12345"),
                items: None,
            },
            true,
        ),
        (
            "handle_resolution_response",
            A::HandleResolutionResponse {
                accepted: true,
                handle: handle(),
                policy: Some(Policy::WeightedRandomDpf {
                    weight: 1,
                    weight_dpf: 2,
                    distance: 3,
                }),
                pes: all[..8].to_vec(),
                error: None,
            },
            true,
        ),
        (
            "handle_resolution_response_negative",
            A::HandleResolutionResponse {
                accepted: false,
                handle: handle(),
                policy: None,
                pes: vec![],
                error: Some(OperationError::code(CauseCode::UNKNOWN_POOL_HANDLE)),
            },
            true,
        ),
        (
            "endpoint_keep_alive",
            A::EndpointKeepAlive {
                home: true,
                server_id: ServerId(0x5EED_0001),
                handle: handle(),
                pe_id: Some(PeId(0x1000_0002)),
            },
            true,
        ),
        (
            "endpoint_keep_alive_no_pe",
            A::EndpointKeepAlive {
                home: false,
                server_id: ServerId(0x5EED_0002),
                handle: handle(),
                pe_id: None,
            },
            true,
        ),
        (
            "endpoint_keep_alive_ack",
            A::EndpointKeepAliveAck {
                handle: handle(),
                pe_id: PeId(0x1000_0003),
            },
            true,
        ),
        (
            "endpoint_unreachable",
            A::EndpointUnreachable {
                handle: handle(),
                pe_id: PeId(0x1000_0004),
            },
            true,
        ),
        (
            "server_announce",
            A::ServerAnnounce {
                server_id: ServerId(0x5EED_0003),
                transports: vec![
                    sctp(3863, &["192.0.2.100", "2001:db8::64"]),
                    TransportAddr::tcp(3863, ip("192.0.2.100")),
                ],
            },
            true,
        ),
        (
            "cookie_odd",
            A::Cookie {
                cookie: b"13-byte cooki".to_vec(),
            },
            true,
        ),
        (
            "cookie_echo",
            A::CookieEcho {
                cookie: (0..=255).collect(),
            },
            true,
        ),
        (
            "business_card",
            A::BusinessCard {
                handle: handle(),
                policy: Some(Policy::RoundRobin),
                pes: all[8..].to_vec(),
            },
            true,
        ),
        ("error", A::Error { error: errors() }, true),
        // A handle refused for its length is quoted by its first max + 1 bytes, in the
        // response and in the ASAP_ERROR that replaces a response too long to echo it.
        (
            "registration_response_over_long_handle_quoted_in_part",
            A::RegistrationResponse {
                reject: true,
                handle: PoolHandle::new(vec![b'h'; 200]),
                pe_id: PeId(0x0102_0304),
                error: Some(OperationError::single(Cause::with_info(
                    CauseCode::INVALID_VALUES,
                    codec::pool_handle_tlv_prefix(&PoolHandle::new(vec![b'h'; 200]), 65),
                ))),
            },
            true,
        ),
        (
            "error_over_long_handle_quoted_in_part",
            A::Error {
                error: OperationError::single(Cause::with_info(
                    CauseCode::INVALID_VALUES,
                    codec::pool_handle_tlv_prefix(&PoolHandle::new(vec![b'q'; 70_000]), 65),
                )),
            },
            true,
        ),
        // RFC 5354 §2 form with odd-length data as the last TLV *inside* a container: the
        // container length excludes the padding. Wireshark accepts it; rserpool-dissect's
        // lint wants the padding counted (RSPLIB form) and reports an error.
        (
            "rfc_padding_error_odd_cause_last",
            A::Error {
                error: OperationError::single(Cause::with_info(
                    CauseCode::UNSPECIFIED,
                    b"abcde".to_vec(),
                )),
            },
            false,
        ),
    ]);
    v
}

fn enrp_samples() -> Vec<(&'static str, EnrpMessage, bool)> {
    use EnrpMessage as E;
    let s1 = ServerId(0x5EED_0001);
    let s2 = ServerId(0x5EED_0002);
    let all = pes(true);
    vec![
        (
            "presence",
            E::Presence {
                reply_required: true,
                sender: s1,
                receiver: ServerId(0),
                checksum: Some(0x8E4B),
                server_info: Some(ServerInfo {
                    server_id: s1,
                    transport: sctp(9901, &["192.0.2.10", "2001:db8::a"]),
                }),
            },
            true,
        ),
        (
            // A registrar whose ENRP listener is TCP.
            "presence_tcp_server_information",
            E::Presence {
                reply_required: false,
                sender: s2,
                receiver: s1,
                checksum: Some(0x1234),
                server_info: Some(ServerInfo {
                    server_id: s2,
                    transport: TransportAddr::tcp(9901, ip("192.0.2.11")),
                }),
            },
            true,
        ),
        (
            // A TCP PE's ASAP transport: a TCP transport TLV naming its control port.
            "handle_update_tcp_asap_transport",
            E::HandleUpdate {
                takeover: false,
                sender: s1,
                receiver: s2,
                action: UpdateAction::ADD_PE,
                handle: handle(),
                pe: PoolElement {
                    asap_transport: Some(TransportAddr::tcp(2960, ip("192.0.2.201"))),
                    ..all[0].clone()
                },
            },
            true,
        ),
        (
            "presence_checksum_only",
            E::Presence {
                reply_required: false,
                sender: s2,
                receiver: s1,
                checksum: Some(0xFFFF),
                server_info: None,
            },
            true,
        ),
        (
            "handle_table_request",
            E::HandleTableRequest {
                own_children_only: true,
                sender: s1,
                receiver: s2,
            },
            true,
        ),
        (
            "handle_table_response",
            E::HandleTableResponse {
                reject: false,
                more: true,
                sender: s2,
                receiver: s1,
                pools: vec![
                    PoolEntry {
                        handle: handle(),
                        pes: all[..7].to_vec(),
                    },
                    PoolEntry {
                        handle: PoolHandle::from("DaytimePool"),
                        pes: all[7..].to_vec(),
                    },
                ],
            },
            true,
        ),
        (
            "handle_table_response_reject",
            E::HandleTableResponse {
                reject: true,
                more: false,
                sender: s2,
                receiver: s1,
                pools: vec![],
            },
            true,
        ),
        (
            "handle_update_add",
            E::HandleUpdate {
                takeover: true,
                sender: s1,
                receiver: ServerId(0),
                action: UpdateAction::ADD_PE,
                handle: handle(),
                pe: all[0].clone(),
            },
            true,
        ),
        (
            "handle_update_del",
            E::HandleUpdate {
                takeover: false,
                sender: s1,
                receiver: s2,
                action: UpdateAction::DEL_PE,
                handle: PoolHandle::from("X"),
                pe: all[4].clone(),
            },
            true,
        ),
        (
            "list_request",
            E::ListRequest {
                sender: s1,
                receiver: s2,
            },
            true,
        ),
        (
            "list_response",
            E::ListResponse {
                reject: false,
                sender: s2,
                receiver: s1,
                servers: vec![
                    ServerInfo {
                        server_id: s1,
                        transport: sctp(9901, &["192.0.2.10"]),
                    },
                    ServerInfo {
                        server_id: s2,
                        transport: sctp(9902, &["2001:db8::b", "192.0.2.11"]),
                    },
                ],
            },
            true,
        ),
        (
            "init_takeover",
            E::InitTakeover {
                sender: s1,
                receiver: ServerId(0),
                target: ServerId(0xDEAD_0001),
            },
            true,
        ),
        (
            "init_takeover_ack",
            E::InitTakeoverAck {
                sender: s2,
                receiver: s1,
                target: ServerId(0xDEAD_0001),
            },
            true,
        ),
        (
            "takeover_server",
            E::TakeoverServer {
                sender: s1,
                receiver: ServerId(0),
                target: ServerId(0xDEAD_0001),
            },
            true,
        ),
        (
            "error",
            E::Error {
                sender: s1,
                receiver: s2,
                error: errors(),
            },
            true,
        ),
        (
            "rfc_padding_error_odd_cause_last",
            E::Error {
                sender: s1,
                receiver: s2,
                error: OperationError::single(Cause::with_info(
                    CauseCode::UNSPECIFIED,
                    b"abc".to_vec(),
                )),
            },
            false,
        ),
    ]
}

// ----------------------------------------------------------------------------------------
// Running the tool

fn run_tool(proto: &str, msgs: &[(&str, Vec<u8>)]) -> (i32, Vec<Value>) {
    let path = std::env::temp_dir().join(format!(
        "rserpool-wire-dissect-{}-{proto}.txt",
        std::process::id()
    ));
    let mut text = String::new();
    for (label, bytes) in msgs {
        text.push_str(&format!("{label}={}\n", hex::encode(bytes)));
    }
    std::fs::write(&path, text).unwrap();
    let out = Command::new(TOOL)
        .args(["--proto", proto, "--json", "--hex-lines"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {TOOL}: {e} (the oracle tool is required)"));
    let _ = std::fs::remove_file(&path);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code < 64,
        "rserpool-dissect failed (exit {code}; 70 = tshark/text2pcap missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from rserpool-dissect: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let arr = v.as_array().unwrap().clone();
    assert_eq!(arr.len(), msgs.len(), "one result per message");
    (code, arr)
}

fn field_list(r: &Value) -> Vec<(String, String, String)> {
    r["field_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            (s("name"), s("value"), s("show"))
        })
        .collect()
}

/// Compare one tool result with the expected fields; returns the number of fields checked.
fn check_result(
    r: &Value,
    label: &str,
    bytes: &[u8],
    exp: &Fields,
    bits: &[(&str, bool)],
    lint_clean: bool,
) -> usize {
    let ctx = format!("{}/{label}", exp.proto);
    assert_eq!(r["source"].as_str(), Some(label), "{ctx}");
    assert_eq!(r["hex"].as_str().unwrap(), hex::encode(bytes), "{ctx}");
    assert_eq!(r["wireshark"]["layer_found"], Value::Bool(true), "{ctx}");
    assert_eq!(
        r["wireshark"]["malformed"].as_array().unwrap().len(),
        0,
        "{ctx}: {}",
        r["wireshark"]
    );
    if lint_clean {
        assert_eq!(r["verdict"].as_str(), Some("ok"), "{ctx}: {}", r["lint"]);
        assert_eq!(r["flagged_by"].as_array().unwrap().len(), 0, "{ctx}");
    } else {
        // Only the lint, and only about the padding of the last nested TLV.
        assert_eq!(r["flagged_by"], serde_json::json!(["lint"]), "{ctx}");
        for l in r["lint"].as_array().unwrap() {
            if l["severity"] == "error" {
                let msg = l["message"].as_str().unwrap();
                assert!(
                    msg.contains("padding"),
                    "{ctx}: unexpected lint error {msg}"
                );
            }
        }
    }

    for l in r["lint"].as_array().unwrap() {
        eprintln!("{ctx}: lint {}: {}", l["severity"], l["message"]);
    }

    let fl = field_list(r);
    let p = exp.proto;
    // Header: type, flags, length exactly as encoded.
    let hdr: Vec<&(String, String, String)> = fl
        .iter()
        .filter(|f| {
            [
                format!("{p}.message_type"),
                format!("{p}.message_flags"),
                format!("{p}.message_length"),
            ]
            .contains(&f.0)
        })
        .take(3)
        .collect();
    assert_eq!(hdr.len(), 3, "{ctx}");
    assert_eq!(hdr[0].1, hex::encode(&bytes[0..1]), "{ctx} type");
    assert_eq!(hdr[1].1, hex::encode(&bytes[1..2]), "{ctx} flags");
    assert_eq!(hdr[2].1, hex::encode(&bytes[2..4]), "{ctx} length");
    // Decoded flag bits.
    for (name, want) in bits {
        let shown: Vec<&str> = fl
            .iter()
            .filter(|f| f.0 == *name)
            .map(|f| f.2.as_str())
            .collect();
        assert_eq!(shown, [if *want { "1" } else { "0" }], "{ctx} {name}");
    }
    // Every tracked field, in order, raw and displayed.
    let got: Vec<&(String, String, String)> = fl
        .iter()
        .filter(|f| {
            f.0.strip_prefix(p)
                .and_then(|n| n.strip_prefix('.'))
                .is_some_and(|n| TRACKED.contains(&n))
        })
        .collect();
    let got_names: Vec<&str> = got.iter().map(|f| f.0.as_str()).collect();
    let exp_names: Vec<&str> = exp.v.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(got_names, exp_names, "{ctx}: field sequence");
    for (g, e) in got.iter().zip(&exp.v) {
        assert_eq!(g.1, e.raw, "{ctx}: raw value of {}", e.name);
        match &e.show {
            Show::Any => {}
            Show::Text(t) => assert_eq!(&g.2, t, "{ctx}: shown value of {}", e.name),
            Show::Ratio(x, factor) => {
                let shown: f64 = g.2.parse().unwrap();
                let want = f64::from(*x) / f64::from(u32::MAX) * factor;
                assert!(
                    (shown - want).abs() <= 1e-9 * want.abs().max(1e-6),
                    "{ctx}: {} shown {shown}, want {want}",
                    e.name
                );
            }
        }
    }
    exp.v.len()
}

#[test]
fn wireshark_decodes_what_we_encode() {
    assert!(
        std::path::Path::new(TOOL).exists(),
        "oracle tool missing at {TOOL}: the shared/ directory must sit beside the repository"
    );

    let asap = asap_samples();
    let enrp = enrp_samples();
    // Every message type is represented.
    let mut at: Vec<u8> = asap.iter().map(|(_, m, _)| m.type_code()).collect();
    at.dedup();
    let mut et: Vec<u8> = enrp.iter().map(|(_, m, _)| m.type_code()).collect();
    et.sort_unstable();
    et.dedup();
    at.sort_unstable();
    at.dedup();
    assert_eq!(at, (1..=14).collect::<Vec<u8>>());
    assert_eq!(et, (1..=10).collect::<Vec<u8>>());

    let mut checked = 0;

    let asap_bytes: Vec<(&str, Vec<u8>)> = asap
        .iter()
        .map(|(l, m, _)| (*l, m.encode_to_vec()))
        .collect();
    let (code, res) = run_tool("asap", &asap_bytes);
    // Bit 0 would mean Wireshark flagged something; bit 1 comes from the lint-only cases.
    assert_eq!(code, 2, "exit status (1 = Wireshark flagged a message)");
    for (((label, m, clean), (_, bytes)), r) in asap.iter().zip(&asap_bytes).zip(&res) {
        checked += check_result(r, label, bytes, &Fields::asap(m), &asap_bits(m), *clean);
    }

    let enrp_bytes: Vec<(&str, Vec<u8>)> = enrp
        .iter()
        .map(|(l, m, _)| (*l, m.encode_to_vec()))
        .collect();
    let (code, res) = run_tool("enrp", &enrp_bytes);
    assert_eq!(code, 2, "exit status (1 = Wireshark flagged a message)");
    for (((label, m, clean), (_, bytes)), r) in enrp.iter().zip(&enrp_bytes).zip(&res) {
        checked += check_result(r, label, bytes, &Fields::enrp(m), &enrp_bits(m), *clean);
    }

    // Sanity: the comparison covered a substantial number of fields.
    assert!(checked > 500, "only {checked} fields checked");
}
