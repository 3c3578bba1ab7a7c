//! rserpool-proto: sans-IO protocol cores (no sockets, no clock, seeded RNG).
//!
//! * [`io`]: the seam to the shell: connections, endpoints, transmits, transport events.
//! * [`handlespace`]: pools, PEs, owners, timers and the 18 selection policies.

pub mod handlespace;
pub mod io;
