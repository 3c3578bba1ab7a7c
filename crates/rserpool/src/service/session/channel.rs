//! One session connection: TCP with the session framing (INIT, DATA with a PPID per
//! message, ACK, HEARTBEAT, HEARTBEAT ACK chunks), the same framing inside TLS
//! ([`SessionTls`]), or SCTP (one message per PPID: ASAP control on 11, application data
//! on its own PPID, the session layer's private PPIDs).
//! A reader task feeds the owner's inbound channel; a writer task batches what the owner
//! queued into few writes. Over plain TCP the owner writes a message to the socket itself
//! (non-blocking, header and body in one vectored write, no copy) while nothing waits for
//! the writer; what the socket does not take goes to the writer, and everything after it
//! too until the writer has caught up (order kept).
//!
//! TLS (issue 14 item 1, threat 2.9): a PU told to use TLS for a pool connects with
//! [`crate::transport::tls::connect_session`]: the PE's certificate chains to the trust
//! anchors and, with expected PE identities, names one of them (DNS subjectAltName or
//! subject CN) — on the first connect and on every failover. A PE whose certificate names
//! something else is refused like a PE that cannot be reached (the session fails over;
//! no ENDPOINT_UNREACHABLE is sent for it). The identity verified travels with the
//! `Connected` and `FailoverCompleted` events.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rserpool_proto::io::{ConnId, Endpoint, TransportProto};
use rserpool_wire::framing::{SessionDeframer, SessionFrame, SESSION_INIT_FLAGS};
use rserpool_wire::Protocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::transport::tls::TlsSettings;

use crate::sctp::{AssocEvent, RecvItem, SctpStream};
use crate::transport::sctp::PPID_ASAP;
use crate::wirelog::{Dir, WireLog};

/// Bytes queued for writing, shared with whoever waits for room ([`Queued::wait_below`]).
#[derive(Debug, Default)]
pub(crate) struct Queued {
    bytes: AtomicUsize,
    notify: Notify,
}

impl Queued {
    pub(crate) fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn sub(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
    pub(crate) fn get(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Wait until fewer than `limit` bytes are queued.
    pub(crate) async fn wait_below(&self, limit: usize) {
        loop {
            let n = self.notify.notified();
            if self.get() < limit {
                return;
            }
            n.await;
        }
    }
}

/// TLS on a PU's session channel: the trust anchors (and an optional client certificate)
/// of `settings`, and the identities a PE of the pool must prove (empty: the name
/// [`crate::transport::tls::TlsFiles::server_name`] or the PE's address, as for
/// registrars).
#[derive(Clone, Debug)]
pub struct SessionTls {
    pub settings: Arc<TlsSettings>,
    /// Expected PE identities (certificate DNS subjectAltName or subject CN).
    pub pe_identities: Vec<String>,
}

/// A connection, before its tasks start.
#[derive(Debug)]
pub(crate) enum Wire {
    Tcp(TcpStream),
    Sctp(SctpStream),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Wire {
    /// Connect to a PE; with `tls` over TLS (TCP endpoints only), returning the identity
    /// verified; with `mptcp` to a TCP endpoint over MPTCP (plain TCP where the PE does
    /// not speak it).
    pub(crate) async fn connect(
        ep: &Endpoint,
        tls: Option<&SessionTls>,
        mptcp: bool,
    ) -> io::Result<(Wire, Option<String>)> {
        match ep.transport {
            TransportProto::Sctp => {
                if tls.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "TLS on the session channel needs a TCP user transport (this PE offers SCTP)",
                    ));
                }
                let s = SctpStream::connect(&ep.addrs).await?;
                let _ = s.set_nodelay(true);
                Ok((Wire::Sctp(s), None))
            }
            _ => {
                let addr = ep
                    .primary()
                    .ok_or_else(|| io::Error::other("endpoint without address"))?;
                // ASAP has no MPTCP user transport: a PE listening on MPTCP registers as
                // TCP, and the PU asks for MPTCP itself.
                let mptcp = mptcp || ep.transport == TransportProto::Mptcp;
                if let Some(t) = tls {
                    let (s, who) = crate::transport::tls::connect_session(
                        addr,
                        &t.settings,
                        &t.pe_identities,
                        mptcp,
                    )
                    .await?;
                    return Ok((Wire::TlsClient(Box::new(s)), Some(who)));
                }
                let s = crate::transport::tcp::connect_plain(addr, mptcp).await?;
                Ok((Wire::Tcp(s), None))
            }
        }
    }

    pub(crate) fn transport(&self) -> TransportProto {
        match self {
            Wire::Tcp(_) => TransportProto::Tcp,
            Wire::Sctp(_) => TransportProto::Sctp,
            Wire::TlsClient(_) | Wire::TlsServer(_) => TransportProto::Tls,
        }
    }
}

/// What a connection's reader reports to its owner.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message {
        conn: ConnId,
        protocol: Protocol,
        bytes: Vec<u8>,
    },
    /// The connection ended (EOF, reset, lost association, a framing error).
    Closed { conn: ConnId, why: String },
}

/// What the owner queues for a connection's writer.
#[derive(Debug)]
enum Out {
    Msg(u32, Vec<u8>),
    /// Already framed bytes (the rest of a message the owner began writing itself).
    Raw(Vec<u8>),
    /// Write what is queued, then close.
    Close,
    /// Close at once (TCP: RST).
    Abort,
}

/// The owner's side of a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnTx {
    tx: mpsc::UnboundedSender<Out>,
    queued: Arc<Queued>,
    conn: ConnId,
    /// Plain TCP: the socket, for the owner's own writes.
    direct: Option<Arc<tokio::net::tcp::OwnedWriteHalf>>,
    /// Bytes of this connection handed to its writer and not yet written.
    pending: Arc<AtomicUsize>,
}

impl ConnTx {
    /// Send one message (`Protocol::Asap` travels with PPID 11): written at once when the
    /// socket takes it and nothing waits for the writer, else queued for the writer.
    /// Fails when the writer is gone.
    pub(crate) fn send(&self, protocol: Protocol, bytes: Vec<u8>) -> Result<(), ()> {
        log(Dir::Tx, self.conn, protocol, &bytes);
        let ppid = match protocol {
            Protocol::Asap => PPID_ASAP,
            p => p.ppid(),
        };
        let out = match self.try_direct(ppid, bytes) {
            Direct::Written => return Ok(()),
            Direct::Rest(rest) => Out::Raw(rest),
            Direct::No(bytes) => Out::Msg(ppid, bytes),
        };
        let n = match &out {
            Out::Raw(r) => r.len(),
            Out::Msg(_, b) => b.len() + 12,
            _ => 0,
        };
        self.pending.fetch_add(n, Ordering::Relaxed);
        self.queued.add(n);
        self.tx.send(out).map_err(|_| ())
    }

    /// The owner's own write of a DATA chunk (plain TCP, nothing pending for the writer).
    fn try_direct(&self, ppid: u32, bytes: Vec<u8>) -> Direct {
        let Some(w) = &self.direct else {
            return Direct::No(bytes);
        };
        if self.pending.load(Ordering::Relaxed) != 0
            || is_session_ppid(ppid)
            || bytes.len() > SessionFrame::MAX_DATA
        {
            return Direct::No(bytes);
        }
        let len = 8 + bytes.len();
        let mut head = [0u8; 8];
        head[0] = rserpool_wire::framing::chunk_type::DATA;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        head[4..8].copy_from_slice(&ppid.to_be_bytes());
        let pad = [0u8; 3];
        let pad = &pad[..(4 - len % 4) % 4];
        let total = len + pad.len();
        let parts = [
            std::io::IoSlice::new(&head),
            std::io::IoSlice::new(&bytes),
            std::io::IoSlice::new(pad),
        ];
        let done = match w.try_write_vectored(&parts) {
            Ok(n) => n,
            // Would block, or failed: the writer finds out.
            Err(_) => return Direct::No(bytes),
        };
        if done == total {
            return Direct::Written;
        }
        let mut rest = Vec::with_capacity(total - done);
        let mut skip = done;
        for part in [&head[..], &bytes[..], pad] {
            let k = skip.min(part.len());
            rest.extend_from_slice(&part[k..]);
            skip -= k;
        }
        Direct::Rest(rest)
    }
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Out::Close);
    }
    pub(crate) fn abort(&self) {
        let _ = self.tx.send(Out::Abort);
    }
}

enum Direct {
    Written,
    /// Partly written: the rest, framed.
    Rest(Vec<u8>),
    /// Not written.
    No(Vec<u8>),
}

/// A TCP write half shared between the owner (its own non-blocking writes) and the
/// writer task (this: waits for room, then writes).
struct SharedTcp(Arc<tokio::net::tcp::OwnedWriteHalf>);

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let s: &TcpStream = (*self.0).as_ref();
        loop {
            std::task::ready!(s.poll_write_ready(cx))?;
            match s.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return std::task::Poll::Ready(r),
            }
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let s: &TcpStream = (*self.0).as_ref();
        std::task::Poll::Ready(socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write))
    }
}

/// Largest batch one write carries.
const WRITE_BATCH: usize = 256 * 1024;

/// Start the reader and writer tasks of `wire` as connection `conn`. `queued` counts the
/// bytes waiting for the writer; `credits` (if any) bounds the application messages read
/// ahead of the application (one permit per message, given back as it takes them).
pub(crate) fn start(
    conn: ConnId,
    wire: Wire,
    inbound: mpsc::Sender<Inbound>,
    queued: Arc<Queued>,
    credits: Option<Arc<Semaphore>>,
) -> ConnTx {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let mut direct = None;
    match wire {
        Wire::Tcp(s) => {
            let (r, w) = s.into_split();
            let w = Arc::new(w);
            direct = Some(w.clone());
            // The INIT chunk goes first, through the writer.
            pending.fetch_add(INIT_LEN, Ordering::Relaxed);
            queued.add(INIT_LEN);
            tokio::spawn(tcp_reader(conn, r, inbound, credits));
            let p = pending.clone();
            tokio::spawn(tcp_writer(SharedTcp(w), rx, queued.clone(), p, |w| {
                let s: &TcpStream = (*w.0).as_ref();
                let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
            }));
        }
        // TLS: an abort ends the TCP connection without close_notify (no RST).
        Wire::TlsClient(s) => {
            let (r, w) = tokio::io::split(*s);
            pending.fetch_add(INIT_LEN, Ordering::Relaxed);
            queued.add(INIT_LEN);
            tokio::spawn(tcp_reader(conn, r, inbound, credits));
            let p = pending.clone();
            tokio::spawn(tcp_writer(w, rx, queued.clone(), p, |_| {}));
        }
        Wire::TlsServer(s) => {
            let (r, w) = tokio::io::split(*s);
            pending.fetch_add(INIT_LEN, Ordering::Relaxed);
            queued.add(INIT_LEN);
            tokio::spawn(tcp_reader(conn, r, inbound, credits));
            let p = pending.clone();
            tokio::spawn(tcp_writer(w, rx, queued.clone(), p, |_| {}));
        }
        Wire::Sctp(s) => {
            let (r, w) = s.into_split();
            tokio::spawn(sctp_reader(conn, r, inbound, credits));
            tokio::spawn(sctp_writer(w, rx, queued.clone()));
        }
    }
    ConnTx {
        tx,
        queued,
        conn,
        direct,
        pending,
    }
}

/// The wire log's label of a session connection.
fn label(conn: ConnId) -> String {
    format!("session-{}", conn.0)
}

/// Application messages longer than this are not recorded in the wire log (a file
/// transfer would fill the disk; the message types show in shorter ones).
const LOG_DATA_MAX: usize = 4096;

/// With a wire log, application data is recorded too when this variable is set (to
/// anything but empty or `0`): the log's other readers expect ASAP and ENRP only.
pub const LOG_DATA_ENV: &str = "RSERPOOL_WIRE_LOG_DATA";

fn log_data() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(LOG_DATA_ENV).is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Record a message in the wire log, if there is one.
fn log(dir: Dir, conn: ConnId, protocol: Protocol, bytes: &[u8]) {
    if matches!(protocol, Protocol::Data(_)) && (bytes.len() > LOG_DATA_MAX || !log_data()) {
        return;
    }
    if let Some(log) = WireLog::from_env() {
        log.record(dir, protocol, &label(conn), bytes);
    }
}

fn log_rx(conn: ConnId, protocol: Protocol, bytes: &[u8]) {
    log(Dir::Rx, conn, protocol, bytes);
}

fn protocol_of(ppid: u32) -> Protocol {
    match ppid {
        PPID_ASAP | rserpool_wire::PPID_ASAP_LEGACY => Protocol::Asap,
        p => Protocol::Data(p),
    }
}

async fn take_credit(credits: &Option<Arc<Semaphore>>, protocol: Protocol) {
    if let (Some(c), Protocol::Data(p)) = (credits, protocol) {
        if !is_session_ppid(p) {
            if let Ok(permit) = c.acquire().await {
                permit.forget();
            }
        }
    }
}

pub(crate) fn is_session_ppid(p: u32) -> bool {
    use rserpool_proto::session::{
        PPID_SESSION_ACK, PPID_SESSION_HEARTBEAT, PPID_SESSION_HEARTBEAT_ACK,
    };
    matches!(
        p,
        PPID_SESSION_ACK | PPID_SESSION_HEARTBEAT | PPID_SESSION_HEARTBEAT_ACK
    )
}

async fn tcp_reader(
    conn: ConnId,
    mut r: impl AsyncRead + Unpin,
    inbound: mpsc::Sender<Inbound>,
    credits: Option<Arc<Semaphore>>,
) {
    let mut deframer = SessionDeframer::new();
    let mut buf = vec![0u8; 256 * 1024];
    let why = 'outer: loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break "closed by the peer".to_owned(),
            Ok(n) => n,
            Err(e) => break e.to_string(),
        };
        deframer.push(&buf[..n]);
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => {
                    let Some((ppid, bytes)) = frame.into_message() else {
                        continue;
                    };
                    let protocol = protocol_of(ppid);
                    log_rx(conn, protocol, &bytes);
                    take_credit(&credits, protocol).await;
                    let m = Inbound::Message {
                        conn,
                        protocol,
                        bytes,
                    };
                    if inbound.send(m).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer format!("bad session framing: {e}"),
            }
        }
    };
    let _ = inbound.send(Inbound::Closed { conn, why }).await;
}

/// Bytes of the INIT chunk.
const INIT_LEN: usize = 4;

async fn tcp_writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<Queued>,
    pending: Arc<AtomicUsize>,
    abort: impl FnOnce(&W),
) {
    let mut buf = Vec::with_capacity(WRITE_BATCH + 70_000);
    SessionFrame::Init {
        flags: SESSION_INIT_FLAGS,
    }
    .encode(&mut buf);
    debug_assert_eq!(buf.len(), INIT_LEN);
    let mut init = buf.len();
    let mut end = None;
    'run: loop {
        let mut counted = std::mem::take(&mut init);
        if buf.is_empty() {
            match rx.recv().await {
                Some(o) => {
                    if let Some(stop) = put(&mut buf, o, &mut counted) {
                        end = Some(stop);
                    }
                }
                None => break 'run,
            }
        }
        while end.is_none() && buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(o) => {
                    if let Some(stop) = put(&mut buf, o, &mut counted) {
                        end = Some(stop);
                    }
                }
                Err(_) => break,
            }
        }
        if matches!(end, Some(Out::Abort)) {
            break;
        }
        let mut r = w.write_all(&buf).await;
        if r.is_ok() {
            // TLS: the records out (TCP: nothing to do).
            r = w.flush().await;
        }
        queued.sub(counted);
        pending.fetch_sub(counted, Ordering::Relaxed);
        buf.clear();
        if r.is_err() || end.is_some() {
            break;
        }
    }
    match end {
        Some(Out::Abort) => abort(&w),
        _ => {
            let _ = w.shutdown().await;
        }
    }
    // Whatever is left will never be written (and the owner writes no more: a
    // connection whose writer ended is not written to directly).
    pending.store(usize::MAX / 2, Ordering::Relaxed);
    queued.sub(queued.get());
    rx.close();
}

/// Encode `o` into `buf`; returns `Some` for a close.
fn put(buf: &mut Vec<u8>, o: Out, counted: &mut usize) -> Option<Out> {
    match o {
        Out::Msg(ppid, bytes) => {
            *counted += bytes.len() + 12;
            SessionFrame::from_message(ppid, bytes).encode(buf);
            None
        }
        Out::Raw(bytes) => {
            *counted += bytes.len();
            buf.extend_from_slice(&bytes);
            None
        }
        stop => Some(stop),
    }
}

async fn sctp_reader(
    conn: ConnId,
    mut r: crate::sctp::SctpReadHalf,
    inbound: mpsc::Sender<Inbound>,
    credits: Option<Arc<Semaphore>>,
) {
    let why = loop {
        match r.recv().await {
            Ok(RecvItem::Message { ppid, data, .. }) => {
                let protocol = protocol_of(ppid);
                log_rx(conn, protocol, &data);
                take_credit(&credits, protocol).await;
                let m = Inbound::Message {
                    conn,
                    protocol,
                    bytes: data,
                };
                if inbound.send(m).await.is_err() {
                    return;
                }
            }
            Ok(RecvItem::Notification(AssocEvent::Lost { error })) => {
                break format!("SCTP association lost (cause {error})")
            }
            Ok(RecvItem::Notification(AssocEvent::Shutdown))
            | Ok(RecvItem::Notification(AssocEvent::ShutdownComplete))
            | Ok(RecvItem::Eof) => break "closed by the peer".to_owned(),
            Ok(RecvItem::Notification(_)) => {}
            Err(e) => break e.to_string(),
        }
    };
    let _ = inbound.send(Inbound::Closed { conn, why }).await;
}

async fn sctp_writer(
    w: crate::sctp::SctpWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<Queued>,
) {
    while let Some(o) = rx.recv().await {
        match o {
            Out::Msg(ppid, bytes) => {
                let r = w.send(ppid, 0, &bytes).await;
                queued.sub(bytes.len() + 12);
                if r.is_err() {
                    break;
                }
            }
            Out::Raw(_) | Out::Close | Out::Abort => break,
        }
    }
    let _ = w.shutdown();
    queued.sub(queued.get());
    rx.close();
}
