//! Socket addresses: the kernel's packed `sockaddr_in` / `sockaddr_in6` arrays (for
//! `sctp_bindx` / `sctp_connectx` and the `SCTP_GET_*_ADDRS` lists) encoded and decoded
//! field by field, and the canonical form addresses are reported in. No I/O.
#![forbid(unsafe_code)]

use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::SockAddr;

use super::{put, rd_u32};

pub(super) const SOCKADDR_IN_LEN: usize = size_of::<libc::sockaddr_in>();
pub(super) const SOCKADDR_IN6_LEN: usize = size_of::<libc::sockaddr_in6>();
const _: () = assert!(SOCKADDR_IN_LEN == 16 && SOCKADDR_IN6_LEN == 28);

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

pub(super) fn sockaddr_to_std(a: &SockAddr) -> io::Result<SocketAddr> {
    a.as_socket().map(canonical).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "SCTP socket returned a non-IP address",
        )
    })
}

/// Encodes addresses as the kernel's packed array for bindx/connectx: each one a
/// `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes), no padding between them.
pub(super) fn pack_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
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
pub(super) fn parse_sockaddr(b: &[u8]) -> Option<(SocketAddr, usize)> {
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

/// Whether any address needs an IPv6 (dual-stack) socket.
pub(super) fn needs_v6(addrs: &[SocketAddr]) -> bool {
    addrs.iter().any(SocketAddr::is_ipv6)
}
