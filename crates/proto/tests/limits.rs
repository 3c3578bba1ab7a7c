//! The registrar core never sends a message its 16-bit length field cannot describe, and
//! answers every malformed input with the most specific cause (issue 8, items 6 and 7).
//!
//! A sweep of pool handle sizes from 1 to 65,535 bytes (a prime step plus every size near
//! the limits) goes through registration, handle resolution and deregistration, with the
//! default handle limit (64) and the largest one `rsp registrar` accepts (65,000): every
//! reply is one message whose length field equals its size and which decodes.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rserpool_proto::io::{ConnId, Core, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::codec::{self, pad4, MAX_MESSAGE_LEN};
use rserpool_wire::*;

fn meta() -> RecvMeta {
    RecvMeta {
        protocol: Protocol::Asap,
        transport: TransportProto::Tcp,
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        peer_addrs: vec![IpAddr::from([127, 0, 0, 1])],
        identity: None,
    }
}

struct Reg {
    core: Registrar,
    now: Instant,
    conn: ConnId,
}

impl Reg {
    fn new(max_handle_len: usize) -> Reg {
        let mut cfg = RegistrarConfig::default();
        cfg.handlespace.max_handle_len = max_handle_len;
        let mut core = Registrar::new(cfg, 7);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        core.handle_timeout(now);
        let conn = ConnId(1);
        core.handle_transport(now, TransportEvent::Accepted { conn, meta: meta() });
        Reg { core, now, conn }
    }

    /// Feed `bytes` and return every reply as raw bytes, each checked: one message whose
    /// length field is its size (padding aside) and at most 65,535.
    fn ask(&mut self, bytes: &[u8]) -> Vec<(Vec<u8>, AsapMessage)> {
        self.core
            .handle_message(self.now, self.conn, &meta(), bytes);
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            let b = t.bytes;
            assert!(b.len() >= 4, "empty transmit");
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            assert!(len <= MAX_MESSAGE_LEN);
            assert_eq!(b.len(), pad4(len), "length field {len}, {} bytes", b.len());
            let m = decode_asap(&b)
                .unwrap_or_else(|e| panic!("reply does not decode: {e}"))
                .message;
            out.push((b, m));
        }
        while self.core.poll_event().is_some() {}
        out
    }

    fn ask_one(&mut self, m: &AsapMessage) -> Option<(Vec<u8>, AsapMessage)> {
        let bytes = m.try_encode_to_vec().ok()?;
        let mut got = self.ask(&bytes);
        assert_eq!(
            got.len(),
            1,
            "one reply to {}",
            asap_type_name(m.type_code()).unwrap_or("?")
        );
        got.pop()
    }
}

fn handle(n: usize) -> PoolHandle {
    PoolHandle::new((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())
}

fn pe(id: u32) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(0),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(80, IpAddr::from([127, 0, 0, 1]))),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (1..=65_535).step_by(97).collect();
    for (a, b) in [(1, 70), (64_990, 65_010), (65_420, 65_535)] {
        v.extend(a..=b);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The Invalid Values cause an over-long handle gets: its first `max + 1` bytes.
fn handle_quote(h: &PoolHandle, max: usize) -> Cause {
    Cause::with_info(
        CauseCode::INVALID_VALUES,
        codec::pool_handle_tlv_prefix(h, max + 1),
    )
}

#[test]
fn sweep_handle_sizes_through_registration_resolution_and_deregistration() {
    for max in [64usize, 65_000] {
        let mut r = Reg::new(max);
        let (mut registered, mut refused, mut fallback) = (0, 0, 0);
        for n in sizes() {
            let h = handle(n);
            let id = u32::try_from(n).unwrap();
            // Registration (when such a request fits in a message at all).
            let reg = AsapMessage::Registration {
                handle: h.clone(),
                pe: pe(id),
            };
            if let Some((_, reply)) = r.ask_one(&reg) {
                match reply {
                    AsapMessage::RegistrationResponse {
                        reject,
                        handle: echoed,
                        pe_id,
                        error,
                    } => {
                        assert_eq!((echoed, pe_id), (h.clone(), PeId(id)), "handle {n}");
                        if n <= max {
                            assert!(!reject && error.is_none(), "handle {n}: {error:?}");
                            registered += 1;
                        } else {
                            assert!(reject, "handle {n}");
                            // Quoted in part: max + 1 bytes, not the whole handle again
                            // (and that cut further by the encoder when even it does not
                            // fit beside the echoed handle).
                            let want = handle_quote(&h, max);
                            let e = error.expect("a cause");
                            assert_eq!(e.causes.len(), 1);
                            let got = &e.causes[0];
                            assert_eq!(got.code, want.code);
                            if 4 + pad4(4 + n) + 8 + 8 + want.info.len() <= MAX_MESSAGE_LEN {
                                assert_eq!(got.info, want.info, "handle {n}");
                            } else {
                                assert!(want.info.starts_with(&got.info), "handle {n}");
                                assert!(got.info.len() < want.info.len(), "handle {n}");
                            }
                            refused += 1;
                        }
                    }
                    other => panic!("handle {n}: {other:?}"),
                }
            }
            // Handle resolution.
            let hr = AsapMessage::HandleResolution {
                subscribe: false,
                handle: h.clone(),
                items: None,
            };
            let Some((_, reply)) = r.ask_one(&hr) else {
                assert!(n > MAX_MESSAGE_LEN - 8, "handle {n}: request refused");
                continue;
            };
            match reply {
                AsapMessage::HandleResolutionResponse {
                    handle: echoed,
                    pes,
                    error,
                    ..
                } => {
                    assert_eq!(echoed, h, "handle {n}");
                    if n <= max && n + 200 < MAX_MESSAGE_LEN {
                        assert_eq!(pes.len(), 1, "handle {n}: {error:?}");
                    } else {
                        assert!(pes.is_empty());
                        assert_eq!(
                            error.and_then(|e| e.first_code()),
                            Some(CauseCode::UNKNOWN_POOL_HANDLE)
                        );
                    }
                }
                // The negative response cannot echo the handle: an error quoting it.
                AsapMessage::Error { error } => {
                    assert!(n > max, "handle {n}");
                    assert_eq!(error, OperationError::single(handle_quote(&h, max)));
                    assert!(4 + pad4(4 + n) + 8 > MAX_MESSAGE_LEN, "handle {n}");
                    fallback += 1;
                }
                other => panic!("handle {n}: {other:?}"),
            }
            // Deregistration (of a registered or unknown PE): success, echoing the handle.
            let dereg = AsapMessage::Deregistration {
                handle: h.clone(),
                pe_id: PeId(id),
            };
            if let Some((_, reply)) = r.ask_one(&dereg) {
                assert_eq!(
                    reply,
                    AsapMessage::DeregistrationResponse {
                        handle: h.clone(),
                        pe_id: PeId(id),
                        error: None
                    },
                    "handle {n}"
                );
            }
        }
        assert!(
            registered > 60 && refused > 50 && fallback > 10,
            "{registered}/{refused}/{fallback}"
        );
        assert_eq!(r.core.counters().unencodable, fallback);
        assert_eq!(r.core.handlespace().pools().count(), 0);
    }
}

#[test]
fn oversized_answers_stay_within_the_length_field() {
    let mut r = Reg::new(64);
    // Issue 8: a registration with a 65,000-byte handle used to get a 130,028-byte reply
    // whose length field said 65,535.
    let h = handle(65_000);
    let (bytes, reply) = r
        .ask_one(&AsapMessage::Registration {
            handle: h.clone(),
            pe: pe(1),
        })
        .unwrap();
    assert_eq!(bytes.len(), 4 + 65_004 + 8 + 4 + 4 + 72);
    assert!(matches!(
        reply,
        AsapMessage::RegistrationResponse { reject: true, error: Some(e), .. }
            if e == OperationError::single(handle_quote(&h, 64))
    ));
    // A resolution with a 65,520-byte handle: the negative response would be 65,536 bytes.
    let h = handle(65_520);
    let (bytes, reply) = r
        .ask_one(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: h.clone(),
            items: None,
        })
        .unwrap();
    assert_eq!(
        reply,
        AsapMessage::Error {
            error: OperationError::single(handle_quote(&h, 64))
        }
    );
    assert_eq!(bytes.len(), 4 + 4 + 4 + 72);
    // A registration refused for its Pool Element (Registration Life 0) quotes the whole
    // Pool Element; with a large one and a long handle the quote is cut to fit.
    let mut r = Reg::new(65_000);
    let mut big = pe(9);
    big.registration_life = 0;
    big.user_transport = UserTransport::Ip(TransportAddr::sctp(
        80,
        TransportUse::DATA_ONLY,
        (0..4000u32)
            .map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes()))
            .collect(),
    ));
    // Request 4 + 33,496 + 32,032 = 65,532 bytes; the response adds 16.
    let h = handle(33_490);
    let (bytes, reply) = r
        .ask_one(&AsapMessage::Registration {
            handle: h.clone(),
            pe: big.clone(),
        })
        .unwrap();
    let AsapMessage::RegistrationResponse {
        reject: true,
        error: Some(e),
        ..
    } = reply
    else {
        panic!("{reply:?}")
    };
    let full = codec::pool_element_tlv(&big);
    assert!(full.len() > 32_000);
    assert_eq!(e.causes.len(), 1);
    assert_eq!(e.causes[0].code, CauseCode::INVALID_VALUES);
    assert!(full.starts_with(&e.causes[0].info));
    assert!(e.causes[0].info.len() < full.len());
    assert!(bytes.len() + 4 > MAX_MESSAGE_LEN, "cut more than needed");
}

#[test]
fn malformed_inputs_get_the_most_specific_cause_with_the_offending_bytes() {
    let hex = |s: &str| -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let hr = hex("05000018 0009000c 4563686f 506f6f6c 803f0008 00000003");
    let with = |at: usize, v: &[u8]| {
        let mut b = hr.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    let cases: Vec<(&str, Vec<u8>, CauseCode, Vec<u8>)> = vec![
        (
            "handle length 0xffff",
            with(6, &[0xff, 0xff]),
            CauseCode::INVALID_VALUES,
            hr[4..]
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 2 || i == 3 { 0xff } else { *b })
                .collect(),
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
            "no pool handle",
            hex("05000004"),
            CauseCode::UNRECOGNIZED_MESSAGE,
            hex("05000004"),
        ),
    ];
    let mut r = Reg::new(64);
    for (what, bytes, code, info) in cases {
        let got = r.ask(&bytes);
        assert_eq!(got.len(), 1, "{what}");
        assert_eq!(
            got[0].1,
            AsapMessage::Error {
                error: OperationError::single(Cause::with_info(code, info))
            },
            "{what}"
        );
    }
}

#[test]
fn enrp_messages_on_the_asap_stream_are_unrecognized_messages() {
    let si = ServerInfo {
        server_id: ServerId(0x5eed_0001),
        transport: TransportAddr::sctp(
            9901,
            TransportUse::DATA_ONLY,
            vec![IpAddr::from([127, 0, 0, 1])],
        ),
    };
    let mut full = pe(0x1234);
    full.home_registrar = ServerId(0x5eed_0001);
    full.asap_transport = Some(TransportAddr::sctp(
        3863,
        TransportUse::DATA_ONLY,
        vec![IpAddr::from([127, 0, 0, 1])],
    ));
    let mut r = Reg::new(64);
    // Group-cast (receiver 0) and point-to-point IDs: where decode_asap fails differs.
    for (s, rc) in [
        (ServerId(0x5eed_0001), ServerId(0)),
        (ServerId(0x8a3f_27c1), ServerId(0x1c2d_3e4f)),
    ] {
        let t = ServerId(0x7777_7777);
        let msgs = vec![
            EnrpMessage::Presence {
                reply_required: true,
                sender: s,
                receiver: rc,
                checksum: Some(0x8e4b),
                server_info: Some(si.clone()),
            },
            EnrpMessage::HandleTableRequest {
                own_children_only: false,
                sender: s,
                receiver: rc,
            },
            EnrpMessage::HandleTableResponse {
                reject: false,
                more: false,
                sender: s,
                receiver: rc,
                pools: vec![PoolEntry {
                    handle: "EchoPool".into(),
                    pes: vec![full.clone()],
                }],
            },
            EnrpMessage::HandleUpdate {
                takeover: false,
                sender: s,
                receiver: rc,
                action: UpdateAction::ADD_PE,
                handle: "EchoPool".into(),
                pe: full.clone(),
            },
            EnrpMessage::ListRequest {
                sender: s,
                receiver: rc,
            },
            EnrpMessage::ListResponse {
                reject: false,
                sender: s,
                receiver: rc,
                servers: vec![si.clone()],
            },
            EnrpMessage::InitTakeover {
                sender: s,
                receiver: rc,
                target: t,
            },
            EnrpMessage::InitTakeoverAck {
                sender: s,
                receiver: rc,
                target: t,
            },
            EnrpMessage::TakeoverServer {
                sender: s,
                receiver: rc,
                target: t,
            },
            EnrpMessage::Error {
                sender: s,
                receiver: rc,
                error: OperationError::code(CauseCode::UNSPECIFIED),
            },
        ];
        assert_eq!(
            msgs.iter().map(EnrpMessage::type_code).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<u8>>()
        );
        for m in msgs {
            let bytes = m.encode_to_vec();
            assert!(decode_asap(&bytes).is_err(), "{m:?} decodes as ASAP");
            let got = r.ask(&bytes);
            assert_eq!(
                got.iter().map(|g| g.1.clone()).collect::<Vec<_>>(),
                vec![AsapMessage::Error {
                    error: OperationError::single(Cause::with_info(
                        CauseCode::UNRECOGNIZED_MESSAGE,
                        bytes.clone()
                    ))
                }],
                "{m:?}"
            );
        }
    }
    assert_eq!(r.core.counters().wrong_protocol, 20);
}
