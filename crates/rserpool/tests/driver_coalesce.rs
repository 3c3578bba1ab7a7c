//! The driver coalesces what one wake-up sends to a TCP connection, and lets ENRP
//! messages wait briefly for more: every message still arrives, in order, with no further
//! input (the wait ends by itself), and a `Close` after them writes them first.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rserpool::driver::{Driver, DriverConfig, Lifecycle};
use rserpool::transport::{tcp, TransportConfig};
use rserpool_proto::io::{
    ConnId, Core, Dest, RecvMeta, Transmit, TransportCommand, TransportEvent,
};
use rserpool_wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Type 1: five ENRP-labelled messages back; type 2: three ENRP messages, one ASAP
/// message, then `Close`.
#[derive(Default)]
struct Burst {
    out: VecDeque<Transmit>,
    cmds: VecDeque<TransportCommand>,
}

fn msg(ty: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + payload.len()).unwrap();
    let mut v = vec![ty, 0];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

impl Burst {
    fn send(&mut self, conn: ConnId, protocol: Protocol, bytes: Vec<u8>) {
        self.out.push_back(Transmit {
            dest: Dest::Conn(conn),
            protocol,
            bytes,
        });
    }
}

impl Core for Burst {
    type Event = ();
    type Command = ();
    fn handle_message(&mut self, _now: Instant, conn: ConnId, _meta: &RecvMeta, bytes: &[u8]) {
        match bytes[0] {
            1 => {
                for i in 0..5u8 {
                    self.send(conn, Protocol::Enrp, msg(10 + i, &[i; 5]));
                }
            }
            _ => {
                for i in 0..3u8 {
                    self.send(conn, Protocol::Enrp, msg(20 + i, &[i]));
                }
                self.send(conn, Protocol::Asap, msg(30, b"bye"));
                self.cmds.push_back(TransportCommand::Close(conn));
            }
        }
    }
    fn handle_datagram(&mut self, _now: Instant, _meta: &RecvMeta, _bytes: &[u8]) {}
    fn handle_transport(&mut self, _now: Instant, _event: TransportEvent) {}
    fn handle_timeout(&mut self, _now: Instant) {}
    fn command(&mut self, _now: Instant, _cmd: ()) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.cmds.pop_front()
    }
}

impl Lifecycle for Burst {}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
        .await
        .expect("the messages did not arrive")
        .unwrap();
    got
}

#[tokio::test]
async fn coalesced_messages_all_arrive_in_order() {
    let transport = TransportConfig::default();
    let (mut driver, _handle) = Driver::new(
        Burst::default(),
        DriverConfig {
            transport: transport.clone(),
            wire_log: None,
            ..DriverConfig::default()
        },
        |_| {},
    );
    let l = tcp::bind(
        "127.0.0.1:0".parse().unwrap(),
        Protocol::Enrp,
        false,
        &transport,
    )
    .unwrap();
    driver.listen(l, Protocol::Enrp);
    let addr = driver.local_endpoints()[0].primary().unwrap();
    let _join = driver.spawn();

    // ENRP only: written when the short wait ends, with nothing else happening.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for round in 0..3 {
        s.write_all(&msg(1, b"")).await.unwrap();
        let want: Vec<u8> = (0..5u8).flat_map(|i| msg(10 + i, &[i; 5])).collect();
        assert_eq!(
            read_exactly(&mut s, want.len()).await,
            want,
            "round {round}"
        );
    }
    // ENRP, ASAP, then Close: everything written, then the end of the stream.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&msg(2, b"")).await.unwrap();
    let mut want: Vec<u8> = (0..3u8).flat_map(|i| msg(20 + i, &[i])).collect();
    want.extend(msg(30, b"bye"));
    assert_eq!(read_exactly(&mut c, want.len()).await, want);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .expect("not closed");
    assert!(n.is_ok() && rest.is_empty(), "{rest:?}");
}
