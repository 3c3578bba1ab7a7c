//! `rsp call POOL`: a terminal client. Lines from stdin go to a PE of the pool, what it
//! sends back goes to stdout. When the PE fails the client reports it, moves to another
//! PE (get_next_server), resends the lines that were not answered yet and says so on
//! stderr. PEs with a TCP user transport get a TCP connection, PEs with an SCTP one an
//! association (one SCTP message per line, see [`crate::session`]).

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use rserpool::pu::{endpoint_of, PoolUser, PuOptions};
use rserpool_proto::io::Endpoint;
use rserpool_wire::PoolElement;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::args::{self, RegistrarArgs};
use crate::session::{Conn, ConnWrite, ReadEvent};

/// Talk to a pool: stdin lines go to a pool element, its replies to stdout.
///
/// Status lines go to stderr: `rsp call: connected to PE 0x… at tcp://…` whenever a
/// (new) PE is used, and `rsp call: PE 0x… failed (…)` before moving to another one.
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
    /// How long to wait for a reply line in --per-request mode.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    pub reply_timeout: Duration,
}

pub fn run(args: &CallArgs) -> anyhow::Result<ExitCode> {
    args::runtime()?.block_on(call(args))
}

async fn call(args: &CallArgs) -> anyhow::Result<ExitCode> {
    let mut opts = PuOptions::default().registrars(args.registrars.endpoints());
    if args.registrars.no_announces {
        opts = opts.no_announces();
    }
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

/// Move on from a failed PE.
async fn next_server(
    pu: &PoolUser,
    pool: &str,
    failed: &PoolElement,
    why: &str,
    failures: &mut u32,
    attempts: u32,
) -> anyhow::Result<PoolElement> {
    eprintln!("rsp call: PE {} failed ({why}); trying another", failed.id);
    *failures += 1;
    if *failures >= attempts {
        bail!("giving up after {failures} failed PEs");
    }
    loop {
        match pu.get_next_server(pool).await {
            Ok(pe) => return Ok(pe),
            Err(e) => {
                *failures += 1;
                if *failures >= attempts {
                    bail!("no PE of {pool}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
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

async fn session(
    args: &CallArgs,
    pu: &PoolUser,
    mut lines: mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let pool = args.pool.as_str();
    let mut pe = pu.get_primary_server(pool).await?;
    let mut outstanding: VecDeque<String> = VecDeque::new();
    let mut stdin_done = false;
    let mut failures = 0;
    let mut stdout = tokio::io::stdout();
    loop {
        let ep = addr_of(&pe)?;
        let conn = match connect(&ep).await {
            Ok(s) => s,
            Err(e) => {
                pe = next_server(pu, pool, &pe, &e.to_string(), &mut failures, args.attempts)
                    .await?;
                continue;
            }
        };
        eprintln!("rsp call: connected to PE {} at {ep}", pe.id);
        let end = pump(
            conn,
            &mut lines,
            &mut outstanding,
            &mut stdin_done,
            &mut stdout,
        )
        .await;
        match end {
            End::Done => return Ok(()),
            End::ClosedIdle => {
                if stdin_done {
                    return Ok(());
                }
                // Reconnect to the same PE when the next line comes; if it is gone
                // the connect fails and we move on.
                match lines.recv().await {
                    Some(l) => outstanding.push_back(l),
                    None => return Ok(()),
                }
            }
            End::Failed(why) => {
                pe = next_server(pu, pool, &pe, &why, &mut failures, args.attempts).await?;
            }
        }
    }
}

async fn pump(
    conn: Conn,
    lines: &mut mpsc::Receiver<String>,
    outstanding: &mut VecDeque<String>,
    stdin_done: &mut bool,
    stdout: &mut tokio::io::Stdout,
) -> End {
    let (mut rd, mut wr) = conn.into_split();
    // Lines not answered by the previous PE go first.
    for l in outstanding.iter() {
        if let Err(e) = wr.send_line(l).await {
            return End::Failed(e.to_string());
        }
    }
    if *stdin_done && finish(&mut wr, outstanding).await {
        return End::Done;
    }
    loop {
        tokio::select! {
            line = lines.recv(), if !*stdin_done => match line {
                Some(l) => {
                    let r = wr.send_line(&l).await;
                    outstanding.push_back(l);
                    if let Err(e) = r {
                        return End::Failed(e.to_string());
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
                    let newlines = buf.iter().filter(|&&b| b == b'\n').count();
                    for _ in 0..newlines {
                        outstanding.pop_front();
                    }
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
        }
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
    let pool = args.pool.as_str();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.recv().await {
        let mut pe = pu.get_primary_server(pool).await?;
        let mut failures = 0;
        let reply = loop {
            match exchange(&pe, &line, args.reply_timeout).await {
                Ok(r) => break r,
                Err(e) => {
                    pe = next_server(
                        pu,
                        pool,
                        &pe,
                        &format!("{e:#}"),
                        &mut failures,
                        args.attempts,
                    )
                    .await?;
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
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| anyhow!("no reply within {timeout:?}"))??;
    wr.close().await;
    if reply.is_empty() {
        bail!("connection closed without a reply");
    }
    if let Some(end) = reply.iter().position(|&b| b == b'\n') {
        reply.truncate(end + 1);
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
