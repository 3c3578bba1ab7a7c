//! The record of a run: a running digest of every delivery and event, and optionally the
//! lines themselves (to show where two runs parted).

use std::fmt::{self, Write as _};
use std::hash::Hasher;

/// A digest (and optionally the lines) of what happened in a run.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    hasher: Fnv,
    entries: u64,
    lines: Option<Vec<String>>,
}

/// FNV-1a: small, stable across builds and platforms.
#[derive(Clone, Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Hasher::write(self, s.as_bytes());
        Ok(())
    }
}

impl Trace {
    /// Keep every line (for diffing two runs); off by default, the digest is always kept.
    pub fn keep_lines(&mut self, keep: bool) {
        self.lines = keep.then(Vec::new);
    }

    /// Add one entry.
    pub fn record(&mut self, args: fmt::Arguments<'_>) {
        self.entries += 1;
        // Writing into the hasher never fails.
        let _ = self.hasher.write_fmt(args);
        self.hasher.write_u8(b'\n');
        if let Some(lines) = &mut self.lines {
            lines.push(args.to_string());
        }
    }

    /// The digest of everything recorded so far.
    pub fn digest(&self) -> u64 {
        self.hasher.finish()
    }

    /// Number of entries recorded.
    pub fn len(&self) -> u64 {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The lines, when kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}
