//! `rsp decode` input: hex text, `--hex-lines` lines, and the splitting of a byte stream
//! into messages at their length fields.

use std::fs::File;

use rserpool_wire::framing::{Deframer, FrameError};

pub(super) enum Input {
    Stdin,
    File(String, File),
}

pub(super) fn is_dash(p: &std::path::Path) -> bool {
    p.as_os_str() == "-"
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
pub(super) fn split_hex_line(line: &str) -> Option<(Option<&str>, &str)> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return None;
    }
    Some(match line.split_once('=') {
        Some((label, hex)) => (Some(label.trim()), hex.trim()),
        None => (None, line),
    })
}

// ----------------------------------------------------------------------------------------
// Splitting a byte stream into messages

/// [`Deframer`] plus a copy of the bytes it has not returned yet, so that what is left at
/// the end (an incomplete or unpadded last message, or garbage after a bad length) can
/// still be decoded and shown.
#[derive(Default)]
pub(super) struct Splitter {
    deframer: Deframer,
    pending: Vec<u8>,
    /// Index in `pending` of the first byte the deframer has not returned.
    start: usize,
    broken: bool,
}

pub(super) enum Step {
    Message {
        offset: u64,
        bytes: Vec<u8>,
    },
    NeedMore,
    /// A length field below 4: the stream cannot be split any further.
    Broken(FrameError),
}

impl Splitter {
    pub(super) fn push(&mut self, data: &[u8]) {
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

    pub(super) fn next(&mut self) -> Step {
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
    pub(super) fn rest(&self) -> (u64, &[u8]) {
        (
            self.deframer.stream_offset(),
            &self.pending[self.start.min(self.pending.len())..],
        )
    }
}
