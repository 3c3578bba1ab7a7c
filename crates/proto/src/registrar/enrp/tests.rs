//! Core-level tests of the ENRP procedures and of bad input on the ENRP port.

use std::net::SocketAddr;
use std::time::Instant;

use rserpool_wire::{enrp_type, EnrpMessage, Protocol, ServerId};

use crate::io::{ConnId, Core, RecvMeta, TransportProto};
use crate::registrar::{Registrar, RegistrarConfig};

fn meta(protocol: Protocol, transport: TransportProto) -> RecvMeta {
    let peer: SocketAddr = "127.0.0.1:9901".parse().unwrap_or_else(|_| unreachable!());
    RecvMeta {
        protocol,
        transport,
        peer,
        peer_addrs: vec![peer.ip()],
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // a test's arbitrary origin
fn enrp_reaches_the_enrp_entry_points() {
    let now = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default(), 7);
    let presence = EnrpMessage::Presence {
        reply_required: false,
        sender: ServerId(0x1234),
        receiver: ServerId::UNDETERMINED,
        checksum: None,
        server_info: None,
    }
    .encode_to_vec();
    // A multicast Presence is decoded as ENRP and counted by its ENRP type.
    r.handle_datagram(now, &meta(Protocol::Enrp, TransportProto::Udp), &presence);
    let c = r.counters();
    assert_eq!(c.enrp_rx[usize::from(enrp_type::PRESENCE)], 1);
    assert_eq!(
        c.received(enrp_type::PRESENCE),
        0,
        "not an ASAP registration"
    );
    assert_eq!((c.rx_invalid, c.wrong_protocol), (0, 0));
    // The sender is a peer now.
    assert_eq!(r.peers().len(), 1);
    assert_eq!(r.peers()[0].server_id, ServerId(0x1234));
    let _ = ConnId(1);
}
