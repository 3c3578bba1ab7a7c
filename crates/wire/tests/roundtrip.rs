//! Property tests: every ASAP and ENRP message, with every parameter variant, survives
//! `decode(encode(m)) == m`, and its encoding is canonical (padded, stable, correct lengths).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use proptest::collection::vec;
use proptest::prelude::*;
use rserpool_wire::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ----------------------------------------------------------------------------------------
// Strategies: parameters

fn ipv4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
}

fn ipv6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![ipv4(), ipv6()]
}

/// SCTP transport: 1–4 addresses, IPv4 and IPv6 mixed, any Transport Use value.
fn sctp_transport() -> impl Strategy<Value = TransportAddr> {
    (
        any::<u16>(),
        prop_oneof![
            Just(TransportUse::DATA_ONLY),
            Just(TransportUse::DATA_PLUS_CONTROL),
            any::<u16>().prop_map(TransportUse),
        ],
        vec(ip(), 1..5),
    )
        .prop_map(|(port, use_field, addrs)| TransportAddr {
            kind: TransportKind::Sctp,
            port,
            use_field,
            addrs,
        })
}

fn tcp_transport() -> impl Strategy<Value = TransportAddr> {
    (any::<u16>(), any::<u16>(), ip()).prop_map(|(port, u, a)| TransportAddr {
        kind: TransportKind::Tcp,
        port,
        use_field: TransportUse(u),
        addrs: vec![a],
    })
}

/// Single-address transports: TCP, UDP, UDP-Lite, DCCP (with service code).
fn single_address_transport() -> impl Strategy<Value = TransportAddr> {
    (
        prop_oneof![
            Just(TransportKind::Tcp),
            Just(TransportKind::Udp),
            Just(TransportKind::UdpLite),
            any::<u32>().prop_map(|service_code| TransportKind::Dccp { service_code }),
        ],
        any::<u16>(),
        any::<u16>(),
        ip(),
    )
        .prop_map(|(kind, port, u, a)| TransportAddr {
            kind,
            port,
            use_field: TransportUse(u),
            addrs: vec![a],
        })
}

fn user_transport() -> impl Strategy<Value = UserTransport> {
    prop_oneof![
        sctp_transport().prop_map(UserTransport::Ip),
        single_address_transport().prop_map(UserTransport::Ip),
        // Opaque transport (0x0010), odd lengths included.
        vec(any::<u8>(), 0..23).prop_map(UserTransport::Opaque),
    ]
}

/// Number of policy shapes `policy_from` builds: 18 known policies + Unknown.
const POLICY_SHAPES: usize = 19;

/// Build policy shape `i` (0..19) from value words, spelled out per variant so the test
/// does not lean on the codec's own `Policy::from_values` table.
fn policy_from(i: usize, v: [u32; 4], unknown_type: u32, data: Vec<u8>) -> Policy {
    use Policy::*;
    match i {
        0 => RoundRobin,
        1 => WeightedRoundRobin { weight: v[0] },
        2 => Random,
        3 => WeightedRandom { weight: v[0] },
        4 => Priority { priority: v[0] },
        5 => LeastUsed { load: v[0] },
        6 => LeastUsedDegradation {
            load: v[0],
            degradation: v[1],
        },
        7 => PriorityLeastUsed {
            load: v[0],
            degradation: v[1],
        },
        8 => RandomizedLeastUsed { load: v[0] },
        9 => RandomizedPriorityLeastUsed {
            load: v[0],
            degradation: v[1],
        },
        10 => RandomizedLeastUsedDegradation {
            load: v[0],
            degradation: v[1],
        },
        11 => PriorityLeastUsedDegradation {
            load: v[0],
            degradation: v[1],
        },
        12 => RandomizedPriorityLeastUsedDegradation {
            load: v[0],
            degradation: v[1],
        },
        13 => WeightedRandomDpf {
            weight: v[0],
            weight_dpf: v[1],
            distance: v[2],
        },
        14 => LeastUsedDpf {
            load: v[0],
            load_dpf: v[1],
            distance: v[2],
        },
        15 => LeastUsedDegradationDpf {
            load: v[0],
            degradation: v[1],
            load_dpf: v[2],
            distance: v[3],
        },
        16 => PriorityLeastUsedDpf {
            load: v[0],
            degradation: v[1],
            load_dpf: v[2],
            distance: v[3],
        },
        17 => PriorityLeastUsedDegradationDpf {
            load: v[0],
            degradation: v[1],
            load_dpf: v[2],
            distance: v[3],
        },
        _ => Unknown {
            policy_type: PolicyType(unknown_type),
            data,
        },
    }
}

/// A policy type the codec does not know (so it decodes as `Policy::Unknown`).
fn unknown_policy_type() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        // Near the known codes, where an off-by-one would show.
        (0u32..16).prop_map(|x| x),
        (0u32..16).prop_map(|x| 0x4000_0000 | x),
        (0u32..8).prop_map(|x| 0xB000_1000 | x),
        (0u32..8).prop_map(|x| 0xB000_2000 | x),
    ]
    .prop_filter("known policy type", |t| {
        Policy::field_count(PolicyType(*t)).is_none()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        0..POLICY_SHAPES,
        any::<[u32; 4]>(),
        unknown_policy_type(),
        // Unknown policy data, odd lengths included.
        vec(any::<u8>(), 0..19),
    )
        .prop_map(|(i, v, t, d)| policy_from(i, v, t, d))
}

fn pool_handle() -> impl Strategy<Value = PoolHandle> {
    prop_oneof![
        vec(any::<u8>(), 1..40).prop_map(PoolHandle),
        "[A-Za-z0-9]{1,32}".prop_map(|s| PoolHandle::from(s.as_str())),
    ]
}

/// A pool element; `with_asap` forces the ASAP transport present (ENRP) or lets it vary.
fn pool_element(with_asap: Option<bool>) -> impl Strategy<Value = PoolElement> {
    let asap = match with_asap {
        // SCTP (RFC, RSPLIB) or TCP (our TCP PEs) in the ASAP transport position.
        Some(true) => prop_oneof![sctp_transport(), tcp_transport()]
            .prop_map(Some)
            .boxed(),
        Some(false) => Just(None).boxed(),
        None => proptest::option::of(prop_oneof![sctp_transport(), tcp_transport()]).boxed(),
    };
    (
        any::<u32>(),
        any::<u32>(),
        prop_oneof![any::<u32>(), Just(u32::MAX), Just(0)],
        user_transport(),
        policy(),
        asap,
    )
        .prop_map(
            |(id, home, life, user_transport, policy, asap_transport)| PoolElement {
                id: PeId(id),
                home_registrar: ServerId(home),
                registration_life: life,
                user_transport,
                policy,
                asap_transport,
            },
        )
}

fn cause() -> impl Strategy<Value = Cause> {
    (
        prop_oneof![
            (0u16..=0x0a).prop_map(CauseCode),
            any::<u16>().prop_map(CauseCode),
        ],
        // Info lengths 0..=17: every residue mod 4, so odd lengths and padding are exercised.
        vec(any::<u8>(), 0..18),
    )
        .prop_map(|(code, info)| Cause { code, info })
}

fn operation_error() -> impl Strategy<Value = OperationError> {
    vec(cause(), 1..5).prop_map(|causes| OperationError { causes })
}

fn server_info() -> impl Strategy<Value = ServerInfo> {
    // SCTP (RFC, RSPLIB) or TCP (a registrar with a TCP ENRP listener).
    let transport = prop_oneof![sctp_transport(), tcp_transport()];
    (any::<u32>(), transport).prop_map(|(id, transport)| ServerInfo {
        server_id: ServerId(id),
        transport,
    })
}

fn cookie() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..41)
}

fn hr_items() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        Just(None),
        Just(Some(0)),
        Just(Some(u32::MAX)),
        any::<u32>().prop_map(Some),
    ]
}

fn server_id() -> impl Strategy<Value = ServerId> {
    any::<u32>().prop_map(ServerId)
}

fn pe_id() -> impl Strategy<Value = PeId> {
    any::<u32>().prop_map(PeId)
}

// ----------------------------------------------------------------------------------------
// Strategies: messages

fn asap_message() -> impl Strategy<Value = AsapMessage> {
    use AsapMessage as A;
    prop_oneof![
        (pool_handle(), pool_element(None)).prop_map(|(handle, pe)| A::Registration { handle, pe }),
        (pool_handle(), pe_id()).prop_map(|(handle, pe_id)| A::Deregistration { handle, pe_id }),
        (
            any::<bool>(),
            pool_handle(),
            pe_id(),
            proptest::option::of(operation_error())
        )
            .prop_map(|(reject, handle, pe_id, error)| A::RegistrationResponse {
                reject,
                handle,
                pe_id,
                error
            }),
        (
            pool_handle(),
            pe_id(),
            proptest::option::of(operation_error())
        )
            .prop_map(|(handle, pe_id, error)| A::DeregistrationResponse {
                handle,
                pe_id,
                error
            }),
        (any::<bool>(), pool_handle(), hr_items()).prop_map(|(subscribe, handle, items)| {
            A::HandleResolution {
                subscribe,
                handle,
                items,
            }
        }),
        (
            any::<bool>(),
            pool_handle(),
            proptest::option::of(policy()),
            vec(pool_element(None), 0..4),
            proptest::option::of(operation_error()),
        )
            .prop_map(|(accepted, handle, policy, pes, error)| {
                A::HandleResolutionResponse {
                    accepted,
                    handle,
                    policy,
                    pes,
                    error,
                }
            }),
        (
            any::<bool>(),
            server_id(),
            pool_handle(),
            proptest::option::of(pe_id())
        )
            .prop_map(|(home, server_id, handle, pe_id)| A::EndpointKeepAlive {
                home,
                server_id,
                handle,
                pe_id
            }),
        (pool_handle(), pe_id())
            .prop_map(|(handle, pe_id)| A::EndpointKeepAliveAck { handle, pe_id }),
        (pool_handle(), pe_id())
            .prop_map(|(handle, pe_id)| A::EndpointUnreachable { handle, pe_id }),
        (
            server_id(),
            vec(prop_oneof![sctp_transport(), tcp_transport()], 0..4)
        )
            .prop_map(|(server_id, transports)| A::ServerAnnounce {
                server_id,
                transports
            }),
        cookie().prop_map(|cookie| A::Cookie { cookie }),
        cookie().prop_map(|cookie| A::CookieEcho { cookie }),
        (
            pool_handle(),
            proptest::option::of(policy()),
            vec(pool_element(None), 1..4)
        )
            .prop_map(|(handle, policy, pes)| A::BusinessCard {
                handle,
                policy,
                pes
            }),
        operation_error().prop_map(|error| A::Error { error }),
    ]
}

fn enrp_message() -> impl Strategy<Value = EnrpMessage> {
    use EnrpMessage as E;
    prop_oneof![
        (
            any::<bool>(),
            server_id(),
            server_id(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(server_info()),
        )
            .prop_map(
                |(reply_required, sender, receiver, checksum, server_info)| E::Presence {
                    reply_required,
                    sender,
                    receiver,
                    checksum,
                    server_info,
                }
            ),
        (any::<bool>(), server_id(), server_id()).prop_map(
            |(own_children_only, sender, receiver)| E::HandleTableRequest {
                own_children_only,
                sender,
                receiver,
            }
        ),
        (
            any::<bool>(),
            any::<bool>(),
            server_id(),
            server_id(),
            vec(
                (pool_handle(), vec(pool_element(Some(true)), 1..3))
                    .prop_map(|(handle, pes)| PoolEntry { handle, pes }),
                0..3
            ),
        )
            .prop_map(
                |(reject, more, sender, receiver, pools)| E::HandleTableResponse {
                    reject,
                    more,
                    sender,
                    receiver,
                    pools,
                }
            ),
        (
            any::<bool>(),
            server_id(),
            server_id(),
            prop_oneof![
                Just(UpdateAction::ADD_PE),
                Just(UpdateAction::DEL_PE),
                any::<u16>().prop_map(UpdateAction),
            ],
            pool_handle(),
            pool_element(Some(true)),
        )
            .prop_map(
                |(takeover, sender, receiver, action, handle, pe)| E::HandleUpdate {
                    takeover,
                    sender,
                    receiver,
                    action,
                    handle,
                    pe,
                }
            ),
        (server_id(), server_id())
            .prop_map(|(sender, receiver)| E::ListRequest { sender, receiver }),
        (
            any::<bool>(),
            server_id(),
            server_id(),
            vec(server_info(), 0..4)
        )
            .prop_map(|(reject, sender, receiver, servers)| E::ListResponse {
                reject,
                sender,
                receiver,
                servers,
            }),
        (server_id(), server_id(), server_id()).prop_map(|(sender, receiver, target)| {
            E::InitTakeover {
                sender,
                receiver,
                target,
            }
        }),
        (server_id(), server_id(), server_id()).prop_map(|(sender, receiver, target)| {
            E::InitTakeoverAck {
                sender,
                receiver,
                target,
            }
        }),
        (server_id(), server_id(), server_id()).prop_map(|(sender, receiver, target)| {
            E::TakeoverServer {
                sender,
                receiver,
                target,
            }
        }),
        (server_id(), server_id(), operation_error()).prop_map(|(sender, receiver, error)| {
            E::Error {
                sender,
                receiver,
                error,
            }
        }),
    ]
}

// ----------------------------------------------------------------------------------------
// Checks

/// Canonical-encoding checks that do not use the decoder: padded to 4, the Message Length
/// field counts everything but the final 0–3 padding bytes, the type byte is right and the
/// padding is zero.
fn check_framing(bytes: &[u8], type_code: u8) {
    assert_eq!(bytes.len() % 4, 0, "not padded: {} bytes", bytes.len());
    assert!(bytes.len() >= 4);
    assert_eq!(bytes[0], type_code);
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    assert!(len >= 4 && len <= bytes.len() && bytes.len() - len <= 3);
    assert!(bytes[len..].iter().all(|&b| b == 0), "non-zero padding");
}

fn asap_roundtrip(m: &AsapMessage) {
    let bytes = m.encode_to_vec();
    check_framing(&bytes, m.type_code());
    let d = decode_asap(&bytes).unwrap_or_else(|e| panic!("{e}\n{m:?}\n{bytes:02x?}"));
    assert_eq!(&d.message, m);
    assert!(d.unknown.is_empty());
    // The encoding is a fixed point, and appending to a non-empty buffer changes nothing.
    assert_eq!(d.message.encode_to_vec(), bytes);
    let mut out = vec![0xAA; 3];
    encode_asap(m, &mut out);
    assert_eq!(&out[3..], &bytes[..]);
    // The generic entry points agree.
    let g = Message::Asap(m.clone());
    assert_eq!(g.encode_to_vec(), bytes);
    assert_eq!(decode(Protocol::Asap, &bytes).unwrap().message, g);
    // Decoding without the final padding (a transport that delivers exactly Length bytes).
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    assert_eq!(&decode_asap(&bytes[..len]).unwrap().message, m);
}

fn enrp_roundtrip(m: &EnrpMessage) {
    let bytes = m.encode_to_vec();
    check_framing(&bytes, m.type_code());
    let (s, r) = m.servers();
    assert_eq!(bytes[4..8], s.0.to_be_bytes());
    assert_eq!(bytes[8..12], r.0.to_be_bytes());
    let d = decode_enrp(&bytes).unwrap_or_else(|e| panic!("{e}\n{m:?}\n{bytes:02x?}"));
    assert_eq!(&d.message, m);
    assert!(d.unknown.is_empty());
    assert_eq!(d.message.encode_to_vec(), bytes);
    let mut out = vec![0x55; 1];
    encode_enrp(m, &mut out);
    assert_eq!(&out[1..], &bytes[..]);
    let g = Message::Enrp(m.clone());
    assert_eq!(g.encode_to_vec(), bytes);
    assert_eq!(decode(Protocol::Enrp, &bytes).unwrap().message, g);
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    assert_eq!(&decode_enrp(&bytes[..len]).unwrap().message, m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn asap_decode_encode_roundtrip(m in asap_message()) {
        asap_roundtrip(&m);
    }

    #[test]
    fn enrp_decode_encode_roundtrip(m in enrp_message()) {
        enrp_roundtrip(&m);
    }

    #[test]
    fn policy_tlv_roundtrip(p in policy()) {
        let tlv = rserpool_wire::codec::policy_tlv(&p);
        prop_assert_eq!(tlv.len() % 4, 0);
        prop_assert_eq!(rserpool_wire::codec::decode_policy_tlv(&tlv).unwrap(), p.clone());
        // Cause 0x5 carries exactly that TLV.
        let c = Cause::inconsistent_policy(&p);
        prop_assert_eq!(c.code, CauseCode::INCONSISTENT_POLICY);
        prop_assert_eq!(c.info, tlv);
    }

    #[test]
    fn pool_element_in_every_carrier(pe in pool_element(Some(true)), h in pool_handle()) {
        // The same PE (with ASAP transport) through all four messages that carry PEs.
        asap_roundtrip(&AsapMessage::Registration { handle: h.clone(), pe: pe.clone() });
        asap_roundtrip(&AsapMessage::BusinessCard {
            handle: h.clone(), policy: None, pes: vec![pe.clone()],
        });
        enrp_roundtrip(&EnrpMessage::HandleUpdate {
            takeover: false, sender: ServerId(1), receiver: ServerId(2),
            action: UpdateAction::ADD_PE, handle: h.clone(), pe: pe.clone(),
        });
        enrp_roundtrip(&EnrpMessage::HandleTableResponse {
            reject: false, more: true, sender: ServerId(1), receiver: ServerId(2),
            pools: vec![PoolEntry { handle: h, pes: vec![pe] }],
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The borrowed encoder a registrar answers with writes the bytes of the owned message
    /// (the PEs' ASAP transports left out or kept).
    #[test]
    fn resolution_response_from_borrowed_pes_matches_the_message(
        pes in vec(pool_element(Some(true)), 1..6),
        h in pool_handle(),
        accepted in any::<bool>(),
        keep in any::<bool>(),
    ) {
        let refs: Vec<&PoolElement> = pes.iter().collect();
        let mut out = vec![0x55];
        codec::try_encode_resolution_response(
            accepted, &h, &pes[0].policy, &refs, keep, &mut out,
        ).unwrap();
        let owned: Vec<PoolElement> = pes
            .iter()
            .map(|p| PoolElement {
                asap_transport: if keep { p.asap_transport.clone() } else { None },
                ..p.clone()
            })
            .collect();
        let m = AsapMessage::HandleResolutionResponse {
            accepted,
            handle: h,
            policy: Some(pes[0].policy.clone()),
            pes: owned,
            error: None,
        };
        prop_assert_eq!(&out[..1], &[0x55]);
        prop_assert_eq!(&out[1..], &m.encode_to_vec()[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// PEs encoded once and copied into each answer give the bytes of the borrowed
    /// encoder, for any choice and order of them.
    #[test]
    fn resolution_response_from_prepared_pes_matches_the_borrowed_encoder(
        pes in vec(pool_element(Some(true)), 1..6),
        picks in vec(0usize..6, 1..6),
        h in pool_handle(),
        accepted in any::<bool>(),
        keep in any::<bool>(),
    ) {
        let prepared = codec::PreparedPes::new(&pes, keep);
        prop_assert_eq!(prepared.len(), pes.len());
        let picks: Vec<usize> = picks.into_iter().map(|i| i % pes.len()).collect();
        prop_assert_eq!(prepared.fitting(&h, &picks), picks.len());
        let refs: Vec<&PoolElement> = picks.iter().map(|&i| &pes[i]).collect();
        let mut want = vec![0x55];
        codec::try_encode_resolution_response(
            accepted, &h, &refs[0].policy, &refs, keep, &mut want,
        ).unwrap();
        let mut got = vec![0x55];
        prepared.try_encode_response(accepted, &h, &picks, &mut got).unwrap();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_resolution_response_too_long_for_its_length_field_appends_nothing() {
    let pe = sample_pe(Policy::RoundRobin, UserTransport::Opaque(vec![7; 40_000]));
    let refs = [&pe, &pe];
    let mut out = vec![1, 2, 3];
    let e = codec::try_encode_resolution_response(
        true,
        &PoolHandle::from("p"),
        &pe.policy,
        &refs,
        true,
        &mut out,
    )
    .unwrap_err();
    assert!(matches!(e, EncodeError::TooLong { length } if length > 80_000));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn prepared_pes_answer_with_as_many_whole_pes_as_fit() {
    let big = sample_pe(Policy::RoundRobin, UserTransport::Opaque(vec![7; 40_000]));
    let huge = sample_pe(Policy::RoundRobin, UserTransport::Opaque(vec![7; 65_600]));
    let prepared = codec::PreparedPes::new([&big, &huge, &big], true);
    // The PE that could never be sent is left out.
    assert_eq!(prepared.len(), 2);
    let h = PoolHandle::from("p");
    assert_eq!(prepared.fitting(&h, &[0, 1]), 1);
    let mut out = vec![1];
    assert!(prepared
        .try_encode_response(true, &h, &[0, 1], &mut out)
        .is_err());
    assert_eq!(out, [1]);
    prepared
        .try_encode_response(true, &h, &[1], &mut out)
        .unwrap();
    assert!(out.len() > 40_000);
    // No PE: nothing.
    let mut none = Vec::new();
    prepared
        .try_encode_response(true, &h, &[], &mut none)
        .unwrap();
    assert!(none.is_empty());
}

// ----------------------------------------------------------------------------------------
// Exhaustive, deterministic coverage of the shapes the random tests draw from

fn sample_pe(policy: Policy, user_transport: UserTransport) -> PoolElement {
    PoolElement {
        id: PeId(0x0102_0304),
        home_registrar: ServerId(0x1111_1111),
        registration_life: 30_000,
        user_transport,
        policy,
        asap_transport: Some(TransportAddr::sctp(
            3863,
            TransportUse::DATA_ONLY,
            vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        )),
    }
}

#[test]
fn every_policy_shape_roundtrips_and_all_known_types_are_covered() {
    let mut seen = Vec::new();
    for i in 0..POLICY_SHAPES {
        for data_len in 0..6 {
            let p = policy_from(
                i,
                [0xFFFF_FFFF, 0x8000_0000, 7, 0],
                0x8000_0077,
                vec![0xAB; data_len],
            );
            seen.push(p.policy_type());
            let pe = sample_pe(
                p.clone(),
                UserTransport::Ip(TransportAddr::udp(9, "192.0.2.9".parse().unwrap())),
            );
            asap_roundtrip(&AsapMessage::HandleResolutionResponse {
                accepted: true,
                handle: PoolHandle::from("pool"),
                policy: Some(p),
                pes: vec![pe],
                error: None,
            });
        }
    }
    for t in PolicyType::all() {
        assert!(seen.contains(&t), "policy {t} not generated");
    }
    assert_eq!(PolicyType::all().count(), 18);
    assert!(seen.contains(&PolicyType(0x8000_0077)));
}

#[test]
fn every_transport_kind_roundtrips() {
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let mut uts = Vec::new();
    for a in [v4, v6] {
        for kind in [
            TransportKind::Tcp,
            TransportKind::Udp,
            TransportKind::UdpLite,
            TransportKind::Dccp {
                service_code: 0xDEAD_BEEF,
            },
        ] {
            uts.push(UserTransport::Ip(TransportAddr {
                kind,
                port: 4711,
                use_field: TransportUse::DATA_ONLY,
                addrs: vec![a],
            }));
        }
    }
    uts.push(UserTransport::Ip(TransportAddr::sctp(
        1,
        TransportUse::DATA_PLUS_CONTROL,
        vec![v4, v6, v4, v6],
    )));
    for n in 0..6 {
        uts.push(UserTransport::Opaque((0..n).collect()));
    }
    for ut in uts {
        asap_roundtrip(&AsapMessage::Registration {
            handle: PoolHandle::from("h"),
            pe: sample_pe(Policy::RoundRobin, ut),
        });
    }
}

#[test]
fn odd_length_opaque_data_in_every_position() {
    // Cookies of every residue mod 4, at the end of the message.
    for n in 0..9 {
        let cookie: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5A).collect();
        asap_roundtrip(&AsapMessage::Cookie {
            cookie: cookie.clone(),
        });
        asap_roundtrip(&AsapMessage::CookieEcho { cookie });
    }
    // Causes with odd-length info first, middle and last.
    for n in 0..9 {
        let odd = Cause::with_info(CauseCode::INVALID_VALUES, vec![0xC3; n]);
        let plain = Cause::new(CauseCode::UNKNOWN_POOL_HANDLE);
        for causes in [
            vec![odd.clone()],
            vec![odd.clone(), plain.clone()],
            vec![plain.clone(), odd.clone(), plain.clone()],
            vec![plain.clone(), odd.clone()],
        ] {
            let error = OperationError { causes };
            asap_roundtrip(&AsapMessage::Error {
                error: error.clone(),
            });
            asap_roundtrip(&AsapMessage::RegistrationResponse {
                reject: true,
                handle: PoolHandle::from("odd"),
                pe_id: PeId(9),
                error: Some(error.clone()),
            });
            enrp_roundtrip(&EnrpMessage::Error {
                sender: ServerId(1),
                receiver: ServerId(0),
                error,
            });
        }
    }
    // Odd pool handles before other parameters and as the last parameter.
    for n in 1..9 {
        let handle = PoolHandle((0..n).collect());
        asap_roundtrip(&AsapMessage::HandleResolution {
            subscribe: false,
            handle: handle.clone(),
            items: None,
        });
        asap_roundtrip(&AsapMessage::HandleResolution {
            subscribe: true,
            handle,
            items: Some(u32::MAX),
        });
    }
}

#[test]
fn every_message_type_is_generated() {
    // The strategies above must cover all 14 + 10 types.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut asap = [false; 15];
    let mut enrp = [false; 11];
    let (sa, se) = (asap_message(), enrp_message());
    for _ in 0..2000 {
        asap[usize::from(sa.new_tree(&mut runner).unwrap().current().type_code())] = true;
        enrp[usize::from(se.new_tree(&mut runner).unwrap().current().type_code())] = true;
    }
    assert!(asap[1..].iter().all(|&x| x), "{asap:?}");
    assert!(enrp[1..].iter().all(|&x| x), "{enrp:?}");
}

/// The ASAP transport of a Pool Element may be a TCP transport TLV (type 0x5); a UDP one
/// there is refused.
#[test]
fn pool_element_asap_transport_tcp_or_sctp() {
    let pe = |asap: TransportAddr| PoolElement {
        id: PeId(7),
        home_registrar: ServerId(9),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(7000, IpAddr::from([10, 0, 0, 1]))),
        policy: Policy::RoundRobin,
        asap_transport: Some(asap),
    };
    for asap in [
        TransportAddr::tcp(4000, IpAddr::from([10, 0, 0, 1])),
        TransportAddr::sctp(
            4000,
            TransportUse::DATA_ONLY,
            vec![IpAddr::from([10, 0, 0, 1])],
        ),
    ] {
        let m = EnrpMessage::HandleUpdate {
            takeover: false,
            sender: ServerId(9),
            receiver: ServerId(0),
            action: UpdateAction::ADD_PE,
            handle: PoolHandle::from("p"),
            pe: pe(asap),
        };
        let d = decode_enrp(&m.encode_to_vec()).unwrap();
        assert_eq!(d.message, m);
    }
    let mut udp = TransportAddr::tcp(4000, IpAddr::from([10, 0, 0, 1]));
    udp.kind = TransportKind::Udp;
    let m = EnrpMessage::HandleUpdate {
        takeover: false,
        sender: ServerId(9),
        receiver: ServerId(0),
        action: UpdateAction::ADD_PE,
        handle: PoolHandle::from("p"),
        pe: pe(udp),
    };
    assert!(decode_enrp(&m.encode_to_vec()).is_err());
}
