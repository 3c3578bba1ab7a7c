//! `rsp decode`: print ASAP/ENRP messages as a readable tree or as JSON.
//!
//! Inputs are split into *units* (one `--hex`, one file, one `--hex-lines` line) and every
//! unit into messages at their length fields, so a unit holding several back-to-back
//! messages decodes them all. With `--stream`, each file (and all `--hex` values together)
//! is one byte stream read incrementally, so `nc … | rsp decode --stream` prints messages
//! as they arrive.

mod input;
mod output;

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::exit;
pub use input::parse_hex;
use input::{is_dash, Input, Splitter};
use output::Printer;

const DECODE_HELP: &str = "\
Examples:
  rsp decode --hex '05000018 0009000c 4563686f 506f6f6c 803f0008 00000003'
  rsp decode --proto enrp presence.bin
  rsp decode --hex-lines vectors.txt            # lines: 'label=HEX', '#' comments
  nc registrar 3863 | rsp decode --stream       # back-to-back messages as they arrive
  rsp decode --json reg.bin | jq '.[0].message'

Registration Life is printed both ways: milliseconds (RSPLIB, Wireshark) and seconds
(RFC 5354). Error offsets are bytes from the start of the message; the hex dump marks them.

Exit status:
  0  every message decoded
  1  at least one message (or --hex-lines line) did not decode
  2  usage error: bad flag, invalid --hex value, unreadable file";

const DECODE_ABOUT: &str = "\
Print ASAP/ENRP messages (hex, raw files, byte streams) as a readable tree or JSON.

With no FILE and no --hex, reads standard input. Each --hex value, file or --hex-lines line
is decoded on its own; if it holds more than one message (the first length field is
shorter than the input) all of them are decoded in sequence. A failed message is shown
with the error's kind and byte offset and a hex dump marking that offset.";

/// Arguments of `rsp decode` (the subcommand's help text is [`DECODE_ABOUT`]).
#[derive(Debug, Args)]
#[command(
    about = "Print ASAP/ENRP messages (hex, raw files, byte streams) as a readable tree or JSON",
    long_about = DECODE_ABOUT,
    after_help = DECODE_HELP
)]
pub struct DecodeArgs {
    /// Message bytes in hex. Whitespace, ':', '-', ',' and 0x prefixes are ignored (quote
    /// a value with spaces). Repeatable; each value is decoded on its own.
    #[arg(long, value_name = "HEX")]
    pub hex: Vec<String>,

    /// Files holding raw message bytes ('-' = standard input).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Treat each input as a byte stream of back-to-back messages (e.g. a TCP payload),
    /// cut at each message's length field and decoded as soon as it is complete. All
    /// --hex values form one stream; with --hex-lines the lines of a file form one stream.
    #[arg(long)]
    pub stream: bool,

    /// Protocol of the messages. The type codes of ASAP and ENRP overlap: auto tries ASAP
    /// and falls back to ENRP when only ENRP decodes, and says which it chose.
    #[arg(long, value_enum, default_value_t = ProtoArg::Auto)]
    pub proto: ProtoArg,

    /// Inputs are text: one hex message per line, 'label=HEX' allowed, '#' starts a
    /// comment, blank lines are skipped.
    #[arg(long)]
    pub hex_lines: bool,

    /// Print one JSON array, one object per message (offset, protocol, name, type, flags,
    /// length, hex, the decoded message, skipped unknown parameters, error).
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Asap,
    Enrp,
    Auto,
}

/// What `run_with` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub failed: usize,
}

impl Summary {
    pub fn exit_code(&self) -> ExitCode {
        if self.failed > 0 {
            ExitCode::from(exit::FAILURE)
        } else {
            ExitCode::from(exit::OK)
        }
    }
}

/// Entry point for `rsp decode` on the process's stdin and stdout.
pub fn run(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let stdin = io::stdin();
    let reads_stdin =
        (args.files.is_empty() && args.hex.is_empty()) || args.files.iter().any(|f| is_dash(f));
    if reads_stdin && stdin.is_terminal() {
        eprintln!(
            "rsp decode: reading {} from standard input (end with Ctrl-D; see rsp decode --help)",
            if args.hex_lines {
                "hex lines"
            } else {
                "raw message bytes"
            }
        );
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match run_with(args, &mut stdin.lock(), &mut out) {
        Ok(summary) => {
            if summary.messages == 0 {
                eprintln!("rsp decode: no message bytes in the input");
            }
            Ok(summary.exit_code())
        }
        // `rsp decode … | head` is not an error.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::from(exit::OK)),
        Err(e) => Err(e),
    }
}

/// `rsp decode` on the given stdin and output. `Err` means a usage error or an I/O failure.
pub fn run_with(
    args: &DecodeArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    // Validate everything before printing anything: a usage error produces no output.
    validate(args)?;
    let mut hex_values = Vec::with_capacity(args.hex.len());
    for (i, h) in args.hex.iter().enumerate() {
        let bytes = parse_hex(h).map_err(|e| anyhow::anyhow!("--hex value {}: {e}", i + 1))?;
        hex_values.push(bytes);
    }
    let mut inputs = Vec::new();
    if args.files.is_empty() && args.hex.is_empty() {
        inputs.push(Input::Stdin);
    }
    for f in &args.files {
        if is_dash(f) {
            inputs.push(Input::Stdin);
        } else {
            let file = File::open(f).with_context(|| {
                let looks_hex = parse_hex(&f.to_string_lossy()).is_ok_and(|b| !b.is_empty());
                let hint = if looks_hex && !f.exists() {
                    " (it looks like hex: quote a --hex value with spaces, e.g. --hex '0500 0018')"
                } else {
                    ""
                };
                format!("cannot open {}{hint}", f.display())
            })?;
            inputs.push(Input::File(f.display().to_string(), file));
        }
    }

    let mut p = Printer::new(args, out);
    p.begin()?;
    let many_hex = hex_values.len() > 1;
    if args.stream && !hex_values.is_empty() {
        let mut s = Splitter::default();
        for h in &hex_values {
            s.push(h);
            p.drain(&mut s, "--hex", None)?;
        }
        p.finish(s, "--hex", None)?;
    } else {
        for (i, h) in hex_values.iter().enumerate() {
            let source = if many_hex {
                format!("--hex {}", i + 1)
            } else {
                "--hex".to_string()
            };
            p.unit(&source, None, h)?;
        }
    }
    for input in inputs {
        let (name, mut reader): (String, Box<dyn Read + '_>) = match input {
            Input::Stdin => ("stdin".to_string(), Box::new(&mut *stdin)),
            Input::File(name, f) => (name, Box::new(f)),
        };
        if args.hex_lines {
            p.hex_lines(&name, BufReader::new(reader))?;
        } else if args.stream {
            p.stream(&name, &mut reader)?;
        } else {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {name}"))?;
            p.unit(&name, None, &bytes)?;
        }
    }
    p.end()?;
    Ok(p.summary)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Reject flag combinations that would silently do nothing.
pub fn validate(args: &DecodeArgs) -> anyhow::Result<()> {
    if args.hex_lines && args.files.is_empty() && !args.hex.is_empty() {
        bail!("--hex-lines reads files or stdin; --hex values are hex already");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::input::*;
    use super::*;
    use serde_json::{json, Value};

    fn args(f: impl FnOnce(&mut DecodeArgs)) -> DecodeArgs {
        let mut a = DecodeArgs {
            hex: vec![],
            files: vec![],
            stream: false,
            proto: ProtoArg::Auto,
            hex_lines: false,
            json: false,
        };
        f(&mut a);
        a
    }

    fn run_on(a: &DecodeArgs, stdin: &[u8]) -> (Summary, String) {
        let mut out = Vec::new();
        let s = run_with(a, &mut &stdin[..], &mut out).expect("runs");
        (s, String::from_utf8(out).expect("utf-8"))
    }

    const HR: &str = "05000018 0009000c 4563686f 506f6f6c 803f0008 00000003";

    #[test]
    fn parse_hex_accepts_common_spellings() {
        assert_eq!(parse_hex("05 00:00-18").unwrap(), vec![5, 0, 0, 0x18]);
        assert_eq!(parse_hex("0x05, 0x00\n0X0a").unwrap(), vec![5, 0, 10]);
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(
            parse_hex("abc").unwrap_err(),
            "odd number of hex digits (3)"
        );
        assert_eq!(parse_hex("zz").unwrap_err(), "'z' is not a hex digit");
    }

    #[test]
    fn hex_lines_syntax() {
        assert_eq!(split_hex_line("  # comment"), None);
        assert_eq!(split_hex_line(""), None);
        assert_eq!(
            split_hex_line("reg = 0100 # x"),
            Some((Some("reg"), "0100"))
        );
        assert_eq!(split_hex_line("0100"), Some((None, "0100")));
    }

    #[test]
    fn splitter_keeps_unpadded_tail_and_garbage() {
        let mut s = Splitter::default();
        s.push(&[0x0b, 0, 0, 5, 0xaa, 0, 0, 0]); // padded 5-byte message
        s.push(&[0x0b, 0, 0, 5, 0xbb]); // unpadded last one
        let Step::Message { offset: 0, bytes } = s.next() else {
            panic!("first message")
        };
        assert_eq!(bytes, vec![0x0b, 0, 0, 5, 0xaa, 0, 0, 0]);
        assert!(matches!(s.next(), Step::NeedMore));
        assert_eq!(s.rest(), (8, &[0x0b, 0, 0, 5, 0xbb][..]));

        let mut s = Splitter::default();
        s.push(&[0, 0, 0, 1, 2, 3]);
        assert!(matches!(s.next(), Step::Broken(_)));
        assert_eq!(s.rest(), (0, &[0, 0, 0, 1, 2, 3][..]));
    }

    #[test]
    fn two_messages_in_one_hex_value_are_both_decoded() {
        let a = args(|a| a.hex = vec![format!("{HR} {HR}")]);
        let (s, out) = run_on(&a, b"");
        assert_eq!(
            s,
            Summary {
                messages: 2,
                failed: 0
            }
        );
        assert!(
            out.starts_with("#1 --hex, offset 0, 24 bytes: ASAP (auto)\n"),
            "{out}"
        );
        assert!(
            out.contains("\n#2 --hex, offset 24, 24 bytes: ASAP (auto)\n"),
            "{out}"
        );
        assert!(
            out.ends_with("\n\n2 messages, 2 decoded, 0 failed\n"),
            "{out}"
        );
    }

    #[test]
    fn stream_of_hex_values_straddles_values() {
        // One message cut in two --hex values: only --stream joins them.
        let a = args(|a| {
            a.hex = vec![
                "05000018 0009000c 4563".into(),
                "686f 506f6f6c 803f0008 00000003".into(),
            ];
            a.stream = true;
        });
        let (s, out) = run_on(&a, b"");
        assert_eq!(s.messages, 1, "{out}");
        assert_eq!(s.failed, 0, "{out}");
        let a = args(|a| {
            a.hex = vec![
                "05000018 0009000c 4563".into(),
                "686f 506f6f6c 803f0008 00000003".into(),
            ];
        });
        let (s, _) = run_on(&a, b"");
        assert_eq!(s.failed, 2);
    }

    #[test]
    fn auto_falls_back_to_enrp_and_says_so() {
        let a = args(|a| a.hex = vec!["0501000c 11111111 22222222".into()]);
        let (s, out) = run_on(&a, b"");
        assert_eq!(s.failed, 0, "{out}");
        assert!(
            out.starts_with("#1 --hex, offset 0, 12 bytes: ENRP (auto: does not decode as ASAP)\n"),
            "{out}"
        );
        let a = args(|a| {
            a.hex = vec!["0501000c 11111111 22222222".into()];
            a.proto = ProtoArg::Asap;
        });
        let (s, out) = run_on(&a, b"");
        assert_eq!(s.failed, 1, "{out}");
        assert!(out.contains(": FAILED as ASAP\n"), "{out}");
    }

    #[test]
    fn bad_hex_value_is_a_usage_error_before_any_output() {
        let a = args(|a| a.hex = vec![HR.into(), "xyz".into()]);
        let mut out = Vec::new();
        let e = run_with(&a, &mut &b""[..], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "--hex value 2: 'x' is not a hex digit");
        assert!(out.is_empty());
    }

    #[test]
    fn bad_hex_line_fails_but_continues() {
        let a = args(|a| a.hex_lines = true);
        let (s, out) = run_on(&a, format!("# vectors\nbad=zz\n\nhr={HR}\n").as_bytes());
        assert_eq!(
            s,
            Summary {
                messages: 2,
                failed: 1
            }
        );
        assert!(
            out.starts_with("#1 stdin:2 [bad]: invalid hex: 'z' is not a hex digit\n"),
            "{out}"
        );
        assert!(
            out.contains("#2 stdin:4 [hr], offset 0, 24 bytes: ASAP (auto)\n"),
            "{out}"
        );
    }

    #[test]
    fn empty_input_prints_empty_json_array() {
        let a = args(|a| a.json = true);
        let (s, out) = run_on(&a, b"");
        assert_eq!(s, Summary::default());
        assert_eq!(out, "[]\n");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!([]));
    }

    #[test]
    fn validate_rejects_hex_lines_with_only_hex() {
        let a = args(|a| {
            a.hex_lines = true;
            a.hex = vec![HR.into()];
        });
        assert!(validate(&a).is_err());
        assert!(validate(&args(|_| {})).is_ok());
    }
}
