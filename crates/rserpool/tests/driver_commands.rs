//! The driver carries out a core's `TransportCommand`s over real TCP connections: `Close`
//! writes what the core sent before and then closes, `Abort` closes at once; either way
//! the core hears `Closed`, and other connections are untouched.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rserpool::driver::{Driver, DriverConfig, Lifecycle};
use rserpool::transport::{tcp, TransportConfig};
use rserpool_proto::io::{
    ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportCommand, TransportEvent,
};
use rserpool_wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Answers a message of type 1 with "ok" and closes the connection; type 2 aborts it;
/// anything else is echoed.
#[derive(Default)]
struct Closer {
    out: VecDeque<Transmit>,
    cmds: VecDeque<TransportCommand>,
    events: VecDeque<String>,
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

impl Core for Closer {
    type Event = String;
    type Command = ();
    fn handle_message(&mut self, _now: Instant, conn: ConnId, _meta: &RecvMeta, bytes: &[u8]) {
        match bytes[0] {
            1 => {
                self.out.push_back(Transmit {
                    dest: Dest::Conn(conn),
                    protocol: Protocol::Asap,
                    bytes: msg(9, b"ok"),
                });
                self.cmds.push_back(TransportCommand::Close(conn));
            }
            2 => self.cmds.push_back(TransportCommand::Abort(conn)),
            _ => self.out.push_back(Transmit {
                dest: Dest::Conn(conn),
                protocol: Protocol::Asap,
                bytes: bytes.to_vec(),
            }),
        }
    }
    fn handle_datagram(&mut self, _now: Instant, _meta: &RecvMeta, _bytes: &[u8]) {}
    fn handle_transport(&mut self, _now: Instant, event: TransportEvent) {
        if let TransportEvent::Closed { conn } = event {
            self.events.push_back(format!("closed {conn}"));
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn command(&mut self, _now: Instant, _cmd: ()) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<String> {
        self.events.pop_front()
    }
    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.cmds.pop_front()
    }
}

impl Lifecycle for Closer {}

async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the connection was not closed")
        {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn close_and_abort_requested_by_the_core() {
    let transport = TransportConfig::default();
    let (tx, mut events) = mpsc::unbounded_channel();
    let (mut driver, _handle) = Driver::new(
        Closer::default(),
        DriverConfig {
            transport: transport.clone(),
            wire_log: None,
            ..DriverConfig::default()
        },
        move |e| {
            let _ = tx.send(e);
        },
    );
    let l = tcp::bind(
        "127.0.0.1:0".parse().unwrap(),
        Protocol::Asap,
        false,
        &transport,
    )
    .unwrap();
    driver.listen(l, Protocol::Asap);
    let addr = driver.local_endpoints()[0].primary().unwrap();
    let _join = driver.spawn();

    let mut bystander = TcpStream::connect(addr).await.unwrap();
    let mut closed = TcpStream::connect(addr).await.unwrap();
    let mut aborted = TcpStream::connect(addr).await.unwrap();

    // Close: the answer queued before the command arrives, then the end of the stream.
    closed.write_all(&msg(1, b"")).await.unwrap();
    assert_eq!(read_to_end(&mut closed).await, msg(9, b"ok"));
    // Abort: closed without an answer.
    aborted.write_all(&msg(2, b"")).await.unwrap();
    assert!(read_to_end(&mut aborted).await.is_empty());
    // The core heard both closes.
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("no Closed event")
            .unwrap();
        assert!(e.starts_with("closed conn#"), "{e}");
    }
    // The other connection still works.
    let m = msg(5, b"still here");
    bystander.write_all(&m).await.unwrap();
    let mut buf = vec![0; m.len()];
    tokio::time::timeout(Duration::from_secs(5), bystander.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, m);
}

/// Opens connections on command (`TransportCommand::Connect`) and reports what the shell
/// says; after `Connected` it sends one message on the new connection.
#[derive(Default)]
struct Connector {
    out: VecDeque<Transmit>,
    cmds: VecDeque<TransportCommand>,
    events: VecDeque<String>,
}

impl Core for Connector {
    type Event = String;
    type Command = Endpoint;
    fn handle_message(&mut self, _now: Instant, _conn: ConnId, _meta: &RecvMeta, _bytes: &[u8]) {}
    fn handle_datagram(&mut self, _now: Instant, _meta: &RecvMeta, _bytes: &[u8]) {}
    fn handle_transport(&mut self, _now: Instant, event: TransportEvent) {
        match event {
            TransportEvent::Connected { conn, endpoint } => {
                self.events.push_back(format!("connected {endpoint}"));
                self.out.push_back(Transmit {
                    dest: Dest::Conn(conn),
                    protocol: Protocol::Asap,
                    bytes: msg(7, b"hello"),
                });
            }
            TransportEvent::ConnectFailed { endpoint } => {
                self.events.push_back(format!("failed {endpoint}"));
            }
            _ => {}
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn command(&mut self, _now: Instant, endpoint: Endpoint) {
        self.cmds.push_back(TransportCommand::Connect {
            endpoint,
            protocol: Protocol::Asap,
        });
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<String> {
        self.events.pop_front()
    }
    fn poll_command(&mut self) -> Option<TransportCommand> {
        self.cmds.pop_front()
    }
}

impl Lifecycle for Connector {}

async fn next(events: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no event")
        .unwrap()
}

#[tokio::test]
async fn connect_requested_by_the_core() {
    let transport = TransportConfig::default();
    let (tx, mut events) = mpsc::unbounded_channel();
    let (driver, handle) = Driver::new(
        Connector::default(),
        DriverConfig {
            transport,
            wire_log: None,
            ..DriverConfig::default()
        },
        move |e| {
            let _ = tx.send(e);
        },
    );
    let _join = driver.spawn();

    // A listener that accepts: the connection opens without a message, then the core's
    // first message arrives on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Endpoint::tcp(listener.local_addr().unwrap());
    handle.command(up.clone()).unwrap();
    let (mut peer, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next(&mut events).await, format!("connected {up}"));
    let m = msg(7, b"hello");
    let mut buf = vec![0; m.len()];
    tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, m);

    // Nobody listens: the core hears ConnectFailed.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = Endpoint::tcp(free.local_addr().unwrap());
    drop(free);
    handle.command(down.clone()).unwrap();
    assert_eq!(next(&mut events).await, format!("failed {down}"));
}
