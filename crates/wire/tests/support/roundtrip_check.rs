// Shared by the `decode` fuzz target (fuzz/fuzz_targets/decode.rs, via `include!`) and by
// tests/fuzz_corpus_replay.rs, so the corpus replay runs exactly the fuzzer's check.
//
// For arbitrary input bytes: try both protocols; whatever decodes must re-encode to bytes
// that decode to the same message, with no unknown parameters left, and the re-encoding
// must be a fixed point (encode ∘ decode ∘ encode = encode). Errors must be reportable
// without panicking.

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
            let _ = d.report_causes();
        }
        Err(e) => {
            let _ = e.report_cause(data);
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
            let _ = d.report_causes();
        }
        Err(e) => {
            let _ = e.report_cause(data);
            let _ = e.to_string();
        }
    }
    accepted
}
