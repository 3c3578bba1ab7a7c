//! [`SctpListener`]: multi-homed bind, listen and accept on a one-to-one style socket.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::addr::{needs_v6, sockaddr_to_std};
use super::sys::{
    bind_all, get_addrs, new_socket, register, set_pd_point, setsockopt_int, SCTP_GET_LOCAL_ADDRS,
    SCTP_RECVRCVINFO,
};
use super::SctpStream;

use crate::LISTEN_BACKLOG;

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
        Self::bind_with(addrs, false)
    }

    /// Like [`bind`](Self::bind), with `SO_REUSEPORT` as well: associations opened with
    /// [`SctpStream::connect_from`](super::SctpStream::connect_from) from the same port can
    /// bind it while it listens (the kernel only looks up listening endpoints for new
    /// associations, so peers that connect to the port still reach this listener).
    pub fn bind_shared(addrs: &[SocketAddr]) -> io::Result<Self> {
        Self::bind_with(addrs, true)
    }

    fn bind_with(addrs: &[SocketAddr], reuse_port: bool) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SctpListener::bind: no address given",
            ));
        }
        let sock = new_socket(needs_v6(addrs))?;
        sock.set_reuse_address(true)?;
        if reuse_port {
            sock.set_reuse_port(true)?;
        }
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
