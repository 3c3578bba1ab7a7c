//! The gateway for RSerPool-unaware clients: plain TCP (or HTTP) towards the client,
//! RSerPool towards the pool.
//!
//! Each [`Mapping`] is one TCP listener (IPv4 or IPv6) in front of one pool. The pool
//! user ([`crate::pu::PoolUser`], one for the whole gateway) keeps the pool's PEs cached
//! from the registrar; the gateway picks one by the pool's policy from its own copy of
//! that cache (`Picker`: the pool user's selection code, no round trip per pick).
//!
//! * TCP mode ([`Mode::Tcp`]): for each client connection a PE is picked and connected to
//!   before a byte moves; a refused connect reports the PE to the registrar
//!   (ENDPOINT_UNREACHABLE, [`crate::pu::PoolUser::report_unreachable`]) and moves on to
//!   the next PE, so the client never sees the dead one (a connect that times out moves on
//!   without a report: see [`Shared::failed`]). Then the bytes are copied both
//!   ways (`tokio::io::copy_bidirectional`: half-close passes through as a shutdown of the
//!   other side; each direction has a bounded buffer, so a client that never reads only
//!   stalls its own connection). A connection on which nothing moves for
//!   `idle_timeout` is closed. With `splice` the bytes move socket → pipe → socket with
//!   splice(2) instead (`splice.rs`), never entering user space.
//! * HTTP mode ([`Mode::Http`], `http.rs`): HTTP/1.1 towards the client, and per request a
//!   PE by the pool's policy over kept-alive connections to the PEs; idempotent requests
//!   whose PE fails before answering go to another PE.
//!
//! Both modes: at most `max_connections` client connections (more are accepted and closed
//! at once, with a rate-limited log line); a pool without a reachable PE closes the client
//! connection (TCP) or answers 503 (HTTP), with a log line; [`Gateway::run`] stops
//! accepting when its `stop` future completes and waits up to `drain_timeout` for the open
//! connections (HTTP connections are asked to close after their current request).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rserpool_proto::io::TransportProto;
use rserpool_wire::{PeId, PoolElement, PoolHandle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::pu::{endpoint_of, PoolUser};
use crate::transport::accept::accept_until;

mod http;
mod splice;

/// Connect timeout towards a PE (then the next PE is tried).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection on which nothing moves this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Most simultaneous client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// How long open connections may finish after the stop signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// PEs tried per client connection (TCP) or request (HTTP) before giving up.
pub const DEFAULT_MAX_ATTEMPTS: usize = 4;
/// Buffer of each direction of a TCP-mode connection: HAProxy's default size (fewer
/// system calls than tokio's 8 KiB for large transfers; 64 KiB cost more in zeroing and
/// page faults per connection than it saved at 1 KiB answers).
const COPY_BUFFER: usize = 16 << 10;
/// Largest HTTP request body buffered (bodies are kept so a request can be retried).
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// One listener and the pool behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub listen: SocketAddr,
    pub pool: PoolHandle,
    /// Listen with an MPTCP socket (`mptcp://`; plain TCP clients are taken too).
    pub mptcp: bool,
}

/// How client connections are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One PE per client connection; bytes copied both ways.
    #[default]
    Tcp,
    /// One PE per HTTP request.
    Http,
}

/// Everything the gateway needs besides its pool user.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub maps: Vec<Mapping>,
    pub mode: Mode,
    pub connect_timeout: Duration,
    /// 0 = never.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub max_attempts: usize,
    pub max_body: usize,
    /// TCP mode: move bytes with splice(2) (kernel only) instead of
    /// `tokio::io::copy_bidirectional` (through user-space buffers).
    pub splice: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            maps: Vec::new(),
            mode: Mode::Tcp,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_body: DEFAULT_MAX_BODY,
            splice: false,
        }
    }
}

/// What a gateway did (read at any time through [`Gateway::stats`]).
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub refused_over_limit: AtomicU64,
    pub no_pe: AtomicU64,
    pub pe_unreachable: AtomicU64,
    pub requests: AtomicU64,
    pub retried: AtomicU64,
    pub active: AtomicUsize,
    /// TCP mode: bytes relayed client → PE and PE → client (counted when a connection
    /// ends).
    pub bytes_to_pe: AtomicU64,
    pub bytes_from_pe: AtomicU64,
    /// Connections (TCP mode) or requests (HTTP mode) sent to each PE, by PE ID.
    pub per_pe: std::sync::Mutex<std::collections::BTreeMap<PeId, u64>>,
}

impl Stats {
    /// [`Stats::per_pe`] as `(PE ID 0x…, count)`.
    pub fn per_pe_requests(&self) -> Vec<(String, u64)> {
        self.per_pe
            .lock()
            .map(|m| m.iter().map(|(id, n)| (id.to_string(), *n)).collect())
            .unwrap_or_default()
    }

    fn count_bytes(&self, up: u64, down: u64) {
        self.bytes_to_pe.fetch_add(up, Ordering::Relaxed);
        self.bytes_from_pe.fetch_add(down, Ordering::Relaxed);
    }
}

pub(crate) struct Shared {
    pub(crate) pu: Arc<PoolUser>,
    pub(crate) cfg: GatewayConfig,
    pub(crate) stats: Arc<Stats>,
    pub(crate) upstream: http::Upstreams,
    picker: Picker,
    limit_logged: AtomicU64,
    epoch: Instant,
}

/// A bound gateway, not yet serving.
pub struct Gateway {
    /// Each listener, its pool, and whether it is MPTCP.
    listeners: Vec<(TcpListener, PoolHandle, bool)>,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Bind every listener (inside a tokio runtime). IPv6 listeners are IPv6-only.
    pub fn bind(cfg: GatewayConfig, pu: Arc<PoolUser>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut listeners = Vec::new();
        for m in &cfg.maps {
            let scheme = if m.mptcp { "mptcp" } else { "tcp" };
            let l = crate::transport::tcp::bind_stream(m.listen, m.mptcp)
                .with_context(|| format!("cannot listen on {scheme}://{}", m.listen))?;
            listeners.push((l, m.pool.clone(), m.mptcp));
        }
        Ok(Self {
            listeners,
            shared: Arc::new(Shared {
                pu,
                cfg,
                stats: Arc::default(),
                upstream: http::Upstreams::default(),
                picker: Picker::default(),
                limit_logged: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        })
    }

    /// The listening addresses (real ports) and their pools.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, PoolHandle)> {
        self.listeners
            .iter()
            .filter_map(|(l, p, _)| l.local_addr().ok().map(|a| (a, p.clone())))
            .collect()
    }

    /// Each listener as a URL (`tcp://…` or `mptcp://…`) with its pool.
    pub fn listen_urls(&self) -> Vec<(String, PoolHandle)> {
        self.listeners
            .iter()
            .filter_map(|(l, p, mptcp)| {
                let scheme = if *mptcp { "mptcp" } else { "tcp" };
                l.local_addr()
                    .ok()
                    .map(|a| (format!("{scheme}://{a}"), p.clone()))
            })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Serve until `stop`, then stop accepting and drain (at most `drain_timeout`).
    /// Returns the number of connections still open when the drain ended.
    pub async fn run(self, stop: impl Future<Output = ()>) -> usize {
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.shared.cfg.max_connections.max(1)));
        let mut accepting = Vec::new();
        for (mut listener, pool, _) in self.listeners {
            let sh = self.shared.clone();
            let permits = permits.clone();
            let mut rx = stop_rx.clone();
            let conn_stop = stop_rx.clone();
            accepting.push(tokio::spawn(async move {
                let label = listener
                    .local_addr()
                    .map_or_else(|_| "gateway".into(), |a| format!("gateway {a}"));
                accept_until(
                    &mut listener,
                    &label,
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                    |(stream, peer)| {
                        on_accept(&sh, &permits, stream, peer, &pool, conn_stop.clone());
                        std::future::ready(ControlFlow::Continue(()))
                    },
                )
                .await;
            }));
        }
        stop.await;
        let _ = stop_tx.send(true);
        for a in accepting {
            let _ = a.await;
        }
        let open = self.shared.stats.active.load(Ordering::Relaxed);
        tracing::info!(open, "gateway: not accepting any more; draining");
        let max = u32::try_from(self.shared.cfg.max_connections.max(1)).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(self.shared.cfg.drain_timeout, permits.acquire_many(max)).await;
        let left = self.shared.stats.active.load(Ordering::Relaxed);
        if drained.is_err() {
            tracing::warn!(left, "gateway: drain timeout; closing what is left");
        }
        left
    }
}

fn on_accept(
    sh: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    stream: TcpStream,
    peer: SocketAddr,
    pool: &PoolHandle,
    stop: watch::Receiver<bool>,
) {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        sh.stats.refused_over_limit.fetch_add(1, Ordering::Relaxed);
        // One line per second at most.
        let now = sh.epoch.elapsed().as_secs() + 1;
        if sh.limit_logged.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                %peer,
                max = sh.cfg.max_connections,
                "gateway: connection limit reached; closing new connections"
            );
        }
        return;
    };
    sh.stats.accepted.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let sh = sh.clone();
    let pool = pool.clone();
    tokio::spawn(async move {
        sh.stats.active.fetch_add(1, Ordering::Relaxed);
        match sh.cfg.mode {
            Mode::Tcp => tcp_session(&sh, stream, peer, &pool, stop).await,
            Mode::Http => http::session(&sh, stream, peer, &pool, stop).await,
        }
        sh.stats.active.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    });
}

/// The TCP address of a PE's user transport (`None` for SCTP and other transports).
pub fn tcp_addr(pe: &PoolElement) -> Option<SocketAddr> {
    endpoint_of(pe)
        .filter(|e| e.transport == TransportProto::Tcp)
        .and_then(|e| e.primary())
}

/// How long the gateway's copy of a pool's PEs serves before it is taken again from the
/// pool user (whose own cache the registrar refreshes).
const LOCAL_REFRESH: Duration = Duration::from_secs(1);

/// The gateway's copy of each pool's PEs, taken from the pool user's cache
/// ([`PoolUser::resolve`]) at most every [`LOCAL_REFRESH`], with the pool user's own
/// selection code (`PuCache`: the pool's policy over the cached PEs) running on it. A pick
/// then costs no round trip to the pool user's driver task: measured, that hop per
/// connection cost TCP mode a third of its connection rate on a loaded 2-core machine.
#[derive(Default)]
struct Picker {
    pools: std::sync::Mutex<std::collections::HashMap<PoolHandle, Local>>,
}

struct Local {
    sel: rserpool_proto::handlespace::PuCache,
    until: Instant,
    rng: rand_chacha::ChaCha8Rng,
}

impl Picker {
    fn select(&self, pool: &PoolHandle, now: Instant) -> Option<PoolElement> {
        let mut pools = self.pools.lock().ok()?;
        let l = pools.get_mut(pool).filter(|l| now < l.until)?;
        l.sel.select(&mut l.rng).cloned()
    }

    fn install(&self, pool: &PoolHandle, pes: Vec<PoolElement>, now: Instant) {
        use rand::SeedableRng;
        let Some(policy) = pes.first().map(|pe| pe.policy.policy_type()) else {
            return;
        };
        if let Ok(mut pools) = self.pools.lock() {
            pools.insert(
                pool.clone(),
                Local {
                    sel: rserpool_proto::handlespace::PuCache::new(policy, pes),
                    until: now + LOCAL_REFRESH,
                    rng: rand_chacha::ChaCha8Rng::seed_from_u64(crate::random_seed()),
                },
            );
        }
    }

    fn remove(&self, pool: &PoolHandle, pe: PeId) {
        if let Ok(mut pools) = self.pools.lock() {
            if let Some(l) = pools.get_mut(pool) {
                l.sel.remove(pe);
            }
        }
    }
}

/// Why no PE could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PickError {
    #[error("pool {pool}: {why}")]
    Pool { pool: String, why: String },
    #[error("pool {pool}: no PE reachable after {attempts} attempts")]
    Exhausted { pool: String, attempts: usize },
}

impl Shared {
    /// The next PE of `pool` by its policy with a TCP transport; `tried` counts attempts.
    pub(crate) async fn pick(
        &self,
        pool: &PoolHandle,
        attempt: usize,
    ) -> Result<(PeId, SocketAddr), PickError> {
        let name = || String::from_utf8_lossy(pool.as_bytes()).into_owned();
        if attempt >= self.cfg.max_attempts.max(1) {
            return Err(PickError::Exhausted {
                pool: name(),
                attempts: attempt,
            });
        }
        let now = Instant::now();
        let pe = match self.picker.select(pool, now) {
            Some(pe) => pe,
            None => {
                let pes = self
                    .pu
                    .resolve(pool.clone())
                    .await
                    .map_err(|e| PickError::Pool {
                        pool: name(),
                        why: e.to_string(),
                    })?;
                self.picker.install(pool, pes, now);
                self.picker
                    .select(pool, now)
                    .ok_or_else(|| PickError::Pool {
                        pool: name(),
                        why: "no PE".into(),
                    })?
            }
        };
        if let Ok(mut m) = self.stats.per_pe.lock() {
            *m.entry(pe.id).or_default() += 1;
        }
        match tcp_addr(&pe) {
            Some(a) => Ok((pe.id, a)),
            None => Err(PickError::Pool {
                pool: name(),
                why: format!("PE {} has no TCP transport", pe.id),
            }),
        }
    }

    /// `pe` did not accept a connection: tell the registrar, never pick it again.
    pub(crate) fn unreachable(&self, pool: &PoolHandle, pe: PeId, addr: SocketAddr, e: &io::Error) {
        self.stats.pe_unreachable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            pool = %String::from_utf8_lossy(pool.as_bytes()),
            %pe, %addr, "gateway: PE unreachable ({e}); reported, trying the next"
        );
        self.picker.remove(pool, pe);
        let _ = self.pu.report_unreachable(pool.clone(), pe);
    }

    /// A connect to `pe` failed: a refusal (or an unreachable host) is proof enough of
    /// death to report; a timeout only moves on to the next PE — under a burst of
    /// connections a live PE's backlog overflows and its SYNs wait, and a hung PE is the
    /// registrar's keep-alives' to find.
    pub(crate) fn failed(&self, pool: &PoolHandle, pe: PeId, addr: SocketAddr, e: &io::Error) {
        if e.kind() == io::ErrorKind::TimedOut {
            tracing::info!(
                pool = %String::from_utf8_lossy(pool.as_bytes()),
                %pe, %addr, "gateway: PE slow to accept ({e}); trying the next"
            );
        } else {
            self.unreachable(pool, pe, addr, e);
        }
    }

    pub(crate) async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        match tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// Connect to a PE of `pool`, moving on to the next PE on failure.
    async fn connect_pe(&self, pool: &PoolHandle) -> Result<(PeId, TcpStream), PickError> {
        let mut attempt = 0;
        loop {
            let (pe, addr) = self.pick(pool, attempt).await?;
            attempt += 1;
            match self.connect(addr).await {
                Ok(s) => return Ok((pe, s)),
                Err(e) => self.failed(pool, pe, addr, &e),
            }
        }
    }
}

async fn tcp_session(
    sh: &Shared,
    client: TcpStream,
    peer: SocketAddr,
    pool: &PoolHandle,
    mut stop: watch::Receiver<bool>,
) {
    let (pe, upstream) = match sh.connect_pe(pool).await {
        Ok(x) => x,
        Err(e) => {
            sh.stats.no_pe.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "gateway: {e}; closing the client connection");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    tracing::debug!(%peer, %pe, "gateway: connected");
    let last = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mut a = Tracked {
        inner: client,
        last: last.clone(),
        epoch,
    };
    let mut b = Tracked {
        inner: upstream,
        last: last.clone(),
        epoch,
    };
    let idle = sh.cfg.idle_timeout;
    if sh.cfg.splice {
        let (a, b) = (a.inner, b.inner);
        tokio::select! {
            r = splice::both_ways(&a, &b, &last, epoch) => match r {
                Ok((up, down)) => {
                    sh.stats.count_bytes(up, down);
                    tracing::debug!(%peer, %pe, up, down, "gateway: connection done");
                }
                Err(e) => tracing::debug!(%peer, %pe, "gateway: connection ended: {e}"),
            },
            () = idle_watch(&last, epoch, idle) => {
                tracing::info!(%peer, %pe, "gateway: idle for {idle:?}; closing");
            }
        }
        return;
    }
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUFFER, COPY_BUFFER) => match r {
            Ok((up, down)) => {
                sh.stats.count_bytes(up, down);
                tracing::debug!(%peer, %pe, up, down, "gateway: connection done");
            }
            Err(e) => tracing::debug!(%peer, %pe, "gateway: connection ended: {e}"),
        },
        () = idle_watch(&last, epoch, idle) => {
            tracing::info!(%peer, %pe, "gateway: idle for {idle:?}; closing");
        }
        () = async {
            // After the stop signal a connection gets the drain period, then the process
            // ends it; nothing to do here but wait.
            let _ = stop.wait_for(|s| *s).await;
            std::future::pending::<()>().await;
        } => {}
    }
}

/// Completes once nothing moved for `idle` (never for 0).
async fn idle_watch(last: &AtomicU64, epoch: Instant, idle: Duration) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    loop {
        let seen = Duration::from_millis(last.load(Ordering::Relaxed));
        let due = epoch + seen + idle;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

/// A stream that notes when bytes last arrived.
struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
