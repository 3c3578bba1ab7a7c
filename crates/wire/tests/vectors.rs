//! Canonical byte vectors from the digest: decode, compare fields, re-encode byte-exact.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use rserpool_wire::*;
use std::net::IpAddr;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("valid hex")
}

#[test]
fn asap_registration_worked_example() {
    let bytes = hex(
        "01000038 0009000c 4563686f 506f6f6c 000a0028 01020304 00000000 0000003c
         00040010 00070001 00010008 c0000201 00080008 00000001",
    );
    let d = decode_asap(&bytes).unwrap();
    let want = AsapMessage::Registration {
        handle: PoolHandle::from("EchoPool"),
        pe: PoolElement {
            id: PeId(0x01020304),
            home_registrar: ServerId(0),
            registration_life: 60,
            user_transport: UserTransport::Ip(TransportAddr::sctp(
                7,
                TransportUse::DATA_PLUS_CONTROL,
                vec!["192.0.2.1".parse::<IpAddr>().unwrap()],
            )),
            policy: Policy::RoundRobin,
            asap_transport: None,
        },
    };
    assert_eq!(d.message, want);
    assert!(d.unknown.is_empty());
    assert_eq!(want.encode_to_vec(), bytes);
}

#[test]
fn asap_handle_resolution_worked_example() {
    let bytes = hex("05000018 0009000c 4563686f 506f6f6c 803f0008 00000003");
    let d = decode_asap(&bytes).unwrap();
    let want = AsapMessage::HandleResolution {
        subscribe: false,
        handle: PoolHandle::from("EchoPool"),
        items: Some(3),
    };
    assert_eq!(d.message, want);
    assert_eq!(want.encode_to_vec(), bytes);
}

#[test]
fn enrp_presence_worked_example() {
    let bytes = hex(
        "0101002c 11111111 00000000 000f0006 8e4b0000 000b0018 11111111 00040010
         26ad0000 00010008 c000020a",
    );
    let d = decode_enrp(&bytes).unwrap();
    let want = EnrpMessage::Presence {
        reply_required: true,
        sender: ServerId(0x11111111),
        receiver: ServerId(0),
        checksum: Some(0x8E4B),
        server_info: Some(ServerInfo {
            server_id: ServerId(0x11111111),
            transport: TransportAddr::sctp(
                9901,
                TransportUse::DATA_ONLY,
                vec!["192.0.2.10".parse::<IpAddr>().unwrap()],
            ),
        }),
    };
    assert_eq!(d.message, want);
    assert_eq!(want.encode_to_vec(), bytes);
}

#[test]
fn hr_option_outside_handle_resolution_is_skipped() {
    // ASAP_ENDPOINT_UNREACHABLE with a trailing 0x803f option: action bits 10 -> skip silently.
    let m = AsapMessage::EndpointUnreachable {
        handle: PoolHandle::from("EchoPool"),
        pe_id: PeId(7),
    };
    let mut bytes = m.encode_to_vec();
    bytes.extend_from_slice(&hex("803f0008 00000003"));
    let len = u16::try_from(bytes.len()).unwrap();
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    let d = decode_asap(&bytes).unwrap();
    assert_eq!(d.message, m);
    assert_eq!(d.unknown.len(), 1);
    assert!(d.report_causes().is_empty());
}

#[test]
fn rsplib_hr_option_spelling_0x003f_is_accepted() {
    let bytes = hex("05000018 0009000c 4563686f 506f6f6c 003f0008 00000005");
    let d = decode_asap(&bytes).unwrap();
    assert_eq!(
        d.message,
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from("EchoPool"),
            items: Some(5),
        }
    );
}
// ----------------------------------------------------------------------------------------
// Hand-written canonical vectors: decode == expected value, and encode(decode(b)) == b.
// Lengths follow RFC 5354 §2: a message or container length excludes the padding of its
// last nested TLV (the padding bytes are still sent).

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn check_asap(hexstr: &str, want: AsapMessage) {
    let bytes = hex(hexstr);
    let d = decode_asap(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.message, want);
    assert!(d.unknown.is_empty());
    assert_eq!(hex::encode(want.encode_to_vec()), hex::encode(&bytes));
    assert_eq!(hex::encode(d.message.encode_to_vec()), hex::encode(&bytes));
}

fn check_enrp(hexstr: &str, want: EnrpMessage) {
    let bytes = hex(hexstr);
    let d = decode_enrp(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.message, want);
    assert!(d.unknown.is_empty());
    assert_eq!(hex::encode(want.encode_to_vec()), hex::encode(&bytes));
    assert_eq!(hex::encode(d.message.encode_to_vec()), hex::encode(&bytes));
}

#[test]
fn asap_cookie_odd_length_at_end() {
    // Cookie "abcde": TLV length 9, message length 4 + 9 = 13, then 3 padding bytes.
    check_asap(
        "0b00000d 000d0009 61626364 65000000",
        AsapMessage::Cookie {
            cookie: b"abcde".to_vec(),
        },
    );
    check_asap(
        "0c00000d 000d0009 61626364 65000000",
        AsapMessage::CookieEcho {
            cookie: b"abcde".to_vec(),
        },
    );
    // Empty cookie and a 4-aligned one: no padding at all.
    check_asap("0b000008 000d0004", AsapMessage::Cookie { cookie: vec![] });
    check_asap(
        "0b00000c 000d0008 01020304",
        AsapMessage::Cookie {
            cookie: vec![1, 2, 3, 4],
        },
    );
}

#[test]
fn asap_cookie_rsplib_padded_lengths_decode_to_the_same_message() {
    // RSPLIB counts the padding in the message length (Discrepancy #17): accepted on
    // receive, re-encoded in the RFC form.
    let padded = hex("0b000010 000d0009 61626364 65000000");
    let d = decode_asap(&padded).unwrap();
    assert_eq!(
        d.message,
        AsapMessage::Cookie {
            cookie: b"abcde".to_vec()
        }
    );
    assert_eq!(
        d.message.encode_to_vec(),
        hex("0b00000d 000d0009 61626364 65000000")
    );
    // Without the final padding (exactly Length bytes delivered).
    let d = decode_asap(&hex("0b00000d 000d0009 61626364 65")).unwrap();
    assert_eq!(
        d.message,
        AsapMessage::Cookie {
            cookie: b"abcde".to_vec()
        }
    );
}

#[test]
fn asap_error_with_odd_cause_last() {
    // Operation Error: cause 0x9 (no info), cause 0x3 with 5 info bytes. The cause's
    // padding is excluded from the Operation Error length (17) and the message length (21).
    check_asap(
        "0e000015 000c0011 00090004 00030009 61626364 65000000",
        AsapMessage::Error {
            error: OperationError {
                causes: vec![
                    Cause::new(CauseCode::UNKNOWN_POOL_HANDLE),
                    Cause::with_info(CauseCode::INVALID_VALUES, b"abcde".to_vec()),
                ],
            },
        },
    );
}

#[test]
fn asap_error_with_odd_cause_first() {
    // Padding between causes is counted; only the last cause's padding is not.
    check_asap(
        "0e000018 000c0014 00030009 00090005 50000000 00060004",
        AsapMessage::Error {
            error: OperationError {
                causes: vec![
                    Cause::with_info(CauseCode::INVALID_VALUES, hex("00090005 50")),
                    Cause::new(CauseCode::LACK_OF_RESOURCES),
                ],
            },
        },
    );
}

#[test]
fn asap_handle_resolution_response_udp_v6_wrand_dpf() {
    check_asap(
        "0601007c 00090005 50000000 0008000c 40000001 80000000
         000a0064 deadbeef 11111111 ffffffff
           0006001c 1f900000 00020014 20010db8 00000000 00000000 00000001
           00080014 b0002001 00000005 00010000 00000032
           00040024 0f170000 00010008 c0000202 00020014 20010db8 00000000 00000000 00000002",
        AsapMessage::HandleResolutionResponse {
            accepted: true,
            handle: PoolHandle::from("P"),
            policy: Some(Policy::LeastUsed { load: 0x8000_0000 }),
            pes: vec![PoolElement {
                id: PeId(0xdead_beef),
                home_registrar: ServerId(0x1111_1111),
                registration_life: u32::MAX,
                user_transport: UserTransport::Ip(TransportAddr::udp(8080, ip("2001:db8::1"))),
                policy: Policy::WeightedRandomDpf {
                    weight: 5,
                    weight_dpf: 0x0001_0000,
                    distance: 50,
                },
                asap_transport: Some(TransportAddr::sctp(
                    3863,
                    TransportUse::DATA_ONLY,
                    vec![ip("192.0.2.2"), ip("2001:db8::2")],
                )),
            }],
            error: None,
        },
    );
}

fn echo_pe(user_transport: UserTransport, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(5),
        home_registrar: ServerId(0),
        registration_life: 1000,
        user_transport,
        policy,
        asap_transport: None,
    }
}

#[test]
fn asap_registration_dccp() {
    check_asap(
        "0100003c 0009000c 4563686f 506f6f6c 000a002c 00000005 00000000 000003e8
         00030014 12340000 00000042 00010008 7f000001 00080008 00000001",
        AsapMessage::Registration {
            handle: PoolHandle::from("EchoPool"),
            pe: echo_pe(
                UserTransport::Ip(TransportAddr {
                    kind: TransportKind::Dccp { service_code: 0x42 },
                    port: 0x1234,
                    use_field: TransportUse::DATA_ONLY,
                    addrs: vec![ip("127.0.0.1")],
                }),
                Policy::RoundRobin,
            ),
        },
    );
}

#[test]
fn asap_registration_opaque_transport_odd() {
    // Opaque transport "xyz" (length 7) is padded before the policy TLV.
    check_asap(
        "01000030 0009000c 4563686f 506f6f6c 000a0020 00000005 00000000 000003e8
         00100007 78797a00 00080008 00000003",
        AsapMessage::Registration {
            handle: PoolHandle::from("EchoPool"),
            pe: echo_pe(UserTransport::Opaque(b"xyz".to_vec()), Policy::Random),
        },
    );
}

#[test]
fn asap_registration_unknown_policy_odd_at_end_of_two_containers() {
    // Unknown policy 0x80000077 with 2 data bytes: policy length 10 is the last TLV of the
    // Pool Element (length 42 = 16 + 16 + 10) which is the last TLV of the message
    // (length 58); 2 padding bytes follow, counted by neither.
    check_asap(
        "0100003a 0009000c 4563686f 506f6f6c 000a002a 00000005 00000000 000003e8
         00040010 00070001 00010008 c0000201 0008000a 80000077 68690000",
        AsapMessage::Registration {
            handle: PoolHandle::from("EchoPool"),
            pe: echo_pe(
                UserTransport::Ip(TransportAddr::sctp(
                    7,
                    TransportUse::DATA_PLUS_CONTROL,
                    vec![ip("192.0.2.1")],
                )),
                Policy::Unknown {
                    policy_type: PolicyType(0x8000_0077),
                    data: b"hi".to_vec(),
                },
            ),
        },
    );
}

#[test]
fn asap_server_announce_tcp_v6_and_sctp_v4() {
    check_asap(
        "0a000034 12345678 0005001c 0f170000 00020014 20010db8 00000000 00000000 00000063
         00040010 0f170001 00010008 c0000263",
        AsapMessage::ServerAnnounce {
            server_id: ServerId(0x1234_5678),
            transports: vec![
                TransportAddr::tcp(3863, ip("2001:db8::63")),
                TransportAddr::sctp(
                    3863,
                    TransportUse::DATA_PLUS_CONTROL,
                    vec![ip("192.0.2.99")],
                ),
            ],
        },
    );
}

#[test]
fn asap_handle_resolution_max_items() {
    check_asap(
        "05010011 0009000d 4563686f 506f6f6c 21000000",
        AsapMessage::HandleResolution {
            subscribe: true,
            handle: PoolHandle::from("EchoPool!"),
            items: None,
        },
    );
    check_asap(
        "05000018 0009000c 4563686f 506f6f6c 803f0008 ffffffff",
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from("EchoPool"),
            items: Some(u32::MAX),
        },
    );
}

#[test]
fn enrp_handle_update_del_tcp_prio() {
    check_enrp(
        "04010058 22222222 33333333 00010000 0009000c 4563686f 506f6f6c
         000a003c 01020304 22222222 00007530
           00050010 00500000 00010008 c0000203
           0008000c 00000005 00000007
           00040010 0f170000 00010008 c0000203",
        EnrpMessage::HandleUpdate {
            takeover: true,
            sender: ServerId(0x2222_2222),
            receiver: ServerId(0x3333_3333),
            action: UpdateAction::DEL_PE,
            handle: PoolHandle::from("EchoPool"),
            pe: PoolElement {
                id: PeId(0x0102_0304),
                home_registrar: ServerId(0x2222_2222),
                registration_life: 30_000,
                user_transport: UserTransport::Ip(TransportAddr::tcp(80, ip("192.0.2.3"))),
                policy: Policy::Priority { priority: 7 },
                asap_transport: Some(TransportAddr::sctp(
                    3863,
                    TransportUse::DATA_ONLY,
                    vec![ip("192.0.2.3")],
                )),
            },
        },
    );
}

#[test]
fn enrp_error_odd_cause_at_end() {
    check_enrp(
        "0a000017 aaaaaaaa bbbbbbbb 000c000b 00030007 61626300",
        EnrpMessage::Error {
            sender: ServerId(0xaaaa_aaaa),
            receiver: ServerId(0xbbbb_bbbb),
            error: OperationError::single(Cause::with_info(
                CauseCode::INVALID_VALUES,
                b"abc".to_vec(),
            )),
        },
    );
}

#[test]
fn enrp_fixed_size_messages() {
    check_enrp(
        "07000010 11111111 22222222 33333333",
        EnrpMessage::InitTakeover {
            sender: ServerId(0x1111_1111),
            receiver: ServerId(0x2222_2222),
            target: ServerId(0x3333_3333),
        },
    );
    check_enrp(
        "0201000c 11111111 00000000",
        EnrpMessage::HandleTableRequest {
            own_children_only: true,
            sender: ServerId(0x1111_1111),
            receiver: ServerId(0),
        },
    );
    check_enrp(
        "0303000c 11111111 22222222",
        EnrpMessage::HandleTableResponse {
            reject: true,
            more: true,
            sender: ServerId(0x1111_1111),
            receiver: ServerId(0x2222_2222),
            pools: vec![],
        },
    );
}

#[test]
fn enrp_list_response_v6() {
    check_enrp(
        "06000030 22222222 11111111 000b0024 44444444 0004001c 26ad0000 00020014
         fe800000 00000000 00000000 00000001",
        EnrpMessage::ListResponse {
            reject: false,
            sender: ServerId(0x2222_2222),
            receiver: ServerId(0x1111_1111),
            servers: vec![ServerInfo {
                server_id: ServerId(0x4444_4444),
                transport: TransportAddr::sctp(9901, TransportUse::DATA_ONLY, vec![ip("fe80::1")]),
            }],
        },
    );
}

#[test]
fn enrp_presence_checksum_only() {
    // PE Checksum length 6 as the last TLV: message length 18, 2 padding bytes.
    check_enrp(
        "01000012 11111111 00000000 000f0006 ffff0000",
        EnrpMessage::Presence {
            reply_required: false,
            sender: ServerId(0x1111_1111),
            receiver: ServerId(0),
            checksum: Some(0xffff),
            server_info: None,
        },
    );
}
