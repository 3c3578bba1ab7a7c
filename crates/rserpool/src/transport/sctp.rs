//! Kernel SCTP behind the transport traits: one-to-one sockets ([`crate::sctp`]), one
//! ASAP/ENRP message per SCTP user message, the protocol in the PPID (ASAP 11, ENRP 12),
//! multi-homed listeners and associations.
//!
//! * Receiving: PPID 11 → ASAP, 12 → ENRP; PPID 0 (unspecified) → the protocol of the
//!   listener or connection; RSPLIB's pre-RFC PPIDs 0xFAEEB5D1/2 are accepted too. Any
//!   other PPID is not RSerPool (e.g. application data) and is skipped with a debug log.
//! * Sending: PPID from [`Outgoing::protocol`], stream 0.
//! * Association loss (`SCTP_COMM_LOST`), a graceful end (`SHUTDOWN_COMPLETE`) or EOF end
//!   the reader, so the driver reports `TransportEvent::Closed` to the core.
//! * A message longer than [`TransportConfig::max_message_len`] is read to its end,
//!   dropped, logged and counted ([`TransportConfig::length_stats`]); the association
//!   stays usable (message boundaries are intact, unlike a TCP stream after a bad length).
//!
//! A kernel without SCTP makes [`bind`] and [`connect`] fail with an `io::Error` for which
//! [`crate::sctp::is_sctp_unavailable`] is true; its message says so and suggests tcp://.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rserpool_proto::io::{Endpoint, RecvMeta, TransportProto};
use rserpool_wire::Protocol;
use tracing::{debug, warn};

use super::{
    DirectWrite, MessageListener, MessageRead, MessageStream, MessageWrite, Outgoing,
    TransportConfig,
};
pub use crate::sctp::is_sctp_unavailable;
use crate::sctp::{AssocEvent, RecvItem, SctpListener, SctpReadHalf, SctpStream, SctpWriteHalf};

/// SCTP payload protocol identifier of ASAP (RFC 5352 §5).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353 §5).
pub const PPID_ENRP: u32 = 12;

/// The PPID a protocol's messages are sent with.
pub fn ppid_of(protocol: Protocol) -> u32 {
    protocol.ppid()
}

/// The protocol of a received PPID; `None` = not an RSerPool message. PPID 0 takes
/// `default` (the protocol of the listener or connection); RSPLIB's pre-RFC PPIDs are
/// accepted ([`Protocol::from_ppid`]).
pub fn protocol_of(ppid: u32, default: Protocol) -> Option<Protocol> {
    match ppid {
        0 => Some(default),
        p => Protocol::from_ppid(p),
    }
}

/// Addresses worth announcing out of `addrs` (e.g. a wildcard listener's expansion):
/// loopback addresses are dropped unless nothing else is left, link-local IPv6 is always
/// dropped (it needs a scope id the wire format cannot carry), duplicates removed.
pub fn announceable(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut usable: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let link_local = matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if !link_local && !a.is_unspecified() && !usable.contains(a) {
            usable.push(*a);
        }
    }
    let outside: Vec<IpAddr> = usable
        .iter()
        .copied()
        .filter(|a| !a.is_loopback())
        .collect();
    if outside.is_empty() {
        usable
    } else {
        outside
    }
}

/// An association carrying ASAP and/or ENRP.
#[derive(Debug)]
pub struct SctpMessageStream {
    stream: SctpStream,
    protocol: Protocol,
    lengths: Arc<super::tcp::LengthStats>,
}

impl SctpMessageStream {
    pub fn new(mut stream: SctpStream, protocol: Protocol, max_message_len: usize) -> Self {
        stream.set_max_message_size(max_message_len);
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            protocol,
            lengths: Arc::default(),
        }
    }

    /// Count dropped over-long messages in `stats` (else in counters of its own).
    pub fn counted(mut self, stats: Arc<super::tcp::LengthStats>) -> Self {
        self.lengths = stats;
        self
    }
}

impl MessageStream for SctpMessageStream {
    type Read = SctpReader;
    type Write = SctpWriter;

    fn meta(&self, protocol: Protocol) -> io::Result<RecvMeta> {
        let peer = self.stream.peer_addr()?;
        let mut peer_addrs: Vec<IpAddr> = Vec::new();
        // The primary address first, then the others the peer announced.
        for a in std::iter::once(peer).chain(self.stream.peer_addrs().unwrap_or_default()) {
            if !peer_addrs.contains(&a.ip()) {
                peer_addrs.push(a.ip());
            }
        }
        Ok(RecvMeta {
            protocol,
            transport: TransportProto::Sctp,
            peer,
            peer_addrs,
            identity: None,
        })
    }

    fn into_split(self) -> (SctpReader, SctpWriter) {
        let (rd, wr) = self.stream.into_split();
        (
            SctpReader {
                rd,
                protocol: self.protocol,
                lengths: self.lengths,
            },
            SctpWriter { wr },
        )
    }
}

#[derive(Debug)]
pub struct SctpReader {
    rd: SctpReadHalf,
    protocol: Protocol,
    lengths: Arc<super::tcp::LengthStats>,
}

impl MessageRead for SctpReader {
    async fn recv(&mut self) -> io::Result<Option<(Protocol, Vec<u8>)>> {
        loop {
            let item = match self.rd.recv().await {
                Ok(item) => item,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // The only one: a message over the cap, read to its end and dropped.
                    self.lengths
                        .sctp
                        .too_long
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!("{e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            match item {
                RecvItem::Message { ppid, stream, data } => {
                    match protocol_of(ppid, self.protocol) {
                        Some(p) => return Ok(Some((p, data))),
                        None => debug!(
                            ppid,
                            stream,
                            len = data.len(),
                            "SCTP message with a non-RSerPool PPID skipped"
                        ),
                    }
                }
                RecvItem::Notification(AssocEvent::Lost { error }) => {
                    debug!(error, "SCTP association lost");
                    return Ok(None);
                }
                RecvItem::Notification(AssocEvent::ShutdownComplete) => return Ok(None),
                RecvItem::Notification(AssocEvent::CantStart { error }) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("SCTP association could not start (error {error})"),
                    ))
                }
                RecvItem::Notification(ev) => debug!(?ev, "SCTP notification"),
                RecvItem::Eof => return Ok(None),
            }
        }
    }
}

#[derive(Debug)]
pub struct SctpWriter {
    wr: SctpWriteHalf,
}

impl MessageWrite for SctpWriter {
    async fn send(&mut self, batch: &[Outgoing]) -> io::Result<()> {
        for m in batch {
            self.wr.send(ppid_of(m.protocol), 0, &m.bytes).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        self.wr.shutdown()
    }

    fn direct(&self) -> Option<Arc<dyn DirectWrite>> {
        Some(Arc::new(self.wr.clone()))
    }
}

impl DirectWrite for SctpWriteHalf {
    /// One whole message now, or `WouldBlock`.
    fn try_write(&self, protocol: Protocol, bytes: &[u8]) -> io::Result<usize> {
        self.try_send(ppid_of(protocol), 0, bytes)
            .map(|()| bytes.len())
    }
}

/// A listening SCTP endpoint (one socket, possibly several addresses).
#[derive(Debug)]
pub struct SctpMessageListener {
    listener: SctpListener,
    protocol: Protocol,
    max_message_len: usize,
    lengths: Arc<super::tcp::LengthStats>,
}

impl SctpMessageListener {
    /// Every address of the endpoint (a wildcard expanded by the kernel, loopback included).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listener.local_addrs()
    }
}

impl MessageListener for SctpMessageListener {
    type Stream = SctpMessageStream;

    async fn accept(&mut self) -> io::Result<SctpMessageStream> {
        let (s, _) = self.listener.accept().await?;
        Ok(
            SctpMessageStream::new(s, self.protocol, self.max_message_len)
                .counted(self.lengths.clone()),
        )
    }

    fn local_endpoint(&self) -> io::Result<Endpoint> {
        let addrs = self.listener.local_addrs()?;
        if addrs.is_empty() {
            return Ok(Endpoint::sctp(vec![self.listener.local_addr()?]));
        }
        Ok(Endpoint::sctp(addrs))
    }
}

/// Bind a (multi-homed) listener to `addrs`; see [`SctpListener::bind`]. Must be called
/// inside a tokio runtime.
pub fn bind(
    addrs: &[SocketAddr],
    protocol: Protocol,
    config: &TransportConfig,
) -> io::Result<SctpMessageListener> {
    Ok(SctpMessageListener {
        listener: SctpListener::bind(addrs)?,
        protocol,
        max_message_len: config.max_message_len,
        lengths: config.length_stats.clone(),
    })
}

/// Bind a listener whose port outbound associations may share
/// ([`TransportConfig::sctp_source_port`]); see [`SctpListener::bind_shared`].
pub fn bind_shared(
    addrs: &[SocketAddr],
    protocol: Protocol,
    config: &TransportConfig,
) -> io::Result<SctpMessageListener> {
    Ok(SctpMessageListener {
        listener: SctpListener::bind_shared(addrs)?,
        protocol,
        max_message_len: config.max_message_len,
        lengths: config.length_stats.clone(),
    })
}

/// Open an association to all of `addrs` (one multi-homed peer). With
/// [`TransportConfig::sctp_bind`] set, the association is bound to those local addresses
/// first (a PE binds to the addresses it registers, RFC 5352 §2.1). With
/// [`TransportConfig::sctp_source_port`] set it is opened from that port (falling back to
/// an ephemeral one where the port cannot be used for this peer).
pub async fn connect(
    addrs: &[SocketAddr],
    protocol: Protocol,
    config: &TransportConfig,
) -> io::Result<SctpMessageStream> {
    let local = local_bind(&config.sctp_bind, addrs);
    let stream = match config.sctp_source_port {
        Some(port) => {
            let mut from = local.clone();
            if from.is_empty() {
                // Every address of the peer's families, as the kernel would choose.
                from.push(if addrs.iter().any(SocketAddr::is_ipv6) {
                    SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)
                } else {
                    SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)
                });
            }
            for a in &mut from {
                a.set_port(port);
            }
            match SctpStream::connect_from(&from, addrs).await {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
                    ) =>
                {
                    tracing::debug!(
                        port,
                        "cannot connect from the shared port ({e}); using an ephemeral port"
                    );
                    SctpStream::connect_from(&local, addrs).await?
                }
                r => r?,
            }
        }
        None => SctpStream::connect_from(&local, addrs).await?,
    };
    Ok(
        SctpMessageStream::new(stream, protocol, config.max_message_len)
            .counted(config.length_stats.clone()),
    )
}

/// The local addresses (port 0) to bind an association to `peer` to: those of `ips` in
/// the peer's address families. A loopback peer (e.g. a registrar learnt from an announce
/// sent from 127.0.0.1) is only reachable from a loopback address, so the loopback address
/// of that family is added. If none of `ips` fits, the kernel chooses (empty list).
fn local_bind(ips: &[IpAddr], peer: &[SocketAddr]) -> Vec<SocketAddr> {
    let peer_v6 = peer.iter().any(SocketAddr::is_ipv6);
    let peer_v4 = peer.iter().any(SocketAddr::is_ipv4);
    let mut fit: Vec<IpAddr> = ips
        .iter()
        .filter(|ip| !ip.is_unspecified())
        .filter(|ip| (ip.is_ipv4() && peer_v4) || (ip.is_ipv6() && peer_v6))
        .copied()
        .collect();
    if !fit.is_empty() {
        for p in peer.iter().filter(|p| p.ip().is_loopback()) {
            let lo: IpAddr = if p.is_ipv6() {
                Ipv6Addr::LOCALHOST.into()
            } else {
                Ipv4Addr::LOCALHOST.into()
            };
            if !fit.contains(&lo) {
                fit.push(lo);
            }
        }
    }
    fit.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad ip {s}"))
    }

    #[test]
    fn ppids() {
        assert_eq!(ppid_of(Protocol::Asap), 11);
        assert_eq!(ppid_of(Protocol::Enrp), 12);
        assert_eq!(protocol_of(11, Protocol::Enrp), Some(Protocol::Asap));
        assert_eq!(protocol_of(12, Protocol::Asap), Some(Protocol::Enrp));
        assert_eq!(protocol_of(0, Protocol::Enrp), Some(Protocol::Enrp));
        assert_eq!(
            protocol_of(0xFAEE_B5D1, Protocol::Enrp),
            Some(Protocol::Asap)
        );
        assert_eq!(protocol_of(0x5253_5031, Protocol::Asap), None);
    }

    #[test]
    fn announceable_filters_loopback_unless_alone() {
        let all = [
            ip("127.0.0.1"),
            ip("10.0.0.1"),
            ip("::1"),
            ip("fe80::1"),
            ip("2001:db8::1"),
            ip("10.0.0.1"),
        ];
        assert_eq!(announceable(&all), vec![ip("10.0.0.1"), ip("2001:db8::1")]);
        assert_eq!(
            announceable(&[ip("127.0.0.1"), ip("::1"), ip("0.0.0.0")]),
            vec![ip("127.0.0.1"), ip("::1")]
        );
        assert!(announceable(&[]).is_empty());
    }

    #[test]
    fn local_bind_matches_families() {
        let v4: SocketAddr = "10.0.0.1:3863".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::2]:3863".parse().unwrap();
        let lo6: SocketAddr = "[::1]:3863".parse().unwrap();
        let ips = [ip("10.0.0.1"), ip("2001:db8::1"), ip("0.0.0.0")];
        assert_eq!(local_bind(&ips, &[v4]), vec!["10.0.0.1:0".parse().unwrap()]);
        assert_eq!(
            local_bind(&ips, &[v4, v6]),
            vec![
                "10.0.0.1:0".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:0".parse().unwrap()
            ]
        );
        assert!(local_bind(&[], &[v4]).is_empty());
        // A loopback registrar: loopback is added to the registered addresses.
        let lo4: SocketAddr = "127.0.0.1:3863".parse().unwrap();
        assert_eq!(
            local_bind(&ips, &[lo4]),
            vec![
                "10.0.0.1:0".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:0".parse().unwrap()
            ]
        );
        assert_eq!(
            local_bind(&[ip("2001:db8::1")], &[lo6]),
            vec![
                "[2001:db8::1]:0".parse::<SocketAddr>().unwrap(),
                "[::1]:0".parse().unwrap()
            ]
        );
    }
}
