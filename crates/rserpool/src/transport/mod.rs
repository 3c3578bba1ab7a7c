//! Transports: how messages get on and off the network.
//!
//! A transport is three small traits — [`MessageListener`] (accept), [`MessageStream`]
//! (one connection or association, split into a reader and a writer half), and the halves
//! [`MessageRead`] / [`MessageWrite`] that move whole messages tagged with their
//! [`Protocol`]. TCP and MPTCP ([`tcp`]) frame messages back-to-back with the
//! [`Deframer`](rserpool_wire::framing::Deframer); kernel SCTP ([`sctp`], over
//! [`crate::sctp`]) keeps message boundaries and carries the protocol in the PPID. Everything above this module (connection tasks, the
//! connection limit, the driver) is written once against the traits.
//!
//! Each connection runs two tasks: a reader that puts whole messages into the
//! connection's own bounded inbox ([`inbox`]) and then serves the core itself when no
//! other task does (every waiting connection in turn, [`crate::driver`]), and a writer
//! that drains a bounded per-connection queue in batches — what the serving task could
//! not write straight to the socket ([`ConnOut`]). The reader is the one that reports `Closed` (through the inbox, after the
//! messages before it); the writer stops on a write error or when the connection is
//! cancelled ([`ConnCtl`]).

pub mod accept;
pub(crate) mod inbox;
pub mod limit;
#[cfg(target_os = "linux")]
pub mod sctp;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rserpool_proto::io::{ConnId, Endpoint, RecvMeta, TransportProto};
use rserpool_proto::registrar::{FastConn, FastResolver};
use rserpool_wire::Protocol;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::wirelog::WireLog;
use limit::{Admission, AdmitGuard};

/// One message queued for a connection's writer.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub protocol: Protocol,
    pub bytes: Vec<u8>,
}

/// Reading half: whole messages.
pub trait MessageRead: Send + 'static {
    /// The next whole message with its protocol; `Ok(None)` at an orderly end of stream.
    /// Must be cancel-safe (it is raced against the connection's cancellation).
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<(Protocol, Vec<u8>)>>> + Send;
}

/// Writing half: whole messages, in order.
pub trait MessageWrite: Send + 'static {
    /// Send a batch of messages in order.
    fn send(&mut self, batch: &[Outgoing]) -> impl Future<Output = io::Result<()>> + Send;
    /// Orderly close after the last message (TCP FIN, SCTP SHUTDOWN).
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// A non-blocking way to write without the writer task, if the transport has one
    /// (see [`DirectWrite`]).
    fn direct(&self) -> Option<Arc<dyn DirectWrite>> {
        None
    }
}

/// The fast path: when nothing is queued for a connection, the task that served the core
/// writes a message straight to the socket instead of waking the connection's writer
/// task; whatever the
/// socket does not take goes to the queue as usual. A byte stream may take part of a
/// message (the writer task sends the rest); SCTP takes a whole message or nothing.
pub trait DirectWrite: Send + Sync + std::fmt::Debug {
    /// Write as much of the `protocol` message `bytes` as the socket takes now
    /// (`WouldBlock` = nothing).
    fn try_write(&self, protocol: Protocol, bytes: &[u8]) -> io::Result<usize>;
    /// A byte stream (TCP): messages back to back may go out in one write (the driver
    /// coalesces what one wake-up sends to a connection). SCTP: one message per send.
    fn is_stream(&self) -> bool {
        false
    }
    /// A complete `try_write` left bytes inside the transport (TLS records the socket
    /// did not take) that only the writer task can push out; reading clears it.
    fn take_unflushed(&self) -> bool {
        false
    }
}

/// One connection or association.
pub trait MessageStream: Send + Sized + 'static {
    type Read: MessageRead;
    type Write: MessageWrite;
    /// What a core is told about the peer.
    fn meta(&self, protocol: Protocol) -> io::Result<RecvMeta>;
    fn into_split(self) -> (Self::Read, Self::Write);
}

/// A listening socket.
pub trait MessageListener: Send + 'static {
    type Stream: MessageStream;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// The bound endpoint (with the real port when 0 was asked for).
    fn local_endpoint(&self) -> io::Result<Endpoint>;
}

/// What connection tasks, listeners and UDP receivers hand to the driver.
#[derive(Debug)]
pub(crate) enum Inbound {
    Accepted {
        conn: ConnId,
        meta: RecvMeta,
        writer: ConnWriter,
    },
    Connected {
        conn: ConnId,
        endpoint: Endpoint,
        meta: RecvMeta,
        writer: ConnWriter,
    },
    ConnectFailed {
        endpoint: Endpoint,
        error: io::Error,
    },
    Datagram {
        meta: RecvMeta,
        bytes: Vec<u8>,
    },
}

/// Cancellation of one connection: stops both of its tasks without flushing.
#[derive(Debug)]
pub struct ConnCtl {
    tx: watch::Sender<bool>,
}

impl ConnCtl {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: watch::channel(false).0,
        })
    }
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    // An error means the ConnCtl is gone, which also ends the connection.
    let _ = rx.wait_for(|c| *c).await;
}

/// The driver's side of a connection: its output, the writer task and the inbox.
#[derive(Debug)]
pub(crate) struct ConnWriter {
    pub out: Arc<ConnOut>,
    pub task: tokio::task::JoinHandle<()>,
    /// The messages the reader read, waiting for the driver.
    pub inbox: Arc<inbox::Inbox>,
}

/// What goes out on one connection, written by whichever task served the messages that
/// produced it, after it let go of the core ([`crate::driver`]): messages are appended
/// in order while the core is held and written in that order outside it.
#[derive(Debug)]
pub(crate) struct ConnOut {
    pub tx: mpsc::Sender<Outgoing>,
    pub ctl: Arc<ConnCtl>,
    /// Messages in the writer task's queue and not yet completely written.
    pub queued: Arc<AtomicUsize>,
    pub direct: Option<Arc<dyn DirectWrite>>,
    /// Appended while the core is held; taken (all at once) by [`ConnOut::flush`].
    waiting: std::sync::Mutex<Vec<Outgoing>>,
    /// Held while writing: two flushes never interleave and take in order.
    order: std::sync::Mutex<()>,
    /// Listed for a flush already (cleared when a flush begins).
    marked: std::sync::atomic::AtomicBool,
}

impl ConnOut {
    /// Whether messages back to back may go out in one write (TCP, MPTCP).
    pub fn is_stream(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.is_stream())
    }

    /// Queue a message (the caller holds the core, so appends are in the core's order);
    /// true if the connection was not listed for a flush yet (the caller lists it).
    pub fn append(&self, msg: Outgoing) -> bool {
        lock(&self.waiting).push(msg);
        !self.marked.swap(true, Ordering::SeqCst)
    }

    /// Write everything appended so far, in order: straight to the socket while nothing
    /// waits in the writer task's queue, the rest through that queue. A full queue means
    /// the peer does not read: the connection is cancelled (its reader reports the
    /// close).
    pub fn flush(&self, conn: ConnId) {
        self.marked.store(false, Ordering::SeqCst);
        let _order = lock(&self.order);
        let batch = std::mem::take(&mut *lock(&self.waiting));
        for msg in batch {
            self.write(conn, msg);
        }
    }

    fn write(&self, conn: ConnId, mut msg: Outgoing) {
        if let Some(direct) = &self.direct {
            // Only a flush (one at a time) adds to `queued`, so 0 means every earlier
            // message is completely written: writing now keeps the order.
            if self.queued.load(Ordering::Acquire) == 0 {
                match direct.try_write(msg.protocol, &msg.bytes) {
                    Ok(n) if n == msg.bytes.len() => {
                        if !direct.take_unflushed() {
                            return;
                        }
                        // The writer task flushes what the transport holds.
                        msg.bytes.clear();
                    }
                    Ok(n) => {
                        msg.bytes.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        debug!(%conn, "write failed: {e}");
                        self.ctl.cancel(); // the reader reports `Closed`
                        return;
                    }
                }
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                warn!(%conn, "peer is not reading (send queue full); disconnecting");
                self.ctl.cancel();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The writer failed; the reader's `Closed` follows.
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The driver as the connection tasks see it: a reader that queued messages has them
/// served (by itself when nobody else is serving, see [`crate::driver`]).
pub(crate) trait Serve: Send + Sync {
    /// An inbox turned from idle to waiting: it joins the ring.
    fn announce(&self, inbox: Arc<inbox::Inbox>);
    /// Serve the waiting connections now unless another task already does.
    fn serve(&self);
}

/// Default of [`TransportConfig::max_connections`]: the registrar core's default limit
/// ([`rserpool_proto::conn_limits::DEFAULT_MAX_CONNECTIONS`]), the one place it is set.
pub const DEFAULT_MAX_CONNECTIONS: usize = rserpool_proto::conn_limits::DEFAULT_MAX_CONNECTIONS;
/// Default of [`TransportConfig::write_queue`].
pub const DEFAULT_WRITE_QUEUE: usize = 1024;
/// Default of [`TransportConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`TransportConfig::multicast_ttl`].
pub const DEFAULT_MULTICAST_TTL: u32 = 30;

/// Limits and sizes of the transport layer.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Accepted connections at once (over all listeners); beyond it the oldest connection
    /// that has not sent a single message yet is closed to make room, else the new one is.
    /// A hard safety net ([`limit`]): a core with its own limits (the registrar's
    /// [`rserpool_proto::conn_limits`]) sets this above them.
    pub max_connections: usize,
    /// Messages queued per connection before the peer counts as stuck and is dropped.
    pub write_queue: usize,
    /// Largest message accepted from a stream; longer ones close the connection.
    pub max_message_len: usize,
    /// Where the readers count what [`Self::max_message_len`] (and the 4-byte minimum) did.
    pub length_stats: Arc<tcp::LengthStats>,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Multicast TTL of datagrams we send.
    pub multicast_ttl: u32,
    /// Local addresses outbound SCTP associations are bound to (port chosen by the
    /// kernel); empty = every address of the host. A PE sets the addresses it registers
    /// (RFC 5352 §2.1). Only the addresses of the peer's families are used.
    pub sctp_bind: Vec<IpAddr>,
    /// Local port outbound TCP and MPTCP connections are made from (bound with
    /// `SO_REUSEADDR` + `SO_REUSEPORT`, address unspecified); `None` = an ephemeral port.
    /// A PE sets the port of its ASAP control listener ([`tcp::bind_shared`]) so that a
    /// registrar sees, as the connection's source, where it can reach the PE. Where the
    /// port cannot be used for a connection (that address pair is still taken), the
    /// connection falls back to an ephemeral port.
    pub tcp_source_port: Option<u16>,
    /// The same for outbound SCTP associations (bound to [`Self::sctp_bind`], or every
    /// address, with this port): a PE's SCTP ASAP control listener, a registrar's ENRP
    /// listener (RSPLIB only takes a peer whose association comes from the port its
    /// Server Information names).
    pub sctp_source_port: Option<u16>,
    /// TLS certificates and trust anchors for `tls://` listeners and connections; `None`
    /// = no TLS (a `tls://` connection then fails with a clear error).
    pub tls: Option<Arc<tls::TlsSettings>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            write_queue: DEFAULT_WRITE_QUEUE,
            max_message_len: rserpool_wire::framing::DEFAULT_MAX_MESSAGE_LEN,
            length_stats: Arc::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            multicast_ttl: DEFAULT_MULTICAST_TTL,
            sctp_bind: Vec::new(),
            tcp_source_port: None,
            sctp_source_port: None,
            tls: None,
        }
    }
}

/// State shared by the driver and the tasks it spawns.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: TransportConfig,
    pub inbound: mpsc::Sender<Inbound>,
    pub admission: Arc<Admission>,
    pub wire_log: Option<WireLog>,
    /// Capacity of each connection's inbox (messages).
    pub conn_queue: usize,
    next_conn: AtomicU64,
    /// Listener and receiver tasks stop when this turns true.
    pub stop: watch::Sender<bool>,
    /// The driver's serving side (set once by the driver).
    pub server: std::sync::OnceLock<std::sync::Weak<dyn Serve>>,
    /// Resolutions the readers of accepted connections answer themselves (the
    /// registrar's, [`FastHook`]); set once before the listeners start.
    pub fast: std::sync::OnceLock<FastHook>,
}

/// What a reader needs to answer handle resolutions without the core
/// ([`rserpool_proto::registrar::FastResolver`]).
#[derive(Clone, Debug)]
pub(crate) struct FastHook {
    pub resolver: FastResolver,
    /// The driver's resolution-time histogram (fast answers are measured too).
    pub timer: Option<Arc<crate::histogram::Histogram>>,
}

/// One accepted connection's reader on the fast path.
struct FastReader {
    hook: FastHook,
    meta: RecvMeta,
    out: Arc<ConnOut>,
    state: FastConn,
}

impl FastReader {
    /// Answer a message without the core when the core has nothing of this connection
    /// and the resolver can; true when answered (written, or queued for the writer).
    fn try_answer(
        &mut self,
        shared: &Shared,
        inbox: &inbox::Inbox,
        protocol: Protocol,
        bytes: &[u8],
    ) -> bool {
        if protocol != self.meta.protocol || !inbox.is_settled() {
            return false;
        }
        let conn = inbox.conn;
        let started = std::time::Instant::now();
        let Some(mut answer) = self.hook.resolver.try_answer(
            crate::clock::now(),
            conn,
            &self.meta,
            bytes,
            &mut self.state,
        ) else {
            return false;
        };
        if let Some(h) = &self.hook.timer {
            h.record(started.elapsed());
        }
        if let Some(log) = &shared.wire_log {
            let label = conn.to_string();
            log.record(crate::wirelog::Dir::Rx, protocol, &label, bytes);
            log.record(crate::wirelog::Dir::Tx, protocol, &label, &answer);
        }
        answer.resize(answer.len().next_multiple_of(4), 0);
        self.out.append(Outgoing {
            protocol,
            bytes: answer,
        });
        self.out.flush(conn);
        true
    }
}

impl Shared {
    pub fn new(
        config: TransportConfig,
        inbound: mpsc::Sender<Inbound>,
        wire_log: Option<WireLog>,
        conn_queue: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            admission: Admission::new(config.max_connections),
            config,
            inbound,
            wire_log,
            conn_queue,
            next_conn: AtomicU64::new(1),
            stop: watch::channel(false).0,
            server: std::sync::OnceLock::new(),
            fast: std::sync::OnceLock::new(),
        })
    }

    fn server(&self) -> Option<Arc<dyn Serve>> {
        self.server.get().and_then(std::sync::Weak::upgrade)
    }
    pub fn conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}

/// Start the two tasks of a connection; returns the driver's handle on it. An accepted
/// connection passes its `meta`: its reader may then answer some messages itself
/// ([`Shared::fast`]).
pub(crate) fn spawn_connection<S: MessageStream>(
    shared: &Arc<Shared>,
    conn: ConnId,
    stream: S,
    guard: Option<AdmitGuard>,
    ctl: Arc<ConnCtl>,
    meta: Option<&RecvMeta>,
) -> ConnWriter {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel(shared.config.write_queue.max(1));
    let direct = write.direct();
    let queued = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(write_loop(conn, write, rx, ctl.clone(), queued.clone()));
    let inbox = inbox::Inbox::new(conn, shared.conn_queue);
    let out = Arc::new(ConnOut {
        tx,
        ctl: ctl.clone(),
        queued,
        direct,
        waiting: Default::default(),
        order: Default::default(),
        marked: Default::default(),
    });
    let fast = match (shared.fast.get(), meta) {
        (Some(hook), Some(meta)) => Some(FastReader {
            hook: hook.clone(),
            meta: meta.clone(),
            out: out.clone(),
            state: FastConn::new(crate::random_seed()),
        }),
        _ => None,
    };
    tokio::spawn(read_loop(
        read,
        shared.clone(),
        inbox.clone(),
        guard,
        ctl.subscribe(),
        fast,
    ));
    ConnWriter { out, task, inbox }
}

/// A connection's reader: whole messages into the inbox; once nothing more is readable
/// at once (or the inbox is full), the waiting connections are served — by this task
/// when no other task is serving, so an answer usually leaves from the thread that read
/// the request, without a hop.
async fn read_loop<R: MessageRead>(
    mut read: R,
    shared: Arc<Shared>,
    inbox: Arc<inbox::Inbox>,
    mut guard: Option<AdmitGuard>,
    mut cancel: watch::Receiver<bool>,
    mut fast: Option<FastReader>,
) {
    use inbox::{Item, Pushed};
    let conn = inbox.conn;
    let serve = |shared: &Shared| {
        if let Some(s) = shared.server() {
            s.serve();
        }
    };
    // Queued messages nobody was asked to serve yet.
    let mut owed = false;
    loop {
        let r = if owed {
            tokio::select! {
                biased;
                r = read.recv() => r,
                () = std::future::ready(()) => {
                    owed = false;
                    serve(&shared);
                    continue;
                }
            }
        } else {
            tokio::select! {
                r = read.recv() => r,
                _ = cancelled(&mut cancel) => {
                    debug!(%conn, "connection cancelled");
                    break;
                }
            }
        };
        match r {
            Ok(Some((protocol, bytes))) => {
                if let Some(g) = guard.as_mut() {
                    g.spoke();
                }
                if let Some(f) = fast.as_mut() {
                    if f.try_answer(&shared, &inbox, protocol, &bytes) {
                        continue;
                    }
                }
                let mut item = Item::Message(protocol, bytes);
                let stop = loop {
                    match inbox.push(item, false) {
                        Pushed::Queued => break false,
                        Pushed::Announce => {
                            match shared.server() {
                                Some(s) => s.announce(inbox.clone()),
                                None => return,
                            }
                            break false;
                        }
                        // A full inbox: serve (this may be the task to do it), else wait
                        // until the serving task took from it (the peer's sending stalls).
                        Pushed::Full(back) => {
                            item = back;
                            serve(&shared);
                            tokio::select! {
                                () = inbox.room() => {}
                                _ = cancelled(&mut cancel) => {
                                    debug!(%conn, "connection cancelled");
                                    break true;
                                }
                            }
                        }
                    }
                };
                if stop {
                    break;
                }
                owed = true;
            }
            Ok(None) => {
                debug!(%conn, "closed by peer");
                break;
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData
                    || e.kind() == io::ErrorKind::UnexpectedEof
                {
                    warn!(%conn, "closing connection: {e}");
                } else {
                    debug!(%conn, "connection error: {e}");
                }
                break;
            }
        }
    }
    // Free the connection slot before the driver hears of the close.
    drop(guard);
    if let Pushed::Announce = inbox.push(Item::Closed, true) {
        if let Some(s) = shared.server() {
            s.announce(inbox.clone());
        }
    }
    serve(&shared);
}

async fn write_loop<W: MessageWrite>(
    conn: ConnId,
    mut write: W,
    mut rx: mpsc::Receiver<Outgoing>,
    ctl: Arc<ConnCtl>,
    queued: Arc<AtomicUsize>,
) {
    const BATCH: usize = 64;
    let mut cancel = ctl.subscribe();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = cancelled(&mut cancel) => return,
        };
        if n == 0 {
            break; // the driver dropped the queue: flush done, close.
        }
        let r = tokio::select! {
            r = write.send(&batch) => r,
            _ = cancelled(&mut cancel) => return,
        };
        if let Err(e) = r {
            debug!(%conn, "write failed: {e}");
            ctl.cancel();
            return;
        }
        queued.fetch_sub(n, Ordering::AcqRel);
        batch.clear();
    }
    let _ = write.close().await;
}

/// Accept connections until told to stop ([`accept::accept_until`]: errors back off,
/// 1 ms doubling to 1 s); each one is admitted against the connection limit or closed.
pub(crate) async fn accept_loop<L: MessageListener>(
    listener: L,
    protocol: Protocol,
    shared: Arc<Shared>,
) {
    let mut stop = shared.stop.subscribe();
    let local = listener
        .local_endpoint()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let mut refused: u64 = 0;
    let mut last_refusal_log = tokio::time::Instant::now() - Duration::from_secs(60);
    let mut listener = accept::Messages(listener);
    let label = local.clone();
    accept::accept_until(&mut listener, &label, cancelled(&mut stop), |stream| {
        let shared = shared.clone();
        let local = &local;
        let flow = (|| {
            let meta = match stream.meta(protocol) {
                Ok(m) => m,
                Err(e) => {
                    debug!(listener = %local, "accepted connection vanished: {e}");
                    return None;
                }
            };
            let conn = shared.conn_id();
            let ctl = ConnCtl::new();
            let Some(guard) = shared.admission.admit(conn, &ctl) else {
                refused += 1;
                let now = tokio::time::Instant::now();
                if now - last_refusal_log >= Duration::from_secs(1) {
                    warn!(
                        listener = %local,
                        limit = shared.config.max_connections,
                        refused,
                        "connection limit reached; refusing new connections"
                    );
                    last_refusal_log = now;
                }
                drop(stream);
                return None;
            };
            debug!(%conn, peer = %meta.peer, listener = %local, "accepted");
            let writer = spawn_connection(&shared, conn, stream, Some(guard), ctl, Some(&meta));
            Some(Inbound::Accepted { conn, meta, writer })
        })();
        async move {
            match flow {
                Some(accepted) => {
                    if shared.inbound.send(accepted).await.is_err() {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                }
                None => std::ops::ControlFlow::Continue(()),
            }
        }
    })
    .await;
}

/// Open a connection to `endpoint` and start its tasks; reports `Connected` or
/// `ConnectFailed` to the driver.
pub(crate) fn spawn_connect(shared: &Arc<Shared>, endpoint: Endpoint, protocol: Protocol) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let timeout = shared.config.connect_timeout;
        let result = match endpoint.transport {
            TransportProto::Tcp | TransportProto::Mptcp => {
                let mptcp = endpoint.transport == TransportProto::Mptcp;
                match tokio::time::timeout(
                    timeout,
                    tcp::connect(&endpoint.addrs, protocol, mptcp, &shared.config),
                )
                .await
                {
                    Ok(Ok(stream)) => start_outbound(&shared, stream, protocol),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
                }
            }
            TransportProto::Tls => match shared.config.tls.clone() {
                Some(tls) => match tokio::time::timeout(
                    timeout + tls::HANDSHAKE_TIMEOUT,
                    tls::connect(&endpoint.addrs, protocol, &shared.config, &tls),
                )
                .await
                {
                    Ok(Ok(stream)) => start_outbound(&shared, stream, protocol),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
                },
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a tls:// endpoint needs TLS settings (trust anchors: --tls-ca)",
                )),
            },
            #[cfg(target_os = "linux")]
            TransportProto::Sctp => match tokio::time::timeout(
                timeout,
                sctp::connect(&endpoint.addrs, protocol, &shared.config),
            )
            .await
            {
                Ok(Ok(stream)) => start_outbound(&shared, stream, protocol),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            },
            #[cfg(not(target_os = "linux"))]
            TransportProto::Sctp => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SCTP is only supported on Linux",
            )),
            TransportProto::Udp => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UDP is not connection-oriented; use a datagram destination",
            )),
        };
        let msg = match result {
            Ok((conn, meta, writer)) => Inbound::Connected {
                conn,
                endpoint,
                meta,
                writer,
            },
            Err(error) => Inbound::ConnectFailed { endpoint, error },
        };
        let _ = shared.inbound.send(msg).await;
    });
}

fn start_outbound<S: MessageStream>(
    shared: &Arc<Shared>,
    stream: S,
    protocol: Protocol,
) -> io::Result<(ConnId, RecvMeta, ConnWriter)> {
    let meta = stream.meta(protocol)?;
    let conn = shared.conn_id();
    let writer = spawn_connection(shared, conn, stream, None, ConnCtl::new(), None);
    Ok((conn, meta, writer))
}
