//! Handle updates: ADD_PE / DEL_PE sent for every change the ASAP side makes to a PE we
//! own, and applied from peers with ownership moving to the sender.

use std::collections::BTreeSet;
use std::time::Instant;

use rserpool_wire::{
    AsapMessage, Cause, CauseCode, EnrpMessage, PeId, PoolElement, PoolHandle, ServerId,
    TransportAddr, TransportKind, UpdateAction,
};

use super::EnrpEvent;
use crate::common::later;
use crate::handlespace::RegisterOutcome;
use crate::handlespace::TimerKind;
use crate::io::{ConnId, Dest, Endpoint};
use crate::registrar::{source_of, Registrar, RemovalReason, MIN_PERIOD};

impl Registrar {
    /// The PE as sent to a peer: a TCP ASAP transport becomes SCTP towards SCTP peers
    /// when `rewrite_tcp_asap_for_sctp_peers` is on.
    pub(super) fn pe_for_peer(&self, pe: &PoolElement, sctp: bool) -> PoolElement {
        let mut pe = pe.clone();
        if sctp && self.cfg.enrp.rewrite_tcp_asap_for_sctp_peers {
            if let Some(t) = &pe.asap_transport {
                if t.kind == TransportKind::Tcp {
                    pe.asap_transport = Some(TransportAddr::sctp(
                        t.port,
                        rserpool_wire::TransportUse::DATA_ONLY,
                        t.addrs.clone(),
                    ));
                }
            }
        }
        pe
    }

    /// Announce a change of a PE we own to every peer (ADD_PE or DEL_PE); with takeover
    /// suggestions on, an ADD_PE also goes with T = 1 to the peer whose (server ID XOR
    /// PE ID) is the largest, if larger than ours.
    pub(in crate::registrar) fn enrp_replicate(
        &mut self,
        action: UpdateAction,
        handle: &PoolHandle,
        pe: &PoolElement,
    ) {
        if self.enrp.peers.is_empty() {
            return;
        }
        let suggest_to = (self.cfg.enrp.takeover_suggestion && action == UpdateAction::ADD_PE)
            .then(|| {
                let own = self.server_id.0 ^ pe.id.0;
                self.live_peer_ids()
                    .into_iter()
                    .max_by_key(|p| p.0 ^ pe.id.0)
                    .filter(|p| p.0 ^ pe.id.0 > own)
            })
            .flatten();
        for i in 0..self.enrp.peers.len() {
            let p = &self.enrp.peers[i];
            if p.id.0 == 0 || p.state == super::PeerState::TakingOver {
                continue;
            }
            let (id, sctp) = (p.id, p.sctp);
            let Some(dest) = self.peer_dest(i) else {
                continue;
            };
            let msg = EnrpMessage::HandleUpdate {
                takeover: suggest_to == Some(id),
                sender: self.server_id,
                receiver: id,
                action,
                handle: handle.clone(),
                pe: self.pe_for_peer(pe, sctp),
            };
            self.enrp_send(dest, &msg);
        }
    }

    /// A PE we owned now belongs to another registrar: forget its connection and quota.
    fn disown(&mut self, handle: &PoolHandle, id: PeId) {
        let Some(e) = self.hs.get(handle, id) else {
            return;
        };
        let conn = e.bookkeeping.conn.map(ConnId);
        let source = source_of(&e.pe);
        if let Some(c) = conn {
            self.unindex_conn(c, handle, id);
        }
        self.uncount_source(source);
        if let Some(p) = self.pe_guard.remove(handle, id).and_then(|g| g.pending) {
            self.freed.push(p);
        }
    }

    /// Store a PE whose home is `owner` (a peer): insert or replace, ownership moving to
    /// it; it expires by its Registration Life unless refreshed. The handlespace's cause
    /// when refused. True when it was new.
    pub(super) fn apply_pe(
        &mut self,
        now: Instant,
        owner: ServerId,
        handle: PoolHandle,
        mut pe: PoolElement,
    ) -> Result<bool, Cause> {
        pe.home_registrar = owner;
        let id = pe.id;
        let life = self.cfg.lifetime_unit.to_duration(pe.registration_life);
        if self
            .hs
            .get(&handle, id)
            .is_some_and(|e| e.pe.home_registrar == self.server_id)
        {
            // Check first so that a refused update does not disown.
            if let Some(pool_policy) = self.hs.pool_policy_value(&handle) {
                if pool_policy.policy_type() != pe.policy.policy_type() {
                    return Err(Cause::inconsistent_policy(pool_policy));
                }
            }
            self.disown(&handle, id);
        }
        let before = self
            .subs
            .watched(&handle)
            .then(|| self.hs.get(&handle, id).map(|e| e.pe.clone()));
        let outcome = self.hs.register(now, &handle, pe).map_err(|e| e.cause)?;
        if let Some(before) = before {
            let changed = before.is_none_or(|b| {
                self.hs
                    .get(&handle, id)
                    .is_none_or(|e| !super::super::asap::same_for_users(&b, &e.pe))
            });
            if changed {
                self.pool_changed(&handle);
            }
        }
        if let Some(bk) = self.hs.bookkeeping_mut(&handle, id) {
            bk.conn = None;
            bk.last_keepalive_sent = None;
            bk.last_keepalive_ack = None;
            bk.expires_at = life.and_then(|d| now.checked_add(d));
        }
        // Lifetime only (not ours).
        self.arm_keepalive(now, &handle, id);
        Ok(outcome == RegisterOutcome::Added)
    }

    /// Answer a refused update or table entry with ENRP_ERROR carrying `cause`.
    pub(super) fn refuse_update(
        &mut self,
        from: ServerId,
        conn: Option<ConnId>,
        handle: PoolHandle,
        pe_id: PeId,
        cause: Cause,
    ) {
        self.counters.enrp.updates_refused += 1;
        let code = cause.code;
        let dest = conn
            .map(Dest::Conn)
            .or_else(|| self.peer_index(from).and_then(|i| self.peer_dest(i)));
        if let Some(dest) = dest {
            self.enrp_error(dest, from, vec![cause]);
        }
        self.enrp_event(EnrpEvent::UpdateRefused {
            peer: from,
            handle,
            pe_id,
            cause: code,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_handle_update(
        &mut self,
        now: Instant,
        from: ServerId,
        conn: Option<ConnId>,
        takeover: bool,
        action: UpdateAction,
        handle: PoolHandle,
        pe: PoolElement,
    ) {
        let id = pe.id;
        if action == UpdateAction::ADD_PE {
            // RSPLIB: an ADD_PE naming us as home is ignored.
            if pe.home_registrar == self.server_id {
                self.counters.enrp.updates_ignored += 1;
                return;
            }
            let endpoint = self.pe_endpoint(&pe);
            let stored = pe.clone();
            let result = self.apply_pe(now, from, handle.clone(), pe);
            if let Ok(new) = result {
                let mut pe = stored;
                pe.home_registrar = from;
                self.enrp_event(EnrpEvent::PeLearned {
                    peer: from,
                    handle: handle.clone(),
                    pe,
                    new,
                });
            }
            match result {
                Err(cause) => self.refuse_update(from, conn, handle, id, cause),
                Ok(_) if takeover && self.cfg.enrp.takeover_suggestion => {
                    // Takeover suggestion: claim the PE; it re-registers here.
                    if let Some(ep) = endpoint {
                        let msg = AsapMessage::EndpointKeepAlive {
                            home: true,
                            server_id: self.server_id,
                            handle,
                            pe_id: Some(id),
                        };
                        self.send(Dest::Endpoint(ep), &msg);
                    }
                }
                Ok(_) => {}
            }
        } else if action == UpdateAction::DEL_PE {
            let home = self.hs.get(&handle, id).map(|e| e.pe.home_registrar);
            match home {
                Some(h) if h == from => {
                    self.remove_pe(&handle, id, RemovalReason::PeerUpdate);
                }
                Some(_) => self.counters.enrp.updates_ignored += 1,
                None => {}
            }
        } else {
            // An unknown action: refused as an invalid value.
            self.refuse_update(
                from,
                conn,
                handle,
                id,
                Cause::new(CauseCode::INVALID_VALUES),
            );
        }
    }

    /// Adopted PEs (a takeover): keep-alive with H = 1 to each PE's ASAP transport. The
    /// ACK wait (the keep-alive timeout) starts when the keep-alive leaves: at once when
    /// a connection we opened to that endpoint is up, else when the shell reports it
    /// `Connected` ([`Self::claim_connected`]); meanwhile only the PE's lifetime runs.
    pub(super) fn claim_pes(&mut self, now: Instant, pes: &[(PoolHandle, PeId)]) {
        let timeout = self.cfg.keepalive_timeout.max(MIN_PERIOD);
        let mut sources = BTreeSet::new();
        for (handle, id) in pes {
            let Some(e) = self.hs.get(handle, *id) else {
                continue;
            };
            let endpoint = self.pe_endpoint(&e.pe);
            if let Some(s) = source_of(&e.pe) {
                sources.insert((handle.clone(), *id, s));
            }
            if let Some(bk) = self.hs.bookkeeping_mut(handle, *id) {
                bk.conn = None;
                bk.last_keepalive_sent = Some(now);
                bk.last_keepalive_ack = None;
            }
            let up = endpoint.as_ref().is_some_and(|ep| {
                self.opened
                    .iter()
                    .any(|(c, e)| e == ep && self.conns.contains(c))
            });
            match &endpoint {
                Some(ep) if !up => {
                    // Waiting for the connection: the lifetime only.
                    self.arm(handle, *id, None);
                    let waiting = self.enrp.claims.entry(ep.clone()).or_default();
                    waiting.push((handle.clone(), *id));
                }
                _ => self.arm(
                    handle,
                    *id,
                    Some((later(now, timeout), TimerKind::KeepAliveTimeout)),
                ),
            }
            let Some(ep) = endpoint else {
                continue;
            };
            let msg = AsapMessage::EndpointKeepAlive {
                home: true,
                server_id: self.server_id,
                handle: handle.clone(),
                pe_id: Some(*id),
            };
            self.send(Dest::Endpoint(ep), &msg);
        }
        for (_, _, s) in sources {
            *self.source_pes.entry(s).or_insert(0) += 1;
        }
    }

    /// The adopted PEs at `endpoint` whose claim is still outstanding: ours, no ACK, no
    /// connection bound yet.
    fn take_claims(&mut self, endpoint: &Endpoint) -> Vec<(PoolHandle, PeId)> {
        let me = self.server_id;
        let waiting = self.enrp.claims.remove(endpoint).unwrap_or_default();
        waiting
            .into_iter()
            .filter(|(h, id)| {
                self.hs.get(h, *id).is_some_and(|e| {
                    e.pe.home_registrar == me
                        && e.bookkeeping.conn.is_none()
                        && Self::keepalive_outstanding(&e.bookkeeping)
                })
            })
            .collect()
    }

    /// The connection to an endpoint is up: the keep-alives waiting for it left now, so
    /// their ACK wait starts now.
    pub(in crate::registrar) fn claim_connected(&mut self, now: Instant, endpoint: &Endpoint) {
        let timeout = self.cfg.keepalive_timeout.max(MIN_PERIOD);
        for (handle, id) in self.take_claims(endpoint) {
            if let Some(bk) = self.hs.bookkeeping_mut(&handle, id) {
                bk.last_keepalive_sent = Some(now);
            }
            self.arm(
                &handle,
                id,
                Some((later(now, timeout), TimerKind::KeepAliveTimeout)),
            );
        }
    }

    /// The connection to an endpoint could not be opened: a failed keep-alive for each
    /// adopted PE waiting there.
    pub(in crate::registrar) fn claim_failed(&mut self, endpoint: &Endpoint) {
        for (handle, id) in self.take_claims(endpoint) {
            self.remove_pe(&handle, id, RemovalReason::KeepAliveTimeout);
        }
    }

    /// An adopted PE acknowledged on the connection we opened to it: it is its
    /// registration connection from now on.
    pub(in crate::registrar) fn adopt_conn(&mut self, conn: ConnId, handle: &PoolHandle, id: PeId) {
        let old = self
            .hs
            .bookkeeping_mut(handle, id)
            .and_then(|bk| bk.conn.replace(conn.0));
        if let Some(old) = old.filter(|o| *o != conn.0) {
            self.unindex_conn(ConnId(old), handle, id);
        }
        let set = self.conn_pes.entry(conn).or_default();
        let first = set.is_empty();
        set.insert((handle.clone(), id));
        if first {
            self.limits.set_owner(conn, true);
        }
    }
}
