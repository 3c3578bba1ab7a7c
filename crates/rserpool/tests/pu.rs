//! The pool user API against scripted registrars on raw sockets.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rserpool::pu::{endpoint_of, PoolUser, PuFailure, PuOptions};
use rserpool_proto::io::Endpoint;
use rserpool_proto::PuError;
use rserpool_wire::framing::Deframer;
use rserpool_wire::{
    AsapMessage, PeId, Policy, PoolElement, ServerId, TransportAddr, UserTransport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn pe(id: u32, port: u16) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: ServerId(7),
        registration_life: 30_000,
        user_transport: UserTransport::Ip(TransportAddr::tcp(port, "127.0.0.1".parse().unwrap())),
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

#[tokio::test]
async fn primary_then_next_server_reports_the_failed_one() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reg = Endpoint::tcp(l.local_addr().unwrap());
    let pu = PoolUser::start(PuOptions::default().registrar(reg).no_announces());
    let script = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut d = Deframer::default();
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        loop {
            while let Some(m) = d.next_message().unwrap() {
                let m = AsapMessage::decode(m).unwrap().message;
                if let AsapMessage::HandleResolution { handle, .. } = &m {
                    let answer = AsapMessage::HandleResolutionResponse {
                        accepted: false,
                        handle: handle.clone(),
                        policy: Some(Policy::RoundRobin),
                        pes: vec![pe(1, 1001), pe(2, 1002)],
                        error: None,
                    };
                    s.write_all(&answer.encode_to_vec()).await.unwrap();
                }
                let unreachable = matches!(m, AsapMessage::EndpointUnreachable { .. });
                seen.push(m);
                if unreachable {
                    return seen;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "PU closed before reporting");
            d.push(&buf[..n]);
        }
    });
    let first = pu.get_primary_server("EchoPool").await.unwrap();
    assert!(endpoint_of(&first).is_some());
    let second = pu.get_next_server("EchoPool").await.unwrap();
    assert_ne!(first.id, second.id);
    let seen = tokio::time::timeout(Duration::from_secs(5), script)
        .await
        .unwrap()
        .unwrap();
    match seen.last() {
        Some(AsapMessage::EndpointUnreachable { pe_id, .. }) => assert_eq!(*pe_id, first.id),
        other => panic!("{other:?}"),
    }
    let all = pu.resolve("EchoPool").await.unwrap();
    assert_eq!(all.len(), 1, "the failed PE is not offered again: {all:?}");
}

#[tokio::test]
async fn no_registrar_is_an_error_not_a_hang() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut opts = PuOptions::default()
        .registrar(Endpoint::tcp(dead))
        .no_announces();
    opts.core.max_request_retries = 0;
    let pu = PoolUser::start(opts);
    let r = tokio::time::timeout(Duration::from_secs(10), pu.get_primary_server("EchoPool"))
        .await
        .expect("no answer within 10 s");
    assert_eq!(r, Err(PuFailure::Pool(PuError::NoRegistrar)));
}
