//! The ENRP side of the registrar (RFC 5353): its entry points.
//!
//! Every ENRP message the registrar receives comes through here: ENRP on a connection
//! ([`Registrar::on_enrp_message`]) and ENRP datagrams such as multicast Presences
//! ([`Registrar::on_enrp_datagram`]). ENRP is not implemented yet: a message on a
//! connection is counted as `wrong_protocol` and dropped (as the registrar always did),
//! a decoded datagram is counted (by type) and dropped. The ENRP procedures grow here,
//! beside the ASAP ones in `asap.rs`, sharing the state of `mod.rs`.

mod config;

use std::time::Instant;

use rserpool_wire::EnrpMessage;

use super::Registrar;
use crate::common::Inbound;
use crate::io::{ConnId, RecvMeta};

pub use config::{
    EnrpConfig, EnrpPhase, PeerInfo, PeerState, TakeoverElection, DEFAULT_PRESENCE_GROUP, ENRP_PORT,
};

impl Registrar {
    /// The peer registrars as data (empty while ENRP is not implemented).
    pub fn peers(&self) -> Vec<PeerInfo> {
        Vec::new()
    }

    /// Where the registrar is in its ENRP start-up.
    pub fn enrp_phase(&self) -> EnrpPhase {
        EnrpPhase::Serving
    }
}

impl Registrar {
    /// One ENRP message received on a connection (SCTP PPID 12, or the ENRP port).
    pub(super) fn on_enrp_message(
        &mut self,
        _now: Instant,
        _conn: ConnId,
        _meta: &RecvMeta,
        _bytes: &[u8],
    ) {
        // Not served yet: counted and dropped, undecoded.
        self.counters.wrong_protocol += 1;
    }

    /// One decoded (and counted) ENRP datagram, e.g. a multicast Presence.
    pub(super) fn on_enrp_datagram(
        &mut self,
        _now: Instant,
        _meta: &RecvMeta,
        inbound: Inbound<EnrpMessage>,
    ) {
        match inbound {
            // Other registrars' presences: nothing to do yet.
            Inbound::Message(EnrpMessage::Presence { .. }, _) => {}
            Inbound::Message(..) => self.counters.dropped += 1,
            Inbound::Invalid(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rserpool_wire::{enrp_type, Protocol, ServerId};

    use super::*;
    use crate::io::{Core, TransportProto};
    use crate::registrar::RegistrarConfig;

    fn meta(protocol: Protocol) -> RecvMeta {
        let peer: SocketAddr = "127.0.0.1:9901".parse().unwrap_or_else(|_| unreachable!());
        RecvMeta {
            protocol,
            transport: TransportProto::Udp,
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
        // A multicast Presence is decoded as ENRP, counted by its ENRP type and dropped.
        r.handle_datagram(now, &meta(Protocol::Enrp), &presence);
        let c = r.counters();
        assert_eq!(c.enrp_rx[usize::from(enrp_type::PRESENCE)], 1);
        assert_eq!(
            c.received(enrp_type::PRESENCE),
            0,
            "not an ASAP registration"
        );
        assert_eq!((c.rx_invalid, c.wrong_protocol, c.dropped), (0, 0, 0));
        // ENRP on a connection: counted as the wrong protocol, nothing answered.
        r.handle_message(now, ConnId(1), &meta(Protocol::Enrp), &presence);
        assert_eq!(r.counters().wrong_protocol, 1);
        assert!(r.poll_transmit().is_none());
    }
}
