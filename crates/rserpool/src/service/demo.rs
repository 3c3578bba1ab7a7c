//! The demo services of `rsp serve` — echo (RFC 862), discard (RFC 863), daytime
//! (RFC 867) and chargen (RFC 864) — over TCP (a byte stream) or SCTP (one message per
//! piece of session data), and [`LoadTracker`], which reports open sessions as the PE's
//! load for least-used policies.
//!
//! Over TCP a client that opens with the session framing's INIT chunk (a
//! [`super::session::Session`], e.g. `rsp call`) is served through the session layer:
//! echo answers each message and then acknowledges it, discard acknowledges each,
//! daytime sends its line as one message and closes, chargen sends a line per message
//! (daytime and chargen wait 100 ms for an INIT before they speak plainly). Every other
//! TCP client gets the plain byte stream.
//!
//! Over SCTP echo sends each message back with its PPID and stream; daytime and chargen
//! send with [`DATA_PPID`]. Messages with PPID 11 are ASAP control messages of the
//! session (ASAP_COOKIE_ECHO, ASAP_BUSINESS_CARD from RSPLIB pool users): they are
//! decoded, logged and otherwise ignored — the demo services keep no session state.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use std::ops::ControlFlow;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::session::{
    describe_control, ListenerOptions, PeMessage, PeSession, SessionListener, DATA_PPID,
};
use crate::pe::PoolElement;
use crate::sctp::{AssocEvent, RecvItem, SctpListener, SctpReadHalf, SctpStream, SctpWriteHalf};
use crate::transport::accept::accept_until;
use crate::transport::sctp::PPID_ASAP;

/// Which demo service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Service {
    /// Sends back whatever it receives (RFC 862).
    Echo,
    /// Reads and throws away (RFC 863).
    Discard,
    /// Sends the date and time, then closes (RFC 867).
    Daytime,
    /// Sends lines of characters until the client goes away (RFC 864).
    Chargen,
}

impl Service {
    /// The pool it joins unless told otherwise.
    pub fn default_pool(self) -> &'static str {
        match self {
            Service::Echo => "EchoPool",
            Service::Discard => "DiscardPool",
            Service::Daytime => "DaytimePool",
            Service::Chargen => "CharGenPool",
        }
    }
    /// Its name on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Daytime => "daytime",
            Service::Chargen => "chargen",
        }
    }
}

/// A TCP listener for a demo service (SO_REUSEADDR; IPv6 only for `[::]`).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crate::transport::tcp::bind_stream(addr, false)
}

/// Reports load = open connections / capacity for least-used policies.
pub struct LoadTracker {
    pe: Arc<PoolElement>,
    active: Arc<AtomicU32>,
    capacity: u32,
    policy: rserpool_wire::Policy,
}

impl LoadTracker {
    /// Report through `pe`; `active` counts the open sessions (shared between the
    /// listeners of one PE); `capacity` sessions = 100 % load.
    pub fn new(
        pe: Arc<PoolElement>,
        active: Arc<AtomicU32>,
        capacity: u32,
        policy: rserpool_wire::Policy,
    ) -> Self {
        Self {
            pe,
            active,
            capacity: capacity.max(1),
            policy,
        }
    }

    pub fn changed(&self, delta: i32) {
        let n = if delta > 0 {
            self.active.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.active
                .fetch_sub(1, Ordering::Relaxed)
                .saturating_sub(1)
        };
        let load = (u64::from(n.min(self.capacity)) * u64::from(u32::MAX)
            / u64::from(self.capacity)) as u32;
        let mut p = self.policy.clone();
        if p.set_load(load) {
            let _ = self.pe.set_policy(p);
        }
    }
}

/// Serve `service` on a TCP listener (sessions run on their own tasks).
pub async fn serve_tcp(mut listener: TcpListener, service: Service, load: Option<LoadTracker>) {
    let load = load.map(Arc::new);
    accept_until(
        &mut listener,
        service.name(),
        std::future::pending(),
        |(stream, peer)| {
            tracing::info!(%peer, "client connected");
            session(load.clone(), peer, handle(stream, service));
            std::future::ready(ControlFlow::Continue(()))
        },
    )
    .await;
}

/// Run one session on a task of its own, counted by `load` while it lasts.
fn session(
    load: Option<Arc<LoadTracker>>,
    peer: SocketAddr,
    run: impl std::future::Future<Output = io::Result<()>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Some(l) = &load {
            l.changed(1);
        }
        if let Err(e) = run.await {
            tracing::debug!(%peer, "session ended: {e}");
        }
        if let Some(l) = &load {
            l.changed(-1);
        }
        tracing::info!(%peer, "client left");
    });
}

/// Whether the client opened with the session framing's INIT chunk (`01 xx 00 04`): a
/// client of the session layer (`rsp call`, a `Session`). Plain clients start with text
/// (a first byte of 0x01 does not occur in it) or send nothing (answered as plain).
async fn speaks_session(stream: &TcpStream) -> bool {
    let mut b = [0u8; 4];
    for _ in 0..50 {
        match stream.peek(&mut b).await {
            Ok(0) | Err(_) => return false,
            Ok(_) if b[0] != 0x01 => return false,
            Ok(n) if n >= 4 => return b[2] == 0 && b[3] == 4,
            // The rest of the INIT chunk is on its way.
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
        }
    }
    false
}

/// The session servers of the demo services, shared by the listeners of the process:
/// echo answers and then acknowledges each message, discard acknowledges each, daytime
/// sends its line and closes, chargen sends lines until the PU goes.
fn session_hub(service: Service) -> &'static Arc<SessionListener> {
    static HUBS: [OnceLock<Arc<SessionListener>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let cell = &HUBS[service as usize];
    cell.get_or_init(|| {
        let hub = Arc::new(SessionListener::unregistered(ListenerOptions::default()));
        let h = hub.clone();
        tokio::spawn(async move {
            while let Some(s) = h.accept().await {
                tokio::spawn(session_service(s, service));
            }
        });
        hub
    })
}

async fn session_service(mut s: PeSession, service: Service) {
    match service {
        Service::Daytime => {
            let _ = s.send(DATA_PPID, daytime().into_bytes()).await;
            s.close();
            return;
        }
        Service::Chargen => {
            let mut i = 0usize;
            while s.send(DATA_PPID, chargen_line(i)).await.is_ok() {
                i += 1;
            }
            return;
        }
        Service::Echo | Service::Discard => {}
    }
    while let Some(m) = s.recv().await {
        if let PeMessage::Data { tsn, ppid, data } = m {
            if service == Service::Echo && s.send(ppid, data).await.is_err() {
                return;
            }
            let _ = s.ack(tsn);
        }
    }
}

/// How long daytime and chargen wait for a session client's INIT chunk before they speak
/// plainly (a plain client sends nothing).
const SESSION_SNIFF: std::time::Duration = std::time::Duration::from_millis(100);

async fn handle(mut stream: TcpStream, service: Service) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let session = match service {
        Service::Echo | Service::Discard => speaks_session(&stream).await,
        Service::Daytime | Service::Chargen => {
            tokio::time::timeout(SESSION_SNIFF, speaks_session(&stream))
                .await
                .unwrap_or(false)
        }
    };
    if session {
        let peer = stream.peer_addr()?;
        session_hub(service).adopt_tcp(stream, peer).await;
        return Ok(());
    }
    match service {
        Service::Echo => {
            let (mut r, mut w) = stream.split();
            tokio::io::copy(&mut r, &mut w).await?;
        }
        Service::Discard => {
            let mut buf = [0u8; 8192];
            while stream.read(&mut buf).await? > 0 {}
        }
        Service::Daytime => {
            stream.write_all(daytime().as_bytes()).await?;
            stream.shutdown().await?;
        }
        Service::Chargen => {
            let mut i = 0usize;
            loop {
                stream.write_all(&chargen_line(i)).await?;
                i += 1;
            }
        }
    }
    Ok(())
}

/// RFC 864: 72 printable characters per line, each line starting one further.
pub fn chargen_line(i: usize) -> Vec<u8> {
    const FIRST: u8 = b' ' + 1;
    const COUNT: usize = 94;
    let mut line: Vec<u8> = (0..72).map(|k| FIRST + ((i + k) % COUNT) as u8).collect();
    line.extend_from_slice(b"\r\n");
    line
}

/// RFC 867 leaves the format open: ISO 8601 UTC.
pub fn daytime() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z\r\n",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A service's SCTP listener.
#[derive(Debug)]
pub struct SctpServiceListener {
    inner: SctpListener,
    asked: Vec<SocketAddr>,
}

/// Bind a (multi-homed) listener; inside a tokio runtime.
pub fn bind_sctp(addrs: &[SocketAddr]) -> io::Result<SctpServiceListener> {
    Ok(SctpServiceListener {
        inner: SctpListener::bind(addrs)?,
        asked: addrs.to_vec(),
    })
}

impl SctpServiceListener {
    /// The listening socket (for [`super::session::SessionBind::Sctp`]).
    pub fn into_listener(self) -> SctpListener {
        self.inner
    }

    /// Every address of the listener (wildcards expanded by the kernel).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.local_addrs()
    }

    /// The port and the addresses to register: the ones asked for, or for a
    /// wildcard every address of the host except loopback (loopback only when
    /// nothing else exists).
    pub fn registered(&self) -> io::Result<(u16, Vec<IpAddr>)> {
        let port = self.inner.local_addr()?.port();
        let ips: Vec<IpAddr> = if self.asked.iter().any(|a| a.ip().is_unspecified()) {
            let all: Vec<IpAddr> = self.local_addrs()?.iter().map(SocketAddr::ip).collect();
            crate::transport::sctp::announceable(&all)
        } else {
            self.asked.iter().map(SocketAddr::ip).collect()
        };
        if ips.is_empty() {
            return Err(io::Error::other(
                "the SCTP listener has no address to register",
            ));
        }
        Ok((port, ips))
    }
}

/// Serve `service` on an SCTP listener (sessions run on their own tasks).
pub async fn serve_sctp(mut l: SctpServiceListener, service: Service, load: Option<LoadTracker>) {
    let load = load.map(Arc::new);
    accept_until(
        &mut l.inner,
        service.name(),
        std::future::pending(),
        |(stream, peer)| {
            let peers = stream.peer_addrs().unwrap_or_default();
            tracing::info!(%peer, ?peers, "client connected (SCTP)");
            session(load.clone(), peer, handle_sctp(stream, service));
            std::future::ready(ControlFlow::Continue(()))
        },
    )
    .await;
}

async fn handle_sctp(stream: SctpStream, service: Service) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    if service == Service::Chargen {
        return chargen_sctp(rd, wr).await;
    }
    loop {
        match rd.recv().await? {
            RecvItem::Notification(AssocEvent::Up { .. }) if service == Service::Daytime => {
                wr.send(DATA_PPID, 0, daytime().as_bytes()).await?;
                wr.shutdown()?;
            }
            RecvItem::Message { ppid, data, .. } if ppid == PPID_ASAP => {
                tracing::info!(
                    "ASAP control message on the session (ignored): {}",
                    describe_control(&data)
                );
            }
            RecvItem::Message { ppid, stream, data } => {
                tracing::debug!(ppid, stream, len = data.len(), "session data");
                if service == Service::Echo {
                    wr.send(ppid, stream, &data).await?;
                }
            }
            RecvItem::Notification(AssocEvent::Lost { .. } | AssocEvent::ShutdownComplete)
            | RecvItem::Eof => return Ok(()),
            RecvItem::Notification(_) => {}
        }
    }
}

async fn chargen_sctp(mut rd: SctpReadHalf, wr: SctpWriteHalf) -> io::Result<()> {
    let mut i = 0usize;
    loop {
        let line = chargen_line(i);
        tokio::select! {
            r = rd.recv() => match r? {
                RecvItem::Notification(
                    AssocEvent::Lost { .. } | AssocEvent::Shutdown | AssocEvent::ShutdownComplete,
                )
                | RecvItem::Eof => return Ok(()),
                _ => {}
            },
            r = wr.send(DATA_PPID, 0, &line) => {
                r?;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn chargen_lines_rotate() {
        let a = chargen_line(0);
        let b = chargen_line(1);
        assert_eq!(a.len(), 74);
        assert_eq!(a[1], b[0]);
        assert!(a[..72].iter().all(|c| (33..=126).contains(c)));
    }
}
