//! The clock: delivering what is due, timers, running and stepping.

use std::time::{Duration, Instant};

use rserpool_proto::io::{Core, TransportEvent};
use rserpool_wire::Protocol;

use super::net::Delivery;
use super::node::{Input, NodeCore};
use super::{NodeId, World};

impl World {
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
            Delivery::Msg {
                conn,
                bytes,
                protocol,
                ..
            } => {
                self.stats.delivered += 1;
                self.trace.record(format_args!(
                    "{elapsed:?} msg {to}/{conn} {} bytes",
                    bytes.len()
                ));
                let mut meta = self.conns[&conn].peer_meta.clone();
                // Session data carries its PPID (the session framing / SCTP); ASAP and ENRP
                // take the connection's label.
                if let Protocol::Data(_) = protocol {
                    meta.protocol = protocol;
                }
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

    /// Re-read node `id`'s deadline (after an input, a crash or a restart).
    pub(super) fn refresh_deadline(&mut self, id: NodeId) {
        if self.node_deadline.len() < self.nodes.len() {
            self.node_deadline.resize(self.nodes.len(), None);
        }
        let n = &self.nodes[id];
        let t = if n.down {
            None
        } else {
            match &n.core {
                NodeCore::Reg(c) => c.poll_timeout(),
                NodeCore::Pe(c) => c.poll_timeout(),
                NodeCore::Pu(c) => c.poll_timeout(),
                NodeCore::SessUser(c) => c.poll_timeout(),
                NodeCore::SessEcho(c) => c.poll_timeout(),
                NodeCore::Raw(_) => None,
            }
        };
        if let Some(old) = self.node_deadline[id] {
            self.deadlines.remove(&(old, id));
        }
        self.node_deadline[id] = t;
        if let Some(t) = t {
            self.deadlines.insert((t, id));
        }
    }

    /// Re-read every deadline if a core was handed out mutably since the last time.
    fn refresh_if_stale(&mut self) {
        if std::mem::take(&mut self.deadlines_stale) {
            for id in 0..self.nodes.len() {
                self.refresh_deadline(id);
            }
        }
    }

    /// A timer round: `handle_timeout` on every live node whose deadline has come (in node
    /// order), the invariants checked after each.
    fn fire_due_timers(&mut self) {
        self.refresh_if_stale();
        let mut due: Vec<NodeId> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= self.now)
            .map(|(_, id)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            if self.node_deadline[id].is_some_and(|t| t <= self.now) {
                self.timeout(id);
                self.check();
            }
        }
    }

    fn next_timeout(&mut self) -> Option<Instant> {
        self.refresh_if_stale();
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Advance the virtual clock by `d`, delivering messages and firing every timer on the
    /// way (a timer round calls `handle_timeout` on every live node whose deadline has
    /// come).
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
                self.fire_due_timers();
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
            self.fire_due_timers();
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
}
