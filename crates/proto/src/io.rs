//! The seam between sans-IO cores and the shell that drives them.
//!
//! Every core (`Registrar`, `PoolElement`, `PoolUser`) has the same shape (design §2):
//!
//! ```text
//! handle_message(now, conn, &RecvMeta, bytes)   one whole ASAP/ENRP message
//! handle_transport(now, TransportEvent)         connection up / down / connect failed
//! handle_timeout(now)                           a spurious call is harmless
//! poll_transmit() -> Option<Transmit>           drain after every input
//! poll_timeout()  -> Option<Instant>            earliest deadline
//! poll_event()    -> Option<Event>              what happened, for the application / logs
//! poll_command()  -> Option<TransportCommand>   open / close a connection (default: never)
//! ```
//!
//! Drain order after each input: `poll_transmit` until `None`, then `poll_command` until
//! `None`, then `poll_event` until `None`, then read `poll_timeout`. The shell never
//! interprets message bytes; the core never touches a socket or the clock.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rserpool_wire::Protocol;

/// A connection or association, numbered by the shell (never reused in one run).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Transport protocol of a connection or endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TransportProto {
    /// ASAP/ENRP messages back-to-back on a TCP stream (our default).
    Tcp,
    /// Kernel SCTP, PPID per message (the RFC transport; RSPLIB interop).
    Sctp,
    /// MPTCP: framed like TCP.
    Mptcp,
    /// TLS over TCP: framed like TCP inside the TLS session (RFC 5352 §9).
    Tls,
    /// One message per datagram (announces, presences).
    Udp,
}

impl TransportProto {
    pub fn scheme(self) -> &'static str {
        match self {
            TransportProto::Tcp => "tcp",
            TransportProto::Sctp => "sctp",
            TransportProto::Mptcp => "mptcp",
            TransportProto::Tls => "tls",
            TransportProto::Udp => "udp",
        }
    }
}

/// An endpoint the shell can connect to: transport plus address(es). SCTP endpoints may
/// list several addresses of one multi-homed peer; the first is primary.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Endpoint {
    pub transport: TransportProto,
    pub addrs: Vec<SocketAddr>,
}

impl Endpoint {
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            transport: TransportProto::Tcp,
            addrs: vec![addr],
        }
    }
    pub fn sctp(addrs: Vec<SocketAddr>) -> Self {
        Self {
            transport: TransportProto::Sctp,
            addrs,
        }
    }
    /// Primary address (first one).
    pub fn primary(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.transport.scheme())?;
        for (i, a) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// What the shell knows about a received message.
#[derive(Clone, Debug)]
pub struct RecvMeta {
    /// From the SCTP PPID, or from the listener/port it arrived on for TCP/UDP. Cores
    /// decode by it: ASAP and ENRP messages, or application data (`Protocol::Data`).
    pub protocol: Protocol,
    pub transport: TransportProto,
    /// Primary peer address (source port included).
    pub peer: SocketAddr,
    /// All addresses of the peer (SCTP multi-homing); for TCP/UDP just `peer.ip()`.
    pub peer_addrs: Vec<IpAddr>,
    /// Who the peer proved to be (a verified TLS client certificate); `None` without TLS
    /// or without a client certificate.
    pub identity: Option<std::sync::Arc<PeerIdentity>>,
}

impl RecvMeta {
    /// A single-homed peer (TCP, UDP, one SCTP address) without a proven identity.
    pub fn single_homed(protocol: Protocol, transport: TransportProto, peer: SocketAddr) -> Self {
        Self {
            protocol,
            transport,
            peer,
            peer_addrs: vec![peer.ip()],
            identity: None,
        }
    }
}

/// The names a peer's verified certificate carries: its subjectAltName DNS names and IP
/// addresses, and its subject common name. Access rules match any of them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    pub names: Vec<String>,
}

impl PeerIdentity {
    /// The first name (for logs).
    pub fn primary(&self) -> &str {
        self.names.first().map_or("(unnamed)", String::as_str)
    }
}

/// Where a transmit goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Dest {
    /// An existing connection (e.g. a reply, or a keep-alive on a PE's registration
    /// association). If it is gone the shell reports `TransportEvent::SendFailed`.
    Conn(ConnId),
    /// The shell's connection to this endpoint, opened on demand; the shell reports
    /// `Connected` (with the new `ConnId`) or `ConnectFailed`.
    Endpoint(Endpoint),
    /// A UDP datagram (multicast announce / presence).
    Datagram(SocketAddr),
}

/// One message to send.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transmit {
    pub dest: Dest,
    /// ASAP, ENRP or application data: selects the SCTP PPID.
    pub protocol: Protocol,
    /// One encoded message.
    pub bytes: Vec<u8>,
}

/// Transport happenings the shell reports to a core.
#[derive(Clone, Debug)]
pub enum TransportEvent {
    /// A peer connected to one of our listeners.
    Accepted { conn: ConnId, meta: RecvMeta },
    /// A connection we opened for `Dest::Endpoint(endpoint)` is up.
    Connected { conn: ConnId, endpoint: Endpoint },
    /// Opening a connection to `endpoint` failed.
    ConnectFailed { endpoint: Endpoint },
    /// The connection closed or the association was lost.
    Closed { conn: ConnId },
    /// A transmit to `Dest::Conn(conn)` could not be delivered.
    SendFailed { conn: ConnId },
}

/// What a core asks the shell to do with its transports, besides sending (drained with
/// [`Core::poll_command`] after the transmits). An enum so that it can grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportCommand {
    /// Close the connection once the messages already queued for it are written (the
    /// shell bounds the wait). The shell reports `Closed` afterwards, as for any close.
    Close(ConnId),
    /// Close the connection at once, dropping what is still queued for it. The shell
    /// reports `Closed` afterwards.
    Abort(ConnId),
    /// Open the shell's connection to `endpoint` without sending anything yet (the
    /// connection later transmits to `Dest::Endpoint(endpoint)` use). The shell reports
    /// `Connected` or `ConnectFailed` as for a first transmit to `Dest::Endpoint`; if that
    /// connection is already up or being opened, nothing happens and nothing is reported.
    /// `protocol` labels the connection (ASAP or ENRP: the SCTP default PPID).
    Connect {
        endpoint: Endpoint,
        protocol: Protocol,
    },
}

/// Deadline helper: the earlier of two optional instants.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The common shape of every sans-IO core, so one shell driver runs them all.
pub trait Core {
    /// What happened, for the application and for logs.
    type Event;
    /// Requests from the application or an admin interface.
    type Command;

    /// One whole message received on a connection.
    fn handle_message(&mut self, now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]);
    /// One datagram received on a UDP socket (server announces, presences).
    fn handle_datagram(&mut self, now: Instant, meta: &RecvMeta, bytes: &[u8]);
    fn handle_transport(&mut self, now: Instant, event: TransportEvent);
    /// Run the timers that are due; a spurious call is harmless.
    fn handle_timeout(&mut self, now: Instant);
    fn command(&mut self, now: Instant, cmd: Self::Command);
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// A connection to close, if any (drain after `poll_transmit`). Most cores never ask.
    fn poll_command(&mut self) -> Option<TransportCommand> {
        None
    }
}
