//! `rsp pingpong [POOL]`: the Ping Pong client (RSPLIB's protocol, PPID 33) over the
//! session layer ([`rserpool::service::pingpong`]), against `rsp serve pingpong` or
//! RSPLIB's `rspserver -pingpong`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rserpool::service::pingpong;

use crate::args::{self, RegistrarArgs};
use crate::session_args::{ClientStart, SessionArgs};

/// Ping Pong client: Pings to a PE of the pool, one Pong each; failover keeps the reply
/// counter going (the PE's cookie).
///
/// With an interval a line per Pong on stdout (`pong 3 reply 3`); back to back
/// (`--interval 0`) only the summary: `pings N answered N failovers F reply-jumps J
/// elapsed T round-trips/s R`. Status and warnings on stderr.
#[derive(Debug, Args)]
pub struct PingPongArgs {
    /// Pool handle.
    #[arg(default_value = pingpong::DEFAULT_POOL)]
    pub pool: String,
    #[command(flatten)]
    pub registrars: RegistrarArgs,
    /// Pings to send (0 = until interrupted).
    #[arg(short = 'n', long, default_value = "10")]
    pub count: u64,
    /// Pause between Pings (0 = back to back).
    #[arg(long, default_value = "1s", value_parser = args::duration)]
    pub interval: Duration,
    /// Bytes of data per Ping.
    #[arg(long, default_value = "32")]
    pub size: usize,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub csp: args::CspArgs,
}

pub fn run(args: &PingPongArgs) -> anyhow::Result<ExitCode> {
    args::runtime()?.block_on(run_client(args))
}

async fn run_client(args: &PingPongArgs) -> anyhow::Result<ExitCode> {
    let start = ClientStart::new(
        &args.registrars,
        &args.csp,
        format!("Ping Pong client {}", args.pool),
        "pongs",
    )
    .await?;
    let line = |s: &str| {
        if s.contains("pong ") {
            start.count();
        }
        if s.starts_with("pong ") {
            println!("{s}");
        } else {
            eprintln!("rsp pingpong: {s}");
        }
    };
    let r = pingpong::client(
        start.pu.clone(),
        &args.pool,
        args.count,
        args.interval,
        args.size,
        args.session
            .options_with(&args.registrars.tls)
            .map_err(crate::exit::usage)?,
        &line,
    )
    .await;
    start.stop().await;
    match r {
        Ok(rep) => {
            let secs = rep.elapsed.as_secs_f64().max(1e-6);
            println!(
                "pings {} answered {} failovers {} reply-jumps {} elapsed {:.3}s round-trips/s {:.0}",
                rep.sent,
                rep.answered,
                rep.failovers,
                rep.reply_jumps,
                secs,
                rep.answered as f64 / secs
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rsp pingpong: {e:#}");
            Ok(ExitCode::from(crate::exit::FAILURE))
        }
    }
}
