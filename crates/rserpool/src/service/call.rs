//! The pool user of `rsp call`, on the session layer ([`super::session::Session`]):
//! lines go to a PE of the pool (one message each, PPID 0), what it sends back goes to the
//! output. When the PE fails the session reports it (ASAP_ENDPOINT_UNREACHABLE), moves
//! to another PE and resends through its failover callback the lines not answered yet;
//! the status sink says so. Our echo and discard PEs acknowledge each line; RSPLIB's do
//! not, and a reply (a line of output) counts as the answer to the oldest line.
//!
//! A PE fails when its connection fails or closes with lines unanswered, and when it
//! stays silent for `reply_timeout` (the session heartbeat goes every quarter of it; a
//! frozen process keeps its connection open). A PE that sent something unasked and then
//! closes with nothing outstanding (daytime after its line) ended the session on purpose:
//! no failover; the next line opens a new session. After the input ended the call
//! waits for the outstanding replies, at most 5 s after the PE last said something.
//!
//! `per_request` keeps one plain connection per line (no session), for services and
//! gateways that know nothing of the session layer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rserpool_proto::io::Endpoint;
use rserpool_proto::PuError;
use rserpool_wire::PoolElement;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::session::{
    Conn, FailureReason, Incoming, ReadEvent, Session, SessionEvent, SessionOptions,
};
use crate::pu::{endpoint_of, PoolUser, PuFailure};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a call does, and where its status lines go.
pub struct Call<'a> {
    /// Pool handle.
    pub pool: String,
    /// A PE per line (one connection per line, one reply line awaited) instead of one
    /// session.
    pub per_request: bool,
    /// ASAP_SEND_TO_ALL: each line to every PE of the pool (one session bound to each, no
    /// failover), every PE's answer printed as `PE: answer`.
    pub to_all: bool,
    /// Give up after this many PEs failed in a row.
    pub attempts: u32,
    /// How long a PE may leave a line unanswered (0 = for ever).
    pub reply_timeout: Duration,
    /// The registrars configured and the announce group listened on (for messages).
    pub registrars: Vec<Endpoint>,
    pub announce_group: Option<SocketAddr>,
    /// Connect to TCP PEs over MPTCP (see [`SessionOptions::mptcp`]).
    pub mptcp: bool,
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
        pu: &Arc<PoolUser>,
        lines: mpsc::Receiver<String>,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> anyhow::Result<()> {
        if self.per_request {
            per_request(self, pu, lines, out).await
        } else if self.to_all {
            to_all(self, pu, lines, out).await
        } else {
            session(self, pu.clone(), lines, out).await
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

async fn connect(ep: &Endpoint, mptcp: bool) -> std::io::Result<Conn> {
    Conn::connect(ep, Duration::from_secs(5), mptcp).await
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

/// PPID of the lines (0 = unspecified, as RSPLIB's terminal sends them).
const LINE_PPID: u32 = super::session::DATA_PPID;

/// How long the call waits for outstanding replies after the input ended, once the PE
/// has been silent that long (a service that neither answers nor acknowledges).
const LINGER: Duration = Duration::from_secs(5);

/// Why a PE failed, in words.
fn why(reason: FailureReason, timeout: Duration) -> String {
    match reason {
        FailureReason::HeartbeatTimeout => format!("no reply within {}", human(timeout)),
        FailureReason::Closed => "connection closed".into(),
        FailureReason::SendFailed => "send failed".into(),
        FailureReason::ConnectFailed => "cannot connect".into(),
        FailureReason::ConnectTimeout => "connect timed out".into(),
        FailureReason::NoTransport => "no TCP/SCTP user transport".into(),
        FailureReason::User => format!("no reply within {}", human(timeout)),
    }
}

/// The session options of a call: the session heartbeat follows `--reply-timeout` (a PE
/// silent that long fails; 0 = no heartbeat), every line waits for its reply or its
/// acknowledgement, and the failover callback resends only the lines not answered yet.
fn options(args: &Call<'_>, answered: Arc<AtomicU64>) -> SessionOptions {
    let mut o = SessionOptions::default();
    let t = args.reply_timeout;
    o.config.heartbeat_interval = (!t.is_zero()).then(|| (t / 4).max(Duration::from_millis(20)));
    o.config.heartbeat_timeout = (t * 3 / 4).max(Duration::from_millis(50));
    o.config.max_attempts = args.attempts.max(1);
    o.mptcp = args.mptcp;
    o.on_failover(move |_old, unacked| {
        // Lines are answered in order: those before the count have their reply.
        let done = answered.load(Ordering::Relaxed);
        unacked.into_iter().filter(|m| m.seq >= done).collect()
    })
}

/// `to_all`: the pool's PEs are resolved once; each line goes to each of them (a
/// session bound to each), then the first answer of every PE is printed, in the order of
/// the resolution, as `PE-ID: answer`. A PE that fails (or stays silent for
/// `reply_timeout`, 5 s when 0) is reported on the status sink and left out from then on:
/// its copy is not moved to another PE (those have theirs). `Err` when no PE is left.
async fn to_all(
    args: &Call<'_>,
    pu: &Arc<PoolUser>,
    mut lines: mpsc::Receiver<String>,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> anyhow::Result<()> {
    first_server(args, pu).await?;
    let answered = Arc::new(AtomicU64::new(0));
    let mut copies = super::session::to_all(pu, args.pool.as_str(), &[], false, || {
        options(args, answered.clone())
    })
    .await
    .map_err(|e| anyhow!("pool {}: {e}", args.pool))?;
    let ids: Vec<String> = copies.iter().map(|c| c.pe.to_string()).collect();
    (args.status)(&format!(
        "to all: {} PEs of {}: {}",
        copies.len(),
        args.pool,
        ids.join(", ")
    ));
    let wait = if args.reply_timeout.is_zero() {
        Duration::from_secs(5)
    } else {
        args.reply_timeout
    };
    while let Some(line) = lines.recv().await {
        let data = format!("{line}\n").into_bytes();
        for c in &mut copies {
            let _ = c
                .session
                .send(super::session::DATA_PPID, data.clone())
                .await;
        }
        let mut gone = Vec::new();
        for (i, c) in copies.iter_mut().enumerate() {
            let until = Instant::now() + wait;
            let answer = loop {
                match tokio::time::timeout_at(until, c.session.next()).await {
                    Ok(Some(Incoming::Data { data, .. })) => break Ok(data),
                    Ok(Some(Incoming::Event(SessionEvent::PeFailed { reason, .. }))) => {
                        break Err(format!("{reason:?}"))
                    }
                    Ok(Some(Incoming::Event(SessionEvent::Failed { reason }))) => {
                        break Err(format!("{reason:?}"))
                    }
                    Ok(Some(Incoming::Event(_))) => {}
                    Ok(None) => break Err("session ended".to_owned()),
                    Err(_) => break Err(format!("no answer within {wait:?}")),
                }
            };
            match answer {
                Ok(data) => {
                    let text = String::from_utf8_lossy(&data);
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    out.write_all(format!("{}: {text}\n", c.pe).as_bytes())
                        .await?;
                }
                Err(why) => {
                    (args.status)(&format!(
                        "PE {} failed ({why}); its copy is lost (to all: no failover)",
                        c.pe
                    ));
                    gone.push(i);
                }
            }
        }
        out.flush().await?;
        for i in gone.into_iter().rev() {
            let c = copies.remove(i);
            c.session.close();
        }
        if copies.is_empty() {
            bail!("pool {}: no PE left", args.pool);
        }
    }
    for c in &copies {
        c.session.close();
    }
    Ok(())
}

async fn session(
    args: &Call<'_>,
    pu: Arc<PoolUser>,
    mut lines: mpsc::Receiver<String>,
    stdout: &mut (dyn AsyncWrite + Unpin + Send),
) -> anyhow::Result<()> {
    // Ask once up front: an unknown pool or no registrar is said in words.
    first_server(args, &pu).await?;
    let answered = Arc::new(AtomicU64::new(0));
    let connect = || {
        Session::connect(
            pu.clone(),
            args.pool.as_str(),
            options(args, answered.clone()),
        )
    };
    // `None` after a PE ended the session on purpose, until the next line.
    let mut s = Some(connect());
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut failures = 0u32;
    let mut stdin_done = false;
    // The current PE sent something nobody asked for (daytime, chargen).
    let mut unsolicited = false;
    let mut last_activity = Instant::now();
    loop {
        let replies = answered.load(Ordering::Relaxed);
        let outstanding = sent.saturating_sub(replies.max(acked));
        if stdin_done && (outstanding == 0 || s.is_none()) {
            if let Some(s) = &s {
                s.close();
            }
            return Ok(());
        }
        let linger = last_activity + LINGER;
        tokio::select! {
            line = lines.recv(), if !stdin_done => match line {
                Some(l) => {
                    let mut data = l.into_bytes();
                    data.push(b'\n');
                    let session = s.get_or_insert_with(connect);
                    session.send(LINE_PPID, data).await.map_err(|e| anyhow!("{e}"))?;
                    sent += 1;
                    last_activity = Instant::now();
                }
                None => stdin_done = true,
            },
            item = next(&mut s) => {
                let Some(item) = item else {
                    s = None;
                    continue;
                };
                last_activity = Instant::now();
                match item {
                    Incoming::Data { data, .. } => {
                        let n = data.iter().filter(|&&b| b == b'\n').count() as u64;
                        // More reply lines than lines sent: the PE speaks unasked.
                        if answered.fetch_add(n, Ordering::Relaxed) + n > sent {
                            unsolicited = true;
                        }
                        if stdout.write_all(&data).await.is_err() {
                            return Ok(()); // nobody reads our output any more
                        }
                        let _ = stdout.flush().await;
                    }
                    Incoming::Event(SessionEvent::Connected { pe, at, .. })
                    | Incoming::Event(SessionEvent::FailoverCompleted { new: pe, at, .. }) => {
                        unsolicited = false;
                        (args.status)(&format!("connected to PE {pe} at {at}"));
                    }
                    Incoming::Event(SessionEvent::PeFailed { pe, reason }) => {
                        let replies = answered.load(Ordering::Relaxed);
                        if reason == FailureReason::Closed
                            && unsolicited
                            && sent <= replies.max(acked)
                        {
                            // A PE that spoke unasked and closed with nothing outstanding
                            // (daytime) ended the session: no failover; the next line
                            // opens a new one.
                            if let Some(s) = s.take() {
                                s.close();
                            }
                            continue;
                        }
                        failures += 1;
                        (args.status)(&format!(
                            "PE {pe} failed ({}); trying another",
                            why(reason, args.reply_timeout)
                        ));
                    }
                    Incoming::Event(SessionEvent::Acked { seq }) => acked = acked.max(seq + 1),
                    Incoming::Event(SessionEvent::Failed { .. }) => {
                        bail!("pool {}: giving up after {failures} failed PEs", args.pool);
                    }
                    Incoming::Event(_) => {}
                }
            }
            // After the input ended: a PE that neither answers nor acknowledges (an RSPLIB
            // discard PE) is left once it has been silent for a while.
            () = tokio::time::sleep_until(linger), if stdin_done => {
                if let Some(s) = &s {
                    s.close();
                }
                return Ok(());
            }
        }
    }
}

/// The next item of the session, if there is one (else never).
async fn next(s: &mut Option<Session>) -> Option<Incoming> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
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
    let conn = connect(&ep, args.mptcp).await?;
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
