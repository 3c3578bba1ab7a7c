//! The driver: one task owns one sans-IO core (quinn's `ConnectionDriver`, mini-redis's
//! server loop).
//!
//! The task `select!`s over
//! * the command channel (a [`DriverHandle`] sends core commands, or closures that run
//!   against the core, e.g. to read a snapshot),
//! * the inbound channel all connection, listener and UDP tasks feed (connections opened,
//!   datagrams, and notices that a connection has messages waiting),
//! * the ring of connections with messages waiting in their inboxes
//!   ([`crate::transport::inbox`]): one message from each in turn, so that a client
//!   pipelining a flood of requests is served no faster than one waiting for its answer,
//! * one `sleep_until(core.poll_timeout())`, re-armed only when the deadline changes,
//! * the shutdown signal.
//!
//! After every input it drains the core: `poll_transmit` until `None` (routing each
//! message to a connection's writer queue by [`ConnId`], opening a connection for
//! `Dest::Endpoint`, sending UDP for `Dest::Datagram`), `poll_command` until `None`
//! (closing connections the core wants gone: [`TransportCommand`]; the connection's
//! reader then reports `Closed` as for any close), transport events that routing
//! produced (e.g. `SendFailed`), then `poll_event`. The core is never shared and never
//! locked.
//!
//! Writes to a TCP connection are coalesced: what one wake-up sends to a connection goes
//! out in one write at the end of the wake-up, or as soon as that connection has no more
//! messages waiting (its answers do not wait for the other connections' turns) (each client's answer, the handle updates
//! of several registrations to a peer). ENRP messages wait up to [`ENRP_COALESCE`] for
//! more (a registrar's handle updates to its peers: one write carries several), unless
//! something else for that connection, a close, or [`STAGE_LIMIT`] bytes flush them.
//!
//! Shutdown: the listeners stop accepting, [`Lifecycle::begin_shutdown`] lets the core say
//! goodbye (a PE deregisters), the loop keeps running until
//! [`Lifecycle::shutdown_complete`] or the grace period ends, then the writer queues are
//! closed and flushed (bounded by the grace period too) and every connection is closed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rserpool_proto::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
};
use rserpool_wire::Protocol;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::clock;
use crate::transport::inbox::{Inbox, Item};
use crate::transport::udp::{self, DatagramSender, MulticastSpec};
use crate::transport::{
    self, accept_loop, ConnWriter, Inbound, MessageListener, Outgoing, Shared, TransportConfig,
};
use crate::wirelog::{Dir, WireLog};

/// How a core says goodbye. The defaults suit a core with nothing to say.
pub trait Lifecycle: Core {
    /// The driver starts running (a core that waits for its first input starts here).
    fn start(&mut self, _now: Instant) {}
    /// Shutdown began: queue goodbyes (e.g. de-registrations).
    fn begin_shutdown(&mut self, _now: Instant) {}
    /// Nothing left to wait for (e.g. every de-registration answered).
    fn shutdown_complete(&self) -> bool {
        true
    }
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub transport: TransportConfig,
    /// Notices buffered from all connection, listener and UDP tasks towards the core
    /// (connections accepted or opened, inboxes turning non-empty, datagrams).
    pub inbound_queue: usize,
    /// Messages each connection may have waiting for the core before its reader stops
    /// reading (its turn in the round robin comes first).
    pub conn_queue: usize,
    /// Upper bound for goodbyes and flushing at shutdown.
    pub grace: Duration,
    /// Record every message sent and received (see [`crate::wirelog`]). Defaults to the
    /// `RSERPOOL_WIRE_LOG` environment variable.
    pub wire_log: Option<WireLog>,
    /// Time the core spends on each ASAP Handle Resolution (decode, selection, answer)
    /// into this histogram (the registrar's `/metrics`); `None` = not measured.
    pub resolution_timer: Option<Arc<crate::histogram::Histogram>>,
}

/// Default of [`DriverConfig::inbound_queue`].
pub const DEFAULT_INBOUND_QUEUE: usize = 4096;
pub use crate::transport::inbox::DEFAULT_CONN_QUEUE;

/// Messages served from the connections' inboxes per wake-up (before timers, commands
/// and the runtime's other tasks get their turn again).
const SERVE_BUDGET: usize = 64;

/// A connection whose inbox ran dry is written from the driver itself (not by its writer
/// task) while at most this many other connections wait: one pipelining peer must not
/// cost a well-behaved one a hop through a worker thread it keeps busy, and with many
/// waiting the writer tasks spread the socket writes over the cores.
const DIRECT_RING: usize = 8;

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            inbound_queue: DEFAULT_INBOUND_QUEUE,
            conn_queue: DEFAULT_CONN_QUEUE,
            grace: Duration::from_secs(3),
            wire_log: WireLog::from_env(),
            resolution_timer: None,
        }
    }
}

type WithCore<C> = Box<dyn FnOnce(&mut C, Instant) + Send>;

enum Op<C: Core> {
    Command(C::Command),
    With(WithCore<C>),
    Shutdown,
}

/// Talks to a running driver. Cheap to clone. When every handle is dropped the driver
/// shuts down (so dropping a PE handle deregisters it).
pub struct DriverHandle<C: Core> {
    tx: mpsc::UnboundedSender<Op<C>>,
}

impl<C: Core> Clone for DriverHandle<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<C: Core> std::fmt::Debug for DriverHandle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverHandle")
    }
}

/// The driver has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the RSerPool driver task has stopped")]
pub struct DriverGone;

impl<C: Core + 'static> DriverHandle<C> {
    /// Hand a command to the core.
    pub fn command(&self, cmd: C::Command) -> Result<(), DriverGone> {
        self.tx.send(Op::Command(cmd)).map_err(|_| DriverGone)
    }

    /// Run `f` against the core on the driver task (outputs are drained afterwards).
    pub fn with_core(
        &self,
        f: impl FnOnce(&mut C, Instant) + Send + 'static,
    ) -> Result<(), DriverGone> {
        self.tx.send(Op::With(Box::new(f))).map_err(|_| DriverGone)
    }

    /// Run `f` against the core and wait for its result.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut C, Instant) -> T + Send + 'static,
    ) -> Result<T, DriverGone> {
        let (tx, rx) = oneshot::channel();
        self.with_core(move |c, now| {
            let _ = tx.send(f(c, now));
        })?;
        rx.await.map_err(|_| DriverGone)
    }

    /// Begin a graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Op::Shutdown);
    }

    /// Whether the driver task is still running.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Completes when the driver has stopped.
    pub async fn stopped(&self) {
        self.tx.closed().await;
    }
}

struct ConnEntry {
    writer: ConnWriter,
    meta: RecvMeta,
    /// Set for connections we opened for `Dest::Endpoint`.
    endpoint: Option<Endpoint>,
}

enum Outbound {
    Connecting(Vec<Outgoing>),
    Up(ConnId),
}

/// Owns a core and its transports. Build with [`Driver::new`], add listeners, then
/// [`Driver::run`] (or [`Driver::spawn`]).
pub struct Driver<C: Lifecycle> {
    core: C,
    config: DriverConfig,
    shared: Arc<Shared>,
    inbound_rx: mpsc::Receiver<Inbound>,
    ops_rx: mpsc::UnboundedReceiver<Op<C>>,
    /// Keeps `ops_rx` open until `run` starts, so a driver nobody holds a handle to yet
    /// does not shut down at once.
    ops_tx: Option<mpsc::UnboundedSender<Op<C>>>,
    on_event: Box<dyn FnMut(C::Event) + Send>,
    conns: HashMap<ConnId, ConnEntry>,
    outbound: HashMap<Endpoint, Outbound>,
    udp: DatagramSender,
    pending: VecDeque<TransportEvent>,
    /// Connections with messages waiting, served in turn.
    ring: VecDeque<Arc<Inbox>>,
    local: Vec<Endpoint>,
    /// More than one inbound item was waiting at this wake-up: answers go through the
    /// writer tasks (which run on other worker threads) instead of the direct path.
    busy: bool,
    /// Bytes for TCP connections not written yet (coalesced writes), in order.
    staged: HashMap<ConnId, Staged>,
    /// When the staged ENRP-only buffers are written at the latest.
    stage_deadline: Option<tokio::time::Instant>,
}

/// Messages for one TCP connection, back to back, to go out in one write.
struct Staged {
    bytes: Vec<u8>,
    protocol: Protocol,
    /// Not only ENRP: written at the end of this wake-up.
    urgent: bool,
}

/// The longest ENRP messages wait for more to the same connection (one write for several
/// handle updates to a peer).
pub const ENRP_COALESCE: Duration = Duration::from_micros(500);

/// Staged bytes per connection that are written at once.
const STAGE_LIMIT: usize = 64 * 1024;

impl<C> Driver<C>
where
    C: Lifecycle + Send + 'static,
    C::Command: Send + 'static,
    C::Event: Send + 'static,
{
    /// A driver for `core`; `on_event` receives every event the core emits, on the
    /// driver task (keep it short: forward to a channel, resolve a oneshot, log).
    pub fn new(
        core: C,
        config: DriverConfig,
        on_event: impl FnMut(C::Event) + Send + 'static,
    ) -> (Self, DriverHandle<C>) {
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue.max(1));
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let shared = Shared::new(
            config.transport.clone(),
            inbound_tx,
            config.wire_log.clone(),
            config.conn_queue,
        );
        let handle = DriverHandle { tx: ops_tx.clone() };
        let driver = Self {
            core,
            config,
            shared,
            inbound_rx,
            ops_rx,
            ops_tx: Some(ops_tx),
            on_event: Box::new(on_event),
            conns: HashMap::new(),
            outbound: HashMap::new(),
            udp: DatagramSender::default(),
            pending: VecDeque::new(),
            ring: VecDeque::new(),
            local: Vec::new(),
            busy: false,
            staged: HashMap::new(),
            stage_deadline: None,
        };
        (driver, handle)
    }

    /// Serve a bound listener; its messages are handed to the core as `protocol`.
    pub fn listen<L: MessageListener>(&mut self, listener: L, protocol: Protocol) {
        if let Ok(ep) = listener.local_endpoint() {
            self.local.push(ep);
        }
        tokio::spawn(accept_loop(listener, protocol, self.shared.clone()));
    }

    /// Join a multicast group and hand its datagrams to the core (failures are logged).
    pub fn multicast(&mut self, spec: MulticastSpec) {
        udp::spawn_receiver(&self.shared, spec);
    }

    /// Endpoints of the listeners added so far (with their real ports).
    pub fn local_endpoints(&self) -> &[Endpoint] {
        &self.local
    }

    /// The core (e.g. to read its state before running).
    pub fn core_mut(&mut self) -> &mut C {
        &mut self.core
    }

    /// Run on a new task; the join handle yields the core when the driver stops.
    pub fn spawn(self) -> tokio::task::JoinHandle<C> {
        tokio::spawn(self.run(std::future::pending()))
    }

    /// Run until `shutdown` completes, a handle asks for shutdown, or every handle is
    /// dropped; then shut down gracefully and give the core back.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> C {
        self.ops_tx = None;
        tokio::pin!(shutdown);
        let sleep = tokio::time::sleep_until(far_future());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut ops_open = true;
        self.core.start(clock::now());
        self.drain();
        self.flush_after_drain(true);
        loop {
            let deadline = self.core.poll_timeout();
            if deadline != armed {
                armed = deadline;
                let at = deadline.map(clock::to_tokio).unwrap_or_else(far_future);
                sleep.as_mut().reset(at);
            }
            let grace_end = stopping.unwrap_or_else(far_future);
            let stage_end = self.stage_deadline.unwrap_or_else(far_future);
            tokio::select! {
                biased;
                op = self.ops_rx.recv(), if ops_open => match op {
                    Some(Op::Command(cmd)) => self.core.command(clock::now(), cmd),
                    Some(Op::With(f)) => f(&mut self.core, clock::now()),
                    Some(Op::Shutdown) => self.begin_shutdown(&mut stopping),
                    None => {
                        ops_open = false;
                        self.begin_shutdown(&mut stopping);
                    }
                },
                Some(first) = self.inbound_rx.recv() => {
                    self.on_inbound(first);
                    // Take what is already queued before draining once.
                    for _ in 0..256 {
                        match self.inbound_rx.try_recv() {
                            Ok(more) => {
                                self.busy = true;
                                self.on_inbound(more);
                            }
                            Err(_) => break,
                        }
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.core.handle_timeout(clock::now());
                }
                () = tokio::time::sleep_until(stage_end), if self.stage_deadline.is_some() => {
                    self.stage_deadline = None;
                    self.flush_after_drain(false);
                }
                () = &mut shutdown, if stopping.is_none() => self.begin_shutdown(&mut stopping),
                () = tokio::time::sleep_until(grace_end), if stopping.is_some() => {
                    warn!("shutdown grace period over; closing anyway");
                    break;
                }
                // More waiting: let the runtime run the tasks this wake-up woke (writers,
                // readers) and poll the sockets before the next turns.
                () = tokio::task::yield_now(), if !self.ring.is_empty() => {}
            }
            self.serve_ring();
            self.drain();
            self.flush_after_drain(stopping.is_none());
            self.busy = false;
            if stopping.is_some() && self.core.shutdown_complete() {
                break;
            }
        }
        self.finish(stopping.unwrap_or_else(tokio::time::Instant::now))
            .await;
        self.core
    }

    fn begin_shutdown(&mut self, stopping: &mut Option<tokio::time::Instant>) {
        if stopping.is_some() {
            return;
        }
        info!("shutting down");
        *stopping = Some(tokio::time::Instant::now() + self.config.grace);
        self.shared.stop.send_replace(true);
        self.core.begin_shutdown(clock::now());
    }

    /// Close every writer queue, give the writers until the grace deadline to flush,
    /// then cancel whatever is left.
    async fn finish(&mut self, deadline: tokio::time::Instant) {
        self.shared.stop.send_replace(true);
        self.flush_staged(false);
        let conns: Vec<ConnEntry> = self.conns.drain().map(|(_, e)| e).collect();
        self.outbound.clear();
        let mut ctls = Vec::with_capacity(conns.len());
        let mut tasks = Vec::with_capacity(conns.len());
        for e in conns {
            ctls.push(e.writer.ctl);
            tasks.push(e.writer.task);
            // Dropping `e.writer.tx` lets the writer flush and close.
        }
        let flush = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout_at(deadline.max(tokio::time::Instant::now()), flush)
            .await
            .is_err()
        {
            debug!("writers did not finish flushing in time");
        }
        for c in ctls {
            c.cancel();
        }
    }

    /// Serve the connections with messages waiting: one message from each in turn, at
    /// most [`SERVE_BUDGET`] in all. A connection whose inbox ran dry gets what it is
    /// owed written at once.
    fn serve_ring(&mut self) {
        if self.ring.len() > 1 {
            self.busy = true;
        }
        for _ in 0..SERVE_BUDGET {
            // New notices first (a connection that just got a message joins the round
            // robin at once, not after the budget).
            while let Ok(more) = self.inbound_rx.try_recv() {
                self.busy = true;
                self.on_inbound(more);
            }
            let Some(inbox) = self.ring.pop_front() else {
                break;
            };
            let conn = inbox.conn;
            let (item, more) = inbox.take();
            match item {
                Some(Item::Message(protocol, bytes)) => self.on_message(conn, protocol, bytes),
                Some(Item::Closed) if self.remove_conn(conn) => {
                    self.core
                        .handle_transport(clock::now(), TransportEvent::Closed { conn });
                }
                Some(Item::Closed) | None => {}
            }
            if more {
                self.ring.push_back(inbox);
            } else {
                // Its answers go out now rather than after the other connections' turns;
                // with few others waiting, straight from here (no hop to its writer).
                self.drain();
                let busy = self.busy;
                self.busy = self.ring.len() > DIRECT_RING;
                self.flush_conn(conn);
                self.busy = busy;
            }
        }
    }

    fn on_message(&mut self, conn: ConnId, protocol: Protocol, bytes: Vec<u8>) {
        let now = clock::now();
        let Some(entry) = self.conns.get(&conn) else {
            return; // raced with a close we initiated
        };
        if let Some(log) = &self.shared.wire_log {
            log.record(Dir::Rx, protocol, &conn.to_string(), &bytes);
        }
        let timed = match &self.config.resolution_timer {
            Some(h)
                if protocol == Protocol::Asap
                    && bytes.first() == Some(&rserpool_wire::asap_type::HANDLE_RESOLUTION) =>
            {
                Some((h.clone(), Instant::now()))
            }
            _ => None,
        };
        if entry.meta.protocol == protocol {
            self.core.handle_message(now, conn, &entry.meta, &bytes);
        } else {
            // SCTP: the PPID decides per message.
            let meta = RecvMeta {
                protocol,
                ..entry.meta.clone()
            };
            self.core.handle_message(now, conn, &meta, &bytes);
        }
        if let Some((h, t)) = timed {
            h.record(t.elapsed());
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let now = clock::now();
        match inbound {
            Inbound::Ready(inbox) => self.ring.push_back(inbox),
            Inbound::Accepted { conn, meta, writer } => {
                let inbox = writer.inbox.clone();
                self.conns.insert(
                    conn,
                    ConnEntry {
                        writer,
                        meta: meta.clone(),
                        endpoint: None,
                    },
                );
                self.core
                    .handle_transport(now, TransportEvent::Accepted { conn, meta });
                if inbox.adopt() {
                    self.ring.push_back(inbox);
                }
            }
            Inbound::Connected {
                conn,
                endpoint,
                meta,
                writer,
            } => {
                let queued = match self.outbound.insert(endpoint.clone(), Outbound::Up(conn)) {
                    Some(Outbound::Connecting(q)) => q,
                    _ => Vec::new(),
                };
                debug!(%conn, %endpoint, "connected");
                let inbox = writer.inbox.clone();
                self.conns.insert(
                    conn,
                    ConnEntry {
                        writer,
                        meta,
                        endpoint: Some(endpoint.clone()),
                    },
                );
                for m in queued {
                    self.push(conn, m);
                }
                self.core
                    .handle_transport(now, TransportEvent::Connected { conn, endpoint });
                if inbox.adopt() {
                    self.ring.push_back(inbox);
                }
            }
            Inbound::ConnectFailed { endpoint, error } => {
                if is_sctp_unavailable(&error) {
                    warn_sctp_unavailable(&endpoint, &error);
                } else {
                    debug!(%endpoint, "connect failed: {error}");
                }
                self.outbound.remove(&endpoint);
                self.core
                    .handle_transport(now, TransportEvent::ConnectFailed { endpoint });
            }
            Inbound::Datagram { meta, bytes } => {
                if let Some(log) = &self.shared.wire_log {
                    log.record(
                        Dir::Rx,
                        meta.protocol,
                        &format!("udp:{}", meta.peer),
                        &bytes,
                    );
                }
                self.core.handle_datagram(now, &meta, &bytes);
            }
        }
    }

    /// Drain the core's outputs: transmits (and the transport events routing them
    /// produced), then events.
    fn drain(&mut self) {
        loop {
            while let Some(t) = self.core.poll_transmit() {
                self.route(t);
            }
            while let Some(c) = self.core.poll_command() {
                self.transport_command(c);
            }
            match self.pending.pop_front() {
                Some(ev) => self.core.handle_transport(clock::now(), ev),
                None => break,
            }
        }
        while let Some(ev) = self.core.poll_event() {
            (self.on_event)(ev);
        }
    }

    fn route(&mut self, t: Transmit) {
        let msg = Outgoing {
            protocol: t.protocol,
            bytes: t.bytes,
        };
        match t.dest {
            Dest::Conn(conn) => {
                if self.conns.contains_key(&conn) {
                    self.push(conn, msg);
                } else {
                    debug!(%conn, "send to a closed connection");
                    self.pending.push_back(TransportEvent::SendFailed { conn });
                }
            }
            Dest::Endpoint(endpoint) => match self.outbound.get_mut(&endpoint) {
                Some(Outbound::Up(conn)) => {
                    let conn = *conn;
                    self.push(conn, msg);
                }
                Some(Outbound::Connecting(queue)) => queue.push(msg),
                None => {
                    debug!(%endpoint, "connecting");
                    transport::spawn_connect(&self.shared, endpoint.clone(), msg.protocol);
                    self.outbound
                        .insert(endpoint, Outbound::Connecting(vec![msg]));
                }
            },
            Dest::Datagram(to) => {
                if let Some(log) = &self.shared.wire_log {
                    log.record(Dir::Tx, msg.protocol, &format!("udp:{to}"), &msg.bytes);
                }
                self.udp
                    .send(to, &msg.bytes, self.config.transport.multicast_ttl);
            }
        }
    }

    /// Send a message on a live connection: straight to the socket when nothing is queued
    /// and the transport allows it, else through the writer queue. A full queue means the
    /// peer does not read: it is disconnected rather than allowed to stall the core.
    fn push(&mut self, conn: ConnId, mut msg: Outgoing) {
        let Some(entry) = self.conns.get(&conn) else {
            self.pending.push_back(TransportEvent::SendFailed { conn });
            return;
        };
        if let Some(log) = &self.shared.wire_log {
            log.record(Dir::Tx, msg.protocol, &conn.to_string(), &msg.bytes);
        }
        // Messages are padded to 4 bytes on streams (the encoder already does).
        let padded = msg.bytes.len().next_multiple_of(4);
        msg.bytes.resize(padded, 0);
        let w = &entry.writer;
        // A byte stream: staged, to go out with whatever else this wake-up sends there.
        // Only the driver adds to `queued`, so 0 means every earlier message of this
        // connection is written; while staged, nothing is queued.
        let stream = w.direct.as_ref().is_some_and(|d| d.is_stream());
        if stream && (self.staged.contains_key(&conn) || w.queued.load(Ordering::Acquire) == 0) {
            let urgent = msg.protocol != Protocol::Enrp;
            match self.staged.entry(conn) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let st = o.get_mut();
                    st.bytes.extend_from_slice(&msg.bytes);
                    st.urgent |= urgent || st.bytes.len() >= STAGE_LIMIT;
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Staged {
                        urgent: urgent || msg.bytes.len() >= STAGE_LIMIT,
                        protocol: msg.protocol,
                        bytes: msg.bytes,
                    });
                }
            }
            return;
        }
        self.write_now(conn, msg);
    }

    /// The end of a wake-up: write what is staged (the urgent buffers only, or all), and
    /// hand the transport events that writing produced to the core.
    fn flush_after_drain(&mut self, urgent_only: bool) {
        for _ in 0..16 {
            self.flush_staged(urgent_only);
            if self.pending.is_empty() {
                return;
            }
            self.drain();
        }
    }

    /// Write the staged bytes: the urgent ones (`urgent_only`) or all. ENRP-only ones left
    /// get a deadline.
    fn flush_staged(&mut self, urgent_only: bool) {
        if self.staged.is_empty() {
            return;
        }
        let conns: Vec<ConnId> = self
            .staged
            .iter()
            .filter(|(_, st)| !urgent_only || st.urgent)
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            self.flush_conn(c);
        }
        if self.staged.is_empty() {
            self.stage_deadline = None;
        } else if self.stage_deadline.is_none() {
            self.stage_deadline = Some(tokio::time::Instant::now() + ENRP_COALESCE);
        }
    }

    /// Write what is staged for `conn` (if anything).
    fn flush_conn(&mut self, conn: ConnId) {
        if let Some(st) = self.staged.remove(&conn) {
            self.write_now(
                conn,
                Outgoing {
                    protocol: st.protocol,
                    bytes: st.bytes,
                },
            );
        }
    }

    /// The socket write (or the writer queue) for one message or a staged run of them.
    fn write_now(&mut self, conn: ConnId, mut msg: Outgoing) {
        let Some(entry) = self.conns.get(&conn) else {
            self.pending.push_back(TransportEvent::SendFailed { conn });
            return;
        };
        let w = &entry.writer;
        // Under load (several inbound items per wake-up) the writer tasks do the socket
        // writes: on loopback a write costs the whole delivery to the peer, and the
        // writers spread that over the worker threads while the driver runs on one.
        if let Some(direct) = w.direct.as_ref().filter(|_| !self.busy) {
            // Only the driver adds to `queued`, so 0 here means every earlier message of
            // this connection is completely written: writing now keeps the order.
            if w.queued.load(Ordering::Acquire) == 0 {
                match direct.try_write(msg.protocol, &msg.bytes) {
                    Ok(n) if n == msg.bytes.len() => return,
                    Ok(n) => {
                        msg.bytes.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        debug!(%conn, "write failed: {e}");
                        w.ctl.cancel(); // the reader reports `Closed`
                        self.pending.push_back(TransportEvent::SendFailed { conn });
                        return;
                    }
                }
            }
        }
        w.queued.fetch_add(1, Ordering::AcqRel);
        match w.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(%conn, peer = %entry.meta.peer, "peer is not reading (send queue full); disconnecting");
                w.ctl.cancel();
                self.remove_conn(conn);
                self.pending.push_back(TransportEvent::SendFailed { conn });
                self.pending.push_back(TransportEvent::Closed { conn });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The writer failed; the reader's `Closed` follows.
                self.pending.push_back(TransportEvent::SendFailed { conn });
            }
        }
    }

    /// Carry out a core's [`TransportCommand`]. The connection stays known until its
    /// reader reports `Closed` (which the core then hears as usual).
    fn transport_command(&mut self, cmd: TransportCommand) {
        match cmd {
            TransportCommand::Connect { endpoint, protocol } => {
                if self.outbound.contains_key(&endpoint) {
                    return; // up or being opened: the core hears nothing new
                }
                debug!(%endpoint, "connecting at the core's request");
                transport::spawn_connect(&self.shared, endpoint.clone(), protocol);
                self.outbound
                    .insert(endpoint, Outbound::Connecting(Vec::new()));
            }
            TransportCommand::Abort(conn) => {
                self.staged.remove(&conn);
                if let Some(e) = self.conns.get(&conn) {
                    debug!(%conn, peer = %e.meta.peer, "closing connection at the core's request");
                    e.writer.ctl.cancel();
                }
            }
            TransportCommand::Close(conn) => {
                self.flush_conn(conn);
                let Some(e) = self.conns.get(&conn) else {
                    return;
                };
                debug!(%conn, peer = %e.meta.peer, "closing connection at the core's request (after its queue)");
                let w = &e.writer;
                if w.queued.load(Ordering::Acquire) == 0 {
                    w.ctl.cancel();
                    return;
                }
                // Let the writer send what is queued, for a bounded time.
                let (ctl, queued) = (w.ctl.clone(), w.queued.clone());
                tokio::spawn(async move {
                    let until = tokio::time::Instant::now() + CLOSE_FLUSH;
                    while queued.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < until
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    ctl.cancel();
                });
            }
        }
    }

    /// Forget a connection; false if it was already gone.
    fn remove_conn(&mut self, conn: ConnId) -> bool {
        self.staged.remove(&conn);
        let Some(entry) = self.conns.remove(&conn) else {
            return false;
        };
        if let Some(ep) = entry.endpoint {
            if matches!(self.outbound.get(&ep), Some(Outbound::Up(c)) if *c == conn) {
                self.outbound.remove(&ep);
            }
        }
        true
    }
}

#[cfg(target_os = "linux")]
fn is_sctp_unavailable(e: &std::io::Error) -> bool {
    crate::sctp::is_sctp_unavailable(e)
}
#[cfg(not(target_os = "linux"))]
fn is_sctp_unavailable(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
}

/// Said once per process: every further attempt fails the same way.
fn warn_sctp_unavailable(endpoint: &Endpoint, error: &std::io::Error) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        debug!(%endpoint, "connect failed: {error}");
    } else {
        warn!(%endpoint, "cannot use SCTP: {error}");
    }
}

/// How long [`TransportCommand::Close`] waits for a connection's queue to be written.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

fn far_future() -> tokio::time::Instant {
    // About 30 years: never reached, and far from overflow.
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365 * 30)
}
