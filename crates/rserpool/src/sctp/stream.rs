//! [`SctpStream`]: one association (connect, send with PPID and stream id, receive with
//! reassembly and notifications), and its halves [`SctpReadHalf`] / [`SctpWriteHalf`].
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::addr::{needs_v6, sockaddr_to_std};
use super::notify::{parse_notification, AssocEvent};
use super::sys::{
    bind_all, build_cmsg, find_cmsg, get_addrs, new_socket, recvmsg_raw, register, sendmsg_raw,
    setsockopt_int, start_connect, CmsgBuf, SctpRcvInfo, SctpSndInfo, SndCmsg, MSG_NOTIFICATION,
    SCTP_GET_LOCAL_ADDRS, SCTP_GET_PEER_ADDRS, SCTP_NODELAY, SCTP_RCVINFO, SCTP_SNDINFO, SOL_SCTP,
};

/// Default cap for one reassembled message (see [`SctpStream::set_max_message_size`]).
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;
/// Size of one `recvmsg` read; longer messages arrive in several reads (no `MSG_EOR`).
const READ_CHUNK: usize = 64 * 1024;

/// One item read from an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvItem {
    /// A complete user message (reassembled until `MSG_EOR`).
    Message {
        /// Payload protocol identifier, host byte order (ASAP 11, ENRP 12).
        ppid: u32,
        /// SCTP stream id.
        stream: u16,
        data: Vec<u8>,
    },
    /// An SCTP notification.
    Notification(AssocEvent),
    /// End of file: the association is closed and nothing is left to read.
    Eof,
}

// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Inner {
    fd: AsyncFd<Socket>,
}

/// Receive-side state: a message may arrive in several `recvmsg` reads.
struct Reader {
    partial: Vec<u8>,
    /// `Some` while a message is being reassembled.
    kind: Option<PartialKind>,
    /// Set after the cap was exceeded: drop reads until `MSG_EOR`.
    discarding: bool,
    max_message: usize,
    scratch: Box<[u8]>,
    eof: bool,
    /// A COMM_LOST / SHUTDOWN_COMP notification was returned: the next ECONNRESET /
    /// EPIPE / ENOTCONN from recvmsg is the end of the association, reported as EOF.
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartialKind {
    Data { ppid: u32, stream: u16 },
    Notification,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("partial_len", &self.partial.len())
            .field("kind", &self.kind)
            .field("discarding", &self.discarding)
            .field("max_message", &self.max_message)
            .field("eof", &self.eof)
            .finish()
    }
}

impl Reader {
    fn new() -> Self {
        Self {
            partial: Vec::new(),
            kind: None,
            discarding: false,
            max_message: DEFAULT_MAX_MESSAGE,
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            eof: false,
            ended: false,
        }
    }
}

/// An SCTP association on a one-to-one style socket.
///
/// `send` takes `&self`; `recv` takes `&mut self` (it owns the reassembly buffer). To send
/// and receive from different tasks, use [`SctpStream::into_split`] (the write half is
/// `Clone`).
#[derive(Debug)]
pub struct SctpStream {
    inner: Arc<Inner>,
    reader: Reader,
}

/// Receiving half of an [`SctpStream`].
#[derive(Debug)]
pub struct SctpReadHalf {
    inner: Arc<Inner>,
    reader: Reader,
}

/// Sending half of an [`SctpStream`]; clones share the association.
#[derive(Debug, Clone)]
pub struct SctpWriteHalf {
    inner: Arc<Inner>,
}

impl SctpStream {
    /// Opens an association to `addrs` (all addresses of one peer endpoint; several
    /// addresses use `SCTP_SOCKOPT_CONNECTX`, i.e. `sctp_connectx`). Local addresses are
    /// chosen by the kernel (all addresses of the host). Not time-limited: an unreachable
    /// peer takes the kernel's INIT retries (minutes); wrap in `tokio::time::timeout`.
    pub async fn connect(addrs: &[SocketAddr]) -> io::Result<Self> {
        Self::connect_from(&[], addrs).await
    }

    /// Like [`connect`](Self::connect), but first binds the association to `local`
    /// (multi-homed like [`SctpListener::bind`](super::SctpListener::bind); port 0 =
    /// ephemeral). A PE must bind its registrar association to every address it registers
    /// (RFC 5352 §2.1). A non-zero local port is bound with `SO_REUSEADDR` and
    /// `SO_REUSEPORT`, to share it with a listener bound by
    /// [`SctpListener::bind_shared`](super::SctpListener::bind_shared).
    pub async fn connect_from(local: &[SocketAddr], addrs: &[SocketAddr]) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SctpStream::connect: no address given",
            ));
        }
        let v6 = needs_v6(addrs) || needs_v6(local);
        let sock = new_socket(v6)?;
        if local.iter().any(|a| a.port() != 0) {
            sock.set_reuse_address(true)?;
            sock.set_reuse_port(true)?;
        }
        if !local.is_empty() {
            bind_all(&sock, local)?;
        }
        start_connect(&sock, addrs)?;
        let stream = Self::from_socket(sock)?;
        // Established => writable (sk_state_change wakes us). Failure => SO_ERROR set and
        // error/readable readiness (CANT_STR_ASSOC notification queued).
        loop {
            let mut guard = stream
                .inner
                .fd
                .ready(Interest::READABLE | Interest::WRITABLE)
                .await?;
            if let Some(e) = stream.inner.fd.get_ref().take_error()? {
                return Err(e);
            }
            if stream.inner.fd.get_ref().peer_addr().is_ok() {
                return Ok(stream);
            }
            guard.clear_ready();
        }
    }

    pub(super) fn from_socket(sock: Socket) -> io::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                fd: register(sock, Interest::READABLE | Interest::WRITABLE)?,
            }),
            reader: Reader::new(),
        })
    }

    /// Sends one user message with payload protocol identifier `ppid` (host order) on
    /// stream `stream`. The kernel takes the whole message or nothing, so this is cancel
    /// safe. Messages larger than the send buffer fail with `EMSGSIZE`.
    pub async fn send(&self, ppid: u32, stream: u16, data: &[u8]) -> io::Result<()> {
        self.inner.send(ppid, stream, data).await
    }

    /// Receives the next message, notification or EOF. Cancel safe (partial messages are
    /// kept in `self`). A message longer than the cap (default [`DEFAULT_MAX_MESSAGE`]) is
    /// read to its end, dropped, and reported as `InvalidData`; the stream stays usable.
    pub async fn recv(&mut self) -> io::Result<RecvItem> {
        self.inner.recv(&mut self.reader).await
    }

    /// Sets the reassembly cap for [`recv`](Self::recv).
    pub fn set_max_message_size(&mut self, max: usize) {
        self.reader.max_message = max.max(1);
    }

    /// All addresses of the peer (`SCTP_GET_PEER_ADDRS`).
    pub fn peer_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.peer_addrs()
    }

    /// The peer's primary address as `getpeername` reports it.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sockaddr_to_std(&self.inner.fd.get_ref().peer_addr()?)
    }

    /// All local addresses of the association (`SCTP_GET_LOCAL_ADDRS`).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.local_addrs()
    }

    /// `SCTP_NODELAY` (disable Nagle-like bundling delay).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        setsockopt_int(self.inner.fd.as_raw_fd(), SCTP_NODELAY, i32::from(on))
    }

    /// `SO_SNDBUF`: the largest message [`send`](Self::send) accepts (212 992 bytes by
    /// default on Linux; larger ones fail with `EMSGSIZE`).
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        self.inner.fd.get_ref().send_buffer_size()
    }

    /// Sets `SO_SNDBUF` (the kernel doubles the value and caps it at `wmem_max`).
    pub fn set_send_buffer_size(&self, size: usize) -> io::Result<()> {
        self.inner.fd.get_ref().set_send_buffer_size(size)
    }

    /// Starts a graceful shutdown (SHUTDOWN chunk after queued data); `recv` keeps
    /// working until the peer completes it.
    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.fd.get_ref().shutdown(std::net::Shutdown::Write)
    }

    /// Aborts the association (ABORT chunk, via `SO_LINGER` 0 + close). The socket closes
    /// when its last handle goes: if [`sender`](Self::sender) clones are still alive, the
    /// ABORT is sent when the last of them is dropped.
    pub fn abort(self) -> io::Result<()> {
        self.inner
            .fd
            .get_ref()
            .set_linger(Some(std::time::Duration::ZERO))
        // dropping `self` drops its reference to the socket
    }

    /// A cloneable sending handle that shares the association with `self`.
    pub fn sender(&self) -> SctpWriteHalf {
        SctpWriteHalf {
            inner: self.inner.clone(),
        }
    }

    /// Splits into a receiving half and a (cloneable) sending half.
    pub fn into_split(self) -> (SctpReadHalf, SctpWriteHalf) {
        (
            SctpReadHalf {
                inner: self.inner.clone(),
                reader: self.reader,
            },
            SctpWriteHalf { inner: self.inner },
        )
    }
}

impl AsRawFd for SctpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }
}

impl SctpReadHalf {
    /// See [`SctpStream::recv`].
    pub async fn recv(&mut self) -> io::Result<RecvItem> {
        self.inner.recv(&mut self.reader).await
    }
    /// See [`SctpStream::set_max_message_size`].
    pub fn set_max_message_size(&mut self, max: usize) {
        self.reader.max_message = max.max(1);
    }
    /// See [`SctpStream::peer_addrs`].
    pub fn peer_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.peer_addrs()
    }
    /// See [`SctpStream::local_addrs`].
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.local_addrs()
    }
}

impl SctpWriteHalf {
    /// See [`SctpStream::send`].
    pub async fn send(&self, ppid: u32, stream: u16, data: &[u8]) -> io::Result<()> {
        self.inner.send(ppid, stream, data).await
    }
    /// Sends one message now if the kernel takes it without waiting, else fails with
    /// `WouldBlock` (nothing sent). For a caller that falls back to [`send`](Self::send).
    pub fn try_send(&self, ppid: u32, stream: u16, data: &[u8]) -> io::Result<()> {
        self.inner.try_send(ppid, stream, data)
    }
    /// See [`SctpStream::shutdown`].
    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.fd.get_ref().shutdown(std::net::Shutdown::Write)
    }
    /// See [`SctpStream::set_nodelay`].
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        setsockopt_int(self.inner.fd.as_raw_fd(), SCTP_NODELAY, i32::from(on))
    }
    /// See [`SctpStream::peer_addrs`].
    pub fn peer_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.peer_addrs()
    }
}

impl Inner {
    async fn send(&self, ppid: u32, stream: u16, data: &[u8]) -> io::Result<()> {
        let cmsg = send_cmsg(ppid, stream, data)?;
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| sendmsg_raw(fd.as_raw_fd(), data, &cmsg.0)) {
                Ok(r) => return whole(r, data.len()),
                Err(_would_block) => continue,
            }
        }
    }

    /// `sendmsg` once, without waiting. It does not touch the reactor's readiness: a
    /// `WouldBlock` here just sends the caller to [`Inner::send`], which waits properly.
    fn try_send(&self, ppid: u32, stream: u16, data: &[u8]) -> io::Result<()> {
        let cmsg = send_cmsg(ppid, stream, data)?;
        whole(sendmsg_raw(self.fd.as_raw_fd(), data, &cmsg.0), data.len())
    }

    async fn recv(&self, rd: &mut Reader) -> io::Result<RecvItem> {
        if rd.eof {
            return Ok(RecvItem::Eof);
        }
        loop {
            let mut cmsg = CmsgBuf::new();
            let (n, flags, clen) = {
                let mut guard = self.fd.readable().await?;
                match guard.try_io(|fd| recvmsg_raw(fd.as_raw_fd(), &mut rd.scratch, &mut cmsg.0)) {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) if rd.ended && is_end_errno(&e) => (0, 0, 0),
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => continue,
                }
            };
            let notification = flags & MSG_NOTIFICATION != 0;
            let eor = flags & libc::MSG_EOR != 0;
            if n == 0 && !notification {
                // Orderly end: drop any unfinished message.
                rd.eof = true;
                rd.partial.clear();
                rd.kind = None;
                return Ok(RecvItem::Eof);
            }
            let kind = if notification {
                PartialKind::Notification
            } else {
                let info = find_cmsg(&cmsg.0[..clen.min(cmsg.0.len())], SOL_SCTP, SCTP_RCVINFO)
                    .and_then(SctpRcvInfo::from_bytes);
                match (info, rd.kind) {
                    (Some(i), _) => PartialKind::Data {
                        ppid: u32::from_be(i.rcv_ppid),
                        stream: i.rcv_sid,
                    },
                    // continuation without cmsg: keep what the first piece said
                    (None, Some(k)) => k,
                    (None, None) => PartialKind::Data { ppid: 0, stream: 0 },
                }
            };
            if rd.kind.is_none() {
                rd.kind = Some(kind);
            }
            if !rd.discarding {
                if rd.partial.len() + n > rd.max_message {
                    rd.discarding = true;
                    rd.partial = Vec::new();
                } else {
                    rd.partial.extend_from_slice(&rd.scratch[..n]);
                }
            }
            if !eor {
                continue;
            }
            let kind = rd.kind.take().unwrap_or(kind);
            if std::mem::take(&mut rd.discarding) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "SCTP message longer than the cap of {} bytes dropped",
                        rd.max_message
                    ),
                ));
            }
            let data = std::mem::take(&mut rd.partial);
            return Ok(match kind {
                PartialKind::Data { ppid, stream } => RecvItem::Message { ppid, stream, data },
                PartialKind::Notification => {
                    let ev = parse_notification(&data);
                    if matches!(ev, AssocEvent::Lost { .. } | AssocEvent::ShutdownComplete) {
                        rd.ended = true;
                    }
                    RecvItem::Notification(ev)
                }
            });
        }
    }

    fn peer_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        get_addrs(self.fd.as_raw_fd(), SCTP_GET_PEER_ADDRS, 0)
    }

    fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        // A non-zero id asks for the association's own address list (for one-to-one
        // sockets the kernel ignores the id's value); before the association is up that
        // fails with EINVAL, then report the endpoint's addresses.
        match get_addrs(self.fd.as_raw_fd(), SCTP_GET_LOCAL_ADDRS, 1) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                get_addrs(self.fd.as_raw_fd(), SCTP_GET_LOCAL_ADDRS, 0)
            }
            r => r,
        }
    }
}

/// The `SCTP_SNDINFO` control message for one user message.
fn send_cmsg(ppid: u32, stream: u16, data: &[u8]) -> io::Result<SndCmsg> {
    if data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "SCTP cannot send an empty user message",
        ));
    }
    let info = SctpSndInfo {
        snd_sid: stream,
        snd_ppid: ppid.to_be(),
        ..Default::default()
    };
    Ok(build_cmsg(SCTP_SNDINFO, &info.to_bytes()))
}

/// The kernel takes an SCTP message whole or not at all; anything else is an error.
fn whole(r: io::Result<usize>, len: usize) -> io::Result<()> {
    match r {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(io::Error::other(format!(
            "SCTP sendmsg wrote {n} of {len} bytes"
        ))),
        Err(e) => Err(e),
    }
}

fn is_end_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ENOTCONN)
    )
}
