//! Hardening of the wire (issue 8, items 6 and 7) through real sockets: bad input sent to a
//! real `rsp registrar` over TCP gets the exact answer (cause code and quoted bytes), every
//! answer's length field equals its size, and the stream stays in sync afterwards (a
//! normal request on the same connection still gets its answer). Every answer small enough
//! for the oracle goes through Wireshark's dissector.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rserpool_wire::codec::{self, pad4, MAX_MESSAGE_LEN};
use rserpool_wire::*;
use support::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// The next answer that is not a keep-alive (the registrar probes PEs registered over this
/// connection), as bytes and decoded. The stream is cut at each length field, so a length
/// field that does not say the size leaves garbage for the next answer.
fn answer(c: &mut Raw) -> (Vec<u8>, AsapMessage) {
    loop {
        let b = recv_raw(c).expect("the registrar closed the connection");
        let m = decode_asap(&b)
            .unwrap_or_else(|e| panic!("answer does not decode ({e}): {}", short_hex(&b)))
            .message;
        if !matches!(m, AsapMessage::EndpointKeepAlive { .. }) {
            return (b, m);
        }
    }
}

fn short_hex(b: &[u8]) -> String {
    let h = hex::encode(&b[..b.len().min(64)]);
    if b.len() > 64 {
        format!("{h}… ({} bytes)", b.len())
    } else {
        h
    }
}

/// A normal request on the same connection still gets its answer: the stream is in sync.
fn in_sync(c: &mut Raw, after: &str) {
    c.send_msg(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: "SyncPool".into(),
        items: None,
    });
    match answer(c).1 {
        AsapMessage::HandleResolutionResponse { handle, error, .. } => {
            assert_eq!(handle, PoolHandle::from("SyncPool"), "after {after}");
            assert_eq!(
                error.and_then(|e| e.first_code()),
                Some(CauseCode::UNKNOWN_POOL_HANDLE),
                "after {after}"
            );
        }
        other => panic!("after {after}: out of sync, got {other:?}"),
    }
}

fn error_of(m: &AsapMessage) -> Vec<(CauseCode, Vec<u8>)> {
    match m {
        AsapMessage::Error { error } => error
            .causes
            .iter()
            .map(|c| (c.code, c.info.clone()))
            .collect(),
        other => panic!("expected ASAP_ERROR, got {other:?}"),
    }
}

/// Dissect what the registrar sent (not what it received: that is the bad input), where
/// the oracle can carry it (at most 65,487 bytes). Answers quoting received bytes that
/// are malformed themselves (cause 0x2 with the message, cause 0x3 with a parameter whose
/// own Length is broken) are checked by the lint alone: Wireshark dissects the quote and
/// flags what the sender broke. Everything else must pass Wireshark too.
fn dissect_answers(dir: &Path, log: &Path, reg: &Registrar) -> BTreeSet<String> {
    let tx = format!("tx.asap.{}.", reg.proc.pid());
    let bytes_of =
        |l: &str| hex::decode(l.split('=').nth(1).unwrap_or_default()).unwrap_or_default();
    let quotes_garbage = |l: &str| {
        let b = bytes_of(l);
        let Ok(d) = decode_asap(&b) else { return false };
        let AsapMessage::Error { error } = d.message else {
            return false;
        };
        error.causes.iter().any(|c| match c.code {
            CauseCode::UNRECOGNIZED_MESSAGE => true,
            CauseCode::INVALID_VALUES => {
                let len = c
                    .info
                    .get(2..4)
                    .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
                len < 4 || len > c.info.len()
            }
            _ => false,
        })
    };
    dissect(
        dir,
        log,
        |l| {
            let hex_len = l.split('=').nth(1).map_or(0, str::len);
            l.starts_with(&tx) && hex_len / 2 <= 65_487
        },
        quotes_garbage,
    )
}

#[test]
fn malformed_parameters_get_the_specific_cause_and_the_stream_stays_in_sync() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("hw-causes");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let hr = hex("05000018 0009000c 4563686f 506f6f6c 803f0008 00000003");
        let with = |at: usize, v: &[u8]| {
            let mut b = hr.clone();
            b[at..at + v.len()].copy_from_slice(v);
            b
        };
        let mut hr_ffff = hr[4..].to_vec();
        hr_ffff[2..4].copy_from_slice(&[0xff, 0xff]);
        // A registration whose Pool Element has no policy: the PE is quoted.
        let mut no_policy = registration(b"EchoPool", 0x77, Policy::RoundRobin, 9).encode_to_vec();
        let pe_at = 16;
        let pe_len = usize::from(u16::from_be_bytes([
            no_policy[pe_at + 2],
            no_policy[pe_at + 3],
        ]));
        let cut = pe_len - 8; // without the 8-byte RR policy TLV at its end
        no_policy.truncate(pe_at + cut);
        no_policy[pe_at + 2..pe_at + 4].copy_from_slice(&u16::try_from(cut).unwrap().to_be_bytes());
        let total = u16::try_from(no_policy.len()).unwrap();
        no_policy[2..4].copy_from_slice(&total.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, CauseCode, Vec<u8>)> = vec![
            (
                "handle length 0xffff",
                with(6, &[0xff, 0xff]),
                CauseCode::INVALID_VALUES,
                hr_ffff,
            ),
            (
                "handle length 2",
                with(6, &[0, 2]),
                CauseCode::INVALID_VALUES,
                hex("00090002"),
            ),
            (
                "handle length 0",
                with(6, &[0, 0]),
                CauseCode::INVALID_VALUES,
                hex("00090000"),
            ),
            (
                "HR option length 0xfff0",
                with(18, &[0xff, 0xf0]),
                CauseCode::INVALID_VALUES,
                hex("803ffff0 00000003"),
            ),
            (
                "no pool handle (HR)",
                hex("05000004"),
                CauseCode::UNRECOGNIZED_MESSAGE,
                hex("05000004"),
            ),
            (
                "no pool handle (registration)",
                hex("01000004"),
                CauseCode::UNRECOGNIZED_MESSAGE,
                hex("01000004"),
            ),
            (
                "PE without policy",
                no_policy.clone(),
                CauseCode::INVALID_VALUES,
                no_policy[pe_at..].to_vec(),
            ),
        ];
        // All on one connection: each answer must leave the stream in sync.
        let mut c = Raw::connect(&reg.asap);
        in_sync(&mut c, "connecting");
        for (what, bytes, code, info) in cases {
            c.send(&bytes);
            let (_, m) = answer(&mut c);
            assert_eq!(error_of(&m), vec![(code, info)], "{what}");
            in_sync(&mut c, what);
        }
        drop(c);
        let names = dissect_answers(&dir, &log, &reg);
        assert!(names.contains("ASAP_ERROR"), "{names:?}");
    });
}

#[test]
fn enrp_messages_on_the_asap_port_are_unrecognized_messages() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("hw-enrp");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let lo = IpAddr::from([127, 0, 0, 1]);
        let si = ServerInfo {
            server_id: ServerId(0x5eed_0001),
            transport: TransportAddr::sctp(9901, TransportUse::DATA_ONLY, vec![lo]),
        };
        let pe = PoolElement {
            id: PeId(0x1234),
            home_registrar: ServerId(0x5eed_0001),
            registration_life: 30_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(80, lo)),
            policy: Policy::RoundRobin,
            asap_transport: Some(TransportAddr::sctp(3863, TransportUse::DATA_ONLY, vec![lo])),
        };
        let mut c = Raw::connect(&reg.asap);
        for (s, r) in [
            (ServerId(0x5eed_0001), ServerId(0)),
            (ServerId(0x8a3f_27c1), ServerId(0x1c2d_3e4f)),
        ] {
            let t = ServerId(0x7777_7777);
            let msgs = [
                EnrpMessage::Presence {
                    reply_required: true,
                    sender: s,
                    receiver: r,
                    checksum: Some(0x8e4b),
                    server_info: Some(si.clone()),
                },
                EnrpMessage::HandleTableRequest {
                    own_children_only: false,
                    sender: s,
                    receiver: r,
                },
                EnrpMessage::HandleTableResponse {
                    reject: false,
                    more: false,
                    sender: s,
                    receiver: r,
                    pools: vec![PoolEntry {
                        handle: "EchoPool".into(),
                        pes: vec![pe.clone()],
                    }],
                },
                EnrpMessage::HandleUpdate {
                    takeover: false,
                    sender: s,
                    receiver: r,
                    action: UpdateAction::ADD_PE,
                    handle: "EchoPool".into(),
                    pe: pe.clone(),
                },
                EnrpMessage::ListRequest {
                    sender: s,
                    receiver: r,
                },
                EnrpMessage::ListResponse {
                    reject: false,
                    sender: s,
                    receiver: r,
                    servers: vec![si.clone()],
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
            ];
            for m in msgs {
                let bytes = m.encode_to_vec();
                c.send(&bytes);
                let what = enrp_type_name(m.type_code()).unwrap();
                let (_, got) = answer(&mut c);
                assert_eq!(
                    error_of(&got),
                    vec![(CauseCode::UNRECOGNIZED_MESSAGE, bytes)],
                    "{what} from {s:?}"
                );
                in_sync(&mut c, what);
            }
        }
        drop(c);
        let names = dissect_answers(&dir, &log, &reg);
        assert!(names.contains("ASAP_ERROR"), "{names:?}");
    });
}

/// The quote of an over-long handle: a Pool Handle TLV with its first `max + 1` bytes.
fn handle_quote(h: &[u8], max: usize) -> Vec<u8> {
    codec::pool_handle_tlv_prefix(&PoolHandle::new(h.to_vec()), max + 1)
}

fn handle(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn oversized_replies_fit_their_length_field_and_the_stream_stays_in_sync() {
    bounded(Duration::from_secs(240), || {
        let dir = scratch("hw-size");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &[]);
        let mut c = Raw::connect(&reg.asap);

        // Issue 8: a 65,000-byte handle got a 130,028-byte reply whose length said 65,535.
        let h = handle(65_000);
        c.send_msg(&registration(&h, 0x4444, Policy::RoundRobin, 9));
        let (b, m) = answer(&mut c);
        assert_eq!(b.len(), 4 + 65_004 + 8 + 4 + 4 + 72);
        match m {
            AsapMessage::RegistrationResponse {
                reject,
                handle,
                error,
                ..
            } => {
                assert!(reject);
                assert_eq!(handle.0, h);
                assert_eq!(
                    error.unwrap().causes,
                    vec![Cause::with_info(
                        CauseCode::INVALID_VALUES,
                        handle_quote(&h, 64)
                    )]
                );
            }
            other => panic!("{other:?}"),
        }
        in_sync(&mut c, "65,000-byte registration");
        // … and a resolution with a 65,520-byte handle (negative answer: 65,536 bytes).
        let h = handle(65_520);
        c.send_msg(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::new(h.clone()),
            items: None,
        });
        let (_, m) = answer(&mut c);
        assert_eq!(
            error_of(&m),
            vec![(CauseCode::INVALID_VALUES, handle_quote(&h, 64))]
        );
        in_sync(&mut c, "65,520-byte resolution");

        // The boundaries: where the negative resolution response reaches 65,535 bytes
        // (handle 65,516 → 65,532; 65,517 → 65,536), where a quote must be cut beside the
        // echoed handle, and the largest handles a request can carry.
        for n in [
            65_436, 65_437, 65_440, 65_441, 65_483, 65_487, 65_488, 65_499, 65_500, 65_515, 65_516,
            65_517, 65_519, 65_520, 65_523, 65_524, 65_527,
        ] {
            let h = handle(n);
            let reg_msg = registration(&h, 0x5555, Policy::RoundRobin, 9);
            if let Ok(bytes) = reg_msg.try_encode_to_vec() {
                c.send(&bytes);
                let (_, m) = answer(&mut c);
                let AsapMessage::RegistrationResponse {
                    reject: true,
                    handle,
                    error: Some(e),
                    ..
                } = m
                else {
                    panic!("handle {n}: {m:?}")
                };
                assert_eq!(handle.0, h);
                let q = handle_quote(&h, 64);
                assert!(q.starts_with(&e.causes[0].info), "handle {n}");
                let full = 4 + pad4(4 + n) + 8 + 8 + q.len() <= MAX_MESSAGE_LEN;
                assert_eq!(e.causes[0].info.len() == q.len(), full, "handle {n}");
                in_sync(&mut c, &format!("registration with a {n}-byte handle"));
            }
            let hr = AsapMessage::HandleResolution {
                subscribe: false,
                handle: PoolHandle::new(h.clone()),
                items: None,
            };
            c.send_msg(&hr);
            let (_, m) = answer(&mut c);
            match m {
                AsapMessage::HandleResolutionResponse { handle, error, .. } => {
                    assert!(n <= 65_516, "handle {n}");
                    assert_eq!(handle.0, h);
                    assert_eq!(
                        error.unwrap().first_code(),
                        Some(CauseCode::UNKNOWN_POOL_HANDLE)
                    );
                }
                AsapMessage::Error { .. } => {
                    assert!(n >= 65_517, "handle {n}");
                    assert_eq!(
                        error_of(&m),
                        vec![(CauseCode::INVALID_VALUES, handle_quote(&h, 64))]
                    );
                }
                other => panic!("handle {n}: {other:?}"),
            }
            in_sync(&mut c, &format!("resolution with a {n}-byte handle"));
            let dereg = AsapMessage::Deregistration {
                handle: PoolHandle::new(h.clone()),
                pe_id: PeId(0x5555),
            };
            if let Ok(bytes) = dereg.try_encode_to_vec() {
                c.send(&bytes);
                let (_, m) = answer(&mut c);
                assert!(
                    matches!(&m, AsapMessage::DeregistrationResponse { handle, error: None, .. } if handle.0 == h),
                    "handle {n}: {m:?}"
                );
                in_sync(&mut c, &format!("deregistration with a {n}-byte handle"));
            }
        }
        drop(c);
        let names = dissect_answers(&dir, &log, &reg);
        for want in [
            "ASAP_ERROR",
            "ASAP_REGISTRATION_RESPONSE",
            "ASAP_DEREGISTRATION_RESPONSE",
        ] {
            assert!(names.contains(want), "{want}: {names:?}");
        }
    });
}

#[test]
fn the_largest_handle_limit_registers_resolves_and_refuses_at_the_boundary() {
    bounded(Duration::from_secs(120), || {
        let dir = scratch("hw-max");
        let log = dir.join("wire.log");
        let reg = start_registrar("tcp://127.0.0.1:0", &log, &["--max-handle-length", "65000"]);
        let mut c = Raw::connect(&reg.asap);
        // 65,000 bytes: registered, resolved (response 65,016 + policy + PE), deregistered.
        let h = handle(65_000);
        c.send_msg(&registration(&h, 0x6666, Policy::RoundRobin, 9));
        assert!(matches!(
            answer(&mut c).1,
            AsapMessage::RegistrationResponse {
                reject: false,
                error: None,
                ..
            }
        ));
        c.send_msg(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::new(h.clone()),
            items: None,
        });
        match answer(&mut c).1 {
            AsapMessage::HandleResolutionResponse { pes, .. } => {
                assert_eq!(
                    pes.iter().map(|p| p.id).collect::<Vec<_>>(),
                    vec![PeId(0x6666)]
                );
            }
            other => panic!("{other:?}"),
        }
        in_sync(&mut c, "65,000-byte resolution");
        c.send_msg(&AsapMessage::Deregistration {
            handle: PoolHandle::new(h.clone()),
            pe_id: PeId(0x6666),
        });
        assert!(matches!(
            answer(&mut c).1,
            AsapMessage::DeregistrationResponse { error: None, .. }
        ));
        // 65,001 bytes: refused; the quote (65,001 bytes) is cut to fit beside the echo.
        let h = handle(65_001);
        c.send_msg(&registration(&h, 0x6667, Policy::RoundRobin, 9));
        let (b, m) = answer(&mut c);
        let AsapMessage::RegistrationResponse {
            reject: true,
            error: Some(e),
            ..
        } = m
        else {
            panic!("{m:?}")
        };
        let q = handle_quote(&h, 65_000);
        assert_eq!(q.len(), 4 + 65_001 + 3);
        assert!(q.starts_with(&e.causes[0].info));
        assert!(
            b.len() + 4 > MAX_MESSAGE_LEN,
            "cut more than needed: {}",
            b.len()
        );
        in_sync(&mut c, "65,001-byte registration");
        drop(c);
        let names = dissect_answers(&dir, &log, &reg);
        for want in [
            "ASAP_REGISTRATION_RESPONSE",
            "ASAP_HANDLE_RESOLUTION_RESPONSE",
        ] {
            assert!(names.contains(want), "{want}: {names:?}");
        }
    });
}
