//! Faults: crash / restart, hang, partitions, link behaviour.

use std::time::Instant;

use rserpool_proto::io::ConnId;
use rserpool_proto::PeEvent;
use rserpool_wire::PeId;

use super::node::Spec;
use super::{Ev, NodeId, World};
use crate::link::LinkConfig;

impl World {
    /// Crash a node: its connections close (peers see `Closed`), it refuses new ones, its
    /// timers stop. [`World::restart`] brings up a fresh core with the same configuration.
    pub fn crash(&mut self, id: NodeId) {
        self.trace
            .record(format_args!("{:?} crash {id}", self.elapsed()));
        self.nodes[id].down = true;
        self.refresh_deadline(id);
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
            self.close_peer(id, peer);
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
}
