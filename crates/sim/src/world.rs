//! The world: nodes, network, clock, faults, invariants.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rserpool_proto::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
    TransportProto,
};
use rserpool_proto::{
    PeCommand, PeEvent, PoolElementConfig, PoolElementCore, PoolUserConfig, PoolUserCore,
    PuCommand, PuEvent, Registrar, RegistrarCommand, RegistrarConfig, RegistrarEvent, RequestId,
};
use rserpool_wire::{decode_asap, AsapMessage, PeId, PoolHandle, Protocol};

use crate::link::LinkConfig;
use crate::trace::Trace;

/// Index of a node in its world (never reused).
pub type NodeId = usize;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Registrar,
    PoolElement,
    PoolUser,
    /// A scripted peer: records what it receives, sends what the test tells it.
    Raw,
}

/// An event of one of the cores, with the core it came from.
#[derive(Debug, Clone)]
pub enum Ev {
    Reg(RegistrarEvent),
    Pe(PeEvent),
    Pu(PuEvent),
}

enum NodeCore {
    Reg(Box<Registrar>),
    Pe(Box<PoolElementCore>),
    Pu(Box<PoolUserCore>),
    Raw(Vec<(ConnId, Vec<u8>)>),
}

/// How to build (and rebuild after a crash) a node's core.
#[derive(Clone)]
enum Spec {
    Reg(RegistrarConfig, u64),
    Pe(PoolElementConfig, u64),
    Pu(PoolUserConfig, u64),
    Raw,
}

impl Spec {
    fn build(&self, salt: u64) -> NodeCore {
        match self {
            Spec::Reg(c, s) => NodeCore::Reg(Box::new(Registrar::new(c.clone(), s ^ salt))),
            Spec::Pe(c, s) => NodeCore::Pe(Box::new(PoolElementCore::new(c.clone(), s ^ salt))),
            Spec::Pu(c, s) => NodeCore::Pu(Box::new(PoolUserCore::new(c.clone(), s ^ salt))),
            Spec::Raw => NodeCore::Raw(Vec::new()),
        }
    }
}

struct Node {
    core: NodeCore,
    spec: Spec,
    addr: SocketAddr,
    listen: Option<Endpoint>,
    /// Crashed: refuses connections, its connections are closed, no timers.
    down: bool,
    /// Hung: connections stay up, but it neither receives nor sends anything.
    muted: bool,
    /// Incarnation: bumped by every restart; connections of an old one are dead.
    epoch: u32,
    events: Vec<(Instant, Ev)>,
}

struct ConnEnd {
    node: NodeId,
    epoch: u32,
    peer: ConnId,
    /// The other side as this end sees it.
    peer_meta: RecvMeta,
    open: bool,
}

#[derive(Debug)]
enum Delivery {
    Msg {
        to: NodeId,
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Datagram {
        to: NodeId,
        meta: RecvMeta,
        bytes: Vec<u8>,
    },
    Transport {
        to: NodeId,
        ev: TransportEvent,
    },
}

impl Delivery {
    /// A message or datagram (counted in [`NetStats`]), not a transport event.
    fn is_message(&self) -> bool {
        matches!(self, Delivery::Msg { .. } | Delivery::Datagram { .. })
    }

    fn to(&self) -> NodeId {
        match self {
            Delivery::Msg { to, .. }
            | Delivery::Datagram { to, .. }
            | Delivery::Transport { to, .. } => *to,
        }
    }
}

/// What the network did with the messages it was given (connection messages and
/// datagram copies; transport events are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network (one per receiver for datagrams).
    pub sent: u64,
    /// Extra copies made by the duplication model.
    pub duplicated: u64,
    /// Handed to a core (or a raw peer's log).
    pub delivered: u64,
    /// Dropped by the loss model.
    pub lost: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Dropped because the receiver was down, hung, restarted, or the connection aborted.
    pub dropped_dead: u64,
}

/// Trace entries shown with an invariant violation (when the lines are kept).
const TRACE_TAIL: usize = 200;

type Invariant = Box<dyn Fn(&World) -> Result<(), String>>;

/// A deterministic world on a virtual clock. See the crate docs.
pub struct World {
    seed: u64,
    start: Instant,
    now: Instant,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    conns: BTreeMap<ConnId, ConnEnd>,
    by_endpoint: HashMap<(NodeId, Endpoint), ConnId>,
    next_conn: u64,
    queue: BTreeMap<(Instant, u64), Delivery>,
    next_seq: u64,
    /// Messages and datagrams in `queue`.
    in_flight: u64,
    /// Latest scheduled arrival per receiving connection end (streams keep order).
    fifo: HashMap<ConnId, Instant>,
    default_link: LinkConfig,
    links: HashMap<(NodeId, NodeId), LinkConfig>,
    partitions: BTreeSet<(NodeId, NodeId)>,
    stats: NetStats,
    trace: Trace,
    invariants: Vec<(String, Invariant)>,
    check_handlespace: bool,
    dead_pe_bound: Option<Duration>,
    /// PE identifiers of PEs that are gone (crashed, hung, de-registered), since when.
    pe_gone: BTreeMap<PeId, Instant>,
    events_checked: u64,
}

fn meta_of(addr: SocketAddr) -> RecvMeta {
    RecvMeta {
        protocol: Protocol::Asap,
        transport: TransportProto::Tcp,
        peer: addr,
        peer_addrs: vec![addr.ip()],
    }
}

/// Drain one core after an input: transmits, then transport commands, then events.
fn drain<C: Core>(
    c: &mut C,
    wrap: fn(C::Event) -> Ev,
) -> (Vec<Transmit>, Vec<TransportCommand>, Vec<Ev>) {
    let tx = std::iter::from_fn(|| c.poll_transmit()).collect();
    let cmds = std::iter::from_fn(|| c.poll_command()).collect();
    let evs = std::iter::from_fn(|| c.poll_event().map(wrap)).collect();
    (tx, cmds, evs)
}

/// One input to a core.
enum Input<'a> {
    Timeout,
    Message(ConnId, &'a RecvMeta, &'a [u8]),
    Datagram(&'a RecvMeta, &'a [u8]),
    Transport(TransportEvent),
}

fn feed<C: Core>(c: &mut C, now: Instant, input: Input<'_>) {
    match input {
        Input::Timeout => c.handle_timeout(now),
        Input::Message(conn, meta, bytes) => c.handle_message(now, conn, meta, bytes),
        Input::Datagram(meta, bytes) => c.handle_datagram(now, meta, bytes),
        Input::Transport(ev) => c.handle_transport(now, ev),
    }
}

impl World {
    /// An empty world whose clock starts at `start`. `seed` drives the network's random
    /// choices and salts the cores' seeds (seed 0 leaves the cores' base seeds as they are).
    pub fn new(start: Instant, seed: u64) -> Self {
        Self {
            seed,
            start,
            now: start,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: Vec::new(),
            conns: BTreeMap::new(),
            by_endpoint: HashMap::new(),
            next_conn: 1,
            queue: BTreeMap::new(),
            next_seq: 0,
            in_flight: 0,
            fifo: HashMap::new(),
            default_link: LinkConfig::default(),
            links: HashMap::new(),
            partitions: BTreeSet::new(),
            stats: NetStats::default(),
            trace: Trace::default(),
            invariants: Vec::new(),
            check_handlespace: true,
            dead_pe_bound: None,
            pe_gone: BTreeMap::new(),
            events_checked: 0,
        }
    }

    // --- the world

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }
    pub fn start(&self) -> Instant {
        self.start
    }
    pub fn stats(&self) -> NetStats {
        self.stats
    }
    pub fn trace(&self) -> &Trace {
        &self.trace
    }
    pub fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }
    /// How many times the invariants were checked (once per event).
    pub fn events_checked(&self) -> u64 {
        self.events_checked
    }
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    pub fn kind(&self, id: NodeId) -> NodeKind {
        match self.nodes[id].core {
            NodeCore::Reg(_) => NodeKind::Registrar,
            NodeCore::Pe(_) => NodeKind::PoolElement,
            NodeCore::Pu(_) => NodeKind::PoolUser,
            NodeCore::Raw(_) => NodeKind::Raw,
        }
    }
    pub fn is_down(&self, id: NodeId) -> bool {
        self.nodes[id].down
    }
    pub fn is_hung(&self, id: NodeId) -> bool {
        self.nodes[id].muted
    }
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id].addr
    }
    /// Whether connection end `conn` is open (false once either side closed it or crashed).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|e| e.open)
    }
    /// The node that owns connection end `conn`.
    pub fn conn_owner(&self, conn: ConnId) -> Option<NodeId> {
        self.conns.get(&conn).map(|e| e.node)
    }
    /// The endpoint a node listens on (registrars and listening raw peers).
    pub fn listen_endpoint(&self, id: NodeId) -> Option<&Endpoint> {
        self.nodes[id].listen.as_ref()
    }

    // --- adding nodes

    fn add(&mut self, spec: Spec, addr: SocketAddr, listen: Option<Endpoint>) -> NodeId {
        let core = spec.build(self.salt(0));
        self.nodes.push(Node {
            core,
            spec,
            addr,
            listen,
            down: false,
            muted: false,
            epoch: 0,
            events: Vec::new(),
        });
        let id = self.nodes.len() - 1;
        self.trace.record(format_args!(
            "{:?} add {id} {:?}",
            self.elapsed(),
            self.kind(id)
        ));
        // Start the core (the shell calls handle_timeout once after construction).
        self.timeout(id);
        self.settle();
        id
    }

    fn salt(&self, epoch: u32) -> u64 {
        self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(epoch) << 48)
    }

    /// Registrar number `i`, listening on TCP 10.0.0.`i`:3863 (core seed 100 + `i`).
    pub fn add_registrar(&mut self, i: u8, cfg: RegistrarConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 0, i], 3863));
        self.add(
            Spec::Reg(cfg, 100 + u64::from(i)),
            addr,
            Some(Endpoint::tcp(addr)),
        )
    }

    /// Pool element number `i` at 10.0.1.`i` (core seed 200 + `i`).
    pub fn add_pe(&mut self, i: u8, cfg: PoolElementConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 1, i], 0));
        self.add(Spec::Pe(cfg, 200 + u64::from(i)), addr, None)
    }

    /// Pool user number `i` at 10.0.2.`i` (core seed 300 + `i`).
    pub fn add_pu(&mut self, i: u8, cfg: PoolUserConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 2, i], 0));
        self.add(Spec::Pu(cfg, 300 + u64::from(i)), addr, None)
    }

    /// A scripted peer at 10.0.3.`i`:3863, listening there when `listen`.
    pub fn add_raw(&mut self, i: u8, listen: bool) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 3, i], 3863));
        let listen = listen.then(|| Endpoint::tcp(addr));
        self.add(Spec::Raw, addr, listen)
    }

    // --- driving a node

    fn input(&mut self, id: NodeId, input: Input<'_>) {
        let now = self.now;
        let node = &mut self.nodes[id];
        if node.down {
            return;
        }
        match &mut node.core {
            NodeCore::Reg(c) => feed(c.as_mut(), now, input),
            NodeCore::Pe(c) => feed(c.as_mut(), now, input),
            NodeCore::Pu(c) => feed(c.as_mut(), now, input),
            NodeCore::Raw(_) => {}
        }
        self.collect(id);
    }

    fn timeout(&mut self, id: NodeId) {
        self.input(id, Input::Timeout);
    }

    /// Drain a node's transmits into the network, its commands into the transport, and its
    /// events into its log.
    fn collect(&mut self, id: NodeId) {
        let (tx, cmds, evs) = match &mut self.nodes[id].core {
            NodeCore::Reg(c) => drain(c.as_mut(), Ev::Reg),
            NodeCore::Pe(c) => drain(c.as_mut(), Ev::Pe),
            NodeCore::Pu(c) => drain(c.as_mut(), Ev::Pu),
            NodeCore::Raw(_) => return,
        };
        for t in tx {
            self.route(id, t);
        }
        for cmd in cmds {
            self.trace.record(format_args!(
                "{:?} {id} command {cmd:?}",
                self.now - self.start
            ));
            match cmd {
                TransportCommand::Close(c) => self.close_conn(id, c, false),
                TransportCommand::Abort(c) => self.close_conn(id, c, true),
                TransportCommand::Connect { endpoint, .. } => {
                    let up = self
                        .by_endpoint
                        .get(&(id, endpoint.clone()))
                        .and_then(|c| self.conns.get(c))
                        .is_some_and(|e| e.open);
                    if !up && !self.nodes[id].muted && !self.nodes[id].down {
                        self.connect(id, endpoint);
                    }
                }
            }
        }
        let now = self.now;
        for ev in evs {
            self.trace
                .record(format_args!("{:?} {id} event {ev:?}", now - self.start));
            self.note_event(id, &ev);
            self.nodes[id].events.push((now, ev));
        }
    }

    /// Follow PEs in and out of service for the dead-PE invariant.
    fn note_event(&mut self, id: NodeId, ev: &Ev) {
        match ev {
            Ev::Pe(PeEvent::Registered { pe_id, .. }) if !self.nodes[id].muted => {
                self.pe_gone.remove(pe_id);
            }
            Ev::Pe(PeEvent::Deregistered { pe_id, .. }) => {
                self.pe_gone.entry(*pe_id).or_insert(self.now);
            }
            _ => {}
        }
    }

    // --- the network

    fn link(&self, from: NodeId, to: NodeId) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.default_link)
    }

    fn is_partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.partitions.contains(&(a.min(b), a.max(b)))
    }

    fn delay(&mut self, from: NodeId, to: NodeId) -> Duration {
        let link = self.link(from, to);
        let (latency, jitter) = (link.latency, link.jitter);
        if jitter.is_zero() {
            latency
        } else {
            let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
            latency + Duration::from_nanos(self.rng.gen_range(0..=nanos))
        }
    }

    fn push_at(&mut self, at: Instant, d: Delivery) {
        if d.is_message() {
            self.in_flight += 1;
        }
        self.queue.insert((at, self.next_seq), d);
        self.next_seq += 1;
    }

    /// Something the node's own transport reports to it at once.
    fn local(&mut self, to: NodeId, ev: TransportEvent) {
        let now = self.now;
        self.push_at(now, Delivery::Transport { to, ev });
    }

    /// Schedule a delivery on the stream of receiving connection end `conn`.
    fn on_stream(&mut self, from: NodeId, conn: ConnId, d: Delivery) {
        let to = d.to();
        let mut at = self.now + self.delay(from, to);
        if !self.link(from, to).reorder {
            if let Some(&last) = self.fifo.get(&conn) {
                at = at.max(last);
            }
            self.fifo.insert(conn, at);
        }
        self.push_at(at, d);
    }

    /// A message or datagram through the loss and duplication models.
    fn lossy(&mut self, from: NodeId, to: NodeId, conn: Option<ConnId>, d: Delivery) {
        self.stats.sent += 1;
        if self.is_partitioned(from, to) {
            self.stats.partitioned += 1;
            return;
        }
        let (loss, dup) = {
            let l = self.link(from, to);
            (l.loss, l.duplicate)
        };
        if loss > 0.0 && self.rng.gen_bool(loss.min(1.0)) {
            self.stats.lost += 1;
            self.trace
                .record(format_args!("{:?} lost {from}->{to}", self.elapsed()));
            return;
        }
        let copy = (dup > 0.0 && self.rng.gen_bool(dup.min(1.0))).then(|| match &d {
            Delivery::Msg { to, conn, bytes } => Delivery::Msg {
                to: *to,
                conn: *conn,
                bytes: bytes.clone(),
            },
            Delivery::Datagram { to, meta, bytes } => Delivery::Datagram {
                to: *to,
                meta: meta.clone(),
                bytes: bytes.clone(),
            },
            Delivery::Transport { .. } => unreachable!("transport events are not duplicated"),
        });
        for d in std::iter::once(d).chain(copy.inspect(|_| self.stats.duplicated += 1)) {
            match conn {
                Some(c) => self.on_stream(from, c, d),
                None => {
                    let at = self.now + self.delay(from, to);
                    self.push_at(at, d);
                }
            }
        }
    }

    /// Open a connection from `from` to the node listening on `ep` (the transport reports
    /// `Accepted` / `Connected`, or `ConnectFailed` and `None`): the listener and its end.
    fn connect(&mut self, from: NodeId, ep: Endpoint) -> Option<(NodeId, ConnId)> {
        let listener = self
            .nodes
            .iter()
            .position(|n| n.listen.as_ref() == Some(&ep) && !n.down);
        let Some(l) = listener.filter(|&l| !self.is_partitioned(from, l)) else {
            self.trace.record(format_args!(
                "{:?} {from} connect to {ep} failed",
                self.elapsed()
            ));
            self.local(from, TransportEvent::ConnectFailed { endpoint: ep });
            return None;
        };
        let cx = ConnId(self.next_conn);
        let cy = ConnId(self.next_conn + 1);
        self.next_conn += 2;
        let port = u16::try_from(40000 + cx.0).unwrap_or(1);
        let from_addr = SocketAddr::new(self.nodes[from].addr.ip(), port);
        let l_addr = self.nodes[l].addr;
        self.trace.record(format_args!(
            "{:?} connect {from}/{cx} -> {l}/{cy}",
            self.elapsed()
        ));
        self.conns.insert(
            cx,
            ConnEnd {
                node: from,
                epoch: self.nodes[from].epoch,
                peer: cy,
                peer_meta: meta_of(l_addr),
                open: true,
            },
        );
        self.conns.insert(
            cy,
            ConnEnd {
                node: l,
                epoch: self.nodes[l].epoch,
                peer: cx,
                peer_meta: meta_of(from_addr),
                open: true,
            },
        );
        self.by_endpoint.insert((from, ep.clone()), cx);
        let accepted = Delivery::Transport {
            to: l,
            ev: TransportEvent::Accepted {
                conn: cy,
                meta: meta_of(from_addr),
            },
        };
        self.on_stream(from, cy, accepted);
        let connected = Delivery::Transport {
            to: from,
            ev: TransportEvent::Connected {
                conn: cx,
                endpoint: ep,
            },
        };
        self.on_stream(l, cx, connected);
        Some((l, cy))
    }

    fn route(&mut self, from: NodeId, t: Transmit) {
        if self.nodes[from].muted || self.nodes[from].down {
            return;
        }
        match t.dest {
            Dest::Conn(c) => self.send_on(from, c, t.bytes),
            Dest::Endpoint(ep) => {
                if let Some(&c) = self.by_endpoint.get(&(from, ep.clone())) {
                    if self.conns.get(&c).is_some_and(|e| e.open) {
                        self.send_on(from, c, t.bytes);
                        return;
                    }
                }
                let Some((l, cy)) = self.connect(from, ep) else {
                    return;
                };
                let msg = Delivery::Msg {
                    to: l,
                    conn: cy,
                    bytes: t.bytes,
                };
                self.lossy(from, l, Some(cy), msg);
            }
            Dest::Datagram(_group) => {
                let meta = RecvMeta {
                    protocol: Protocol::Asap,
                    transport: TransportProto::Udp,
                    peer: self.nodes[from].addr,
                    peer_addrs: vec![self.nodes[from].addr.ip()],
                };
                for to in 0..self.nodes.len() {
                    if to != from {
                        let d = Delivery::Datagram {
                            to,
                            meta: meta.clone(),
                            bytes: t.bytes.clone(),
                        };
                        self.lossy(from, to, None, d);
                    }
                }
            }
        }
    }

    fn send_on(&mut self, from: NodeId, c: ConnId, bytes: Vec<u8>) {
        match self.conns.get(&c) {
            Some(e) if e.open && e.node == from => {
                let peer = e.peer;
                let to = self.conns[&peer].node;
                let d = Delivery::Msg {
                    to,
                    conn: peer,
                    bytes,
                };
                self.lossy(from, to, Some(peer), d);
            }
            _ => self.local(from, TransportEvent::SendFailed { conn: c }),
        }
    }

    /// Close connection end `c` of node `id` (a core's Close / Abort): both ends close; the
    /// peer sees `Closed` after what is already on its way (Abort drops that), the closer
    /// sees `Closed` at once.
    fn close_conn(&mut self, id: NodeId, c: ConnId, abort: bool) {
        let Some(end) = self.conns.get_mut(&c) else {
            return;
        };
        if end.node != id || !end.open {
            return;
        }
        end.open = false;
        let peer = end.peer;
        if abort {
            let doomed: Vec<(Instant, u64)> = self
                .queue
                .iter()
                .filter(|(_, d)| matches!(d, Delivery::Msg { conn, .. } if *conn == peer))
                .map(|(k, _)| *k)
                .collect();
            for k in doomed {
                self.queue.remove(&k);
                self.in_flight -= 1;
                self.stats.dropped_dead += 1;
            }
        }
        if let Some(p) = self.conns.get_mut(&peer) {
            if p.open {
                p.open = false;
                let to = p.node;
                self.on_stream(
                    id,
                    peer,
                    Delivery::Transport {
                        to,
                        ev: TransportEvent::Closed { conn: peer },
                    },
                );
            }
        }
        self.local(id, TransportEvent::Closed { conn: c });
    }

    fn deliver(&mut self, d: Delivery) {
        let to = d.to();
        let dead = self.nodes[to].down || self.nodes[to].muted;
        // For a connection of an earlier incarnation of the receiver (it restarted).
        let stale = match &d {
            Delivery::Msg { conn, .. }
            | Delivery::Transport {
                ev:
                    TransportEvent::Accepted { conn, .. }
                    | TransportEvent::Connected { conn, .. }
                    | TransportEvent::Closed { conn }
                    | TransportEvent::SendFailed { conn },
                ..
            } => self
                .conns
                .get(conn)
                .is_some_and(|e| e.node == to && e.epoch != self.nodes[to].epoch),
            _ => false,
        };
        if dead || stale {
            if matches!(d, Delivery::Msg { .. } | Delivery::Datagram { .. }) {
                self.stats.dropped_dead += 1;
            }
            return;
        }
        let elapsed = self.elapsed();
        match d {
            Delivery::Msg { conn, bytes, .. } => {
                self.stats.delivered += 1;
                self.trace.record(format_args!(
                    "{elapsed:?} msg {to}/{conn} {} bytes",
                    bytes.len()
                ));
                let meta = self.conns[&conn].peer_meta.clone();
                if let NodeCore::Raw(log) = &mut self.nodes[to].core {
                    log.push((conn, bytes));
                    return;
                }
                self.input(to, Input::Message(conn, &meta, &bytes));
            }
            Delivery::Datagram { meta, bytes, .. } => {
                self.stats.delivered += 1;
                self.trace.record(format_args!(
                    "{elapsed:?} datagram {to} from {} {} bytes",
                    meta.peer,
                    bytes.len()
                ));
                self.input(to, Input::Datagram(&meta, &bytes));
            }
            Delivery::Transport { ev, .. } => {
                self.trace
                    .record(format_args!("{elapsed:?} transport {to} {ev:?}"));
                self.input(to, Input::Transport(ev));
            }
        }
        self.check();
    }

    /// Deliver everything due by now (in order), checking the invariants after each.
    pub fn settle(&mut self) {
        let mut steps = 0;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let d = entry.remove();
            if d.is_message() {
                self.in_flight -= 1;
            }
            self.deliver(d);
            steps += 1;
            assert!(
                steps < 1_000_000,
                "network does not settle (seed {})",
                self.seed
            );
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter(|n| !n.down)
            .filter_map(|n| match &n.core {
                NodeCore::Reg(c) => c.poll_timeout(),
                NodeCore::Pe(c) => c.poll_timeout(),
                NodeCore::Pu(c) => c.poll_timeout(),
                NodeCore::Raw(_) => None,
            })
            .min()
    }

    /// Advance the virtual clock by `d`, delivering messages and firing every timer on the
    /// way (a timer round calls `handle_timeout` on every live node; spurious calls are
    /// harmless).
    pub fn run(&mut self, d: Duration) {
        let target = self.now + d;
        self.settle();
        let mut rounds = 0u64;
        loop {
            let timer = self.next_timeout();
            let arrival = self.queue.keys().next().map(|k| k.0);
            let Some(next) = [timer, arrival].into_iter().flatten().min() else {
                break;
            };
            if next > target {
                break;
            }
            rounds += 1;
            assert!(rounds < 5_000_000, "timer storm (seed {})", self.seed);
            self.now = self.now.max(next);
            if timer.is_some_and(|t| t <= self.now) {
                for id in 0..self.nodes.len() {
                    self.timeout(id);
                    self.check();
                }
            }
            self.settle();
        }
        self.now = target;
        self.settle();
    }

    /// One step: the next delivery, or else the next timer round, the clock jumping to it
    /// (invariants are checked after it). `false` when nothing is pending at all.
    pub fn step(&mut self) -> bool {
        let timer = self.next_timeout();
        let arrival = self.queue.keys().next().map(|k| k.0);
        let Some(next) = [timer, arrival].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        if arrival.is_some_and(|a| a <= self.now) {
            if let Some((_, d)) = self.queue.pop_first() {
                if d.is_message() {
                    self.in_flight -= 1;
                }
                self.deliver(d);
            }
        } else {
            for id in 0..self.nodes.len() {
                self.timeout(id);
                self.check();
            }
        }
        true
    }

    /// Step until `done` holds (checked before each step) or `limit` of virtual time has
    /// passed; whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            let timer = self.next_timeout();
            let arrival = self.queue.keys().next().map(|k| k.0);
            match [timer, arrival].into_iter().flatten().min() {
                Some(next) if next <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return done(self);
                }
            }
        }
    }

    // --- faults

    /// Crash a node: its connections close (peers see `Closed`), it refuses new ones, its
    /// timers stop. [`World::restart`] brings up a fresh core with the same configuration.
    pub fn crash(&mut self, id: NodeId) {
        self.trace
            .record(format_args!("{:?} crash {id}", self.elapsed()));
        self.nodes[id].down = true;
        self.note_gone(id);
        let ends: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, e)| e.node == id && e.open)
            .map(|(c, _)| *c)
            .collect();
        for c in ends {
            let peer = self.conns[&c].peer;
            if let Some(e) = self.conns.get_mut(&c) {
                e.open = false;
            }
            if let Some(p) = self.conns.get_mut(&peer) {
                if p.open {
                    p.open = false;
                    let to = p.node;
                    self.on_stream(
                        id,
                        peer,
                        Delivery::Transport {
                            to,
                            ev: TransportEvent::Closed { conn: peer },
                        },
                    );
                }
            }
        }
        self.settle();
    }

    /// Restart a crashed node: a new core from its configuration (seed salted with the
    /// incarnation), no memory of the old one; what was on its way to it is lost.
    pub fn restart(&mut self, id: NodeId) {
        if !self.nodes[id].down {
            self.crash(id);
        }
        self.trace
            .record(format_args!("{:?} restart {id}", self.elapsed()));
        let epoch = self.nodes[id].epoch + 1;
        let salt = self.salt(epoch);
        let node = &mut self.nodes[id];
        node.epoch = epoch;
        node.core = node.spec.build(salt);
        node.down = false;
        node.muted = false;
        // The new incarnation is live (same PE identifier): its registration is not stale.
        if let Some(pe_id) = self.pe_id_of(id) {
            self.pe_gone.remove(&pe_id);
        }
        self.by_endpoint.retain(|(n, _), _| *n != id);
        let doomed: Vec<(Instant, u64)> = self
            .queue
            .iter()
            .filter(|(_, d)| d.to() == id)
            .map(|(k, _)| *k)
            .collect();
        for k in doomed {
            if self.queue.remove(&k).is_some_and(|d| d.is_message()) {
                self.in_flight -= 1;
                self.stats.dropped_dead += 1;
            }
        }
        self.timeout(id);
        self.settle();
    }

    /// Hang (or wake) a node: connections stay up, but it neither receives nor sends.
    pub fn mute(&mut self, id: NodeId, muted: bool) {
        self.trace
            .record(format_args!("{:?} mute {id} {muted}", self.elapsed()));
        self.nodes[id].muted = muted;
        if muted {
            self.note_gone(id);
        } else if !self.nodes[id].down {
            // Awake again: its registration (if the registrar kept it) is live.
            if let Some(pe_id) = self.pe_id_of(id) {
                self.pe_gone.remove(&pe_id);
            }
        }
    }

    fn note_gone(&mut self, id: NodeId) {
        if let Some(pe_id) = self.pe_id_of(id) {
            self.pe_gone.entry(pe_id).or_insert(self.now);
        }
    }

    /// The PE identifier of a PE node (configured, or from its last `Registered` event).
    pub fn pe_id_of(&self, id: NodeId) -> Option<PeId> {
        let node = &self.nodes[id];
        let Spec::Pe(cfg, _) = &node.spec else {
            return None;
        };
        cfg.pe_id.or_else(|| {
            node.events.iter().rev().find_map(|(_, e)| match e {
                Ev::Pe(PeEvent::Registered { pe_id, .. }) => Some(*pe_id),
                _ => None,
            })
        })
    }

    /// Cut every link between a node of `a` and a node of `b`: messages are dropped, new
    /// connections fail; open connections stay open (as across a real partition).
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.partitions.insert((x.min(y), x.max(y)));
                }
            }
        }
        self.trace
            .record(format_args!("{:?} partition {a:?} | {b:?}", self.elapsed()));
    }

    /// Heal every partition.
    pub fn heal(&mut self) {
        self.partitions.clear();
        self.trace.record(format_args!("{:?} heal", self.elapsed()));
    }

    /// The behaviour of every link without its own [`LinkConfig`].
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        self.default_link = cfg;
    }

    /// The behaviour of the link between `a` and `b`, both directions.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, cfg: LinkConfig) {
        self.links.insert((a, b), cfg.clone());
        self.links.insert((b, a), cfg);
    }

    // --- invariants

    /// Check `f` after every event; an `Err` panics with the seed and the message.
    pub fn add_invariant(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&World) -> Result<(), String> + 'static,
    ) {
        self.invariants.push((name.into(), Box::new(f)));
    }

    /// Check every registrar's handlespace indexes after every event (default on).
    pub fn set_check_handlespace(&mut self, on: bool) {
        self.check_handlespace = on;
    }

    /// No registrar may still hold a PE that crashed, hung or de-registered more than
    /// `bound` ago (off by default; pick keep-alive interval + timeout + slack).
    pub fn set_dead_pe_bound(&mut self, bound: Option<Duration>) {
        self.dead_pe_bound = bound;
    }

    /// The PEs that are gone and since when.
    pub fn gone_pes(&self) -> impl Iterator<Item = (PeId, Instant)> + '_ {
        self.pe_gone.iter().map(|(k, v)| (*k, *v))
    }

    fn check(&mut self) {
        self.events_checked += 1;
        if let Err(e) = self.violations() {
            let tail = self.trace.lines().map_or_else(String::new, |l| {
                let from = l.len().saturating_sub(TRACE_TAIL);
                format!("\nlast trace entries:\n  {}", l[from..].join("\n  "))
            });
            panic!(
                "rserpool-sim invariant violated at {:?} (seed {}): {e}{tail}",
                self.elapsed(),
                self.seed
            );
        }
    }

    /// Every invariant, built-in and added; the first violation.
    pub fn violations(&self) -> Result<(), String> {
        let s = self.stats;
        let in_flight = self.in_flight;
        if s.sent + s.duplicated
            != s.delivered + s.lost + s.partitioned + s.dropped_dead + in_flight
        {
            return Err(format!(
                "messages unaccounted for: {s:?}, {in_flight} in flight"
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let NodeCore::Reg(r) = &n.core else { continue };
            if n.down {
                continue;
            }
            let hs = r.handlespace();
            if self.check_handlespace {
                hs.check_invariants();
            }
            if let Some(bound) = self.dead_pe_bound {
                for pool in hs.pools() {
                    for e in hs.pool_entries(pool) {
                        if let Some(&since) = self.pe_gone.get(&e.pe.id) {
                            if self.now - since > bound {
                                return Err(format!(
                                    "registrar {i} still holds {:?} in {pool:?}, gone for {:?}",
                                    e.pe.id,
                                    self.now - since
                                ));
                            }
                        }
                    }
                }
            }
        }
        for (name, f) in &self.invariants {
            f(self).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    // --- raw peers

    /// A raw node sends `bytes` to `ep` (connecting on demand).
    pub fn raw_send(&mut self, id: NodeId, ep: &Endpoint, bytes: Vec<u8>) {
        self.route(
            id,
            Transmit {
                dest: Dest::Endpoint(ep.clone()),
                protocol: Protocol::Asap,
                bytes,
            },
        );
        self.settle();
    }

    /// A raw node answers on one of its connections.
    pub fn raw_reply(&mut self, id: NodeId, conn: ConnId, bytes: Vec<u8>) {
        self.send_on(id, conn, bytes);
        self.settle();
    }

    /// What a raw node received since the last call, decoded.
    pub fn raw_received(&mut self, id: NodeId) -> Vec<(ConnId, AsapMessage)> {
        match &mut self.nodes[id].core {
            NodeCore::Raw(log) => std::mem::take(log)
                .into_iter()
                .map(|(c, b)| (c, decode_asap(&b).expect("valid message").message))
                .collect(),
            _ => panic!("not a raw node"),
        }
    }

    // --- accessors

    pub fn reg(&mut self, id: NodeId) -> &mut Registrar {
        match &mut self.nodes[id].core {
            NodeCore::Reg(c) => c,
            _ => panic!("not a registrar"),
        }
    }
    pub fn pe(&mut self, id: NodeId) -> &mut PoolElementCore {
        match &mut self.nodes[id].core {
            NodeCore::Pe(c) => c,
            _ => panic!("not a PE"),
        }
    }
    pub fn pu(&self, id: NodeId) -> &PoolUserCore {
        match &self.nodes[id].core {
            NodeCore::Pu(c) => c,
            _ => panic!("not a PU"),
        }
    }
    pub fn registrar(&self, id: NodeId) -> &Registrar {
        match &self.nodes[id].core {
            NodeCore::Reg(c) => c,
            _ => panic!("not a registrar"),
        }
    }

    /// Run `f` on a PU core (at the current time), then route what it sent. Does not
    /// settle the network.
    pub fn with_pu<T>(&mut self, id: NodeId, f: impl FnOnce(&mut PoolUserCore, Instant) -> T) -> T {
        let now = self.now;
        let out = match &mut self.nodes[id].core {
            NodeCore::Pu(c) => f(c, now),
            _ => panic!("not a PU"),
        };
        if !self.nodes[id].down {
            self.collect(id);
        }
        out
    }

    /// Everything a node's core reported, with the time.
    pub fn events(&self, id: NodeId) -> &[(Instant, Ev)] {
        &self.nodes[id].events
    }
    /// Take a node's event log.
    pub fn take_events(&mut self, id: NodeId) -> Vec<(Instant, Ev)> {
        std::mem::take(&mut self.nodes[id].events)
    }

    pub fn reg_events(&self, id: NodeId) -> Vec<RegistrarEvent> {
        self.nodes[id]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Reg(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }
    pub fn pe_events(&self, id: NodeId) -> Vec<PeEvent> {
        self.nodes[id]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Pe(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }
    /// Take a PU's events (the log is emptied).
    pub fn pu_events(&mut self, id: NodeId) -> Vec<(Instant, PuEvent)> {
        let evs = std::mem::take(&mut self.nodes[id].events);
        evs.into_iter()
            .filter_map(|(t, e)| match e {
                Ev::Pu(r) => Some((t, r)),
                _ => None,
            })
            .collect()
    }

    fn command_with(&mut self, id: NodeId, f: impl FnOnce(&mut NodeCore, Instant)) {
        let now = self.now;
        if self.nodes[id].down {
            return;
        }
        f(&mut self.nodes[id].core, now);
        self.collect(id);
        self.check();
        self.settle();
    }

    pub fn pe_command(&mut self, id: NodeId, cmd: PeCommand) {
        self.trace
            .record(format_args!("{:?} {id} {cmd:?}", self.elapsed()));
        self.command_with(id, |c, now| match c {
            NodeCore::Pe(c) => c.command(now, cmd),
            _ => panic!("not a PE"),
        });
    }

    pub fn pu_command(&mut self, id: NodeId, cmd: PuCommand) {
        self.trace
            .record(format_args!("{:?} {id} {cmd:?}", self.elapsed()));
        self.command_with(id, |c, now| match c {
            NodeCore::Pu(c) => c.command(now, cmd),
            _ => panic!("not a PU"),
        });
    }

    pub fn reg_command(&mut self, id: NodeId, cmd: RegistrarCommand) {
        self.command_with(id, |c, now| match c {
            NodeCore::Reg(c) => c.command(now, cmd),
            _ => panic!("not a registrar"),
        });
    }

    /// Ask a PU for a server and return the answer (the PU must answer before `wait`).
    pub fn ask(&mut self, pu: NodeId, req: u64, pool: &str, next: bool, wait: Duration) -> PuEvent {
        self.try_ask(pu, req, pool, next, wait)
            .unwrap_or_else(|| panic!("no answer to request {req}"))
    }

    /// Like [`World::ask`], `None` when no answer came within `wait`.
    pub fn try_ask(
        &mut self,
        pu: NodeId,
        req: u64,
        pool: &str,
        next: bool,
        wait: Duration,
    ) -> Option<PuEvent> {
        let request = RequestId(req);
        let pool = PoolHandle::from(pool);
        let cmd = if next {
            PuCommand::GetNextServer { request, pool }
        } else {
            PuCommand::GetPrimaryServer { request, pool }
        };
        self.pu_command(pu, cmd);
        let deadline = self.now + wait;
        loop {
            let answer = self.nodes[pu].events.iter().position(|(_, e)| {
                matches!(e, Ev::Pu(PuEvent::Server { request: r, .. } | PuEvent::Failed { request: r, .. }) if *r == request)
            });
            if let Some(i) = answer {
                let (_, Ev::Pu(ev)) = self.nodes[pu].events.remove(i) else {
                    unreachable!()
                };
                return Some(ev);
            }
            if self.now >= deadline {
                return None;
            }
            self.run(Duration::from_millis(100));
        }
    }
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.seed)
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.nodes.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
