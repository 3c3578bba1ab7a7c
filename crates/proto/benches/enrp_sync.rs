//! ENRP figure: a registrar starting with one static peer downloads a 100,000-PE
//! handlespace from it (List Request, Handle Table Requests/Responses of ≤ 128 PEs),
//! both cores in-process, the messages encoded and decoded as on the wire. Prints wall and
//! on-CPU time (`/proc/thread-self/schedstat`); asserts nothing about speed.
//!
//! Run: `cargo bench -p rserpool-proto --bench enrp_sync`

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::io::{ConnId, Core, Dest, Endpoint, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::{EnrpConfig, EnrpPhase, Registrar, RegistrarConfig};
use rserpool_wire::{
    EnrpMessage, PeId, Policy, PoolElement, PoolHandle, Protocol, ServerId, TransportAddr,
    UpdateAction, UserTransport,
};

const PES: u32 = 100_000;

#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn meta() -> RecvMeta {
    let peer = SocketAddr::from(([10, 0, 0, 9], 40000));
    RecvMeta {
        protocol: Protocol::Enrp,
        transport: TransportProto::Tcp,
        peer,
        peer_addrs: vec![peer.ip()],
        identity: None,
    }
}

fn main() {
    let t = now();
    let b_ep = Endpoint::tcp(SocketAddr::from(([10, 0, 0, 2], 9901)));
    let mut b = Registrar::new(
        RegistrarConfig {
            server_id: Some(ServerId(2)),
            ..RegistrarConfig::default()
        },
        2,
    );
    b.handle_timeout(t);
    for i in 1..=PES {
        let pe = PoolElement {
            id: PeId(i),
            home_registrar: ServerId(3),
            registration_life: 600_000,
            user_transport: UserTransport::Ip(TransportAddr::tcp(
                7000,
                IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
            )),
            policy: Policy::RoundRobin,
            asap_transport: Some(TransportAddr::tcp(2960, IpAddr::from([10, 1, 0, 1]))),
        };
        let m = EnrpMessage::HandleUpdate {
            takeover: false,
            sender: ServerId(3),
            receiver: ServerId(2),
            action: UpdateAction::ADD_PE,
            handle: PoolHandle::from(format!("pool{}", i % 100).as_str()),
            pe,
        };
        b.handle_message(t, ConnId(9), &meta(), &m.encode_to_vec());
        while b.poll_transmit().is_some() {}
    }
    while b.poll_event().is_some() {}
    let mut a = Registrar::new(
        RegistrarConfig {
            server_id: Some(ServerId(1)),
            enrp: EnrpConfig {
                peers: vec![b_ep.clone()],
                ..EnrpConfig::default()
            },
            ..RegistrarConfig::default()
        },
        1,
    );
    let (w0, c0) = (now(), cpu());
    a.handle_timeout(t);
    a.handle_transport(
        t,
        TransportEvent::Connected {
            conn: ConnId(2),
            endpoint: b_ep.clone(),
        },
    );
    let (mut msgs, mut bytes) = (0usize, 0usize);
    loop {
        let mut any = false;
        while let Some(x) = a.poll_transmit() {
            if x.dest == Dest::Endpoint(b_ep.clone()) || x.dest == Dest::Conn(ConnId(2)) {
                b.handle_message(t, ConnId(1), &meta(), &x.bytes);
                msgs += 1;
                bytes += x.bytes.len();
                any = true;
            }
        }
        while let Some(x) = b.poll_transmit() {
            if x.dest == Dest::Conn(ConnId(1)) {
                a.handle_message(t, ConnId(2), &meta(), &x.bytes);
                msgs += 1;
                bytes += x.bytes.len();
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    let (wall, cpu_t) = (now() - w0, cpu() - c0);
    assert_eq!(a.enrp_phase(), EnrpPhase::Serving);
    assert_eq!(a.handlespace().len(), PES as usize);
    println!(
        "enrp sync of {PES} PEs: wall {:.1} ms, cpu {:.1} ms, {msgs} messages, {:.1} MB",
        wall.as_secs_f64() * 1e3,
        cpu_t.as_secs_f64() * 1e3,
        bytes as f64 / 1e6
    );
}
