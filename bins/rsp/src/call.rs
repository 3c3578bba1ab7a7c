//! `rsp call POOL`: a terminal client. Lines from stdin go to a PE of the pool, what it
//! sends back goes to stdout. When the PE fails the client reports it, moves to another
//! PE, resends the lines that were not answered yet and says so on stderr. PEs with a TCP
//! user transport get a TCP connection, PEs with an SCTP one an association (one SCTP
//! message per line, see [`crate::session`]).
//!
//! A PE fails when its connection fails or closes with lines unanswered, and when it
//! leaves a line unanswered for `--reply-timeout` (a frozen process keeps its connection
//! open: the kernel still accepts the data). Before the pool has answered any line (a
//! discard service never does) silence alone proves nothing: the registrar is asked
//! instead, and the PE counts as failed once the registrar no longer lists it.
//!
//! The PU asks for every PE of the pool in each handle resolution (not the registrar's
//! default 3), so the pool's policy (round robin …) runs over the whole pool.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use rserpool::pu::{endpoint_of, PoolUser, PuFailure, PuOptions};
use rserpool_proto::io::Endpoint;
use rserpool_proto::PuError;
use rserpool_wire::PoolElement;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::args::{self, RegistrarArgs};
use crate::session::{Conn, ConnWrite, ReadEvent};

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
    /// Give up after this many PEs failed in a row.
    #[arg(long, default_value = "5")]
    pub attempts: u32,
    /// How long a PE may leave a line unanswered before it counts as failed (then the
    /// next PE gets the unanswered lines). Until the pool has answered a line, the
    /// registrar is asked instead whether the PE is still registered (services such as
    /// discard never answer). 0 = wait for ever.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub reply_timeout: Duration,
}

pub fn run(args: &CallArgs) -> anyhow::Result<ExitCode> {
    args::runtime()?.block_on(call(args))
}

async fn call(args: &CallArgs) -> anyhow::Result<ExitCode> {
    args::warn_long_handle("call", &args.pool);
    // Every PE of the pool in each resolution: the policy then runs over the whole pool.
    let opts = args
        .registrars
        .pu_options(PuOptions::default())
        .hr_items(u32::MAX);
    let pu = PoolUser::start(opts);
    let lines = stdin_lines();
    let r = if args.per_request {
        per_request(args, &pu, lines).await
    } else {
        session(args, &pu, lines).await
    };
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("rsp call: {e:#}");
            Ok(ExitCode::from(crate::exit::FAILURE))
        }
    }
}

fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).await.is_err() {
                break;
            }
        }
    });
    rx
}

fn addr_of(pe: &PoolElement) -> anyhow::Result<Endpoint> {
    endpoint_of(pe).ok_or_else(|| anyhow!("PE {} has no TCP/SCTP user transport", pe.id))
}

async fn connect(ep: &Endpoint) -> std::io::Result<Conn> {
    Conn::connect(ep, Duration::from_secs(5)).await
}

/// A PE of the pool, or an error in words that names the pool and the registrars.
async fn first_server(args: &CallArgs, pu: &PoolUser) -> anyhow::Result<PoolElement> {
    match pu.get_primary_server(args.pool.as_str()).await {
        Ok(pe) => Ok(pe),
        Err(e) => Err(explain(args, pu, &e).await),
    }
}

/// Why no PE could be had, in words: the pool, the cause, the registrars tried.
async fn explain(args: &CallArgs, pu: &PoolUser, e: &PuFailure) -> anyhow::Error {
    let pool = &args.pool;
    let PuFailure::Pool(e) = e else {
        return anyhow!("pool {pool}: {e}");
    };
    match e {
        PuError::UnknownPool => anyhow!(
            "pool {pool}: unknown pool handle (0x9): the registrar has no PE registered \
             under it"
        ),
        PuError::NoServer => {
            anyhow!("pool {pool}: every PE the registrar listed failed in the last few seconds")
        }
        PuError::NoRegistrar | PuError::Timeout => {
            let known = pu.known_registrars().await.unwrap_or_default();
            let tried = args.registrars.describe(&known);
            let what = if *e == PuError::Timeout {
                "no registrar answered the handle resolution in time"
            } else {
                "no registrar reachable"
            };
            anyhow!("pool {pool}: {what} (tried {tried})")
        }
    }
}

/// Move on from a failed PE: report it to the registrar, then take another one.
async fn next_server(
    args: &CallArgs,
    pu: &PoolUser,
    failed: &PoolElement,
    why: &str,
    failures: &mut u32,
) -> anyhow::Result<PoolElement> {
    let pool = args.pool.as_str();
    eprintln!("rsp call: PE {} failed ({why}); trying another", failed.id);
    // Reported explicitly (not via get_next_server): liveness checks also hand out PEs.
    let _ = pu.report_unreachable(pool, failed.id);
    *failures += 1;
    if *failures >= args.attempts {
        bail!("pool {pool}: giving up after {failures} failed PEs");
    }
    loop {
        match pu.get_primary_server(pool).await {
            Ok(pe) => return Ok(pe),
            Err(e) => {
                *failures += 1;
                if *failures >= args.attempts {
                    return Err(explain(args, pu, &e).await);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// `5s`, `250ms`: a duration as the user typed it.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

enum End {
    /// Our output is gone.
    Done,
    /// The PE closed the session with nothing outstanding (e.g. daytime).
    ClosedIdle,
    /// The connection failed or closed with lines unanswered.
    Failed(String),
}

/// What a session carries from one PE to the next.
struct SessionState {
    lines: mpsc::Receiver<String>,
    /// Lines sent and not answered yet (resent to the next PE).
    outstanding: VecDeque<String>,
    stdin_done: bool,
    /// The pool has answered a line in this run: its service answers, so silence means
    /// failure.
    answered: bool,
    stdout: tokio::io::Stdout,
}

async fn session(
    args: &CallArgs,
    pu: &PoolUser,
    lines: mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let mut pe = first_server(args, pu).await?;
    let mut st = SessionState {
        lines,
        outstanding: VecDeque::new(),
        stdin_done: false,
        answered: false,
        stdout: tokio::io::stdout(),
    };
    let mut failures = 0;
    loop {
        let ep = addr_of(&pe)?;
        let conn = match connect(&ep).await {
            Ok(s) => s,
            Err(e) => {
                pe = next_server(args, pu, &pe, &e.to_string(), &mut failures).await?;
                continue;
            }
        };
        eprintln!("rsp call: connected to PE {} at {ep}", pe.id);
        let end = pump(args, pu, &pe, conn, &mut st).await;
        match end {
            End::Done => return Ok(()),
            End::ClosedIdle => {
                if st.stdin_done {
                    return Ok(());
                }
                // Reconnect to the same PE when the next line comes; if it is gone
                // the connect fails and we move on.
                match st.lines.recv().await {
                    Some(l) => st.outstanding.push_back(l),
                    None => return Ok(()),
                }
            }
            End::Failed(why) => {
                pe = next_server(args, pu, &pe, &why, &mut failures).await?;
            }
        }
    }
}

/// The reply deadline: `timeout` after we started waiting (None = no timeout).
fn reply_deadline(since: Option<Instant>, timeout: Duration) -> Option<Instant> {
    if timeout.is_zero() {
        return None;
    }
    since.map(|t| t + timeout)
}

/// Whether the registrar still lists `pe` (`None`: it could not be asked).
async fn still_registered(pu: &PoolUser, pool: &str, pe: &PoolElement) -> Option<bool> {
    match pu.refresh(pool).await {
        Ok(list) => Some(list.iter().any(|p| p.id == pe.id)),
        Err(PuFailure::Pool(PuError::UnknownPool | PuError::NoServer)) => Some(false),
        Err(_) => None,
    }
}

/// Send one line, bounded by the reply timeout (a frozen PE stops reading).
async fn send_bounded(wr: &mut ConnWrite, line: &str, timeout: Duration) -> Result<(), String> {
    let send = wr.send_line(line);
    let r = if timeout.is_zero() {
        send.await
    } else {
        match tokio::time::timeout(timeout, send).await {
            Ok(r) => r,
            Err(_) => return Err(format!("could not send within {}", human(timeout))),
        }
    };
    r.map_err(|e| e.to_string())
}

async fn pump(
    args: &CallArgs,
    pu: &PoolUser,
    pe: &PoolElement,
    conn: Conn,
    st: &mut SessionState,
) -> End {
    let timeout = args.reply_timeout;
    let (mut rd, mut wr) = conn.into_split();
    let SessionState {
        lines,
        outstanding,
        stdin_done,
        answered,
        stdout,
    } = st;
    // Since when we wait for a reply (None: nothing outstanding).
    let mut waiting: Option<Instant> = None;
    // Lines not answered by the previous PE go first.
    for l in outstanding.iter() {
        if let Err(e) = send_bounded(&mut wr, l, timeout).await {
            return End::Failed(e);
        }
        waiting.get_or_insert_with(Instant::now);
    }
    if *stdin_done && finish(&mut wr, outstanding).await {
        return End::Done;
    }
    loop {
        let deadline = reply_deadline(waiting, timeout);
        tokio::select! {
            line = lines.recv(), if !*stdin_done => match line {
                Some(l) => {
                    let r = send_bounded(&mut wr, &l, timeout).await;
                    outstanding.push_back(l);
                    waiting.get_or_insert_with(Instant::now);
                    if let Err(e) = r {
                        return End::Failed(e);
                    }
                }
                None => {
                    // No more input: half-close, then print what the PE still sends
                    // until it closes (echo replies, the daytime line …).
                    *stdin_done = true;
                    if finish(&mut wr, outstanding).await {
                        return End::Done;
                    }
                }
            },
            r = rd.recv() => match r {
                // After our half-close the PE closing is the normal end of the session
                // (discard never answers; echo has answered what it got).
                Ok(ReadEvent::Closed) if outstanding.is_empty() || *stdin_done => {
                    return End::ClosedIdle
                }
                Ok(ReadEvent::Closed) => return End::Failed("connection closed".into()),
                Ok(ReadEvent::Data(buf)) => {
                    *answered = true;
                    let newlines = buf.iter().filter(|&&b| b == b'\n').count();
                    for _ in 0..newlines {
                        outstanding.pop_front();
                    }
                    // Progress: wait afresh for the rest.
                    waiting = (!outstanding.is_empty()).then(Instant::now);
                    if stdout.write_all(&buf).await.is_err() {
                        return End::Done; // nobody reads our output any more
                    }
                    let _ = stdout.flush().await;
                    if *stdin_done && wr.is_sctp() && outstanding.is_empty() {
                        wr.close().await;
                        return End::Done;
                    }
                }
                Err(e) => return End::Failed(e.to_string()),
            },
            // SCTP cannot half-close: after the input ended, stop waiting for replies once
            // the PE has been silent this long (a discard PE never answers).
            () = tokio::time::sleep(SCTP_LINGER), if *stdin_done && wr.is_sctp() => {
                wr.close().await;
                return End::Done;
            }
            () = sleep_until(deadline), if deadline.is_some() && !outstanding.is_empty() => {
                let silent = human(timeout);
                if *answered {
                    return End::Failed(format!("no reply within {silent}"));
                }
                // Never answered: maybe a service that does not answer. Ask the registrar.
                if still_registered(pu, &args.pool, pe).await == Some(false) {
                    return End::Failed(format!(
                        "no reply within {silent}, and the registrar no longer lists it"
                    ));
                }
                waiting = Some(Instant::now());
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How long an SCTP session waits for outstanding replies after the input ended.
const SCTP_LINGER: Duration = Duration::from_secs(5);

/// Input ended. TCP: half-close and keep reading. SCTP has no half-close: close at once
/// when nothing is outstanding (returns true), else after the last reply.
async fn finish(wr: &mut ConnWrite, outstanding: &VecDeque<String>) -> bool {
    if wr.is_sctp() {
        if outstanding.is_empty() {
            wr.close().await;
            return true;
        }
        return false;
    }
    wr.finish().await;
    false
}

async fn per_request(
    args: &CallArgs,
    pu: &PoolUser,
    mut lines: mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.recv().await {
        let mut pe = first_server(args, pu).await?;
        let mut failures = 0;
        let reply = loop {
            match exchange(&pe, &line, args.reply_timeout).await {
                Ok(r) => break r,
                Err(e) => {
                    pe = next_server(args, pu, &pe, &format!("{e:#}"), &mut failures).await?;
                }
            }
        };
        eprintln!("rsp call: PE {} answered", pe.id);
        stdout.write_all(reply.as_bytes()).await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// One line out, one line back, on a fresh connection.
async fn exchange(pe: &PoolElement, line: &str, timeout: Duration) -> anyhow::Result<String> {
    let ep = addr_of(pe)?;
    let conn = connect(&ep).await?;
    eprintln!("rsp call: connected to PE {} at {ep}", pe.id);
    let (mut rd, mut wr) = conn.into_split();
    wr.send_line(line).await?;
    let mut reply: Vec<u8> = Vec::new();
    let read = async {
        while !reply.contains(&b'\n') {
            match rd.recv().await? {
                ReadEvent::Data(d) => reply.extend_from_slice(&d),
                ReadEvent::Closed => break,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    if timeout.is_zero() {
        read.await?;
    } else {
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| anyhow!("no reply within {}", human(timeout)))??;
    }
    wr.close().await;
    if reply.is_empty() {
        bail!("connection closed without a reply");
    }
    if let Some(end) = reply.iter().position(|&b| b == b'\n') {
        reply.truncate(end + 1);
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
