//! UDP: one message per datagram — ASAP Server Announces and ENRP Presences on
//! multicast groups (239.0.0.50:3863 and 239.0.0.51:9901, as RSPLIB).
//!
//! Nothing depends on multicast working: every failure here (no route, no IPv4, group
//! join refused, port taken) is logged and the node carries on with its static
//! registrar list.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rserpool_proto::io::{RecvMeta, TransportProto};
use rserpool_wire::Protocol;
use socket2::{Domain, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::{cancelled, Inbound, Shared};

/// ASAP announce group (RSPLIB default); the one definition is the registrar core's.
pub const ASAP_ANNOUNCE_GROUP: SocketAddr = rserpool_proto::registrar::DEFAULT_ANNOUNCE_GROUP;
/// ENRP presence group (RSPLIB default).
pub const ENRP_PRESENCE_GROUP: SocketAddr = SocketAddr::new(
    IpAddr::V4(Ipv4Addr::new(239, 0, 0, 51)),
    rserpool_wire::ENRP_PORT,
);

/// Join `group` and listen on its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MulticastSpec {
    pub group: SocketAddr,
    pub protocol: Protocol,
}

fn bind_group(group: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    match group.ip() {
        IpAddr::V4(g) => {
            socket.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), group.port()).into())?;
            socket.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?;
        }
        IpAddr::V6(g) => {
            socket.set_only_v6(true)?;
            socket.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), group.port()).into())?;
            socket.join_multicast_v6(&g, 0)?;
        }
    }
    UdpSocket::from_std(socket.into())
}

/// Start receiving datagrams of `spec`; failure is logged, not fatal.
pub(crate) fn spawn_receiver(shared: &Arc<Shared>, spec: MulticastSpec) {
    let socket = match bind_group(spec.group) {
        Ok(s) => s,
        Err(e) => {
            warn!(group = %spec.group, "multicast receive unavailable: {e}; using static registrars only");
            return;
        }
    };
    debug!(group = %spec.group, "listening for multicast");
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut stop = shared.stop.subscribe();
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(group = %spec.group, "multicast receive: {e}");
                        continue;
                    }
                },
                _ = cancelled(&mut stop) => break,
            };
            let meta = RecvMeta::single_homed(spec.protocol, TransportProto::Udp, from);
            let msg = Inbound::Datagram {
                meta,
                bytes: buf[..n].to_vec(),
            };
            if shared.inbound.send(msg).await.is_err() {
                break;
            }
        }
    });
}

/// Sends datagrams; sockets are opened on first use, one per address family.
#[derive(Debug, Default)]
pub(crate) struct DatagramSender {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    failed_v4: bool,
    failed_v6: bool,
}

impl DatagramSender {
    fn open(v6: bool, ttl: u32) -> io::Result<UdpSocket> {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, None)?;
        socket.set_nonblocking(true)?;
        if v6 {
            socket.set_only_v6(true)?;
            socket.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0).into())?;
            socket.set_multicast_hops_v6(ttl)?;
            socket.set_multicast_loop_v6(true)?;
        } else {
            socket.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0).into())?;
            socket.set_multicast_ttl_v4(ttl)?;
            socket.set_multicast_loop_v4(true)?;
        }
        UdpSocket::from_std(socket.into())
    }

    /// Send without waiting; a full buffer or an unreachable group drops the datagram.
    pub fn send(&mut self, to: SocketAddr, bytes: &[u8], ttl: u32) {
        let v6 = to.is_ipv6();
        let (slot, failed) = if v6 {
            (&mut self.v6, &mut self.failed_v6)
        } else {
            (&mut self.v4, &mut self.failed_v4)
        };
        if slot.is_none() && !*failed {
            match Self::open(v6, ttl) {
                Ok(s) => *slot = Some(s),
                Err(e) => {
                    *failed = true;
                    warn!(%to, "cannot open a UDP socket for announces: {e}");
                }
            }
        }
        let Some(socket) = slot else { return };
        if let Err(e) = socket.try_send_to(bytes, to) {
            debug!(%to, "datagram not sent: {e}");
        }
    }
}
