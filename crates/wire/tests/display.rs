//! Error causes read as human words (what `rsp` and the logs print).

use rserpool_wire::{Cause, CauseCode, OperationError, Policy};

#[test]
fn cause_codes_read_as_words() {
    assert_eq!(
        CauseCode::UNKNOWN_POOL_HANDLE.to_string(),
        "unknown pool handle (0x9)"
    );
    assert_eq!(
        CauseCode::INCONSISTENT_POLICY.to_string(),
        "inconsistent pooling policy (0x5)"
    );
    assert_eq!(
        CauseCode(0xf004).to_string(),
        "RSPLIB: invalid pool handle (0xf004)"
    );
    assert_eq!(CauseCode(0x4242).to_string(), "unknown cause 0x4242");
}

#[test]
fn operation_errors_summarize_their_information() {
    let e = OperationError::code(CauseCode::UNKNOWN_POOL_HANDLE);
    assert_eq!(e.to_string(), "unknown pool handle (0x9)");
    let policy = OperationError::single(Cause::inconsistent_policy(&Policy::RoundRobin));
    assert_eq!(
        policy.to_string(),
        "inconsistent pooling policy (0x5): the pool's policy is rr (Round Robin)"
    );
    // A pool handle TLV (type 0x0009) quoted by Invalid Values, plus a second cause.
    let two = OperationError {
        causes: vec![
            Cause::with_info(CauseCode::INVALID_VALUES, vec![0, 9, 0, 5, b'x', 0, 0, 0]),
            Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, vec![0x7f, 0, 0, 8]),
        ],
    };
    let text = two.to_string();
    assert!(
        text.starts_with("invalid values (0x3) in parameter "),
        "{text}"
    );
    assert!(text.contains("(0x0009)"), "{text}");
    assert!(
        text.ends_with("; unrecognized message (0x2): message type 0x7f"),
        "{text}"
    );
    assert!(!text.contains("OperationError"), "{text}");
    assert_eq!(OperationError::default().to_string(), "no cause given");
    // Information that does not decode is counted, not dumped.
    let odd = Cause::with_info(CauseCode::INCONSISTENT_POLICY, vec![1, 2, 3]);
    assert_eq!(
        odd.to_string(),
        "inconsistent pooling policy (0x5) (3 bytes of information)"
    );
}
