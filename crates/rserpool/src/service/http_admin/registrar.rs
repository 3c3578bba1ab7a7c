//! The registrar's HTTP routes: the handlespace (streamed in pages as `rsp dump` reads it),
//! pools, one pool, peers, status, metrics, readiness (ENRP phase `serving`) and the
//! event stream.
//!
//! Everything comes from the core through its [`DriverHandle`] (closures run between two
//! messages) — the same path the dump takes. Status and metrics share copies of the
//! counters: a request uses the newest copy taken after it arrived, so concurrent requests
//! share one query of the core (a flood of scrapes costs the core one query at a time,
//! not one per request) and nobody reads numbers older than its request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rserpool_proto::registrar::EnrpPhase;
use rserpool_proto::{Counters, Registrar};
use rserpool_wire::{LifetimeUnit, PoolHandle, ServerId};
use tokio::sync::{broadcast, mpsc, Semaphore};

use super::events::{reason_name, Hub, REMOVAL_REASONS};
use super::{error, json, Component, Kind, Prom, MAX_EVENT_STREAMS};
use crate::driver::DriverHandle;
use crate::service::admin::{self, EnrpDoc, PageSink, PoolDoc, DUMP_PAGE_PES};

/// Dumps served at once (HTTP and line-JSON together); a newcomer waits up to
/// [`DUMP_WAIT`] for its turn, then gets 503.
pub const DUMP_SESSIONS: usize = 4;
const DUMP_WAIT: Duration = Duration::from_secs(5);
/// A dump reader that takes nothing for this long loses its dump.
const DUMP_STALL: Duration = Duration::from_secs(30);

/// The registrar behind the HTTP endpoint.
pub struct RegistrarApi {
    handle: DriverHandle<Registrar>,
    unit: LifetimeUnit,
    hub: Arc<Hub>,
    started: Instant,
    cache: tokio::sync::Mutex<Option<Arc<Stats>>>,
    streams: Arc<Semaphore>,
    dumps: Arc<Semaphore>,
}

/// What status and metrics show, copied out of the core at once.
#[derive(Debug)]
struct Stats {
    /// When the query was sent.
    taken: Instant,
    server_id: ServerId,
    counters: Counters,
    pools: usize,
    pes: usize,
    owned: usize,
    open: usize,
    phase: EnrpPhase,
    enrp: EnrpDoc,
}

impl RegistrarApi {
    pub fn new(handle: DriverHandle<Registrar>, unit: LifetimeUnit, hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            handle,
            unit,
            hub,
            started: Instant::now(),
            cache: tokio::sync::Mutex::new(None),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            dumps: Arc::new(Semaphore::new(DUMP_SESSIONS)),
        })
    }

    async fn stats(&self) -> Result<Arc<Stats>, crate::DriverGone> {
        let asked = Instant::now();
        let mut cache = self.cache.lock().await;
        if let Some(s) = cache.as_ref().filter(|s| s.taken >= asked) {
            return Ok(s.clone());
        }
        let taken = Instant::now();
        let s = self
            .handle
            .query(move |c: &mut Registrar, now| {
                let id = c.server_id();
                Stats {
                    taken,
                    server_id: id,
                    counters: c.counters().clone(),
                    pools: c.handlespace().pool_count(),
                    pes: c.handlespace().len(),
                    owned: c.handlespace().owned_count(id),
                    open: c.connections().len(),
                    phase: c.enrp_phase(),
                    enrp: EnrpDoc::of(c, now),
                }
            })
            .await?;
        let s = Arc::new(s);
        *cache = Some(s.clone());
        Ok(s)
    }

    /// The routes: the common ones plus `/v1/handlespace`, `/v1/pools`,
    /// `/v1/pools/{handle}`, `/v1/peers`, `/v1/events`.
    pub fn router(self: &Arc<Self>) -> Router {
        let (a, b, c, d, e) = (
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
            self.clone(),
        );
        super::router(self.clone())
            .route(
                "/v1/handlespace",
                get(move |uri: Uri| async move { a.handlespace(&uri).await }),
            )
            .route("/v1/pools", get(move || async move { b.pools().await }))
            .route(
                "/v1/pools/{handle}",
                get(move |uri: Uri| async move { c.pool(&uri).await }),
            )
            .route("/v1/peers", get(move || async move { d.peers().await }))
            .route("/v1/events", get(move || async move { e.events() }))
    }

    /// The older line-JSON dump protocol on the same port.
    pub fn legacy(self: &Arc<Self>) -> super::Legacy {
        let me = self.clone();
        Arc::new(move |stream| {
            let me = me.clone();
            Box::pin(async move {
                if let Err(e) =
                    admin::admin_session(stream, &me.handle, me.unit, &me.dumps, &me.hub).await
                {
                    tracing::debug!("admin session: {e:#}");
                }
            })
        })
    }

    async fn handlespace(&self, uri: &Uri) -> Response {
        let pools: Vec<String> = query_values(uri, "pool");
        if pools.len() > 1000 {
            return error(StatusCode::BAD_REQUEST, "at most 1000 pools per request");
        }
        let permit = match tokio::time::timeout(DUMP_WAIT, self.dumps.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => p,
            _ => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy: too many dumps at once; try again",
                )
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let handle = self.handle.clone();
        let unit = self.unit;
        let tls = self.hub.tls_docs();
        let lengths = self.hub.length_doc();
        tokio::spawn(async move {
            let _permit = permit;
            let mut sink = ChanSink(tx);
            if let Err(e) =
                admin::dump_pages(&handle, unit, &pools, (&tls, &lengths), &mut sink).await
            {
                tracing::debug!("HTTP dump: {e:#}");
            }
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        let mut r = Response::new(Body::from_stream(body));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        r
    }

    async fn pools(&self) -> Response {
        let r = self
            .handle
            .query(|c: &mut Registrar, _| {
                let hs = c.handlespace();
                hs.pools()
                    .map(|h| {
                        let mut pes = 0usize;
                        let mut policy = None;
                        for e in hs.pool_entries(h) {
                            pes += 1;
                            policy.get_or_insert_with(|| e.pe.policy.policy_type().to_string());
                        }
                        serde_json::json!({
                            "handle": h.to_string(),
                            "handle_hex": hex::encode(h.as_bytes()),
                            "policy": policy,
                            "pe_count": pes,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        match r {
            Ok(pools) => json(
                StatusCode::OK,
                &serde_json::json!({ "pool_count": pools.len(), "pools": pools }),
            ),
            Err(_) => gone(),
        }
    }

    async fn pool(&self, uri: &Uri) -> Response {
        let raw = uri.path().strip_prefix("/v1/pools/").unwrap_or_default();
        let Some(bytes) = percent_decode(raw) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad percent-encoding in the pool handle",
            );
        };
        // The handle's bytes as sent; `0x…` (as listings show handles that are not text)
        // also names the handle with those bytes.
        let mut candidates = vec![PoolHandle::new(bytes.clone())];
        if let Ok(text) = std::str::from_utf8(&bytes) {
            candidates = admin::pool_candidates(text);
        }
        let unit = self.unit;
        for h in candidates {
            let mut after = None;
            let mut doc: Option<PoolDoc> = None;
            loop {
                let pool = h.clone();
                let page = self
                    .handle
                    .query(move |c: &mut Registrar, now| {
                        let (p, next) = c.pool_snapshot_page(&pool, after, DUMP_PAGE_PES);
                        let docs = p.map(|p| PoolDoc::of(&p, now, unit));
                        (docs, next)
                    })
                    .await;
                let Ok((page, next)) = page else {
                    return gone();
                };
                if let Some(p) = page {
                    match &mut doc {
                        Some(d) => d.pes.extend(p.pes),
                        None => doc = Some(p),
                    }
                }
                match next {
                    Some(n) => after = Some(n.after),
                    None => break,
                }
            }
            if let Some(d) = doc {
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                v["handle_hex"] = hex::encode(h.as_bytes()).into();
                v["pe_count"] = d.pes.len().into();
                return json(StatusCode::OK, &v);
            }
        }
        error(
            StatusCode::NOT_FOUND,
            format!("no pool {}", PoolHandle::new(bytes)),
        )
    }

    async fn peers(&self) -> Response {
        match self.stats().await {
            Ok(s) => json(
                StatusCode::OK,
                &serde_json::to_value(&s.enrp).unwrap_or_default(),
            ),
            Err(_) => gone(),
        }
    }

    fn events(&self) -> Response {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("at most {MAX_EVENT_STREAMS} event streams at once"),
            );
        };
        let rx = self.hub.subscribe();
        let hello = Event::default().event("hello").data("{}");
        let stream = futures_util::stream::unfold(
            (rx, Some(hello), permit),
            |(mut rx, first, permit)| async move {
                if let Some(h) = first {
                    return Some((Ok::<_, Infallible>(h), (rx, None, permit)));
                }
                let ev = match rx.recv().await {
                    Ok(j) => {
                        let kind = serde_json::from_str::<serde_json::Value>(&j)
                            .ok()
                            .and_then(|v| v["type"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| "change".into());
                        Event::default().event(kind).data(&*j)
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                        .event("resync")
                        .data(format!("{{\"missed\":{n}}}")),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((Ok(ev), (rx, None, permit)))
            },
        );
        Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    }
}

fn gone() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the registrar is shutting down",
    )
}

struct ChanSink(mpsc::Sender<Bytes>);

impl PageSink for ChanSink {
    async fn put(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(DUMP_STALL, self.0.send(Bytes::from(bytes)))
            .await
            .map_err(|_| anyhow::anyhow!("the HTTP client stopped reading"))?
            .map_err(|_| anyhow::anyhow!("the HTTP client went away"))
    }
}

/// `%XX` sequences turned into their bytes (`None` for a broken one).
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Every value of `key` in the query string (percent-decoded, `+` as space; bytes that
/// are not UTF-8 as `0x…` hex, as pool names are spelled).
fn query_values(uri: &Uri, key: &str) -> Vec<String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| *k == key)
        .filter_map(|(_, v)| percent_decode(&v.replace('+', " ")))
        .map(|b| match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => format!("0x{}", hex::encode(e.as_bytes())),
        })
        .collect()
}

#[async_trait::async_trait]
impl Component for RegistrarApi {
    fn kind(&self) -> &'static str {
        "registrar"
    }

    async fn ready(&self) -> Result<(), String> {
        match self.stats().await {
            Ok(s) if s.phase == EnrpPhase::Serving => Ok(()),
            Ok(s) => Err(format!("ENRP {}", s.phase.name())),
            Err(_) => Err("shutting down".into()),
        }
    }

    async fn status(&self) -> serde_json::Value {
        let Ok(s) = self.stats().await else {
            return serde_json::json!({ "error": "the registrar is shutting down" });
        };
        let c = &s.counters;
        let sum = |a: &[u64]| a.iter().sum::<u64>();
        serde_json::json!({
            "server_id": s.server_id.to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "enrp_phase": s.phase.name(),
            "ready": s.phase == EnrpPhase::Serving,
            "pool_count": s.pools,
            "pe_count": s.pes,
            "pes_owned": s.owned,
            "peer_count": s.enrp.peers.len(),
            "connections": s.open,
            "messages": {
                "asap_received": sum(&c.rx),
                "asap_sent": sum(&c.tx),
                "enrp_received": sum(&c.enrp_rx),
                "enrp_sent": sum(&c.enrp_tx),
                "resolutions": c.received(rserpool_wire::asap_type::HANDLE_RESOLUTION),
                "registrations": c.received(rserpool_wire::asap_type::REGISTRATION),
            },
        })
    }

    async fn metrics(&self, m: &mut Prom) {
        let Ok(s) = self.stats().await else { return };
        let c = &s.counters;
        let hub = &self.hub;
        let ld =
            |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
        let mut rx = Vec::new();
        let mut tx = Vec::new();
        let tables: [(&str, &[u64], &[u64], fn(u8) -> Option<&'static str>); 2] = [
            ("asap", &c.rx, &c.tx, rserpool_wire::asap_type_name),
            (
                "enrp",
                &c.enrp_rx,
                &c.enrp_tx,
                rserpool_wire::enrp_type_name,
            ),
        ];
        for (proto, r, t, name) in tables {
            for i in 0..r.len() {
                let n = u8::try_from(i).ok().and_then(name).unwrap_or("unknown");
                if r[i] > 0 {
                    rx.push((vec![("protocol", proto), ("type", n)], r[i] as f64));
                }
                if t[i] > 0 {
                    tx.push((vec![("protocol", proto), ("type", n)], t[i] as f64));
                }
            }
        }
        if c.data_rx > 0 {
            rx.push((
                vec![("protocol", "data"), ("type", "DATA")],
                c.data_rx as f64,
            ));
        }
        if c.data_tx > 0 {
            tx.push((
                vec![("protocol", "data"), ("type", "DATA")],
                c.data_tx as f64,
            ));
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
                ("wrong-protocol", c.wrong_protocol),
                ("unencodable", c.unencodable),
                ("enrp-error-sent", c.enrp.errors_sent),
                ("enrp-error-received", c.enrp.errors_received),
            ]
            .map(|(k, v)| (vec![("cause", k)], v as f64)),
        );
        m.family(
            "rserpool_registrar_fast_resolutions_total",
            "Handle resolutions the connection readers answered from a copy of a small pool, \
             outside the core's lock (also in rserpool_messages_received_total / sent_total).",
            Kind::Counter,
            [(Vec::new(), c.fast_resolutions as f64)],
        );
        let refusals: Vec<(String, u64)> = hub
            .refusals
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        m.family(
            "rserpool_registrar_registrations_refused_total",
            "Registrations refused, by the cause sent back.",
            Kind::Counter,
            refusals
                .iter()
                .map(|(k, v)| (vec![("cause", k.as_str())], *v as f64)),
        );
        let guards: Vec<(&str, u64)> = c.guards.all().collect();
        m.family(
            "rserpool_registrar_protection_actions_total",
            "How often each protection of the registrar acted (every limit, 0 until it acts).",
            Kind::Counter,
            guards.iter().map(|(k, v)| (vec![("what", *k)], *v as f64)),
        );
        let tls = hub.tls_docs();
        m.family(
            "rserpool_tls_handshakes_total",
            "TLS handshakes per listener, by outcome (refused: 256 already under way).",
            Kind::Counter,
            tls.iter().flat_map(|t| {
                [
                    ("accepted", t.accepted),
                    ("failed", t.failed),
                    ("timed-out", t.timed_out),
                    ("refused", t.refused_busy),
                ]
                .map(|(o, v)| {
                    (
                        vec![
                            ("listener", t.listener.as_str()),
                            ("protocol", t.protocol.as_str()),
                            ("outcome", o),
                        ],
                        v as f64,
                    )
                })
            }),
        );
        let l = hub.length_doc();
        m.family(
            "rserpool_message_length_refusals_total",
            "Messages refused for their length (over max_message_len, or a Message Length \
             below 4): a TCP or TLS connection is closed at once, an SCTP message dropped.",
            Kind::Counter,
            [
                ("tcp", "too-long", l.tcp_too_long),
                ("tcp", "too-short", l.tcp_too_short),
                ("tls", "too-long", l.tls_too_long),
                ("tls", "too-short", l.tls_too_short),
                ("sctp", "too-long", l.sctp_too_long),
            ]
            .map(|(t, w, v)| (vec![("transport", t), ("length", w)], v as f64)),
        );
        m.single(
            "rserpool_registrar_registrations_total",
            "PEs registered here (this registrar their home).",
            Kind::Counter,
            ld(&hub.registrations),
        );
        m.single(
            "rserpool_registrar_reregistrations_total",
            "Re-registrations (updates of a known PE).",
            Kind::Counter,
            ld(&hub.reregistrations),
        );
        let dereg = REMOVAL_REASONS
            .iter()
            .position(|r| reason_name(*r) == "deregistered")
            .map_or(0.0, |i| ld(&hub.removals[i]));
        m.single(
            "rserpool_registrar_deregistrations_total",
            "PEs deregistered.",
            Kind::Counter,
            dereg,
        );
        m.family(
            "rserpool_registrar_pe_removals_total",
            "PEs removed from the handlespace, by reason.",
            Kind::Counter,
            REMOVAL_REASONS
                .iter()
                .enumerate()
                .map(|(i, r)| (vec![("reason", reason_name(*r))], ld(&hub.removals[i]))),
        );
        let ka = REMOVAL_REASONS
            .iter()
            .position(|r| reason_name(*r) == "keepalive-timeout")
            .map_or(0.0, |i| ld(&hub.removals[i]));
        m.single(
            "rserpool_registrar_keepalive_timeouts_total",
            "PEs removed because a keep-alive went unanswered.",
            Kind::Counter,
            ka,
        );
        m.single(
            "rserpool_registrar_resolutions_total",
            "Handle resolutions answered.",
            Kind::Counter,
            c.received(rserpool_wire::asap_type::HANDLE_RESOLUTION) as f64,
        );
        m.single(
            "rserpool_registrar_unreachable_reports_total",
            "Endpoint-unreachable reports received.",
            Kind::Counter,
            ld(&hub.unreachable_reports),
        );
        m.family(
            "rserpool_registrar_takeovers_total",
            "Takeovers of dead peers' PEs, by outcome.",
            Kind::Counter,
            [
                ("started", c.enrp.takeovers_started),
                ("won", c.enrp.takeovers_won),
                ("abandoned", c.enrp.takeovers_abandoned),
            ]
            .map(|(k, v)| (vec![("outcome", k)], v as f64)),
        );
        m.single(
            "rserpool_registrar_pools",
            "Pools in the handlespace.",
            Kind::Gauge,
            s.pools as f64,
        );
        m.family(
            "rserpool_registrar_pes",
            "PEs in the handlespace: all, and those whose home is this registrar.",
            Kind::Gauge,
            [("all", s.pes), ("owned", s.owned)].map(|(k, v)| (vec![("which", k)], v as f64)),
        );
        let mut states: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for p in &s.enrp.peers {
            *states.entry(p.state.as_str()).or_default() += 1;
        }
        m.family(
            "rserpool_registrar_peers",
            "Peer registrars, by state.",
            Kind::Gauge,
            states.iter().map(|(k, v)| (vec![("state", *k)], *v as f64)),
        );
        m.single(
            "rserpool_registrar_ready",
            "1 once the ENRP start-up (mentor download) is done.",
            Kind::Gauge,
            if s.phase == EnrpPhase::Serving {
                1.0
            } else {
                0.0
            },
        );
        m.single(
            "rserpool_registrar_connections",
            "Accepted ASAP and ENRP connections open now.",
            Kind::Gauge,
            s.open as f64,
        );
        let cc = &c.connections;
        m.family(
            "rserpool_registrar_connections_closed_total",
            "Connections the connection limits closed or refused, by why.",
            Kind::Counter,
            [
                ("idle", cc.idle_closed),
                ("evicted", cc.evicted),
                ("source-evicted", cc.source_evicted),
                ("refused", cc.refused),
            ]
            .map(|(k, v)| (vec![("why", k)], v as f64)),
        );
        m.histogram(
            "rserpool_registrar_resolution_seconds",
            "Time the registrar core takes to answer a handle resolution.",
            &hub.resolution_time.snapshot(),
        );
        m.single(
            "rserpool_uptime_seconds",
            "Seconds since the HTTP endpoint started.",
            Kind::Gauge,
            self.started.elapsed().as_secs_f64().floor(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_and_queries() {
        assert_eq!(percent_decode("a%20b%ff"), Some(b"a b\xff".to_vec()));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        let uri: Uri = "/v1/handlespace?pool=A&x=1&pool=B+c&pool=%ff"
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        assert_eq!(query_values(&uri, "pool"), ["A", "B c", "0xff"]);
    }
}
