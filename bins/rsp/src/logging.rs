//! `tracing` setup shared by all subcommands: human-readable logs on stderr by default,
//! JSON lines with `--log-json`; verbosity from `-v` unless `RUST_LOG` is set.
//!
//! The filter and the output format sit behind reload handles, so a command that reads
//! more settings later (the registrar's `log_level` / `log_json` keys, and its SIGHUP
//! reload) can change them while running: [`apply`].

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::{ArgAction, Args};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

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

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type FormatLayer = Box<dyn Layer<Filtered> + Send + Sync>;

struct Control {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<FormatLayer, Filtered>,
    /// RUST_LOG was set: it decides the filter, [`apply`] leaves the filter alone.
    env: bool,
    json: std::sync::atomic::AtomicBool,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

fn format_layer(json: bool) -> FormatLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        layer.json().boxed()
    } else {
        layer.with_ansi(std::io::stderr().is_terminal()).boxed()
    }
}

/// Check a filter directive (`warn`, `info`, `rsp=debug,rserpool=info` …).
pub fn check_filter(directive: &str) -> anyhow::Result<()> {
    EnvFilter::builder()
        .parse(directive)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Install the global subscriber (logs go to stderr, never to stdout).
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let env = matches!(std::env::var("RUST_LOG"), Ok(s) if !s.is_empty());
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::try_new(s)?,
        _ => EnvFilter::new(args.level()),
    };
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (format, format_handle) = reload::Layer::new(format_layer(args.log_json));
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .map_err(|e| anyhow::anyhow!(e))?;
    let _ = CONTROL.set(Control {
        filter: filter_handle,
        format: format_handle,
        env,
        json: std::sync::atomic::AtomicBool::new(args.log_json),
    });
    Ok(())
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Filter and format are in force.
    Yes,
    /// RUST_LOG is set: it keeps deciding the filter (the format was applied).
    FilterFromEnv,
    /// No subscriber of ours is installed (e.g. in a library test).
    NoSubscriber,
}

/// Set the filter (unless RUST_LOG is set) and the format at run time.
pub fn apply(filter: &str, json: bool) -> anyhow::Result<Applied> {
    let Some(c) = CONTROL.get() else {
        return Ok(Applied::NoSubscriber);
    };
    if c.json.swap(json, std::sync::atomic::Ordering::Relaxed) != json {
        c.format
            .reload(format_layer(json))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if c.env {
        return Ok(Applied::FilterFromEnv);
    }
    let f = EnvFilter::builder()
        .parse(filter)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.filter.reload(f).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Applied::Yes)
}
