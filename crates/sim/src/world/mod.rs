//! The world: nodes, network, clock, faults, invariants.
//!
//! [`World`] and its public types live here, with the read-only accessors; its methods are
//! spread over the submodules:
//!
//! * `node`: node specs and cores, adding nodes, feeding a core an input and draining it.
//! * `net`: links, connections by [`ConnId`], routing, the loss / duplication models, the
//!   delivery queue, closing connections.
//! * `clock`: delivering what is due, timer rounds, `settle` / `run` / `step` / `run_until`.
//! * `fault`: crash / restart, hang, partitions, per-link behaviour.
//! * `check`: the invariants checked after every event, gone-PE accounting.
//! * `api`: what tests drive: raw peers, core accessors, event logs, commands, `ask`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rserpool_proto::io::{ConnId, Endpoint};
use rserpool_proto::{PeEvent, PuEvent, RegistrarEvent, ServerEvent, UserEvent};
use rserpool_wire::PeId;

use crate::link::LinkConfig;
use crate::trace::Trace;

mod api;
mod check;
mod clock;
mod fault;
mod net;
mod node;

use net::{ConnEnd, Delivery};
use node::{Node, NodeCore};

/// Index of a node in its world (never reused).
pub type NodeId = usize;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Registrar,
    PoolElement,
    PoolUser,
    /// The PU side of a session ([`rserpool_proto::SessionUser`]).
    SessionUser,
    /// A session PE with an echo application ([`crate::SessionEcho`]).
    SessionEcho,
    /// A scripted peer: records what it receives, sends what the test tells it.
    Raw,
}

/// An event of one of the cores, with the core it came from.
#[derive(Debug, Clone)]
pub enum Ev {
    Reg(RegistrarEvent),
    Pe(PeEvent),
    Pu(PuEvent),
    SessionUser(UserEvent),
    SessionEcho(ServerEvent),
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

pub(super) type Invariant = Box<dyn Fn(&World) -> Result<(), String>>;

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
    /// Each node's `poll_timeout` (None when down), refreshed after every input to it.
    node_deadline: Vec<Option<Instant>>,
    /// The same, ordered: the next timer round is the first entry.
    deadlines: BTreeSet<(Instant, NodeId)>,
    /// A core was handed out mutably (`reg`, `pe`): refresh every deadline before running.
    deadlines_stale: bool,
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
            node_deadline: Vec::new(),
            deadlines: BTreeSet::new(),
            deadlines_stale: false,
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
            NodeCore::SessUser(_) => NodeKind::SessionUser,
            NodeCore::SessEcho(_) => NodeKind::SessionEcho,
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
    /// Open connections between nodes `a` and `b` (opened by either; each counted once).
    pub fn open_conns_between(&self, a: NodeId, b: NodeId) -> usize {
        self.conns
            .values()
            .filter(|e| e.open && e.node == a)
            .filter(|e| {
                self.conns
                    .get(&e.peer)
                    .is_some_and(|p| p.open && p.node == b)
            })
            .count()
    }
    /// The registrar nodes (up or down), in the order they were added.
    pub fn registrar_nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].core, NodeCore::Reg(_)))
            .collect()
    }
    /// The endpoint a node listens on (registrars and listening raw peers).
    pub fn listen_endpoint(&self, id: NodeId) -> Option<&Endpoint> {
        self.nodes[id].listen.as_ref()
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
