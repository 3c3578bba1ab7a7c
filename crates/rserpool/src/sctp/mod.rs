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
//! defined in `sys`, checked at compile time; see `docs/sctp.md`.
//!
//! Byte order: the kernel passes the PPID through unchanged, so by convention it is in
//! network byte order in `sctp_sndinfo` / `sctp_rcvinfo`. This module converts: the `ppid`
//! arguments and fields of the API are plain host-order numbers (ASAP = 11, ENRP = 12).
//!
//! Layout: `sys` is the kernel ABI (constants, struct layouts, socket options, cmsgs,
//! `sendmsg` / `recvmsg`) and the **only** place with `unsafe` — every other module has
//! `#![forbid(unsafe_code)]`; `addr` packs and parses socket addresses; `notify` decodes
//! notifications; `stream` is the association and its halves; `listener` binds and accepts.

use std::fmt;
use std::io;

use socket2::Domain;

mod addr;
mod listener;
mod notify;
mod stream;
// The kernel ABI: the one module of the crate allowed to use `unsafe`.
#[allow(unsafe_code)]
mod sys;

pub use listener::SctpListener;
pub use notify::{AssocEvent, PeerAddrState};
pub use stream::{RecvItem, SctpReadHalf, SctpStream, SctpWriteHalf, DEFAULT_MAX_MESSAGE};
pub use sys::{IPPROTO_SCTP, SOL_SCTP};

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
    sys::raw_socket(Domain::IPV4).is_ok()
}

// Field-level byte access for the kernel structs (native byte order), shared by `sys`,
// `addr` and `notify`.
fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}
fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[cfg(test)]
mod tests;
