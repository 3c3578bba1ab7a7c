//! The registrar's event log: one line per PE event at debug level (target
//! `rsp::registrar`), and at info level a summary of what changed, at most every
//! `log_summary_interval` and only when something did:
//!
//! ```text
//! handlespace: 3 pools, 1200 PEs; last 10s: +1000 registered, 150 re-registered,
//! -2 removed (1 keepalive-timeout, 1 deregistered), 5 rejected (5 Lack of Resources (0x0006))
//! ```
//!
//! A registration flood thus costs a handful of log lines, not one per PE.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rserpool::driver::DriverHandle;
use rserpool_proto::registrar::RemovalReason;
use rserpool_proto::{Registrar, RegistrarEvent};
use rserpool_wire::CauseCode;
use tokio::sync::watch;

/// Default of `log_summary_interval`.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// A removal reason as one word, for logs (`reason=keepalive-timeout`).
pub fn reason_name(r: RemovalReason) -> &'static str {
    match r {
        RemovalReason::Deregistered => "deregistered",
        RemovalReason::LifetimeExpired => "lifetime-expired",
        RemovalReason::KeepAliveTimeout => "keepalive-timeout",
        RemovalReason::KeepAliveFailed => "keepalive-failed",
        RemovalReason::Unreachable => "unreachable",
        RemovalReason::ConnectionClosed => "connection-closed",
        RemovalReason::Admin => "admin",
    }
}

/// Counts since the last summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub registered: u64,
    pub reregistered: u64,
    pub removed: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<CauseCode, u64>,
    pub errors_received: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }

    /// "+3 registered, -1 removed (1 deregistered)" (only what happened).
    pub fn describe(&self) -> String {
        fn detail<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
            let parts: Vec<String> = m.iter().map(|(k, n)| format!("{n} {k}")).collect();
            parts.join(", ")
        }
        let mut parts = Vec::new();
        if self.registered > 0 {
            parts.push(format!("+{} registered", self.registered));
        }
        if self.reregistered > 0 {
            parts.push(format!("{} re-registered", self.reregistered));
        }
        let removed: u64 = self.removed.values().sum();
        if removed > 0 {
            parts.push(format!("-{removed} removed ({})", detail(&self.removed)));
        }
        let rejected: u64 = self.rejected.values().sum();
        if rejected > 0 {
            parts.push(format!("{rejected} rejected ({})", detail(&self.rejected)));
        }
        if self.errors_received > 0 {
            parts.push(format!("{} ASAP_ERROR received", self.errors_received));
        }
        parts.join(", ")
    }
}

/// Counts the registrar's events (on the driver task) for the summaries.
#[derive(Debug, Default)]
pub struct Stats {
    tally: Mutex<Tally>,
}

impl Stats {
    /// Log one event at debug level and count it.
    pub fn record(&self, ev: RegistrarEvent) {
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        match ev {
            RegistrarEvent::PeAdded { handle, pe } => {
                t.registered += 1;
                tracing::debug!(target: "rsp::registrar", pool = %handle, pe = %pe.id,
                    policy = %pe.policy.policy_type(), "PE registered");
            }
            RegistrarEvent::PeUpdated {
                handle,
                pe,
                owner_changed,
            } => {
                t.reregistered += 1;
                tracing::debug!(target: "rsp::registrar", pool = %handle, pe = %pe.id,
                    owner_changed, "PE re-registered");
            }
            RegistrarEvent::PeRemoved { handle, pe, reason } => {
                let reason = reason_name(reason);
                *t.removed.entry(reason).or_default() += 1;
                tracing::debug!(target: "rsp::registrar", pool = %handle, pe = %pe.id, reason = %reason,
                    "PE removed");
            }
            RegistrarEvent::RegistrationRejected {
                conn,
                handle,
                pe_id,
                cause,
            } => {
                *t.rejected.entry(cause).or_default() += 1;
                tracing::debug!(target: "rsp::registrar", %conn, pool = %handle, pe = %pe_id,
                    %cause, "registration rejected");
            }
            RegistrarEvent::ErrorReceived { conn, error } => {
                t.errors_received += 1;
                tracing::debug!(target: "rsp::registrar", %conn, %error, "ASAP_ERROR received");
            }
            RegistrarEvent::Snapshot(_) => {}
        }
    }

    /// The counts since the last call.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Log a summary every `interval` (when set and something changed) until the driver stops.
pub async fn summaries(
    stats: Arc<Stats>,
    handle: DriverHandle<Registrar>,
    mut interval: watch::Receiver<Option<Duration>>,
) {
    let mut since = Instant::now();
    loop {
        let every = *interval.borrow_and_update();
        match every {
            None => {
                if interval.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Some(p) => {
                tokio::select! {
                    () = tokio::time::sleep(p) => {}
                    changed = interval.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                    () = handle.stopped() => return,
                }
            }
        }
        let tally = stats.take();
        if tally.is_empty() {
            since = Instant::now();
            continue;
        }
        let Ok((pools, pes)) = handle
            .query(|c: &mut Registrar, _| (c.handlespace().pool_count(), c.handlespace().len()))
            .await
        else {
            return;
        };
        let window = crate::registrar::human_duration(Duration::from_secs(
            since.elapsed().as_secs_f64().round() as u64,
        ));
        since = Instant::now();
        tracing::info!(target: "rsp::registrar", pools, pes,
            "handlespace: {pools} pools, {pes} PEs; last {window}: {}", tally.describe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_reads_as_words() {
        let mut t = Tally {
            registered: 1000,
            reregistered: 2,
            ..Tally::default()
        };
        t.removed.insert("keepalive-timeout", 2);
        t.removed.insert("deregistered", 1);
        t.rejected.insert(CauseCode::LACK_OF_RESOURCES, 5);
        let s = t.describe();
        assert_eq!(
            s,
            "+1000 registered, 2 re-registered, -3 removed (1 deregistered, 2 keepalive-timeout), \
             5 rejected (5 Lack of Resources (0x0006))"
        );
        assert!(!s.contains('{') && !s.contains("CauseCode"));
        assert!(Tally::default().is_empty());
    }
}
