//! rserpool-sim: a deterministic world of registrars, PEs and PUs.
//!
//! The sans-IO cores of `rserpool-proto` are driven only through [`rserpool_proto::io::Core`]
//! on a virtual clock, over a simulated network numbered by [`ConnId`]s. No tokio, no
//! sockets, no clock reads: the caller hands in a base `Instant`, every other instant is
//! derived from it, and every random choice comes from the world's seeded ChaCha RNG.
//!
//! * [`World`]: nodes (registrars, PEs, PUs, scripted raw peers), the network, the clock,
//!   faults (crash / restart, hang, partitions, per-link latency, loss, duplication,
//!   reordering) and the invariants checked after every event.
//! * [`session_echo`]: [`SessionEcho`], a session PE with an echo application (the
//!   session layer's scenarios, `tests/session.rs`).
//! * [`LinkConfig`]: what one direction of a link does to messages.
//! * [`Trace`]: a digest of everything that happened, for determinism checks.
//! * [`seeds`]: run a scenario over many seeds, each twice with identical traces; the seed
//!   of a failing run is printed, `RSERPOOL_SIM_SEED=<n>` reruns only that one.
//!
//! Ideas from deterministic-simulation testing (a world stepped by one loop, faults as
//! data, seeds as the reproducer); nothing here is borrowed code.

pub mod enrp_world;
mod link;
pub mod seeds;
pub mod session_echo;
mod trace;
mod world;

pub use link::LinkConfig;
pub use rserpool_proto::io::ConnId;
pub use session_echo::{EchoConfig, SessionEcho};
pub use trace::Trace;
pub use world::{Ev, NetStats, NodeId, NodeKind, World};
