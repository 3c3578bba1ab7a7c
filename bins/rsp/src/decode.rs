//! `rsp decode`: print ASAP/ENRP messages as a readable tree or as JSON.
//!
//! Inputs are split into *units* (one `--hex`, one file, one `--hex-lines` line) and every
//! unit into messages at their length fields, so a unit holding several back-to-back
//! messages decodes them all. With `--stream`, each file (and all `--hex` values together)
//! is one byte stream read incrementally, so `nc … | rsp decode --stream` prints messages
//! as they arrive.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rserpool_wire::framing::{Deframer, FrameError};
use rserpool_wire::render::{self, Header};
use rserpool_wire::{decode, DecodeError, Decoded, Message, Protocol, UnknownParam};
use serde_json::{json, Value};

use crate::exit;

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

enum Input {
    Stdin,
    File(String, File),
}

fn is_dash(p: &std::path::Path) -> bool {
    p.as_os_str() == "-"
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Hex text → bytes. Ignores whitespace, ':', '-', '_', ',' and `0x` prefixes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut nibbles = Vec::with_capacity(s.len());
    for token in s.split(|c: char| c.is_whitespace() || c == ',') {
        let token = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        for c in token.chars() {
            if matches!(c, ':' | '-' | '_') {
                continue;
            }
            match c.to_digit(16) {
                Some(d) => nibbles.push(d as u8),
                None => return Err(format!("{c:?} is not a hex digit")),
            }
        }
    }
    if nibbles.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", nibbles.len()));
    }
    Ok(nibbles.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// A `--hex-lines` line: `None` for blank and comment lines, else `(label, hex)`.
fn split_hex_line(line: &str) -> Option<(Option<&str>, &str)> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return None;
    }
    Some(match line.split_once('=') {
        Some((label, hex)) => (Some(label.trim()), hex.trim()),
        None => (None, line),
    })
}

fn hex_string(b: &[u8]) -> String {
    hex::encode(b)
}

// ----------------------------------------------------------------------------------------
// Splitting a byte stream into messages

/// [`Deframer`] plus a copy of the bytes it has not returned yet, so that what is left at
/// the end (an incomplete or unpadded last message, or garbage after a bad length) can
/// still be decoded and shown.
#[derive(Default)]
struct Splitter {
    deframer: Deframer,
    pending: Vec<u8>,
    /// Index in `pending` of the first byte the deframer has not returned.
    start: usize,
    broken: bool,
}

enum Step {
    Message {
        offset: u64,
        bytes: Vec<u8>,
    },
    NeedMore,
    /// A length field below 4: the stream cannot be split any further.
    Broken(FrameError),
}

impl Splitter {
    fn push(&mut self, data: &[u8]) {
        if self.broken {
            return;
        }
        if self.start > 65536 && self.start * 2 > self.pending.len() {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        self.pending.extend_from_slice(data);
        self.deframer.push(data);
    }

    fn next(&mut self) -> Step {
        if self.broken {
            return Step::NeedMore;
        }
        let offset = self.deframer.stream_offset();
        match self.deframer.next_message() {
            Ok(Some(_)) => {
                // The deframer drops the padding; keep it so the message is shown (and
                // checked) exactly as it was on the wire.
                let consumed = self.deframer.stream_offset() - offset;
                let end = self
                    .start
                    .saturating_add(usize::try_from(consumed).unwrap_or(usize::MAX))
                    .min(self.pending.len());
                let bytes = self.pending[self.start..end].to_vec();
                self.start = end;
                Step::Message { offset, bytes }
            }
            Ok(None) => Step::NeedMore,
            Err(e) => {
                self.broken = true;
                Step::Broken(e)
            }
        }
    }

    /// Stream offset and bytes not returned as messages.
    fn rest(&self) -> (u64, &[u8]) {
        (
            self.deframer.stream_offset(),
            &self.pending[self.start.min(self.pending.len())..],
        )
    }
}

// ----------------------------------------------------------------------------------------
// Decoding one message

enum Outcome {
    Decoded {
        decoded: Decoded<Message>,
        auto: Option<Auto>,
    },
    Failed {
        protocol: Protocol,
        error: DecodeError,
        /// With `--proto auto`: how the other protocol failed.
        other: Option<(Protocol, DecodeError)>,
    },
}

/// How `--proto auto` chose.
enum Auto {
    /// ASAP decoded; `also` names the ENRP message the bytes would also be.
    Asap { also: Option<&'static str> },
    /// ASAP failed with this error, ENRP decoded.
    Enrp { asap_error: DecodeError },
}

fn decode_as(proto: ProtoArg, bytes: &[u8]) -> Outcome {
    let one = |protocol| match decode(protocol, bytes) {
        Ok(decoded) => Outcome::Decoded {
            decoded,
            auto: None,
        },
        Err(error) => Outcome::Failed {
            protocol,
            error,
            other: None,
        },
    };
    match proto {
        ProtoArg::Asap => one(Protocol::Asap),
        ProtoArg::Enrp => one(Protocol::Enrp),
        ProtoArg::Auto => match (decode(Protocol::Asap, bytes), decode(Protocol::Enrp, bytes)) {
            (Ok(decoded), enrp) => Outcome::Decoded {
                decoded,
                auto: Some(Auto::Asap {
                    also: enrp.ok().map(|d| d.message.name()),
                }),
            },
            (Err(asap_error), Ok(decoded)) => Outcome::Decoded {
                decoded,
                auto: Some(Auto::Enrp { asap_error }),
            },
            (Err(a), Err(e)) => {
                // Show first the error found further into the message: the decoder that
                // got further most likely had the right protocol.
                let (first, second) = if e.offset > a.offset {
                    ((Protocol::Enrp, e), (Protocol::Asap, a))
                } else {
                    ((Protocol::Asap, a), (Protocol::Enrp, e))
                };
                Outcome::Failed {
                    protocol: first.0,
                    error: first.1,
                    other: Some(second),
                }
            }
        },
    }
}

// ----------------------------------------------------------------------------------------
// Output

struct Printer<'a> {
    args: &'a DecodeArgs,
    out: &'a mut dyn Write,
    summary: Summary,
}

impl<'a> Printer<'a> {
    fn new(args: &'a DecodeArgs, out: &'a mut dyn Write) -> Self {
        Self {
            args,
            out,
            summary: Summary::default(),
        }
    }

    fn begin(&mut self) -> io::Result<()> {
        if self.args.json {
            self.out.write_all(b"[")?;
        }
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        if self.args.json {
            if self.summary.messages > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"]\n")?;
        } else if self.summary.messages > 1 || self.summary.failed > 0 {
            writeln!(
                self.out,
                "\n{} message{}, {} decoded, {} failed",
                self.summary.messages,
                if self.summary.messages == 1 { "" } else { "s" },
                self.summary.messages - self.summary.failed,
                self.summary.failed
            )?;
        }
        self.out.flush()
    }

    /// One unit (a --hex value, a file, a line): all the messages it holds.
    fn unit(&mut self, source: &str, label: Option<&str>, bytes: &[u8]) -> io::Result<()> {
        let mut s = Splitter::default();
        s.push(bytes);
        self.drain(&mut s, source, label)?;
        self.finish(s, source, label)
    }

    /// Print every complete message the splitter holds.
    fn drain(&mut self, s: &mut Splitter, source: &str, label: Option<&str>) -> io::Result<()> {
        loop {
            match s.next() {
                Step::Message { offset, bytes } => {
                    self.message(source, label, offset, &bytes)?;
                }
                Step::NeedMore => return Ok(()),
                Step::Broken(e) => {
                    tracing::debug!(source, error = %e, "stream cannot be split further");
                    return Ok(());
                }
            }
        }
    }

    /// End of a unit or stream: what is left is one (incomplete, unpadded or bad) message.
    fn finish(&mut self, s: Splitter, source: &str, label: Option<&str>) -> io::Result<()> {
        let (offset, rest) = s.rest();
        if !rest.is_empty() {
            tracing::debug!(
                source,
                offset,
                len = rest.len(),
                "decoding the bytes left over"
            );
            self.message(source, label, offset, rest)?;
        }
        Ok(())
    }

    fn stream(&mut self, source: &str, reader: &mut dyn Read) -> anyhow::Result<()> {
        let mut s = Splitter::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {source}")),
            };
            tracing::trace!(source, n, "read");
            s.push(&buf[..n]);
            self.drain(&mut s, source, None)?;
        }
        self.finish(s, source, None)?;
        Ok(())
    }

    fn hex_lines(&mut self, source: &str, reader: impl BufRead) -> anyhow::Result<()> {
        let mut stream = self.args.stream.then(Splitter::default);
        for (i, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {source}"))?;
            let Some((label, hex)) = split_hex_line(&line) else {
                continue;
            };
            let at = format!("{source}:{}", i + 1);
            let bytes = match parse_hex(hex) {
                Ok(b) => b,
                Err(e) => {
                    self.bad_line(&at, label, &e)?;
                    continue;
                }
            };
            match &mut stream {
                Some(s) => {
                    s.push(&bytes);
                    self.drain(s, source, None)?;
                }
                None => self.unit(&at, label, &bytes)?,
            }
        }
        if let Some(s) = stream {
            self.finish(s, source, None)?;
        }
        Ok(())
    }

    fn separator(&mut self) -> io::Result<()> {
        if self.summary.messages > 1 {
            if self.args.json {
                self.out.write_all(b",")?;
            } else {
                self.out.write_all(b"\n")?;
            }
        }
        if self.args.json {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn bad_line(&mut self, at: &str, label: Option<&str>, error: &str) -> io::Result<()> {
        self.summary.messages += 1;
        self.summary.failed += 1;
        self.separator()?;
        let index = self.summary.messages;
        if self.args.json {
            let v = json!({
                "index": index,
                "source": at,
                "label": label,
                "ok": false,
                "error": { "kind": "invalid_hex", "description": error },
            });
            self.json_value(&v)
        } else {
            let label = label.map(|l| format!(" [{l}]")).unwrap_or_default();
            writeln!(self.out, "#{index} {at}{label}: invalid hex: {error}")?;
            self.out.flush()
        }
    }

    fn message(
        &mut self,
        source: &str,
        label: Option<&str>,
        offset: u64,
        bytes: &[u8],
    ) -> io::Result<()> {
        let outcome = decode_as(self.args.proto, bytes);
        if let Outcome::Decoded {
            auto: Some(Auto::Enrp { asap_error }),
            ..
        } = &outcome
        {
            tracing::debug!(source, offset, %asap_error, "auto: not ASAP, decoded as ENRP");
        }
        self.summary.messages += 1;
        if matches!(outcome, Outcome::Failed { .. }) {
            self.summary.failed += 1;
        }
        self.separator()?;
        let index = self.summary.messages;
        if self.args.json {
            let v = json_record(
                index,
                source,
                label,
                offset,
                bytes,
                &outcome,
                self.args.proto,
            );
            self.json_value(&v)
        } else {
            let text = text_record(index, source, label, offset, bytes, &outcome);
            self.out.write_all(text.as_bytes())?;
            self.out.flush()
        }
    }

    fn json_value(&mut self, v: &Value) -> io::Result<()> {
        let pretty = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
        for (i, line) in pretty.lines().enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            write!(self.out, "  {line}")?;
        }
        self.out.flush()
    }
}

fn text_record(
    index: usize,
    source: &str,
    label: Option<&str>,
    offset: u64,
    bytes: &[u8],
    outcome: &Outcome,
) -> String {
    let label = label.map(|l| format!(" [{l}]")).unwrap_or_default();
    let head = format!(
        "#{index} {source}{label}, offset {offset}, {} bytes",
        bytes.len()
    );
    match outcome {
        Outcome::Decoded { decoded, auto } => {
            let proto = decoded.message.protocol().name();
            let how = match auto {
                None => String::new(),
                Some(Auto::Asap { also: None }) => " (auto)".to_string(),
                Some(Auto::Asap { also: Some(name) }) => {
                    format!(" (auto; also decodes as {name}: use --proto enrp for that)")
                }
                Some(Auto::Enrp { .. }) => " (auto: does not decode as ASAP)".to_string(),
            };
            format!(
                "{head}: {proto}{how}\n{}",
                render::render_decoded(decoded, bytes)
            )
        }
        Outcome::Failed {
            protocol,
            error,
            other,
        } => {
            let mut s = format!(
                "{head}: FAILED as {}{}\n",
                protocol.name(),
                if other.is_some() { " (auto)" } else { "" }
            );
            s.push_str(&render::render_decode_error(*protocol, bytes, error));
            if offset > 0 {
                s.push_str(&format!(
                    "  the error is at byte {} of {source}\n",
                    offset + error.offset as u64
                ));
            }
            match other {
                Some((p, e)) if e != error => s.push_str(&format!("  as {}: {e}\n", p.name())),
                Some((p, _)) => s.push_str(&format!("  as {}: the same error\n", p.name())),
                None => {}
            }
            s
        }
    }
}

fn json_error(e: &DecodeError, input_offset: u64) -> Value {
    json!({
        "kind": render::error_kind_name(&e.kind),
        "offset": e.offset,
        "input_offset": input_offset + e.offset as u64,
        "description": e.kind.to_string(),
        "message": e.to_string(),
    })
}

fn json_unknown(u: &UnknownParam) -> Value {
    let action = match u.ty.unknown_action() {
        rserpool_wire::UnknownAction::Stop => "stop",
        rserpool_wire::UnknownAction::StopAndReport => "stop_and_report",
        rserpool_wire::UnknownAction::Skip => "skip",
        rserpool_wire::UnknownAction::SkipAndReport => "skip_and_report",
    };
    json!({
        "type": u.ty.0,
        "type_hex": format!("{:#06x}", u.ty.0),
        "offset": u.offset,
        "length": u.value.len() + 4,
        "action": action,
        "must_report": u.must_report(),
        "value": hex_string(&u.value),
    })
}

fn json_record(
    index: usize,
    source: &str,
    label: Option<&str>,
    offset: u64,
    bytes: &[u8],
    outcome: &Outcome,
    proto: ProtoArg,
) -> Value {
    let protocol = match outcome {
        Outcome::Decoded { decoded, .. } => decoded.message.protocol(),
        Outcome::Failed { protocol, .. } => *protocol,
    };
    let header = Header::parse(bytes);
    let mut v = json!({
        "index": index,
        "source": source,
        "label": label,
        "offset": offset,
        "size": bytes.len(),
        "protocol": protocol.name(),
        "protocol_auto": proto == ProtoArg::Auto,
        "name": header.and_then(|h| render::type_name(protocol, h.ty)),
        "type": header.map(|h| h.ty),
        "flags": header.map(|h| h.flags),
        "flag_names": header.map(|h| render::flag_names(protocol, h.ty, h.flags)),
        "length": header.map(|h| h.length),
        "hex": hex_string(bytes),
    });
    let obj = v.as_object_mut();
    let Some(obj) = obj else { return v };
    match outcome {
        Outcome::Decoded { decoded, auto } => {
            let message = match &decoded.message {
                Message::Asap(m) => serde_json::to_value(m),
                Message::Enrp(m) => serde_json::to_value(m),
            }
            .unwrap_or(Value::Null);
            obj.insert("ok".into(), Value::Bool(true));
            obj.insert("message".into(), message);
            obj.insert(
                "unknown_params".into(),
                decoded.unknown.iter().map(json_unknown).collect(),
            );
            obj.insert("error".into(), Value::Null);
            match auto {
                Some(Auto::Asap { also: Some(name) }) => {
                    obj.insert("also_decodes_as".into(), json!(name));
                }
                Some(Auto::Enrp { asap_error }) => {
                    obj.insert("asap_error".into(), json_error(asap_error, offset));
                }
                _ => {}
            }
        }
        Outcome::Failed { error, other, .. } => {
            obj.insert("ok".into(), Value::Bool(false));
            obj.insert("message".into(), Value::Null);
            obj.insert("unknown_params".into(), json!([]));
            obj.insert("error".into(), json_error(error, offset));
            if let Some((p, e)) = other {
                let key = match p {
                    Protocol::Asap => "asap_error",
                    Protocol::Enrp => "enrp_error",
                    Protocol::Data(_) => "data_error",
                };
                obj.insert(key.into(), json_error(e, offset));
            }
        }
    }
    v
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
    use super::*;

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
