//! Output limits: the encoder never emits a message longer than its 16-bit Message Length
//! can say. Quoted cause information is cut to fit; a message that cannot fit even with
//! bare causes is an encode error and nothing is written.
//!
//! The sweep runs pool handle sizes from 0 to 65,535 bytes (a prime step plus every size
//! near the limits) through every message a responder builds around a handle.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use rserpool_wire::codec::{self, pad4, MAX_MESSAGE_LEN};
use rserpool_wire::*;

fn handle(n: usize) -> PoolHandle {
    PoolHandle::new((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())
}

fn pe() -> PoolElement {
    PoolElement {
        id: PeId(0x1234_5678),
        home_registrar: ServerId(0),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(80, "192.0.2.1".parse().unwrap())),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// Handle sizes: every 97th, plus everything within 64 bytes of the places where a message
/// around a handle reaches 65,535 bytes, and the extremes.
fn sizes() -> Vec<usize> {
    // From 1: an empty handle does not decode.
    let mut v: Vec<usize> = (1..=65_535).step_by(97).collect();
    v.extend(64_900..=65_100);
    v.extend(65_440..=65_535);
    v.sort_unstable();
    v.dedup();
    v
}

/// The messages a responder builds around a handle of `n` bytes, each with the cause(s) it
/// would carry (the 130,028-byte registration response of issue 8 was the first one).
fn responses(n: usize) -> Vec<AsapMessage> {
    let h = handle(n);
    let quote_handle = Cause::with_info(CauseCode::INVALID_VALUES, codec::pool_handle_tlv(&h));
    vec![
        AsapMessage::RegistrationResponse {
            reject: true,
            handle: h.clone(),
            pe_id: PeId(7),
            error: Some(OperationError::single(quote_handle.clone())),
        },
        AsapMessage::RegistrationResponse {
            reject: true,
            handle: h.clone(),
            pe_id: PeId(7),
            error: Some(OperationError::single(Cause::with_info(
                CauseCode::INVALID_VALUES,
                codec::pool_element_tlv(&pe()),
            ))),
        },
        AsapMessage::DeregistrationResponse {
            handle: h.clone(),
            pe_id: PeId(7),
            error: Some(OperationError::code(CauseCode::REJECTED_SECURITY)),
        },
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: h.clone(),
            policy: None,
            pes: vec![],
            error: Some(OperationError::code(CauseCode::UNKNOWN_POOL_HANDLE)),
        },
        AsapMessage::Error {
            error: OperationError {
                causes: vec![
                    quote_handle.clone(),
                    Cause::new(CauseCode::LACK_OF_RESOURCES),
                    quote_handle,
                ],
            },
        },
    ]
}

fn causes(m: &AsapMessage) -> Option<&OperationError> {
    match m {
        AsapMessage::RegistrationResponse { error, .. }
        | AsapMessage::DeregistrationResponse { error, .. }
        | AsapMessage::HandleResolutionResponse { error, .. } => error.as_ref(),
        AsapMessage::Error { error } => Some(error),
        _ => None,
    }
}

fn strip(mut m: AsapMessage) -> AsapMessage {
    let e = match &mut m {
        AsapMessage::RegistrationResponse { error, .. }
        | AsapMessage::DeregistrationResponse { error, .. }
        | AsapMessage::HandleResolutionResponse { error, .. } => error.as_mut(),
        AsapMessage::Error { error } => Some(error),
        _ => None,
    };
    if let Some(e) = e {
        for c in &mut e.causes {
            c.info.clear();
        }
    }
    m
}

/// The length field of an encoding, checked against its size.
fn length_field(bytes: &[u8]) -> usize {
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    assert_eq!(
        bytes.len(),
        pad4(len),
        "size {} vs length {len}",
        bytes.len()
    );
    len
}

/// What the message would encode to without the 16-bit limit (sum of its parts).
fn unlimited_len(m: &AsapMessage) -> usize {
    let cause_sum = |e: &OperationError| -> usize {
        4 + e
            .causes
            .iter()
            .map(|c| 4 + pad4(c.info.len()))
            .sum::<usize>()
    };
    // Every part is padded; the trailing padding of the last part is not counted.
    let (parts, last_pad): (usize, usize) = match m {
        AsapMessage::RegistrationResponse { handle, error, .. }
        | AsapMessage::DeregistrationResponse { handle, error, .. } => {
            let e = error.as_ref().map_or(0, cause_sum);
            let last = error
                .as_ref()
                .and_then(|e| e.causes.last())
                .map_or(0, |c| pad4(c.info.len()) - c.info.len());
            (pad4(4 + handle.len()) + 8 + e, last)
        }
        AsapMessage::HandleResolutionResponse { handle, error, .. } => {
            let e = error.as_ref().map_or(0, cause_sum);
            (pad4(4 + handle.len()) + e, 0)
        }
        AsapMessage::Error { error } => {
            let last = error
                .causes
                .last()
                .map_or(0, |c| pad4(c.info.len()) - c.info.len());
            (cause_sum(error), last)
        }
        _ => unreachable!(),
    };
    4 + parts - last_pad
}

#[test]
fn sweep_handle_sizes_every_encoding_fits_its_length_field() {
    let (mut fitted, mut cut, mut refused) = (0, 0, 0);
    for n in sizes() {
        for m in responses(n) {
            let want = unlimited_len(&m);
            let mut out = vec![0xee; 3]; // something already in the buffer
            match try_encode_asap(&m, &mut out) {
                Ok(()) => {
                    assert_eq!(&out[..3], &[0xee; 3]);
                    let bytes = &out[3..];
                    let len = length_field(bytes);
                    assert!(len <= MAX_MESSAGE_LEN);
                    let back = decode_asap(bytes).unwrap().message;
                    if want <= MAX_MESSAGE_LEN {
                        // Untouched when it fits.
                        assert_eq!(len, want, "handle {n}");
                        assert_eq!(back, m, "handle {n}");
                        fitted += 1;
                    } else {
                        // Only cause information was cut, each to a prefix of itself, and
                        // no more than needed: the result is within 3 bytes of the limit
                        // per cut cause.
                        assert_eq!(strip(back.clone()), strip(m.clone()), "handle {n}");
                        let (a, b) = (causes(&back).unwrap(), causes(&m).unwrap());
                        let mut n_cut = 0;
                        for (x, y) in a.causes.iter().zip(&b.causes) {
                            assert!(y.info.starts_with(&x.info));
                            if x.info.len() < y.info.len() {
                                assert_eq!(x.info.len() % 4, 0);
                                n_cut += 1;
                            }
                        }
                        assert!(n_cut >= 1, "handle {n}: nothing cut");
                        assert!(
                            len + 4 * n_cut + 3 >= MAX_MESSAGE_LEN,
                            "handle {n}: cut too much ({len})"
                        );
                        cut += 1;
                    }
                    // The infallible encoder writes the same bytes.
                    let mut again = Vec::new();
                    encode_asap(&m, &mut again);
                    assert_eq!(again, bytes);
                }
                Err(EncodeError::TooLong { length }) => {
                    // Only when even bare causes do not fit; nothing was written.
                    assert_eq!(out, [0xee; 3], "handle {n}: output touched");
                    assert!(length > MAX_MESSAGE_LEN);
                    assert!(
                        unlimited_len(&strip(m.clone())) > MAX_MESSAGE_LEN,
                        "handle {n}: refused although bare causes fit"
                    );
                    assert!(m.encode_to_vec().is_empty());
                    refused += 1;
                }
            }
        }
    }
    // The sweep exercised all three outcomes.
    assert!(
        fitted > 1000 && cut > 100 && refused > 50,
        "{fitted}/{cut}/{refused}"
    );
}

#[test]
fn the_issue_8_registration_response_fits() {
    // A 65,000-byte handle refused with 0x3 quoting the handle again: 130,028 bytes
    // unlimited; now the quote is cut and the length field says the truth.
    let m = &responses(65_000)[0];
    assert_eq!(unlimited_len(m), 130_028);
    let bytes = m.try_encode_to_vec().unwrap();
    assert_eq!(length_field(&bytes), MAX_MESSAGE_LEN - 3);
    // A 65,520-byte handle with cause 0x9: one byte too long, nothing to cut.
    let m = &responses(65_520)[3];
    assert_eq!(unlimited_len(m), 65_536);
    assert_eq!(
        m.try_encode_to_vec(),
        Err(EncodeError::TooLong { length: 65_536 })
    );
}

#[test]
fn error_messages_always_fit_after_cutting() {
    // ASAP_ERROR and ENRP_ERROR with one cause of any size: always encodable.
    for n in [
        0usize, 1, 4, 65_000, 65_515, 65_516, 65_523, 65_524, 200_000,
    ] {
        let info: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let error = OperationError::single(Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, info));
        let a = AsapMessage::Error {
            error: error.clone(),
        };
        let bytes = a.try_encode_to_vec().unwrap();
        assert!(length_field(&bytes) <= MAX_MESSAGE_LEN);
        let AsapMessage::Error { error: back } = decode_asap(&bytes).unwrap().message else {
            panic!()
        };
        assert!(error.causes[0].info.starts_with(&back.causes[0].info));
        // 12 bytes of headers: kept whole up to 65,523 bytes, else cut to 65,520.
        let want = if n + 12 <= MAX_MESSAGE_LEN { n } else { 65_520 };
        assert_eq!(back.causes[0].info.len(), want, "info {n}");
        let e = EnrpMessage::Error {
            sender: ServerId(1),
            receiver: ServerId(2),
            error,
        };
        let bytes = e.try_encode_to_vec().unwrap();
        assert!(length_field(&bytes) <= MAX_MESSAGE_LEN);
        assert!(decode_enrp(&bytes).is_ok());
    }
}

#[test]
fn messages_without_causes_that_cannot_fit_are_refused() {
    // A handle table response with too many pools, a handle resolution with a handle
    // that leaves no room for the HR option: errors, nothing written.
    let pools: Vec<PoolEntry> = (0..2000u32)
        .map(|i| PoolEntry {
            handle: PoolHandle::new(i.to_be_bytes().to_vec()),
            pes: vec![pe()],
        })
        .collect();
    let m = EnrpMessage::HandleTableResponse {
        reject: false,
        more: false,
        sender: ServerId(1),
        receiver: ServerId(2),
        pools,
    };
    let mut out = Vec::new();
    assert!(matches!(
        try_encode_enrp(&m, &mut out),
        Err(EncodeError::TooLong { length }) if length > MAX_MESSAGE_LEN
    ));
    assert!(out.is_empty());
    encode(&Message::Enrp(m), &mut out);
    assert!(out.is_empty());
    let hr = |n: usize| AsapMessage::HandleResolution {
        subscribe: false,
        handle: handle(n),
        items: Some(3),
    };
    // 4 + pad4(4 + 65516) + 8 = 65532: the largest that fits; one more byte of handle
    // adds 4 with its padding.
    assert_eq!(
        length_field(&hr(65_516).try_encode_to_vec().unwrap()),
        65_532
    );
    assert_eq!(
        hr(65_517).try_encode_to_vec(),
        Err(EncodeError::TooLong { length: 65_536 })
    );
}

#[test]
fn handle_quotes_are_well_formed_prefixes() {
    let h = handle(1000);
    let q = codec::pool_handle_tlv_prefix(&h, 65);
    assert_eq!(&q[..4], &[0x00, 0x09, 0x00, 69]);
    assert_eq!(&q[4..69], &h.0[..65]);
    assert_eq!(q.len(), 72);
    // A shorter handle is quoted whole.
    assert_eq!(
        codec::pool_handle_tlv_prefix(&handle(10), 65),
        codec::pool_handle_tlv(&handle(10))
    );
}
