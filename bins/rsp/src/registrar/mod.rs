//! `rsp registrar`: the registrar daemon (ASAP over SCTP and TCP; announces by UDP
//! multicast).
//!
//! Settings come from built-in defaults, then the TOML file (`--config`), then flags —
//! every setting exists in all three places. Unknown TOML keys are errors naming the key;
//! `--validate` checks the settings and exits.

mod listing;
mod reload;
mod resolve;
mod settings;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::args;
pub use reload::Reload;
pub use resolve::Resolved;
pub use rserpool::service::human_duration;
pub use rserpool::service::oplog::{limits_line, log_limits};
use rserpool::service::registrar;
pub use rserpool::service::registrar::{sctp_groups, Running};
pub use settings::Settings;

/// Run a registrar (ENRP server) for pool elements and pool users over SCTP and TCP.
///
/// With no options it listens on sctp://[::]:3863 (every IPv4 and IPv6 address of the
/// host, multi-homed), tcp://0.0.0.0:3863 and tcp://[::]:3863, serves its handlespace to
/// `rsp dump` on 127.0.0.1:9990 and announces itself on 239.0.0.50:3863. On a kernel
/// without SCTP an SCTP listener is skipped with a warning as long as a TCP listener is
/// left; if only SCTP listeners were asked for, the registrar exits with status 2 and a
/// message saying the kernel has no SCTP.
/// With --peer (or peers learnt from the presence group or connecting to its ENRP
/// listener, default port 9901) it is one of a pool of registrars sharing the handlespace
/// over ENRP (RFC 5353): each PE is owned by the registrar it registered with, the others
/// hold copies, and when a registrar dies one of the rest takes its PEs over.
/// On start it prints `rsp registrar: server id 0x… listening on URL… enrp URL… admin
/// ADDR` on stdout. SIGINT / SIGTERM stop it gracefully; SIGHUP re-reads the --config file (flags
/// still win), applies what can change at run time (limits, keep-alive timings, log
/// settings) and logs what changed and what needs a restart.
#[derive(Debug, Args)]
pub struct RegistrarArgs {
    /// TOML configuration file; its keys are the long flag names with `_` for `-`
    /// (e.g. `listen = ["tcp://0.0.0.0:3863"]`, `keepalive_interval = "3s"`).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration and flags, print the resulting settings, exit.
    #[arg(long)]
    pub validate: bool,
    #[command(flatten)]
    pub settings: Settings,
}

pub fn run(args: &RegistrarArgs, log: &crate::logging::LogArgs) -> anyhow::Result<ExitCode> {
    let flags = args.settings.clone().with_log_args(log);
    let settings =
        Settings::load(flags.clone(), args.config.as_ref()).map_err(crate::exit::usage)?;
    let resolved = settings.resolve().map_err(crate::exit::usage)?;
    if args.validate {
        println!("# configuration ok; the effective settings (usable as a --config file):");
        print!("{}", resolved.listing_text());
        return Ok(ExitCode::SUCCESS);
    }
    crate::logging::apply(&resolved.log_level, resolved.log_json).map_err(crate::exit::usage)?;
    raise_fd_limit(resolved.transport.max_connections);
    // The HTTP endpoint's connections come on top, as far as the hard limit allows (the
    // endpoint backs off when out of descriptors).
    raise_soft_fd_limit(
        (resolved.transport.max_connections + rserpool::service::http_admin::MAX_CONNECTIONS)
            as u64,
    );
    args::runtime()?.block_on(async {
        // From here on SIGHUP reloads instead of killing the process.
        let hangup = rserpool::signal::Hangup::new().context("cannot catch SIGHUP")?;
        let running = start(resolved.clone()).await?;
        println!("{}", startup_line(&running));
        let reload = Reload {
            flags,
            path: args.config.clone(),
            current: resolved,
        };
        serve(running, rserpool::signal::terminate(), hangup, reload).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Raise the soft open-file limit towards `want`, up to the hard limit, silently.
fn raise_soft_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let cur = getrlimit(Resource::Nofile);
    let target = cur.maximum.map_or(want, |hard| want.min(hard));
    if cur.current.is_some_and(|c| c < target) {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(target),
                maximum: cur.maximum,
            },
        );
    }
}

/// Raise the soft open-file limit towards what the connection limit needs.
pub fn raise_fd_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let want = max_connections as u64 + 256;
    let cur = getrlimit(Resource::Nofile);
    let soft = cur.current.unwrap_or(u64::MAX);
    if soft >= want {
        return;
    }
    let target = cur.maximum.map_or(want, |hard| want.min(hard));
    let new = rustix::process::Rlimit {
        current: Some(target),
        maximum: cur.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) if target < max_connections as u64 => tracing::warn!(
            "open-file limit {target} is below what {max_connections} connections need"
        ),
        Ok(()) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit from {soft}: {e}"),
    }
}

/// Serve until `stop`, reloading the configuration at each SIGHUP; then shut down
/// gracefully.
pub async fn serve(
    running: Running,
    stop: impl std::future::Future<Output = ()>,
    mut hangup: rserpool::signal::Hangup,
    mut reload: Reload,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = hangup.recv() => reload.reload(&running).await,
        }
    }
    running.stop().await;
}

/// `rsp registrar: server id 0x… listening on URL… enrp URL…|off admin ADDR` (what
/// scripts wait for; the ASAP endpoints come first).
pub fn startup_line(running: &Running) -> String {
    let urls = |eps: &[rserpool_proto::io::Endpoint]| {
        eps.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let enrp = urls(&running.enrp_endpoints);
    let admin = running
        .admin
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    format!(
        "rsp registrar: server id {} listening on {} enrp {} admin {admin}",
        running.server_id,
        urls(&running.endpoints).join(" "),
        if enrp.is_empty() {
            "off".to_owned()
        } else {
            enrp.join(" ")
        }
    )
}

/// Bind everything and start the registrar service with these settings.
pub async fn start(cfg: Resolved) -> anyhow::Result<Running> {
    registrar::start(cfg.service).await
}
