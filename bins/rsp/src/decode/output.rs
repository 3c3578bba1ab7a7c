//! `rsp decode` output: decoding one message (with `--proto auto`), then printing it as a
//! tree (the wire crate's `render`) or as a JSON record.

use std::io::{self, BufRead, Read, Write};

use anyhow::Context;
use rserpool_wire::render::{self, Header};
use rserpool_wire::{decode, DecodeError, Decoded, Message, Protocol, UnknownParam};
use serde_json::{json, Value};

use super::input::{parse_hex, split_hex_line, Splitter, Step};
use super::{DecodeArgs, ProtoArg, Summary};

pub(super) fn hex_string(b: &[u8]) -> String {
    hex::encode(b)
}

// ----------------------------------------------------------------------------------------
// Decoding one message

pub(super) enum Outcome {
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
pub(super) enum Auto {
    /// ASAP decoded; `also` names the ENRP message the bytes would also be.
    Asap { also: Option<&'static str> },
    /// ASAP failed with this error, ENRP decoded.
    Enrp { asap_error: DecodeError },
}

pub(super) fn decode_as(proto: ProtoArg, bytes: &[u8]) -> Outcome {
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

pub(super) struct Printer<'a> {
    args: &'a DecodeArgs,
    out: &'a mut dyn Write,
    pub(super) summary: Summary,
}

impl<'a> Printer<'a> {
    pub(super) fn new(args: &'a DecodeArgs, out: &'a mut dyn Write) -> Self {
        Self {
            args,
            out,
            summary: Summary::default(),
        }
    }

    pub(super) fn begin(&mut self) -> io::Result<()> {
        if self.args.json {
            self.out.write_all(b"[")?;
        }
        Ok(())
    }

    pub(super) fn end(&mut self) -> io::Result<()> {
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
    pub(super) fn unit(
        &mut self,
        source: &str,
        label: Option<&str>,
        bytes: &[u8],
    ) -> io::Result<()> {
        let mut s = Splitter::default();
        s.push(bytes);
        self.drain(&mut s, source, label)?;
        self.finish(s, source, label)
    }

    /// Print every complete message the splitter holds.
    pub(super) fn drain(
        &mut self,
        s: &mut Splitter,
        source: &str,
        label: Option<&str>,
    ) -> io::Result<()> {
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
    pub(super) fn finish(
        &mut self,
        s: Splitter,
        source: &str,
        label: Option<&str>,
    ) -> io::Result<()> {
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

    pub(super) fn stream(&mut self, source: &str, reader: &mut dyn Read) -> anyhow::Result<()> {
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

    pub(super) fn hex_lines(&mut self, source: &str, reader: impl BufRead) -> anyhow::Result<()> {
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

    pub(super) fn separator(&mut self) -> io::Result<()> {
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

    pub(super) fn bad_line(
        &mut self,
        at: &str,
        label: Option<&str>,
        error: &str,
    ) -> io::Result<()> {
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

    pub(super) fn message(
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

    pub(super) fn json_value(&mut self, v: &Value) -> io::Result<()> {
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

pub(super) fn text_record(
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

pub(super) fn json_error(e: &DecodeError, input_offset: u64) -> Value {
    json!({
        "kind": render::error_kind_name(&e.kind),
        "offset": e.offset,
        "input_offset": input_offset + e.offset as u64,
        "description": e.kind.to_string(),
        "message": e.to_string(),
    })
}

pub(super) fn json_unknown(u: &UnknownParam) -> Value {
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

pub(super) fn json_record(
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
