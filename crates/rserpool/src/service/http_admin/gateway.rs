//! The gateway's HTTP endpoint: status and metrics from its [`Stats`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Component, Kind, Prom};
use crate::service::gateway::Stats;

/// A gateway behind the HTTP endpoint.
pub struct GatewayApi {
    pub stats: Arc<Stats>,
    /// `(listen address, pool)` per mapping.
    pub mappings: Vec<(String, String)>,
    pub started: std::time::Instant,
}

#[async_trait::async_trait]
impl Component for GatewayApi {
    fn kind(&self) -> &'static str {
        "gateway"
    }

    async fn status(&self) -> serde_json::Value {
        let s = &self.stats;
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "mappings": self.mappings.iter().map(|(l, p)| serde_json::json!({"listen": l, "pool": p})).collect::<Vec<_>>(),
            "connections_open": s.active.load(Ordering::Relaxed),
            "connections_accepted": s.accepted.load(Ordering::Relaxed),
            "requests": s.requests.load(Ordering::Relaxed),
            "bytes_to_pe": s.bytes_to_pe.load(Ordering::Relaxed),
            "bytes_from_pe": s.bytes_from_pe.load(Ordering::Relaxed),
            "failovers": s.retried.load(Ordering::Relaxed),
            "per_pe": s.per_pe_requests(),
        })
    }

    async fn metrics(&self, m: &mut Prom) {
        let s = &self.stats;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        m.single(
            "rserpool_gateway_connections",
            "Client connections open now.",
            Kind::Gauge,
            s.active.load(Ordering::Relaxed) as f64,
        );
        m.single(
            "rserpool_gateway_connections_accepted_total",
            "Client connections accepted.",
            Kind::Counter,
            ld(&s.accepted),
        );
        m.single(
            "rserpool_gateway_connections_refused_total",
            "Client connections refused over the connection limit.",
            Kind::Counter,
            ld(&s.refused_over_limit),
        );
        m.family(
            "rserpool_gateway_bytes_total",
            "Bytes relayed, by direction.",
            Kind::Counter,
            [
                ("to-pe", ld(&s.bytes_to_pe)),
                ("from-pe", ld(&s.bytes_from_pe)),
            ]
            .map(|(d, v)| (vec![("direction", d)], v)),
        );
        m.single(
            "rserpool_gateway_failovers_total",
            "Requests or connections retried on another PE after one failed.",
            Kind::Counter,
            ld(&s.retried),
        );
        m.family(
            "rserpool_gateway_errors_total",
            "Clients not served, by cause.",
            Kind::Counter,
            [
                ("no-pe", ld(&s.no_pe)),
                ("pe-unreachable", ld(&s.pe_unreachable)),
            ]
            .map(|(d, v)| (vec![("cause", d)], v)),
        );
        m.single(
            "rserpool_gateway_requests_total",
            "HTTP requests relayed (HTTP mode).",
            Kind::Counter,
            ld(&s.requests),
        );
        let per = s.per_pe_requests();
        m.family(
            "rserpool_gateway_pe_requests_total",
            "Requests (HTTP mode) or connections (TCP mode) sent to each PE.",
            Kind::Counter,
            per.iter()
                .map(|(pe, n)| (vec![("pe", pe.as_str())], *n as f64)),
        );
    }
}
