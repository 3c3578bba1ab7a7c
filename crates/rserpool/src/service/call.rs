//! The pool user's failover loop of `rsp call`: lines go to a PE of the pool, what it
//! sends back goes to the output. When the PE fails the loop reports it, moves to another
//! PE, resends the lines that were not answered yet and says so through the status sink.
//! PEs with a TCP user transport get a TCP connection, PEs with an SCTP one an
//! association (one SCTP message per line, see [`super::session`]).
//!
//! A PE fails when its connection fails or closes with lines unanswered, and when it
//! leaves a line unanswered for `reply_timeout` (a frozen process keeps its connection
//! open: the kernel still accepts the data). Before the pool has answered any line (a
//! discard service never does) silence alone proves nothing: the registrar is asked
//! instead, and the PE counts as failed once the registrar no longer lists it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rserpool_proto::io::Endpoint;
use rserpool_proto::PuError;
use rserpool_wire::PoolElement;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::session::{Conn, ConnWrite, ReadEvent};
use crate::pu::{endpoint_of, PoolUser, PuFailure};

/// What a call does, and where its status lines go.
pub struct Call<'a> {
    /// Pool handle.
    pub pool: String,
    /// A PE per line (one connection per line, one reply line awaited) instead of one
    /// session.
    pub per_request: bool,
    /// Give up after this many PEs failed in a row.
    pub attempts: u32,
    /// How long a PE may leave a line unanswered (0 = for ever).
    pub reply_timeout: Duration,
    /// The registrars configured and the announce group listened on (for messages).
    pub registrars: Vec<Endpoint>,
    pub announce_group: Option<SocketAddr>,
    /// Receives each status line (`connected to PE …`, `PE … failed (…); trying another`).
    pub status: &'a (dyn Fn(&str) + Sync),
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("pool", &self.pool)
            .field("per_request", &self.per_request)
            .field("attempts", &self.attempts)
            .field("reply_timeout", &self.reply_timeout)
            .finish_non_exhaustive()
    }
}

impl Call<'_> {
    /// Send `lines` to the pool through `pu`, replies to `out`, until the lines end (or
    /// the output is gone). `Err`: no PE could be had, in words.
    pub async fn run(
        &self,
        pu: &PoolUser,
        lines: mpsc::Receiver<String>,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<()> {
        if self.per_request {
            per_request(self, pu, lines, out).await
        } else {
            session(self, pu, lines, out).await
        }
    }
}

/// The registrars tried, in words: those known (else those configured), and whether the
/// announce group was listened on in vain.
pub fn describe_registrars(
    known: &[Endpoint],
    configured: &[Endpoint],
    group: Option<SocketAddr>,
) -> String {
    let mut list: Vec<String> = known.iter().map(ToString::to_string).collect();
    if list.is_empty() {
        list = configured.iter().map(ToString::to_string).collect();
    }
    let mut text = if list.is_empty() {
        "no registrar".to_owned()
    } else {
        list.join(", ")
    };
    if let Some(g) = group {
        if known.iter().all(|e| configured.contains(e)) {
            text.push_str(&format!("; none heard announcing itself on {g}"));
        }
    }
    text
}

fn addr_of(pe: &PoolElement) -> anyhow::Result<Endpoint> {
    endpoint_of(pe).ok_or_else(|| anyhow!("PE {} has no TCP/SCTP user transport", pe.id))
}

async fn connect(ep: &Endpoint) -> std::io::Result<Conn> {
    Conn::connect(ep, Duration::from_secs(5)).await
}

/// A PE of the pool, or an error in words that names the pool and the registrars.
async fn first_server(args: &Call<'_>, pu: &PoolUser) -> anyhow::Result<PoolElement> {
    match pu.get_primary_server(args.pool.as_str()).await {
        Ok(pe) => Ok(pe),
        Err(e) => Err(explain(args, pu, &e).await),
    }
}

/// Why no PE could be had, in words: the pool, the cause, the registrars tried.
async fn explain(args: &Call<'_>, pu: &PoolUser, e: &PuFailure) -> anyhow::Error {
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
            let tried = describe_registrars(&known, &args.registrars, args.announce_group);
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
    args: &Call<'_>,
    pu: &PoolUser,
    failed: &PoolElement,
    why: &str,
    failures: &mut u32,
) -> anyhow::Result<PoolElement> {
    let pool = args.pool.as_str();
    (args.status)(&format!("PE {} failed ({why}); trying another", failed.id));
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
struct SessionState<'a> {
    lines: mpsc::Receiver<String>,
    /// Lines sent and not answered yet (resent to the next PE).
    outstanding: VecDeque<String>,
    stdin_done: bool,
    /// The pool has answered a line in this run: its service answers, so silence means
    /// failure.
    answered: bool,
    stdout: &'a mut (dyn AsyncWrite + Unpin + Send),
}

async fn session(
    args: &Call<'_>,
    pu: &PoolUser,
    lines: mpsc::Receiver<String>,
    stdout: &mut (dyn AsyncWrite + Unpin + Send),
) -> anyhow::Result<()> {
    let mut pe = first_server(args, pu).await?;
    let mut st = SessionState {
        lines,
        outstanding: VecDeque::new(),
        stdin_done: false,
        answered: false,
        stdout,
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
        (args.status)(&format!("connected to PE {} at {ep}", pe.id));
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
    args: &Call<'_>,
    pu: &PoolUser,
    pe: &PoolElement,
    conn: Conn,
    st: &mut SessionState<'_>,
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
    args: &Call<'_>,
    pu: &PoolUser,
    mut lines: mpsc::Receiver<String>,
    stdout: &mut (dyn AsyncWrite + Unpin + Send),
) -> anyhow::Result<()> {
    while let Some(line) = lines.recv().await {
        let mut pe = first_server(args, pu).await?;
        let mut failures = 0;
        let reply = loop {
            match exchange(args, &pe, &line, args.reply_timeout).await {
                Ok(r) => break r,
                Err(e) => {
                    pe = next_server(args, pu, &pe, &format!("{e:#}"), &mut failures).await?;
                }
            }
        };
        (args.status)(&format!("PE {} answered", pe.id));
        stdout.write_all(reply.as_bytes()).await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// One line out, one line back, on a fresh connection.
async fn exchange(
    args: &Call<'_>,
    pe: &PoolElement,
    line: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let ep = addr_of(pe)?;
    let conn = connect(&ep).await?;
    (args.status)(&format!("connected to PE {} at {ep}", pe.id));
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
