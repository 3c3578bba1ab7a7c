//! The pool user API: find a server of a pool, and another one when it fails.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use rserpool::pu::{PoolUser, PuOptions};
//! let reg = rserpool::url::parse_endpoint("tcp://127.0.0.1:3863", 3863)?;
//! let pu = PoolUser::start(PuOptions::default().registrar(reg));
//! let pe = pu.get_primary_server("EchoPool").await?;      // by the pool's policy
//! let addr = rserpool::pu::endpoint_of(&pe);               // where to connect
//! // … the connection to `addr` fails:
//! let other = pu.get_next_server("EchoPool").await?;      // reports `pe`, picks another
//! # Ok(()) }
//! ```
//!
//! One [`PoolUser`] owns one [`PoolUserCore`] on its own driver task; it may serve any
//! number of pools and concurrent requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rserpool_proto::io::Endpoint;
use rserpool_proto::{PoolUserConfig, PoolUserCore, PuCommand, PuError, PuEvent, RequestId};
use rserpool_wire::{PeId, PoolElement, PoolHandle};
use tokio::sync::{broadcast, oneshot};

pub use rserpool_proto::pool_user::endpoint_of;

use crate::driver::{Driver, DriverConfig, DriverGone, DriverHandle};
use crate::link::{registrar_link_builders, RegistrarLink};

/// Everything needed to start a pool user.
#[derive(Clone, Debug, Default)]
pub struct PuOptions {
    pub core: PoolUserConfig,
    /// Registrars, announces, connect timeout (shared with [`crate::pe::PeOptions`]).
    pub link: RegistrarLink,
    pub driver: DriverConfig,
    /// RNG seed of the core; `None` = a fresh random seed.
    pub seed: Option<u64>,
}

impl PuOptions {
    registrar_link_builders!();
    /// PEs to ask for per handle resolution (`u32::MAX` = as many as the registrar gives;
    /// the default asks for none, and registrars answer with 3).
    pub fn hr_items(mut self, items: u32) -> Self {
        self.core.hr_items = Some(items);
        self
    }
    /// Subscribe to pool updates (S = 1; default on): a registrar that accepts pushes
    /// each change of the pool, so a removed PE leaves the cache at once instead of
    /// after the stale-cache interval.
    pub fn subscribe(mut self, on: bool) -> Self {
        self.core.subscribe = on;
        self
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PuFailure {
    #[error(transparent)]
    Pool(#[from] PuError),
    #[error(transparent)]
    Gone(#[from] DriverGone),
}

type Waiters = Arc<Mutex<HashMap<RequestId, oneshot::Sender<Result<PoolElement, PuError>>>>>;

/// A running pool user. Cheap to share by reference; every method takes `&self`.
#[derive(Debug)]
pub struct PoolUser {
    handle: DriverHandle<PoolUserCore>,
    waiters: Waiters,
    next_request: AtomicU64,
    events: broadcast::Sender<PuEvent>,
}

impl PoolUser {
    /// Start the pool user's driver (it contacts a registrar on the first request).
    pub fn start(mut opts: PuOptions) -> Self {
        opts.link.configure(
            &mut opts.core.registrars,
            &mut opts.core.accept_announces,
            &mut opts.driver,
        );
        let seed = opts.seed.unwrap_or_else(crate::random_seed);
        let core = PoolUserCore::new(opts.core, seed);
        let waiters: Waiters = Arc::default();
        let (events, _) = broadcast::channel(256);
        let w = waiters.clone();
        let tx = events.clone();
        let (mut driver, handle) = Driver::new(core, opts.driver, move |ev: PuEvent| {
            let answer = match &ev {
                PuEvent::Server { request, pe, .. } => Some((*request, Ok(pe.clone()))),
                PuEvent::Failed { request, error, .. } => Some((*request, Err(*error))),
                PuEvent::NoRegistrar { .. } => {
                    tracing::debug!("no registrar reachable; retrying");
                    None
                }
                PuEvent::ErrorReceived { conn, error } => {
                    tracing::warn!(%conn, %error, "ASAP_ERROR from registrar");
                    None
                }
                PuEvent::HomeChanged { conn, .. } => {
                    tracing::debug!(%conn, "home registrar");
                    None
                }
                PuEvent::Pushed { pool, pes } => {
                    tracing::debug!(%pool, pes, "pool update pushed by the registrar");
                    None
                }
            };
            if let Some((request, result)) = answer {
                let waiter = w.lock().ok().and_then(|mut m| m.remove(&request));
                if let Some(tx) = waiter {
                    let _ = tx.send(result);
                }
            }
            let _ = tx.send(ev);
        });
        if let Some(spec) = opts.link.announces() {
            driver.multicast(spec);
        }
        driver.spawn();
        Self {
            handle,
            waiters,
            next_request: AtomicU64::new(1),
            events,
        }
    }

    async fn request(
        &self,
        make: impl FnOnce(RequestId) -> PuCommand,
    ) -> Result<PoolElement, PuFailure> {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.waiters.lock() {
            m.insert(id, tx);
        }
        if let Err(e) = self.handle.command(make(id)) {
            if let Ok(mut m) = self.waiters.lock() {
                m.remove(&id);
            }
            return Err(e.into());
        }
        let answer = tokio::select! {
            r = rx => r,
            () = self.handle.stopped() => {
                if let Ok(mut m) = self.waiters.lock() {
                    m.remove(&id);
                }
                return Err(DriverGone.into());
            }
        };
        match answer {
            Ok(r) => Ok(r?),
            Err(_) => Err(DriverGone.into()),
        }
    }

    /// A PE of `pool`, chosen by the pool's policy (cache, else a handle resolution).
    pub async fn get_primary_server(
        &self,
        pool: impl Into<PoolHandle>,
    ) -> Result<PoolElement, PuFailure> {
        let pool = pool.into();
        self.request(|request| PuCommand::GetPrimaryServer { request, pool })
            .await
    }

    /// The PE last handed out for `pool` failed: report it and return another one.
    pub async fn get_next_server(
        &self,
        pool: impl Into<PoolHandle>,
    ) -> Result<PoolElement, PuFailure> {
        let pool = pool.into();
        self.request(|request| PuCommand::GetNextServer { request, pool })
            .await
    }

    /// The application saw `pe_id` fail (after sending it data): report it to the
    /// registrar and stop using it.
    pub fn report_unreachable(
        &self,
        pool: impl Into<PoolHandle>,
        pe_id: PeId,
    ) -> Result<(), DriverGone> {
        self.handle.command(PuCommand::ReportFailure {
            pool: pool.into(),
            pe_id,
        })
    }

    /// Handle resolution: the PEs of `pool` the registrar returned (fresh, or cached while
    /// still fresh), minus those that failed recently.
    pub async fn resolve(
        &self,
        pool: impl Into<PoolHandle>,
    ) -> Result<Vec<PoolElement>, PuFailure> {
        let pool = pool.into();
        self.get_primary_server(pool.clone()).await?;
        let pes = self
            .handle
            .query(move |c, now| c.cached(&pool, now).map(|(pes, _)| pes))
            .await?;
        Ok(pes.unwrap_or_default())
    }

    /// Handle resolution now, not from the cache: the PEs of `pool` the registrar lists
    /// (minus those that failed recently), e.g. to check that a PE is still registered.
    /// Like [`PoolUser::resolve`] it hands out a PE, which `get_next_server` would then
    /// report: an application that refreshes reports failures with
    /// [`PoolUser::report_unreachable`].
    pub async fn refresh(
        &self,
        pool: impl Into<PoolHandle>,
    ) -> Result<Vec<PoolElement>, PuFailure> {
        let pool = pool.into();
        let p = pool.clone();
        self.handle.query(move |c, _| c.mark_stale(&p)).await?;
        self.resolve(pool).await
    }

    /// The registrars a request would try now: the configured ones, then those heard
    /// announcing themselves recently.
    pub async fn known_registrars(&self) -> Result<Vec<Endpoint>, DriverGone> {
        self.handle.query(|c, now| c.known_registrars(now)).await
    }

    /// Events as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<PuEvent> {
        self.events.subscribe()
    }

    /// The driver handle, for direct access to the core.
    pub fn driver(&self) -> &DriverHandle<PoolUserCore> {
        &self.handle
    }
}
