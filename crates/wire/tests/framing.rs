//! Stream framing: `Deframer` (ASAP/ENRP messages back-to-back on TCP) and the PU↔PE
//! session channel (`SessionFrame` / `SessionDeframer`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use proptest::collection::vec;
use proptest::prelude::*;
use rserpool_wire::framing::*;
use rserpool_wire::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

/// Some encoded messages of different sizes, including odd Message Lengths.
fn messages() -> Vec<Vec<u8>> {
    vec![
        // HR "EchoPool" + option (24, aligned).
        hex("05000018 0009000c 4563686f 506f6f6c 803f0008 00000003"),
        // Cookie "abcde": length 13, 3 padding bytes.
        hex("0b00000d 000d0009 61626364 65000000"),
        // ASAP_ERROR, Lack of Resources (12).
        hex("0e00000c 000c0008 00060004"),
        // HR "EchoPool!": length 17, 3 padding bytes.
        hex("05000011 0009000d 4563686f 506f6f6c 21000000"),
        // ENRP presence with checksum only: length 18, 2 padding bytes.
        hex("01000012 11111111 00000000 000f0006 ffff0000"),
        // ENRP error: length 23, 1 padding byte.
        hex("0a000017 aaaaaaaa bbbbbbbb 000c000b 00030007 61626300"),
    ]
}

fn unpadded(m: &[u8]) -> &[u8] {
    &m[..usize::from(u16::from_be_bytes([m[2], m[3]]))]
}

/// Drain every complete message.
fn drain(d: &mut Deframer) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while let Some(m) = d.next_message().unwrap() {
        out.push(m.to_vec());
    }
    out
}

#[test]
fn byte_by_byte() {
    let msgs = messages();
    let stream: Vec<u8> = msgs.concat();
    let mut d = Deframer::default();
    let mut got = vec![];
    for (i, b) in stream.iter().enumerate() {
        d.push(std::slice::from_ref(b));
        let before = got.len();
        got.extend(drain(&mut d));
        // A message is released exactly when its last padding byte has arrived.
        let ends: Vec<usize> = msgs
            .iter()
            .scan(0, |acc, m| {
                *acc += m.len();
                Some(*acc)
            })
            .collect();
        let expected_now = ends.iter().filter(|&&e| e <= i + 1).count();
        assert_eq!(got.len(), expected_now, "after byte {i}");
        if got.len() > before {
            assert_eq!(i + 1, ends[got.len() - 1]);
        }
    }
    let want: Vec<Vec<u8>> = msgs.iter().map(|m| unpadded(m).to_vec()).collect();
    assert_eq!(got, want);
    assert_eq!(d.buffered(), 0);
    assert_eq!(d.stream_offset(), stream.len() as u64);
    // Each delivered message decodes.
    for m in &got {
        assert!(decode_asap(m).is_ok() || decode_enrp(m).is_ok());
    }
}

#[test]
fn several_messages_per_read() {
    let msgs = messages();
    let stream: Vec<u8> = msgs.concat();
    // All at once.
    let mut d = Deframer::default();
    d.push(&stream);
    let got = drain(&mut d);
    assert_eq!(got.len(), msgs.len());
    // Reads that straddle message boundaries: 7 bytes at a time, then 2.5 messages, ...
    for chunk in [2, 3, 5, 7, 11, 13, 17, 29, 64] {
        let mut d = Deframer::default();
        let mut got = vec![];
        for c in stream.chunks(chunk) {
            d.push(c);
            got.extend(drain(&mut d));
        }
        assert_eq!(got.len(), msgs.len(), "chunk {chunk}");
        for (g, m) in got.iter().zip(&msgs) {
            assert_eq!(g.as_slice(), unpadded(m));
        }
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn long_stream_compacts_its_buffer() {
    // Thousands of messages through one deframer, in uneven reads: offsets stay exact.
    let msgs = messages();
    let one: Vec<u8> = msgs.concat();
    let mut d = Deframer::default();
    let mut n = 0usize;
    let mut total = 0u64;
    for round in 0..2000 {
        let cut = round % one.len();
        d.push(&one[..cut]);
        n += drain(&mut d).len();
        d.push(&one[cut..]);
        n += drain(&mut d).len();
        total += one.len() as u64;
        assert_eq!(d.stream_offset(), total);
        assert_eq!(d.buffered(), 0);
    }
    assert_eq!(n, 2000 * msgs.len());
}

#[test]
fn incomplete_message_waits() {
    let m = hex("05000018 0009000c 4563686f 506f6f6c 803f0008 00000003");
    let mut d = Deframer::default();
    d.push(&m[..3]);
    assert_eq!(d.next_message(), Ok(None));
    d.push(&m[3..23]);
    assert_eq!(d.next_message(), Ok(None));
    assert_eq!(d.buffered(), 23);
    d.push(&m[23..]);
    assert_eq!(d.next_message(), Ok(Some(&m[..])));
    assert_eq!(d.next_message(), Ok(None));
}

#[test]
fn padding_is_consumed_but_not_returned() {
    // Odd message (length 13) waits for its 3 padding bytes, then the next one follows.
    let a = hex("0b00000d 000d0009 61626364 65000000");
    let b = hex("0e000004");
    let mut d = Deframer::default();
    d.push(&a[..13]);
    assert_eq!(d.next_message(), Ok(None), "padding not yet received");
    d.push(&a[13..15]);
    assert_eq!(d.next_message(), Ok(None));
    d.push(&a[15..]);
    assert_eq!(d.next_message().unwrap().unwrap(), &a[..13]);
    assert_eq!(d.stream_offset(), 16);
    d.push(&b);
    assert_eq!(d.next_message().unwrap().unwrap(), &b[..]);
    assert_eq!(d.stream_offset(), 20);
    // Padding contents are ignored (non-zero pad bytes do not disturb the framing).
    let mut p = a.clone();
    p[13..].copy_from_slice(&[0xff, 0xff, 0xff]);
    let mut d = Deframer::default();
    d.push(&p);
    d.push(&b);
    assert_eq!(drain(&mut d), vec![a[..13].to_vec(), b.clone()]);
}

#[test]
fn absurd_lengths_rejected() {
    for l in 0..4u8 {
        let mut d = Deframer::default();
        d.push(&[0x05, 0x00, 0x00, l, 0, 0, 0, 0]);
        assert_eq!(
            d.next_message(),
            Err(FrameError::TooShort {
                length: usize::from(l),
                offset: 0
            })
        );
        // The stream stays failed.
        d.push(&[0; 16]);
        assert!(d.next_message().is_err());
    }
    // Above a configured limit: rejected as soon as the header is in, without waiting.
    let mut d = Deframer::new(1024);
    d.push(&[0x06, 0x00, 0x04, 0x01]);
    assert_eq!(
        d.next_message(),
        Err(FrameError::TooLong {
            length: 1025,
            limit: 1024,
            offset: 0
        })
    );
    // Exactly the limit is fine.
    let mut d = Deframer::new(1024);
    let mut m = vec![0x06, 0x00, 0x04, 0x00];
    m.resize(1024, 0);
    d.push(&m);
    assert_eq!(d.next_message().unwrap().unwrap().len(), 1024);
    // The error names the stream offset of the bad header.
    let mut d = Deframer::new(64);
    d.push(&hex("0e000004 0e000004 0e000041"));
    assert_eq!(d.next_message().unwrap().unwrap().len(), 4);
    assert_eq!(d.next_message().unwrap().unwrap().len(), 4);
    assert_eq!(
        d.next_message(),
        Err(FrameError::TooLong {
            length: 65,
            limit: 64,
            offset: 8
        })
    );
    // Limits are clamped to [4, 65535]; the default accepts the largest u16 length.
    let mut d = Deframer::new(0);
    d.push(&hex("0e000004 0e000005"));
    assert!(d.next_message().unwrap().is_some());
    assert!(matches!(
        d.next_message(),
        Err(FrameError::TooLong { limit: 4, .. })
    ));
    let mut d = Deframer::new(usize::MAX);
    let mut big = vec![0x0e, 0x00, 0xff, 0xff];
    big.resize(65536, 0);
    d.push(&big);
    assert_eq!(d.next_message().unwrap().unwrap().len(), 65535);
    assert_eq!(d.stream_offset(), 65536);
}

// ----------------------------------------------------------------------------------------
// Session channel

fn frames() -> Vec<SessionFrame> {
    vec![
        SessionFrame::Init {
            flags: SESSION_INIT_FLAGS,
        },
        SessionFrame::Data {
            ppid: PPID_ASAP,
            data: hex("0b00000d 000d0009 61626364 65000000")[..13].to_vec(),
        },
        SessionFrame::Data {
            ppid: 0,
            data: vec![],
        },
        SessionFrame::Data {
            ppid: 0xdead_beef,
            data: b"application bytes".to_vec(),
        },
        SessionFrame::Heartbeat {
            info: b"hb-1".to_vec(),
        },
        SessionFrame::HeartbeatAck {
            info: b"hb-1, odd".to_vec(),
        },
        SessionFrame::Heartbeat { info: vec![] },
        SessionFrame::Ack { tsn: Some(0) },
        SessionFrame::Ack {
            tsn: Some(0xffff_fffe),
        },
        SessionFrame::Ack { tsn: None },
    ]
}

#[test]
fn session_ack_wire_format_and_errors() {
    let mut b = vec![];
    SessionFrame::Ack {
        tsn: Some(0x0102_0304),
    }
    .encode(&mut b);
    // type 3, flags 0, length 8, cumulative count.
    assert_eq!(b, hex("03000008 01020304"));
    b.clear();
    SessionFrame::Ack { tsn: None }.encode(&mut b);
    assert_eq!(b, hex("03000004"));
    // An ACK of any other length is malformed.
    for bad in ["03000006 01020000", "0300000c 01020304 05060708"] {
        let mut d = SessionDeframer::new();
        d.push(&hex(bad));
        assert!(
            matches!(d.next_frame(), Err(FrameError::TooShort { .. })),
            "{bad}"
        );
    }
}

#[test]
fn session_messages_map_to_chunks_and_back() {
    use rserpool_wire::framing::{
        PPID_SESSION_ACK, PPID_SESSION_HEARTBEAT, PPID_SESSION_HEARTBEAT_ACK,
    };
    let cases = [
        (
            PPID_SESSION_ACK,
            vec![0, 0, 0, 9],
            SessionFrame::Ack { tsn: Some(9) },
        ),
        (
            PPID_SESSION_HEARTBEAT,
            b"hb".to_vec(),
            SessionFrame::Heartbeat {
                info: b"hb".to_vec(),
            },
        ),
        (
            PPID_SESSION_HEARTBEAT_ACK,
            b"hb".to_vec(),
            SessionFrame::HeartbeatAck {
                info: b"hb".to_vec(),
            },
        ),
        (
            PPID_ASAP,
            b"ctl".to_vec(),
            SessionFrame::Data {
                ppid: PPID_ASAP,
                data: b"ctl".to_vec(),
            },
        ),
        (
            34,
            b"app".to_vec(),
            SessionFrame::Data {
                ppid: 34,
                data: b"app".to_vec(),
            },
        ),
    ];
    for (ppid, bytes, frame) in cases {
        let f = SessionFrame::from_message(ppid, bytes.clone());
        assert_eq!(f, frame);
        // Through the byte stream and back to the seam.
        let mut b = vec![];
        f.encode(&mut b);
        let mut d = SessionDeframer::new();
        d.push(&b);
        let back = d.next_frame().unwrap().unwrap();
        assert_eq!(back.into_message(), Some((ppid, bytes)));
    }
    // The bare ACK reaches the core as an empty body; INIT never does.
    assert_eq!(
        SessionFrame::Ack { tsn: None }.into_message(),
        Some((PPID_SESSION_ACK, vec![]))
    );
    assert_eq!(SessionFrame::Init { flags: 3 }.into_message(), None);
    // A session ACK body of the wrong size goes out as the bare form.
    assert_eq!(
        SessionFrame::from_message(PPID_SESSION_ACK, vec![1]),
        SessionFrame::Ack { tsn: None }
    );
}

#[test]
fn session_frames_wire_format() {
    let mut b = vec![];
    SessionFrame::Init { flags: 0x03 }.encode(&mut b);
    assert_eq!(b, hex("01030004"));
    b.clear();
    SessionFrame::Data {
        ppid: 11,
        data: b"abc".to_vec(),
    }
    .encode(&mut b);
    // type 0, flags 0, length 8 + 3 (padding excluded), PPID, data, pad.
    assert_eq!(b, hex("0000000b 0000000b 61626300"));
    b.clear();
    SessionFrame::Heartbeat {
        info: b"xy".to_vec(),
    }
    .encode(&mut b);
    // Heartbeat Info TLV type 1, length 4 + 2.
    assert_eq!(b, hex("0400000a 00010006 78790000"));
    b.clear();
    SessionFrame::HeartbeatAck { info: vec![7] }.encode(&mut b);
    assert_eq!(b, hex("05000009 00010005 07000000"));
}

#[test]
fn session_round_trip_all_at_once_and_byte_by_byte() {
    let fs = frames();
    let mut stream = vec![];
    for f in &fs {
        let before = stream.len();
        f.encode(&mut stream);
        assert_eq!((stream.len() - before) % 4, 0);
    }
    let mut d = SessionDeframer::new();
    d.push(&stream);
    let mut got = vec![];
    while let Some(f) = d.next_frame().unwrap() {
        got.push(f);
    }
    assert_eq!(got, fs);

    let mut d = SessionDeframer::new();
    let mut got = vec![];
    for b in &stream {
        d.push(std::slice::from_ref(b));
        while let Some(f) = d.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, fs);
}

#[test]
fn session_data_carries_asap_messages() {
    // ASAP control messages inside DATA frames come out intact and decode.
    let m = AsapMessage::Cookie {
        cookie: b"odd cookie".to_vec(),
    };
    let mut stream = vec![];
    for i in 0..3u32 {
        SessionFrame::Data {
            ppid: PPID_ASAP,
            data: m.encode_to_vec(),
        }
        .encode(&mut stream);
        SessionFrame::Data {
            ppid: 1000 + i,
            data: vec![i as u8; i as usize * 3 + 1],
        }
        .encode(&mut stream);
    }
    let mut d = SessionDeframer::new();
    for c in stream.chunks(5) {
        d.push(c);
    }
    let mut n = 0;
    while let Some(f) = d.next_frame().unwrap() {
        match f {
            SessionFrame::Data {
                ppid: PPID_ASAP,
                data,
            } => {
                assert_eq!(decode_asap(&data).unwrap().message, m);
                n += 1;
            }
            SessionFrame::Data { ppid, data } => {
                let i = ppid - 1000;
                assert_eq!(data, vec![i as u8; i as usize * 3 + 1]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(n, 3);
}

#[test]
fn session_malformed_frames() {
    // Unknown chunk type.
    let mut d = SessionDeframer::new();
    d.push(&hex("02000004"));
    assert_eq!(
        d.next_frame(),
        Err(FrameError::UnknownChunk { ty: 2, offset: 0 })
    );
    // DATA without a PPID, after a good frame: offset of the bad frame.
    let mut d = SessionDeframer::new();
    d.push(&hex("01030004 00000006 00000000"));
    assert_eq!(d.next_frame(), Ok(Some(SessionFrame::Init { flags: 3 })));
    assert_eq!(
        d.next_frame(),
        Err(FrameError::TooShort {
            length: 6,
            offset: 4
        })
    );
    // HEARTBEAT without its info TLV header.
    let mut d = SessionDeframer::new();
    d.push(&hex("04000004"));
    assert!(matches!(d.next_frame(), Err(FrameError::TooShort { .. })));
    // Length below 4.
    let mut d = SessionDeframer::new();
    d.push(&hex("00000003 00000000"));
    assert!(matches!(
        d.next_frame(),
        Err(FrameError::TooShort { length: 3, .. })
    ));
}

#[test]
fn session_data_too_large_is_truncated_to_max() {
    let data = vec![0x5a; SessionFrame::MAX_DATA + 10];
    let mut b = vec![];
    SessionFrame::Data { ppid: 7, data }.encode(&mut b);
    assert_eq!(u16::from_be_bytes([b[2], b[3]]), u16::MAX);
    let mut d = SessionDeframer::new();
    d.push(&b);
    match d.next_frame().unwrap().unwrap() {
        SessionFrame::Data { ppid, data } => {
            assert_eq!(ppid, 7);
            assert_eq!(data.len(), SessionFrame::MAX_DATA);
        }
        f => panic!("{f:?}"),
    }
}

// ----------------------------------------------------------------------------------------
// Properties

fn arb_frame() -> impl Strategy<Value = SessionFrame> {
    prop_oneof![
        any::<u8>().prop_map(|flags| SessionFrame::Init { flags }),
        (any::<u32>(), vec(any::<u8>(), 0..70))
            .prop_map(|(ppid, data)| SessionFrame::Data { ppid, data }),
        vec(any::<u8>(), 0..20).prop_map(|info| SessionFrame::Heartbeat { info }),
        vec(any::<u8>(), 0..20).prop_map(|info| SessionFrame::HeartbeatAck { info }),
    ]
}

proptest! {
    #[test]
    fn deframer_any_split(lens in vec(4usize..300, 1..20), cuts in vec(1usize..50, 1..40)) {
        // Messages with arbitrary Message Lengths (content irrelevant to the deframer).
        let mut stream = vec![];
        let mut want = vec![];
        for (i, &l) in lens.iter().enumerate() {
            let mut m = vec![i as u8; l];
            m[0] = 0x05;
            m[1] = 0;
            m[2..4].copy_from_slice(&u16::try_from(l).unwrap().to_be_bytes());
            want.push(m.clone());
            m.resize((l + 3) & !3, 0);
            stream.extend(m);
        }
        let mut d = Deframer::default();
        let mut got = vec![];
        let mut rest = &stream[..];
        let mut k = 0;
        while !rest.is_empty() {
            let n = cuts[k % cuts.len()].min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            k += 1;
            got.extend(drain(&mut d));
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(d.stream_offset(), stream.len() as u64);
    }

    #[test]
    fn session_any_split(fs in vec(arb_frame(), 1..12), cut in 1usize..40) {
        let mut stream = vec![];
        for f in &fs {
            f.encode(&mut stream);
        }
        let mut d = SessionDeframer::new();
        let mut got = vec![];
        for c in stream.chunks(cut) {
            d.push(c);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, fs);
    }
}
