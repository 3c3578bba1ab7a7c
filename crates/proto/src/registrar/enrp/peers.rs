//! The peer list: identification of senders, one connection per peer, where to send.

use std::net::SocketAddr;
use std::time::Instant;

use rserpool_wire::{ServerId, ServerInfo, TransportAddr, TransportKind, TransportUse};

use super::{EnrpEvent, EnrpPhase, PeerState, MAX_PEERS};
use crate::common::later;
use crate::io::{ConnId, Dest, Endpoint, RecvMeta, TransportCommand, TransportProto};
use crate::registrar::{Registrar, RegistrarTimer};

/// One peer registrar.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    /// `ServerId(0)` while unidentified.
    pub(super) id: ServerId,
    pub(super) endpoint: Option<Endpoint>,
    /// Configured (`--peer`): kept (unidentified) when its server goes.
    pub(super) is_static: bool,
    /// The one connection we use with it.
    pub(super) conn: Option<ConnId>,
    pub(super) state: PeerState,
    pub(super) last_heard: Option<Instant>,
    pub(super) checksum_reported: Option<u16>,
    pub(super) mentor: bool,
    /// Its association is SCTP (for the ASAP transport rewrite).
    pub(super) sctp: bool,
}

impl Peer {
    pub(super) fn unidentified(endpoint: Endpoint) -> Self {
        let sctp = endpoint.transport == TransportProto::Sctp;
        Self {
            id: ServerId(0),
            endpoint: Some(endpoint),
            is_static: true,
            conn: None,
            state: PeerState::Unidentified,
            last_heard: None,
            checksum_reported: None,
            mentor: false,
            sctp,
        }
    }
}

/// The endpoint a Server Information names (an unspecified address: the sender's).
pub(super) fn endpoint_of(si: &ServerInfo, meta: &RecvMeta) -> Option<Endpoint> {
    let t = &si.transport;
    let addrs: Vec<SocketAddr> = t
        .addrs
        .iter()
        .map(|a| {
            let ip = if a.is_unspecified() {
                meta.peer.ip()
            } else {
                *a
            };
            SocketAddr::new(ip, t.port)
        })
        .collect();
    match t.kind {
        TransportKind::Tcp => addrs.first().map(|a| Endpoint::tcp(*a)),
        TransportKind::Sctp if !addrs.is_empty() => Some(Endpoint::sctp(addrs)),
        _ => None,
    }
}

/// An endpoint as a transport TLV (List Response).
pub(super) fn transport_of(ep: &Endpoint) -> Option<TransportAddr> {
    let first = ep.primary()?;
    match ep.transport {
        TransportProto::Sctp => Some(TransportAddr::sctp(
            first.port(),
            TransportUse::DATA_ONLY,
            ep.addrs.iter().map(|a| a.ip()).collect(),
        )),
        TransportProto::Tcp | TransportProto::Mptcp => {
            Some(TransportAddr::tcp(first.port(), first.ip()))
        }
        // No TLV names TLS: a TLS peer is reached by its configured tls:// endpoint.
        TransportProto::Udp | TransportProto::Tls => None,
    }
}

impl Registrar {
    pub(super) fn peer_index(&self, id: ServerId) -> Option<usize> {
        if id.0 == 0 {
            return None;
        }
        self.enrp.peers.iter().position(|p| p.id == id)
    }

    /// The peer entry of `sender`: known, an unidentified static peer reached over this
    /// connection or named by this Server Information, or a new one (RFC §2.4).
    pub(super) fn identify(
        &mut self,
        now: Instant,
        sender: ServerId,
        conn: Option<ConnId>,
        meta: &RecvMeta,
        info: Option<&ServerInfo>,
    ) -> Option<usize> {
        let ep = info.and_then(|si| endpoint_of(si, meta));
        if let Some(i) = self.peer_index(sender) {
            if self.enrp.peers[i].endpoint.is_none() && ep.is_some() {
                let p = &mut self.enrp.peers[i];
                p.sctp = ep
                    .as_ref()
                    .is_some_and(|e| e.transport == TransportProto::Sctp);
                p.endpoint = ep.clone();
            }
            // An unidentified static entry that is this peer: its endpoint is the one
            // this Server Information names, or the one of the connection we opened
            // (this message came over it). Merge it into the identified peer.
            let opened = conn.and_then(|c| self.opened.get(&c));
            let dup = self.enrp.peers.iter().position(|p| {
                p.id.0 == 0
                    && p.is_static
                    && ((ep.is_some() && p.endpoint == ep)
                        || (conn.is_some() && p.conn == conn)
                        || (opened.is_some() && p.endpoint.as_ref() == opened))
            });
            if let Some(d) = dup {
                self.merge_static(i, d);
                return self.peer_index(sender);
            }
            return Some(i);
        }
        let cand = self.enrp.peers.iter().position(|p| {
            p.id.0 == 0
                && ((conn.is_some() && p.conn == conn)
                    || (ep.is_some() && p.endpoint == ep)
                    || (conn.is_some()
                        && conn.and_then(|c| self.opened.get(&c)) == p.endpoint.as_ref()))
        });
        let i = match cand {
            Some(i) => {
                let p = &mut self.enrp.peers[i];
                p.id = sender;
                p.state = PeerState::Active;
                i
            }
            None => {
                if !self.cfg.enrp.accept_unlisted_peers {
                    self.counters.enrp.unlisted_dropped += 1;
                    return None;
                }
                if self.enrp.peers.len() >= MAX_PEERS {
                    self.counters.enrp.peers_refused += 1;
                    return None;
                }
                // A static endpoint now answered by another server (a restart): the new
                // server takes the static entry's place.
                let mut is_static = false;
                if let Some(ep) = &ep {
                    for p in &mut self.enrp.peers {
                        if p.is_static && p.endpoint.as_ref() == Some(ep) {
                            p.is_static = false;
                            is_static = true;
                        }
                    }
                }
                let sctp = ep
                    .as_ref()
                    .map_or(meta.transport == TransportProto::Sctp, |e| {
                        e.transport == TransportProto::Sctp
                    });
                self.enrp.peers.push(Peer {
                    id: sender,
                    endpoint: ep.clone(),
                    is_static,
                    conn: None,
                    state: PeerState::Active,
                    last_heard: None,
                    checksum_reported: None,
                    mentor: false,
                    sctp,
                });
                let i = self.enrp.peers.len() - 1;
                if info.is_none() {
                    // RFC 5353 §2.4: ask the newcomer for its Server Information.
                    let dest = conn
                        .map(Dest::Conn)
                        .or_else(|| ep.clone().map(Dest::Endpoint));
                    if let Some(dest) = dest {
                        let msg = self.presence_to(sender, true, sctp);
                        self.enrp_send(dest, &msg);
                    }
                }
                i
            }
        };
        let endpoint = self.enrp.peers[i].endpoint.clone();
        self.enrp_event(EnrpEvent::PeerUp {
            server_id: sender,
            endpoint,
        });
        if !self.timers.is_set(&RegistrarTimer::Heartbeat) {
            self.timers.set(RegistrarTimer::Heartbeat, now);
        }
        if self.enrp.phase == EnrpPhase::Discovering {
            self.choose_mentor(now, sender);
        }
        Some(i)
    }

    /// The unidentified static entry `d` is identified peer `i`: the configured endpoint
    /// stays attached to `i` (it is known to reach the peer), `d` goes.
    fn merge_static(&mut self, i: usize, d: usize) {
        let s = self.enrp.peers[d].clone();
        let p = &mut self.enrp.peers[i];
        p.is_static = true;
        p.sctp = s.sctp;
        p.endpoint = s.endpoint;
        if p.conn.is_none_or(|c| !self.conns.contains(&c)) {
            p.conn = s.conn;
        }
        self.enrp.peers.remove(d);
    }

    /// A message from peer `i` (over `conn`): it is alive.
    pub(super) fn heard(&mut self, now: Instant, i: usize, conn: Option<ConnId>) {
        let id = {
            let p = &mut self.enrp.peers[i];
            p.last_heard = Some(now);
            if p.state == PeerState::Probing {
                p.state = PeerState::Active;
            }
            p.id
        };
        if let Some(c) = conn {
            self.bind_conn(i, c);
        }
        if self.enrp.peers[i].state != PeerState::TakingOver {
            let t = later(now, self.cfg.enrp.max_time_last_heard);
            self.timers.set(RegistrarTimer::LastHeard(id), t);
            self.timers.cancel(&RegistrarTimer::NoResponse(id));
        }
    }

    /// Peer `i` spoke over `c`: make it its connection. With two live connections to one
    /// peer (each side opened one), the one opened by the lower server ID stays and the
    /// other is closed: both sides choose the same. The connection we opened to its
    /// endpoint counts even while we did not use it.
    fn bind_conn(&mut self, i: usize, c: ConnId) {
        if !self.conns.contains(&c) {
            return;
        }
        // Peers are never closed for idleness.
        self.limits.set_owner(c, true);
        let p = &self.enrp.peers[i];
        let mut live: Vec<ConnId> = vec![c];
        if let Some(a) = p.conn.filter(|a| self.conns.contains(a)) {
            live.push(a);
        }
        if let Some(ep) = &p.endpoint {
            live.extend(
                self.opened
                    .iter()
                    .filter(|(x, e)| *e == ep && self.conns.contains(x))
                    .map(|(x, _)| *x),
            );
        }
        live.sort_unstable();
        live.dedup();
        if live.len() == 1 {
            self.enrp.peers[i].conn = Some(c);
            return;
        }
        // The connection opened by the lower ID: ours if we are lower, else theirs.
        let we_lower = self.server_id < p.id;
        let keep = live
            .iter()
            .copied()
            .filter(|x| self.opened.contains_key(x) == we_lower)
            .max()
            .unwrap_or(c);
        self.enrp.peers[i].conn = Some(keep);
        for x in live.into_iter().filter(|x| *x != keep) {
            self.counters.enrp.duplicate_conns_closed += 1;
            self.enrp.cmds.push_back(TransportCommand::Close(x));
        }
    }

    /// Where to send to peer `i`: its connection, else its endpoint.
    pub(super) fn peer_dest(&self, i: usize) -> Option<Dest> {
        let p = &self.enrp.peers[i];
        if let Some(c) = p.conn.filter(|c| self.conns.contains(c)) {
            return Some(Dest::Conn(c));
        }
        p.endpoint.clone().map(Dest::Endpoint)
    }

    /// Send to peer `id` (false when we cannot reach it).
    pub(super) fn send_to_peer(&mut self, id: ServerId, msg: &rserpool_wire::EnrpMessage) -> bool {
        let Some(dest) = self.peer_index(id).and_then(|i| self.peer_dest(i)) else {
            return false;
        };
        self.enrp_send(dest, msg);
        true
    }

    /// Identified peers that are not being taken over.
    pub(super) fn live_peer_ids(&self) -> Vec<ServerId> {
        self.enrp
            .peers
            .iter()
            .filter(|p| p.id.0 != 0 && p.state != PeerState::TakingOver)
            .map(|p| p.id)
            .collect()
    }

    /// A connection we opened is up: a peer's (by endpoint) gets it if it has none.
    pub(in crate::registrar) fn enrp_connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        endpoint: &Endpoint,
    ) {
        self.claim_connected(now, endpoint);
        for p in &mut self.enrp.peers {
            if p.endpoint.as_ref() == Some(endpoint) && p.conn.is_none() {
                p.conn = Some(conn);
            }
        }
    }

    /// A connection is gone: peers forget it.
    pub(in crate::registrar) fn enrp_conn_lost(&mut self, conn: ConnId) {
        for p in &mut self.enrp.peers {
            if p.conn == Some(conn) {
                p.conn = None;
            }
        }
    }

    /// Drop peer `id` from the list (a static one goes back to unidentified).
    pub(super) fn remove_peer(&mut self, now: Instant, id: ServerId) {
        let Some(i) = self.peer_index(id) else {
            return;
        };
        for t in [
            RegistrarTimer::LastHeard(id),
            RegistrarTimer::NoResponse(id),
            RegistrarTimer::Session(id),
            RegistrarTimer::Request(id),
        ] {
            self.timers.cancel(&t);
        }
        self.enrp.sessions.remove(&id);
        self.enrp.resyncs.remove(&id);
        // Close what we still hold to it. A connection that outlived a partition is in
        // TCP's retransmission back-off: after the heal, what either side writes on it
        // arrives seconds late, long enough for a live peer to be declared dead again.
        // Both sides drop a removed peer's connections, so the heal starts on fresh ones.
        let mut stale: Vec<ConnId> = self.enrp.peers[i]
            .conn
            .filter(|c| self.conns.contains(c))
            .into_iter()
            .collect();
        if let Some(ep) = &self.enrp.peers[i].endpoint {
            stale.extend(
                self.opened
                    .iter()
                    .filter(|(x, e)| *e == ep && self.conns.contains(x))
                    .map(|(x, _)| *x),
            );
        }
        stale.sort_unstable();
        stale.dedup();
        for c in stale {
            self.enrp.cmds.push_back(TransportCommand::Close(c));
        }
        let p = &mut self.enrp.peers[i];
        p.conn = None;
        if p.is_static {
            let ep = p.endpoint.clone();
            let sctp = p.sctp;
            *p = match ep {
                Some(ep) => Peer::unidentified(ep),
                None => return,
            };
            p.sctp = sctp;
        } else {
            self.enrp.peers.remove(i);
        }
        self.enrp_event(EnrpEvent::PeerRemoved { server_id: id });
        if self.enrp.mentor == Some(id) {
            self.mentor_failed(now);
        }
    }
}

impl Registrar {
    /// A reload: static peers added or dropped.
    pub(in crate::registrar) fn enrp_reconfigure(&mut self, now: Instant) {
        let wanted = self.cfg.enrp.peers.clone();
        self.enrp.peers.retain_mut(|p| {
            let keep = p.endpoint.as_ref().is_some_and(|e| wanted.contains(e));
            if p.is_static && !keep {
                p.is_static = false;
                return p.id.0 != 0;
            }
            true
        });
        for ep in wanted {
            if let Some(p) = self
                .enrp
                .peers
                .iter_mut()
                .find(|p| p.endpoint.as_ref() == Some(&ep))
            {
                p.is_static = true;
            } else if self.enrp.peers.len() < MAX_PEERS {
                self.enrp.peers.push(Peer::unidentified(ep));
            }
        }
        if !self.enrp.peers.is_empty() && !self.timers.is_set(&RegistrarTimer::Heartbeat) {
            self.timers.set(RegistrarTimer::Heartbeat, now);
        }
    }
}
