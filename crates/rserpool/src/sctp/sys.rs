//! Everything that touches the kernel's SCTP ABI: constants and struct layouts from
//! `<linux/sctp.h>` (RFC 6458), socket options (events, RCVINFO, partial delivery point,
//! `sctp_bindx` / `sctp_connectx`, address lists), the `SCTP_SNDINFO` / `SCTP_RCVINFO`
//! control messages, `sendmsg` / `recvmsg`, and the registration with tokio's reactor.
//!
//! The only module of the crate that may use `unsafe` (allowed on `mod sys;` in
//! `sctp/mod.rs`); every `unsafe` block carries its SAFETY argument. The rest of `sctp`
//! builds on the safe functions here.

use std::io;
use std::mem::{offset_of, size_of};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::addr::{pack_addrs, parse_sockaddr, sockaddr_to_std};
use super::{put, rd_u16, rd_u32, SctpUnavailable};

// ---------------------------------------------------------------------------------------
// Constants from <linux/sctp.h> / <netinet/in.h>
// ---------------------------------------------------------------------------------------

/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: libc::c_int = 132;
/// `SOL_SCTP` (socket option level; equal to `IPPROTO_SCTP`).
pub const SOL_SCTP: libc::c_int = 132;

// setsockopt / getsockopt option names (SOL_SCTP)
pub(super) const SCTP_NODELAY: libc::c_int = 3;
pub(super) const SCTP_EVENTS: libc::c_int = 11; // legacy struct sctp_event_subscribe (fallback)
pub(super) const SCTP_PARTIAL_DELIVERY_POINT: libc::c_int = 19;
pub(super) const SCTP_RECVRCVINFO: libc::c_int = 32;
pub(super) const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
pub(super) const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
pub(super) const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
pub(super) const SCTP_SOCKOPT_CONNECTX: libc::c_int = 110;
pub(super) const SCTP_EVENT: libc::c_int = 127;

// cmsg types (cmsg_level = IPPROTO_SCTP)
pub(super) const SCTP_SNDINFO: libc::c_int = 2;
pub(super) const SCTP_RCVINFO: libc::c_int = 3;

// msghdr.msg_flags bit for notifications (enum sctp_msg_flags)
pub(super) const MSG_NOTIFICATION: libc::c_int = 0x8000;

// enum sctp_sn_type
pub(super) const SCTP_ASSOC_CHANGE: u16 = 0x8001;
pub(super) const SCTP_PEER_ADDR_CHANGE: u16 = 0x8002;
pub(super) const SCTP_SEND_FAILED: u16 = 0x8003;
pub(super) const SCTP_REMOTE_ERROR: u16 = 0x8004;
pub(super) const SCTP_SHUTDOWN_EVENT: u16 = 0x8005;
pub(super) const SCTP_PARTIAL_DELIVERY_EVENT: u16 = 0x8006;
pub(super) const SCTP_ADAPTATION_INDICATION: u16 = 0x8007;
pub(super) const SCTP_SENDER_DRY_EVENT: u16 = 0x8009;
pub(super) const SCTP_SEND_FAILED_EVENT: u16 = 0x800e;

// enum sctp_sac_state
pub(super) const SCTP_COMM_UP: u16 = 0;
pub(super) const SCTP_COMM_LOST: u16 = 1;
pub(super) const SCTP_RESTART: u16 = 2;
pub(super) const SCTP_SHUTDOWN_COMP: u16 = 3;
pub(super) const SCTP_CANT_STR_ASSOC: u16 = 4;

/// `SCTP_PARTIAL_DELIVERY_POINT`. The kernel's default (0) disables partial delivery, and
/// then a message larger than the receive window (rcvbuf / 2, ~104 KiB by default) stalls
/// the association for good (observed: a 150 000-byte message never arrived). With a
/// point, the kernel hands over the first part early and `recv` reassembles.
pub(super) const PD_POINT: u32 = 32 * 1024;

// ---------------------------------------------------------------------------------------
// Structs from <linux/sctp.h>. They document the layout; the bytes are written and read
// field by field at `offset_of!` positions (no transmute), sizes are checked at compile time.
// ---------------------------------------------------------------------------------------

/// `struct sctp_sndinfo` (RFC 6458 §5.3.4), cmsg `SCTP_SNDINFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SctpSndInfo {
    pub(super) snd_sid: u16,
    pub(super) snd_flags: u16,
    pub(super) snd_ppid: u32, // network byte order
    pub(super) snd_context: u32,
    pub(super) snd_assoc_id: i32,
}
pub(super) const SNDINFO_LEN: usize = 16;
const _: () = assert!(size_of::<SctpSndInfo>() == SNDINFO_LEN);

impl SctpSndInfo {
    pub(super) fn to_bytes(self) -> [u8; SNDINFO_LEN] {
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
pub(super) struct SctpRcvInfo {
    pub(super) rcv_sid: u16,
    pub(super) rcv_ssn: u16,
    pub(super) rcv_flags: u16,
    pub(super) rcv_ppid: u32, // network byte order
    pub(super) rcv_tsn: u32,
    pub(super) rcv_cumtsn: u32,
    pub(super) rcv_context: u32,
    pub(super) rcv_assoc_id: i32,
}
pub(super) const RCVINFO_LEN: usize = 28;
const _: () = assert!(size_of::<SctpRcvInfo>() == RCVINFO_LEN);

impl SctpRcvInfo {
    pub(super) fn from_bytes(b: &[u8]) -> Option<Self> {
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
pub(super) struct SctpEvent {
    pub(super) se_assoc_id: i32,
    pub(super) se_type: u16,
    pub(super) se_on: u8,
}
pub(super) const EVENT_LEN: usize = 8;
const _: () = assert!(size_of::<SctpEvent>() == EVENT_LEN);

impl SctpEvent {
    pub(super) fn to_bytes(self) -> [u8; EVENT_LEN] {
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
pub(super) struct SctpNotificationHeader {
    pub(super) sn_type: u16,
    pub(super) sn_flags: u16,
    pub(super) sn_length: u32,
}
const _: () = assert!(size_of::<SctpNotificationHeader>() == 8);

/// `struct sctp_assoc_change` without the trailing flexible `sac_info[]`.
#[repr(C)]
pub(super) struct SctpAssocChange {
    pub(super) sac_type: u16,
    pub(super) sac_flags: u16,
    pub(super) sac_length: u32,
    pub(super) sac_state: u16,
    pub(super) sac_error: u16,
    pub(super) sac_outbound_streams: u16,
    pub(super) sac_inbound_streams: u16,
    pub(super) sac_assoc_id: i32,
}
pub(super) const ASSOC_CHANGE_LEN: usize = 20;
const _: () = assert!(size_of::<SctpAssocChange>() == ASSOC_CHANGE_LEN);

/// `struct sctp_paddr_change` is `__attribute__((packed, aligned(4)))`:
/// type u16 @0, flags u16 @2, length u32 @4, `sockaddr_storage` @8 (128 bytes),
/// state i32 @136, error i32 @140, assoc_id i32 @144; 148 bytes in all.
pub(super) const PADDR_ADDR_OFF: usize = 8;
pub(super) const PADDR_STATE_OFF: usize = 8 + 128;
pub(super) const PADDR_ERROR_OFF: usize = PADDR_STATE_OFF + 4;
pub(super) const PADDR_CHANGE_LEN: usize = PADDR_ERROR_OFF + 8;

/// `struct sctp_getaddrs` header (assoc_id in, addr_num out), followed by packed
/// `sockaddr_in` (16 bytes) / `sockaddr_in6` (28 bytes).
#[repr(C)]
pub(super) struct SctpGetAddrs {
    pub(super) assoc_id: i32,
    pub(super) addr_num: u32,
}
pub(super) const GETADDRS_HDR: usize = 8;
const _: () = assert!(size_of::<SctpGetAddrs>() == GETADDRS_HDR);

// ---------------------------------------------------------------------------------------
// Socket setup
// ---------------------------------------------------------------------------------------

/// Registers `sock` with the tokio reactor; an error (not a panic) outside a runtime.
pub(super) fn register(sock: Socket, interest: Interest) -> io::Result<AsyncFd<Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "SCTP sockets must be created inside a tokio runtime",
        ));
    }
    // SAFETY: `Socket` owns its fd, which stays open and unchanged until the `AsyncFd`
    // (the socket's only owner from here on) drops it; nothing here closes or replaces it.
    unsafe { AsyncFd::register_with_interest(sock, interest) }.map_err(|e| e.into_parts().1)
}

pub(super) fn raw_socket(domain: Domain) -> io::Result<Socket> {
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
pub(super) fn new_socket(v6: bool) -> io::Result<Socket> {
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
pub(super) fn set_pd_point(fd: RawFd) {
    let _ = setsockopt_bytes(fd, SCTP_PARTIAL_DELIVERY_POINT, &PD_POINT.to_ne_bytes());
}

pub(super) fn subscribe_events(fd: RawFd) -> io::Result<()> {
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

pub(super) fn bind_all(sock: &Socket, addrs: &[SocketAddr]) -> io::Result<()> {
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

/// Starts an association to `addrs`: `connect` for one address, `SCTP_SOCKOPT_CONNECTX`
/// (`sctp_connectx`) for several. `EINPROGRESS` (non-blocking socket) counts as started.
pub(super) fn start_connect(sock: &Socket, addrs: &[SocketAddr]) -> io::Result<()> {
    let started = if addrs.len() == 1 {
        sock.connect(&SockAddr::from(addrs[0])).map(|_| ())
    } else {
        let packed = pack_addrs(addrs);
        setsockopt_bytes(sock.as_raw_fd(), SCTP_SOCKOPT_CONNECTX, &packed).map(|_| ())
    };
    match started {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// Address lists
// ---------------------------------------------------------------------------------------

/// `getsockopt(SCTP_GET_LOCAL_ADDRS / SCTP_GET_PEER_ADDRS)`, growing the buffer on ENOMEM.
pub(super) fn get_addrs(fd: RawFd, opt: libc::c_int, assoc_id: i32) -> io::Result<Vec<SocketAddr>> {
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

pub(super) const fn cmsg_align(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}
pub(super) const CMSG_HDR: usize = cmsg_align(size_of::<libc::cmsghdr>());
pub(super) const SNDINFO_CMSG_SPACE: usize = CMSG_HDR + cmsg_align(SNDINFO_LEN);

#[repr(C, align(8))]
pub(super) struct SndCmsg(pub(super) [u8; SNDINFO_CMSG_SPACE]);

pub(super) fn build_cmsg(cmsg_type: libc::c_int, data: &[u8; SNDINFO_LEN]) -> SndCmsg {
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
pub(super) struct CmsgBuf(pub(super) [u8; 256]);

impl CmsgBuf {
    pub(super) fn new() -> Self {
        Self([0u8; 256])
    }
}

/// Finds the data of the first control message with `level`/`ty`.
pub(super) fn find_cmsg(control: &[u8], level: libc::c_int, ty: libc::c_int) -> Option<&[u8]> {
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
// Syscalls
// ---------------------------------------------------------------------------------------

pub(super) fn setsockopt_bytes(
    fd: RawFd,
    name: libc::c_int,
    val: &[u8],
) -> io::Result<libc::c_int> {
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

pub(super) fn setsockopt_int(fd: RawFd, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    setsockopt_bytes(fd, name, &v.to_ne_bytes()).map(|_| ())
}

pub(super) fn getsockopt_bytes(fd: RawFd, name: libc::c_int, buf: &mut [u8]) -> io::Result<usize> {
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

pub(super) fn sendmsg_raw(fd: RawFd, data: &[u8], control: &[u8]) -> io::Result<usize> {
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
pub(super) fn recvmsg_raw(
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

/// `CMSG_LEN(0)` and `CMSG_SPACE(16)` as libc computes them (for the layout test).
#[cfg(test)]
pub(super) fn libc_cmsg_sizes() -> (usize, usize) {
    // SAFETY: CMSG_LEN / CMSG_SPACE are pure arithmetic.
    unsafe { (libc::CMSG_LEN(0) as usize, libc::CMSG_SPACE(16) as usize) }
}
