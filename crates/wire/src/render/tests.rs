use super::dump::hex_dump_window;
use super::params::policy;
use super::tree::{human_secs, registration_life, Tree};
use super::*;
use crate::codec::{decode, decode_asap, decode_enrp, encode_asap};
use crate::error::DecodeErrorKind;
use crate::types::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

const REGISTRATION: &str = "01000038 0009000c 4563686f 506f6f6c 000a0028 01020304 00000000 0000003c
         00040010 00070001 00010008 c0000201 00080008 00000001";
const HANDLE_RESOLUTION: &str = "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003";
const PRESENCE: &str = "0101002c 11111111 00000000 000f0006 8e4b0000 000b0018 11111111 00040010
         26ad0000 00010008 c000020a";

fn pe(policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(0xdeadbeef),
        home_registrar: ServerId(0x2222),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(8080, "2001:db8::1".parse().unwrap())),
        policy,
        asap_transport: Some(TransportAddr::sctp(
            3863,
            TransportUse::DATA_ONLY,
            vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        )),
    }
}

#[test]
fn registration_worked_example() {
    let wire = hex(REGISTRATION);
    let d = decode(Protocol::Asap, &wire).unwrap();
    let s = render_decoded(&d, &wire);
    let want = "\
ASAP_REGISTRATION (ASAP type 0x01), flags 0x00, length 56
  Pool Handle (0x0009): \"EchoPool\" [45 63 68 6f 50 6f 6f 6c]
  Pool Element (0x000a): PE 0x01020304
    PE Identifier: 0x01020304
    Home ENRP Server Identifier: 0x00000000 (not yet determined)
    Registration Life: 60 (0x0000003c) = 60 ms (0.06s) per RSPLIB/Wireshark; 60 s (1m 0s) per RFC 5354
    User Transport: SCTP Transport (0x0004): port 7, DATA plus CONTROL (1)
      IPv4 Address (0x0001): 192.0.2.1
    Pool Member Selection Policy (0x0008): Round Robin (rr, 0x00000001)
    ASAP Transport: absent
";
    assert_eq!(s, want);
    // The typed renderer gives the same tree (the encoder reproduces the header).
    assert_eq!(render_asap(&decode_asap(&wire).unwrap().message), want);
}

#[test]
fn handle_resolution_worked_example() {
    let wire = hex(HANDLE_RESOLUTION);
    let s = render_asap(&decode_asap(&wire).unwrap().message);
    assert_eq!(
        s,
        "\
ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x00, length 24
  Pool Handle (0x0009): \"EchoPool\" [45 63 68 6f 50 6f 6f 6c]
  Handle Resolution Option (0x803f): items 3
"
    );
}

#[test]
fn presence_worked_example() {
    let wire = hex(PRESENCE);
    let s = render_enrp(&decode_enrp(&wire).unwrap().message);
    assert_eq!(
        s,
        "\
ENRP_PRESENCE (ENRP type 0x01), flags 0x01 [R reply required], length 44
  Sending Server Identifier: 0x11111111
  Receiving Server Identifier: 0x00000000 (group-cast / unspecified)
  PE Checksum (0x000f): 0x8e4b
  Server Information (0x000b): server 0x11111111
    Server Identifier: 0x11111111
    ENRP Transport: SCTP Transport (0x0004): port 9901, DATA only (0)
      IPv4 Address (0x0001): 192.0.2.10
"
    );
}

#[test]
fn flags_by_name_and_undefined_bits() {
    let mut wire = hex(HANDLE_RESOLUTION);
    wire[1] = 0x81;
    let d = decode(Protocol::Asap, &wire).unwrap();
    let s = render_decoded(&d, &wire);
    assert!(
            s.starts_with(
                "ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x81 [S subscribe, undefined bits 0x80, ignored], length 24\n"
            ),
            "{s}"
        );
    assert_eq!(flag_names(Protocol::Asap, 5, 0x81), vec!["S", "0x80"]);
    assert_eq!(flag_names(Protocol::Enrp, 3, 0x03), vec!["R", "M"]);
    assert!(flag_names(Protocol::Asap, 1, 0).is_empty());
}

#[test]
fn policies_show_percent_dpf_and_distance() {
    let p = Policy::LeastUsedDegradationDpf {
        load: u32::MAX / 2,
        degradation: u32::MAX / 4,
        load_dpf: 0x0041_8937,
        distance: 150,
    };
    let mut t = Tree::default();
    policy(&mut t, 0, &p);
    assert_eq!(
            t.0,
            "\
Pool Member Selection Policy (0x0008): Least Used with Degradation and Distance Penalty Factor (lud-dpf, 0xb0002003)
  Load: 0x7fffffff = 50.000%
  Load Degradation: 0x3fffffff = 25.000%
  Load DPF: 0x00418937 = 0.001000 per ms of distance
  Distance: 150 ms
"
        );
    let mut t = Tree::default();
    policy(
        &mut t,
        0,
        &Policy::Unknown {
            policy_type: PolicyType(0xC000_0007),
            data: vec![1, 2, 3, 4],
        },
    );
    assert_eq!(
        t.0,
        "\
Pool Member Selection Policy (0x0008): unknown policy 0xc0000007 (private) (adaptive)
  Policy data: 4 bytes: 01 02 03 04
"
    );
    assert_eq!(load_percent(0), 0.0);
    assert_eq!(load_percent(u32::MAX), 100.0);
}

#[test]
fn registration_life_both_readings() {
    assert_eq!(
            registration_life(30_000),
            "30000 (0x00007530) = 30000 ms (30s) per RSPLIB/Wireshark; 30000 s (8h 20m 0s) per RFC 5354"
        );
    assert!(registration_life(u32::MAX).ends_with("; infinite (-1) per RFC 5354"));
    assert!(registration_life(u32::MAX - 1).ends_with("; negative (-2) per RFC 5354: invalid"));
    assert_eq!(human_secs(90_061.5), "1d 1h 1m 1.5s");
}

#[test]
fn handle_resolution_response_with_pe_and_tcp_ipv6() {
    let m = AsapMessage::HandleResolutionResponse {
        accepted: true,
        handle: PoolHandle(vec![0x00, 0xff, 0x10]),
        policy: Some(Policy::WeightedRandom { weight: 7 }),
        pes: vec![pe(Policy::WeightedRandom { weight: 7 })],
        error: None,
    };
    let s = render_asap(&m);
    for want in [
            "ASAP_HANDLE_RESOLUTION_RESPONSE (ASAP type 0x06), flags 0x01 [A updates accepted], length ",
            "  Pool Handle (0x0009): 3 bytes, not text [00 ff 10]\n",
            "  Overall pool policy:\n    Pool Member Selection Policy (0x0008): Weighted Random (wrand, 0x00000004)\n      Weight: 7\n",
            "    User Transport: TCP Transport (0x0005): port 8080, reserved 0x0000 (RSPLIB: DATA only (0))\n      IPv6 Address (0x0002): 2001:db8::1\n",
            "    ASAP Transport: SCTP Transport (0x0004): port 3863, DATA only (0)\n      IPv4 Address (0x0001): 10.0.0.1\n      IPv4 Address (0x0001): 10.0.0.2\n",
            "    Home ENRP Server Identifier: 0x00002222\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
}

#[test]
fn error_causes_decode_nested_policy_and_parameter_type() {
    let unknown_tlv = vec![0xc1, 0x23, 0x00, 0x06, 0xab, 0xcd, 0x00, 0x00];
    let m = AsapMessage::RegistrationResponse {
        reject: true,
        handle: PoolHandle::from("P"),
        pe_id: PeId(1),
        error: Some(OperationError {
            causes: vec![
                Cause::inconsistent_policy(&Policy::LeastUsed { load: 0x8000_0000 }),
                Cause::with_info(CauseCode::UNRECOGNIZED_PARAMETER, unknown_tlv),
                Cause::new(CauseCode::UNKNOWN_POOL_HANDLE),
                Cause::with_info(CauseCode(0xf00d), vec![9, 9]),
            ],
        }),
    };
    let s = render_asap(&m);
    let want = "\
  Operation Error (0x000c): 4 causes
    Cause: Inconsistent Pooling Policy (0x0005), 12 info bytes
      Pool's policy:
        Pool Member Selection Policy (0x0008): Least Used (lu, 0x40000001)
          Load: 0x80000000 = 50.000%
    Cause: Unrecognized Parameter (0x0001), 8 info bytes
      Unrecognized parameter type: 0xc123 (Unknown Parameter; action 11: skip, report)
      Unknown Parameter (0xc123), length 6: 2 bytes: ab cd (action 11: skip, report)
    Cause: Unknown Pool Handle (0x0009), 0 info bytes
    Cause: unknown cause (0xf00d), 2 info bytes
      Information: 2 bytes: 09 09
";
    assert!(s.ends_with(want), "{s}");
    assert!(
        s.starts_with("ASAP_REGISTRATION_RESPONSE (ASAP type 0x03), flags 0x01 [R reject], length")
    );
}

#[test]
fn invalid_values_cause_walks_the_offending_tlv() {
    // Cause 0x3 carrying an SCTP transport with a v4 and a v6 address.
    let mut info = Vec::new();
    crate::codec::encode_transport(
        &mut crate::codec::Writer::new(&mut info),
        &TransportAddr::sctp(
            0,
            TransportUse(7),
            vec!["192.0.2.1".parse().unwrap(), "::1".parse().unwrap()],
        ),
    );
    let m = EnrpMessage::Error {
        sender: ServerId(5),
        receiver: ServerId(6),
        error: OperationError::single(Cause::with_info(CauseCode::INVALID_VALUES, info)),
    };
    let s = render_enrp(&m);
    let want = "\
    Cause: Invalid Values (0x0003), 36 info bytes
      Offending parameter:
        SCTP Transport (0x0004), length 36: port 0, invalid transport use 0x0007
          IPv4 Address (0x0001), length 8: 192.0.2.1
          IPv6 Address (0x0002), length 20: ::1
";
    assert!(s.ends_with(want), "{s}");
    assert!(s.contains("  Receiving Server Identifier: 0x00000006\n"));
}

#[test]
fn enrp_update_action_and_table() {
    let m = EnrpMessage::HandleUpdate {
        takeover: false,
        sender: ServerId(1),
        receiver: ServerId(2),
        action: UpdateAction::DEL_PE,
        handle: PoolHandle::from("EchoPool"),
        pe: pe(Policy::RoundRobin),
    };
    let s = render_enrp(&m);
    assert!(s.contains("\n  Update Action: DEL_PE (1)\n"), "{s}");
    let m = EnrpMessage::HandleTableResponse {
        reject: false,
        more: true,
        sender: ServerId(1),
        receiver: ServerId(2),
        pools: vec![PoolEntry {
            handle: PoolHandle::from("A"),
            pes: vec![pe(Policy::Priority { priority: 3 })],
        }],
    };
    let s = render_enrp(&m);
    assert!(s.contains("flags 0x02 [M more to send]"), "{s}");
    assert!(
        s.contains(
            "  Pool Handle (0x0009): \"A\" [41]\n    Pool Element (0x000a): PE 0xdeadbeef\n"
        ),
        "{s}"
    );
    assert!(
        s.contains("        Priority: 3 (larger = preferred)\n"),
        "{s}"
    );
}

#[test]
fn skipped_unknown_parameters_are_listed() {
    // HANDLE_RESOLUTION with an extra 0x8123 TLV (action 10: skip) at offset 12.
    let wire = hex("0500001c 00090006 45630000 81230008 01020304 803f0008 00000003");
    let d = decode(Protocol::Asap, &wire).unwrap();
    assert_eq!(d.unknown.len(), 1);
    let s = render_decoded(&d, &wire);
    assert!(
            s.ends_with(
                "  Skipped unknown parameter 0x8123 at offset 12, length 8 (action 10: skip): 4 bytes: 01 02 03 04\n"
            ),
            "{s}"
        );
}

#[test]
fn decode_error_marks_the_offset() {
    // Pool Handle TLV claiming 0x40 bytes in a 24-byte message.
    let mut wire = hex(HANDLE_RESOLUTION);
    wire[7] = 0x40;
    let e = decode_asap(&wire).unwrap_err();
    assert_eq!(e.offset, 4);
    let s = render_decode_error(Protocol::Asap, &wire, &e);
    let want = "\
ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x00, length 24, 24 bytes received: DECODE ERROR
  error: parameter Pool Handle (0x0009): length 64 runs past its container (20 bytes left) (at byte 4)
  kind: param_overrun, offset: 4
  0000  05 00 00 18 00 09 00 40  45 63 68 6f 50 6f 6f 6c  |.......@EchoPool|
                    ^^ offset 4
  0010  80 3f 00 08 00 00 00 03                           |.?......|
";
    assert_eq!(s, want);
}

#[test]
fn decode_error_header_names_flags() {
    let wire = hex("0101001c 11111111 00000000 000f0008 8e4b0000 000b0004 00000000");
    let e = decode_enrp(&wire).unwrap_err();
    let s = render_decode_error(Protocol::Enrp, &wire, &e);
    assert!(
            s.starts_with(
                "ENRP_PRESENCE (ENRP type 0x01), flags 0x01 [R reply required], length 28, 28 bytes received: DECODE ERROR\n  error: parameter PE Checksum (0x000f): length 8, expected 6 (at byte 12)\n"
            ),
            "{s}"
        );
}

#[test]
fn hex_dump_marks_end_and_second_half() {
    let bytes: Vec<u8> = (0u8..20).collect();
    let s = hex_dump(&bytes, Some(9));
    assert!(
        s.contains(&format!("|\n{}^^ offset 9\n0010", " ".repeat(34))),
        "{s}"
    );
    let s = hex_dump(&bytes, Some(20));
    assert!(s.ends_with("^^ offset 20 (end of data)\n"), "{s}");
    let s = hex_dump(&[0u8; 16], Some(16));
    assert_eq!(s.lines().count(), 2, "{s}");
    assert!(s.ends_with(&format!("{}^^ offset 16 (end of data)\n", " ".repeat(55))));
    assert_eq!(
        hex_dump(&[], None),
        "0000                                                    ||\n"
    );
}

#[test]
fn big_message_dump_is_windowed() {
    let bytes = vec![0u8; 4000];
    let s = hex_dump_window(&bytes, Some(2000));
    assert!(s.starts_with("… 1872 bytes before\n"), "{s}");
    assert!(s.contains("07d0  "));
    assert!(s.contains("^^ offset 2000"));
    assert!(s.trim_end().ends_with("bytes after"));
    assert!(s.lines().count() < 25);
}

#[test]
fn raw_params_never_panic_on_garbage() {
    for len in 0..40usize {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
        let _ = render_raw_params(&bytes);
    }
    assert_eq!(
        render_raw_params(&[0, 1, 0, 3]),
        "IPv4 Address (0x0001) with bad length 3 (4 bytes left): 4 bytes: 00 01 00 03\n"
    );
    // A pool element nested in raw bytes is walked.
    let mut buf = Vec::new();
    encode_asap(
        &AsapMessage::Registration {
            handle: PoolHandle::from("X"),
            pe: pe(Policy::RoundRobin),
        },
        &mut buf,
    );
    let s = render_raw_params(&buf[4..]);
    assert!(s.contains("Pool Element (0x000a), length "), "{s}");
    assert!(
        s.contains("PE 0xdeadbeef, home 0x00002222, registration life 30000"),
        "{s}"
    );
    assert!(
        s.contains("    IPv6 Address (0x0002), length 20: 2001:db8::1\n"),
        "{s}"
    );
}

#[test]
fn every_error_kind_has_a_name() {
    let k = DecodeErrorKind::TrailingBytes { extra: 1 };
    assert_eq!(error_kind_name(&k), "trailing_bytes");
}
