//! The driver and TCP transport with a trivial core: echo, framing, limits, timers,
//! outbound connections, graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool::driver::{Driver, DriverConfig, Lifecycle};
use rserpool::transport::tcp;
use rserpool::transport::TransportConfig;
use rserpool_proto::io::{ConnId, Core, Dest, Endpoint, RecvMeta, Transmit, TransportEvent};
use rserpool_wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Echoes every message; on command sends to an endpoint or arms a timer; says "bye" to
/// every open connection on shutdown.
#[derive(Default)]
struct Toy {
    out: VecDeque<Transmit>,
    events: VecDeque<Ev>,
    timers: Vec<Instant>,
    conns: Vec<ConnId>,
    echo: bool,
}

#[derive(Debug, PartialEq)]
enum Ev {
    Msg(ConnId, Vec<u8>),
    Transport(String),
    Timer,
}

enum Cmd {
    SendTo(Endpoint, Vec<u8>),
    TimerIn(Duration),
}

fn msg(ty: u8, payload: &[u8]) -> Vec<u8> {
    let len = (4 + payload.len()) as u16;
    let mut v = vec![ty, 0];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

impl Core for Toy {
    type Event = Ev;
    type Command = Cmd;
    fn handle_message(&mut self, _now: Instant, conn: ConnId, meta: &RecvMeta, bytes: &[u8]) {
        assert_eq!(meta.protocol, Protocol::Asap);
        if self.echo {
            self.out.push_back(Transmit {
                dest: Dest::Conn(conn),
                protocol: Protocol::Asap,
                bytes: bytes.to_vec(),
            });
        }
        self.events.push_back(Ev::Msg(conn, bytes.to_vec()));
    }
    fn handle_datagram(&mut self, _now: Instant, _meta: &RecvMeta, _bytes: &[u8]) {}
    fn handle_transport(&mut self, _now: Instant, event: TransportEvent) {
        match &event {
            TransportEvent::Accepted { conn, .. } | TransportEvent::Connected { conn, .. } => {
                self.conns.push(*conn)
            }
            TransportEvent::Closed { conn } => self.conns.retain(|c| c != conn),
            _ => {}
        }
        let name = format!("{event:?}");
        let name = name.split([' ', '{']).next().unwrap_or_default().to_owned();
        self.events.push_back(Ev::Transport(name));
    }
    fn handle_timeout(&mut self, now: Instant) {
        let before = self.timers.len();
        self.timers.retain(|t| *t > now);
        for _ in self.timers.len()..before {
            self.events.push_back(Ev::Timer);
        }
    }
    fn command(&mut self, now: Instant, cmd: Cmd) {
        match cmd {
            Cmd::SendTo(ep, bytes) => self.out.push_back(Transmit {
                dest: Dest::Endpoint(ep),
                protocol: Protocol::Asap,
                bytes,
            }),
            Cmd::TimerIn(d) => self.timers.push(now + d),
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().min().copied()
    }
    fn poll_event(&mut self) -> Option<Ev> {
        self.events.pop_front()
    }
}

impl Lifecycle for Toy {
    fn begin_shutdown(&mut self, _now: Instant) {
        for c in &self.conns {
            self.out.push_back(Transmit {
                dest: Dest::Conn(*c),
                protocol: Protocol::Asap,
                bytes: msg(0x02, b"bye!"),
            });
        }
    }
}

struct Running {
    addrs: Vec<SocketAddr>,
    handle: rserpool::DriverHandle<Toy>,
    events: mpsc::UnboundedReceiver<Ev>,
    join: tokio::task::JoinHandle<Toy>,
}

fn start(listen: &[&str], transport: TransportConfig) -> Running {
    let config = DriverConfig {
        transport: transport.clone(),
        wire_log: None,
        ..DriverConfig::default()
    };
    let (tx, events) = mpsc::unbounded_channel();
    let core = Toy {
        echo: true,
        ..Toy::default()
    };
    let (mut driver, handle) = Driver::new(core, config, move |e| {
        let _ = tx.send(e);
    });
    for a in listen {
        let l = tcp::bind(a.parse().unwrap(), Protocol::Asap, false, &transport).unwrap();
        driver.listen(l, Protocol::Asap);
    }
    let addrs = driver
        .local_endpoints()
        .iter()
        .map(|e| e.primary().unwrap())
        .collect();
    let join = driver.spawn();
    Running {
        addrs,
        handle,
        events,
        join,
    }
}

async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("read timed out")
        .expect("read failed");
    buf
}

/// Wait until the peer closes (read returns 0 or an error).
async fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("connection was not closed")
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn next_event(r: &mut Running, want: impl Fn(&Ev) -> bool) -> Ev {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), r.events.recv())
            .await
            .expect("event timed out")
            .expect("driver gone");
        if want(&e) {
            return e;
        }
    }
}

#[tokio::test]
async fn echo_back_to_back_partial_and_ipv6() {
    let r = start(&["127.0.0.1:0", "[::1]:0"], TransportConfig::default());
    for addr in r.addrs.clone() {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let a = msg(5, b"hello");
        let b = msg(6, &[1, 2, 3, 4]);
        let c = msg(7, b"");
        // Two messages in one write, the third split over three writes.
        let mut both = a.clone();
        both.extend_from_slice(&b);
        s.write_all(&both).await.unwrap();
        s.write_all(&c[..1]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&c[1..3]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&c[3..]).await.unwrap();
        let total = a.len() + b.len() + c.len();
        let got = read_exact(&mut s, total).await;
        let mut want = both;
        want.extend_from_slice(&c);
        assert_eq!(got, want);
    }
    r.handle.shutdown();
    r.join.await.unwrap();
}

#[tokio::test]
async fn bad_framing_closes_only_that_connection() {
    let mut r = start(&["127.0.0.1:0"], TransportConfig::default());
    let addr = r.addrs[0];
    let mut good = TcpStream::connect(addr).await.unwrap();
    // Length 2 < 4: garbage.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(&[0xff, 0xff, 0x00, 0x02]).await.unwrap();
    expect_closed(&mut bad).await;
    // Above the limit.
    let r2 = start(
        &["127.0.0.1:0"],
        TransportConfig {
            max_message_len: 64,
            ..TransportConfig::default()
        },
    );
    let mut big = TcpStream::connect(r2.addrs[0]).await.unwrap();
    big.write_all(&msg(1, &[0u8; 100])).await.unwrap();
    expect_closed(&mut big).await;
    // Truncated: half a message, then EOF.
    let mut trunc = TcpStream::connect(addr).await.unwrap();
    trunc.write_all(&msg(1, &[0u8; 16])[..10]).await.unwrap();
    trunc.shutdown().await.unwrap();
    expect_closed(&mut trunc).await;
    // The good one still works.
    let m = msg(5, b"still here");
    good.write_all(&m).await.unwrap();
    assert_eq!(read_exact(&mut good, m.len()).await, m);
    next_event(&mut r, |e| matches!(e, Ev::Msg(..))).await;
    r.handle.shutdown();
    r.join.await.unwrap();
}

#[tokio::test]
async fn connection_limit_evicts_silent_then_refuses() {
    let mut r = start(
        &["127.0.0.1:0"],
        TransportConfig {
            max_connections: 2,
            ..TransportConfig::default()
        },
    );
    let addr = r.addrs[0];
    let mut silent1 = TcpStream::connect(addr).await.unwrap();
    next_event(&mut r, |e| *e == Ev::Transport("Accepted".into())).await;
    let mut talker = TcpStream::connect(addr).await.unwrap();
    let m = msg(5, b"x");
    talker.write_all(&m).await.unwrap();
    read_exact(&mut talker, m.len()).await;
    // Full: a newcomer evicts the silent connection.
    let mut newcomer = TcpStream::connect(addr).await.unwrap();
    expect_closed(&mut silent1).await;
    newcomer.write_all(&m).await.unwrap();
    read_exact(&mut newcomer, m.len()).await;
    // Full of talkers: the next one is refused.
    let mut refused = TcpStream::connect(addr).await.unwrap();
    expect_closed(&mut refused).await;
    talker.write_all(&m).await.unwrap();
    assert_eq!(read_exact(&mut talker, m.len()).await, m);
    // A slot frees when a talker leaves.
    drop(newcomer);
    next_event(&mut r, |e| *e == Ev::Transport("Closed".into())).await;
    let mut later = TcpStream::connect(addr).await.unwrap();
    later.write_all(&m).await.unwrap();
    assert_eq!(read_exact(&mut later, m.len()).await, m);
    r.handle.shutdown();
    r.join.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn timers_follow_paused_time() {
    let mut r = start(&[], TransportConfig::default());
    let t0 = tokio::time::Instant::now();
    r.handle
        .command(Cmd::TimerIn(Duration::from_secs(3600)))
        .unwrap();
    r.handle
        .command(Cmd::TimerIn(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(r.events.recv().await, Some(Ev::Timer));
    assert!(t0.elapsed() >= Duration::from_secs(60));
    assert_eq!(r.events.recv().await, Some(Ev::Timer));
    assert!(t0.elapsed() >= Duration::from_secs(3600));
    let timers = r.handle.query(|c, _| c.timers.len()).await.unwrap();
    assert_eq!(timers, 0);
    r.handle.shutdown();
    r.join.await.unwrap();
}

#[tokio::test]
async fn outbound_connect_queue_reply_and_failure() {
    let server = start(&["127.0.0.1:0"], TransportConfig::default());
    let mut client = start(&[], TransportConfig::default());
    let ep = Endpoint::tcp(server.addrs[0]);
    // Two sends before the connection is up: both queued, in order, on one connection.
    client
        .handle
        .command(Cmd::SendTo(ep.clone(), msg(5, b"one")))
        .unwrap();
    client
        .handle
        .command(Cmd::SendTo(ep.clone(), msg(5, b"two")))
        .unwrap();
    next_event(&mut client, |e| *e == Ev::Transport("Connected".into())).await;
    let Ev::Msg(c1, m1) = next_event(&mut client, |e| matches!(e, Ev::Msg(..))).await else {
        unreachable!()
    };
    let Ev::Msg(c2, m2) = next_event(&mut client, |e| matches!(e, Ev::Msg(..))).await else {
        unreachable!()
    };
    // Delivered without the stream padding.
    assert_eq!(
        (&m1[..], &m2[..]),
        (&msg(5, b"one")[..7], &msg(5, b"two")[..7])
    );
    assert_eq!(c1, c2);
    // Nobody listens here.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    client
        .handle
        .command(Cmd::SendTo(Endpoint::tcp(dead), msg(5, b"x")))
        .unwrap();
    next_event(&mut client, |e| *e == Ev::Transport("ConnectFailed".into())).await;
    client.handle.shutdown();
    client.join.await.unwrap();
    server.handle.shutdown();
    server.join.await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_says_goodbye_then_closes() {
    let mut r = start(&["127.0.0.1:0"], TransportConfig::default());
    let addr = r.addrs[0];
    let mut s = TcpStream::connect(addr).await.unwrap();
    next_event(&mut r, |e| *e == Ev::Transport("Accepted".into())).await;
    r.handle.shutdown();
    let bye = msg(0x02, b"bye!");
    assert_eq!(read_exact(&mut s, bye.len()).await, bye);
    expect_closed(&mut s).await;
    r.join.await.unwrap();
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_every_handle_stops_the_driver() {
    let r = start(&[], TransportConfig::default());
    drop(r.handle);
    tokio::time::timeout(Duration::from_secs(5), r.join)
        .await
        .expect("driver did not stop")
        .unwrap();
}
