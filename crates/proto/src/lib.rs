//! rserpool-proto: sans-IO protocol cores (no sockets, no clock, seeded RNG).
//!
//! * [`io`]: the seam to the shell: connections, endpoints, transmits, transport events.
//! * [`handlespace`]: pools, PEs, owners, timers and the 18 selection policies.
//! * [`registrar`]: [`Registrar`]: shared state and the `Core` impl in `registrar/mod.rs`,
//!   the ASAP procedures in `registrar/asap.rs`, the ENRP entry points in
//!   `registrar/enrp.rs` (ENRP itself to follow).
//! * [`pool_element`]: [`PoolElementCore`], registration of a PE at a home registrar.
//! * [`pool_user`]: [`PoolUserCore`], handle resolution, cache, selection and failover.
//! * [`counters`]: message counters every core exposes, keyed by (protocol, type).
//! * [`conn_limits`]: [`ConnTable`], the registrar's connection limits (idle timeout,
//!   per-source cap, eviction).
//! * [`hunt`]: server-hunt configuration shared by the PE and PU cores.
//! * [`session`]: the PU↔PE session layer: [`SessionUser`] (failover with cookie, business
//!   cards, heartbeat, acknowledged mode) and [`SessionServer`] (the PE's sessions).
//! * [`timers`]: [`Timers`], the timer table of a core (deadlines keyed by timer id).
//!
//! # Driving a core
//!
//! Construct it with `new(config, rng_seed)`, call `handle_timeout(now)` once (the
//! registrar and the PE core start on their first input; the PU core acts on commands),
//! then feed inputs and after each one drain `poll_transmit`, then `poll_event`, then read
//! `poll_timeout` (see [`io`]). A core opens connections by sending to
//! [`io::Dest::Endpoint`]; it expects `Connected` before the first message on the new
//! connection, and answers on [`io::Dest::Conn`]. Same seed and same inputs give the same
//! outputs (no hash-order or clock dependence), which the simulator relies on.

pub mod conn_limits;
pub mod counters;
pub mod handlespace;
pub mod hunt;
pub mod io;
pub mod pool_element;
pub mod pool_user;
pub mod registrar;
pub mod session;
pub mod timers;

mod common;

pub use conn_limits::{ConnLimits, ConnTable, LimitReport};
pub use counters::{ConnCounters, Counters, EnrpCounters};
pub use hunt::{HuntConfig, HuntOrder};
pub use pool_element::{PeCommand, PeEvent, PeStatus, PoolElementConfig, PoolElementCore};
pub use pool_user::{PoolUserConfig, PoolUserCore, PuCommand, PuError, PuEvent, RequestId};
pub use registrar::{
    EnrpConfig, EnrpEvent, EnrpPhase, HandlespaceSnapshot, PeerInfo, PeerState, PoolSnapshot,
    Registrar, RegistrarCommand, RegistrarConfig, RegistrarEvent, RemovalReason, TakeoverElection,
};
pub use session::{
    Outstanding, SendMode, ServerCommand, ServerEvent, SessionError, SessionServer,
    SessionServerConfig, SessionUser, SessionUserConfig, UserCommand, UserEvent,
};
pub use timers::Timers;
