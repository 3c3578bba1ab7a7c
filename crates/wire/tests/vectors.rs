//! Canonical byte vectors from the digest: decode, compare fields, re-encode byte-exact.

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
