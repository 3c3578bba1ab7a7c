//! Replays every file of `fuzz/corpus/decode` through the decode fuzz target's own check
//! (decode with both protocols; whatever decodes must satisfy decode(encode(m)) == m and
//! re-encode to the same bytes), so the corpus guards the codec in every normal test run.

mod support {
    include!("support/roundtrip_check.rs");
}

use std::path::Path;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/decode");

#[test]
fn replay_decode_corpus() {
    let dir = Path::new(CORPUS);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus too small: {} files", files.len());
    let mut decoded = 0;
    for f in &files {
        let data = std::fs::read(f).expect("corpus file");
        let r = std::panic::catch_unwind(|| support::check_decode_roundtrip(&data));
        match r {
            Ok(n) => decoded += usize::from(n > 0),
            Err(_) => panic!("corpus file {} fails the round trip check", f.display()),
        }
    }
    // The corpus exercises both outcomes: messages that decode and inputs that do not.
    assert!(
        decoded > 0 && decoded < files.len(),
        "{decoded}/{}",
        files.len()
    );
}
