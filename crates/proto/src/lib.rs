//! rserpool-proto: sans-IO protocol cores (no sockets, no clock, seeded RNG).
//!
//! * [`io`]: the seam to the shell: connections, endpoints, transmits, transport events.

pub mod io;
