//! The one place the shell reads the clock.
//!
//! Cores take `std::time::Instant`; the shell reads tokio's clock and converts, so a
//! runtime with paused time (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`)
//! drives the cores' timers too.

use std::time::Instant;

/// Now, as the cores see it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A core deadline as a tokio instant (for `sleep_until`).
pub fn to_tokio(deadline: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(deadline)
}
