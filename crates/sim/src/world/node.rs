//! Nodes: how their cores are built, fed and drained.

use std::net::SocketAddr;
use std::time::Instant;

use rserpool_proto::io::{
    ConnId, Core, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
};
use rserpool_proto::{
    PeEvent, PoolElementConfig, PoolElementCore, PoolUserConfig, PoolUserCore, Registrar,
    RegistrarConfig, SessionUser, SessionUserConfig,
};

use crate::session_echo::{EchoConfig, SessionEcho};

use super::{Ev, NodeId, World};

pub(super) enum NodeCore {
    Reg(Box<Registrar>),
    Pe(Box<PoolElementCore>),
    Pu(Box<PoolUserCore>),
    SessUser(Box<SessionUser>),
    SessEcho(Box<SessionEcho>),
    Raw(Vec<(ConnId, Vec<u8>)>),
}

/// How to build (and rebuild after a crash) a node's core.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // a handful per world, built once
pub(super) enum Spec {
    Reg(RegistrarConfig, u64),
    Pe(PoolElementConfig, u64),
    Pu(PoolUserConfig, u64),
    SessUser(SessionUserConfig, u64),
    SessEcho(EchoConfig, u64),
    Raw,
}

impl Spec {
    pub(super) fn build(&self, salt: u64) -> NodeCore {
        match self {
            Spec::Reg(c, s) => NodeCore::Reg(Box::new(Registrar::new(c.clone(), s ^ salt))),
            Spec::Pe(c, s) => NodeCore::Pe(Box::new(PoolElementCore::new(c.clone(), s ^ salt))),
            Spec::Pu(c, s) => NodeCore::Pu(Box::new(PoolUserCore::new(c.clone(), s ^ salt))),
            Spec::SessUser(c, s) => {
                NodeCore::SessUser(Box::new(SessionUser::new(c.clone(), s ^ salt)))
            }
            Spec::SessEcho(c, s) => {
                NodeCore::SessEcho(Box::new(SessionEcho::new(c.clone(), s ^ salt)))
            }
            Spec::Raw => NodeCore::Raw(Vec::new()),
        }
    }
}

pub(super) struct Node {
    pub(super) core: NodeCore,
    pub(super) spec: Spec,
    pub(super) addr: SocketAddr,
    pub(super) listen: Option<Endpoint>,
    /// A second listener for ENRP (registrars that peer).
    pub(super) listen_enrp: Option<Endpoint>,
    /// Crashed: refuses connections, its connections are closed, no timers.
    pub(super) down: bool,
    /// Hung: connections stay up, but it neither receives nor sends anything.
    pub(super) muted: bool,
    /// Incarnation: bumped by every restart; connections of an old one are dead.
    pub(super) epoch: u32,
    pub(super) events: Vec<(Instant, Ev)>,
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
pub(super) enum Input<'a> {
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
    // --- adding nodes

    fn add(&mut self, spec: Spec, addr: SocketAddr, listen: Option<Endpoint>) -> NodeId {
        let core = spec.build(self.salt(0));
        self.nodes.push(Node {
            core,
            spec,
            addr,
            listen,
            listen_enrp: None,
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

    pub(super) fn salt(&self, epoch: u32) -> u64 {
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

    /// Pool element number `i` at 10.0.1.`i` (core seed 200 + `i`). Its ASAP control
    /// endpoint is TCP 10.0.1.`i`:2960: it connects to registrars from there (as the shell's
    /// PEs do) and accepts a registrar's connection there (a takeover's keep-alive).
    pub fn add_pe(&mut self, i: u8, cfg: PoolElementConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 1, i], 2960));
        self.add(
            Spec::Pe(cfg, 200 + u64::from(i)),
            addr,
            Some(Endpoint::tcp(addr)),
        )
    }

    /// Like [`World::add_pe`] for PE numbers above 255: 10.1.`hi`.`lo`:2960 (core seed
    /// 200 + `n`).
    pub fn add_pe_n(&mut self, n: u16, cfg: PoolElementConfig) -> NodeId {
        let [hi, lo] = n.to_be_bytes();
        let addr = SocketAddr::from(([10, 1, hi, lo], 2960));
        self.add(
            Spec::Pe(cfg, 200 + u64::from(n)),
            addr,
            Some(Endpoint::tcp(addr)),
        )
    }

    /// The ENRP endpoint of registrar `i` added by [`World::add_peering_registrar`]:
    /// TCP 10.0.0.`i`:9901.
    pub fn enrp_endpoint(i: u8) -> Endpoint {
        Endpoint::tcp(SocketAddr::from(([10, 0, 0, i], 9901)))
    }

    /// Registrar number `i` (as [`World::add_registrar`]) that also listens for ENRP on
    /// [`World::enrp_endpoint`]`(i)`; its `enrp.own_transports` names that endpoint.
    pub fn add_peering_registrar(&mut self, i: u8, mut cfg: RegistrarConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 0, i], 3863));
        let enrp = Self::enrp_endpoint(i);
        if cfg.enrp.own_transports.is_empty() {
            if let Some(a) = enrp.primary() {
                cfg.enrp.own_transports = vec![rserpool_wire::TransportAddr::tcp(a.port(), a.ip())];
            }
        }
        let core = Spec::Reg(cfg.clone(), 100 + u64::from(i)).build(self.salt(0));
        self.nodes.push(Node {
            core,
            spec: Spec::Reg(cfg, 100 + u64::from(i)),
            addr,
            listen: Some(Endpoint::tcp(addr)),
            listen_enrp: Some(enrp),
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
        self.timeout(id);
        self.settle();
        id
    }

    /// Pool user number `i` at 10.0.2.`i` (core seed 300 + `i`).
    pub fn add_pu(&mut self, i: u8, cfg: PoolUserConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 2, i], 0));
        self.add(Spec::Pu(cfg, 300 + u64::from(i)), addr, None)
    }

    /// Session user number `i` at 10.0.5.`i` (core seed 500 + `i`); the test answers its
    /// `NeedServer` events ([`World::with_session_user`]).
    pub fn add_session_user(&mut self, i: u8, cfg: SessionUserConfig) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 5, i], 0));
        self.add(Spec::SessUser(cfg, 500 + u64::from(i)), addr, None)
    }

    /// A session echo PE listening on `listen` (its PE's user transport; core seed 400 +
    /// `i`).
    pub fn add_session_echo(&mut self, i: u8, listen: Endpoint, cfg: EchoConfig) -> NodeId {
        let addr = listen
            .primary()
            .unwrap_or(SocketAddr::from(([10, 0, 4, i], 7000)));
        self.add(Spec::SessEcho(cfg, 400 + u64::from(i)), addr, Some(listen))
    }

    /// A scripted peer at 10.0.3.`i`:3863, listening there when `listen`.
    pub fn add_raw(&mut self, i: u8, listen: bool) -> NodeId {
        let addr = SocketAddr::from(([10, 0, 3, i], 3863));
        let listen = listen.then(|| Endpoint::tcp(addr));
        self.add(Spec::Raw, addr, listen)
    }

    // --- driving a node

    pub(super) fn input(&mut self, id: NodeId, input: Input<'_>) {
        let now = self.now;
        let node = &mut self.nodes[id];
        if node.down {
            return;
        }
        match &mut node.core {
            NodeCore::Reg(c) => feed(c.as_mut(), now, input),
            NodeCore::Pe(c) => feed(c.as_mut(), now, input),
            NodeCore::Pu(c) => feed(c.as_mut(), now, input),
            NodeCore::SessUser(c) => feed(c.as_mut(), now, input),
            NodeCore::SessEcho(c) => feed(c.as_mut(), now, input),
            NodeCore::Raw(_) => {}
        }
        self.collect(id);
    }

    pub(super) fn timeout(&mut self, id: NodeId) {
        self.input(id, Input::Timeout);
    }

    /// Drain a node's transmits into the network, its commands into the transport, and its
    /// events into its log.
    pub(super) fn collect(&mut self, id: NodeId) {
        let (tx, cmds, evs) = match &mut self.nodes[id].core {
            NodeCore::Reg(c) => drain(c.as_mut(), Ev::Reg),
            NodeCore::Pe(c) => drain(c.as_mut(), Ev::Pe),
            NodeCore::Pu(c) => drain(c.as_mut(), Ev::Pu),
            NodeCore::SessUser(c) => drain(c.as_mut(), Ev::SessionUser),
            NodeCore::SessEcho(c) => drain(c.as_mut(), Ev::SessionEcho),
            NodeCore::Raw(_) => return,
        };
        self.refresh_deadline(id);
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
                TransportCommand::Connect { endpoint, protocol } => {
                    let up = self
                        .by_endpoint
                        .get(&(id, endpoint.clone()))
                        .and_then(|c| self.conns.get(c))
                        .is_some_and(|e| e.open);
                    if !up && !self.nodes[id].muted && !self.nodes[id].down {
                        self.connect(id, endpoint, protocol);
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
}
