//! Stream deframing: the same bytes pushed in one piece or in arbitrary pieces must give
//! the same messages (and the same error, at the same stream offset); every message has
//! exactly its Message Length; session frames re-encode to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rserpool_wire::framing::{Deframer, FrameError, SessionDeframer, SessionFrame};

/// Chunk sizes 1..=64 from a tiny xorshift generator seeded by the input.
fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut x = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x % 64 + 1) as usize;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

fn messages(d: &mut Deframer, out: &mut Vec<Result<Vec<u8>, FrameError>>) -> bool {
    loop {
        match d.next_message() {
            Ok(Some(m)) => {
                assert!(m.len() >= 4);
                assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len());
                out.push(Ok(m.to_vec()));
            }
            Ok(None) => return true,
            Err(e) => {
                out.push(Err(e));
                return false;
            }
        }
    }
}

fn frames(d: &mut SessionDeframer, out: &mut Vec<Result<SessionFrame, FrameError>>) -> bool {
    loop {
        match d.next_frame() {
            Ok(Some(f)) => out.push(Ok(f)),
            Ok(None) => return true,
            Err(e) => {
                out.push(Err(e));
                return false;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let max_len = 4 + usize::from(seed) * 64;

    // Message deframer: one push vs. many.
    let mut whole = Vec::new();
    let mut d = Deframer::new(max_len);
    d.push(stream);
    messages(&mut d, &mut whole);
    let consumed: u64 = whole
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|m| ((m.len() + 3) & !3) as u64)
        .sum();
    assert_eq!(d.stream_offset(), consumed);
    if matches!(whole.last(), None | Some(Ok(_))) {
        assert_eq!(d.buffered() as u64, stream.len() as u64 - consumed);
    }

    let mut pieces = Vec::new();
    let mut d = Deframer::new(max_len);
    for c in chunks(seed, stream) {
        d.push(c);
        if !messages(&mut d, &mut pieces) {
            break;
        }
    }
    assert_eq!(whole, pieces);

    // Session deframer: one push vs. many, and every frame re-encodes to itself.
    let mut whole = Vec::new();
    let mut s = SessionDeframer::new();
    s.push(stream);
    frames(&mut s, &mut whole);
    let mut pieces = Vec::new();
    let mut s = SessionDeframer::new();
    for c in chunks(seed.wrapping_add(1), stream) {
        s.push(c);
        if !frames(&mut s, &mut pieces) {
            break;
        }
    }
    assert_eq!(whole, pieces);
    for f in whole.iter().filter_map(|r| r.as_ref().ok()) {
        let mut bytes = Vec::new();
        f.encode(&mut bytes);
        assert_eq!(bytes.len() % 4, 0);
        let mut s = SessionDeframer::new();
        s.push(&bytes);
        assert_eq!(s.next_frame(), Ok(Some(f.clone())));
        assert_eq!(s.next_frame(), Ok(None));
    }
});
