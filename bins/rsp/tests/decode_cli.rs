//! `rsp decode` end to end: the built binary on the digest's worked examples
//! (spec/wire-format.md §7, §8), streams, malformed input and `--json`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const REGISTRATION: &str = "01000038 0009000c 4563686f 506f6f6c 000a0028 01020304 00000000 0000003c
                            00040010 00070001 00010008 c0000201 00080008 00000001";
const HANDLE_RESOLUTION: &str = "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003";
const PRESENCE: &str = "0101002c 11111111 00000000 000f0006 8e4b0000 000b0018 11111111 00040010
                        26ad0000 00010008 c000020a";

fn bytes(hex: &str) -> Vec<u8> {
    hex::decode(hex.split_whitespace().collect::<String>()).expect("valid hex")
}

fn rsp(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsp starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("rsp runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

fn tmp_file(name: &str, content: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("decode_cli");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write tmp file");
    path
}

#[test]
fn registration_worked_example_from_hex() {
    let o = rsp(&["decode", "--hex", REGISTRATION], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
#1 --hex, offset 0, 56 bytes: ASAP (auto)
ASAP_REGISTRATION (ASAP type 0x01), flags 0x00, length 56
  Pool Handle (0x0009): \"EchoPool\" [45 63 68 6f 50 6f 6f 6c]
  Pool Element (0x000a): PE 0x01020304
    PE Identifier: 0x01020304
    Home ENRP Server Identifier: 0x00000000 (not yet determined)
    Registration Life: 60 (0x0000003c) = 60 ms (0.06s) per RSPLIB/Wireshark; 60 s (1m 0s) per RFC 5354
    User Transport: SCTP Transport (0x0004): port 7, DATA plus CONTROL (1)
      IPv4 Address (0x0001): 192.0.2.1
    Pool Member Selection Policy (0x0008): Round Robin (rr, 0x00000001)
    ASAP Transport: absent
"
    );
    assert_eq!(stderr(&o), "");
}

#[test]
fn handle_resolution_worked_example_from_a_raw_file() {
    let path = tmp_file("hr.bin", &bytes(HANDLE_RESOLUTION));
    let path = path.to_str().expect("utf-8 path");
    let o = rsp(&["decode", "--proto", "asap", path], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "\
#1 {path}, offset 0, 24 bytes: ASAP
ASAP_HANDLE_RESOLUTION (ASAP type 0x05), flags 0x00, length 24
  Pool Handle (0x0009): \"EchoPool\" [45 63 68 6f 50 6f 6f 6c]
  Handle Resolution Option (0x803f): items 3
"
        )
    );
}

#[test]
fn presence_worked_example_from_stdin_with_auto_detection() {
    // The same bytes as ASAP would be a Registration with a broken first TLV: auto must
    // notice and fall back to ENRP.
    let o = rsp(&["decode"], &bytes(PRESENCE));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
#1 stdin, offset 0, 44 bytes: ENRP (auto: does not decode as ASAP)
ENRP_PRESENCE (ENRP type 0x01), flags 0x01 [R reply required], length 44
  Sending Server Identifier: 0x11111111
  Receiving Server Identifier: 0x00000000 (group-cast / unspecified)
  PE Checksum (0x000f): 0x8e4b
  Server Information (0x000b): server 0x11111111
    Server Identifier: 0x11111111
    ENRP Transport: SCTP Transport (0x0004): port 9901, DATA only (0)
      IPv4 Address (0x0001): 192.0.2.10
"
    );
    // Forced to ASAP it fails, with the offset of the bad parameter.
    let o = rsp(&["decode", "--proto", "asap", "-"], &bytes(PRESENCE));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("kind: param_overrun, offset: 4\n"),
        "{}",
        stdout(&o)
    );
}

fn three_message_stream() -> Vec<u8> {
    // HR (24) + Presence (44) + a 5-byte Cookie padded to 8 (the cookie is 1 byte).
    let mut s = bytes(HANDLE_RESOLUTION);
    s.extend(bytes(PRESENCE));
    s.extend(bytes("0b000009 000d0005 ab000000"));
    s
}

#[test]
fn stream_of_back_to_back_messages_on_stdin() {
    let input = three_message_stream();
    let cookie_len = input.len() - 68;
    assert_eq!(cookie_len, 12);
    for flags in [&["decode", "--stream"][..], &["decode"][..]] {
        let o = rsp(flags, &input);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{flags:?}\n{out}{}", stderr(&o));
        let heads: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            heads,
            vec![
                "#1 stdin, offset 0, 24 bytes: ASAP (auto)",
                "#2 stdin, offset 24, 44 bytes: ENRP (auto: does not decode as ASAP)",
                "#3 stdin, offset 68, 12 bytes: ASAP (auto)",
            ],
            "{flags:?}\n{out}"
        );
        assert!(out.contains("\nASAP_COOKIE (ASAP type 0x0b), flags 0x00, length 9\n  Cookie (0x000d): 1 byte: ab\n"), "{out}");
        assert!(
            out.ends_with("\n3 messages, 3 decoded, 0 failed\n"),
            "{out}"
        );
    }
}

#[test]
fn stream_with_truncated_last_message_fails_with_its_offset() {
    let mut input = three_message_stream();
    input.extend(bytes("0e000010 000c")); // ASAP_ERROR claiming 16 bytes, 6 present
    let o = rsp(&["decode", "--stream"], &input);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("#4 stdin, offset 80, 6 bytes: FAILED as ASAP (auto)\n"),
        "{out}"
    );
    assert!(
        out.contains("  error: message length 16 exceeds the 6 bytes received (at byte 2)\n"),
        "{out}"
    );
    assert!(
        out.contains("  the error is at byte 82 of stdin\n"),
        "{out}"
    );
    assert!(
        out.ends_with("\n4 messages, 3 decoded, 1 failed\n"),
        "{out}"
    );
}

#[test]
fn malformed_message_exit_1_with_offset_and_marked_dump() {
    // Registration whose Pool Element (at byte 16) claims 0x30 bytes: more than is left.
    let mut reg = bytes(REGISTRATION);
    reg[19] = 0x30;
    let o = rsp(
        &["decode", "--proto", "asap", "--hex", &hex::encode(&reg)],
        b"",
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(
        out,
        "\
#1 --hex, offset 0, 56 bytes: FAILED as ASAP
ASAP_REGISTRATION (ASAP type 0x01), flags 0x00, length 56, 56 bytes received: DECODE ERROR
  error: parameter Pool Element (0x000a): length 48 runs past its container (40 bytes left) (at byte 16)
  kind: param_overrun, offset: 16
  0000  01 00 00 38 00 09 00 0c  45 63 68 6f 50 6f 6f 6c  |...8....EchoPool|
  0010  00 0a 00 30 01 02 03 04  00 00 00 00 00 00 00 3c  |...0...........<|
        ^^ offset 16
  0020  00 04 00 10 00 07 00 01  00 01 00 08 c0 00 02 01  |................|
  0030  00 08 00 08 00 00 00 01                           |........|

1 message, 0 decoded, 1 failed
"
    );
}

#[test]
fn json_output_field_by_field() {
    let mut bad = bytes(HANDLE_RESOLUTION);
    bad[19] = 0x09; // HR option length 9: overruns at byte 16
    let o = rsp(
        &[
            "decode",
            "--json",
            "--hex",
            REGISTRATION,
            "--hex",
            &hex::encode(&bad),
            "--hex",
            PRESENCE,
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    let a = v.as_array().expect("an array");
    assert_eq!(a.len(), 3);

    let reg = &a[0];
    assert_eq!(reg["index"], 1);
    assert_eq!(reg["source"], "--hex 1");
    assert_eq!(reg["offset"], 0);
    assert_eq!(reg["protocol"], "ASAP");
    assert_eq!(reg["protocol_auto"], true);
    assert_eq!(reg["name"], "ASAP_REGISTRATION");
    assert_eq!(reg["type"], 1);
    assert_eq!(reg["flags"], 0);
    assert_eq!(reg["flag_names"], serde_json::json!([]));
    assert_eq!(reg["length"], 56);
    assert_eq!(reg["size"], 56);
    assert_eq!(reg["ok"], true);
    assert_eq!(reg["error"], Value::Null);
    assert_eq!(reg["unknown_params"], serde_json::json!([]));
    assert_eq!(
        reg["hex"],
        REGISTRATION.split_whitespace().collect::<String>()
    );
    let m = &reg["message"]["Registration"];
    let handle: Vec<u8> = serde_json::from_value(m["handle"].clone()).expect("handle bytes");
    assert_eq!(handle, b"EchoPool");
    assert_eq!(m["pe"]["id"], 0x01020304);
    assert_eq!(m["pe"]["registration_life"], 60);
    assert_eq!(m["pe"]["policy"], "RoundRobin");
    let ut = &m["pe"]["user_transport"]["Ip"];
    assert_eq!(ut["port"], 7);
    assert_eq!(ut["kind"], "Sctp");
    assert_eq!(ut["addrs"][0], "192.0.2.1");

    let bad = &a[1];
    assert_eq!(bad["index"], 2);
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["name"], "ASAP_HANDLE_RESOLUTION");
    assert_eq!(bad["message"], Value::Null);
    assert_eq!(bad["error"]["kind"], "param_overrun");
    assert_eq!(bad["error"]["offset"], 16);
    assert_eq!(bad["error"]["input_offset"], 16);
    assert!(bad["error"]["message"]
        .as_str()
        .expect("message text")
        .contains("Handle Resolution Option (0x803f): length 9"));
    assert_eq!(bad["enrp_error"]["kind"], "param_overrun");

    let pres = &a[2];
    assert_eq!(pres["protocol"], "ENRP");
    assert_eq!(pres["name"], "ENRP_PRESENCE");
    assert_eq!(pres["flags"], 1);
    assert_eq!(pres["flag_names"], serde_json::json!(["R"]));
    assert_eq!(pres["length"], 44);
    assert_eq!(pres["asap_error"]["offset"], 4);
    let p = &pres["message"]["Presence"];
    assert_eq!(p["reply_required"], true);
    assert_eq!(p["sender"], 0x11111111);
    assert_eq!(p["checksum"], 0x8e4b);
    assert_eq!(p["server_info"]["transport"]["port"], 9901);
    assert_eq!(p["server_info"]["transport"]["addrs"][0], "192.0.2.10");
}

#[test]
fn json_reports_skipped_unknown_parameters() {
    // HANDLE_RESOLUTION with a 0xc123 TLV (action 11: skip and report) after the handle.
    let hex = "0500001c 00090006 45630000 c1230008 01020304 803f0008 00000003";
    let o = rsp(&["decode", "--json", "--proto", "asap", "--hex", hex], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let u = &v[0]["unknown_params"];
    assert_eq!(u.as_array().map(Vec::len), Some(1));
    assert_eq!(u[0]["type"], 0xc123);
    assert_eq!(u[0]["offset"], 12);
    assert_eq!(u[0]["length"], 8);
    assert_eq!(u[0]["action"], "skip_and_report");
    assert_eq!(u[0]["must_report"], true);
    assert_eq!(u[0]["value"], "01020304");
    assert_eq!(v[0]["protocol_auto"], false);
    assert_eq!(v[0]["message"]["HandleResolution"]["items"], 3);
}

#[test]
fn hex_lines_file_with_labels_and_comments() {
    let text = format!(
        "# worked examples\nreg = {}\n\nhr={HANDLE_RESOLUTION}   # trailing comment\npresence={}\nbroken=0500\n",
        REGISTRATION.split_whitespace().collect::<String>(),
        PRESENCE.split_whitespace().collect::<String>()
    );
    let path = tmp_file("vectors.txt", text.as_bytes());
    let path = path.to_str().expect("utf-8 path");
    let o = rsp(&["decode", "--hex-lines", path], b"");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let heads: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        heads,
        vec![
            format!("#1 {path}:2 [reg], offset 0, 56 bytes: ASAP (auto)"),
            format!("#2 {path}:4 [hr], offset 0, 24 bytes: ASAP (auto)"),
            format!(
                "#3 {path}:5 [presence], offset 0, 44 bytes: ENRP (auto: does not decode as ASAP)"
            ),
            format!("#4 {path}:6 [broken], offset 0, 2 bytes: FAILED as ASAP (auto)"),
        ],
        "{out}"
    );
    assert!(
        out.contains("truncated: message header needs 4 bytes, only 2 available"),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2_without_output() {
    let o = rsp(&["decode", "--hex", "05 0"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("odd number of hex digits (3)"),
        "{}",
        stderr(&o)
    );

    let o = rsp(&["decode", "/nonexistent/rsp-decode-input"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot open /nonexistent/rsp-decode-input"));

    // The classic slip: an unquoted --hex value with spaces.
    let o = rsp(&["decode", "--hex", "05000018", "0009000c"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("cannot open 0009000c (it looks like hex: quote a --hex value"),
        "{}",
        stderr(&o)
    );

    let o = rsp(&["decode", "--proto", "sctp"], b"");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_documents_exit_codes() {
    let o = rsp(&["--help"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Exit status:"));
    let o = rsp(&["decode", "--help"], b"");
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    for want in [
        "With no FILE and no --hex, reads standard input.",
        "--stream",
        "--hex-lines",
        "--json",
        "--proto",
        "Exit status:",
        "1  at least one message",
    ] {
        assert!(help.contains(want), "missing {want:?} in\n{help}");
    }
}

#[test]
fn empty_stdin_is_not_a_failure() {
    let o = rsp(&["decode", "--json"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "[]\n");
    assert!(stderr(&o).contains("no message bytes"));
}
