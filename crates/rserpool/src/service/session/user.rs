//! [`Session`]: the pool user's side of a session, a [`SessionUser`] core on its own task.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rserpool_proto::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, TransportCommand, TransportEvent,
};
use rserpool_proto::session::{
    check_message, FailoverFilter, FailureReason, Outstanding, SendMode, SessionError, SessionUser,
    SessionUserConfig, UserEvent,
};
use rserpool_wire::{PeId, PoolElement, PoolHandle};
use tokio::sync::{mpsc, Semaphore};

use super::channel::{self, ConnTx, Inbound, Queued, SessionTls, Wire};
use crate::clock;
use crate::pu::{PoolUser, PuFailure};
use rserpool_proto::PuError;

/// Bytes a session queues for its connection before [`Session::send`] waits.
pub const SEND_QUEUE_LIMIT: usize = 1 << 20;
/// Application messages a session reads ahead of its application (then it stops reading
/// the connection, and the PE's sends wait). While the application is that far behind
/// the session's timers wait too (the heartbeat answers are behind the unread data).
pub const READ_AHEAD: usize = 256;

/// Options of [`Session::connect`].
pub struct SessionOptions {
    /// The core's settings; its `pool` is set by [`Session::connect`].
    pub config: SessionUserConfig,
    /// RNG seed of the core; `None` = a fresh random seed.
    pub seed: Option<u64>,
    /// The failover callback: the old PE and its unacknowledged messages in, what to
    /// resend out. Default: all of them, in order.
    pub on_failover: Option<FailoverFilter>,
    /// TLS on the session channel (TCP PEs), with the pool's expected PE identities.
    pub tls: Option<SessionTls>,
    /// Connect to TCP PEs over MPTCP (`IPPROTO_MPTCP`): a PE listening on `mptcp://`
    /// (registered as TCP: ASAP has no MPTCP transport) gets subflows over each path its
    /// host and ours announce; a plain TCP PE gets plain TCP. Default off.
    pub mptcp: bool,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .field("on_failover", &self.on_failover.is_some())
            .field("tls", &self.tls)
            .field("mptcp", &self.mptcp)
            .finish()
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            config: SessionUserConfig::new(PoolHandle::from("")),
            seed: None,
            on_failover: None,
            tls: None,
            mptcp: false,
        }
    }
}

impl SessionOptions {
    /// Against PEs that do not acknowledge (RSPLIB's) and do not answer the session
    /// heartbeat: both off.
    pub fn unacknowledged(mut self) -> Self {
        self.config.acknowledged = false;
        self.config.heartbeat_interval = None;
        self
    }
    /// The session heartbeat: every `interval`, a PE silent for `timeout` after one fails.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.heartbeat_interval = Some(interval);
        self.config.heartbeat_timeout = timeout;
        self
    }
    /// Connect to the pool's PEs over TLS, checking their identities (see
    /// [`SessionOptions::tls`]).
    pub fn tls(mut self, tls: SessionTls) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Connect to the pool's TCP PEs over MPTCP (see [`SessionOptions::mptcp`]).
    pub fn mptcp(mut self, on: bool) -> Self {
        self.mptcp = on;
        self
    }
    /// The failover callback (see [`SessionOptions::on_failover`]).
    pub fn on_failover(
        mut self,
        f: impl FnMut(PeId, Vec<Outstanding>) -> Vec<Outstanding> + Send + 'static,
    ) -> Self {
        self.on_failover = Some(Box::new(f));
        self
    }
}

/// What happened to a session (in order with the data, see [`Session::next`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The first PE (or the first after a give-up) is connected.
    Connected {
        pe: PeId,
        at: Endpoint,
        /// With TLS: the PE's verified identity (the expected name its certificate
        /// carries, or the name / address checked).
        identity: Option<String>,
    },
    /// `pe` failed (reported to the registrar as unreachable).
    PeFailed {
        pe: PeId,
        reason: FailureReason,
    },
    FailoverStarted {
        old: PeId,
    },
    /// The new PE is connected; the cookie was echoed to it if `cookie`.
    FailoverCompleted {
        old: PeId,
        new: PeId,
        at: Endpoint,
        cookie: bool,
        /// With TLS: the new PE's verified identity (see `Connected`).
        identity: Option<String>,
    },
    /// A PE's TLS identity was refused (its certificate names none of the expected
    /// identities): it counts as a failed PE (`PeFailed` with `ConnectFailed` follows,
    /// and it is reported unreachable like any), the session moves on.
    PeRefused {
        at: Endpoint,
        why: String,
    },
    /// The PE sent a cookie (the session keeps the latest).
    Cookie {
        len: usize,
    },
    BusinessCard {
        pool: PoolHandle,
        pes: Vec<PoolElement>,
    },
    /// BC1: a business card named `pool`, another pool than the session's; the session
    /// resolved it through its pool user (filling the cache for a later session to it).
    /// `Ok(n)`: the registrar lists n PEs; `Err`: no such pool (or no registrar) — the
    /// card is ignored, the session goes on.
    CardPool {
        pool: PoolHandle,
        pes: Result<usize, String>,
    },
    /// The PE acknowledged message `seq`.
    Acked {
        seq: u64,
    },
    /// Messages handed back (no-failover messages of a failed PE; everything at a give-up).
    Undelivered {
        messages: Vec<Outstanding>,
    },
    /// The session gave up: no PE could be reached.
    Failed {
        reason: FailureReason,
    },
}

/// What [`Session::next`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Data { ppid: u32, data: Vec<u8> },
    Event(SessionEvent),
}

enum Cmd {
    Send {
        ppid: u32,
        data: Vec<u8>,
        mode: SendMode,
    },
    Server(Result<PoolElement, String>),
    CardPool(PoolHandle, Result<usize, String>),
    ReportFailure,
    Close,
}

/// A session with a pool: messages go to one PE of it at a time; when that PE fails the
/// session moves to another one, echoes the latest cookie and resends what the old PE
/// did not acknowledge (through the failover callback).
///
/// ```no_run
/// # async fn demo(pu: std::sync::Arc<rserpool::pu::PoolUser>) -> anyhow::Result<()> {
/// use rserpool::service::session::{Incoming, Session, SessionOptions};
/// let mut s = Session::connect(pu, "EchoPool", SessionOptions::default());
/// s.send(0x4000_0000, b"hello".to_vec()).await?;
/// while let Some(item) = s.next().await {
///     if let Incoming::Data { data, .. } = item { println!("{data:?}"); break; }
/// }
/// s.close();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Session {
    cmd: mpsc::UnboundedSender<Cmd>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    queued: Arc<Queued>,
    credits: Arc<Semaphore>,
    next_seq: u64,
}

impl Session {
    /// Start a session with `pool` through `pu` (PE selection, unreachable reports). It
    /// connects at once; messages sent before the PE is up wait.
    pub fn connect(
        pu: Arc<PoolUser>,
        pool: impl Into<PoolHandle>,
        opts: SessionOptions,
    ) -> Session {
        Self::start(pu, pool.into(), opts, None)
    }

    /// A session bound to one PE `pe` of `pool` (ASAP_SEND_TO_ALL sends one copy through
    /// such a session per PE, see [`to_all`]): no failover — when `pe` fails, what is
    /// outstanding comes back in [`SessionEvent::Undelivered`] and the session ends with
    /// [`SessionEvent::Failed`].
    pub fn connect_bound(
        pu: Arc<PoolUser>,
        pool: impl Into<PoolHandle>,
        pe: PoolElement,
        mut opts: SessionOptions,
    ) -> Session {
        opts.config.failover = false;
        Self::start(pu, pool.into(), opts, Some(pe))
    }

    fn start(
        pu: Arc<PoolUser>,
        pool: PoolHandle,
        mut opts: SessionOptions,
        bound: Option<PoolElement>,
    ) -> Session {
        opts.config.pool = pool.clone();
        let seed = opts.seed.unwrap_or_else(crate::random_seed);
        let mut core = SessionUser::new(opts.config, seed);
        if let Some(f) = opts.on_failover.take() {
            core.set_failover_filter(f);
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued::default());
        let credits = Arc::new(Semaphore::new(READ_AHEAD));
        let task = Task {
            credits: credits.clone(),
            unmatched: 0,
            core,
            pu,
            cmd_tx: cmd_tx.clone(),
            out: in_tx,
            conns: HashMap::new(),
            endpoints: HashMap::new(),
            next_conn: 1,
            queued: queued.clone(),
            cookie_held: false,
            current: None,
            pool,
            is_bound: bound.is_some(),
            bound,
            tls: opts.tls.take(),
            mptcp: opts.mptcp,
            identity: None,
        };
        tokio::spawn(task.run(cmd_rx));
        Session {
            cmd: cmd_tx,
            incoming: in_rx,
            queued,
            credits,
            next_seq: 0,
        }
    }

    /// Send `data` with `ppid` (failover mode); returns its sequence number. Waits while
    /// more than [`SEND_QUEUE_LIMIT`] bytes wait for the connection.
    pub async fn send(&mut self, ppid: u32, data: Vec<u8>) -> Result<u64, SessionError> {
        self.send_with(ppid, data, SendMode::Failover).await
    }

    /// Send with a send option of §1.13: [`SendMode::Failover`], [`SendMode::NoFailover`]
    /// or [`SendMode::ToLast`] (only to the PE of the previous message; handed back in
    /// [`SessionEvent::Undelivered`] when the session is no longer with it). "To all" is
    /// [`to_all`].
    pub async fn send_with(
        &mut self,
        ppid: u32,
        data: Vec<u8>,
        mode: SendMode,
    ) -> Result<u64, SessionError> {
        check_message(ppid, data.len())?;
        self.queued.wait_below(SEND_QUEUE_LIMIT).await;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.cmd
            .send(Cmd::Send { ppid, data, mode })
            .map_err(|_| SessionError::NoSession)?;
        // Let the session task run now and then (see `PeSession::send`).
        tokio::task::coop::consume_budget().await;
        Ok(seq)
    }

    /// The next data message from the pool (events in between are skipped; use
    /// [`Session::next`] to see them). `None`: the session ended.
    pub async fn recv(&mut self) -> Option<(u32, Vec<u8>)> {
        loop {
            match self.next().await? {
                Incoming::Data { ppid, data } => return Some((ppid, data)),
                Incoming::Event(SessionEvent::Failed { .. }) => return None,
                Incoming::Event(_) => {}
            }
        }
    }

    /// The next data message or event, in the order they happened. `None`: closed.
    pub async fn next(&mut self) -> Option<Incoming> {
        let item = self.incoming.recv().await;
        if matches!(item, Some(Incoming::Data { .. })) {
            self.credits.add_permits(1);
        }
        item
    }

    /// The application considers the current PE failed (Transport.Failure): fail over.
    pub fn report_failure(&self) {
        let _ = self.cmd.send(Cmd::ReportFailure);
    }

    /// End the session (the connection closes once what is queued is written).
    pub fn close(&self) {
        let _ = self.cmd.send(Cmd::Close);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Close);
    }
}

struct Task {
    core: SessionUser,
    pu: Arc<PoolUser>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    out: mpsc::UnboundedSender<Incoming>,
    conns: HashMap<ConnId, ConnTx>,
    /// Where each connection goes (for the events).
    endpoints: HashMap<ConnId, Endpoint>,
    next_conn: u64,
    queued: Arc<Queued>,
    cookie_held: bool,
    current: Option<Endpoint>,
    /// The session's pool.
    pool: PoolHandle,
    /// The PE of a bound session (taken at its first use).
    bound: Option<PoolElement>,
    is_bound: bool,
    /// TLS on the session channel.
    tls: Option<SessionTls>,
    /// MPTCP towards TCP PEs.
    mptcp: bool,
    /// The current PE's verified identity (TLS).
    identity: Option<String>,
    /// Read-ahead permits of application messages (shared with the readers).
    credits: Arc<Semaphore>,
    /// Application messages read (each took a permit) that the core has not delivered:
    /// their permits go back.
    unmatched: usize,
}

enum Connected {
    Up(Endpoint, Wire, Option<String>),
    /// The connect failed; `true`: the PE's TLS identity was refused.
    Failed(Endpoint, String, bool),
}

impl Task {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(256);
        let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<Connected>();
        let now = clock::now();
        self.core.connect(now);
        self.drain(&in_tx, &conn_tx);
        let mut closing = false;
        loop {
            let deadline = self.core.poll_timeout();
            tokio::select! {
                biased;
                c = cmds.recv() => {
                    let now = clock::now();
                    match c {
                        Some(Cmd::Send { ppid, data, mode }) => {
                            let _ = self.core.send(now, ppid, data, mode);
                        }
                        Some(Cmd::Server(Ok(pe))) => self.core.use_server(now, pe),
                        Some(Cmd::Server(Err(why))) => {
                            tracing::info!("session: no PE: {why}");
                            self.core.no_server(now);
                        }
                        Some(Cmd::CardPool(pool, pes)) => {
                            let _ = self.out.send(Incoming::Event(SessionEvent::CardPool { pool, pes }));
                        }
                        Some(Cmd::ReportFailure) => self.core.report_failure(now),
                        Some(Cmd::Close) | None => {
                            self.core.close(now);
                            closing = true;
                        }
                    }
                }
                Some(m) = in_rx.recv() => {
                    let now = clock::now();
                    match m {
                        Inbound::Message { conn, protocol, bytes } => {
                            if matches!(protocol, rserpool_wire::Protocol::Data(p) if !channel::is_session_ppid(p)) {
                                self.unmatched += 1;
                            }
                            let Some(ep) = self.endpoints.get(&conn) else {
                                self.return_credits();
                                continue;
                            };
                            let meta = RecvMeta {
                                protocol,
                                transport: ep.transport,
                                peer: ep.primary().unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
                                peer_addrs: ep.addrs.iter().map(|a| a.ip()).collect(),
                                identity: None,
                            };
                            self.core.handle_message(now, conn, &meta, &bytes);
                        }
                        Inbound::Closed { conn, why } => {
                            if self.conns.remove(&conn).is_some() {
                                tracing::debug!(%conn, "session connection ended: {why}");
                                self.endpoints.remove(&conn);
                                self.core.handle_transport(now, TransportEvent::Closed { conn });
                            }
                        }
                    }
                }
                Some(c) = conn_rx.recv() => {
                    let now = clock::now();
                    match c {
                        Connected::Up(endpoint, wire, identity) => {
                            self.identity = identity;
                            let conn = ConnId(self.next_conn);
                            self.next_conn += 1;
                            let tx = channel::start(conn, wire, in_tx.clone(), self.queued.clone(), Some(self.credits.clone()));
                            self.conns.insert(conn, tx);
                            self.endpoints.insert(conn, endpoint.clone());
                            self.current = Some(endpoint.clone());
                            self.core.handle_transport(now, TransportEvent::Connected { conn, endpoint });
                        }
                        Connected::Failed(endpoint, why, refused) => {
                            tracing::debug!(%endpoint, "session connect failed: {why}");
                            if refused {
                                tracing::warn!(%endpoint, "session: {why}");
                                let _ = self.out.send(Incoming::Event(SessionEvent::PeRefused { at: endpoint.clone(), why }));
                            }
                            self.core.handle_transport(now, TransportEvent::ConnectFailed { endpoint });
                        }
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    if self.credits.available_permits() == 0 {
                        // The application is behind: what the PE sent waits unread, its
                        // heartbeat answers too. Look again in a while.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    self.core.handle_timeout(clock::now());
                }
            }
            self.drain(&in_tx, &conn_tx);
            self.return_credits();
            if closing {
                for (_, c) in self.conns.drain() {
                    c.close();
                }
                return;
            }
        }
    }

    fn core_bound(&self) -> bool {
        self.is_bound
    }

    fn return_credits(&mut self) {
        if self.unmatched > 0 {
            self.credits.add_permits(self.unmatched);
            self.unmatched = 0;
        }
    }

    fn drain(&mut self, in_tx: &mpsc::Sender<Inbound>, conn_tx: &mpsc::UnboundedSender<Connected>) {
        let _ = in_tx;
        while let Some(t) = self.core.poll_transmit() {
            if let Dest::Conn(conn) = t.dest {
                let failed = match self.conns.get(&conn) {
                    Some(c) => c.send(t.protocol, t.bytes).is_err(),
                    None => false,
                };
                if failed {
                    self.conns.remove(&conn);
                    self.core
                        .handle_transport(clock::now(), TransportEvent::SendFailed { conn });
                }
            }
        }
        while let Some(c) = self.core.poll_command() {
            match c {
                TransportCommand::Connect { endpoint, .. } => {
                    let tx = conn_tx.clone();
                    let (tls, mptcp) = (self.tls.clone(), self.mptcp);
                    tokio::spawn(async move {
                        let r = Wire::connect(&endpoint, tls.as_ref(), mptcp).await;
                        let _ = tx.send(match r {
                            Ok((w, identity)) => Connected::Up(endpoint, w, identity),
                            Err(e) => {
                                let refused = e.kind() == std::io::ErrorKind::PermissionDenied;
                                Connected::Failed(endpoint, e.to_string(), refused)
                            }
                        });
                    });
                }
                TransportCommand::Close(conn) => {
                    if let Some(c) = self.conns.remove(&conn) {
                        c.close();
                    }
                    self.endpoints.remove(&conn);
                }
                TransportCommand::Abort(conn) => {
                    if let Some(c) = self.conns.remove(&conn) {
                        c.abort();
                    }
                    self.endpoints.remove(&conn);
                }
            }
        }
        while let Some(ev) = self.core.poll_event() {
            if !matches!(ev, UserEvent::Data { .. } | UserEvent::Acked { .. }) {
                tracing::debug!(?ev, "session event");
            }
            let out = match ev {
                UserEvent::NeedServer { .. } if self.core_bound() => {
                    // A bound session has its one PE, once.
                    let r = self.bound.take().ok_or_else(|| "its PE failed".to_owned());
                    let _ = self.cmd_tx.send(Cmd::Server(r));
                    None
                }
                UserEvent::NeedServer { pool, exclude } => {
                    let pu = self.pu.clone();
                    let tx = self.cmd_tx.clone();
                    tokio::spawn(async move {
                        let r = pick(&pu, pool, &exclude).await;
                        let _ = tx.send(Cmd::Server(r));
                    });
                    None
                }
                UserEvent::Connected { pe } => Some(SessionEvent::Connected {
                    pe,
                    at: self.current.clone().unwrap_or_else(empty_endpoint),
                    identity: self.identity.clone(),
                }),
                UserEvent::PeFailed { pool, pe, reason } => {
                    // An impostor (TLS identity refused) is reported like any failed PE:
                    // the pool user then passes it over (and the registrar hears of it).
                    let _ = self.pu.report_unreachable(pool, pe);
                    Some(SessionEvent::PeFailed { pe, reason })
                }
                UserEvent::FailoverStarted { old } => Some(SessionEvent::FailoverStarted { old }),
                UserEvent::FailoverCompleted { old, new } => {
                    Some(SessionEvent::FailoverCompleted {
                        old,
                        new,
                        at: self.current.clone().unwrap_or_else(empty_endpoint),
                        cookie: self.cookie_held,
                        identity: self.identity.clone(),
                    })
                }
                UserEvent::CookieReceived { cookie } => {
                    self.cookie_held = true;
                    Some(SessionEvent::Cookie { len: cookie.len() })
                }
                UserEvent::BusinessCard { pool, pes } => {
                    if pool != self.pool {
                        // BC1: resolve a pool we may know nothing of.
                        let pu = self.pu.clone();
                        let tx = self.cmd_tx.clone();
                        let p = pool.clone();
                        tokio::spawn(async move {
                            let r = match pu.resolve(p.clone()).await {
                                Ok(pes) => Ok(pes.len()),
                                Err(e) => {
                                    tracing::warn!(
                                        "session: a business card names pool {p}, which cannot be resolved ({e}): card ignored"
                                    );
                                    Err(e.to_string())
                                }
                            };
                            let _ = tx.send(Cmd::CardPool(p, r));
                        });
                    }
                    Some(SessionEvent::BusinessCard { pool, pes })
                }
                UserEvent::Data { ppid, data } => {
                    self.unmatched = self.unmatched.saturating_sub(1);
                    if self.out.send(Incoming::Data { ppid, data }).is_err() {
                        self.credits.add_permits(1);
                    }
                    None
                }
                UserEvent::Acked { seq } => Some(SessionEvent::Acked { seq }),
                UserEvent::Undelivered { messages } => Some(SessionEvent::Undelivered { messages }),
                UserEvent::SendRefused { .. } => None,
                UserEvent::Failed { reason } => {
                    self.cookie_held = false;
                    Some(SessionEvent::Failed { reason })
                }
            };
            if let Some(e) = out {
                let _ = self.out.send(Incoming::Event(e));
            }
        }
    }
}

fn empty_endpoint() -> Endpoint {
    Endpoint {
        transport: rserpool_proto::io::TransportProto::Tcp,
        addrs: Vec::new(),
    }
}

/// How long a session waits for a PE when every one it knows failed in this session (the
/// pool user excludes a reported PE for its stale-cache time, 5 s by default; a PE that
/// ends sessions on purpose, as RSPLIB's `-pppfailureafter` does, comes back then).
const WAIT_FOR_A_PE: Duration = Duration::from_secs(6);

/// A PE of `pool` not in `exclude`: the pool user's choice, asked again (a few times) when
/// it hands out an excluded one, and again for a while when it has none left.
async fn pick(pu: &PoolUser, pool: PoolHandle, exclude: &[PeId]) -> Result<PoolElement, String> {
    let mut tries = 0;
    let until = tokio::time::Instant::now() + WAIT_FOR_A_PE;
    loop {
        match pu.get_primary_server(pool.clone()).await {
            Ok(pe) if !exclude.contains(&pe.id) => return Ok(pe),
            Ok(pe) => {
                tries += 1;
                if tries >= 8 {
                    return Ok(pe);
                }
                let _ = pu.report_unreachable(pool.clone(), pe.id);
            }
            Err(PuFailure::Pool(PuError::NoServer))
                if !exclude.is_empty() && tokio::time::Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(clock::to_tokio(d)).await,
        None => std::future::pending().await,
    }
}

/// One PE's part of a "to all" send ([`to_all`]).
#[derive(Debug)]
pub struct ToAllCopy {
    pub pe: PeId,
    /// The PE's session (bound to it): its answers come through [`Session::next`].
    pub session: Session,
}

/// ASAP_SEND_TO_ALL (RFC 5352 §6.5.5, procedures §1.13): resolve `pool` now and open one
/// session bound to each of its PEs ([`Session::connect_bound`]), leaving out the sender's
/// own PEs `own` (a PU that is a PE) unless `to_self` (ASAP_SEND_TO_SELF). Send each copy
/// through its session; what each PE answers comes through that session. Failover: none
/// per copy (every PE has its own copy); a PE that fails hands its copies back
/// ([`SessionEvent::Undelivered`], then [`SessionEvent::Failed`]) and is reported to the
/// registrar.
pub async fn to_all(
    pu: &Arc<PoolUser>,
    pool: impl Into<PoolHandle>,
    own: &[PeId],
    to_self: bool,
    opts: impl Fn() -> SessionOptions,
) -> Result<Vec<ToAllCopy>, PuFailure> {
    let pool = pool.into();
    let pes = pu.refresh(pool.clone()).await?;
    Ok(rserpool_proto::session::to_all_targets(&pes, own, to_self)
        .into_iter()
        .map(|pe| ToAllCopy {
            pe: pe.id,
            session: Session::connect_bound(pu.clone(), pool.clone(), pe, opts()),
        })
        .collect())
}
