//! The pool element API against a scripted registrar on a raw socket: it registers every
//! entry, reports a new load by re-registering, and deregisters when dropped.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rserpool::pe::{PeOptions, PoolElement};
use rserpool_proto::io::Endpoint;
use rserpool_wire::framing::Deframer;
use rserpool_wire::{AsapMessage, Policy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn next(s: &mut TcpStream, d: &mut Deframer) -> AsapMessage {
    loop {
        if let Some(m) = d.next_message().unwrap() {
            return AsapMessage::decode(m).unwrap().message;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("registrar read timed out")
            .unwrap();
        assert!(n > 0, "PE closed the connection");
        d.push(&buf[..n]);
    }
}

async fn answer(s: &mut TcpStream, m: &AsapMessage) {
    s.write_all(&m.encode_to_vec()).await.unwrap();
}

#[tokio::test]
async fn registers_updates_load_and_deregisters_on_drop() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reg = Endpoint::tcp(l.local_addr().unwrap());
    let opts = PeOptions::new("EchoPool")
        .registrar(reg)
        .tcp_user_transport("127.0.0.1:7".parse().unwrap())
        .tcp_user_transport("[::1]:7".parse().unwrap())
        .policy(Policy::LeastUsed { load: 1 })
        .no_announces();
    let pe = PoolElement::start(opts).unwrap();
    assert_eq!(pe.pe_ids().len(), 2);
    let (mut s, _) = l.accept().await.unwrap();
    let mut d = Deframer::default();
    let respond = |m: AsapMessage| match m {
        AsapMessage::Registration { handle, pe } => AsapMessage::RegistrationResponse {
            reject: false,
            handle,
            pe_id: pe.id,
            error: None,
        },
        other => panic!("expected a registration, got {other:?}"),
    };
    for _ in 0..2 {
        let m = next(&mut s, &mut d).await;
        answer(&mut s, &respond(m)).await;
    }
    pe.registered().await.unwrap();

    pe.set_load(77).unwrap();
    for _ in 0..2 {
        let m = next(&mut s, &mut d).await;
        let AsapMessage::Registration { pe: ref p, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(p.policy, Policy::LeastUsed { load: 77 });
        answer(&mut s, &respond(m)).await;
    }

    drop(pe);
    let mut ids = Vec::new();
    for _ in 0..2 {
        match next(&mut s, &mut d).await {
            AsapMessage::Deregistration { handle, pe_id } => {
                ids.push(pe_id);
                answer(
                    &mut s,
                    &AsapMessage::DeregistrationResponse {
                        handle,
                        pe_id,
                        error: None,
                    },
                )
                .await;
            }
            other => panic!("expected a deregistration, got {other:?}"),
        }
    }
    assert_eq!(ids.len(), 2);
    // Then the PE closes its connection.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}
