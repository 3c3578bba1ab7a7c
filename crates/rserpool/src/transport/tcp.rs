//! TCP and MPTCP: ASAP/ENRP messages back-to-back on the byte stream, each delimited by
//! its own Message Length and padded to 4 bytes (`spec/tcp-mapping.md` §4). A length
//! below 4 or above the configured maximum closes the connection, as does an end of
//! stream in the middle of a message. Connections closed for a length are counted in
//! [`LengthStats`] ([`TransportConfig::length_stats`], shared by every listener and
//! connection of a driver; `/metrics` `rserpool_message_length_refusals_total`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rserpool_proto::io::{Endpoint, RecvMeta, TransportProto};
use rserpool_wire::framing::{Deframer, FrameError};
use rserpool_wire::Protocol;
use socket2::{Domain, Socket, Type};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::{
    DirectWrite, MessageListener, MessageRead, MessageStream, MessageWrite, Outgoing,
    TransportConfig,
};

/// Bytes read from the socket per `read` call. The buffer is allocated on the first
/// readable event (a connection that never sends costs none) and never zeroed.
const READ_CHUNK: usize = 16 * 1024;

/// Messages refused for their length on one kind of transport since start.
#[derive(Debug, Default)]
pub struct LengthCounts {
    /// Longer than `max_message_len`: a TCP or TLS connection is closed, an SCTP message
    /// dropped (the association stays).
    pub too_long: AtomicU64,
    /// A Message Length below the 4-byte header (TCP, TLS): the connection is closed.
    pub too_short: AtomicU64,
}

impl LengthCounts {
    /// Count the framing error that ends a stream.
    pub fn count(&self, e: &FrameError) {
        match e {
            FrameError::TooLong { .. } => self.too_long.fetch_add(1, Ordering::Relaxed),
            FrameError::TooShort { .. } => self.too_short.fetch_add(1, Ordering::Relaxed),
            FrameError::UnknownChunk { .. } => return,
        };
    }
}

/// What the message length limit did, per transport ([`TransportConfig::length_stats`]):
/// TCP and MPTCP connections, TLS connections (both closed), SCTP messages (dropped).
#[derive(Debug, Default)]
pub struct LengthStats {
    pub tcp: LengthCounts,
    pub tls: LengthCounts,
    pub sctp: LengthCounts,
}

/// A TCP (or MPTCP) connection carrying one protocol.
#[derive(Debug)]
pub struct TcpMessageStream {
    stream: TcpStream,
    protocol: Protocol,
    max_message_len: usize,
    transport: TransportProto,
    lengths: Arc<LengthStats>,
}

impl TcpMessageStream {
    pub fn new(stream: TcpStream, protocol: Protocol, max_message_len: usize, mptcp: bool) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            protocol,
            max_message_len,
            transport: if mptcp {
                TransportProto::Mptcp
            } else {
                TransportProto::Tcp
            },
            lengths: Arc::default(),
        }
    }

    /// Count a close for a message length in `stats` (else in counters of its own).
    pub fn counted(mut self, stats: Arc<LengthStats>) -> Self {
        self.lengths = stats;
        self
    }
}

impl MessageStream for TcpMessageStream {
    type Read = TcpReader;
    type Write = TcpWriter;

    fn meta(&self, protocol: Protocol) -> io::Result<RecvMeta> {
        Ok(RecvMeta::single_homed(
            protocol,
            self.transport,
            self.stream.peer_addr()?,
        ))
    }

    fn into_split(self) -> (TcpReader, TcpWriter) {
        let (r, w) = self.stream.into_split();
        (
            TcpReader {
                stream: r,
                deframer: Deframer::new(self.max_message_len),
                protocol: self.protocol,
                buf: Vec::new(),
                lengths: self.lengths,
            },
            TcpWriter {
                stream: Arc::new(w),
                buf: Vec::new(),
            },
        )
    }
}

#[derive(Debug)]
pub struct TcpReader {
    stream: OwnedReadHalf,
    deframer: Deframer,
    protocol: Protocol,
    buf: Vec<u8>,
    lengths: Arc<LengthStats>,
}

impl MessageRead for TcpReader {
    async fn recv(&mut self) -> io::Result<Option<(Protocol, Vec<u8>)>> {
        loop {
            match self.deframer.next_message() {
                Ok(Some(m)) => return Ok(Some((self.protocol, m.to_vec()))),
                Ok(None) => {}
                Err(e) => {
                    self.lengths.tcp.count(&e);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            // `read_buf` (unlike `readable` + `try_read`) takes a short read as "drained":
            // the next call waits for readiness instead of paying a read that finds
            // nothing.
            self.buf.clear();
            self.buf.reserve(READ_CHUNK);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    let left = self.deframer.buffered();
                    if left == 0 {
                        return Ok(None);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("stream ended inside a message ({left} bytes of it received)"),
                    ));
                }
                Ok(_) => self.deframer.push(&self.buf),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The write half is shared with the driver's fast path ([`DirectWrite`]); the stream is
/// shut down (FIN) when the last holder drops it.
#[derive(Debug)]
pub struct TcpWriter {
    stream: Arc<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl MessageWrite for TcpWriter {
    /// Messages arrive padded to 4 bytes (the driver pads), possibly as the rest of a
    /// message the fast path wrote in part: written as they are.
    async fn send(&mut self, batch: &[Outgoing]) -> io::Result<()> {
        let data: &[u8] = if let [one] = batch {
            &one.bytes
        } else {
            self.buf.clear();
            for m in batch {
                self.buf.extend_from_slice(&m.bytes);
            }
            &self.buf
        };
        let mut off = 0;
        while off < data.len() {
            self.stream.writable().await?;
            match self.stream.try_write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if self.buf.capacity() > 256 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        // Dropping the last reference to the write half sends the FIN.
        Ok(())
    }

    fn direct(&self) -> Option<Arc<dyn DirectWrite>> {
        Some(self.stream.clone())
    }
}

impl DirectWrite for OwnedWriteHalf {
    fn try_write(&self, _protocol: Protocol, bytes: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, bytes)
    }

    fn is_stream(&self) -> bool {
        true
    }
}

/// A TCP (or MPTCP) listener.
#[derive(Debug)]
pub struct TcpMessageListener {
    listener: TcpListener,
    protocol: Protocol,
    max_message_len: usize,
    mptcp: bool,
    lengths: Arc<LengthStats>,
}

impl MessageListener for TcpMessageListener {
    type Stream = TcpMessageStream;

    async fn accept(&mut self) -> io::Result<TcpMessageStream> {
        let (s, _) = self.listener.accept().await?;
        Ok(
            TcpMessageStream::new(s, self.protocol, self.max_message_len, self.mptcp)
                .counted(self.lengths.clone()),
        )
    }

    fn local_endpoint(&self) -> io::Result<Endpoint> {
        let addr = self.listener.local_addr()?;
        Ok(Endpoint {
            transport: if self.mptcp {
                TransportProto::Mptcp
            } else {
                TransportProto::Tcp
            },
            addrs: vec![addr],
        })
    }
}

fn socket_for(addr: &SocketAddr, mptcp: bool) -> io::Result<Socket> {
    let domain = Domain::for_address(*addr);
    if mptcp {
        Socket::new(domain, Type::STREAM, Some(socket2::Protocol::MPTCP))
            .map_err(|e| mptcp_error(e, "use tcp:// instead of mptcp://"))
    } else {
        Socket::new(domain, Type::STREAM, Some(socket2::Protocol::TCP))
    }
}

/// Whether this kernel gives out MPTCP sockets; the error says plainly why not, then
/// `instead` (what the user can do).
pub fn mptcp_available(instead: &str) -> io::Result<()> {
    Socket::new(Domain::IPV4, Type::STREAM, Some(socket2::Protocol::MPTCP))
        .map(drop)
        .map_err(|e| mptcp_error(e, instead))
}

/// An `IPPROTO_MPTCP` socket the kernel refused, said plainly: Linux answers
/// `ENOPROTOOPT` ("Protocol not available") while `net.mptcp.enabled` is 0 and
/// `EPROTONOSUPPORT` when it was built without MPTCP (or is older than 5.6).
fn mptcp_error(e: io::Error, instead: &str) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOPROTOOPT) => {
            "MPTCP is turned off in this kernel (net.mptcp.enabled = 0; \
             `sysctl -w net.mptcp.enabled=1` turns it on)"
        }
        Some(libc::EPROTONOSUPPORT) => {
            "this kernel has no MPTCP (built without CONFIG_MPTCP, or older than Linux 5.6)"
        }
        _ => return e,
    };
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{why}: {instead} ({e})"),
    )
}

/// Bind a listener. An IPv6 address is bound with `IPV6_V6ONLY`, so `[::]:3863` and
/// `0.0.0.0:3863` can be bound side by side.
pub fn bind(
    addr: SocketAddr,
    protocol: Protocol,
    mptcp: bool,
    config: &TransportConfig,
) -> io::Result<TcpMessageListener> {
    bind_with(addr, protocol, mptcp, config, false)
}

/// Bind a listener whose port outbound connections may share: `SO_REUSEPORT` as well, so
/// connections made from the same port ([`TransportConfig::tcp_source_port`]) can bind it
/// while it listens. A PE's ASAP control listener: a registrar reaches the PE at the
/// source address and port of its registration connection.
pub fn bind_shared(
    addr: SocketAddr,
    protocol: Protocol,
    mptcp: bool,
    config: &TransportConfig,
) -> io::Result<TcpMessageListener> {
    bind_with(addr, protocol, mptcp, config, true)
}

fn bind_with(
    addr: SocketAddr,
    protocol: Protocol,
    mptcp: bool,
    config: &TransportConfig,
    reuse_port: bool,
) -> io::Result<TcpMessageListener> {
    let listener = bind_socket(addr, mptcp, reuse_port)?;
    Ok(TcpMessageListener {
        listener,
        protocol,
        max_message_len: config.max_message_len,
        mptcp,
        lengths: config.length_stats.clone(),
    })
}

/// A listening TCP socket (`SO_REUSEADDR`; IPv6 only on an IPv6 address), for the TCP
/// listeners and for TLS ([`super::tls`]).
pub(crate) fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    bind_socket(addr, false, reuse_port)
}

/// A listening stream socket for a service (the session layer, the demo services, the
/// gateway): TCP, or MPTCP with `mptcp` (which takes plain TCP clients too). An MPTCP
/// kernel refusal comes back as a clear [`io::ErrorKind::Unsupported`].
pub fn bind_stream(addr: SocketAddr, mptcp: bool) -> io::Result<TcpListener> {
    bind_socket(addr, mptcp, false)
}

/// One stream connection to `addr` from an ephemeral port with `TCP_NODELAY`: TCP, or
/// with `mptcp` MPTCP (plain TCP when the peer does not speak MPTCP, or when this kernel
/// has no MPTCP: then with one warning, so that a session never blames its PE for it).
pub(crate) async fn connect_plain(addr: SocketAddr, mptcp: bool) -> io::Result<TcpStream> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let s = match connect_ephemeral(addr, mptcp).await {
        Err(e) if mptcp && e.kind() == io::ErrorKind::Unsupported => {
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("{e}; connecting over TCP");
            }
            connect_ephemeral(addr, false).await?
        }
        r => r?,
    };
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn bind_socket(addr: SocketAddr, mptcp: bool, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket_for(&addr, mptcp)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(crate::LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// One TCP connection to `addr` (from [`TransportConfig::tcp_source_port`] when set),
/// with `TCP_NODELAY`: the carrier of a TLS session.
pub(crate) async fn connect_stream(
    addr: SocketAddr,
    config: &TransportConfig,
) -> io::Result<TcpStream> {
    let s = match config.tcp_source_port {
        Some(port) => connect_from(addr, port, false).await,
        None => connect_ephemeral(addr, false).await,
    }?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Connect to the first address of `addrs` that answers (from
/// [`TransportConfig::tcp_source_port`] when set).
pub async fn connect(
    addrs: &[SocketAddr],
    protocol: Protocol,
    mptcp: bool,
    config: &TransportConfig,
) -> io::Result<TcpMessageStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for addr in addrs {
        let r = match config.tcp_source_port {
            Some(port) => connect_from(*addr, port, mptcp).await,
            None => connect_ephemeral(*addr, mptcp).await,
        };
        match r {
            Ok(s) => {
                return Ok(
                    TcpMessageStream::new(s, protocol, config.max_message_len, mptcp)
                        .counted(config.length_stats.clone()),
                )
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connect_ephemeral(addr: SocketAddr, mptcp: bool) -> io::Result<TcpStream> {
    if !mptcp {
        return TcpStream::connect(addr).await;
    }
    let socket = socket_for(&addr, true)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(addr).await
}

/// Connect from local `port` (any address of `addr`'s family), sharing the port with a
/// listener bound by [`bind_shared`]; falls back to an ephemeral port where that port
/// cannot be used for this peer (e.g. a connection with the same address pair still
/// exists or lingers in TIME_WAIT).
async fn connect_from(addr: SocketAddr, port: u16, mptcp: bool) -> io::Result<TcpStream> {
    let bound = (|| {
        let socket = socket_for(&addr, mptcp)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
            SocketAddr::V6(_) => {
                socket.set_only_v6(true)?;
                (std::net::Ipv6Addr::UNSPECIFIED, port).into()
            }
        };
        socket.bind(&local.into())?;
        socket.set_nonblocking(true)?;
        Ok::<_, io::Error>(tokio::net::TcpSocket::from_std_stream(socket.into()))
    })();
    let r = match bound {
        Ok(socket) => socket.connect(addr).await,
        Err(e) => Err(e),
    };
    match r {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
            ) =>
        {
            tracing::debug!(%addr, port, "cannot connect from the control port ({e}); using an ephemeral port");
            connect_ephemeral(addr, mptcp).await
        }
        r => r,
    }
}
