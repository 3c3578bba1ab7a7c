//! What the registrar core tests share: a started registrar with keep-alives off and its
//! connections accepted, what it sent (decoded), and a PE registration.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Instant;

use rserpool_proto::io::{ConnId, Core, Dest, RecvMeta, TransportEvent};
use rserpool_proto::{Registrar, RegistrarConfig};
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, ServerId, TransportAddr, UserTransport,
};

/// A registrar (keep-alives off, seed 7) after its first input, with `conns` accepted.
pub fn started(cfg: RegistrarConfig, conns: &[(ConnId, RecvMeta)]) -> (Registrar, Instant) {
    #[allow(clippy::disallowed_methods)] // a test's start of time
    let now = Instant::now();
    let mut r = Registrar::new(
        RegistrarConfig {
            keepalive_interval: None,
            ..cfg
        },
        7,
    );
    r.handle_timeout(now);
    for (conn, meta) in conns {
        r.handle_transport(
            now,
            TransportEvent::Accepted {
                conn: *conn,
                meta: meta.clone(),
            },
        );
    }
    (r, now)
}

/// Everything the registrar sent to connections since the last call, decoded (events
/// are dropped).
pub fn sent(r: &mut Registrar) -> Vec<(ConnId, AsapMessage)> {
    let mut v = Vec::new();
    while let Some(t) = r.poll_transmit() {
        let Dest::Conn(c) = t.dest else { continue };
        v.push((c, AsapMessage::decode(&t.bytes).unwrap().message));
    }
    while r.poll_event().is_some() {}
    v
}

/// A registration of PE `id` in `pool` (TCP user transport on port 1000 + id mod 50,000).
pub fn registration(pool: &str, id: u32, policy: Policy) -> AsapMessage {
    AsapMessage::Registration {
        handle: pool.into(),
        pe: PoolElement {
            id: PeId(id),
            home_registrar: ServerId(0),
            registration_life: 60_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                (1000 + id % 50_000) as u16,
                "127.0.0.1".parse().unwrap(),
            )),
            policy,
            asap_transport: None,
        },
    }
}
