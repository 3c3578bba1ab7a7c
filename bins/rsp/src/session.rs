//! The PU ↔ PE session of the demo services, over TCP (a byte stream) or SCTP (messages).
//!
//! Over SCTP every piece of session data is one SCTP message. RSPLIB's `rspterminal` sends
//! each line it reads, newline included, as one message with PPID 0 on stream 0 (seen in
//! the VM), and its `rspserver -echo` sends each message back. So the session data PPID
//! here is [`DATA_PPID`] = 0 (unspecified), and our echo service answers with whatever PPID
//! and stream a message came with; a client takes data of any PPID other than 11. PPID 11 carries the ASAP control
//! channel (ASAP_COOKIE, ASAP_COOKIE_ECHO, ASAP_BUSINESS_CARD); the demos keep no session
//! state, so such messages are decoded, logged and otherwise ignored.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rserpool::sctp::{AssocEvent, RecvItem, SctpReadHalf, SctpStream, SctpWriteHalf};
use rserpool::transport::sctp::PPID_ASAP;
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
    /// Connect to a PE's user transport (SCTP: all its addresses) within `timeout`.
    pub async fn connect(ep: &Endpoint, timeout: Duration) -> io::Result<Conn> {
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
                    let s = TcpStream::connect(addr).await?;
                    let _ = s.set_nodelay(true);
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

/// The SCTP side of `rsp serve`.
pub mod sctp_session {
    use std::sync::Arc;

    use super::*;
    use crate::serve::{chargen_line, daytime, LoadTracker, Service};
    use rserpool::sctp::SctpListener;

    /// A service's SCTP listener.
    #[derive(Debug)]
    pub struct Listener {
        inner: SctpListener,
        asked: Vec<SocketAddr>,
    }

    /// Bind a (multi-homed) listener; inside a tokio runtime.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<Listener> {
        Ok(Listener {
            inner: SctpListener::bind(addrs)?,
            asked: addrs.to_vec(),
        })
    }

    impl Listener {
        /// Every address of the listener (wildcards expanded by the kernel).
        pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
            self.inner.local_addrs()
        }

        /// The port and the addresses to register: the ones asked for, or for a
        /// wildcard every address of the host except loopback (loopback only when
        /// nothing else exists).
        pub fn registered(&self) -> io::Result<(u16, Vec<IpAddr>)> {
            let port = self.inner.local_addr()?.port();
            let ips: Vec<IpAddr> = if self.asked.iter().any(|a| a.ip().is_unspecified()) {
                let all: Vec<IpAddr> = self.local_addrs()?.iter().map(SocketAddr::ip).collect();
                rserpool::transport::sctp::announceable(&all)
            } else {
                self.asked.iter().map(SocketAddr::ip).collect()
            };
            if ips.is_empty() {
                return Err(io::Error::other(
                    "the SCTP listener has no address to register",
                ));
            }
            Ok((port, ips))
        }
    }

    pub(crate) async fn accept(l: Listener, service: Service, load: Option<LoadTracker>) {
        let load = load.map(Arc::new);
        let mut backoff = Duration::from_millis(1);
        loop {
            let (stream, peer) = match l.inner.accept().await {
                Ok(x) => {
                    backoff = Duration::from_millis(1);
                    x
                }
                Err(e) => {
                    tracing::warn!("SCTP accept: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let peers = stream.peer_addrs().unwrap_or_default();
            tracing::info!(%peer, ?peers, "client connected (SCTP)");
            let load = load.clone();
            tokio::spawn(async move {
                if let Some(l) = &load {
                    l.changed(1);
                }
                if let Err(e) = handle(stream, service).await {
                    tracing::debug!(%peer, "session ended: {e}");
                }
                if let Some(l) = &load {
                    l.changed(-1);
                }
                tracing::info!(%peer, "client left");
            });
        }
    }

    async fn handle(stream: SctpStream, service: Service) -> io::Result<()> {
        let _ = stream.set_nodelay(true);
        let (mut rd, wr) = stream.into_split();
        if service == Service::Chargen {
            return chargen(rd, wr).await;
        }
        loop {
            match rd.recv().await? {
                RecvItem::Notification(AssocEvent::Up { .. }) if service == Service::Daytime => {
                    wr.send(DATA_PPID, 0, daytime().as_bytes()).await?;
                    wr.shutdown()?;
                }
                RecvItem::Message { ppid, data, .. } if ppid == PPID_ASAP => {
                    tracing::info!(
                        "ASAP control message on the session (ignored): {}",
                        describe_control(&data)
                    );
                }
                RecvItem::Message { ppid, stream, data } => {
                    tracing::debug!(ppid, stream, len = data.len(), "session data");
                    if service == Service::Echo {
                        wr.send(ppid, stream, &data).await?;
                    }
                }
                RecvItem::Notification(AssocEvent::Lost { .. } | AssocEvent::ShutdownComplete)
                | RecvItem::Eof => return Ok(()),
                RecvItem::Notification(_) => {}
            }
        }
    }

    async fn chargen(mut rd: SctpReadHalf, wr: SctpWriteHalf) -> io::Result<()> {
        let mut i = 0usize;
        loop {
            let line = chargen_line(i);
            tokio::select! {
                r = rd.recv() => match r? {
                    RecvItem::Notification(
                        AssocEvent::Lost { .. } | AssocEvent::Shutdown | AssocEvent::ShutdownComplete,
                    )
                    | RecvItem::Eof => return Ok(()),
                    _ => {}
                },
                r = wr.send(DATA_PPID, 0, &line) => {
                    r?;
                    i += 1;
                }
            }
        }
    }
}
