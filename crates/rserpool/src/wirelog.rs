//! Optional record of every message at the transport seam, for offline dissection.
//!
//! With `RSERPOOL_WIRE_LOG=FILE` in the environment (or [`WireLog::open`]), every message
//! a driver sends or receives is appended to FILE as one line
//! `<dir>.<proto>.<pid>.<conn>.<name>=<HEX>`, e.g. `tx.asap.4242.conn-3.ASAP_REGISTRATION=0100…`.
//! That is the `label=HEX` form `rserpool-dissect --hex-lines` reads. Several processes may
//! share one file: each line is written with a single `write` on an `O_APPEND` file.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rserpool_wire::{asap_type_name, enrp_type_name, Protocol};

/// Environment variable naming the wire log file.
pub const ENV: &str = "RSERPOOL_WIRE_LOG";

/// Direction of a logged message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Rx,
    Tx,
}

/// An append-only wire log (cheap to clone).
#[derive(Clone, Debug)]
pub struct WireLog {
    file: Arc<Mutex<File>>,
}

impl WireLog {
    /// Open (create/append) a log file.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The process-wide log from `RSERPOOL_WIRE_LOG`, if set (opened once).
    pub fn from_env() -> Option<WireLog> {
        static LOG: OnceLock<Option<WireLog>> = OnceLock::new();
        LOG.get_or_init(|| {
            let path = std::env::var_os(ENV)?;
            match WireLog::open(Path::new(&path)) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(
                        "{ENV}={}: {e}; not logging messages",
                        path.to_string_lossy()
                    );
                    None
                }
            }
        })
        .clone()
    }

    /// Append one message.
    pub fn record(&self, dir: Dir, protocol: Protocol, conn: &str, bytes: &[u8]) {
        // Application data is named by its PPID (`PPID_33`: Ping Pong).
        let ppid_name;
        let name = match protocol {
            Protocol::Data(p) => {
                ppid_name = format!("PPID_{p}");
                ppid_name.as_str()
            }
            _ => bytes
                .first()
                .and_then(|&t| match protocol {
                    Protocol::Asap => asap_type_name(t),
                    Protocol::Enrp => enrp_type_name(t),
                    Protocol::Data(_) => None,
                })
                .unwrap_or("UNKNOWN"),
        };
        let mut line = String::with_capacity(64 + bytes.len() * 2);
        let _ = write!(
            line,
            "{}.{}.{}.{}.{}=",
            match dir {
                Dir::Rx => "rx",
                Dir::Tx => "tx",
            },
            match protocol {
                Protocol::Asap => "asap",
                Protocol::Enrp => "enrp",
                Protocol::Data(_) => "data",
            },
            std::process::id(),
            // Labels are `[A-Za-z_][\w.-/]*` for rserpool-dissect ('#' starts a comment).
            conn.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '_'), "-"),
            name
        );
        for b in bytes {
            let _ = write!(line, "{b:02x}");
        }
        // Received messages reach us without their trailing padding (the deframer consumes
        // it from the stream); log them as they were on the wire.
        if dir == Dir::Rx && !matches!(protocol, Protocol::Data(_)) {
            for _ in bytes.len()..bytes.len().next_multiple_of(4) {
                line.push_str("00");
            }
        }
        line.push('\n');
        if let Ok(mut f) = self.file.lock() {
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::debug!("wire log write failed: {e}");
            }
        }
    }
}
