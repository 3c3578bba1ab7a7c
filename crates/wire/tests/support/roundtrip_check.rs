// Shared by the `decode` fuzz target (fuzz/fuzz_targets/decode.rs, via `include!`) and by
// tests/fuzz_corpus_replay.rs, so the corpus replay runs exactly the fuzzer's check.
//
// For arbitrary input bytes: try both protocols; whatever decodes must re-encode to bytes
// that decode to the same message, with no unknown parameters left, and the re-encoding
// must be a fixed point (encode ∘ decode ∘ encode = encode). Every error cause the decoder
// asks to report must fit in an ASAP_ERROR that itself round-trips.

/// Returns how many of the two protocol decoders accepted `data` (0, 1 or 2).
#[allow(dead_code)]
pub fn check_decode_roundtrip(data: &[u8]) -> usize {
    let mut accepted = 0;
    match rserpool_wire::decode_asap(data) {
        Ok(d) => {
            accepted += 1;
            let bytes = d.message.encode_to_vec();
            assert_eq!(bytes.len() % 4, 0, "encoding is not padded");
            let again = match rserpool_wire::decode_asap(&bytes) {
                Ok(a) => a,
                Err(e) => panic!(
                    "re-encoded ASAP message does not decode: {e}\nmessage: {:?}\nbytes: {bytes:02x?}",
                    d.message
                ),
            };
            assert_eq!(again.message, d.message, "ASAP decode(encode(m)) != m");
            assert!(again.unknown.is_empty(), "encoder emitted unknown parameters");
            assert_eq!(again.message.encode_to_vec(), bytes, "ASAP encoding not stable");
            check_reports(d.report_causes());
        }
        Err(e) => {
            check_reports(e.report_cause(data).into_iter().collect());
            let _ = e.to_string();
        }
    }
    match rserpool_wire::decode_enrp(data) {
        Ok(d) => {
            accepted += 1;
            let bytes = d.message.encode_to_vec();
            assert_eq!(bytes.len() % 4, 0, "encoding is not padded");
            let again = match rserpool_wire::decode_enrp(&bytes) {
                Ok(a) => a,
                Err(e) => panic!(
                    "re-encoded ENRP message does not decode: {e}\nmessage: {:?}\nbytes: {bytes:02x?}",
                    d.message
                ),
            };
            assert_eq!(again.message, d.message, "ENRP decode(encode(m)) != m");
            assert!(again.unknown.is_empty(), "encoder emitted unknown parameters");
            assert_eq!(again.message.encode_to_vec(), bytes, "ENRP encoding not stable");
            check_reports(d.report_causes());
        }
        Err(e) => {
            check_reports(e.report_cause(data).into_iter().collect());
            let _ = e.to_string();
        }
    }
    accepted
}

/// Each cause, alone in an ASAP_ERROR, must encode and decode back unchanged; a cause
/// that quotes (0x1, 0x2, 0x3) never goes out without the bytes it quotes.
fn check_reports(causes: Vec<rserpool_wire::Cause>) {
    for c in causes {
        assert!(
            !(matches!(c.code.0, 1..=3) && c.info.is_empty()),
            "cause {:#06x} without information",
            c.code.0
        );
        let m = rserpool_wire::AsapMessage::Error {
            error: rserpool_wire::OperationError::single(c),
        };
        let bytes = m.encode_to_vec();
        match rserpool_wire::decode_asap(&bytes) {
            Ok(d) => assert_eq!(d.message, m, "report does not round-trip"),
            Err(e) => panic!("report does not decode: {e}"),
        }
    }
}
