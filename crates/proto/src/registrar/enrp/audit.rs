//! Audit by checksum and re-synchronisation (procedures §2.7): mark the peer's PEs,
//! Handle Table Request W = 1, merge, purge what is still marked.

use std::collections::BTreeSet;
use std::time::Instant;

use rserpool_wire::{EnrpMessage, PeId, PoolHandle, ServerId};

use super::{EnrpEvent, EnrpPhase, PeerState};
use crate::common::later;
use crate::registrar::{Registrar, RegistrarTimer, RemovalReason};

impl Registrar {
    /// A presence from `peer` reported `reported` as its own checksum: compare with our
    /// copy's, and re-synchronise on a difference.
    pub(super) fn audit(&mut self, now: Instant, peer: ServerId, reported: u16) {
        let expected = self.hs.checksum(peer);
        if expected == reported {
            return;
        }
        if self.enrp.phase != EnrpPhase::Serving
            || self.enrp.resyncs.contains_key(&peer)
            || self.enrp.takeovers.contains_key(&peer)
            || self
                .peer_index(peer)
                .is_none_or(|i| self.enrp.peers[i].state == PeerState::TakingOver)
        {
            return;
        }
        self.counters.enrp.audit_mismatches += 1;
        self.enrp_event(EnrpEvent::AuditMismatch {
            peer,
            expected,
            reported,
        });
        let marks: BTreeSet<(PoolHandle, PeId)> = self
            .hs
            .owned_by(peer)
            .map(|(h, e)| (h.clone(), e.pe.id))
            .collect();
        self.enrp.resyncs.insert(peer, (marks, 0));
        let me = self.server_id;
        self.send_to_peer(
            peer,
            &EnrpMessage::HandleTableRequest {
                own_children_only: true,
                sender: me,
                receiver: peer,
            },
        );
        let t = later(now, self.cfg.enrp.max_time_no_response);
        self.timers.set(RegistrarTimer::Request(peer), t);
    }

    /// The last part of `peer`'s own PEs is merged: purge what it no longer lists.
    pub(super) fn finish_resync(&mut self, peer: ServerId) {
        let Some((marks, received)) = self.enrp.resyncs.remove(&peer) else {
            return;
        };
        let mut purged = 0usize;
        for (h, id) in marks {
            if self
                .hs
                .get(&h, id)
                .is_some_and(|e| e.pe.home_registrar == peer)
            {
                self.remove_pe(&h, id, RemovalReason::Resync);
                purged += 1;
            }
        }
        self.counters.enrp.resyncs += 1;
        self.counters.enrp.resync_purged += purged as u64;
        self.enrp_event(EnrpEvent::ResyncDone {
            peer,
            received,
            purged,
        });
    }
}
