//! rserpool: the tokio shell over the sans-IO cores of `rserpool-proto`.
//!
//! * [`pe`]: the pool element API (register a service, update its load, deregister).
//! * [`pu`]: the pool user API (get_primary_server, get_next_server, resolve, report).
//! * [`link`]: the registrar link (registrars, announces, connect timeout) of PEs and PUs.
//! * [`driver`]: one task per core — commands, inbound messages and the core's single
//!   timer in one `select!`, outputs drained after every input; graceful shutdown.
//! * [`transport`]: TCP / MPTCP (messages back-to-back), UDP multicast, the connection
//!   limit; one set of traits so SCTP slots in beside them.
//! * [`sctp`]: kernel SCTP one-to-one sockets (PPID per message, multi-homing, notifications).
//! * [`url`]: endpoint URLs (`tcp://[::1]:3863`, `sctp://10.0.0.1,10.0.0.2:3863`).
//! * [`wirelog`]: `RSERPOOL_WIRE_LOG=FILE` records every message for dissection.
//! * [`clock`]: the one place the shell reads time (tokio's clock, so paused time works).
//! * [`service`]: ready-made services — the registrar (listeners, admin dump, event log).
//! * [`signal`]: SIGINT / SIGTERM as the shutdown future.

/// Listen backlog of every listening socket (TCP, SCTP, the demo services); the kernel caps
/// it at `net.core.somaxconn`.
pub(crate) const LISTEN_BACKLOG: i32 = 4096;

pub mod clock;
pub mod driver;
pub mod histogram;
mod lifecycle;
pub mod link;
pub mod pe;
pub mod pu;
#[cfg(target_os = "linux")]
pub mod sctp;
#[cfg(target_os = "linux")]
pub mod service;
pub mod signal;
pub mod transport;
pub mod url;
pub mod wirelog;

pub use driver::{Driver, DriverConfig, DriverGone, DriverHandle, Lifecycle};

/// A fresh RNG seed for a core (process-random hasher keys mixed with the clock).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}
