//! [`SessionEcho`]: a session PE with an echo application, as one core for the world.
//!
//! It wraps a [`SessionServer`]: every application message is sent back unchanged (same
//! PPID) and then acknowledged, in that order (so a PU that saw the ACK saw the answer);
//! every `cookie_every` messages of a session it sends a cookie `"<name>:<count>"`. Its
//! events are the server's events, passed through after the application acted on them.

use std::collections::VecDeque;
use std::time::Instant;

use rserpool_proto::io::{ConnId, Core, RecvMeta, Transmit, TransportCommand, TransportEvent};
use rserpool_proto::{ServerCommand, ServerEvent, SessionServer, SessionServerConfig};

/// What the echo application does besides echoing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoConfig {
    /// The session server's configuration (business card, auto-ack: leave it off, the
    /// application acks after echoing).
    pub server: SessionServerConfig,
    /// Send a cookie every this many messages of a session (0: never).
    pub cookie_every: u32,
    /// Name used in the cookies.
    pub name: String,
}

/// A [`SessionServer`] plus an echo application (see the module docs).
#[derive(Debug)]
pub struct SessionEcho {
    server: SessionServer,
    config: EchoConfig,
    events: VecDeque<ServerEvent>,
    /// Messages echoed per session.
    counts: std::collections::BTreeMap<ConnId, u32>,
}

impl SessionEcho {
    pub fn new(config: EchoConfig, rng_seed: u64) -> Self {
        Self {
            server: SessionServer::new(config.server.clone(), rng_seed),
            config,
            events: VecDeque::new(),
            counts: Default::default(),
        }
    }
    pub fn server(&self) -> &SessionServer {
        &self.server
    }

    /// Let the application act on what the server reported.
    fn react(&mut self) {
        while let Some(ev) = self.server.poll_event() {
            match &ev {
                ServerEvent::Data {
                    session,
                    tsn,
                    ppid,
                    data,
                } => {
                    // Cannot fail: the same PPID and size the PU could send.
                    let _ = self.server.send(*session, *ppid, data.clone());
                    self.server.ack(*session, *tsn);
                    let n = self.counts.entry(*session).or_default();
                    *n += 1;
                    let every = self.config.cookie_every;
                    if every > 0 && n.is_multiple_of(every) {
                        let cookie = format!("{}:{}", self.config.name, n).into_bytes();
                        self.server.send_cookie(*session, cookie);
                    }
                }
                ServerEvent::Closed { session } => {
                    self.counts.remove(session);
                }
                _ => {}
            }
            self.events.push_back(ev);
        }
    }
}

impl Core for SessionEcho {
    type Event = ServerEvent;
    type Command = ServerCommand;

    fn handle_message(&mut self, now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        self.server.handle_message(now, conn, meta, bytes);
        self.react();
    }
    fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, bytes: &[u8]) {
        self.server.handle_datagram(now, meta, bytes);
        self.react();
    }
    fn handle_transport(&mut self, now: Instant, event: TransportEvent) {
        self.server.handle_transport(now, event);
        self.react();
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
        self.react();
    }
    fn command(&mut self, now: Instant, cmd: ServerCommand) {
        self.server.command(now, cmd);
        self.react();
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.server.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }
    fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }
    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.server.poll_command()
    }
}
