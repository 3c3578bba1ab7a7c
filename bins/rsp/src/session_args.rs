//! Session-layer options shared by the session clients (`rsp fetch`, `rsp pingpong`).

use std::time::Duration;

use clap::Args;
use rserpool::service::session::SessionOptions;

use crate::args;

/// The session heartbeat and failover limits.
#[derive(Debug, Args, Clone)]
pub struct SessionArgs {
    /// Send a session heartbeat this often (a stopped PE keeps its connection open; the
    /// heartbeat finds it). 0 = none (RSPLIB PEs do not answer it).
    #[arg(long, default_value = "200ms", value_parser = args::duration)]
    pub heartbeat: Duration,
    /// A PE silent this long after a heartbeat has failed.
    #[arg(long, default_value = "600ms", value_parser = args::duration)]
    pub heartbeat_timeout: Duration,
    /// Give up after this many PEs failed in a row.
    #[arg(long, default_value = "8")]
    pub attempts: u32,
    /// The PEs do not acknowledge messages (RSPLIB's): resend only what was not sent.
    #[arg(long)]
    pub unacknowledged: bool,
}

impl SessionArgs {
    pub fn options(&self) -> SessionOptions {
        let mut o = SessionOptions::default();
        o.config.heartbeat_interval = (!self.heartbeat.is_zero()).then_some(self.heartbeat);
        o.config.heartbeat_timeout = self.heartbeat_timeout;
        o.config.max_attempts = self.attempts.max(1);
        o.config.acknowledged = !self.unacknowledged;
        o
    }
}
