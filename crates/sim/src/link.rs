//! Per-link network behaviour.

use std::time::Duration;

/// What one direction of a link does to the messages it carries. The default is a perfect
/// link: no delay, nothing lost, duplicated or reordered (what the scenario tests use).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per message.
    pub jitter: Duration,
    /// Probability that a message (or datagram) is lost. Transport events are never lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Let jitter reorder messages of one connection (a stream keeps order when false).
    pub reorder: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: false,
        }
    }
}

impl LinkConfig {
    /// A link with a fixed delay and nothing else.
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }
}
