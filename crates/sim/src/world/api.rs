//! Driving the world from a test: raw peers, core accessors, event logs, commands.

use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, Dest, Endpoint, Transmit};
use rserpool_proto::{
    PeCommand, PeEvent, PoolElementCore, PoolUserCore, PuCommand, PuEvent, Registrar,
    RegistrarCommand, RegistrarEvent, RequestId, ServerEvent, SessionUser, UserEvent,
};

use crate::session_echo::SessionEcho;
use rserpool_wire::{decode_asap, AsapMessage, PoolHandle, Protocol};

use super::node::NodeCore;
use super::{Ev, NodeId, World};

impl World {
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
        self.send_on(id, conn, Protocol::Asap, bytes);
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
        self.deadlines_stale = true;
        match &mut self.nodes[id].core {
            NodeCore::Reg(c) => c,
            _ => panic!("not a registrar"),
        }
    }
    pub fn pe(&mut self, id: NodeId) -> &mut PoolElementCore {
        self.deadlines_stale = true;
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

    /// Run `f` on a session user core (at the current time), then route what it sent and
    /// settle the network.
    pub fn with_session_user<T>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut SessionUser, Instant) -> T,
    ) -> T {
        let now = self.now;
        let out = match &mut self.nodes[id].core {
            NodeCore::SessUser(c) => f(c, now),
            _ => panic!("not a session user"),
        };
        if !self.nodes[id].down {
            self.collect(id);
            self.check();
            self.settle();
        }
        out
    }
    pub fn session_user(&self, id: NodeId) -> &SessionUser {
        match &self.nodes[id].core {
            NodeCore::SessUser(c) => c,
            _ => panic!("not a session user"),
        }
    }
    pub fn session_echo(&self, id: NodeId) -> &SessionEcho {
        match &self.nodes[id].core {
            NodeCore::SessEcho(c) => c,
            _ => panic!("not a session echo PE"),
        }
    }
    /// Take a session user's events (the log is emptied).
    pub fn session_user_events(&mut self, id: NodeId) -> Vec<(Instant, UserEvent)> {
        let evs = std::mem::take(&mut self.nodes[id].events);
        evs.into_iter()
            .filter_map(|(t, e)| match e {
                Ev::SessionUser(r) => Some((t, r)),
                _ => None,
            })
            .collect()
    }
    /// A session echo PE's events (the log is kept).
    pub fn session_echo_events(&self, id: NodeId) -> Vec<ServerEvent> {
        self.nodes[id]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::SessionEcho(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
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
