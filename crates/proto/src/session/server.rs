//! [`SessionServer`]: the pool element's side of its sessions, one per accepted
//! connection (see the module docs of [`crate::session`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rserpool_wire::{AsapMessage, PoolElement, PoolHandle, Protocol};

use super::{
    check_message, SessionError, PPID_SESSION_ACK, PPID_SESSION_HEARTBEAT,
    PPID_SESSION_HEARTBEAT_ACK,
};
use crate::common::Outbox;
use crate::counters::Counters;
use crate::io::{ConnId, Core, Dest, RecvMeta, Transmit, TransportCommand, TransportEvent};

/// Configuration of a [`SessionServer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionServerConfig {
    /// Acknowledge each application message as soon as it is delivered to the application
    /// (the mapping draft's ACK); default false: the application calls
    /// [`SessionServer::ack`] when it has dealt with the message.
    pub auto_ack: bool,
    /// The business card sent to every new session (§1.12: a PE always sends one): this
    /// PE's pool handle and its preferred failover list. `None`: no card (until the
    /// application sends one with [`SessionServer::send_business_card`]).
    pub business_card: Option<(PoolHandle, Vec<PoolElement>)>,
}

/// Requests from the application (the same as the inherent methods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCommand {
    Send {
        session: ConnId,
        ppid: u32,
        data: Vec<u8>,
    },
    SendCookie {
        session: ConnId,
        cookie: Vec<u8>,
    },
    SendBusinessCard {
        session: ConnId,
        pool: PoolHandle,
        pes: Vec<PoolElement>,
    },
    Ack {
        session: ConnId,
        tsn: u32,
    },
    Close(ConnId),
}

/// What happened on the PE's sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A PU opened a session (its connection is the session id).
    Accepted { session: ConnId, peer: SocketAddr },
    /// The PU echoed a cookie: it failed over to us from another PE.
    CookieEcho { session: ConnId, cookie: Vec<u8> },
    /// The PU (itself a PE) sent its business card.
    BusinessCard {
        session: ConnId,
        pool: PoolHandle,
        pes: Vec<PoolElement>,
    },
    /// Application data; `tsn` numbers the session's application messages from 0 (pass it
    /// to [`SessionServer::ack`]).
    Data {
        session: ConnId,
        tsn: u32,
        ppid: u32,
        data: Vec<u8>,
    },
    /// The PU echoed a cookie that does not carry this PE's signature (cookie
    /// authentication on, [`SessionServer::set_cookie_key`]): not handed to the
    /// application; counted ([`SessionServer::cookies_refused`]); the session is closed
    /// ([`ServerEvent::Closed`] follows).
    CookieRefused {
        session: ConnId,
        reason: CookieRefusal,
    },
    /// The session's connection is gone.
    Closed { session: ConnId },
}

/// Why a cookie echo was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieRefusal {
    /// Shorter than a signature: no signed cookie at all.
    Unsigned,
    /// The signature does not match (altered, forged, or signed with another key).
    BadSignature,
}

impl std::fmt::Display for CookieRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CookieRefusal::Unsigned => "too short to carry a signature",
            CookieRefusal::BadSignature => "bad signature",
        })
    }
}

/// Length of the tag a keyed PE appends to each cookie (HMAC-SHA256).
pub const COOKIE_TAG_LEN: usize = 32;

/// Domain separation of the cookie MAC (a key shared for something else signs nothing
/// here).
const COOKIE_MAC_CONTEXT: &[u8] = b"rserpool session cookie v1\0";

/// The cookie key of a pool's PEs: signs cookies, checks echoes.
#[derive(Clone)]
pub struct CookieKey(ring::hmac::Key);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key from shared secret bytes (use at least 32 random bytes).
    pub fn new(secret: &[u8]) -> Self {
        CookieKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }
    fn tag(&self, cookie: &[u8]) -> ring::hmac::Tag {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        ctx.update(COOKIE_MAC_CONTEXT);
        ctx.update(cookie);
        ctx.sign()
    }
    /// `cookie` followed by its tag (what goes to the PU).
    pub fn sign(&self, mut cookie: Vec<u8>) -> Vec<u8> {
        let tag = self.tag(&cookie);
        cookie.extend_from_slice(tag.as_ref());
        cookie
    }
    /// The cookie of a signed echo, or why not (the tag is compared in constant time).
    pub fn verify(&self, mut echo: Vec<u8>) -> Result<Vec<u8>, CookieRefusal> {
        if echo.len() < COOKIE_TAG_LEN {
            return Err(CookieRefusal::Unsigned);
        }
        let at = echo.len() - COOKIE_TAG_LEN;
        let mut ctx = COOKIE_MAC_CONTEXT.to_vec();
        ctx.extend_from_slice(&echo[..at]);
        ring::hmac::verify(&self.0, &ctx, &echo[at..]).map_err(|_| CookieRefusal::BadSignature)?;
        echo.truncate(at);
        Ok(echo)
    }
}

#[derive(Debug)]
struct ServerSession {
    /// TSN of the next application message.
    rx_tsn: u32,
}

/// The PE side of the session layer: every accepted connection is a session.
#[derive(Debug)]
pub struct SessionServer {
    config: SessionServerConfig,
    counters: Counters,
    outbox: Outbox,
    events: VecDeque<ServerEvent>,
    commands: VecDeque<TransportCommand>,
    sessions: BTreeMap<ConnId, ServerSession>,
    cookie_key: Option<CookieKey>,
    cookies_refused: u64,
}

impl SessionServer {
    /// The server has no timers and draws no random numbers; the seed is for the common
    /// core shape.
    pub fn new(config: SessionServerConfig, _rng_seed: u64) -> Self {
        Self {
            config,
            counters: Counters::default(),
            outbox: Outbox::default(),
            events: VecDeque::new(),
            commands: VecDeque::new(),
            sessions: BTreeMap::new(),
            cookie_key: None,
            cookies_refused: 0,
        }
    }
    /// Cookie authentication (procedures §1.11.4, RFC 5355 threat 2.16): with a key, every
    /// cookie sent carries an HMAC-SHA256 tag ([`COOKIE_TAG_LEN`] bytes after the
    /// application's cookie) and every echo must carry a valid one — the application
    /// sees the cookie without the tag; an echo without a valid tag is refused
    /// ([`ServerEvent::CookieRefused`], then the session closes). The pool's PEs share
    /// the key. `None` (the default): cookies go out as the application made them and
    /// echoes are handed over as they come (RSPLIB's PUs echo cookies opaquely).
    pub fn set_cookie_key(&mut self, key: Option<CookieKey>) {
        self.cookie_key = key;
    }
    /// Cookie echoes refused so far.
    pub fn cookies_refused(&self) -> u64 {
        self.cookies_refused
    }
    /// Replace the business card sent to new sessions and, if it changed, send it to
    /// every open session too (either side may send a new card any time, §1.12).
    pub fn update_business_card(&mut self, card: Option<(PoolHandle, Vec<PoolElement>)>) {
        if card == self.config.business_card {
            return;
        }
        self.config.business_card = card.clone();
        if let Some((pool, pes)) = card {
            for session in self.sessions() {
                self.send_business_card(session, pool.clone(), pes.clone());
            }
        }
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The open sessions.
    pub fn sessions(&self) -> Vec<ConnId> {
        self.sessions.keys().copied().collect()
    }
    /// Replace the business card sent to new sessions.
    pub fn set_business_card(&mut self, card: Option<(PoolHandle, Vec<PoolElement>)>) {
        self.config.business_card = card;
    }

    /// Send application data to the PU of `session`. A reserved PPID, a message over
    /// [`super::MAX_MESSAGE_LEN`] or an unknown session is refused.
    pub fn send(&mut self, session: ConnId, ppid: u32, data: Vec<u8>) -> Result<(), SessionError> {
        check_message(ppid, data.len())?;
        if !self.sessions.contains_key(&session) {
            return Err(SessionError::NoSession);
        }
        self.outbox
            .send_data(&mut self.counters, Dest::Conn(session), ppid, data);
        Ok(())
    }
    /// Send a cookie (the state a PE taking over the session needs); the PU keeps the
    /// latest.
    pub fn send_cookie(&mut self, session: ConnId, cookie: Vec<u8>) {
        if self.sessions.contains_key(&session) {
            let cookie = match &self.cookie_key {
                Some(k) => k.sign(cookie),
                None => cookie,
            };
            let msg = AsapMessage::Cookie { cookie };
            self.outbox
                .send(&mut self.counters, Dest::Conn(session), &msg);
        }
    }
    /// Send a business card: the PEs the PU should fail over to, in order. A card needs
    /// at least one PE (RFC 5352 §2.2.11; decoders refuse one without): with an empty list
    /// nothing is sent.
    pub fn send_business_card(&mut self, session: ConnId, pool: PoolHandle, pes: Vec<PoolElement>) {
        if self.sessions.contains_key(&session) && !pes.is_empty() {
            let msg = AsapMessage::BusinessCard {
                handle: pool,
                policy: None,
                pes,
            };
            self.outbox
                .send(&mut self.counters, Dest::Conn(session), &msg);
        }
    }
    /// Acknowledge every application message of `session` up to and including `tsn`.
    pub fn ack(&mut self, session: ConnId, tsn: u32) {
        if self.sessions.contains_key(&session) {
            self.outbox.send_data(
                &mut self.counters,
                Dest::Conn(session),
                PPID_SESSION_ACK,
                tsn.to_be_bytes().to_vec(),
            );
        }
    }
    /// Close the session's connection once what is queued is written.
    pub fn close(&mut self, session: ConnId) {
        if self.sessions.remove(&session).is_some() {
            self.commands.push_back(TransportCommand::Close(session));
            self.events.push_back(ServerEvent::Closed { session });
        }
    }

    fn open(&mut self, session: ConnId, peer: SocketAddr) {
        if self.sessions.contains_key(&session) {
            return;
        }
        self.sessions.insert(session, ServerSession { rx_tsn: 0 });
        self.events
            .push_back(ServerEvent::Accepted { session, peer });
        if let Some((pool, pes)) = self.config.business_card.clone() {
            self.send_business_card(session, pool, pes);
        }
    }
}

impl Core for SessionServer {
    type Event = ServerEvent;
    type Command = ServerCommand;

    fn handle_message(&mut self, _now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        // A message before (or without) `Accepted` opens the session too.
        self.open(conn, meta.peer);
        match meta.protocol {
            Protocol::Asap => {
                let Some(msg) = self.outbox.accept(&mut self.counters, conn, bytes) else {
                    return;
                };
                match msg {
                    AsapMessage::CookieEcho { cookie } => {
                        let checked = match &self.cookie_key {
                            Some(k) => k.verify(cookie),
                            None => Ok(cookie),
                        };
                        match checked {
                            Ok(cookie) => self.events.push_back(ServerEvent::CookieEcho {
                                session: conn,
                                cookie,
                            }),
                            Err(reason) => {
                                self.cookies_refused += 1;
                                self.events.push_back(ServerEvent::CookieRefused {
                                    session: conn,
                                    reason,
                                });
                                self.close(conn);
                            }
                        }
                    }
                    AsapMessage::BusinessCard { handle, pes, .. } => {
                        self.events.push_back(ServerEvent::BusinessCard {
                            session: conn,
                            pool: handle,
                            pes,
                        })
                    }
                    _ => {}
                }
            }
            Protocol::Data(PPID_SESSION_HEARTBEAT) => {
                self.counters.on_rx(meta.protocol, 0);
                self.outbox.send_data(
                    &mut self.counters,
                    Dest::Conn(conn),
                    PPID_SESSION_HEARTBEAT_ACK,
                    bytes.to_vec(),
                );
            }
            Protocol::Data(PPID_SESSION_HEARTBEAT_ACK | PPID_SESSION_ACK) => {
                self.counters.on_rx(meta.protocol, 0);
            }
            Protocol::Data(ppid) => {
                self.counters.on_rx(meta.protocol, 0);
                let Some(s) = self.sessions.get_mut(&conn) else {
                    return;
                };
                let tsn = s.rx_tsn;
                s.rx_tsn = s.rx_tsn.wrapping_add(1);
                self.events.push_back(ServerEvent::Data {
                    session: conn,
                    tsn,
                    ppid,
                    data: bytes.to_vec(),
                });
                if self.config.auto_ack {
                    self.ack(conn, tsn);
                }
            }
            Protocol::Enrp => self.counters.wrong_protocol += 1,
        }
    }

    fn handle_datagram(&mut self, _now: Instant, _meta: &RecvMeta, _bytes: &[u8]) {}

    fn handle_transport(&mut self, _now: Instant, event: TransportEvent) {
        match event {
            TransportEvent::Accepted { conn, meta } => self.open(conn, meta.peer),
            TransportEvent::Closed { conn } | TransportEvent::SendFailed { conn } => {
                if self.sessions.remove(&conn).is_some() {
                    self.events.push_back(ServerEvent::Closed { session: conn });
                }
            }
            TransportEvent::Connected { .. } | TransportEvent::ConnectFailed { .. } => {}
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn command(&mut self, _now: Instant, cmd: ServerCommand) {
        match cmd {
            ServerCommand::Send {
                session,
                ppid,
                data,
            } => {
                // Refusals are the method's to report; a command has nobody to tell.
                let _ = self.send(session, ppid, data);
            }
            ServerCommand::SendCookie { session, cookie } => self.send_cookie(session, cookie),
            ServerCommand::SendBusinessCard { session, pool, pes } => {
                self.send_business_card(session, pool, pes)
            }
            ServerCommand::Ack { session, tsn } => self.ack(session, tsn),
            ServerCommand::Close(session) => self.close(session),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }
    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.commands.pop_front()
    }
}
