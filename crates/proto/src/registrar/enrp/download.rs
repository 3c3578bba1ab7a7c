//! Start-up download from a mentor (List Request/Response, Handle Table Request/Response
//! with W = 0) and the download sessions we serve (W = 0 or W = 1, M = 1 while more
//! follows).

use std::time::Instant;

use rserpool_wire::codec::{pad4, pool_element_len};
use rserpool_wire::{
    EnrpMessage, PeId, PoolElement, PoolEntry, PoolHandle, ServerId, ServerInfo, UpdateAction,
};

use super::peers::{endpoint_of, transport_of};
use super::{EnrpEvent, EnrpPhase, PeerState, MAX_RESPONSE_BYTES};
use crate::common::later;
use crate::io::{ConnId, Dest, RecvMeta};
use crate::registrar::{Registrar, RegistrarTimer};

/// Where a download session we serve continues.
#[derive(Debug)]
pub(super) enum Session {
    /// W = 0: the whole handlespace, after this PE (pool handle, PE ID order).
    All(Option<(PoolHandle, PeId)>),
    /// W = 1: the PEs the requester's peer (we) owned at its first request, from `pos`.
    Own {
        keys: Vec<(PoolHandle, PeId)>,
        pos: usize,
    },
}

impl Session {
    fn own_only(&self) -> bool {
        matches!(self, Session::Own { .. })
    }
}

/// Header of an ENRP message with sender and receiver IDs.
const ENRP_HEADER: usize = 12;

fn handle_tlv_len(h: &PoolHandle) -> usize {
    pad4(4 + h.len())
}

/// Accumulates one response: whole PEs within the count and byte limits.
struct Page {
    pools: Vec<PoolEntry>,
    count: usize,
    bytes: usize,
    max: usize,
}

impl Page {
    fn new(max: usize) -> Self {
        Self {
            pools: Vec::new(),
            count: 0,
            bytes: ENRP_HEADER,
            max: max.max(1),
        }
    }
    /// Add a PE; false (nothing added) when the page is full.
    fn push(&mut self, handle: &PoolHandle, pe: PoolElement) -> bool {
        let same = self.pools.last().is_some_and(|p| &p.handle == handle);
        let need = pool_element_len(&pe) + if same { 0 } else { handle_tlv_len(handle) };
        if self.count >= self.max || (self.count > 0 && self.bytes + need > MAX_RESPONSE_BYTES) {
            return false;
        }
        self.count += 1;
        self.bytes += need;
        if same {
            if let Some(p) = self.pools.last_mut() {
                p.pes.push(pe);
            }
        } else {
            self.pools.push(PoolEntry {
                handle: handle.clone(),
                pes: vec![pe],
            });
        }
        true
    }
}

impl Registrar {
    /// Start-up: `id` is our mentor. List Request and Handle Table Request (W = 0).
    pub(super) fn choose_mentor(&mut self, now: Instant, id: ServerId) {
        self.enrp.phase = EnrpPhase::Synchronizing;
        self.enrp.mentor = Some(id);
        self.enrp.mentors_tried.insert(id);
        self.enrp.synced_pes = 0;
        self.timers.cancel(&RegistrarTimer::MentorDiscovery);
        if let Some(i) = self.peer_index(id) {
            self.enrp.peers[i].mentor = true;
        }
        self.enrp_event(EnrpEvent::MentorChosen { server_id: id });
        let me = self.server_id;
        self.send_to_peer(
            id,
            &EnrpMessage::ListRequest {
                sender: me,
                receiver: id,
            },
        );
        self.send_to_peer(
            id,
            &EnrpMessage::HandleTableRequest {
                own_children_only: false,
                sender: me,
                receiver: id,
            },
        );
        let t = later(now, self.cfg.enrp.max_time_no_response);
        self.timers.set(RegistrarTimer::Request(id), t);
    }

    /// The mentor rejected, did not answer or died: another identified peer, else alone.
    pub(super) fn mentor_failed(&mut self, now: Instant) {
        if let Some(m) = self.enrp.mentor.take() {
            self.timers.cancel(&RegistrarTimer::Request(m));
            if let Some(i) = self.peer_index(m) {
                self.enrp.peers[i].mentor = false;
            }
        }
        let next = self
            .enrp
            .peers
            .iter()
            .find(|p| {
                p.id.0 != 0
                    && p.state == PeerState::Active
                    && !self.enrp.mentors_tried.contains(&p.id)
            })
            .map(|p| p.id);
        match next {
            Some(id) => self.choose_mentor(now, id),
            None => self.finish_sync(None),
        }
    }

    pub(super) fn finish_sync(&mut self, mentor: Option<ServerId>) {
        self.enrp.phase = EnrpPhase::Serving;
        self.enrp.mentor = None;
        self.timers.cancel(&RegistrarTimer::MentorDiscovery);
        let pes = self.enrp.synced_pes;
        self.enrp_event(EnrpEvent::SyncDone { mentor, pes });
    }

    /// Our Handle Table Request to `id` was not answered in time.
    pub(super) fn request_timed_out(&mut self, now: Instant, id: ServerId) {
        if self.enrp.mentor == Some(id) && self.enrp.phase == EnrpPhase::Synchronizing {
            self.mentor_failed(now);
        } else if self.enrp.resyncs.remove(&id).is_some() {
            // Abandoned: the marks go, nothing is purged (the next audit tries again).
        }
    }

    pub(super) fn on_list_request(&mut self, from: ServerId, conn: Option<ConnId>) {
        let servers: Vec<ServerInfo> = self
            .enrp
            .peers
            .iter()
            .filter(|p| p.id.0 != 0 && p.id != from && p.state != PeerState::TakingOver)
            .filter_map(|p| {
                let transport = transport_of(p.endpoint.as_ref()?)?;
                Some(ServerInfo {
                    server_id: p.id,
                    transport,
                })
            })
            .collect();
        let msg = EnrpMessage::ListResponse {
            reject: false,
            sender: self.server_id,
            receiver: from,
            servers,
        };
        match conn {
            Some(c) => self.enrp_send(Dest::Conn(c), &msg),
            None => {
                self.send_to_peer(from, &msg);
            }
        }
    }

    pub(super) fn on_list_response(
        &mut self,
        now: Instant,
        from: ServerId,
        meta: &RecvMeta,
        reject: bool,
        servers: Vec<ServerInfo>,
    ) {
        if reject || self.enrp.mentor != Some(from) {
            if !reject {
                self.counters.enrp.unsolicited += 1;
            }
            return;
        }
        for si in servers {
            if si.server_id == self.server_id || si.server_id.0 == 0 {
                continue;
            }
            if self.peer_index(si.server_id).is_some() {
                continue;
            }
            // A learned peer: identified now, asked for its presence.
            if endpoint_of(&si, meta).is_none() {
                continue;
            }
            if let Some(i) = self.identify(now, si.server_id, None, meta, Some(&si)) {
                let sctp = self.enrp.peers[i].sctp;
                let msg = self.presence_to(si.server_id, true, sctp);
                if let Some(dest) = self.peer_dest(i) {
                    self.enrp_send(dest, &msg);
                }
                let t = later(now, self.cfg.enrp.max_time_last_heard);
                self.timers.set(RegistrarTimer::LastHeard(si.server_id), t);
            }
        }
    }

    /// A peer asks for (the next part of) our handlespace (W = 0) or of our own PEs (W = 1).
    pub(super) fn on_handle_table_request(
        &mut self,
        now: Instant,
        from: ServerId,
        conn: Option<ConnId>,
        own_only: bool,
    ) {
        let session = match self.enrp.sessions.remove(&from) {
            Some(s) if s.own_only() == own_only => s,
            Some(_) => {
                // One session per requester: asking with the other W starts over.
                self.counters.guards.download_sessions_restarted += 1;
                self.new_session(own_only)
            }
            _ => self.new_session(own_only),
        };
        self.serve_table_page(now, from, conn, session);
    }

    fn new_session(&self, own_only: bool) -> Session {
        if own_only {
            Session::Own {
                keys: self
                    .hs
                    .owned_by(self.server_id)
                    .map(|(h, e)| (h.clone(), e.pe.id))
                    .collect(),
                pos: 0,
            }
        } else {
            Session::All(None)
        }
    }

    fn serve_table_page(
        &mut self,
        now: Instant,
        from: ServerId,
        conn: Option<ConnId>,
        session: Session,
    ) {
        let sctp = self
            .peer_index(from)
            .is_some_and(|i| self.enrp.peers[i].sctp);
        let (pools, next) = self.table_page(session, sctp);
        let more = next.is_some();
        let msg = EnrpMessage::HandleTableResponse {
            reject: false,
            more,
            sender: self.server_id,
            receiver: from,
            pools,
        };
        match conn {
            Some(c) => self.enrp_send(Dest::Conn(c), &msg),
            None => {
                self.send_to_peer(from, &msg);
            }
        }
        match next {
            Some(s) => {
                self.enrp.sessions.insert(from, s);
                let t = later(now, self.cfg.enrp.download_session_timeout);
                self.timers.set(RegistrarTimer::Session(from), t);
            }
            None => {
                self.timers.cancel(&RegistrarTimer::Session(from));
            }
        }
    }

    /// One response's worth of PEs from `session`, and the session to continue (`None`:
    /// this is the last part). O(page + log n).
    fn table_page(&self, session: Session, sctp: bool) -> (Vec<PoolEntry>, Option<Session>) {
        let mut page = Page::new(self.cfg.enrp.max_pes_per_response);
        match session {
            Session::All(cursor) => {
                let handles: Box<dyn Iterator<Item = &PoolHandle>> = match &cursor {
                    Some((h, _)) => Box::new(self.hs.pools_from(h)),
                    None => Box::new(self.hs.pools()),
                };
                let mut last: Option<(PoolHandle, PeId)> = None;
                for h in handles {
                    let after = cursor.as_ref().filter(|(ch, _)| ch == h).map(|(_, id)| *id);
                    for e in self.hs.pool_entries_after(h, after) {
                        let pe = self.pe_for_peer(&e.pe, sctp);
                        if !page.push(h, pe) {
                            return (page.pools, last.map(|c| Session::All(Some(c))));
                        }
                        last = Some((h.clone(), e.pe.id));
                    }
                }
                (page.pools, None)
            }
            Session::Own { keys, mut pos } => {
                while pos < keys.len() {
                    let (h, id) = &keys[pos];
                    if let Some(e) = self.hs.get(h, *id) {
                        if e.pe.home_registrar == self.server_id {
                            let pe = self.pe_for_peer(&e.pe, sctp);
                            if !page.push(h, pe) {
                                return (page.pools, Some(Session::Own { keys, pos }));
                            }
                        }
                    }
                    pos += 1;
                }
                (page.pools, None)
            }
        }
    }

    /// `from` lists as its own a PE that we own too (a false takeover during a
    /// partition leaves two homes). When both re-synchronise with each other at once,
    /// "ownership moves to the sender" would swap the claims, each side would then purge
    /// the PE as no longer listed by its new owner, and the PE would be gone everywhere.
    /// So the tie is broken once, the same way on both sides: the registrar the takeover
    /// election prefers keeps the PE and tells the other with an ADD_PE (which moves it
    /// there); the other yields. True when we keep it (the entry is then skipped).
    fn keeps_contested(&mut self, handle: &PoolHandle, id: PeId, from: ServerId) -> bool {
        let ours = self
            .hs
            .get(handle, id)
            .is_some_and(|e| e.pe.home_registrar == self.server_id);
        if !ours
            || !self
                .cfg
                .enrp
                .takeover_election
                .prefers(self.server_id, from)
        {
            return false;
        }
        self.counters.enrp.contested_kept += 1;
        let sctp = self
            .peer_index(from)
            .is_some_and(|i| self.enrp.peers[i].sctp);
        if let Some(e) = self.hs.get(handle, id) {
            let msg = EnrpMessage::HandleUpdate {
                takeover: false,
                sender: self.server_id,
                receiver: from,
                action: UpdateAction::ADD_PE,
                handle: handle.clone(),
                pe: self.pe_for_peer(&e.pe, sctp),
            };
            self.send_to_peer(from, &msg);
        }
        true
    }

    /// A part of a peer's handlespace: our mentor's download or a re-synchronisation.
    pub(super) fn on_handle_table_response(
        &mut self,
        now: Instant,
        from: ServerId,
        conn: Option<ConnId>,
        reject: bool,
        more: bool,
        pools: Vec<PoolEntry>,
    ) {
        let mentor = self.enrp.mentor == Some(from) && self.enrp.phase == EnrpPhase::Synchronizing;
        let resync = self.enrp.resyncs.contains_key(&from);
        if !mentor && !resync {
            self.counters.enrp.unsolicited += 1;
            return;
        }
        if reject {
            if mentor {
                self.mentor_failed(now);
            } else {
                self.enrp.resyncs.remove(&from);
                self.timers.cancel(&RegistrarTimer::Request(from));
            }
            return;
        }
        let mut received = 0usize;
        for pool in pools {
            for pe in pool.pes {
                received += 1;
                let owner = if mentor { pe.home_registrar } else { from };
                if owner == self.server_id || owner.0 == 0 {
                    continue;
                }
                if resync {
                    if let Some((marks, _)) = self.enrp.resyncs.get_mut(&from) {
                        marks.remove(&(pool.handle.clone(), pe.id));
                    }
                    if self.keeps_contested(&pool.handle, pe.id, from) {
                        continue;
                    }
                }
                let id = pe.id;
                if let Err(cause) = self.apply_pe(now, owner, pool.handle.clone(), pe) {
                    self.refuse_update(from, conn, pool.handle.clone(), id, cause);
                }
            }
        }
        if mentor {
            self.enrp.synced_pes += received;
        } else if let Some((_, n)) = self.enrp.resyncs.get_mut(&from) {
            *n += received;
        }
        let own_only = !mentor;
        if more {
            self.send_to_peer(
                from,
                &EnrpMessage::HandleTableRequest {
                    own_children_only: own_only,
                    sender: self.server_id,
                    receiver: from,
                },
            );
            let t = later(now, self.cfg.enrp.max_time_no_response);
            self.timers.set(RegistrarTimer::Request(from), t);
            return;
        }
        self.timers.cancel(&RegistrarTimer::Request(from));
        if mentor {
            if let Some(i) = self.peer_index(from) {
                self.enrp.peers[i].mentor = true;
            }
            self.finish_sync(Some(from));
        } else {
            self.finish_resync(from);
        }
    }
}
