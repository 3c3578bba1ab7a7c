//! The load generator's transport side (`rsp bench`): a client connection that sends and
//! receives whole ASAP messages over TCP, MPTCP or SCTP, and the echo servers used as the
//! baseline (every message straight back), so the CLI never touches sockets.

use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_wire::framing::Deframer;
use rserpool_wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sctp::{RecvItem, SctpListener, SctpStream};
use crate::transport::accept::accept_until;

/// The TCP baseline on 127.0.0.1 (MPTCP with `mptcp`): every message received is sent
/// straight back.
pub async fn start_tcp_echo(mptcp: bool) -> std::io::Result<SocketAddr> {
    let mut l = crate::transport::tcp::bind_stream(([127, 0, 0, 1], 0).into(), mptcp)?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        accept_until(&mut l, "bench echo", std::future::pending(), |(s, _)| {
            tokio::spawn(echo_conn(s));
            std::future::ready(ControlFlow::Continue(()))
        })
        .await;
    });
    Ok(addr)
}

async fn echo_conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut d = Deframer::default();
    let mut buf = vec![0u8; 16384];
    let mut out = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        d.push(&buf[..n]);
        out.clear();
        while let Ok(Some(m)) = d.next_message() {
            out.extend_from_slice(m);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The SCTP baseline on `near`'s address: every message is sent straight back (same
/// PPID). Inside a tokio runtime.
pub fn start_sctp_echo(near: SocketAddr) -> std::io::Result<SocketAddr> {
    let mut l = SctpListener::bind(&[SocketAddr::new(near.ip(), 0)])?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        accept_until(&mut l, "bench echo", std::future::pending(), |(s, _)| {
            tokio::spawn(async move {
                let (mut rd, wr) = s.into_split();
                while let Ok(item) = rd.recv().await {
                    match item {
                        RecvItem::Message { ppid, stream, data } => {
                            if wr.send(ppid, stream, &data).await.is_err() {
                                return;
                            }
                        }
                        RecvItem::Eof => return,
                        RecvItem::Notification(_) => {}
                    }
                }
            });
            std::future::ready(ControlFlow::Continue(()))
        })
        .await;
    });
    Ok(addr)
}

/// One client connection: TCP (messages back-to-back) or SCTP (one message each, PPID 11).
pub enum MessageConn {
    Tcp {
        rd: tokio::net::tcp::OwnedReadHalf,
        wr: tokio::net::tcp::OwnedWriteHalf,
        d: Deframer,
        buf: Vec<u8>,
    },
    Sctp(SctpStream),
    /// TLS over TCP (the handshake done in `connect_tls`).
    Tls {
        stream: Box<tokio_rustls::client::TlsStream<TcpStream>>,
        d: Deframer,
        buf: Vec<u8>,
    },
}

impl MessageConn {
    /// Connect to a TCP endpoint (its first address) or an SCTP one (all addresses).
    pub async fn connect(to: &Endpoint) -> std::io::Result<MessageConn> {
        match to.transport {
            TransportProto::Sctp => {
                let s = SctpStream::connect(&to.addrs).await?;
                s.set_nodelay(true)?;
                Ok(MessageConn::Sctp(s))
            }
            _ => {
                let a = to
                    .primary()
                    .ok_or_else(|| std::io::Error::other("endpoint without address"))?;
                let mptcp = to.transport == TransportProto::Mptcp;
                let s = crate::transport::tcp::connect_plain(a, mptcp).await?;
                Ok(Self::tcp(s))
            }
        }
    }

    fn tcp(s: TcpStream) -> MessageConn {
        let (rd, wr) = s.into_split();
        MessageConn::Tcp {
            rd,
            wr,
            d: Deframer::default(),
            buf: vec![0u8; 65536],
        }
    }

    /// Connect to a TCP endpoint from the local address `from` (port chosen by the
    /// kernel): clients that a registrar must tell apart by source address.
    pub async fn connect_from(to: SocketAddr, from: IpAddr) -> std::io::Result<MessageConn> {
        Ok(Self::tcp(connect_tcp_from(to, from).await?))
    }

    /// Connect to a `tls://` endpoint: TCP, then the TLS handshake checking the
    /// registrar's certificate (as the transport's clients do).
    pub async fn connect_tls(
        to: &Endpoint,
        tls: &crate::transport::tls::TlsSettings,
    ) -> std::io::Result<MessageConn> {
        let stream = crate::transport::tls::connect_client(&to.addrs, tls).await?;
        Ok(MessageConn::Tls {
            stream: Box::new(stream),
            d: Deframer::default(),
            buf: vec![0u8; 65536],
        })
    }

    /// Send one ASAP message (SCTP: PPID 11, stream 0).
    pub async fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        match self {
            MessageConn::Tcp { wr, .. } => wr.write_all(msg).await,
            MessageConn::Sctp(s) => s.send(Protocol::Asap.ppid(), 0, msg).await,
            MessageConn::Tls { stream, .. } => {
                stream.write_all(msg).await?;
                stream.flush().await
            }
        }
    }

    /// Every whole message that one wake-up brings (at least one), appended to `out`, or
    /// why there is none. Cancel-safe: a message read but not returned stays buffered
    /// (for `rsp soak`, whose connections wait for messages and their own timers at once).
    pub async fn recv_many(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let first = out.len();
        loop {
            let (rd, d, buf): (&mut (dyn tokio::io::AsyncRead + Unpin + Send), _, _) = match self {
                MessageConn::Tcp { rd, d, buf, .. } => (rd, d, buf),
                MessageConn::Tls { stream, d, buf } => (stream.as_mut(), d, buf),
                MessageConn::Sctp(_) => {
                    let m = self.recv().await?;
                    out.push(m);
                    return Ok(());
                }
            };
            loop {
                match d.next_message() {
                    Ok(Some(m)) => out.push(m.to_vec()),
                    Ok(None) => break,
                    Err(e) => return Err(format!("bad framing: {e}")),
                }
            }
            if out.len() > first {
                return Ok(());
            }
            match rd.read(buf).await {
                Ok(0) => return Err("connection closed by the server".into()),
                Err(e) => return Err(format!("read failed: {e}")),
                Ok(n) => d.push(&buf[..n]),
            }
        }
    }

    /// The next whole message, or why there is none (the connection ended or broke).
    pub async fn recv(&mut self) -> Result<Vec<u8>, String> {
        match self {
            MessageConn::Tcp { rd, d, buf, .. } => loop {
                match d.next_message() {
                    Ok(Some(m)) => return Ok(m.to_vec()),
                    Ok(None) => match rd.read(buf).await {
                        Ok(0) => return Err("connection closed by the server".into()),
                        Err(e) => return Err(format!("read failed: {e}")),
                        Ok(n) => d.push(&buf[..n]),
                    },
                    Err(e) => return Err(format!("bad framing: {e}")),
                }
            },
            MessageConn::Tls { stream, d, buf } => loop {
                match d.next_message() {
                    Ok(Some(m)) => return Ok(m.to_vec()),
                    Ok(None) => match stream.read(buf).await {
                        Ok(0) => return Err("connection closed by the server".into()),
                        Err(e) => return Err(format!("read failed: {e}")),
                        Ok(n) => d.push(&buf[..n]),
                    },
                    Err(e) => return Err(format!("bad framing: {e}")),
                }
            },
            MessageConn::Sctp(s) => {
                let mut events = Vec::new();
                loop {
                    match s.recv().await {
                        Ok(RecvItem::Message { data, .. }) => return Ok(data),
                        Ok(RecvItem::Eof) => {
                            return Err(format!("association ended by the server {events:?}"))
                        }
                        Ok(RecvItem::Notification(ev)) => events.push(ev),
                        Err(e) => return Err(format!("receive failed: {e} {events:?}")),
                    }
                }
            }
        }
    }
}

async fn connect_tcp_from(to: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(from, 0))?;
    let s = sock.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// What a [`flood`] sent and got back.
#[derive(Debug, Clone, Default)]
pub struct FloodCounts {
    pub sent: u64,
    /// Seconds spent sending.
    pub secs: f64,
    /// Answers by kind, as `classify` named them.
    pub answers: std::collections::BTreeMap<&'static str, u64>,
}

/// A flooding client: one TCP connection from `from` to `to` that pipelines `msg(i)` (the
/// i-th message) at
/// `rate` per second (`None`: as fast as the socket takes it), with at most `window`
/// messages unanswered (a registrar drops
/// a peer that does not read its answers), until `stop`; then it waits (at most 10 s) for
/// the answers still owed. Each different answer is classified once (`classify`), so the
/// flooder's own work stays small beside the server's.
pub async fn flood(
    to: SocketAddr,
    from: IpAddr,
    mut msg: impl FnMut(u64) -> Vec<u8> + Send + 'static,
    window: u64,
    rate: Option<u64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    classify: fn(&[u8]) -> &'static str,
) -> std::io::Result<FloodCounts> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let s = connect_tcp_from(to, from).await?;
    let (mut rd, mut wr) = s.into_split();
    let answered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let room = Arc::new(tokio::sync::Notify::new());
    let writer = {
        let (answered, sent, room, stop) =
            (answered.clone(), sent.clone(), room.clone(), stop.clone());
        tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut n = 0u64;
            let start = std::time::Instant::now();
            while !stop.load(Ordering::Acquire) {
                let mut free = (window + answered.load(Ordering::Acquire)).saturating_sub(n);
                if let Some(r) = rate {
                    let owed = (start.elapsed().as_secs_f64() * r as f64) as u64;
                    let due = owed.saturating_sub(n);
                    if due == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    free = free.min(due);
                }
                if free == 0 {
                    let _ = tokio::time::timeout(Duration::from_millis(10), room.notified()).await;
                    continue;
                }
                let k = free.min(100);
                batch.clear();
                for i in n..n + k {
                    batch.extend_from_slice(&msg(i));
                }
                wr.write_all(&batch).await?;
                n += k;
                sent.store(n, Ordering::Release);
            }
            Ok::<_, std::io::Error>((wr, start.elapsed().as_secs_f64()))
        })
    };
    let mut counts = FloodCounts::default();
    let mut seen: std::collections::HashMap<Vec<u8>, &'static str> = Default::default();
    let mut d = Deframer::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut writer = Some(writer);
    let mut wr_half = None;
    let mut progress = std::time::Instant::now();
    loop {
        while let Ok(Some(m)) = d.next_message() {
            let k = match seen.get(m) {
                Some(k) => *k,
                None => {
                    let k = classify(m);
                    if seen.len() < 64 {
                        seen.insert(m.to_vec(), k);
                    }
                    k
                }
            };
            *counts.answers.entry(k).or_insert(0) += 1;
            got += 1;
        }
        answered.store(got, Ordering::Release);
        room.notify_one();
        if let Some(w) = writer.as_ref() {
            if w.is_finished() {
                if let Some(w) = writer.take() {
                    let (half, secs) = w.await.map_err(std::io::Error::other)??;
                    wr_half = Some(half);
                    counts.secs = secs;
                }
            }
        }
        // Done when every answer came, or (the server owing some) after 10 s without one.
        if writer.is_none()
            && (got >= sent.load(Ordering::Acquire) || progress.elapsed() > Duration::from_secs(10))
        {
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(50), rd.read(&mut buf));
        match read.await {
            Ok(Ok(0)) => {
                return Err(std::io::Error::other(
                    "the server closed the flooding connection",
                ))
            }
            Ok(Ok(n)) => {
                d.push(&buf[..n]);
                progress = std::time::Instant::now();
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
    }
    drop(wr_half);
    counts.sent = sent.load(Ordering::Acquire);
    Ok(counts)
}
