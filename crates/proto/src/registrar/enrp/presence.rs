//! Presences: the heartbeat, answering R = 1, failure detection (last heard → probe → no
//! response → dead).

use std::time::{Duration, Instant};

use rand::Rng;
use rserpool_wire::{EnrpMessage, ServerId, ServerInfo, TransportKind};

use super::{EnrpEvent, PeerState};
use crate::common::later;
use crate::io::{ConnId, Dest, RecvMeta};
use crate::registrar::{Registrar, RegistrarTimer};

impl Registrar {
    /// Our Server Information for a peer over SCTP (`sctp`) or TCP: the first own
    /// transport of that kind, else the first one.
    fn server_info(&self, sctp: bool) -> Option<ServerInfo> {
        let own = &self.cfg.enrp.own_transports;
        let want = |t: &&rserpool_wire::TransportAddr| (t.kind == TransportKind::Sctp) == sctp;
        let t = own.iter().find(want).or_else(|| own.first())?;
        Some(ServerInfo {
            server_id: self.server_id,
            transport: t.clone(),
        })
    }

    /// A presence to `to` (0 = multicast) with our checksum and Server Information.
    pub(super) fn presence_to(
        &self,
        to: ServerId,
        reply_required: bool,
        sctp: bool,
    ) -> EnrpMessage {
        EnrpMessage::Presence {
            reply_required,
            sender: self.server_id,
            receiver: to,
            checksum: Some(self.hs.checksum(self.server_id)),
            server_info: self.server_info(sctp),
        }
    }

    /// PEER-HEARTBEAT-CYCLE: a presence to every peer (R = 1 to unidentified static
    /// ones, to learn who they are) and to the multicast group.
    pub(super) fn heartbeat(&mut self, now: Instant) {
        for i in 0..self.enrp.peers.len() {
            let p = &self.enrp.peers[i];
            if p.state == PeerState::TakingOver {
                continue;
            }
            let (id, sctp) = (p.id, p.sctp);
            let msg = self.presence_to(id, id.0 == 0, sctp);
            if let Some(dest) = self.peer_dest(i) {
                self.enrp_send(dest, &msg);
            }
        }
        if let Some(group) = self.cfg.enrp.presence_group {
            let msg = self.presence_to(ServerId(0), false, false);
            self.enrp_send(Dest::Datagram(group), &msg);
        }
        // ±12.5 % (RSPLIB).
        let base = self.cfg.enrp.heartbeat_cycle.max(Duration::from_millis(10));
        let spread = base.as_nanos() / 8;
        let offset = self.rng.gen_range(0..=2 * spread);
        let nanos = base.as_nanos() - spread + offset;
        let period = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.timers
            .set(RegistrarTimer::Heartbeat, later(now, period));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_presence(
        &mut self,
        now: Instant,
        sender: ServerId,
        conn: Option<ConnId>,
        _meta: &RecvMeta,
        reply_required: bool,
        checksum: Option<u16>,
        _server_info: Option<ServerInfo>,
    ) {
        let Some(i) = self.peer_index(sender) else {
            return;
        };
        // It is alive: our takeover of it, or our part in another's, is off.
        if self.enrp.takeovers.contains_key(&sender) {
            self.abandon_takeover(sender, "the target is alive");
        }
        if self.enrp.peers[i].state == PeerState::TakingOver {
            self.enrp.peers[i].state = PeerState::Active;
            let t = later(now, self.cfg.enrp.max_time_last_heard);
            self.timers.set(RegistrarTimer::LastHeard(sender), t);
        }
        self.enrp.peers[i].checksum_reported = checksum;
        if reply_required {
            let sctp = self.enrp.peers[i].sctp;
            let msg = self.presence_to(sender, false, sctp);
            let dest = conn.map(Dest::Conn).or_else(|| self.peer_dest(i));
            if let Some(dest) = dest {
                self.enrp_send(dest, &msg);
            }
        }
        // Audit only presences on the association (RSPLIB): multicast ones may overtake
        // the updates.
        if let (Some(reported), Some(_)) = (checksum, conn) {
            self.audit(now, sender, reported);
        }
    }

    /// MAX-TIME-LAST-HEARD passed: probe with a presence R = 1.
    pub(super) fn probe_peer(&mut self, now: Instant, id: ServerId) {
        let Some(i) = self.peer_index(id) else {
            return;
        };
        // Not while we take it over ourselves (another's takeover that never completed is
        // probed again).
        if self.enrp.takeovers.contains_key(&id) {
            return;
        }
        self.enrp.peers[i].state = PeerState::Probing;
        let sctp = self.enrp.peers[i].sctp;
        let msg = self.presence_to(id, true, sctp);
        if let Some(dest) = self.peer_dest(i) {
            self.enrp_send(dest, &msg);
        }
        let t = later(now, self.cfg.enrp.max_time_no_response);
        self.timers.set(RegistrarTimer::NoResponse(id), t);
    }

    /// No answer to the probe: the peer is dead. Take over its PEs, or drop it when it
    /// owns none in our copy.
    pub(super) fn peer_dead(&mut self, now: Instant, id: ServerId) {
        let Some(i) = self.peer_index(id) else {
            return;
        };
        if self.enrp.peers[i].state != PeerState::Probing {
            return;
        }
        self.enrp_event(EnrpEvent::PeerDown { server_id: id });
        if self.hs.owned_count(id) == 0 {
            self.remove_peer(now, id);
            return;
        }
        self.start_takeover(now, id);
    }
}
