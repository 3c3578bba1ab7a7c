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
//!
//! What an operator must hear of even without debug logging — a registration refused
//! (with the reason in words), a PE identifier claimed over another live connection, a
//! PE probed because it was reported unreachable — is logged at info, at most
//! [`NOTICES_PER_SECOND`] lines a second; the lines suppressed beyond that are counted in
//! the next summary. The connection limits' own report is rate-limited by the core.
//!
//! ENRP events (peers up and down, mentor and synchronisation, takeovers, audits,
//! re-synchronisations) are info lines `ENRP: …` (a dead peer and an abandoned takeover
//! warnings); refused peer updates and ENRP errors received are notices under the same
//! budget and are counted in the summaries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::driver::DriverHandle;
use rserpool_proto::registrar::{RemovalReason, ReportOutcome};
use rserpool_proto::{EnrpEvent, LimitReport, Registrar, RegistrarEvent};
use rserpool_wire::CauseCode;
use tokio::sync::watch;

/// Most notice lines (refusals, held registrations, probes) logged per second.
pub const NOTICES_PER_SECOND: u32 = 20;

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
        RemovalReason::PeerUpdate => "peer-update",
        RemovalReason::Resync => "resync",
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
    /// Handle updates from peers refused (answered with ENRP_ERROR).
    pub enrp_refused: u64,
    /// ENRP_ERROR messages received from peers.
    pub enrp_errors_received: u64,
    /// Notice lines not logged (over [`NOTICES_PER_SECOND`]).
    pub suppressed: u64,
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
        if self.enrp_refused > 0 {
            parts.push(format!("{} peer handle updates refused", self.enrp_refused));
        }
        if self.enrp_errors_received > 0 {
            parts.push(format!("{} ENRP_ERROR received", self.enrp_errors_received));
        }
        if self.suppressed > 0 {
            parts.push(format!(
                "{} notice lines suppressed (over {NOTICES_PER_SECOND}/s)",
                self.suppressed
            ));
        }
        parts.join(", ")
    }
}

/// Counts the registrar's events (on the driver task) for the summaries.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

/// What [`Stats`] guards with its one lock.
#[derive(Debug, Default)]
struct Inner {
    tally: Tally,
    budget: Budget,
}

/// The notice budget of the current second.
#[derive(Debug, Default)]
struct Budget {
    second: Option<Instant>,
    used: u32,
}

impl Tally {
    /// Whether one more notice line may be logged now (else it is counted as suppressed).
    fn notice(&mut self, budget: &mut Budget) -> bool {
        let now = Instant::now();
        if budget
            .second
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            budget.second = Some(now);
            budget.used = 0;
        }
        if budget.used < NOTICES_PER_SECOND {
            budget.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

impl Stats {
    /// Log one event at debug level and count it.
    pub fn record(&self, ev: RegistrarEvent) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Inner { tally: t, budget } = &mut *inner;
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
                reason,
            } => {
                *t.rejected.entry(cause).or_default() += 1;
                if t.notice(budget) {
                    tracing::info!(target: "rsp::registrar", %conn, pool = %handle, pe = %pe_id,
                        %cause, "registration rejected: {reason}");
                }
            }
            RegistrarEvent::RegistrationHeld {
                conn,
                handle,
                pe_id,
                holder,
            } => {
                if t.notice(budget) {
                    tracing::info!(target: "rsp::registrar", %conn, pool = %handle, pe = %pe_id,
                        holder = %holder,
                        "PE identifier registered over another live connection: probing its holder before answering");
                }
            }
            RegistrarEvent::UnreachableReport {
                conn,
                handle,
                pe_id,
                outcome,
            } => {
                if matches!(outcome, ReportOutcome::Probing) && t.notice(budget) {
                    tracing::info!(target: "rsp::registrar", %conn, pool = %handle, pe = %pe_id,
                        "PE reported unreachable: {outcome}");
                } else {
                    tracing::debug!(target: "rsp::registrar", %conn, pool = %handle, pe = %pe_id,
                        "PE reported unreachable: {outcome}");
                }
            }
            RegistrarEvent::ConnectionLimits(r) => log_limits(&r),
            RegistrarEvent::ErrorReceived { conn, error } => {
                t.errors_received += 1;
                tracing::debug!(target: "rsp::registrar", %conn, %error, "ASAP_ERROR received");
            }
            RegistrarEvent::Snapshot(_) => {}
            RegistrarEvent::Enrp(e) => log_enrp(&e, t, budget),
        }
    }
}

/// One ENRP event: the peer pool's life (peers up and down, mentor, synchronisation,
/// takeovers, audits) at info, a dead peer or an abandoned takeover at warn; refused
/// updates and ENRP errors received (which a misbehaving peer can send at any rate) as
/// rate-limited notices, counted in the summaries.
fn log_enrp(e: &EnrpEvent, t: &mut Tally, budget: &mut Budget) {
    const T: &str = "rsp::registrar";
    match e {
        EnrpEvent::PeerDown { .. } | EnrpEvent::TakeoverAbandoned { .. } => {
            tracing::warn!(target: T, "ENRP: {e}");
        }
        EnrpEvent::UpdateRefused { .. } => {
            t.enrp_refused += 1;
            if t.notice(budget) {
                tracing::info!(target: T, "ENRP: {e}");
            }
        }
        EnrpEvent::ErrorReceived { .. } => {
            t.enrp_errors_received += 1;
            if t.notice(budget) {
                tracing::info!(target: T, "ENRP: {e}");
            }
        }
        EnrpEvent::PeLearned { .. } => tracing::debug!(target: T, "ENRP: {e}"),
        EnrpEvent::AuditMismatch { .. } => {
            if t.notice(budget) {
                tracing::info!(target: T, "ENRP: {e}");
            }
        }
        _ => tracing::info!(target: T, "ENRP: {e}"),
    }
}

impl Stats {
    /// The counts since the last call.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()).tally)
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
        let window = super::human_duration(Duration::from_secs(
            since.elapsed().as_secs_f64().round() as u64,
        ));
        since = Instant::now();
        tracing::info!(target: "rsp::registrar", pools, pes,
            "handlespace: {pools} pools, {pes} PEs; last {window}: {}", tally.describe());
    }
}

/// One line per report (the core sends at most one per second).
pub fn log_limits(r: &LimitReport) {
    let line = limits_line(r);
    if r.evicted > 0 || r.source_evicted > 0 || r.refused > 0 {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The words of a connection-limits report.
pub fn limits_line(r: &LimitReport) -> String {
    let mut parts = Vec::new();
    if r.idle_closed > 0 {
        parts.push(format!(
            "closed {} without PEs (idle_timeout)",
            plural(r.idle_closed, "idle connection", "idle connections")
        ));
    }
    if r.evicted > 0 {
        parts.push(format!(
            "closed {} without PEs to make room for new ones (max_connections)",
            plural(r.evicted, "connection", "connections")
        ));
    }
    if r.source_evicted > 0 {
        let from = r
            .capped_source
            .map(|s| format!(" from {s}"))
            .unwrap_or_default();
        parts.push(format!(
            "closed {}{from} to make room for newer ones from the same source (max_connections_per_source)",
            plural(r.source_evicted, "connection", "connections")
        ));
    }
    if r.refused > 0 {
        parts.push(format!(
            "refused {}: every connection that could make room has PEs registered",
            plural(r.refused, "new connection", "new connections")
        ));
    }
    format!(
        "connection limits: {}; {} open",
        parts.join("; "),
        plural(r.open as u64, "connection", "connections")
    )
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
             5 rejected (5 lack of resources (0x6))"
        );
        assert!(!s.contains('{') && !s.contains("CauseCode"));
        assert!(Tally::default().is_empty());
    }

    #[test]
    fn limits_report_in_words() {
        let r = LimitReport {
            idle_closed: 1,
            evicted: 0,
            source_evicted: 12,
            refused: 2,
            capped_source: Some(rserpool_proto::conn_limits::Source::of(
                "2001:db8::7".parse().unwrap(),
            )),
            open: 4096,
        };
        assert_eq!(
            limits_line(&r),
            "connection limits: closed 1 idle connection without PEs (idle_timeout); \
             closed 12 connections from 2001:db8::/64 to make room for newer ones from the \
             same source (max_connections_per_source); refused 2 new connections: every \
             connection that could make room has PEs registered; 4096 connections open"
        );
    }
}
