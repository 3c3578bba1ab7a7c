//! rserpool-proto: sans-IO protocol cores (no sockets, no clock, seeded RNG).
//!
//! * [`io`]: the seam to the shell: connections, endpoints, transmits, transport events.
//! * [`handlespace`]: pools, PEs, owners, timers and the 18 selection policies.
//! * [`registrar`]: [`Registrar`], the ASAP side of a registrar (ENRP to follow).
//! * [`pool_element`]: [`PoolElementCore`], registration of a PE at a home registrar.
//! * [`pool_user`]: [`PoolUserCore`], handle resolution, cache, selection and failover.
//! * [`counters`]: message counters every core exposes.
//! * [`hunt`]: server-hunt configuration shared by the PE and PU cores.

pub mod counters;
pub mod handlespace;
pub mod hunt;
pub mod io;
pub mod pool_element;
pub mod pool_user;
pub mod registrar;

mod common;

pub use counters::Counters;
pub use hunt::{HuntConfig, HuntOrder};
pub use pool_element::{PeCommand, PeEvent, PeStatus, PoolElementConfig, PoolElementCore};
pub use pool_user::{PoolUserConfig, PoolUserCore, PuCommand, PuError, PuEvent, RequestId};
pub use registrar::{Registrar, RegistrarCommand, RegistrarConfig, RegistrarEvent, RemovalReason};
