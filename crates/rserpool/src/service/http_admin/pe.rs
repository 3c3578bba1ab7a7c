//! A pool element's HTTP endpoint (`rsp serve … --http`): its entries' registration
//! state, home registrar, sessions, and its ASAP message counters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rserpool_proto::pool_element::PeStatus;
use rserpool_proto::{Counters, PoolElementCore};

use super::{Component, Kind, Prom};
use crate::pe::PoolElement;

/// A PE behind the HTTP endpoint.
pub struct PeApi {
    pub pe: Arc<PoolElement>,
    pub pool: String,
    pub service: String,
    /// Sessions open now (the demo services' count).
    pub sessions: Arc<AtomicU32>,
    pub started: std::time::Instant,
}

struct Snap {
    status: Vec<(rserpool_wire::PeId, PeStatus)>,
    home: Option<String>,
    counters: Counters,
}

impl PeApi {
    async fn snap(&self) -> Option<Snap> {
        self.pe
            .driver()
            .query(|c: &mut PoolElementCore, _| Snap {
                status: c.status(),
                home: c.home().and_then(|(_, id)| id).map(|id| id.to_string()),
                counters: c.counters().clone(),
            })
            .await
            .ok()
    }
}

fn status_name(s: PeStatus) -> &'static str {
    match s {
        PeStatus::Unregistered => "unregistered",
        PeStatus::Registered => "registered",
        PeStatus::Rejected => "rejected",
        PeStatus::Deregistering => "deregistering",
        PeStatus::Deregistered => "deregistered",
    }
}

#[async_trait::async_trait]
impl Component for PeApi {
    fn kind(&self) -> &'static str {
        "pool-element"
    }

    async fn ready(&self) -> Result<(), String> {
        match self.snap().await {
            Some(s) if s.status.iter().all(|(_, st)| *st == PeStatus::Registered) => Ok(()),
            Some(_) => Err("not registered".into()),
            None => Err("stopped".into()),
        }
    }

    async fn status(&self) -> serde_json::Value {
        let Some(s) = self.snap().await else {
            return serde_json::json!({ "error": "stopped" });
        };
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "pool": self.pool,
            "service": self.service,
            "home_registrar": s.home,
            "sessions": self.sessions.load(Ordering::Relaxed),
            "messages": {
                "asap_received": s.counters.rx.iter().sum::<u64>(),
                "asap_sent": s.counters.tx.iter().sum::<u64>(),
            },
            "entries": s.status.iter().map(|(id, st)| serde_json::json!({
                "pe": id.to_string(), "state": status_name(*st),
            })).collect::<Vec<_>>(),
        })
    }

    async fn metrics(&self, m: &mut Prom) {
        let Some(s) = self.snap().await else { return };
        let c = &s.counters;
        let mut rx = Vec::new();
        let mut tx = Vec::new();
        for (name, r, t) in c.by_type() {
            let proto = if name.starts_with("ENRP") {
                "enrp"
            } else if name == "DATA" {
                "data"
            } else {
                "asap"
            };
            if r > 0 {
                rx.push((vec![("protocol", proto), ("type", name)], r as f64));
            }
            if t > 0 {
                tx.push((vec![("protocol", proto), ("type", name)], t as f64));
            }
        }
        m.family(
            "rserpool_messages_received_total",
            "Messages received, by protocol and type.",
            Kind::Counter,
            rx,
        );
        m.family(
            "rserpool_messages_sent_total",
            "Messages sent, by protocol and type.",
            Kind::Counter,
            tx,
        );
        m.family(
            "rserpool_errors_total",
            "Messages that failed or were refused, by cause.",
            Kind::Counter,
            [
                ("invalid", c.rx_invalid),
                ("error-sent", c.errors_sent),
                ("dropped", c.dropped),
            ]
            .map(|(k, v)| (vec![("cause", k)], v as f64)),
        );
        m.family(
            "rserpool_pe_entries",
            "This PE's entries, by registration state.",
            Kind::Gauge,
            [
                "unregistered",
                "registered",
                "rejected",
                "deregistering",
                "deregistered",
            ]
            .map(|st| {
                let n = s
                    .status
                    .iter()
                    .filter(|(_, x)| status_name(*x) == st)
                    .count();
                (vec![("state", st)], n as f64)
            }),
        );
        let tls = self.pe.control_tls_stats();
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        m.family(
            "rserpool_tls_handshakes_total",
            "TLS handshakes on the ASAP control endpoint, by outcome (failed: no or untrusted \
             client certificate; identity-refused: a trusted certificate of a registrar not \
             accepted).",
            Kind::Counter,
            tls.iter().flat_map(|t| {
                let s = &t.stats;
                [
                    ("accepted", ld(&s.accepted)),
                    ("failed", ld(&s.failed)),
                    ("identity-refused", ld(&s.identity_refused)),
                    ("timed-out", ld(&s.timed_out)),
                    ("refused", ld(&s.refused_busy)),
                ]
                .map(|(o, v)| {
                    (
                        vec![
                            ("listener", t.endpoint.as_str()),
                            ("protocol", t.protocol),
                            ("outcome", o),
                        ],
                        v,
                    )
                })
            }),
        );
        m.single(
            "rserpool_pe_sessions",
            "Sessions open now.",
            Kind::Gauge,
            f64::from(self.sessions.load(Ordering::Relaxed)),
        );
    }
}
