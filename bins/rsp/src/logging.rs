//! `tracing` setup shared by all subcommands: human-readable logs on stderr by default,
//! JSON lines with `--log-json`; verbosity from `-v` unless `RUST_LOG` is set.

use std::io::IsTerminal;

use clap::{ArgAction, Args};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (default: warnings only).
    /// RUST_LOG, when set, takes precedence (e.g. RUST_LOG=rsp=debug).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Write log events as JSON lines (one object per event) instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

impl LogArgs {
    /// The filter directive `-v` stands for.
    pub fn level(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    }
}

/// Install the global subscriber (logs go to stderr, never to stdout).
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::try_new(s)?,
        _ => EnvFilter::new(args.level()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if args.log_json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    result.map_err(|e| anyhow::anyhow!(e))
}
