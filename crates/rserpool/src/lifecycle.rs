//! How each core of `rserpool-proto` starts and says goodbye under the driver.

use std::time::Instant;

use rserpool_proto::io::Core;
use rserpool_proto::{PeCommand, PeStatus, PoolElementCore, PoolUserCore, Registrar};

use crate::driver::Lifecycle;

impl Lifecycle for PoolElementCore {
    fn start(&mut self, now: Instant) {
        // The PE core is idle until its first input.
        self.handle_timeout(now);
    }
    fn begin_shutdown(&mut self, now: Instant) {
        self.command(now, PeCommand::Deregister);
    }
    fn shutdown_complete(&self) -> bool {
        !self
            .status()
            .iter()
            .any(|(_, s)| *s == PeStatus::Deregistering)
    }
}

/// A pool user has nothing to say goodbye for.
impl Lifecycle for PoolUserCore {}

impl Lifecycle for Registrar {
    fn start(&mut self, now: Instant) {
        // Starts the announce timer.
        self.handle_timeout(now);
    }
}
