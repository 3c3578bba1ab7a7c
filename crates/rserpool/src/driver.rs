//! The driver: one sans-IO core, its transports, and the tasks that serve it (after
//! quinn's `ConnectionDriver` and mini-redis's server loop, with the core behind one lock).
//!
//! The core sits in a mutex that is held only while the core works, never across an
//! `await` or a socket write. Two kinds of task take it:
//! * **connection readers** ([`crate::transport`]): a reader puts whole messages into its
//!   connection's bounded inbox ([`crate::transport::inbox`]); once nothing more is
//!   readable at once it *serves*: if nobody holds the core it takes it (`try_lock`, never
//!   waiting) and serves the ring of connections with messages waiting, one message from
//!   each in turn, so a client pipelining a flood of requests is served no faster than
//!   one waiting for its answer. If another task holds the core, that task serves the new
//!   messages before it lets go (a flag it checks after unlocking), so no message waits
//!   for a wake-up of another thread. A turn ends when a connection's inbox runs dry (its
//!   answers then leave at once, not after the other connections' turns), and after
//!   [`SERVE_BUDGET`] messages the driver task takes over the rest.
//! * **the driver task**, which `select!`s over the command channel (a [`DriverHandle`]
//!   sends core commands or closures run against the core), the inbound channel
//!   (connections accepted or opened, datagrams), one `sleep_until(core.poll_timeout())`,
//!   the ENRP coalescing deadline, wake-ups from serving tasks (a new deadline, the ring
//!   left over), and the shutdown signal.
//!
//! After every input the core is drained: `poll_transmit` until `None` (each message
//! appended to its connection's output, a connection opened for `Dest::Endpoint`, UDP sent
//! for `Dest::Datagram`), `poll_command` (closing connections the core wants gone:
//! [`TransportCommand`]; the connection's reader then reports `Closed` as for any close),
//! transport events routing produced (e.g. `SendFailed`), then `poll_event`.
//!
//! Writes leave the core first: messages are appended to the connection's output
//! ([`crate::transport::ConnOut`]) in the core's order while the core is held, and the
//! task that produced them writes them after letting go — straight to the socket, or
//! through the connection's writer task when the socket is full — so the socket writes
//! of several connections run on both cores at once. What one turn sends to a TCP
//! connection goes out in one write. ENRP messages wait up to [`ENRP_COALESCE`] for more
//! (a registrar's handle updates to its peers: one write carries several), unless
//! something else for that connection, a close, or [`STAGE_LIMIT`] bytes flush them.
//!
//! Shutdown: the listeners stop accepting, [`Lifecycle::begin_shutdown`] lets the core say
//! goodbye (a PE deregisters), the loop keeps running until
//! [`Lifecycle::shutdown_complete`] or the grace period ends, then the writer queues are
//! closed and flushed (bounded by the grace period too) and every connection is closed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rserpool_proto::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
};
use rserpool_wire::Protocol;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};

use crate::clock;
use crate::transport::inbox::{Inbox, Item};
use crate::transport::udp::{self, DatagramSender, MulticastSpec};
use crate::transport::{
    self, accept_loop, ConnOut, ConnWriter, Inbound, MessageListener, Outgoing, Serve, Shared,
    TransportConfig,
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
    /// Notices buffered from listener, connect and UDP tasks towards the driver task
    /// (connections accepted or opened, datagrams).
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

/// Messages one task serves from the connections' inboxes before the driver task takes
/// over (a reader serving other connections does not read its own socket meanwhile).
const SERVE_BUDGET: usize = 64;

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

/// What the driver task and the serving tasks share: the core (with everything it sends
/// through) behind one lock, and the ring of connections with messages waiting.
struct Engine<C: Lifecycle> {
    state: Mutex<State<C>>,
    /// Connections with messages waiting, served in turn (an inbox is in it at most once:
    /// see [`crate::transport::inbox`]).
    ring: Mutex<VecDeque<Arc<Inbox>>>,
    /// Set when a connection joined the ring; the task holding the core looks at it after
    /// letting go, so a task that found the core taken need not wait.
    work: AtomicBool,
    /// Wakes the driver task: the core's deadline or the ENRP deadline changed, or the
    /// ring has more than a serving task's budget.
    wake: Notify,
}

/// The core and the state that goes with it (only touched with the core's lock held).
struct State<C: Lifecycle> {
    core: C,
    shared: Arc<Shared>,
    resolution_timer: Option<Arc<crate::histogram::Histogram>>,
    on_event: Box<dyn FnMut(C::Event) + Send>,
    conns: HashMap<ConnId, ConnEntry>,
    outbound: HashMap<Endpoint, Outbound>,
    udp: DatagramSender,
    pending: VecDeque<TransportEvent>,
    /// Bytes for TCP connections not appended to their output yet (coalesced), in order.
    staged: HashMap<ConnId, Staged>,
    /// When the staged ENRP-only buffers are written at the latest.
    stage_deadline: Option<tokio::time::Instant>,
    /// The core's deadline as the driver task last armed it.
    armed: Option<Instant>,
    /// Connections with output to write once the core is let go.
    touched: Vec<(ConnId, Arc<ConnOut>)>,
    /// Connections to close once their output is written.
    closing: Vec<(ConnId, Arc<ConnOut>)>,
    /// Inboxes whose messages this turn served, once per message (settled at its end).
    served: Vec<Arc<Inbox>>,
}

/// Messages for one TCP connection, back to back, to go out in one write.
struct Staged {
    bytes: Vec<u8>,
    protocol: Protocol,
    /// Not only ENRP: written at the end of this turn.
    urgent: bool,
}

/// The socket writes (and closes) of one turn, carried out after the core is let go.
#[must_use]
struct Writes {
    touched: Vec<(ConnId, Arc<ConnOut>)>,
    closing: Vec<(ConnId, Arc<ConnOut>)>,
}

impl Writes {
    fn run(self) {
        for (conn, out) in &self.touched {
            out.flush(*conn);
        }
        for (conn, out) in self.closing {
            out.flush(conn);
            if out.queued.load(Ordering::Acquire) == 0 {
                out.ctl.cancel();
                continue;
            }
            // Let the writer send what is queued, for a bounded time.
            tokio::spawn(async move {
                let until = tokio::time::Instant::now() + CLOSE_FLUSH;
                while out.queued.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                out.ctl.cancel();
            });
        }
    }
}

/// The longest ENRP messages wait for more to the same connection (one write for several
/// handle updates to a peer).
pub const ENRP_COALESCE: Duration = Duration::from_micros(500);

/// Staged bytes per connection that are written at once.
const STAGE_LIMIT: usize = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<C: Lifecycle + Send + 'static> Serve for Engine<C>
where
    C::Event: Send,
{
    fn announce(&self, inbox: Arc<Inbox>) {
        lock(&self.ring).push_back(inbox);
        self.work.store(true, Ordering::SeqCst);
    }

    fn serve(&self) {
        let mut served = 0;
        loop {
            let mut st = match self.state.try_lock() {
                Ok(st) => st,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                // The holder looks at `work` after letting go.
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            self.work.store(false, Ordering::SeqCst);
            let (n, left) = st.serve_ring(&self.ring, SERVE_BUDGET - served);
            served += n;
            let writes = st.end_turn(&self.wake, true);
            drop(st);
            writes.run();
            if left {
                if served >= SERVE_BUDGET {
                    self.wake.notify_one();
                    return;
                }
                continue;
            }
            if !self.work.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

impl<C: Lifecycle> Engine<C> {
    fn lock(&self) -> MutexGuard<'_, State<C>> {
        lock(&self.state)
    }
}

/// Owns a core and its transports. Build with [`Driver::new`], add listeners, then
/// [`Driver::run`] (or [`Driver::spawn`]).
pub struct Driver<C: Lifecycle> {
    engine: Arc<Engine<C>>,
    config: DriverConfig,
    shared: Arc<Shared>,
    inbound_rx: mpsc::Receiver<Inbound>,
    ops_rx: mpsc::UnboundedReceiver<Op<C>>,
    /// Keeps `ops_rx` open until `run` starts, so a driver nobody holds a handle to yet
    /// does not shut down at once.
    ops_tx: Option<mpsc::UnboundedSender<Op<C>>>,
    local: Vec<Endpoint>,
}

impl<C> Driver<C>
where
    C: Lifecycle + Send + 'static,
    C::Command: Send + 'static,
    C::Event: Send + 'static,
{
    /// A driver for `core`; `on_event` receives every event the core emits, with the core
    /// held, on whichever task serves it (keep it short: forward to a channel, resolve a
    /// oneshot, log).
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
        let engine = Arc::new(Engine {
            state: Mutex::new(State {
                core,
                shared: shared.clone(),
                resolution_timer: config.resolution_timer.clone(),
                on_event: Box::new(on_event),
                conns: HashMap::new(),
                outbound: HashMap::new(),
                udp: DatagramSender::default(),
                pending: VecDeque::new(),
                staged: HashMap::new(),
                stage_deadline: None,
                armed: None,
                touched: Vec::new(),
                closing: Vec::new(),
                served: Vec::new(),
            }),
            ring: Mutex::new(VecDeque::new()),
            work: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let weak: std::sync::Weak<dyn Serve> = Arc::downgrade(&engine) as _;
        let _ = shared.server.set(weak);
        let driver = Self {
            engine,
            config,
            shared,
            inbound_rx,
            ops_rx,
            ops_tx: Some(ops_tx),
            local: Vec::new(),
        };
        (driver, handle)
    }

    /// Let the readers of accepted connections answer the handle resolutions `resolver`
    /// can answer without the core (the registrar's copies of small pools). Call before
    /// adding listeners.
    pub fn fast_resolutions(&mut self, resolver: rserpool_proto::registrar::FastResolver) {
        let _ = self.shared.fast.set(transport::FastHook {
            resolver,
            timer: self.config.resolution_timer.clone(),
        });
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

    /// Run `f` against the core (e.g. to read its state before running).
    pub fn with_core_now<T>(&mut self, f: impl FnOnce(&mut C) -> T) -> T {
        f(&mut self.engine.lock().core)
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
        let engine = self.engine.clone();
        {
            let mut st = engine.lock();
            st.core.start(clock::now());
            st.drain();
            let w = st.end_turn(&engine.wake, true);
            drop(st);
            w.run();
        }
        loop {
            let (deadline, stage_deadline, done) = {
                let st = engine.lock();
                (
                    st.armed,
                    st.stage_deadline,
                    stopping.is_some() && st.core.shutdown_complete(),
                )
            };
            if done {
                break;
            }
            if deadline != armed {
                armed = deadline;
                let at = deadline.map(clock::to_tokio).unwrap_or_else(far_future);
                sleep.as_mut().reset(at);
            }
            let stage = stage_deadline;
            let grace_end = stopping.unwrap_or_else(far_future);
            let stage_end = stage.unwrap_or_else(far_future);
            tokio::select! {
                biased;
                op = self.ops_rx.recv(), if ops_open => {
                    let mut st = engine.lock();
                    match op {
                        Some(Op::Command(cmd)) => st.core.command(clock::now(), cmd),
                        Some(Op::With(f)) => f(&mut st.core, clock::now()),
                        Some(Op::Shutdown) => st.begin_shutdown(&mut stopping, self.config.grace),
                        None => {
                            ops_open = false;
                            st.begin_shutdown(&mut stopping, self.config.grace);
                        }
                    }
                    st.drain();
                    let w = st.end_turn(&engine.wake, stopping.is_none());
                    drop(st);
                    w.run();
                }
                Some(first) = self.inbound_rx.recv() => {
                    let mut st = engine.lock();
                    st.on_inbound(first, &*engine);
                    // Take what is already queued before draining once.
                    for _ in 0..256 {
                        match self.inbound_rx.try_recv() {
                            Ok(more) => st.on_inbound(more, &*engine),
                            Err(_) => break,
                        }
                    }
                    st.drain();
                    let w = st.end_turn(&engine.wake, stopping.is_none());
                    drop(st);
                    w.run();
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let mut st = engine.lock();
                    st.armed = None;
                    st.core.handle_timeout(clock::now());
                    st.drain();
                    let w = st.end_turn(&engine.wake, stopping.is_none());
                    drop(st);
                    w.run();
                }
                () = tokio::time::sleep_until(stage_end), if stage.is_some() => {
                    let mut st = engine.lock();
                    st.stage_deadline = None;
                    let w = st.end_turn(&engine.wake, false);
                    drop(st);
                    w.run();
                }
                () = &mut shutdown, if stopping.is_none() => {
                    engine.lock().begin_shutdown(&mut stopping, self.config.grace);
                }
                () = tokio::time::sleep_until(grace_end), if stopping.is_some() => {
                    warn!("shutdown grace period over; closing anyway");
                    break;
                }
                () = engine.wake.notified() => {}
            }
            // Whatever the serving tasks left in the ring (over their budget, or joined
            // while the core was held here).
            if !lock(&engine.ring).is_empty() {
                engine.serve();
                if !lock(&engine.ring).is_empty() {
                    // More waiting: let the runtime run the tasks this turn woke before
                    // the next one.
                    tokio::task::yield_now().await;
                    engine.wake.notify_one();
                }
            }
        }
        drop(engine);
        self.finish(stopping.unwrap_or_else(tokio::time::Instant::now))
            .await
    }

    /// Close every writer queue, give the writers until the grace deadline to flush,
    /// then cancel whatever is left; give the core back.
    async fn finish(self, deadline: tokio::time::Instant) -> C {
        self.shared.stop.send_replace(true);
        let conns: Vec<ConnEntry> = {
            let mut st = self.engine.lock();
            st.stage_deadline = None;
            let w = st.end_turn(&self.engine.wake, false);
            st.outbound.clear();
            let conns = st.conns.drain().map(|(_, e)| e).collect();
            drop(st);
            w.run();
            conns
        };
        let mut ctls = Vec::with_capacity(conns.len());
        let mut tasks = Vec::with_capacity(conns.len());
        for e in conns {
            ctls.push(e.writer.out.ctl.clone());
            tasks.push(e.writer.task);
            // Dropping `e.writer.out` (its queue's sender) lets the writer flush and
            // close.
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
        // Connection readers upgrade their reference to the engine only while serving.
        let mut engine = self.engine;
        loop {
            match Arc::try_unwrap(engine) {
                Ok(e) => return e.state.into_inner().unwrap_or_else(|p| p.into_inner()).core,
                Err(e) => {
                    engine = e;
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

impl<C: Lifecycle> State<C> {
    fn begin_shutdown(&mut self, stopping: &mut Option<tokio::time::Instant>, grace: Duration) {
        if stopping.is_some() {
            return;
        }
        info!("shutting down");
        *stopping = Some(tokio::time::Instant::now() + grace);
        self.shared.stop.send_replace(true);
        self.core.begin_shutdown(clock::now());
        self.drain();
    }

    /// Serve the connections with messages waiting: one message from each in turn, at
    /// most `budget`, until a connection's inbox runs dry (its answers then leave at
    /// once). Returns the messages served and whether connections are still waiting.
    fn serve_ring(&mut self, ring: &Mutex<VecDeque<Arc<Inbox>>>, budget: usize) -> (usize, bool) {
        let mut served = 0;
        while served < budget {
            let Some(inbox) = lock(ring).pop_front() else {
                return (served, false);
            };
            let conn = inbox.conn;
            let (item, more) = inbox.take();
            match item {
                Some(Item::Message(protocol, bytes)) => {
                    served += 1;
                    self.on_message(conn, protocol, bytes);
                    self.served.push(inbox.clone());
                }
                Some(Item::Closed) if self.remove_conn(conn) => {
                    self.core
                        .handle_transport(clock::now(), TransportEvent::Closed { conn });
                }
                Some(Item::Closed) | None => {}
            }
            self.drain();
            if more {
                lock(ring).push_back(inbox);
            } else {
                break;
            }
        }
        (served, !lock(ring).is_empty())
    }

    fn on_message(&mut self, conn: ConnId, protocol: Protocol, bytes: Vec<u8>) {
        let now = clock::now();
        let Some(entry) = self.conns.get(&conn) else {
            return; // raced with a close we initiated
        };
        if let Some(log) = &self.shared.wire_log {
            log.record(Dir::Rx, protocol, &conn.to_string(), &bytes);
        }
        let timed = match &self.resolution_timer {
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

    fn on_inbound(&mut self, inbound: Inbound, server: &dyn Serve) {
        let now = clock::now();
        match inbound {
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
                    server.announce(inbox);
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
                    server.announce(inbox);
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

    /// The end of a turn: staged bytes (the urgent ones, or all) move to their
    /// connections' outputs, the driver task hears of a new deadline, and the writes
    /// are handed back to be done after the core is let go.
    fn end_turn(&mut self, wake: &Notify, urgent_only: bool) -> Writes {
        if !self.staged.is_empty() {
            let conns: Vec<ConnId> = self
                .staged
                .iter()
                .filter(|(_, st)| !urgent_only || st.urgent)
                .map(|(c, _)| *c)
                .collect();
            for c in conns {
                self.unstage(c);
            }
        }
        // The answers of the messages served are in their connections' outputs now.
        for inbox in self.served.drain(..) {
            inbox.settled();
        }
        let mut tell = false;
        if self.staged.is_empty() {
            self.stage_deadline = None;
        } else if self.stage_deadline.is_none() {
            self.stage_deadline = Some(tokio::time::Instant::now() + ENRP_COALESCE);
            tell = true;
        }
        let deadline = self.core.poll_timeout();
        if deadline != self.armed {
            self.armed = deadline;
            tell = true;
        }
        if tell {
            wake.notify_one();
        }
        Writes {
            touched: std::mem::take(&mut self.touched),
            closing: std::mem::take(&mut self.closing),
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
                    .send(to, &msg.bytes, self.shared.config.multicast_ttl);
            }
        }
    }

    /// Send a message on a live connection: staged on a byte stream (to go out with
    /// whatever else this turn sends there), else appended to its output.
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
        if !entry.writer.out.is_stream() {
            let out = entry.writer.out.clone();
            if out.append(msg) {
                self.touched.push((conn, out));
            }
            return;
        }
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
    }

    /// Move what is staged for `conn` (if anything) to its output.
    fn unstage(&mut self, conn: ConnId) {
        let Some(st) = self.staged.remove(&conn) else {
            return;
        };
        let Some(entry) = self.conns.get(&conn) else {
            return;
        };
        let out = entry.writer.out.clone();
        if out.append(Outgoing {
            protocol: st.protocol,
            bytes: st.bytes,
        }) {
            self.touched.push((conn, out));
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
                    e.writer.out.ctl.cancel();
                }
            }
            TransportCommand::Close(conn) => {
                self.unstage(conn);
                let Some(e) = self.conns.get(&conn) else {
                    return;
                };
                debug!(%conn, peer = %e.meta.peer, "closing connection at the core's request (after its queue)");
                // Closed once what is queued for it is written (after this turn).
                self.closing.push((conn, e.writer.out.clone()));
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
