//! Malformed-input corpus: each case asserts the specific `DecodeErrorKind` (and offset),
//! the unknown-parameter / unknown-message action bits and their reports, huge counts, and
//! that no prefix or single-byte mutation of a valid message makes the decoder panic.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use rserpool_wire::*;
use DecodeErrorKind as K;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn asap_err(bytes: &[u8]) -> DecodeError {
    match decode_asap(bytes) {
        Ok(d) => panic!("decoded unexpectedly: {:?}", d.message),
        Err(e) => e,
    }
}

fn enrp_err(bytes: &[u8]) -> DecodeError {
    match decode_enrp(bytes) {
        Ok(d) => panic!("decoded unexpectedly: {:?}", d.message),
        Err(e) => e,
    }
}

/// ASAP_DEREGISTRATION "EchoPool", PE 0x12345678 (24 bytes).
const DEREG: &str = "02000018 0009000c 4563686f 506f6f6c 000e0008 12345678";

/// ASAP_REGISTRATION worked example (56 bytes): PH @4, PE @16, SCTP @32, IPv4 @40, policy @48.
const REG: &str = "01000038 0009000c 4563686f 506f6f6c 000a0028 01020304 00000000 0000003c
                   00040010 00070001 00010008 c0000201 00080008 00000001";

/// Registration "EchoPool" with the given Pool Element value (after the PE's TLV header);
/// lengths computed here.
fn registration_with_pe_value(pe_value: &[u8]) -> Vec<u8> {
    let mut m = hex("01000000 0009000c 4563686f 506f6f6c");
    let pe_len = 4 + pe_value.len();
    m.extend_from_slice(&[0x00, 0x0a]);
    m.extend_from_slice(&u16::try_from(pe_len).unwrap().to_be_bytes());
    m.extend_from_slice(pe_value);
    let len = u16::try_from(m.len()).unwrap();
    m[2..4].copy_from_slice(&len.to_be_bytes());
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
    m
}

/// PE fixed fields: id 1, home 0, life 60.
const PE_FIXED: &str = "00000001 00000000 0000003c";
const SCTP_V4: &str = "00040010 00070001 00010008 c0000201";
const RR: &str = "00080008 00000001";

fn pe(parts: &[&str]) -> Vec<u8> {
    hex(&parts.join(" "))
}

// ----------------------------------------------------------------------------------------
// Header

#[test]
fn truncated_header() {
    for n in 0..4 {
        let b = &hex(DEREG)[..n];
        for e in [asap_err(b), enrp_err(b)] {
            assert_eq!(e.offset, 0);
            assert_eq!(
                e.kind,
                K::Truncated {
                    what: "message header",
                    needed: 4,
                    available: n
                }
            );
            assert!(!e.is_silent());
        }
    }
}

#[test]
fn message_length_too_big() {
    let mut b = hex(DEREG);
    b[3] = 0x1c; // 28 > 24
    let e = asap_err(&b);
    assert_eq!(e.offset, 2);
    assert_eq!(
        e.kind,
        K::MessageLengthTooBig {
            length: 28,
            available: 24
        }
    );
    b[2] = 0xff;
    b[3] = 0xff;
    assert_eq!(
        enrp_err(&b).kind,
        K::MessageLengthTooBig {
            length: 0xffff,
            available: 24
        }
    );
    // An odd length one past the end.
    b[2] = 0;
    b[3] = 25;
    assert_eq!(
        asap_err(&b).kind,
        K::MessageLengthTooBig {
            length: 25,
            available: 24
        }
    );
}

#[test]
fn message_length_too_small() {
    for l in 0..4u8 {
        let mut b = hex(DEREG);
        b[3] = l;
        for e in [asap_err(&b), enrp_err(&b)] {
            assert_eq!(e.offset, 2);
            assert_eq!(e.kind, K::MessageLengthTooSmall { length: l.into() });
        }
    }
}

#[test]
fn message_length_too_small_leaves_trailing_bytes() {
    // Length 16 (just the handle) on a 24-byte message: 8 bytes after the message.
    let mut b = hex(DEREG);
    b[3] = 16;
    let e = asap_err(&b);
    assert_eq!((e.offset, e.kind), (16, K::TrailingBytes { extra: 8 }));
}

#[test]
fn odd_message_length() {
    let mut b = hex(DEREG);
    // 19 → padded end 20, 4 bytes left over.
    b[3] = 19;
    let e = asap_err(&b);
    assert_eq!((e.offset, e.kind), (20, K::TrailingBytes { extra: 4 }));
    // 17 → padded end 20 as well.
    b[3] = 17;
    let e = asap_err(&b);
    assert_eq!((e.offset, e.kind), (20, K::TrailingBytes { extra: 4 }));
    // 21 → padded end 24: no trailing bytes, but the PE Identifier TLV @16 is cut to 5.
    b[3] = 21;
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.kind,
        K::ParamOverrun {
            ty: ParamType::PE_IDENTIFIER,
            length: 8,
            available: 5
        }
    );
    // 23 on a 24-byte ENRP list request: the 12-byte TLV @12 is cut to 11 bytes.
    let l = hex("05000017 11111111 22222222 000e000c 12345600 00000000");
    let e = enrp_err(&l);
    assert_eq!(
        (e.offset, e.kind),
        (
            12,
            K::ParamOverrun {
                ty: ParamType::PE_IDENTIFIER,
                length: 12,
                available: 11
            }
        )
    );
}

#[test]
fn trailing_bytes() {
    for extra in 1..9 {
        let mut b = hex(DEREG);
        b.extend(std::iter::repeat_n(0u8, extra));
        let e = asap_err(&b);
        assert_eq!((e.offset, e.kind), (24, K::TrailingBytes { extra }));
    }
    // A second message glued to the first (datagram with two messages).
    let mut b = hex(DEREG);
    b.extend(hex(DEREG));
    assert_eq!(asap_err(&b).kind, K::TrailingBytes { extra: 24 });
    // Odd message (cookie "abcde", length 13): 3 pad bytes are fine, a 4th is not.
    let mut c = hex("0b00000d 000d0009 61626364 65000000");
    assert!(decode_asap(&c).is_ok());
    c.push(0);
    let e = asap_err(&c);
    assert_eq!((e.offset, e.kind), (16, K::TrailingBytes { extra: 1 }));
}

// ----------------------------------------------------------------------------------------
// Parameters: lengths

#[test]
fn truncated_parameter() {
    // PE Identifier TLV cut after 2 value bytes; message length says 22.
    let b = hex("02000016 0009000c 4563686f 506f6f6c 000e0008 1234");
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.kind,
        K::ParamOverrun {
            ty: ParamType::PE_IDENTIFIER,
            length: 8,
            available: 6
        }
    );
    // Only 2 bytes of a parameter header.
    let b = hex("02000012 0009000c 4563686f 506f6f6c 000e");
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.kind,
        K::Truncated {
            what: "parameter header",
            needed: 4,
            available: 2
        }
    );
}

#[test]
fn oversized_parameter() {
    // Pool handle claims 64 bytes in a 24-byte message.
    let b = hex("02000018 00090040 4563686f 506f6f6c 000e0008 12345678");
    let e = asap_err(&b);
    assert_eq!(e.offset, 4);
    assert_eq!(
        e.kind,
        K::ParamOverrun {
            ty: ParamType::POOL_HANDLE,
            length: 64,
            available: 20
        }
    );
    // Nested: the SCTP transport (@32) claims 20 bytes but its Pool Element has 16 left
    // before the policy... the PE length bounds it, not the message.
    let mut b = hex(REG);
    b[35] = 0x1c; // SCTP length 28: runs over the policy and past the PE (ends at 56)
    b[19] = 0x20; // PE length 32: ends at 48, before the policy TLV
    let e = asap_err(&b);
    assert_eq!(e.offset, 32);
    assert_eq!(
        e.kind,
        K::ParamOverrun {
            ty: ParamType::SCTP_TRANSPORT,
            length: 28,
            available: 16
        }
    );
    // Address inside the transport runs past the transport.
    let mut b = hex(REG);
    b[43] = 0x0c; // IPv4 length 12 inside a transport with 8 bytes left
    let e = asap_err(&b);
    assert_eq!(e.offset, 40);
    assert_eq!(
        e.kind,
        K::ParamOverrun {
            ty: ParamType::IPV4_ADDRESS,
            length: 12,
            available: 8
        }
    );
}

#[test]
fn parameter_length_below_four() {
    for l in 0..4u8 {
        let mut b = hex(DEREG);
        b[7] = l;
        let e = asap_err(&b);
        assert_eq!(e.offset, 4);
        assert_eq!(
            e.kind,
            K::ParamLengthTooSmall {
                ty: ParamType::POOL_HANDLE,
                length: l.into()
            }
        );
    }
    // Nested, inside the Pool Element.
    let mut b = hex(REG);
    b[51] = 2; // policy length 2
    let e = asap_err(&b);
    assert_eq!(e.offset, 48);
    assert_eq!(
        e.kind,
        K::ParamLengthTooSmall {
            ty: ParamType::POLICY,
            length: 2
        }
    );
}

// ----------------------------------------------------------------------------------------
// Parameters: structure

#[test]
fn missing_mandatory_parameter() {
    // Deregistration without PE Identifier.
    let e = asap_err(&hex("02000010 0009000c 4563686f 506f6f6c"));
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.kind,
        K::MissingParameter {
            expected: ParamType::PE_IDENTIFIER,
            context: "ASAP_DEREGISTRATION"
        }
    );
    // Registration without anything.
    let e = asap_err(&hex("01000004"));
    assert_eq!(
        (e.offset, e.kind),
        (
            4,
            K::MissingParameter {
                expected: ParamType::POOL_HANDLE,
                context: "ASAP_REGISTRATION"
            }
        )
    );
    // Cookie without cookie, error without Operation Error.
    assert_eq!(
        asap_err(&hex("0b000004")).kind,
        K::MissingParameter {
            expected: ParamType::COOKIE,
            context: "ASAP_COOKIE"
        }
    );
    assert_eq!(
        asap_err(&hex("0e000004")).kind,
        K::MissingParameter {
            expected: ParamType::OPERATION_ERROR,
            context: "ASAP_ERROR"
        }
    );
    // Business card with a handle but no Pool Element.
    assert_eq!(
        asap_err(&hex("0d000010 0009000c 4563686f 506f6f6c")).kind,
        K::MissingParameter {
            expected: ParamType::POOL_ELEMENT,
            context: "ASAP_BUSINESS_CARD"
        }
    );
    // Keep-alive with server ID but no handle.
    let e = asap_err(&hex("07000008 11111111"));
    assert_eq!(
        (e.offset, e.kind),
        (
            8,
            K::MissingParameter {
                expected: ParamType::POOL_HANDLE,
                context: "ASAP_ENDPOINT_KEEP_ALIVE"
            }
        )
    );
    // ENRP handle update without Pool Element.
    let e = enrp_err(&hex(
        "0400001c 11111111 22222222 00000000 0009000c 4563686f 506f6f6c",
    ));
    assert_eq!(
        (e.offset, e.kind),
        (
            28,
            K::MissingParameter {
                expected: ParamType::POOL_ELEMENT,
                context: "ENRP_HANDLE_UPDATE"
            }
        )
    );
    // ENRP handle table response: a pool handle without PEs.
    let e = enrp_err(&hex(
        "03000018 11111111 22222222 0009000c 4563686f 506f6f6c",
    ));
    assert_eq!(
        (e.offset, e.kind),
        (
            12,
            K::MissingParameter {
                expected: ParamType::POOL_ELEMENT,
                context: "ENRP_HANDLE_TABLE_RESPONSE"
            }
        )
    );
    // Pool Element without policy.
    let b = registration_with_pe_value(&pe(&[PE_FIXED, SCTP_V4]));
    let e = asap_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (
            48,
            K::MissingParameter {
                expected: ParamType::POLICY,
                context: "Pool Element"
            }
        )
    );
    // Pool Element without user transport.
    let b = registration_with_pe_value(&pe(&[PE_FIXED]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert!(matches!(e.kind, K::MissingParameter { .. }), "{e}");
    // ENRP fixed fields missing.
    let e = enrp_err(&hex("01000008 11111111"));
    assert_eq!(
        (e.offset, e.kind),
        (
            8,
            K::Truncated {
                what: "receiving server identifier",
                needed: 4,
                available: 0
            }
        )
    );
    let e = enrp_err(&hex("0700000c 11111111 22222222"));
    assert_eq!(
        (e.offset, e.kind),
        (
            12,
            K::Truncated {
                what: "target server identifier",
                needed: 4,
                available: 0
            }
        )
    );
}

#[test]
fn wrong_nesting() {
    // A Pool Handle where the PE's user transport belongs.
    let b = registration_with_pe_value(&pe(&[PE_FIXED, "00090008 41424344", RR]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 32);
    assert_eq!(
        e.kind,
        K::UnexpectedParameter {
            found: ParamType::POOL_HANDLE,
            context: "Pool Element",
            expected: "user transport"
        }
    );
    // A PE Identifier TLV where a transport's address belongs.
    let b = registration_with_pe_value(&pe(&[PE_FIXED, "00040010 00070001 000e0008 12345678", RR]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 40);
    assert_eq!(
        e.kind,
        K::UnexpectedParameter {
            found: ParamType::PE_IDENTIFIER,
            context: "transport parameter",
            expected: "IPv4 or IPv6 Address"
        }
    );
    // A transport nested in a transport.
    let b = registration_with_pe_value(&pe(&[
        PE_FIXED,
        "00040018 00070001 00050010 00070000 00010008 c0000201",
        RR,
    ]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 40);
    assert!(
        matches!(e.kind, K::UnexpectedParameter { found, .. } if found == ParamType::TCP_TRANSPORT),
        "{e}"
    );
    // Policy and transport swapped.
    let b = registration_with_pe_value(&pe(&[PE_FIXED, RR, SCTP_V4]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 32);
    assert!(
        matches!(e.kind, K::UnexpectedParameter { found, .. } if found == ParamType::POLICY),
        "{e}"
    );
    // A UDP transport as the PE's ASAP transport (SCTP or TCP only).
    let b = registration_with_pe_value(&pe(&[
        PE_FIXED,
        SCTP_V4,
        RR,
        "00060010 00070000 00010008 c0000201",
    ]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 56);
    assert_eq!(
        e.kind,
        K::UnexpectedParameter {
            found: ParamType::UDP_TRANSPORT,
            context: "Pool Element",
            expected: "end of parameters"
        }
    );
    // A TCP one decodes (our TCP PEs' ASAP transport).
    let b = registration_with_pe_value(&pe(&[
        PE_FIXED,
        SCTP_V4,
        RR,
        "00050010 00070000 00010008 c0000201",
    ]));
    assert!(decode_asap(&b).is_ok());
    // A Pool Handle inside a Pool Element (after the policy).
    let b = registration_with_pe_value(&pe(&[PE_FIXED, SCTP_V4, RR, "00090008 41424344"]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 56);
    assert!(
        matches!(e.kind, K::UnexpectedParameter { found, .. } if found == ParamType::POOL_HANDLE),
        "{e}"
    );
    // Pool Element and handle swapped at message level.
    let e = asap_err(&hex(
        "02000018 000e0008 12345678 0009000c 4563686f 506f6f6c",
    ));
    assert_eq!(e.offset, 4);
    assert_eq!(
        e.kind,
        K::UnexpectedParameter {
            found: ParamType::PE_IDENTIFIER,
            context: "ASAP_DEREGISTRATION",
            expected: "Pool Handle"
        }
    );
    // Server announce with a UDP transport.
    let e = asap_err(&hex(
        "0a000018 11111111 00060010 0f170000 00010008 c0000201",
    ));
    assert_eq!(e.offset, 8);
    assert!(
        matches!(e.kind, K::UnexpectedParameter { found, .. } if found == ParamType::UDP_TRANSPORT),
        "{e}"
    );
    // Server Information with a UDP transport (SCTP or TCP only).
    let e = enrp_err(&hex(
        "06000024 11111111 22222222 000b0018 33333333 00060010 26ad0000 00010008 c0000201",
    ));
    assert_eq!(e.offset, 20);
    assert!(
        matches!(e.kind, K::UnexpectedParameter { found, .. } if found == ParamType::UDP_TRANSPORT),
        "{e}"
    );
    // A TCP one decodes (a registrar with a TCP ENRP listener).
    assert!(decode_enrp(&hex(
        "06000024 11111111 22222222 000b0018 33333333 00050010 26ad0000 00010008 c0000201",
    ))
    .is_ok());
    // Handle Resolution option in a deregistration: outside ASAP_HANDLE_RESOLUTION it is an
    // unknown parameter whose action bits (10) say "skip silently".
    let mut b = hex(DEREG);
    b.extend(hex("803f0008 00000003"));
    b[3] = 32;
    let d = decode_asap(&b).expect("skipped, not an error");
    assert_eq!(d.unknown.len(), 1);
    assert_eq!(d.unknown[0].ty, ParamType::HANDLE_RESOLUTION_OPTION);
    assert_eq!(d.unknown[0].offset, 24);
    assert!(d.report_causes().is_empty());
}

#[test]
fn policy_without_its_values() {
    let cases: &[(&str, u32, usize, usize)] = &[
        ("00080008 00000002", 0x0000_0002, 4, 0), // WRR, no weight
        ("00080008 40000001", 0x4000_0001, 4, 0), // LU, no load
        ("0008000c 40000002 00000001", 0x4000_0002, 8, 4), // LUD, no degradation
        ("00080010 b0002001 00000001 00000002", 0xB000_2001, 12, 8), // WRAND-DPF
        (
            "00080014 b0002003 00000001 00000002 00000003",
            0xB000_2003,
            16,
            12,
        ), // LUD-DPF
        ("0008000a 00000005 0000", 0x0000_0005, 4, 2), // PRIO with 2 of 4 value bytes
    ];
    for &(policy, ty, needed, got) in cases {
        let b = registration_with_pe_value(&pe(&[PE_FIXED, SCTP_V4, policy]));
        let e = asap_err(&b);
        assert_eq!(e.offset, 48, "{policy}");
        assert_eq!(
            e.kind,
            K::PolicyTooShort {
                policy_type: PolicyType(ty),
                needed,
                got
            },
            "{policy}"
        );
    }
    // No policy type at all.
    let b = registration_with_pe_value(&pe(&[PE_FIXED, SCTP_V4, "00080004"]));
    let e = asap_err(&b);
    assert_eq!(e.offset, 52);
    assert_eq!(
        e.kind,
        K::Truncated {
            what: "policy type",
            needed: 4,
            available: 0
        }
    );
    // Extra value bytes after a known policy's fields are tolerated (RSPLIB does too).
    let b = registration_with_pe_value(&pe(&[
        PE_FIXED,
        SCTP_V4,
        "00080010 00000002 00000007 ffffffff",
    ]));
    match decode_asap(&b).unwrap().message {
        AsapMessage::Registration { pe, .. } => {
            assert_eq!(pe.policy, Policy::WeightedRoundRobin { weight: 7 })
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn transport_address_counts() {
    let cases: &[(&str, &str, &str)] = &[
        // (transport TLV, context, what)
        (
            "00050008 00070000",
            "tcp",
            "transport parameter without an address",
        ),
        (
            "00060008 00070000",
            "udp",
            "transport parameter without an address",
        ),
        (
            "00070008 00070000",
            "udp-lite",
            "transport parameter without an address",
        ),
        (
            "0003000c 00070000 00000001",
            "dccp",
            "transport parameter without an address",
        ),
        (
            "00040008 00070000",
            "sctp",
            "transport parameter without an address",
        ),
        (
            "00050018 00070000 00010008 c0000201 00010008 c0000202",
            "tcp",
            "non-SCTP transport with more than one address",
        ),
        (
            "00060024 00070000 00010008 c0000201 00020014 20010db8 00000000 00000000 00000001",
            "udp",
            "non-SCTP transport with more than one address",
        ),
        (
            "00070018 00070000 00010008 c0000201 00010008 c0000202",
            "udp-lite",
            "non-SCTP transport with more than one address",
        ),
        (
            "0003001c 00070000 00000001 00010008 c0000201 00010008 c0000202",
            "dccp",
            "non-SCTP transport with more than one address",
        ),
    ];
    for &(t, context, what) in cases {
        let b = registration_with_pe_value(&pe(&[PE_FIXED, t, RR]));
        let e = asap_err(&b);
        assert_eq!(e.offset, 32, "{t}");
        assert_eq!(e.kind, K::InvalidValue { context, what }, "{t}");
    }
    // SCTP with two addresses is fine.
    let b = registration_with_pe_value(&pe(&[
        PE_FIXED,
        "00040018 00070000 00010008 c0000201 00010008 c0000202",
        RR,
    ]));
    assert!(decode_asap(&b).is_ok());
}

#[test]
fn fixed_size_parameters_with_wrong_length() {
    for (pe_id, length) in [
        ("000e000c 12345678 00000000", 12u16),
        ("000e0006 1234 0000", 6),
        ("000e0004", 4),
    ] {
        let mut b = hex("02000000 0009000c 4563686f 506f6f6c");
        b.extend(hex(pe_id));
        let l = u16::try_from(16 + usize::from(length)).unwrap();
        b[2..4].copy_from_slice(&l.to_be_bytes());
        let e = asap_err(&b);
        assert_eq!(e.offset, 16, "{pe_id}");
        assert_eq!(
            e.kind,
            K::ParamBadLength {
                ty: ParamType::PE_IDENTIFIER,
                length,
                expected: "8"
            }
        );
    }
    // IPv4 address with length 6, IPv6 with length 8.
    let b = registration_with_pe_value(&pe(&[PE_FIXED, "00040010 00070000 00010006 c0000000", RR]));
    let e = asap_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (
            40,
            K::ParamBadLength {
                ty: ParamType::IPV4_ADDRESS,
                length: 6,
                expected: "8"
            }
        )
    );
    let b = registration_with_pe_value(&pe(&[PE_FIXED, "00040010 00070000 00020008 20010db8", RR]));
    let e = asap_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (
            40,
            K::ParamBadLength {
                ty: ParamType::IPV6_ADDRESS,
                length: 8,
                expected: "20"
            }
        )
    );
    // Handle Resolution option with 8 value bytes.
    let e = asap_err(&hex(
        "0500001c 0009000c 4563686f 506f6f6c 803f000c 00000003 00000000",
    ));
    assert_eq!(
        (e.offset, e.kind),
        (
            16,
            K::ParamBadLength {
                ty: ParamType::HANDLE_RESOLUTION_OPTION,
                length: 12,
                expected: "8"
            }
        )
    );
    // PE checksum with length 8.
    let e = enrp_err(&hex("01000014 11111111 00000000 000f0008 ffff0000"));
    assert_eq!(
        (e.offset, e.kind),
        (
            12,
            K::ParamBadLength {
                ty: ParamType::PE_CHECKSUM,
                length: 8,
                expected: "6"
            }
        )
    );
}

#[test]
fn invalid_values() {
    // Empty pool handle.
    let e = asap_err(&hex("05000008 00090004"));
    assert_eq!(
        (e.offset, e.kind),
        (
            4,
            K::InvalidValue {
                context: "Pool Handle",
                what: "empty pool handle"
            }
        )
    );
    // Operation Error without causes.
    let e = asap_err(&hex("0e000008 000c0004"));
    assert_eq!(
        (e.offset, e.kind),
        (
            4,
            K::InvalidValue {
                context: "Operation Error",
                what: "no error cause"
            }
        )
    );
    // Cause length below 4, and a cause running past its Operation Error.
    let e = asap_err(&hex("0e00000c 000c0008 00090002"));
    assert_eq!(
        (e.offset, e.kind),
        (
            8,
            K::InvalidValue {
                context: "Operation Error",
                what: "cause length below 4"
            }
        )
    );
    let e = asap_err(&hex("0e000010 000c000c 00030010 00000000"));
    assert_eq!(
        (e.offset, e.kind),
        (
            12,
            K::Truncated {
                what: "cause information",
                needed: 12,
                available: 4
            }
        )
    );
}

// ----------------------------------------------------------------------------------------
// Unknown parameters and messages: action bits

/// Handle resolution "EchoPool" + an unknown TLV of type `ty` with 5 value bytes
/// (length 9, 3 padding bytes), then a Handle Resolution option.
fn hr_with_unknown(ty: u16) -> (Vec<u8>, Vec<u8>) {
    let tlv = {
        let mut t = ty.to_be_bytes().to_vec();
        t.extend(hex("0009 0102030405 000000"));
        t
    };
    let mut b = hex("05000000 0009000c 4563686f 506f6f6c");
    b.extend(&tlv);
    b.extend(hex("803f0008 00000007"));
    let l = u16::try_from(b.len()).unwrap();
    b[2..4].copy_from_slice(&l.to_be_bytes());
    (b, tlv)
}

#[test]
fn unknown_parameter_00_stops_silently() {
    let (b, tlv) = hr_with_unknown(0x0077);
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.kind,
        K::UnrecognizedParameter {
            ty: ParamType(0x0077),
            tlv
        }
    );
    assert!(e.is_silent());
    assert_eq!(e.report_cause(&b), None);
}

#[test]
fn unknown_parameter_01_stops_and_reports() {
    let (b, tlv) = hr_with_unknown(0x4077);
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.kind,
        K::UnrecognizedParameter {
            ty: ParamType(0x4077),
            tlv: tlv.clone()
        }
    );
    assert!(!e.is_silent());
    let c = e.report_cause(&b).unwrap();
    assert_eq!(c.code, CauseCode::UNRECOGNIZED_PARAMETER);
    assert_eq!(c.info, tlv);
    assert_eq!(c.info.len(), 12); // the whole TLV, padding included
                                  // The report fits in an ASAP_ERROR that itself round-trips.
    let err = AsapMessage::Error {
        error: OperationError::single(c),
    };
    assert_eq!(decode_asap(&err.encode_to_vec()).unwrap().message, err);
    // Same in ENRP, inside a Pool Element's transport.
    let b = hex(
        "0400004c 11111111 22222222 00000000 0009000c 4563686f 506f6f6c
         000a0030 00000001 00000000 0000003c
           00040018 00070001 40990005 ab000000 00010008 c0000201 00080008 00000001",
    );
    let e = enrp_err(&b);
    assert_eq!(e.offset, 52);
    let c = e.report_cause(&b).unwrap();
    assert_eq!(c.code, CauseCode::UNRECOGNIZED_PARAMETER);
    assert_eq!(c.info, hex("40990005 ab000000"));
}

#[test]
fn unknown_parameter_10_skipped_silently() {
    let (b, tlv) = hr_with_unknown(0x8077);
    let d = decode_asap(&b).unwrap();
    assert_eq!(
        d.message,
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from("EchoPool"),
            items: Some(7),
        }
    );
    assert_eq!(d.unknown.len(), 1);
    assert_eq!(d.unknown[0].ty, ParamType(0x8077));
    assert_eq!(d.unknown[0].offset, 16);
    assert_eq!(d.unknown[0].value, hex("0102030405"));
    assert_eq!(d.unknown[0].tlv_bytes(), tlv);
    assert!(!d.unknown[0].must_report());
    assert!(d.report_causes().is_empty());
}

#[test]
fn unknown_parameter_11_skipped_and_reported() {
    let (b, tlv) = hr_with_unknown(0xC077);
    let d = decode_asap(&b).unwrap();
    assert_eq!(
        d.message,
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from("EchoPool"),
            items: Some(7),
        }
    );
    assert_eq!(
        d.report_causes(),
        vec![Cause::with_info(CauseCode::UNRECOGNIZED_PARAMETER, tlv)]
    );
    // Skipped TLVs nested deep inside (transport, PE) are collected too, one cause each.
    let b = hex(
        "0100004d 0009000c 4563686f 506f6f6c 000a003d 01020304 00000000 0000003c
           0004001c 00070001 c0010004 00010008 c0000201 80020006 ffff0000
         c0030004 00080008 00000001 c0040005 ee000000",
    );
    let d = decode_asap(&b).unwrap();
    let tys: Vec<u16> = d.unknown.iter().map(|u| u.ty.0).collect();
    assert_eq!(tys, [0xC001, 0x8002, 0xC003, 0xC004]);
    let offs: Vec<usize> = d.unknown.iter().map(|u| u.offset).collect();
    assert_eq!(offs, [40, 52, 60, 72]);
    let causes = d.report_causes();
    assert_eq!(causes.len(), 3);
    assert_eq!(causes[2].info, hex("c0040005 ee000000"));
    match d.message {
        AsapMessage::Registration { pe, .. } => {
            assert_eq!(pe.policy, Policy::RoundRobin);
            assert_eq!(
                pe.user_transport.as_ip().unwrap().addrs,
                vec!["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
            );
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn unknown_message_types() {
    // ASAP 0x0f (top bits 00): drop silently.
    let b = hex("0f000008 00000000");
    let e = asap_err(&b);
    assert_eq!(e.offset, 0);
    assert_eq!(
        e.kind,
        K::UnknownMessageType {
            protocol: Protocol::Asap,
            ty: 0x0f
        }
    );
    assert!(e.is_silent());
    assert_eq!(e.report_cause(&b), None);
    // ASAP 0x4f (top bits 01): drop and report cause 0x2 carrying the message.
    let b = hex("4f00000c 0009000c 01020304");
    let e = asap_err(&b);
    assert_eq!(
        e.kind,
        K::UnknownMessageType {
            protocol: Protocol::Asap,
            ty: 0x4f
        }
    );
    assert!(!e.is_silent());
    assert_eq!(
        e.report_cause(&b),
        Some(Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, b.clone()))
    );
    // Reserved top bits 10 / 11: no report.
    for ty in [0x8f, 0xcf, 0xff] {
        let b = [ty, 0, 0, 4];
        let e = asap_err(&b);
        assert!(e.is_silent(), "{ty:#x}");
        assert_eq!(e.report_cause(&b), None);
    }
    // Type 0 and the first unassigned types of each protocol.
    assert!(matches!(
        asap_err(&[0, 0, 0, 4]).kind,
        K::UnknownMessageType { ty: 0, .. }
    ));
    for (ty, report) in [(0x0b_u8, false), (0x4b, true), (0x00, false)] {
        let b = [ty, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2];
        let e = enrp_err(&b);
        assert_eq!(
            e.kind,
            K::UnknownMessageType {
                protocol: Protocol::Enrp,
                ty
            }
        );
        assert_eq!(e.report_cause(&b).is_some(), report);
        if report {
            assert_eq!(
                e.report_cause(&b).unwrap().code,
                CauseCode::UNRECOGNIZED_MESSAGE
            );
        }
    }
    // ASAP types 0x0b–0x0e are ENRP-unknown and vice versa only by number: an ASAP
    // cookie is not an ENRP message.
    assert!(matches!(
        enrp_err(&hex("0b00000d 000d0009 61626364 65000000")).kind,
        K::UnknownMessageType { ty: 0x0b, .. }
    ));
    // A missing parameter of the message (no parameter to quote): Unrecognized Message
    // quoting the message (it used to be a bare Unspecified Error).
    let b = hex("02000010 0009000c 4563686f 506f6f6c");
    let e = asap_err(&b);
    assert_eq!(
        e.report_cause(&b),
        Some(Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, b.clone()))
    );
    // A bad value inside a well-formed parameter: Invalid Values quoting that parameter.
    let b = hex("0200001c 0009000c 4563686f 506f6f6c 000e000c 00000001 00000002");
    let e = asap_err(&b);
    assert_eq!(e.offset, 16);
    assert_eq!(
        e.report_cause(&b),
        Some(Cause::with_info(
            CauseCode::INVALID_VALUES,
            hex("000e000c 00000001 00000002")
        ))
    );
}

// ----------------------------------------------------------------------------------------
// Huge counts

#[test]
fn thousands_of_skipped_tlvs() {
    // HR "EchoPool" followed by as many empty skip-silently TLVs as fit: 16379.
    let mut b = hex("05000000 0009000c 4563686f 506f6f6c");
    while b.len() + 4 <= 0xffff {
        b.extend(hex("80990004"));
    }
    let n = (b.len() - 16) / 4;
    assert_eq!(n, 16379);
    let l = u16::try_from(b.len()).unwrap();
    b[2..4].copy_from_slice(&l.to_be_bytes());
    let d = decode_asap(&b).unwrap();
    assert_eq!(d.unknown.len(), n);
    assert!(d.report_causes().is_empty());
    assert_eq!(
        d.message,
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::from("EchoPool"),
            items: None,
        }
    );
    // The same with report bits: one cause per TLV.
    for i in (16..b.len()).step_by(4) {
        b[i] = 0xc0;
    }
    assert_eq!(decode_asap(&b).unwrap().report_causes().len(), n);
    // And with stop bits somewhere near the end: stops there.
    let at = b.len() - 8;
    b[at] = 0x00;
    let e = asap_err(&b);
    assert_eq!(e.offset, b.len() - 8);
    assert!(e.is_silent());
}

#[test]
fn thousands_of_addresses_and_causes() {
    // Server announce with one SCTP transport holding 8189 IPv4 addresses (max size).
    let mut t = hex("00040000 0f170000");
    let mut i = 0u32;
    while 8 + t.len() + 8 <= 0xffff {
        t.extend(hex("00010008"));
        t.extend((0x0a00_0000 | i).to_be_bytes());
        i += 1;
    }
    let tl = u16::try_from(t.len()).unwrap();
    t[2..4].copy_from_slice(&tl.to_be_bytes());
    let mut b = hex("0a000000 11111111");
    b.extend(&t);
    let l = u16::try_from(b.len()).unwrap();
    b[2..4].copy_from_slice(&l.to_be_bytes());
    let d = decode_asap(&b).unwrap();
    match &d.message {
        AsapMessage::ServerAnnounce { transports, .. } => {
            assert_eq!(transports.len(), 1);
            assert_eq!(transports[0].addrs.len(), 8189);
            assert_eq!(
                transports[0].addrs[8188],
                "10.0.31.252".parse::<std::net::IpAddr>().unwrap()
            );
        }
        m => panic!("{m:?}"),
    }
    assert_eq!(d.message.encode_to_vec(), b);
    // ASAP_ERROR with 16381 empty causes.
    let mut b = hex("0e000000 000c0000");
    while b.len() + 4 <= 0xffff {
        b.extend(hex("00060004"));
    }
    let l = u16::try_from(b.len()).unwrap();
    b[2..4].copy_from_slice(&l.to_be_bytes());
    let ol = u16::try_from(b.len() - 4).unwrap();
    b[6..8].copy_from_slice(&ol.to_be_bytes());
    match decode_asap(&b).unwrap().message {
        AsapMessage::Error { error } => assert_eq!(error.causes.len(), 16381),
        m => panic!("{m:?}"),
    }
    // Handle table response with ~1000 tiny pools.
    let entry = hex(
        "00090005 41000000 000a0038 00000001 00000000 0000003c 00040010 00070001 00010008 c0000201
         00080008 00000001 00040010 0f170000 00010008 c0000201",
    );
    let mut b = hex("03020000 11111111 22222222");
    while b.len() + entry.len() <= 0xffff {
        b.extend(&entry);
    }
    let l = u16::try_from(b.len()).unwrap();
    b[2..4].copy_from_slice(&l.to_be_bytes());
    match decode_enrp(&b).unwrap().message {
        EnrpMessage::HandleTableResponse { pools, more, .. } => {
            assert!(more);
            assert_eq!(pools.len(), (0xffff - 12) / entry.len());
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn handle_resolution_items_extremes() {
    for (items, hexitems) in [(u32::MAX, "ffffffff"), (0, "00000000"), (128, "00000080")] {
        let b = hex(&format!(
            "05000018 0009000c 4563686f 506f6f6c 803f0008 {hexitems}"
        ));
        assert_eq!(
            decode_asap(&b).unwrap().message,
            AsapMessage::HandleResolution {
                subscribe: false,
                handle: PoolHandle::from("EchoPool"),
                items: Some(items),
            }
        );
    }
}

// ----------------------------------------------------------------------------------------
// No panics: prefixes and single-byte mutations

fn corpus() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        DEREG,
        REG,
        "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003",
        "0b00000d 000d0009 61626364 65000000",
        "0e000015 000c0011 00090004 00030009 61626364 65000000",
        "0701001c 11111111 0009000c 4563686f 506f6f6c 000e0008 12345678",
        "0a000034 12345678 0005001c 0f170000 00020014 20010db8 00000000 00000000 00000063
         00040010 0f170001 00010008 c0000263",
        "0601007c 00090005 50000000 0008000c 40000001 80000000
         000a0064 deadbeef 11111111 ffffffff
           0006001c 1f900000 00020014 20010db8 00000000 00000000 00000001
           00080014 b0002001 00000005 00010000 00000032
           00040024 0f170000 00010008 c0000202 00020014 20010db8 00000000 00000000 00000002",
        "0101002c 11111111 00000000 000f0006 8e4b0000 000b0018 11111111 00040010
         26ad0000 00010008 c000020a",
        "04010058 22222222 33333333 00010000 0009000c 4563686f 506f6f6c
         000a003c 01020304 22222222 00007530
           00050010 00500000 00010008 c0000203
           0008000c 00000005 00000007
           00040010 0f170000 00010008 c0000203",
        "0a000017 aaaaaaaa bbbbbbbb 000c000b 00030007 61626300",
        "07000010 11111111 22222222 33333333",
    ]
    .iter()
    .map(|s| hex(s))
    .collect();
    v.push(registration_with_pe_value(&pe(&[
        PE_FIXED,
        "00030020 00070000 0000002a 00020014 20010db8 00000000 00000000 00000001",
        "00080018 b0002003 00000001 00000002 00000003 00000004",
        SCTP_V4,
    ])));
    v
}

/// Decode both ways; for whatever decodes, the round trip must hold.
fn no_panic(b: &[u8]) -> bool {
    let mut ok = false;
    if let Ok(d) = decode_asap(b) {
        ok = true;
        assert_eq!(
            decode_asap(&d.message.encode_to_vec()).unwrap().message,
            d.message
        );
    } else if let Err(e) = decode_asap(b) {
        let _ = (e.report_cause(b), e.to_string());
    }
    if let Ok(d) = decode_enrp(b) {
        ok = true;
        assert_eq!(
            decode_enrp(&d.message.encode_to_vec()).unwrap().message,
            d.message
        );
    } else if let Err(e) = decode_enrp(b) {
        let _ = (e.report_cause(b), e.to_string());
    }
    ok
}

#[test]
fn every_prefix_fails_cleanly() {
    for m in corpus() {
        assert!(
            no_panic(&m),
            "corpus message does not decode: {}",
            hex::encode(&m)
        );
        let len = usize::from(u16::from_be_bytes([m[2], m[3]]));
        for n in 0..m.len() {
            let ok = no_panic(&m[..n]);
            // Shorter than its Message Length: never decodes. Up to 3 missing pad bytes: fine.
            assert_eq!(ok, n >= len, "prefix {n} of {}", hex::encode(&m));
        }
    }
}

#[test]
fn every_single_byte_mutation_is_handled() {
    let mut decoded = 0usize;
    let mut total = 0usize;
    for m in corpus() {
        for i in 0..m.len() {
            for v in 0..=255u8 {
                if v == m[i] {
                    continue;
                }
                let mut b = m.clone();
                b[i] = v;
                total += 1;
                decoded += usize::from(no_panic(&b));
            }
        }
    }
    // Sanity: the mutations exercised both outcomes.
    assert!(decoded > 1000 && decoded < total, "{decoded}/{total}");
}

// ----------------------------------------------------------------------------------------
// Reports must be sendable

/// Wrap causes in an ASAP_ERROR and an ENRP_ERROR; both must encode to messages that
/// decode back to the same causes.
fn assert_reportable(causes: Vec<Cause>) {
    let error = OperationError { causes };
    let a = AsapMessage::Error {
        error: error.clone(),
    };
    let bytes = a.encode_to_vec();
    assert!(bytes.len() <= 65536, "ASAP_ERROR of {} bytes", bytes.len());
    assert_eq!(decode_asap(&bytes).unwrap().message, a);
    let e = EnrpMessage::Error {
        sender: ServerId(1),
        receiver: ServerId(2),
        error,
    };
    let bytes = e.encode_to_vec();
    assert!(bytes.len() <= 65536, "ENRP_ERROR of {} bytes", bytes.len());
    assert_eq!(decode_enrp(&bytes).unwrap().message, e);
}

#[test]
fn reports_for_maximum_size_inputs_fit_in_an_error_message() {
    // A 65535-byte unknown message with report bits: cause 0x2 carries (a prefix of) it.
    let mut m = vec![0u8; 65535];
    m[..4].copy_from_slice(&[0x4f, 0x00, 0xff, 0xff]);
    for e in [asap_err(&m), enrp_err(&m)] {
        let c = e.report_cause(&m).unwrap();
        assert_eq!(c.code, CauseCode::UNRECOGNIZED_MESSAGE);
        assert!(m.starts_with(&c.info));
        assert_reportable(vec![c]);
    }
    // A maximum-size unknown parameter (stop and report): cause 0x1 carries (a prefix of) it.
    let mut m = vec![0u8; 65535];
    m[..8].copy_from_slice(&[0x05, 0x00, 0xff, 0xff, 0x40, 0x77, 0xff, 0xfb]);
    let e = asap_err(&m);
    let c = e.report_cause(&m).unwrap();
    assert_eq!(c.code, CauseCode::UNRECOGNIZED_PARAMETER);
    assert!(m[4..].starts_with(&c.info));
    assert_reportable(vec![c]);
    // The same TLV skipped and reported (action 11) after a pool handle.
    let mut m = vec![0u8; 65535];
    m[..12].copy_from_slice(&[
        0x05, 0x00, 0xff, 0xff, 0x00, 0x09, 0x00, 0x05, 0x41, 0x00, 0x00, 0x00,
    ]);
    m[12..16].copy_from_slice(&[0xc0, 0x77, 0xff, 0xf3]);
    let d = decode_asap(&m).unwrap();
    let causes = d.report_causes();
    assert_eq!(causes.len(), 1);
    assert!(m[12..].starts_with(&causes[0].info));
    assert_reportable(causes);
}

// ----------------------------------------------------------------------------------------
// The most specific cause, with the offending bytes (issue 8, item 7)

/// The cause reported for `b` (decoded as ASAP), checked to be sendable and never a bare
/// Invalid Values.
fn reported(b: &[u8]) -> (CauseCode, Vec<u8>) {
    let e = asap_err(b);
    let c = e.report_cause(b).unwrap_or_else(|| panic!("silent: {e}"));
    assert!(
        !c.info.is_empty(),
        "{e}: cause {:#06x} without information",
        c.code.0
    );
    assert_reportable(vec![c.clone()]);
    (c.code, c.info)
}

#[test]
fn broken_parameter_lengths_are_reported_with_the_parameter() {
    const HR: &str = "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003";
    // Pool Handle Length 0xFFFF: Invalid Values quoting the parameter as far as it goes.
    let mut b = hex(HR);
    b[6..8].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(
        reported(&b),
        (CauseCode::INVALID_VALUES, b[4..].to_vec()),
        "length 0xffff"
    );
    // Lengths 2 and 0: the parameter is its 4 header bytes.
    for l in [2u8, 0] {
        let mut b = hex(HR);
        b[7] = l;
        assert_eq!(
            reported(&b),
            (CauseCode::INVALID_VALUES, vec![0x00, 0x09, 0x00, l]),
            "length {l}"
        );
    }
    // HR option Length 0xFFF0.
    let mut b = hex(HR);
    b[18..20].copy_from_slice(&[0xff, 0xf0]);
    assert_eq!(
        reported(&b),
        (CauseCode::INVALID_VALUES, hex("803ffff0 00000003"))
    );
    // Nested: an IPv4 address of length 2, and one running past its transport.
    let mut b = hex(REG);
    b[43] = 2;
    assert_eq!(reported(&b), (CauseCode::INVALID_VALUES, hex("00010002")));
    let mut b = hex(REG);
    b[43] = 0x0c;
    assert_eq!(
        reported(&b),
        (CauseCode::INVALID_VALUES, hex("0001000c c0000201"))
    );
}

#[test]
fn missing_and_truncated_parts_are_reported_with_what_encloses_them() {
    // No Pool Handle at all: the message is quoted (Unrecognized Message).
    for m in ["05000004", "01000004", "02000004", "09000004"] {
        let b = hex(m);
        assert_eq!(
            reported(&b),
            (CauseCode::UNRECOGNIZED_MESSAGE, b.clone()),
            "{m}"
        );
    }
    // Keep-alive without its Server Identifier; a parameter header cut after 2 bytes.
    for m in ["07000004", "02000012 0009000c 4563686f 506f6f6c 000e"] {
        let b = hex(m);
        assert_eq!(
            reported(&b),
            (CauseCode::UNRECOGNIZED_MESSAGE, b.clone()),
            "{m}"
        );
    }
    // Message Length past the bytes received.
    let mut b = hex(DEREG);
    b[2..4].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(reported(&b), (CauseCode::UNRECOGNIZED_MESSAGE, b.clone()));
    // Inside a parameter: the Pool Element is quoted (policy missing; fixed fields cut).
    let b = registration_with_pe_value(&pe(&[PE_FIXED, SCTP_V4]));
    assert_eq!(
        reported(&b),
        (CauseCode::INVALID_VALUES, b[16..48].to_vec())
    );
    let b = registration_with_pe_value(&hex("00000001 0000"));
    assert_eq!(
        reported(&b),
        (CauseCode::INVALID_VALUES, hex("000a000a 00000001 00000000"))
    );
    // An error cause of length 2 inside an Operation Error: the Operation Error.
    let b = hex("0e000010 000c000c 00030002 00000000");
    assert_eq!(reported(&b), (CauseCode::INVALID_VALUES, b[4..].to_vec()));
}

#[test]
fn enrp_messages_fail_as_asap_where_their_server_ids_fall() {
    // Over TCP an ENRP message sent to the ASAP port is read as ASAP: the type codes
    // overlap (1…10), and the ENRP server identifiers at offsets 4 and 8 are read as a
    // parameter header. Where it fails depends on those IDs, so the cores recognise a
    // well-formed ENRP message and answer Unrecognized Message instead (rserpool-proto).
    for (sender, receiver) in [(0x5eed_0001u32, 0u32), (0x8a3f_27c1, 0x1c2d_3e4f)] {
        let (s, r) = (ServerId(sender), ServerId(receiver));
        let t = ServerId(0x7777_7777);
        for m in [
            EnrpMessage::HandleTableRequest {
                own_children_only: false,
                sender: s,
                receiver: r,
            },
            EnrpMessage::ListRequest {
                sender: s,
                receiver: r,
            },
            EnrpMessage::InitTakeover {
                sender: s,
                receiver: r,
                target: t,
            },
            EnrpMessage::InitTakeoverAck {
                sender: s,
                receiver: r,
                target: t,
            },
            EnrpMessage::TakeoverServer {
                sender: s,
                receiver: r,
                target: t,
            },
            EnrpMessage::Error {
                sender: s,
                receiver: r,
                error: OperationError::code(CauseCode::UNSPECIFIED),
            },
        ] {
            let b = m.encode_to_vec();
            assert!(decode_enrp(&b).is_ok());
            let (code, info) = reported(&b);
            assert_eq!(code, CauseCode::INVALID_VALUES, "{m:?}");
            // The quoted "parameter" starts at a server ID.
            let at = if matches!(
                m,
                EnrpMessage::InitTakeover { .. } | EnrpMessage::Error { .. }
            ) {
                8 // ASAP Keep-Alive / Server Announce: offset 4 is their Server Identifier
            } else {
                4
            };
            assert_eq!(&info[..], &b[at..at + info.len()], "{m:?}");
        }
    }
}
