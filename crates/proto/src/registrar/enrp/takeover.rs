//! Takeover of a dead peer (procedures §2.6): INIT_TAKEOVER, ACKs, TAKEOVER_SERVER, the
//! election between concurrent takeovers, and the claim of the adopted PEs.

use std::collections::BTreeSet;
use std::time::Instant;

use rserpool_wire::{EnrpMessage, ServerId};

use super::{EnrpEvent, PeerState};
use crate::common::later;
use crate::io::{ConnId, Dest};
use crate::registrar::{Registrar, RegistrarTimer};

impl Registrar {
    /// Peer `target` is dead and owns PEs: ask every peer (the target too) for its ACK.
    pub(super) fn start_takeover(&mut self, now: Instant, target: ServerId) {
        if let Some(i) = self.peer_index(target) {
            self.enrp.peers[i].state = PeerState::TakingOver;
        }
        self.timers.cancel(&RegistrarTimer::LastHeard(target));
        self.timers.cancel(&RegistrarTimer::NoResponse(target));
        self.counters.enrp.takeovers_started += 1;
        self.enrp_event(EnrpEvent::TakeoverStarted { target });
        let others: BTreeSet<ServerId> = self
            .live_peer_ids()
            .into_iter()
            .filter(|p| *p != target)
            .collect();
        let msg = |me: ServerId, to: ServerId| EnrpMessage::InitTakeover {
            sender: me,
            receiver: to,
            target,
        };
        let me = self.server_id;
        for p in others.iter().copied().chain(std::iter::once(target)) {
            self.send_to_peer(p, &msg(me, p));
        }
        if others.is_empty() {
            // Nobody to ask: we win at once (RSPLIB would wait forever).
            self.win_takeover(now, target);
            return;
        }
        self.enrp.takeovers.insert(target, others);
        let t = later(now, self.cfg.enrp.takeover_expiry);
        self.timers.set(RegistrarTimer::TakeoverExpiry(target), t);
    }

    pub(super) fn abandon_takeover(&mut self, target: ServerId, reason: &'static str) {
        if self.enrp.takeovers.remove(&target).is_none() {
            return;
        }
        self.timers.cancel(&RegistrarTimer::TakeoverExpiry(target));
        self.counters.enrp.takeovers_abandoned += 1;
        self.enrp_event(EnrpEvent::TakeoverAbandoned { target, reason });
    }

    /// Every ACK is in (or nobody had to answer): the target's PEs are ours.
    fn win_takeover(&mut self, now: Instant, target: ServerId) {
        self.enrp.takeovers.remove(&target);
        self.timers.cancel(&RegistrarTimer::TakeoverExpiry(target));
        let me = self.server_id;
        for p in self.live_peer_ids() {
            if p != target {
                self.send_to_peer(
                    p,
                    &EnrpMessage::TakeoverServer {
                        sender: me,
                        receiver: p,
                        target,
                    },
                );
            }
        }
        let moved = self.hs.take_over(target, me);
        self.counters.enrp.takeovers_won += 1;
        self.enrp_event(EnrpEvent::TakeoverWon {
            target,
            pes: moved.len(),
        });
        self.claim_pes(now, &moved);
        self.remove_peer(now, target);
    }

    pub(super) fn on_init_takeover(
        &mut self,
        now: Instant,
        from: ServerId,
        conn: Option<ConnId>,
        target: ServerId,
    ) {
        let me = self.server_id;
        if target == me {
            // A false alarm: tell every peer we are alive.
            self.counters.enrp.takeovers_of_self += 1;
            self.presence_to_all();
            return;
        }
        if self.enrp.takeovers.contains_key(&target) {
            let they_win = self.cfg.enrp.takeover_election.prefers(from, me);
            if !they_win {
                return; // no ACK: ours goes on
            }
            self.abandon_takeover(target, "another registrar wins the election");
        }
        // Stop monitoring the target; the initiator takes over.
        if let Some(i) = self.peer_index(target) {
            self.enrp.peers[i].state = PeerState::TakingOver;
            self.timers.cancel(&RegistrarTimer::LastHeard(target));
            self.timers.cancel(&RegistrarTimer::NoResponse(target));
            let t = later(now, self.cfg.enrp.takeover_expiry.saturating_mul(2));
            // If the initiator never completes, the target is probed again later.
            self.timers.set(RegistrarTimer::LastHeard(target), t);
        }
        let ack = EnrpMessage::InitTakeoverAck {
            sender: me,
            receiver: from,
            target,
        };
        match conn {
            Some(c) => self.enrp_send(Dest::Conn(c), &ack),
            None => {
                self.send_to_peer(from, &ack);
            }
        }
    }

    pub(super) fn on_init_takeover_ack(&mut self, now: Instant, from: ServerId, target: ServerId) {
        let Some(waiting) = self.enrp.takeovers.get_mut(&target) else {
            return;
        };
        waiting.remove(&from);
        if waiting.is_empty() {
            self.win_takeover(now, target);
        }
    }

    pub(super) fn on_takeover_server(&mut self, now: Instant, from: ServerId, target: ServerId) {
        let me = self.server_id;
        if target == me {
            self.counters.enrp.takeovers_of_self += 1;
            self.presence_to_all();
            return;
        }
        self.abandon_takeover(target, "another registrar took over");
        let moved = self.hs.take_over(target, from);
        self.enrp_event(EnrpEvent::TakenOver {
            target,
            by: from,
            pes: moved.len(),
        });
        if self.peer_index(target).is_some() {
            self.remove_peer(now, target);
        }
    }

    /// A presence to every identified peer (we are alive).
    fn presence_to_all(&mut self) {
        for i in 0..self.enrp.peers.len() {
            let p = &self.enrp.peers[i];
            if p.id.0 == 0 {
                continue;
            }
            let msg = self.presence_to(p.id, false, p.sctp);
            if let Some(dest) = self.peer_dest(i) {
                self.enrp_send(dest, &msg);
            }
        }
    }
}
