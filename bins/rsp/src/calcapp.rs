//! `rsp calcapp [POOL]`: the CalcApp client (RSPLIB's protocol, PPID 34) over the session
//! layer ([`rserpool::service::calcapp`]), against `rsp serve calcapp` or RSPLIB's
//! `rspserver -calcapp`.

use std::process::ExitCode;

use clap::Args;
use rserpool::service::calcapp;

use crate::args::{self, RegistrarArgs};
use crate::session_args::{ClientStart, SessionArgs};

/// CalcApp client: jobs of --job-size calculations, one after the other; a job survives
/// the death of its PE (the next PE continues from the cookie).
///
/// A line per job on stdout (`job 1 complete: 500000 calculations in 0.52 s, 0
/// failover(s)`), status on stderr.
#[derive(Debug, Args)]
pub struct CalcAppArgs {
    /// Pool handle.
    #[arg(default_value = calcapp::DEFAULT_POOL)]
    pub pool: String,
    #[command(flatten)]
    pub registrars: RegistrarArgs,
    /// Jobs to run.
    #[arg(short = 'n', long, default_value = "1")]
    pub jobs: u32,
    /// Calculations per job.
    #[arg(long, default_value = "1000000")]
    pub job_size: u64,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub csp: args::CspArgs,
}

pub fn run(args: &CalcAppArgs) -> anyhow::Result<ExitCode> {
    args::runtime()?.block_on(run_client(args))
}

async fn run_client(args: &CalcAppArgs) -> anyhow::Result<ExitCode> {
    let start = ClientStart::new(
        &args.registrars,
        &args.csp,
        format!("CalcApp client {}", args.pool),
        "jobs completed",
    )
    .await?;
    let line = |s: &str| {
        if s.contains(" complete: ") {
            start.count();
            println!("{s}");
        } else {
            eprintln!("rsp calcapp: {s}");
        }
    };
    let r = calcapp::client(
        start.pu.clone(),
        &args.pool,
        args.jobs,
        args.job_size,
        args.session
            .options_with(&args.registrars.tls)
            .map_err(crate::exit::usage)?,
        &line,
    )
    .await;
    start.stop().await;
    match r {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("rsp calcapp: {e:#}");
            Ok(ExitCode::from(crate::exit::FAILURE))
        }
    }
}
