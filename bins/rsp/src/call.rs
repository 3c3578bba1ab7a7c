//! `rsp call POOL`: a terminal client on the session layer. Lines from stdin go to a PE
//! of the pool (one message each), what it sends back goes to stdout. When the PE fails
//! the session reports it, moves to another PE and resends the lines that were not
//! answered yet (its failover callback); stderr says so. PEs with a TCP user transport get
//! the session framing over TCP, PEs with an SCTP one an association (one SCTP message per
//! line, PPID 0). The client is [`rserpool::service::call`]; this module wires stdin,
//! stdout and stderr to it.
//!
//! A PE fails when its connection fails or closes with lines unanswered, and when it stays
//! silent for `--reply-timeout` (the session heartbeat: a frozen process keeps its
//! connection open, and the heartbeat finds it whether or not its service answers).
//!
//! The PU asks for every PE of the pool in each handle resolution (not the registrar's
//! default 3), so the pool's policy (round robin …) runs over the whole pool.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rserpool::pu::{PoolUser, PuOptions};
use rserpool::service::call::Call;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::args::{self, RegistrarArgs};

/// Talk to a pool: stdin lines go to a pool element, its replies to stdout.
///
/// Status lines go to stderr: `rsp call: connected to PE 0x… at tcp://…` whenever a
/// (new) PE is used, and `rsp call: PE 0x… failed (…); trying another` before moving to
/// another one (it is reported to the registrar as unreachable, and the unanswered lines
/// are sent again). Without a registrar, the client waits up to 5 s for one to announce
/// itself before giving up. Exit status 1 when the pool is unknown, no registrar answers
/// or too many PEs failed.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Pool handle, e.g. EchoPool.
    pub pool: String,
    #[command(flatten)]
    pub registrars: RegistrarArgs,
    /// Pick a PE for every line (one connection per line, one reply line awaited)
    /// instead of keeping one session; shows the pool's selection policy at work.
    #[arg(long)]
    pub per_request: bool,
    /// Send every line to every PE of the pool (ASAP_SEND_TO_ALL; one session per PE,
    /// no failover) and print each PE's answer as `PE-ID: answer`. A PE that fails is
    /// reported on stderr and left out.
    #[arg(long, conflicts_with = "per_request")]
    pub to_all: bool,
    /// Give up after this many PEs failed in a row.
    #[arg(long, default_value = "5")]
    pub attempts: u32,
    /// How long a PE may stay silent (no answer to the session heartbeat, sent every
    /// quarter of it) before it counts as failed; then the next PE gets the unanswered
    /// lines. 0 = no heartbeat (a PE fails only when its connection does).
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub reply_timeout: Duration,
    /// Connect to the pool's TCP PEs over MPTCP (a subflow per path for PEs listening on
    /// mptcp://, plain TCP to the others).
    #[arg(long)]
    pub session_mptcp: bool,
    #[command(flatten)]
    pub csp: args::CspArgs,
}

pub fn run(args: &CallArgs) -> anyhow::Result<ExitCode> {
    args::runtime()?.block_on(call(args))
}

async fn call(args: &CallArgs) -> anyhow::Result<ExitCode> {
    args::warn_long_handle("call", &args.pool);
    if args.session_mptcp {
        rserpool::transport::tcp::mptcp_available("leave out --session-mptcp")
            .map_err(|e| crate::exit::usage(anyhow::Error::new(e).context("--session-mptcp")))?;
    }
    // Every PE of the pool in each resolution: the policy then runs over the whole pool.
    let opts = args
        .registrars
        .pu_options(PuOptions::default())?
        .hr_items(u32::MAX);
    let pu = std::sync::Arc::new(PoolUser::start(opts));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let csp = args
        .csp
        .pool_user(format!("rsp call {}", args.pool), "lines", sent.clone())
        .await?;
    let lines = stdin_lines(sent);
    let status = |s: &str| eprintln!("rsp call: {s}");
    let call = Call {
        pool: args.pool.clone(),
        per_request: args.per_request,
        to_all: args.to_all,
        attempts: args.attempts,
        reply_timeout: args.reply_timeout,
        mptcp: args.session_mptcp,
        registrars: args.registrars.endpoints(),
        announce_group: args.registrars.group(),
        status: &status,
    };
    let r = call.run(&pu, lines, &mut tokio::io::stdout()).await;
    if let Some(c) = csp {
        c.stop().await;
    }
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("rsp call: {e:#}");
            Ok(ExitCode::from(crate::exit::FAILURE))
        }
    }
}

fn stdin_lines(count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if tx.send(l).await.is_err() {
                break;
            }
        }
    });
    rx
}
