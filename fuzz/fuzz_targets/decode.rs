//! Arbitrary bytes through `decode_asap` and `decode_enrp`; whatever decodes must survive
//! decode(encode(m)) == m. The check itself lives in crates/wire/tests/support so that
//! tests/fuzz_corpus_replay.rs replays the committed corpus through the very same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../../crates/wire/tests/support/roundtrip_check.rs");

fuzz_target!(|data: &[u8]| {
    check_decode_roundtrip(data);
});
