//! The ENRP side of the registrar (RFC 5353): its entry points.
//!
//! Every ENRP message the registrar receives comes through here: ENRP on a connection
//! ([`Registrar::on_enrp_message`]) and ENRP datagrams such as multicast Presences
//! ([`Registrar::on_enrp_datagram`]). ENRP is not implemented yet: a message on a
//! connection is counted as `wrong_protocol` and dropped (as the registrar always did),
//! a decoded datagram is counted (by type) and dropped. The ENRP procedures grow here,
//! beside the ASAP ones in `asap.rs`, sharing the state of `mod.rs`.

use std::time::Instant;

use rserpool_wire::EnrpMessage;

use super::Registrar;
use crate::common::Inbound;
use crate::io::{ConnId, RecvMeta};

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
