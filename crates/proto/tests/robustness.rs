//! No input makes a core panic: random and mutated messages, stray transport events,
//! commands and timer calls in any order.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rserpool_proto::io::{ConnId, Core, Endpoint, RecvMeta, TransportEvent, TransportProto};
use rserpool_proto::{
    PeCommand, PoolElementConfig, PoolElementCore, PoolUserConfig, PoolUserCore, PuCommand,
    Registrar, RegistrarCommand, RegistrarConfig, RequestId,
};
use rserpool_wire::{
    AsapMessage, OperationError, PeId, Policy, PoolElement, PoolHandle, Protocol, ServerId,
    TransportAddr, UserTransport,
};

fn samples() -> Vec<Vec<u8>> {
    let h = PoolHandle::from("P");
    let pe = PoolElement {
        id: PeId(7),
        home_registrar: ServerId(0),
        registration_life: 3000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(1, IpAddr::from([1, 2, 3, 4]))),
        policy: Policy::LeastUsed { load: 3 },
        asap_transport: None,
    };
    let msgs = vec![
        AsapMessage::Registration {
            handle: h.clone(),
            pe: pe.clone(),
        },
        AsapMessage::Deregistration {
            handle: h.clone(),
            pe_id: PeId(7),
        },
        AsapMessage::RegistrationResponse {
            reject: false,
            handle: h.clone(),
            pe_id: PeId(7),
            error: None,
        },
        AsapMessage::DeregistrationResponse {
            handle: h.clone(),
            pe_id: PeId(7),
            error: None,
        },
        AsapMessage::HandleResolution {
            subscribe: true,
            handle: h.clone(),
            items: Some(u32::MAX),
        },
        AsapMessage::HandleResolutionResponse {
            accepted: false,
            handle: h.clone(),
            policy: Some(Policy::LeastUsed { load: 0 }),
            pes: vec![pe.clone(), pe.clone()],
            error: None,
        },
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: ServerId(9),
            handle: h.clone(),
            pe_id: None,
        },
        AsapMessage::EndpointKeepAliveAck {
            handle: h.clone(),
            pe_id: PeId(7),
        },
        AsapMessage::EndpointUnreachable {
            handle: h.clone(),
            pe_id: PeId(7),
        },
        AsapMessage::ServerAnnounce {
            server_id: ServerId(9),
            transports: vec![TransportAddr::tcp(3863, IpAddr::from([0, 0, 0, 0]))],
        },
        AsapMessage::Error {
            error: OperationError::code(rserpool_wire::CauseCode::UNSPECIFIED),
        },
    ];
    msgs.iter().map(AsapMessage::encode_to_vec).collect()
}

#[derive(Debug, Clone)]
enum Input {
    Msg {
        conn: u8,
        sample: usize,
        mutate: Vec<(usize, u8)>,
        cut: Option<usize>,
    },
    Random {
        conn: u8,
        bytes: Vec<u8>,
    },
    Datagram {
        sample: usize,
    },
    Transport {
        kind: u8,
        conn: u8,
    },
    Time {
        ms: u16,
    },
    Command {
        kind: u8,
        arg: u8,
    },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (
            any::<u8>(),
            0..11usize,
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            prop::option::of(any::<usize>())
        )
            .prop_map(|(conn, sample, mutate, cut)| Input::Msg {
                conn,
                sample,
                mutate,
                cut
            }),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(conn, bytes)| Input::Random { conn, bytes }),
        (0..11usize).prop_map(|sample| Input::Datagram { sample }),
        (0..5u8, any::<u8>()).prop_map(|(kind, conn)| Input::Transport { kind, conn }),
        any::<u16>().prop_map(|ms| Input::Time { ms }),
        (0..4u8, any::<u8>()).prop_map(|(kind, arg)| Input::Command { kind, arg }),
    ]
}

fn meta() -> RecvMeta {
    RecvMeta {
        protocol: Protocol::Asap,
        transport: TransportProto::Tcp,
        peer: SocketAddr::from(([10, 0, 0, 1], 3863)),
        peer_addrs: vec![IpAddr::from([10, 0, 0, 1])],
        identity: None,
    }
}

fn registrar_ep(i: u8) -> Endpoint {
    Endpoint::tcp(SocketAddr::from(([10, 0, 0, i % 3], 3863)))
}

/// Drive one core with the inputs; `cmd` turns (kind, arg) into a command.
fn drive<C: Core>(core: &mut C, inputs: &[Input], cmd: impl Fn(u8, u8) -> C::Command) {
    let samples = samples();
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    core.handle_timeout(now);
    for i in inputs {
        match i {
            Input::Msg {
                conn,
                sample,
                mutate,
                cut,
            } => {
                let mut b = samples[*sample].clone();
                for (pos, v) in mutate {
                    let n = b.len();
                    b[pos % n] = *v;
                }
                if let Some(c) = cut {
                    b.truncate(c % (b.len() + 1));
                }
                core.handle_message(now, ConnId(u64::from(*conn % 4)), &meta(), &b);
            }
            Input::Random { conn, bytes } => {
                core.handle_message(now, ConnId(u64::from(*conn % 4)), &meta(), bytes)
            }
            Input::Datagram { sample } => core.handle_datagram(now, &meta(), &samples[*sample]),
            Input::Transport { kind, conn } => {
                let c = ConnId(u64::from(*conn % 4));
                let ev = match kind {
                    0 => TransportEvent::Accepted {
                        conn: c,
                        meta: meta(),
                    },
                    1 => TransportEvent::Connected {
                        conn: c,
                        endpoint: registrar_ep(*conn),
                    },
                    2 => TransportEvent::ConnectFailed {
                        endpoint: registrar_ep(*conn),
                    },
                    3 => TransportEvent::Closed { conn: c },
                    _ => TransportEvent::SendFailed { conn: c },
                };
                core.handle_transport(now, ev);
            }
            Input::Time { ms } => {
                now += Duration::from_millis(u64::from(*ms));
                core.handle_timeout(now);
            }
            Input::Command { kind, arg } => core.command(now, cmd(*kind, *arg)),
        }
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
        if let Some(t) = core.poll_timeout() {
            // Deadlines never lie in the past once the due timers ran.
            if t <= now {
                core.handle_timeout(now);
                while core.poll_transmit().is_some() {}
                while core.poll_event().is_some() {}
                assert!(
                    core.poll_timeout().is_none_or(|t| t > now),
                    "timer not consumed"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn registrar_never_panics(inputs in prop::collection::vec(input(), 1..60)) {
        let mut r = Registrar::new(RegistrarConfig {
            announce_group: Some(rserpool_proto::registrar::DEFAULT_ANNOUNCE_GROUP),
            ..RegistrarConfig::default()
        }, 1);
        drive(&mut r, &inputs, |k, a| match k {
            0 => RegistrarCommand::DumpHandlespace,
            _ => RegistrarCommand::RemovePe { handle: PoolHandle::from("P"), pe_id: PeId(u32::from(a)) },
        });
        r.handlespace().check_invariants();
    }

    #[test]
    fn pool_element_never_panics(inputs in prop::collection::vec(input(), 1..60)) {
        let mut pe = PoolElementCore::new(PoolElementConfig {
            pool_handle: PoolHandle::from("P"),
            pe_id: Some(PeId(7)),
            user_transports: vec![
                UserTransport::Ip(TransportAddr::tcp(1, IpAddr::from([1, 2, 3, 4]))),
                UserTransport::Ip(TransportAddr::tcp(1, IpAddr::from([1, 2, 3, 5]))),
            ],
            registrars: (0..3).map(registrar_ep).collect(),
            ..PoolElementConfig::default()
        }, 2);
        drive(&mut pe, &inputs, |k, a| match k {
            0 => PeCommand::Register,
            1 => PeCommand::Deregister,
            _ => PeCommand::UpdatePolicy(Policy::LeastUsed { load: u32::from(a) }),
        });
    }

    #[test]
    fn pool_user_never_panics(inputs in prop::collection::vec(input(), 1..60)) {
        let mut pu = PoolUserCore::new(PoolUserConfig {
            registrars: (0..3).map(registrar_ep).collect(),
            ..PoolUserConfig::default()
        }, 3);
        drive(&mut pu, &inputs, |k, a| {
            let pool = PoolHandle::from(if a % 2 == 0 { "P" } else { "Q" });
            let request = RequestId(u64::from(a));
            match k {
                0 => PuCommand::GetPrimaryServer { request, pool },
                1 => PuCommand::GetNextServer { request, pool },
                _ => PuCommand::ReportFailure { pool, pe_id: PeId(7) },
            }
        });
    }
}
