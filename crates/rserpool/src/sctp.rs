//! Kernel SCTP, one-to-one style (`SOCK_STREAM` + `IPPROTO_SCTP`), for tokio.
//!
//! * [`SctpListener`]: multi-homed bind (first address with `bind`, the rest with
//!   `SCTP_SOCKOPT_BINDX_ADD`), wildcard `[::]` (dual-stack) or `0.0.0.0`, `accept`,
//!   [`SctpListener::local_addrs`] (all addresses, wildcard expanded by the kernel).
//! * [`SctpStream`]: `connect` (`SCTP_SOCKOPT_CONNECTX` for several peer addresses),
//!   `send(ppid, stream, data)` (`sendmsg` + `SCTP_SNDINFO` cmsg), `recv()`
//!   (`recvmsg` + `SCTP_RCVINFO` cmsg, reassembly until `MSG_EOR`, notifications),
//!   `into_split()` into a read half and a cloneable write half.
//! * [`sctp_available`] and [`SctpUnavailable`]: a kernel without SCTP gives a clear
//!   error instead of a panic.
//!
//! Every fd is non-blocking and registered with [`tokio::io::unix::AsyncFd`].
//! Struct layouts and constants come from `<linux/sctp.h>` (RFC 6458 socket API) and are
//! defined here, checked at compile time; see `docs/sctp.md`.
//!
//! Byte order: the kernel passes the PPID through unchanged, so by convention it is in
//! network byte order in `sctp_sndinfo` / `sctp_rcvinfo`. This module converts: the `ppid`
//! arguments and fields of the API are plain host-order numbers (ASAP = 11, ENRP = 12).
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

// ---------------------------------------------------------------------------------------
// Constants from <linux/sctp.h> / <netinet/in.h>
// ---------------------------------------------------------------------------------------

/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: libc::c_int = 132;
/// `SOL_SCTP` (socket option level; equal to `IPPROTO_SCTP`).
pub const SOL_SCTP: libc::c_int = 132;

// setsockopt / getsockopt option names (SOL_SCTP)
const SCTP_NODELAY: libc::c_int = 3;
const SCTP_EVENTS: libc::c_int = 11; // legacy struct sctp_event_subscribe (fallback)
const SCTP_PARTIAL_DELIVERY_POINT: libc::c_int = 19;
const SCTP_RECVRCVINFO: libc::c_int = 32;
const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
const SCTP_SOCKOPT_CONNECTX: libc::c_int = 110;
const SCTP_EVENT: libc::c_int = 127;

// cmsg types (cmsg_level = IPPROTO_SCTP)
const SCTP_SNDINFO: libc::c_int = 2;
const SCTP_RCVINFO: libc::c_int = 3;

// msghdr.msg_flags bit for notifications (enum sctp_msg_flags)
const MSG_NOTIFICATION: libc::c_int = 0x8000;

// enum sctp_sn_type
const SCTP_ASSOC_CHANGE: u16 = 0x8001;
const SCTP_PEER_ADDR_CHANGE: u16 = 0x8002;
const SCTP_SEND_FAILED: u16 = 0x8003;
const SCTP_REMOTE_ERROR: u16 = 0x8004;
const SCTP_SHUTDOWN_EVENT: u16 = 0x8005;
const SCTP_PARTIAL_DELIVERY_EVENT: u16 = 0x8006;
const SCTP_ADAPTATION_INDICATION: u16 = 0x8007;
const SCTP_SENDER_DRY_EVENT: u16 = 0x8009;
const SCTP_SEND_FAILED_EVENT: u16 = 0x800e;

// enum sctp_sac_state
const SCTP_COMM_UP: u16 = 0;
const SCTP_COMM_LOST: u16 = 1;
const SCTP_RESTART: u16 = 2;
const SCTP_SHUTDOWN_COMP: u16 = 3;
const SCTP_CANT_STR_ASSOC: u16 = 4;

/// Default cap for one reassembled message (see [`SctpStream::set_max_message_size`]).
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;
/// Size of one `recvmsg` read; longer messages arrive in several reads (no `MSG_EOR`).
const READ_CHUNK: usize = 64 * 1024;
/// `SCTP_PARTIAL_DELIVERY_POINT`. The kernel's default (0) disables partial delivery, and
/// then a message larger than the receive window (rcvbuf / 2, ~104 KiB by default) stalls
/// the association for good (observed: a 150 000-byte message never arrived). With a
/// point, the kernel hands over the first part early and `recv` reassembles.
const PD_POINT: u32 = 32 * 1024;
const LISTEN_BACKLOG: i32 = 1024;

// ---------------------------------------------------------------------------------------
// Structs from <linux/sctp.h>. They document the layout; the bytes are written and read
// field by field at `offset_of!` positions (no transmute), sizes are checked at compile time.
// ---------------------------------------------------------------------------------------

/// `struct sctp_sndinfo` (RFC 6458 §5.3.4), cmsg `SCTP_SNDINFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SctpSndInfo {
    snd_sid: u16,
    snd_flags: u16,
    snd_ppid: u32, // network byte order
    snd_context: u32,
    snd_assoc_id: i32,
}
const SNDINFO_LEN: usize = 16;
const _: () = assert!(size_of::<SctpSndInfo>() == SNDINFO_LEN);

impl SctpSndInfo {
    fn to_bytes(self) -> [u8; SNDINFO_LEN] {
        let mut b = [0u8; SNDINFO_LEN];
        put(
            &mut b,
            offset_of!(Self, snd_sid),
            &self.snd_sid.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(Self, snd_flags),
            &self.snd_flags.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(Self, snd_ppid),
            &self.snd_ppid.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(Self, snd_context),
            &self.snd_context.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(Self, snd_assoc_id),
            &self.snd_assoc_id.to_ne_bytes(),
        );
        b
    }
}

/// `struct sctp_rcvinfo` (RFC 6458 §5.3.5), cmsg `SCTP_RCVINFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SctpRcvInfo {
    rcv_sid: u16,
    rcv_ssn: u16,
    rcv_flags: u16,
    rcv_ppid: u32, // network byte order
    rcv_tsn: u32,
    rcv_cumtsn: u32,
    rcv_context: u32,
    rcv_assoc_id: i32,
}
const RCVINFO_LEN: usize = 28;
const _: () = assert!(size_of::<SctpRcvInfo>() == RCVINFO_LEN);

impl SctpRcvInfo {
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < RCVINFO_LEN {
            return None;
        }
        Some(Self {
            rcv_sid: rd_u16(b, offset_of!(Self, rcv_sid)),
            rcv_ssn: rd_u16(b, offset_of!(Self, rcv_ssn)),
            rcv_flags: rd_u16(b, offset_of!(Self, rcv_flags)),
            rcv_ppid: rd_u32(b, offset_of!(Self, rcv_ppid)),
            rcv_tsn: rd_u32(b, offset_of!(Self, rcv_tsn)),
            rcv_cumtsn: rd_u32(b, offset_of!(Self, rcv_cumtsn)),
            rcv_context: rd_u32(b, offset_of!(Self, rcv_context)),
            rcv_assoc_id: rd_u32(b, offset_of!(Self, rcv_assoc_id)) as i32,
        })
    }
}

/// `struct sctp_event` (RFC 6458 §6.2.2), socket option `SCTP_EVENT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct SctpEvent {
    se_assoc_id: i32,
    se_type: u16,
    se_on: u8,
}
const EVENT_LEN: usize = 8;
const _: () = assert!(size_of::<SctpEvent>() == EVENT_LEN);

impl SctpEvent {
    fn to_bytes(self) -> [u8; EVENT_LEN] {
        let mut b = [0u8; EVENT_LEN];
        put(
            &mut b,
            offset_of!(Self, se_assoc_id),
            &self.se_assoc_id.to_ne_bytes(),
        );
        put(
            &mut b,
            offset_of!(Self, se_type),
            &self.se_type.to_ne_bytes(),
        );
        put(&mut b, offset_of!(Self, se_on), &[self.se_on]);
        b
    }
}

/// Common header of every notification (`union sctp_notification.sn_header`).
#[repr(C)]
struct SctpNotificationHeader {
    sn_type: u16,
    sn_flags: u16,
    sn_length: u32,
}
const _: () = assert!(size_of::<SctpNotificationHeader>() == 8);

/// `struct sctp_assoc_change` without the trailing flexible `sac_info[]`.
#[repr(C)]
struct SctpAssocChange {
    sac_type: u16,
    sac_flags: u16,
    sac_length: u32,
    sac_state: u16,
    sac_error: u16,
    sac_outbound_streams: u16,
    sac_inbound_streams: u16,
    sac_assoc_id: i32,
}
const ASSOC_CHANGE_LEN: usize = 20;
const _: () = assert!(size_of::<SctpAssocChange>() == ASSOC_CHANGE_LEN);

/// `struct sctp_paddr_change` is `__attribute__((packed, aligned(4)))`:
/// type u16 @0, flags u16 @2, length u32 @4, `sockaddr_storage` @8 (128 bytes),
/// state i32 @136, error i32 @140, assoc_id i32 @144; 148 bytes in all.
const PADDR_ADDR_OFF: usize = 8;
const PADDR_STATE_OFF: usize = 8 + 128;
const PADDR_ERROR_OFF: usize = PADDR_STATE_OFF + 4;
const PADDR_CHANGE_LEN: usize = PADDR_ERROR_OFF + 8;

/// `struct sctp_getaddrs` header (assoc_id in, addr_num out), followed by packed
/// `sockaddr_in` (16 bytes) / `sockaddr_in6` (28 bytes).
#[repr(C)]
struct SctpGetAddrs {
    assoc_id: i32,
    addr_num: u32,
}
const GETADDRS_HDR: usize = 8;
const _: () = assert!(size_of::<SctpGetAddrs>() == GETADDRS_HDR);

const SOCKADDR_IN_LEN: usize = size_of::<libc::sockaddr_in>();
const SOCKADDR_IN6_LEN: usize = size_of::<libc::sockaddr_in6>();
const _: () = assert!(SOCKADDR_IN_LEN == 16 && SOCKADDR_IN6_LEN == 28);

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}
fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

// ---------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------

/// The kernel refuses `socket(…, IPPROTO_SCTP)`. Carried inside the `io::Error` returned by
/// [`SctpListener::bind`] / [`SctpStream::connect`]; test with [`is_sctp_unavailable`].
#[derive(Debug)]
pub struct SctpUnavailable {
    source: io::Error,
}

impl fmt::Display for SctpUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this kernel has no SCTP support (socket(IPPROTO_SCTP) failed: {}); use tcp:// instead",
            self.source
        )
    }
}

impl std::error::Error for SctpUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// True if `err` says the kernel has no SCTP (see [`SctpUnavailable`]).
pub fn is_sctp_unavailable(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.downcast_ref::<SctpUnavailable>().is_some())
}

/// Whether this kernel can create SCTP sockets (tries `socket(AF_INET, SOCK_STREAM,
/// IPPROTO_SCTP)` and closes it again).
pub fn sctp_available() -> bool {
    raw_socket(Domain::IPV4).is_ok()
}

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

/// SCTP notifications surfaced by [`SctpStream::recv`]. Subscribed: association change,
/// shutdown event, peer address change; other types show up as [`AssocEvent::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssocEvent {
    /// `SCTP_ASSOC_CHANGE` / `SCTP_COMM_UP`: the association is established.
    Up {
        outbound_streams: u16,
        inbound_streams: u16,
    },
    /// `SCTP_COMM_LOST`: the association failed (ABORT received, retransmissions exhausted).
    /// `error` is the `sac_error` field as an SCTP error cause code (RFC 9260 §3.3.10;
    /// 12 = User-Initiated Abort, e.g. peer process killed with unread data; 0 = none).
    /// After this, [`SctpStream::recv`] returns `Eof`.
    Lost { error: u16 },
    /// `SCTP_RESTART`: the peer restarted (new association with the same addresses).
    Restart {
        outbound_streams: u16,
        inbound_streams: u16,
    },
    /// `SCTP_SHUTDOWN_COMP`: graceful shutdown completed.
    ShutdownComplete,
    /// `SCTP_CANT_STR_ASSOC`: the association could not be started.
    CantStart { error: u16 },
    /// `SCTP_SHUTDOWN_EVENT`: the peer sent SHUTDOWN; no more data will arrive.
    Shutdown,
    /// `SCTP_PEER_ADDR_CHANGE` for one of the peer's addresses.
    PeerAddrChange {
        addr: Option<SocketAddr>,
        state: PeerAddrState,
        error: i32,
    },
    /// Any other notification type (`sn_type`), e.g. `SCTP_SEND_FAILED_EVENT`.
    Other { sn_type: u16, name: &'static str },
}

/// `spc_state` of a peer address change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddrState {
    Available,
    Unreachable,
    Removed,
    Added,
    MadePrimary,
    Confirmed,
    PotentiallyFailed,
    Unknown(i32),
}

impl PeerAddrState {
    fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::Available,
            1 => Self::Unreachable,
            2 => Self::Removed,
            3 => Self::Added,
            4 => Self::MadePrimary,
            5 => Self::Confirmed,
            6 => Self::PotentiallyFailed,
            v => Self::Unknown(v),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------------------

/// A listening one-to-one style SCTP socket.
#[derive(Debug)]
pub struct SctpListener {
    fd: AsyncFd<Socket>,
}

impl SctpListener {
    /// Binds to all of `addrs` (multi-homing) and listens. The first address is bound with
    /// `bind`, the rest are added with `SCTP_SOCKOPT_BINDX_ADD`; a port of 0 in later
    /// addresses means "the port the first bind got". `[::]:p` binds every IPv4 and IPv6
    /// address of the host (dual-stack), `0.0.0.0:p` every IPv4 address.
    /// Must be called inside a tokio runtime.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SctpListener::bind: no address given",
            ));
        }
        let sock = new_socket(needs_v6(addrs))?;
        sock.set_reuse_address(true)?;
        bind_all(&sock, addrs)?;
        sock.listen(LISTEN_BACKLOG)?;
        Ok(Self {
            fd: register(sock, Interest::READABLE)?,
        })
    }

    /// Accepts one association. The new stream's first [`SctpStream::recv`] item is
    /// normally `Notification(AssocEvent::Up { .. })`. Cancel safe.
    pub async fn accept(&self) -> io::Result<(SctpStream, SocketAddr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| fd.get_ref().accept()) {
                Ok(Ok((sock, addr))) => {
                    let peer = sockaddr_to_std(&addr)?;
                    // Options are inherited from the listener; RECVRCVINFO again for certainty.
                    sock.set_nonblocking(true)?;
                    setsockopt_int(sock.as_raw_fd(), SCTP_RECVRCVINFO, 1)?;
                    set_pd_point(sock.as_raw_fd());
                    return Ok((SctpStream::from_socket(sock)?, peer));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// The first bound address as `getsockname` reports it (gives the port after binding
    /// port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sockaddr_to_std(&self.fd.get_ref().local_addr()?)
    }

    /// All local addresses of the endpoint (`SCTP_GET_LOCAL_ADDRS`, i.e. `sctp_getladdrs`
    /// with association id 0). For a wildcard bind the kernel lists every address of the
    /// host (loopback included); IPv4-mapped IPv6 addresses are returned as IPv4.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        get_addrs(self.fd.as_raw_fd(), SCTP_GET_LOCAL_ADDRS, 0)
    }
}

impl AsRawFd for SctpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

// ---------------------------------------------------------------------------------------
// Stream
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
    /// (multi-homed like [`SctpListener::bind`]; port 0 = ephemeral). A PE must bind its
    /// registrar association to every address it registers (RFC 5352 §2.1).
    pub async fn connect_from(local: &[SocketAddr], addrs: &[SocketAddr]) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SctpStream::connect: no address given",
            ));
        }
        let v6 = needs_v6(addrs) || needs_v6(local);
        let sock = new_socket(v6)?;
        if !local.is_empty() {
            bind_all(&sock, local)?;
        }
        let started = if addrs.len() == 1 {
            sock.connect(&SockAddr::from(addrs[0])).map(|_| ())
        } else {
            let packed = pack_addrs(addrs);
            setsockopt_bytes(sock.as_raw_fd(), SCTP_SOCKOPT_CONNECTX, &packed).map(|_| ())
        };
        match started {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
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

    fn from_socket(sock: Socket) -> io::Result<Self> {
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

// ---------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------

fn parse_notification(b: &[u8]) -> AssocEvent {
    let other = |sn_type: u16| AssocEvent::Other {
        sn_type,
        name: notification_name(sn_type),
    };
    if b.len() < size_of::<SctpNotificationHeader>() {
        return other(0);
    }
    let sn_type = rd_u16(b, offset_of!(SctpNotificationHeader, sn_type));
    match sn_type {
        SCTP_ASSOC_CHANGE if b.len() >= ASSOC_CHANGE_LEN => {
            let state = rd_u16(b, offset_of!(SctpAssocChange, sac_state));
            // The kernel fills sac_error with the SCTP error cause code in network byte
            // order (e.g. 0x0c00 on x86 for cause 12, User-Initiated Abort).
            let error = u16::from_be(rd_u16(b, offset_of!(SctpAssocChange, sac_error)));
            let outbound_streams = rd_u16(b, offset_of!(SctpAssocChange, sac_outbound_streams));
            let inbound_streams = rd_u16(b, offset_of!(SctpAssocChange, sac_inbound_streams));
            match state {
                SCTP_COMM_UP => AssocEvent::Up {
                    outbound_streams,
                    inbound_streams,
                },
                SCTP_COMM_LOST => AssocEvent::Lost { error },
                SCTP_RESTART => AssocEvent::Restart {
                    outbound_streams,
                    inbound_streams,
                },
                SCTP_SHUTDOWN_COMP => AssocEvent::ShutdownComplete,
                SCTP_CANT_STR_ASSOC => AssocEvent::CantStart { error },
                _ => other(sn_type),
            }
        }
        SCTP_SHUTDOWN_EVENT => AssocEvent::Shutdown,
        SCTP_PEER_ADDR_CHANGE if b.len() >= PADDR_CHANGE_LEN => AssocEvent::PeerAddrChange {
            addr: parse_sockaddr(&b[PADDR_ADDR_OFF..PADDR_STATE_OFF]).map(|(a, _)| a),
            state: PeerAddrState::from_raw(rd_u32(b, PADDR_STATE_OFF) as i32),
            error: rd_u32(b, PADDR_ERROR_OFF) as i32,
        },
        t => other(t),
    }
}

fn notification_name(t: u16) -> &'static str {
    match t {
        SCTP_ASSOC_CHANGE => "SCTP_ASSOC_CHANGE",
        SCTP_PEER_ADDR_CHANGE => "SCTP_PEER_ADDR_CHANGE",
        SCTP_SEND_FAILED => "SCTP_SEND_FAILED",
        SCTP_REMOTE_ERROR => "SCTP_REMOTE_ERROR",
        SCTP_SHUTDOWN_EVENT => "SCTP_SHUTDOWN_EVENT",
        SCTP_PARTIAL_DELIVERY_EVENT => "SCTP_PARTIAL_DELIVERY_EVENT",
        SCTP_ADAPTATION_INDICATION => "SCTP_ADAPTATION_INDICATION",
        SCTP_SENDER_DRY_EVENT => "SCTP_SENDER_DRY_EVENT",
        SCTP_SEND_FAILED_EVENT => "SCTP_SEND_FAILED_EVENT",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------
// Socket setup
// ---------------------------------------------------------------------------------------

/// Registers `sock` with the tokio reactor; an error (not a panic) outside a runtime.
fn register(sock: Socket, interest: Interest) -> io::Result<AsyncFd<Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "SCTP sockets must be created inside a tokio runtime",
        ));
    }
    // SAFETY: `Socket` owns its fd, which stays open and unchanged until the `AsyncFd`
    // (the socket's only owner from here on) drops it; nothing here closes or replaces it.
    unsafe { AsyncFd::register_with_interest(sock, interest) }.map_err(|e| e.into_parts().1)
}

fn needs_v6(addrs: &[SocketAddr]) -> bool {
    addrs.iter().any(SocketAddr::is_ipv6)
}

fn raw_socket(domain: Domain) -> io::Result<Socket> {
    Socket::new(domain, Type::STREAM, Some(Protocol::from(IPPROTO_SCTP))).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) => {
                io::Error::new(io::ErrorKind::Unsupported, SctpUnavailable { source: e })
            }
            _ => e,
        }
    })
}

/// A non-blocking, close-on-exec SCTP socket with RCVINFO and the notification
/// subscriptions enabled (accepted sockets inherit them from the listener).
fn new_socket(v6: bool) -> io::Result<Socket> {
    let sock = raw_socket(if v6 { Domain::IPV6 } else { Domain::IPV4 })?;
    if v6 {
        // dual-stack: `[::]` covers IPv4 too, and IPv4 addresses may be mixed in
        sock.set_only_v6(false)?;
    }
    sock.set_nonblocking(true)?;
    setsockopt_int(sock.as_raw_fd(), SCTP_RECVRCVINFO, 1)?;
    subscribe_events(sock.as_raw_fd())?;
    set_pd_point(sock.as_raw_fd());
    Ok(sock)
}

/// Best effort: the kernel refuses points above rcvbuf / 2 (EINVAL).
fn set_pd_point(fd: RawFd) {
    let _ = setsockopt_bytes(fd, SCTP_PARTIAL_DELIVERY_POINT, &PD_POINT.to_ne_bytes());
}

fn subscribe_events(fd: RawFd) -> io::Result<()> {
    for se_type in [
        SCTP_ASSOC_CHANGE,
        SCTP_SHUTDOWN_EVENT,
        SCTP_PEER_ADDR_CHANGE,
    ] {
        let ev = SctpEvent {
            se_assoc_id: 0, // SCTP_FUTURE_ASSOC
            se_type,
            se_on: 1,
        };
        match setsockopt_bytes(fd, SCTP_EVENT, &ev.to_bytes()) {
            Ok(_) => {}
            // Kernels before 5.0 lack SCTP_EVENT: use the legacy struct
            // sctp_event_subscribe (data_io, association, address, send_failure,
            // peer_error, shutdown).
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                return setsockopt_bytes(fd, SCTP_EVENTS, &[0, 1, 1, 0, 0, 1]).map(|_| ());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn bind_all(sock: &Socket, addrs: &[SocketAddr]) -> io::Result<()> {
    let Some((first, rest)) = addrs.split_first() else {
        return Ok(());
    };
    sock.bind(&SockAddr::from(*first))?;
    if rest.is_empty() {
        return Ok(());
    }
    let port = sockaddr_to_std(&sock.local_addr()?)?.port();
    let rest: Vec<SocketAddr> = rest
        .iter()
        .map(|a| {
            let mut a = *a;
            if a.port() == 0 {
                a.set_port(port);
            }
            a
        })
        .collect();
    setsockopt_bytes(sock.as_raw_fd(), SCTP_SOCKOPT_BINDX_ADD, &pack_addrs(&rest)).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

/// IPv4-mapped IPv6 becomes IPv4; the scope id is kept only for link-local IPv6 (the
/// kernel reports `::1` with scope id 1).
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None if v6.ip().segments()[0] & 0xffc0 != 0xfe80 => {
                SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), v6.flowinfo(), 0))
            }
            None => a,
        },
        a => a,
    }
}

fn sockaddr_to_std(a: &SockAddr) -> io::Result<SocketAddr> {
    a.as_socket().map(canonical).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "SCTP socket returned a non-IP address",
        )
    })
}

/// Encodes addresses as the kernel's packed array for bindx/connectx: each one a
/// `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes), no padding between them.
fn pack_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(addrs.len() * SOCKADDR_IN6_LEN);
    for a in addrs {
        match a {
            SocketAddr::V4(v4) => {
                let mut b = [0u8; SOCKADDR_IN_LEN];
                let fam = libc::AF_INET as libc::sa_family_t;
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in, sin_family),
                    &fam.to_ne_bytes(),
                );
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in, sin_port),
                    &v4.port().to_be_bytes(),
                );
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in, sin_addr),
                    &v4.ip().octets(),
                );
                out.extend_from_slice(&b);
            }
            SocketAddr::V6(v6) => {
                let mut b = [0u8; SOCKADDR_IN6_LEN];
                let fam = libc::AF_INET6 as libc::sa_family_t;
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in6, sin6_family),
                    &fam.to_ne_bytes(),
                );
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in6, sin6_port),
                    &v6.port().to_be_bytes(),
                );
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in6, sin6_flowinfo),
                    &v6.flowinfo().to_be_bytes(),
                );
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in6, sin6_addr),
                    &v6.ip().octets(),
                );
                put(
                    &mut b,
                    offset_of!(libc::sockaddr_in6, sin6_scope_id),
                    &v6.scope_id().to_ne_bytes(),
                );
                out.extend_from_slice(&b);
            }
        }
    }
    out
}

/// Decodes one `sockaddr_in` / `sockaddr_in6` at the start of `b`; returns it and its size.
fn parse_sockaddr(b: &[u8]) -> Option<(SocketAddr, usize)> {
    let fam_off = offset_of!(libc::sockaddr_in, sin_family);
    let fam = libc::sa_family_t::from_ne_bytes(
        b.get(fam_off..fam_off + size_of::<libc::sa_family_t>())?
            .try_into()
            .ok()?,
    );
    match i32::from(fam) {
        libc::AF_INET if b.len() >= SOCKADDR_IN_LEN => {
            let p = offset_of!(libc::sockaddr_in, sin_port);
            let a = offset_of!(libc::sockaddr_in, sin_addr);
            let port = u16::from_be_bytes([b[p], b[p + 1]]);
            let ip = Ipv4Addr::new(b[a], b[a + 1], b[a + 2], b[a + 3]);
            Some((SocketAddr::V4(SocketAddrV4::new(ip, port)), SOCKADDR_IN_LEN))
        }
        libc::AF_INET6 if b.len() >= SOCKADDR_IN6_LEN => {
            let p = offset_of!(libc::sockaddr_in6, sin6_port);
            let f = offset_of!(libc::sockaddr_in6, sin6_flowinfo);
            let a = offset_of!(libc::sockaddr_in6, sin6_addr);
            let s = offset_of!(libc::sockaddr_in6, sin6_scope_id);
            let port = u16::from_be_bytes([b[p], b[p + 1]]);
            let flow = u32::from_be_bytes([b[f], b[f + 1], b[f + 2], b[f + 3]]);
            let octets: [u8; 16] = b[a..a + 16].try_into().ok()?;
            let scope = rd_u32(b, s);
            let v6 = SocketAddrV6::new(Ipv6Addr::from(octets), port, flow, scope);
            Some((canonical(SocketAddr::V6(v6)), SOCKADDR_IN6_LEN))
        }
        _ => None,
    }
}

/// `getsockopt(SCTP_GET_LOCAL_ADDRS / SCTP_GET_PEER_ADDRS)`, growing the buffer on ENOMEM.
fn get_addrs(fd: RawFd, opt: libc::c_int, assoc_id: i32) -> io::Result<Vec<SocketAddr>> {
    let mut cap = 4096usize;
    loop {
        let mut buf = vec![0u8; cap];
        put(
            &mut buf,
            offset_of!(SctpGetAddrs, assoc_id),
            &assoc_id.to_ne_bytes(),
        );
        match getsockopt_bytes(fd, opt, &mut buf) {
            // The returned optlen is not usable: for SCTP_GET_LOCAL_ADDRS the kernel (6.1)
            // stores only the address bytes, without the 8-byte header, while
            // SCTP_GET_PEER_ADDRS includes it. Walk `addr_num` entries instead.
            Ok(_len) => {
                let num = rd_u32(&buf, offset_of!(SctpGetAddrs, addr_num)) as usize;
                let mut out = Vec::with_capacity(num.min(64));
                let mut off = GETADDRS_HDR;
                for _ in 0..num {
                    let Some((a, used)) = parse_sockaddr(&buf[off..]) else {
                        break;
                    };
                    out.push(a);
                    off += used;
                }
                return Ok(out);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && cap < (1 << 20) => cap *= 4,
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Control messages (safe byte-level encoding; Linux `struct cmsghdr` is
// { size_t cmsg_len; int cmsg_level; int cmsg_type; } with data aligned to size_t)
// ---------------------------------------------------------------------------------------

const fn cmsg_align(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}
const CMSG_HDR: usize = cmsg_align(size_of::<libc::cmsghdr>());
const SNDINFO_CMSG_SPACE: usize = CMSG_HDR + cmsg_align(SNDINFO_LEN);

#[repr(C, align(8))]
struct SndCmsg([u8; SNDINFO_CMSG_SPACE]);

fn build_cmsg(cmsg_type: libc::c_int, data: &[u8; SNDINFO_LEN]) -> SndCmsg {
    let mut b = [0u8; SNDINFO_CMSG_SPACE];
    let len = CMSG_HDR + data.len();
    put(
        &mut b,
        offset_of!(libc::cmsghdr, cmsg_len),
        &len.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(libc::cmsghdr, cmsg_level),
        &SOL_SCTP.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(libc::cmsghdr, cmsg_type),
        &cmsg_type.to_ne_bytes(),
    );
    put(&mut b, CMSG_HDR, data);
    SndCmsg(b)
}

#[repr(C, align(8))]
struct CmsgBuf([u8; 256]);

impl CmsgBuf {
    fn new() -> Self {
        Self([0u8; 256])
    }
}

/// Finds the data of the first control message with `level`/`ty`.
fn find_cmsg(control: &[u8], level: libc::c_int, ty: libc::c_int) -> Option<&[u8]> {
    let mut off = 0usize;
    while off + CMSG_HDR <= control.len() {
        let h = &control[off..];
        let lo = offset_of!(libc::cmsghdr, cmsg_len);
        let len = usize::from_ne_bytes(h.get(lo..lo + size_of::<usize>())?.try_into().ok()?);
        let lvl = rd_u32(h, offset_of!(libc::cmsghdr, cmsg_level)) as libc::c_int;
        let typ = rd_u32(h, offset_of!(libc::cmsghdr, cmsg_type)) as libc::c_int;
        if len < CMSG_HDR || off + len > control.len() {
            return None;
        }
        if lvl == level && typ == ty {
            return Some(&h[CMSG_HDR..len]);
        }
        off += cmsg_align(len);
    }
    None
}

// ---------------------------------------------------------------------------------------
// Syscalls (the only unsafe code)
// ---------------------------------------------------------------------------------------

fn setsockopt_bytes(fd: RawFd, name: libc::c_int, val: &[u8]) -> io::Result<libc::c_int> {
    // SAFETY: `val` is a live, initialised buffer of `val.len()` bytes; the kernel only
    // reads `optlen` bytes from it. An invalid fd yields EBADF, not UB.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_SCTP,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(fd: RawFd, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    setsockopt_bytes(fd, name, &v.to_ne_bytes()).map(|_| ())
}

fn getsockopt_bytes(fd: RawFd, name: libc::c_int, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes and `len` is a valid socklen_t the kernel
    // updates; both outlive the call.
    let r = unsafe { libc::getsockopt(fd, SOL_SCTP, name, buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

fn sendmsg_raw(fd: RawFd, data: &[u8], control: &[u8]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void, // the kernel only reads it
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero (null pointers, zero lengths) is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_ptr() as *mut libc::c_void; // read-only for sendmsg
    msg.msg_controllen = control.len() as _;
    // SAFETY: `msg` points at `iov` (-> `data`) and `control`, all live and valid for their
    // lengths during the call; sendmsg does not write through them.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Returns (bytes, msg_flags, control bytes used).
fn recvmsg_raw(
    fd: RawFd,
    buf: &mut [u8],
    control: &mut [u8],
) -> io::Result<(usize, libc::c_int, usize)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero (null pointers, zero lengths) is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: `msg` points at `iov` (-> `buf`) and `control`, both exclusively borrowed and
    // writable for their lengths during the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((n as usize, msg.msg_flags, msg.msg_controllen as usize))
    }
}

#[cfg(test)]
mod tests;
