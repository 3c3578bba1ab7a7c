//! rserpool-proto: sans-IO protocol cores (no sockets, no clock, seeded RNG).
