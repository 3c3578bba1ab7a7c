//! `rsp fetch POOL NAME -o OUT`: download a file from a pool of `rsp serve files` PEs
//! through the session layer ([`rserpool::service::files`]). When the serving PE fails
//! the download continues at its offset on another PE; stderr says so and reports the
//! failover gap (from the last byte of the old PE to the first byte of the new one).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rserpool::pu::{PoolUser, PuOptions};
use rserpool::service::files;

use crate::args::{self, RegistrarArgs};
use crate::session_args::SessionArgs;

/// Download a file from a pool of file servers (`rsp serve files DIR`), failing over
/// between them without starting again.
///
/// Status lines on stderr: `rsp fetch: connected to PE …`, `rsp fetch: PE … failed …`,
/// `rsp fetch: failover gap: N ms …`, and at the end `rsp fetch: NAME: SIZE bytes in
/// T s (R MB/s), checksum …, F failovers`. Exit status 1 when the download fails.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Pool handle, e.g. FilePool.
    pub pool: String,
    /// File name (as in the PEs' directory).
    pub name: String,
    /// Where to write it (`-` = stdout).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    #[command(flatten)]
    pub registrars: RegistrarArgs,
    #[command(flatten)]
    pub session: SessionArgs,
}

pub fn run(args: &FetchArgs) -> anyhow::Result<ExitCode> {
    if !files::plain_name(&args.name) {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "{:?} is not a plain file name",
            args.name
        )));
    }
    args::runtime()?.block_on(fetch(args))
}

async fn fetch(args: &FetchArgs) -> anyhow::Result<ExitCode> {
    args::warn_long_handle("fetch", &args.pool);
    let pu = Arc::new(PoolUser::start(
        args.registrars
            .pu_options(PuOptions::default())
            .map_err(crate::exit::usage)?
            .hr_items(u32::MAX),
    ));
    let mut out: Box<dyn std::io::Write + Send> = if args.output.as_os_str() == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        let f = std::fs::File::create(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))
            .map_err(crate::exit::usage)?;
        Box::new(std::io::BufWriter::with_capacity(1 << 20, f))
    };
    let status = |s: &str| eprintln!("rsp fetch: {s}");
    let r = files::fetch(
        pu,
        &args.pool,
        &args.name,
        &mut *out,
        args.session
            .options_with(&args.registrars.tls)
            .map_err(crate::exit::usage)?,
        &status,
    )
    .await;
    match r {
        Ok(rep) => {
            let secs = rep.elapsed.as_secs_f64().max(1e-6);
            eprintln!(
                "rsp fetch: {}: {} bytes in {:.2} s ({:.1} MB/s), checksum {:016x}, {} failover(s)",
                args.name,
                rep.size,
                secs,
                rep.size as f64 / secs / 1e6,
                rep.checksum,
                rep.failovers.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rsp fetch: {e:#}");
            Ok(ExitCode::from(crate::exit::FAILURE))
        }
    }
}
