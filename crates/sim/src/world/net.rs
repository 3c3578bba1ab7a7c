//! The network: links, connections, routing, loss and duplication.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rserpool_proto::io::{
    ConnId, Dest, Endpoint, RecvMeta, Transmit, TransportEvent, TransportProto,
};
use rserpool_wire::Protocol;

use super::{NodeId, World};
use crate::link::LinkConfig;

pub(super) struct ConnEnd {
    pub(super) node: NodeId,
    pub(super) epoch: u32,
    pub(super) peer: ConnId,
    /// The other side as this end sees it.
    pub(super) peer_meta: RecvMeta,
    pub(super) open: bool,
}

#[derive(Debug)]
pub(super) enum Delivery {
    Msg {
        to: NodeId,
        conn: ConnId,
        /// The sender's label (used for application data only).
        protocol: Protocol,
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
    /// A message or datagram (counted in [`NetStats`](super::NetStats)), not a transport event.
    pub(super) fn is_message(&self) -> bool {
        matches!(self, Delivery::Msg { .. } | Delivery::Datagram { .. })
    }

    pub(super) fn to(&self) -> NodeId {
        match self {
            Delivery::Msg { to, .. }
            | Delivery::Datagram { to, .. }
            | Delivery::Transport { to, .. } => *to,
        }
    }
}

fn meta_of(addr: SocketAddr, protocol: Protocol) -> RecvMeta {
    RecvMeta {
        protocol,
        transport: TransportProto::Tcp,
        peer: addr,
        peer_addrs: vec![addr.ip()],
        identity: None,
    }
}

impl World {
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
            Delivery::Msg {
                to,
                conn,
                protocol,
                bytes,
            } => Delivery::Msg {
                to: *to,
                conn: *conn,
                protocol: *protocol,
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
    pub(super) fn connect(
        &mut self,
        from: NodeId,
        ep: Endpoint,
        protocol: Protocol,
    ) -> Option<(NodeId, ConnId)> {
        let listener = self.nodes.iter().position(|n| {
            !n.down && (n.listen.as_ref() == Some(&ep) || n.listen_enrp.as_ref() == Some(&ep))
        });
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
        // A PE connects from its ASAP control port (where a registrar reaches it); others
        // from an ephemeral port.
        let port = match self.nodes[from].core {
            super::node::NodeCore::Pe(_) => self.nodes[from].addr.port(),
            _ => u16::try_from(40000 + cx.0 % 20000).unwrap_or(1),
        };
        let from_addr = SocketAddr::new(self.nodes[from].addr.ip(), port);
        let l_addr = self.nodes[l].addr;
        // The listener decides the protocol of its end; the opener labelled its own.
        let l_protocol = if self.nodes[l].listen_enrp.as_ref() == Some(&ep) {
            Protocol::Enrp
        } else {
            Protocol::Asap
        };
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
                peer_meta: meta_of(l_addr, protocol),
                open: true,
            },
        );
        self.conns.insert(
            cy,
            ConnEnd {
                node: l,
                epoch: self.nodes[l].epoch,
                peer: cx,
                peer_meta: meta_of(from_addr, l_protocol),
                open: true,
            },
        );
        self.by_endpoint.insert((from, ep.clone()), cx);
        let accepted = Delivery::Transport {
            to: l,
            ev: TransportEvent::Accepted {
                conn: cy,
                meta: meta_of(from_addr, l_protocol),
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

    pub(super) fn route(&mut self, from: NodeId, t: Transmit) {
        if self.nodes[from].muted || self.nodes[from].down {
            return;
        }
        match t.dest {
            Dest::Conn(c) => self.send_on(from, c, t.protocol, t.bytes),
            Dest::Endpoint(ep) => {
                if let Some(&c) = self.by_endpoint.get(&(from, ep.clone())) {
                    if self.conns.get(&c).is_some_and(|e| e.open) {
                        self.send_on(from, c, t.protocol, t.bytes);
                        return;
                    }
                }
                let Some((l, cy)) = self.connect(from, ep, t.protocol) else {
                    return;
                };
                let msg = Delivery::Msg {
                    to: l,
                    conn: cy,
                    protocol: t.protocol,
                    bytes: t.bytes,
                };
                self.lossy(from, l, Some(cy), msg);
            }
            Dest::Datagram(_group) => {
                let meta = RecvMeta {
                    protocol: t.protocol,
                    transport: TransportProto::Udp,
                    peer: self.nodes[from].addr,
                    peer_addrs: vec![self.nodes[from].addr.ip()],
                    identity: None,
                };
                // ENRP presences reach the registrars (the group's members) only.
                let enrp = t.protocol == Protocol::Enrp;
                for to in 0..self.nodes.len() {
                    let member =
                        !enrp || matches!(self.nodes[to].core, super::node::NodeCore::Reg(_));
                    if to != from && member {
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

    pub(super) fn send_on(&mut self, from: NodeId, c: ConnId, protocol: Protocol, bytes: Vec<u8>) {
        match self.conns.get(&c) {
            Some(e) if e.open && e.node == from => {
                let peer = e.peer;
                let to = self.conns[&peer].node;
                let d = Delivery::Msg {
                    to,
                    conn: peer,
                    protocol,
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
    pub(super) fn close_conn(&mut self, id: NodeId, c: ConnId, abort: bool) {
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
        self.close_peer(id, peer);
        self.local(id, TransportEvent::Closed { conn: c });
    }

    /// Close connection end `peer` (the other side of an end of node `from` that closed or
    /// crashed) if it is still open: its owner sees `Closed` after what is already on its
    /// way.
    pub(super) fn close_peer(&mut self, from: NodeId, peer: ConnId) {
        if let Some(p) = self.conns.get_mut(&peer) {
            if p.open {
                p.open = false;
                let to = p.node;
                self.on_stream(
                    from,
                    peer,
                    Delivery::Transport {
                        to,
                        ev: TransportEvent::Closed { conn: peer },
                    },
                );
            }
        }
    }
}
