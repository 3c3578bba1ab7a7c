//! `rsp call POOL`: a terminal client. Lines from stdin go to a PE of the pool, what it
//! sends back goes to stdout. When the PE fails the client reports it, moves to another
//! PE (get_next_server), resends the lines that were not answered yet and says so on
//! stderr.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use rserpool::pu::{endpoint_of, PoolUser, PuOptions};
use rserpool_proto::io::Endpoint;
use rserpool_wire::PoolElement;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::args::{self, RegistrarArgs};

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

async fn connect(ep: &Endpoint) -> std::io::Result<TcpStream> {
    let addr = ep
        .primary()
        .ok_or_else(|| std::io::Error::other("endpoint without address"))?;
    let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = s.set_nodelay(true);
    Ok(s)
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
        let stream = match connect(&ep).await {
            Ok(s) => s,
            Err(e) => {
                pe = next_server(pu, pool, &pe, &e.to_string(), &mut failures, args.attempts)
                    .await?;
                continue;
            }
        };
        eprintln!("rsp call: connected to PE {} at {ep}", pe.id);
        let end = pump(
            stream,
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
    stream: TcpStream,
    lines: &mut mpsc::Receiver<String>,
    outstanding: &mut VecDeque<String>,
    stdin_done: &mut bool,
    stdout: &mut tokio::io::Stdout,
) -> End {
    let (mut rd, mut wr) = stream.into_split();
    // Lines not answered by the previous PE go first.
    for l in outstanding.iter() {
        if let Err(e) = wr.write_all(format!("{l}\n").as_bytes()).await {
            return End::Failed(e.to_string());
        }
    }
    if *stdin_done {
        let _ = wr.shutdown().await;
    }
    let mut buf = vec![0u8; 16384];
    loop {
        tokio::select! {
            line = lines.recv(), if !*stdin_done => match line {
                Some(l) => {
                    let r = wr.write_all(format!("{l}\n").as_bytes()).await;
                    outstanding.push_back(l);
                    if let Err(e) = r {
                        return End::Failed(e.to_string());
                    }
                }
                None => {
                    // No more input: half-close, then print what the PE still sends
                    // until it closes (echo replies, the daytime line …).
                    *stdin_done = true;
                    let _ = wr.shutdown().await;
                }
            },
            r = rd.read(&mut buf) => match r {
                // After our half-close the PE closing is the normal end of the session
                // (discard never answers; echo has answered what it got).
                Ok(0) if outstanding.is_empty() || *stdin_done => return End::ClosedIdle,
                Ok(0) => return End::Failed("connection closed".into()),
                Ok(n) => {
                    let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                    for _ in 0..newlines {
                        outstanding.pop_front();
                    }
                    if stdout.write_all(&buf[..n]).await.is_err() {
                        return End::Done; // nobody reads our output any more
                    }
                    let _ = stdout.flush().await;
                }
                Err(e) => return End::Failed(e.to_string()),
            },
        }
    }
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
    let stream = connect(&ep).await?;
    eprintln!("rsp call: connected to PE {} at {ep}", pe.id);
    let (rd, mut wr) = stream.into_split();
    wr.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    let n = tokio::time::timeout(timeout, BufReader::new(rd).read_line(&mut reply))
        .await
        .map_err(|_| anyhow!("no reply within {timeout:?}"))??;
    if n == 0 {
        bail!("connection closed without a reply");
    }
    Ok(reply)
}
