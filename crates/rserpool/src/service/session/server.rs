//! [`SessionListener`]: the pool element's side of sessions — listeners that register the
//! PE, a [`SessionServer`] core on its own task, and one [`PeSession`] per PU.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rserpool_proto::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, TransportCommand, TransportEvent,
};
use rserpool_proto::session::{
    card_order, check_message, CookieKey, ServerEvent, SessionError, SessionServer,
    SessionServerConfig,
};
use rserpool_wire::{PoolElement as PeEntry, PoolHandle};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use super::channel::{self, ConnTx, Inbound, Queued, Wire};
use crate::clock;
use crate::pe::{PeOptions, PoolElement};
use crate::sctp::SctpListener;
use crate::transport::accept::accept_until;

/// Bytes queued towards one PU before [`PeSession::send`] waits (a PU that does not read
/// stalls only its own session).
pub const PE_SEND_QUEUE_LIMIT: usize = 1 << 20;
/// Default of [`ListenerOptions::read_ahead`].
pub const DEFAULT_READ_AHEAD: usize = 1024;

/// A listening socket of a [`SessionListener`] and the user transport it registers.
#[derive(Debug)]
pub enum SessionBind {
    /// TCP (session framing); `advertise` is the address registered.
    Tcp {
        listener: TcpListener,
        advertise: SocketAddr,
    },
    /// TLS over TCP: the session framing inside TLS, the certificate of `tls` (reloaded
    /// with [`crate::transport::tls::TlsSettings::reload`], e.g. on SIGHUP: new sessions
    /// get the new one, open ones stay). Registered as a TCP user transport at
    /// `advertise` (ASAP has no TLS transport parameter): PUs are told per pool to use
    /// TLS. Each handshake runs in a task of its own (at most
    /// [`crate::transport::tls::MAX_HANDSHAKES`] at once, each within
    /// [`crate::transport::tls::HANDSHAKE_TIMEOUT`]).
    Tls {
        listener: TcpListener,
        advertise: SocketAddr,
        tls: Arc<crate::transport::tls::TlsSettings>,
    },
    /// SCTP (control on PPID 11, data on its own PPID); registered as "data plus control"
    /// with `port` and `addrs`.
    Sctp {
        listener: SctpListener,
        port: u16,
        addrs: Vec<IpAddr>,
    },
}

/// Options of a [`SessionListener`].
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// The core's settings. Default: no auto-ack, and a business card naming the pool
    /// (with no PEs: the PU asks its registrar) sent to every new session (§1.12).
    pub server: Option<SessionServerConfig>,
    /// Application messages read ahead of the application per session; beyond that the
    /// session's connection is not read (the PU's sends wait). Default 1024.
    pub read_ahead: usize,
    /// Sessions accepted and not yet taken by [`SessionListener::accept`]; more are
    /// refused (closed). Default 128.
    pub backlog: usize,
    /// Cookie authentication: the key the pool's PEs share (see
    /// `rserpool_proto::session::SessionServer::set_cookie_key`). Default `None`: cookies
    /// go out as the application made them, echoes are handed over unchecked.
    pub cookie_key: Option<CookieKey>,
    /// A registered listener learns its pool's PEs by resolving its own pool through its
    /// registrar this often, and sends every session a business card listing the others
    /// (§1.12, [`card_order`]: the PEs after this one by PE id, wrapping, at most
    /// [`ListenerOptions::card_max`]); a changed list goes to the open sessions too.
    /// `None`: the card names the pool only. Default 2 s. Ignored when `server` sets a
    /// card of its own.
    pub card_refresh: Option<Duration>,
    /// Most PEs a business card lists. Default 16.
    pub card_max: usize,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            server: None,
            read_ahead: DEFAULT_READ_AHEAD,
            backlog: 128,
            cookie_key: None,
            card_refresh: Some(Duration::from_secs(2)),
            card_max: 16,
        }
    }
}

/// What a PU sent on a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeMessage {
    /// Application data; pass `tsn` to [`PeSession::ack`] once dealt with.
    Data { tsn: u32, ppid: u32, data: Vec<u8> },
    /// The PU failed over to us: the state the previous PE left in its cookie (the
    /// application checks it: a PU may send anything).
    CookieEcho(Vec<u8>),
    /// The PU (itself a PE) sent its business card.
    BusinessCard { pool: PoolHandle, pes: Vec<PeEntry> },
}

enum Cmd {
    Send {
        session: ConnId,
        ppid: u32,
        data: Vec<u8>,
    },
    Cookie {
        session: ConnId,
        cookie: Vec<u8>,
    },
    Card {
        session: ConnId,
        pool: PoolHandle,
        pes: Vec<PeEntry>,
    },
    Ack {
        session: ConnId,
        tsn: u32,
    },
    Close(ConnId),
    /// The card for every session (new and open).
    SetCard(PoolHandle, Vec<PeEntry>),
}

/// The card a listener sends now (pool handle, failover list).
type SharedCard = Arc<Mutex<Option<(PoolHandle, Vec<PeEntry>)>>>;

/// A pool element serving sessions: it registers `pe` with a user transport per
/// listener and hands each PU's session out through [`SessionListener::accept`].
#[derive(Debug)]
pub struct SessionListener {
    pe: Option<Arc<PoolElement>>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<PeSession>>,
    endpoints: Vec<Endpoint>,
    adopt: mpsc::Sender<(Wire, SocketAddr)>,
    cookies_refused: Arc<AtomicU64>,
    card: SharedCard,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl SessionListener {
    /// Register a PE with the user transports of `binds` and serve sessions on them.
    pub fn start(
        mut pe: PeOptions,
        binds: Vec<SessionBind>,
        opts: ListenerOptions,
    ) -> io::Result<SessionListener> {
        let pool = pe.core.pool_handle.clone();
        let mut endpoints = Vec::new();
        let (new_tx, new_rx) = mpsc::channel::<(Wire, SocketAddr)>(64);
        let mut acceptors: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        for b in binds {
            match b {
                SessionBind::Tcp {
                    mut listener,
                    advertise,
                } => {
                    endpoints.push(Endpoint::tcp(advertise));
                    pe = pe.tcp_user_transport(advertise);
                    let tx = new_tx.clone();
                    acceptors.push(Box::new(move || {
                        tokio::spawn(async move {
                            accept_until(
                                &mut listener,
                                "session",
                                std::future::pending(),
                                |(s, peer)| {
                                    let _ = s.set_nodelay(true);
                                    let tx = tx.clone();
                                    async move {
                                        if tx.send((Wire::Tcp(s), peer)).await.is_err() {
                                            return ControlFlow::Break(());
                                        }
                                        ControlFlow::Continue(())
                                    }
                                },
                            )
                            .await;
                        });
                    }));
                }
                SessionBind::Tls {
                    mut listener,
                    advertise,
                    tls,
                } => {
                    if !tls.can_serve() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "a TLS session listener needs a certificate and key",
                        ));
                    }
                    endpoints.push(Endpoint::tcp(advertise));
                    pe = pe.tcp_user_transport(advertise);
                    let tx = new_tx.clone();
                    acceptors.push(Box::new(move || {
                        tokio::spawn(async move {
                            let busy = Arc::new(Semaphore::new(
                                crate::transport::tls::MAX_HANDSHAKES,
                            ));
                            accept_until(
                                &mut listener,
                                "session",
                                std::future::pending(),
                                |(s, peer)| {
                                    let _ = s.set_nodelay(true);
                                    let (tx, tls) = (tx.clone(), tls.clone());
                                    let permit = busy.clone().try_acquire_owned();
                                    async move {
                                        let Ok(permit) = permit else {
                                            tracing::info!(%peer, "session TLS handshake refused: too many at once");
                                            return ControlFlow::Continue(());
                                        };
                                        tokio::spawn(async move {
                                            match crate::transport::tls::accept_session(s, &tls).await {
                                                Ok(t) => {
                                                    drop(permit);
                                                    let _ = tx.send((Wire::TlsServer(Box::new(t)), peer)).await;
                                                }
                                                Err(e) => tracing::info!(%peer, "session TLS handshake failed: {e}"),
                                            }
                                        });
                                        ControlFlow::Continue(())
                                    }
                                },
                            )
                            .await;
                        });
                    }));
                }
                SessionBind::Sctp {
                    mut listener,
                    port,
                    addrs,
                } => {
                    endpoints.push(Endpoint::sctp(
                        addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
                    ));
                    pe = pe.sctp_user_transport(port, addrs, true);
                    let tx = new_tx.clone();
                    acceptors.push(Box::new(move || {
                        tokio::spawn(async move {
                            accept_until(
                                &mut listener,
                                "session",
                                std::future::pending(),
                                |(s, peer)| {
                                    let _ = s.set_nodelay(true);
                                    let tx = tx.clone();
                                    async move {
                                        if tx.send((Wire::Sctp(s), peer)).await.is_err() {
                                            return ControlFlow::Break(());
                                        }
                                        ControlFlow::Continue(())
                                    }
                                },
                            )
                            .await;
                        });
                    }));
                }
            }
        }
        let link = pe.link.clone();
        let pe = Arc::new(PoolElement::start(pe)?);
        let own_card = opts
            .server
            .as_ref()
            .is_some_and(|c| c.business_card.is_some());
        let config = opts.server.clone().unwrap_or_else(|| SessionServerConfig {
            auto_ack: false,
            business_card: Some((pool.clone(), Vec::new())),
        });
        let mut me = Self::run_core(config, &opts, new_tx, new_rx);
        for a in acceptors {
            a();
        }
        if let (Some(every), false) = (opts.card_refresh, own_card) {
            let mut pu = crate::pu::PuOptions::default().hr_items(u32::MAX);
            pu.link = link;
            let pu = crate::pu::PoolUser::start(pu);
            tokio::spawn(learn_card(
                pu,
                pe.clone(),
                pool,
                every,
                opts.card_max,
                me.cmd.clone(),
            ));
        }
        me.pe = Some(pe);
        me.endpoints = endpoints;
        Ok(me)
    }

    /// A session server that registers nothing and listens nowhere: connections come in
    /// through [`SessionListener::adopt_tcp`] (a service that tells session clients from
    /// plain ones on one port). No business card unless `opts.server` has one.
    pub fn unregistered(opts: ListenerOptions) -> SessionListener {
        let (new_tx, new_rx) = mpsc::channel(64);
        let config = opts.server.clone().unwrap_or_default();
        Self::run_core(config, &opts, new_tx, new_rx)
    }

    /// Serve a TCP connection whose client speaks the session framing (its INIT chunk
    /// not read yet).
    pub async fn adopt_tcp(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let _ = self.adopt.send((Wire::Tcp(stream), peer)).await;
    }

    fn run_core(
        config: SessionServerConfig,
        opts: &ListenerOptions,
        new_tx: mpsc::Sender<(Wire, SocketAddr)>,
        new_rx: mpsc::Receiver<(Wire, SocketAddr)>,
    ) -> SessionListener {
        let card = Arc::new(Mutex::new(config.business_card.clone()));
        let mut core = SessionServer::new(config, 0);
        core.set_cookie_key(opts.cookie_key.clone());
        let cookies_refused = Arc::new(AtomicU64::new(0));
        let (acc_tx, acc_rx) = mpsc::channel(opts.backlog.max(1));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let task = Task {
            cookies_refused: cookies_refused.clone(),
            card: card.clone(),
            core,
            sessions: HashMap::new(),
            pending: HashMap::new(),
            next_conn: 1,
            accepted: acc_tx,
            cmd_tx,
            read_ahead: opts.read_ahead.max(1),
        };
        let cmd = task.cmd_tx.clone();
        tokio::spawn(task.run(new_rx, cmd_rx));
        SessionListener {
            pe: None,
            accepted: tokio::sync::Mutex::new(acc_rx),
            endpoints: Vec::new(),
            adopt: new_tx,
            cookies_refused,
            card,
            cmd,
        }
    }

    /// Listen on TCP `addr` (port 0: any) and register it (an unspecified address
    /// registers loopback) — the short form for examples and tests.
    pub fn bind(pe: PeOptions, addr: SocketAddr) -> io::Result<SessionListener> {
        let listener = super::super::demo::bind_tcp(addr)?;
        let local = listener.local_addr()?;
        let advertise = if local.ip().is_unspecified() {
            let lo: IpAddr = if local.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(lo, local.port())
        } else {
            local
        };
        Self::start(
            pe,
            vec![SessionBind::Tcp {
                listener,
                advertise,
            }],
            ListenerOptions::default(),
        )
    }

    /// The next PU's session (`None` once the listener is gone).
    pub async fn accept(&self) -> Option<PeSession> {
        self.accepted.lock().await.recv().await
    }

    /// The registered pool element (load, deregistration, PE ids); `None` for
    /// [`SessionListener::unregistered`].
    pub fn pool_element(&self) -> Option<&Arc<PoolElement>> {
        self.pe.as_ref()
    }

    /// The user transports registered.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Cookie echoes refused so far (cookie authentication, [`ListenerOptions::cookie_key`]).
    pub fn cookies_refused(&self) -> u64 {
        self.cookies_refused.load(Ordering::Relaxed)
    }

    /// The business card sent to sessions now (pool handle, failover list): a relay (a PE
    /// that is a PU of another pool) sends it as its own card.
    pub fn business_card(&self) -> Option<(PoolHandle, Vec<PeEntry>)> {
        self.card.lock().ok().and_then(|c| c.clone())
    }

    /// Send `pes` as the failover list of `pool` to every session, new and open.
    pub fn set_business_card(&self, pool: PoolHandle, pes: Vec<PeEntry>) {
        let _ = self.cmd.send(Cmd::SetCard(pool, pes));
    }
}

/// Learn the pool's other PEs through the registrar every `every` and hand them to the
/// listener's core as the business card (until the listener is gone).
async fn learn_card(
    pu: crate::pu::PoolUser,
    pe: Arc<PoolElement>,
    pool: PoolHandle,
    every: Duration,
    max: usize,
    cmd: mpsc::UnboundedSender<Cmd>,
) {
    loop {
        // Until the registrar lists this PE, look again soon (it registers right now).
        let mut pause = every.min(Duration::from_millis(200));
        match pu.refresh(pool.clone()).await {
            Ok(pes) => {
                let own = pe.pe_ids();
                let mut list = card_order(&pes, own, max);
                if list.is_empty() {
                    // Alone in the pool: the card lists this PE (a card needs one entry;
                    // a PU skips a PE that failed).
                    list = pes.into_iter().filter(|p| own.contains(&p.id)).collect();
                }
                if !list.is_empty() {
                    pause = every;
                }
                if cmd.send(Cmd::SetCard(pool.clone(), list)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(%pool, "business card: cannot resolve the pool: {e}"),
        }
        tokio::time::sleep(pause).await;
        if cmd.is_closed() {
            return;
        }
    }
}

/// One PU's session at the PE.
#[derive(Debug)]
pub struct PeSession {
    id: ConnId,
    peer: SocketAddr,
    rx: mpsc::UnboundedReceiver<PeMessage>,
    cmd: mpsc::UnboundedSender<Cmd>,
    queued: Arc<Queued>,
    credits: Arc<Semaphore>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl PeSession {
    /// The PU's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
    /// The session's id on this PE (its connection).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The next message from the PU; `None` once the session is closed.
    pub async fn recv(&mut self) -> Option<PeMessage> {
        let m = self.rx.recv().await;
        if matches!(m, Some(PeMessage::Data { .. })) {
            self.credits.add_permits(1);
        }
        m
    }

    /// Send application data to the PU; waits while more than [`PE_SEND_QUEUE_LIMIT`]
    /// bytes wait for the PU to read. `NoSession` once the session is closed.
    pub async fn send(&self, ppid: u32, data: Vec<u8>) -> Result<(), SessionError> {
        check_message(ppid, data.len())?;
        self.queued.wait_below(PE_SEND_QUEUE_LIMIT).await;
        self.command(Cmd::Send {
            session: self.id,
            ppid,
            data,
        })?;
        // Let the session task run now and then: woken by this command it may sit in this
        // worker's LIFO slot, where no other worker steals it, and the queue bound counts
        // only what it has handled. (Yields once the task's cooperative budget is spent.)
        tokio::task::coop::consume_budget().await;
        Ok(())
    }

    /// Send a cookie: what a PE taking the session over needs (the PU keeps the latest
    /// and echoes it after a failover).
    pub fn send_cookie(&self, cookie: Vec<u8>) -> Result<(), SessionError> {
        check_message(0, cookie.len().saturating_add(8))?;
        self.command(Cmd::Cookie {
            session: self.id,
            cookie,
        })
    }

    /// Send a business card: the PEs the PU should fail over to, in order.
    pub fn send_business_card(
        &self,
        pool: PoolHandle,
        pes: Vec<PeEntry>,
    ) -> Result<(), SessionError> {
        self.command(Cmd::Card {
            session: self.id,
            pool,
            pes,
        })
    }

    /// Acknowledge every application message up to and including `tsn` (the PU releases
    /// them; they are not resent after a failover).
    pub fn ack(&self, tsn: u32) -> Result<(), SessionError> {
        self.command(Cmd::Ack {
            session: self.id,
            tsn,
        })
    }

    /// Close the session once what is queued is written.
    pub fn close(&self) {
        let _ = self.cmd.send(Cmd::Close(self.id));
    }

    /// Whether the session is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn command(&self, c: Cmd) -> Result<(), SessionError> {
        if self.is_closed() {
            return Err(SessionError::NoSession);
        }
        self.cmd.send(c).map_err(|_| SessionError::NoSession)
    }
}

impl Drop for PeSession {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Close(self.id));
    }
}

struct Slot {
    tx: ConnTx,
    to_app: Option<mpsc::UnboundedSender<PeMessage>>,
    closed: Arc<AtomicBool>,
}

struct Task {
    core: SessionServer,
    sessions: HashMap<ConnId, Slot>,
    /// Accepted sessions waiting for the core's `Accepted` event: (PeSession parts).
    pending: HashMap<ConnId, PeSession>,
    next_conn: u64,
    accepted: mpsc::Sender<PeSession>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    read_ahead: usize,
    cookies_refused: Arc<AtomicU64>,
    card: SharedCard,
}

impl Task {
    async fn run(
        mut self,
        mut new_rx: mpsc::Receiver<(Wire, SocketAddr)>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(1024);
        let mut peers: HashMap<ConnId, (SocketAddr, rserpool_proto::io::TransportProto)> =
            HashMap::new();
        loop {
            tokio::select! {
                Some(c) = cmds.recv() => {
                    match c {
                        Cmd::Send { session, ppid, data } => { let _ = self.core.send(session, ppid, data); }
                        Cmd::Cookie { session, cookie } => self.core.send_cookie(session, cookie),
                        Cmd::Card { session, pool, pes } => self.core.send_business_card(session, pool, pes),
                        Cmd::Ack { session, tsn } => self.core.ack(session, tsn),
                        Cmd::SetCard(pool, pes) => {
                            let card = Some((pool, pes));
                            if let Ok(mut c) = self.card.lock() {
                                c.clone_from(&card);
                            }
                            self.core.update_business_card(card);
                        }
                        Cmd::Close(session) => {
                            self.core.close(session);
                            // Never opened in the core (or already gone): close the wire.
                            if let Some(s) = self.sessions.remove(&session) {
                                s.closed.store(true, Ordering::Relaxed);
                                s.tx.close();
                            }
                        }
                    }
                }
                Some((wire, peer)) = new_rx.recv() => {
                    let conn = ConnId(self.next_conn);
                    self.next_conn += 1;
                    let transport = wire.transport();
                    let queued = Arc::new(Queued::default());
                    let credits = Arc::new(Semaphore::new(self.read_ahead));
                    let tx = channel::start(conn, wire, in_tx.clone(), queued.clone(), Some(credits.clone()));
                    let (app_tx, app_rx) = mpsc::unbounded_channel();
                    let closed = Arc::new(AtomicBool::new(false));
                    self.sessions.insert(conn, Slot { tx, to_app: Some(app_tx), closed: closed.clone() });
                    self.pending.insert(conn, PeSession {
                        id: conn, peer, rx: app_rx, cmd: self.cmd_tx.clone(), queued, credits, closed,
                    });
                    peers.insert(conn, (peer, transport));
                    let meta = RecvMeta { protocol: rserpool_wire::Protocol::Asap, transport, peer, peer_addrs: vec![peer.ip()], identity: None };
                    self.core.handle_transport(clock::now(), TransportEvent::Accepted { conn, meta });
                }
                Some(m) = in_rx.recv() => {
                    let now = clock::now();
                    match m {
                        Inbound::Message { conn, protocol, bytes } => {
                            let Some((peer, transport)) = peers.get(&conn) else { continue };
                            let meta = RecvMeta { protocol, transport: *transport, peer: *peer, peer_addrs: vec![peer.ip()], identity: None };
                            self.core.handle_message(now, conn, &meta, &bytes);
                        }
                        Inbound::Closed { conn, why } => {
                            tracing::debug!(%conn, "session connection ended: {why}");
                            peers.remove(&conn);
                            self.core.handle_transport(now, TransportEvent::Closed { conn });
                            if let Some(s) = self.sessions.remove(&conn) {
                                s.closed.store(true, Ordering::Relaxed);
                            }
                            self.pending.remove(&conn);
                        }
                    }
                }
                else => return,
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            if let Dest::Conn(conn) = t.dest {
                if let Some(s) = self.sessions.get(&conn) {
                    let _ = s.tx.send(t.protocol, t.bytes);
                }
            }
        }
        while let Some(c) = self.core.poll_command() {
            match c {
                TransportCommand::Close(conn) => {
                    if let Some(s) = self.sessions.remove(&conn) {
                        s.closed.store(true, Ordering::Relaxed);
                        s.tx.close();
                    }
                }
                TransportCommand::Abort(conn) => {
                    if let Some(s) = self.sessions.remove(&conn) {
                        s.closed.store(true, Ordering::Relaxed);
                        s.tx.abort();
                    }
                }
                TransportCommand::Connect { .. } => {}
            }
        }
        while let Some(ev) = self.core.poll_event() {
            let (session, msg) = match ev {
                ServerEvent::Accepted { session, .. } => {
                    if let Some(s) = self.pending.remove(&session) {
                        if let Err(e) = self.accepted.try_send(s) {
                            tracing::warn!(
                                "session refused: {} sessions wait for accept",
                                match e {
                                    mpsc::error::TrySendError::Full(_) => "too many",
                                    mpsc::error::TrySendError::Closed(_) => "nobody",
                                }
                            );
                            // Dropping the PeSession closes it.
                        }
                    }
                    continue;
                }
                ServerEvent::Data {
                    session,
                    tsn,
                    ppid,
                    data,
                } => (session, PeMessage::Data { tsn, ppid, data }),
                ServerEvent::CookieEcho { session, cookie } => {
                    (session, PeMessage::CookieEcho(cookie))
                }
                ServerEvent::BusinessCard { session, pool, pes } => {
                    (session, PeMessage::BusinessCard { pool, pes })
                }
                ServerEvent::CookieRefused { session, reason } => {
                    let n = self.core.cookies_refused();
                    self.cookies_refused.store(n, Ordering::Relaxed);
                    tracing::warn!(
                        %session,
                        "cookie echo refused ({reason}): session closed ({n} refused so far)"
                    );
                    continue;
                }
                ServerEvent::Closed { session } => {
                    if let Some(s) = self.sessions.remove(&session) {
                        s.closed.store(true, Ordering::Relaxed);
                        s.tx.close();
                    }
                    continue;
                }
            };
            if let Some(s) = self.sessions.get(&session) {
                if let Some(tx) = &s.to_app {
                    let _ = tx.send(msg);
                }
            }
        }
    }
}
