//! The PU ↔ PE session layer of the shell, and the plain client connection of the demo
//! services.
//!
//! # The session layer (issue 11): [`Session`] and [`SessionListener`]
//!
//! The sans-IO cores of `rserpool_proto::session` on tokio tasks:
//!
//! * PU: [`Session::connect`] (a pool handle, a [`crate::pu::PoolUser`] for PE selection
//!   and unreachable reports, [`SessionOptions`]), [`Session::send`] /
//!   [`Session::send_with`] (failover, no failover or to last), [`Session::recv`] (data only) or
//!   [`Session::next`] (data and [`SessionEvent`]s in order: connected, PE failed,
//!   failover started / completed with the old and new PE and whether a cookie was
//!   echoed, cookie, business card, acked, undelivered, failed), and the failover callback
//!   ([`SessionOptions::on_failover`]: the old PE and its unacknowledged messages in, what
//!   to resend out; default all, in order).
//! * PE: [`SessionListener::start`] registers a PE with one user transport per listener
//!   and serves sessions; [`SessionListener::accept`] hands out one [`PeSession`] per PU:
//!   [`PeSession::recv`] (data with its TSN, cookie echo, business card),
//!   [`PeSession::send`], [`PeSession::send_cookie`], [`PeSession::send_business_card`],
//!   [`PeSession::ack`]. Every new session gets a business card: the pool and its other
//!   PEs, learned from the registrar every [`ListenerOptions::card_refresh`] (2 s) in
//!   ring order by PE id, at most 16; a changed list goes to the open sessions too.
//!   [`ListenerOptions::cookie_key`] signs cookies and checks echoes (HMAC-SHA256).
//! * To all: [`to_all`] (one session bound to each PE, [`Session::connect_bound`]).
//! * BC1: a card naming another pool than the session's is resolved through the pool
//!   user; [`SessionEvent::CardPool`] says how many PEs it has, or that it does not exist
//!   (the card is then ignored).
//!
//! On the wire: over TCP the session framing of `rserpool_wire::framing` (an INIT chunk
//! from each side, then DATA chunks with a PPID each — ASAP control on 11 —, ACK chunks
//! for the acknowledged mode, HEARTBEAT / HEARTBEAT ACK for the session heartbeat). Over
//! SCTP one message per PPID on stream 0: control on 11, application data on its own
//! PPID, acknowledgements and heartbeats on the private PPIDs.
//!
//! Failure detection: the connection failing or closing (a killed PE: at once), and the
//! session heartbeat (a stopped or cut-off PE: within interval + timeout, 200 + 600 ms by
//! default). The failed PE is reported to the registrar (ASAP_ENDPOINT_UNREACHABLE).
//!
//! Flow control: [`Session::send`] and [`PeSession::send`] wait while 1 MiB waits for the
//! connection (a PU that never reads stalls only its own session at the PE); a PE reads at
//! most [`ListenerOptions::read_ahead`] messages ahead of its application per session.
//! A PU buffers what its PE sends until the application takes it.
//!
//! Runnable example: `crates/rserpool/examples/session_echo.rs` (see `docs/session.md`).
//!
//! # The demo services' client connection ([`Conn`])
//!
//! Over TCP a byte stream, over SCTP messages.
//!
//! Over SCTP every piece of session data is one SCTP message. RSPLIB's `rspterminal` sends
//! each line it reads, newline included, as one message with PPID 0 on stream 0 (seen in
//! the VM), and its `rspserver -echo` sends each message back. So the session data PPID
//! here is [`DATA_PPID`] = 0 (unspecified), and our echo service answers with whatever PPID
//! and stream a message came with; a client takes data of any PPID other than 11. PPID 11 carries the ASAP control
//! channel (ASAP_COOKIE, ASAP_COOKIE_ECHO, ASAP_BUSINESS_CARD); the demos keep no session
//! state, so such messages are decoded, logged and otherwise ignored.

use std::io;
use std::time::Duration;

mod channel;
mod server;
mod user;

pub use channel::SessionTls;
pub use rserpool_proto::session::{
    CookieKey, CookieRefusal, FailureReason, Outstanding, SendMode, SessionError,
};
pub use server::{
    ListenerOptions, PeMessage, PeSession, SessionBind, SessionListener, DEFAULT_READ_AHEAD,
    PE_SEND_QUEUE_LIMIT,
};
pub use user::{
    to_all, Incoming, Session, SessionEvent, SessionOptions, ToAllCopy, SEND_QUEUE_LIMIT,
};

use crate::sctp::{AssocEvent, RecvItem, SctpReadHalf, SctpStream, SctpWriteHalf};
use crate::transport::sctp::PPID_ASAP;
use rserpool_proto::io::{Endpoint, TransportProto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// PPID of session data we send (0 = unspecified, as RSPLIB's terminal and echo server).
pub const DATA_PPID: u32 = 0;

/// A short description of an ASAP message received on a session (for logs).
pub fn describe_control(data: &[u8]) -> String {
    match rserpool_wire::decode_asap(data) {
        Ok(d) => format!("{} ({} bytes)", d.message.name(), data.len()),
        Err(e) => format!(
            "undecodable ASAP message ({e}): {}",
            hex::encode(&data[..data.len().min(64)])
        ),
    }
}

/// A client's session with a PE.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Sctp(SctpStream),
}

/// What the reading half of a session produced.
#[derive(Debug)]
pub enum ReadEvent {
    Data(Vec<u8>),
    /// The PE closed the session (TCP FIN, SCTP SHUTDOWN or ABORT).
    Closed,
}

impl Conn {
    /// Connect to a PE's user transport (SCTP: all its addresses) within `timeout`; with
    /// `mptcp` a TCP one over MPTCP (see [`SessionOptions::mptcp`]).
    pub async fn connect(ep: &Endpoint, timeout: Duration, mptcp: bool) -> io::Result<Conn> {
        let fut = async {
            match ep.transport {
                TransportProto::Sctp => {
                    let s = SctpStream::connect(&ep.addrs).await?;
                    let _ = s.set_nodelay(true);
                    Ok(Conn::Sctp(s))
                }
                _ => {
                    let addr = ep
                        .primary()
                        .ok_or_else(|| io::Error::other("endpoint without address"))?;
                    let s = crate::transport::tcp::connect_plain(addr, mptcp).await?;
                    Ok(Conn::Tcp(s))
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    pub fn into_split(self) -> (ConnRead, ConnWrite) {
        match self {
            Conn::Tcp(s) => {
                let (r, w) = s.into_split();
                (ConnRead::Tcp(r), ConnWrite::Tcp(w))
            }
            Conn::Sctp(s) => {
                let (r, w) = s.into_split();
                (ConnRead::Sctp(r), ConnWrite::Sctp(w))
            }
        }
    }
}

#[derive(Debug)]
pub enum ConnRead {
    Tcp(OwnedReadHalf),
    Sctp(SctpReadHalf),
}

impl ConnRead {
    /// The next piece of session data, or the end of the session. Cancel safe.
    pub async fn recv(&mut self) -> io::Result<ReadEvent> {
        match self {
            ConnRead::Tcp(r) => {
                let mut buf = vec![0u8; 16384];
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    return Ok(ReadEvent::Closed);
                }
                buf.truncate(n);
                Ok(ReadEvent::Data(buf))
            }
            ConnRead::Sctp(r) => loop {
                match r.recv().await? {
                    RecvItem::Message { ppid, data, .. } if ppid == PPID_ASAP => {
                        tracing::info!(
                            "ASAP control message from the PE: {}",
                            describe_control(&data)
                        );
                    }
                    RecvItem::Message { data, .. } => return Ok(ReadEvent::Data(data)),
                    RecvItem::Notification(AssocEvent::Lost { error }) => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!("SCTP association lost (cause {error})"),
                        ))
                    }
                    RecvItem::Notification(AssocEvent::Shutdown)
                    | RecvItem::Notification(AssocEvent::ShutdownComplete)
                    | RecvItem::Eof => return Ok(ReadEvent::Closed),
                    RecvItem::Notification(_) => {}
                }
            },
        }
    }
}

#[derive(Debug)]
pub enum ConnWrite {
    Tcp(OwnedWriteHalf),
    Sctp(SctpWriteHalf),
}

impl ConnWrite {
    /// Send one line (a newline is appended): TCP bytes, or one SCTP message.
    pub async fn send_line(&mut self, line: &str) -> io::Result<()> {
        let data = format!("{line}\n");
        match self {
            ConnWrite::Tcp(w) => w.write_all(data.as_bytes()).await,
            ConnWrite::Sctp(w) => w.send(DATA_PPID, 0, data.as_bytes()).await,
        }
    }

    /// No more data from us. TCP: half-close (the PE may still answer). SCTP has no
    /// half-close, so nothing happens here; [`ConnWrite::close`] ends the association.
    pub async fn finish(&mut self) {
        if let ConnWrite::Tcp(w) = self {
            let _ = w.shutdown().await;
        }
    }

    /// End the session (TCP FIN, SCTP SHUTDOWN).
    pub async fn close(&mut self) {
        match self {
            ConnWrite::Tcp(w) => {
                let _ = w.shutdown().await;
            }
            ConnWrite::Sctp(w) => {
                let _ = w.shutdown();
            }
        }
    }

    pub fn is_sctp(&self) -> bool {
        matches!(self, ConnWrite::Sctp(_))
    }
}
