//! What the registrar's events leave for the HTTP endpoint: running totals for
//! `/metrics` (registrations, removals by reason, reports, refusals by cause, ENRP
//! happenings) and the handlespace changes streamed by `/v1/events`.
//!
//! [`Hub::record`] runs on the driver task for every event (the registrar service calls it
//! from the driver's event callback): atomics only, and an event is turned into JSON only
//! while somebody listens.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rserpool_proto::registrar::{EnrpEvent, RegistrarEvent, RemovalReason};
use rserpool_wire::{PoolElement, PoolHandle, UserTransport};
use tokio::sync::broadcast;

use crate::histogram::Histogram;
use crate::service::admin::transport_url;

/// Events buffered per listener of `/v1/events`; one that falls further behind is told
/// to reload (`resync`).
pub const EVENT_BUFFER: usize = 4096;

/// Every removal reason, in the order of [`Hub::removals`].
pub const REMOVAL_REASONS: [RemovalReason; 9] = [
    RemovalReason::Deregistered,
    RemovalReason::LifetimeExpired,
    RemovalReason::KeepAliveTimeout,
    RemovalReason::KeepAliveFailed,
    RemovalReason::Unreachable,
    RemovalReason::ConnectionClosed,
    RemovalReason::Admin,
    RemovalReason::PeerUpdate,
    RemovalReason::Resync,
];

/// Totals since start and the event stream of one registrar.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
    seq: AtomicU64,
    /// PEs added (registered here, or learnt from a peer).
    pub added: AtomicU64,
    /// PEs added that this registrar is home of (ASAP registrations).
    pub registrations: AtomicU64,
    pub reregistrations: AtomicU64,
    /// PEs removed, per [`REMOVAL_REASONS`].
    pub removals: [AtomicU64; REMOVAL_REASONS.len()],
    pub unreachable_reports: AtomicU64,
    pub takeovers_won: AtomicU64,
    pub peers_up: AtomicU64,
    pub peers_down: AtomicU64,
    /// Refused registrations by cause.
    pub refusals: Mutex<BTreeMap<String, u64>>,
    /// Time the core spends on each Handle Resolution (the driver measures it).
    pub resolution_time: Arc<Histogram>,
    /// The handshake counters of the TLS listeners (ASAP and ENRP).
    pub tls: Mutex<Vec<crate::transport::tls::ListenerStats>>,
    /// What the transports' message length limit did, and the limit.
    pub lengths: Arc<crate::transport::tcp::LengthStats>,
    pub max_message_len: usize,
}

impl Hub {
    /// Report what the transports of `transport` count for the message length limit.
    pub fn with_lengths(mut self, transport: &crate::transport::TransportConfig) -> Self {
        self.lengths = transport.length_stats.clone();
        self.max_message_len = transport.max_message_len;
        self
    }

    /// The message length limit's counters as `rsp dump` shows them.
    pub fn length_doc(&self) -> crate::service::admin::MessageLengthDoc {
        let l = &self.lengths;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::service::admin::MessageLengthDoc {
            max_message_len: self.max_message_len,
            tcp_too_long: ld(&l.tcp.too_long),
            tcp_too_short: ld(&l.tcp.too_short),
            tls_too_long: ld(&l.tls.too_long),
            tls_too_short: ld(&l.tls.too_short),
            sctp_too_long: ld(&l.sctp.too_long),
        }
    }

    /// The TLS listeners' handshake counters as `rsp dump` shows them.
    pub fn tls_docs(&self) -> Vec<crate::service::admin::TlsListenerDoc> {
        use crate::service::admin::TlsListenerDoc;
        let list = self.tls.lock().map(|l| l.clone()).unwrap_or_default();
        list.iter()
            .map(|l| TlsListenerDoc {
                listener: l.endpoint.clone(),
                protocol: l.protocol.to_owned(),
                accepted: l.stats.accepted.load(Ordering::Relaxed),
                failed: l.stats.failed.load(Ordering::Relaxed),
                timed_out: l.stats.timed_out.load(Ordering::Relaxed),
                refused_busy: l.stats.refused_busy.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(EVENT_BUFFER).0,
            seq: AtomicU64::new(0),
            added: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            reregistrations: AtomicU64::new(0),
            removals: Default::default(),
            unreachable_reports: AtomicU64::new(0),
            takeovers_won: AtomicU64::new(0),
            peers_up: AtomicU64::new(0),
            peers_down: AtomicU64::new(0),
            refusals: Mutex::default(),
            resolution_time: Arc::default(),
            tls: Mutex::default(),
            lengths: Arc::default(),
            max_message_len: rserpool_wire::framing::DEFAULT_MAX_MESSAGE_LEN,
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The word for a removal reason (as the event log says it).
pub fn reason_name(r: RemovalReason) -> &'static str {
    crate::service::oplog::reason_name(r)
}

impl Hub {
    /// A new listener of the event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Count `ev` and, while anybody listens, stream it. `own` = this registrar's ID.
    pub fn record(&self, ev: &RegistrarEvent, own: rserpool_wire::ServerId) {
        let listening = self.tx.receiver_count() > 0;
        let json = match ev {
            RegistrarEvent::PeAdded { handle, pe } => {
                bump(&self.added);
                if pe.home_registrar == own {
                    bump(&self.registrations);
                }
                listening.then(|| pe_event("pe-added", handle, pe, None))
            }
            RegistrarEvent::PeUpdated { handle, pe, .. } => {
                bump(&self.reregistrations);
                listening.then(|| pe_event("pe-updated", handle, pe, None))
            }
            RegistrarEvent::PeRemoved { handle, pe, reason } => {
                if let Some(i) = REMOVAL_REASONS.iter().position(|r| r == reason) {
                    bump(&self.removals[i]);
                }
                listening.then(|| pe_event("pe-removed", handle, pe, Some(reason_name(*reason))))
            }
            RegistrarEvent::RegistrationRejected { cause, .. } => {
                let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
                *r.entry(cause.to_string()).or_default() += 1;
                None
            }
            RegistrarEvent::UnreachableReport { .. } => {
                bump(&self.unreachable_reports);
                None
            }
            RegistrarEvent::Enrp(EnrpEvent::PeLearned {
                handle, pe, new, ..
            }) => {
                let kind = if *new { "pe-added" } else { "pe-updated" };
                listening.then(|| pe_event(kind, handle, pe, None))
            }
            RegistrarEvent::Enrp(e) => {
                let (kind, peer) = match e {
                    EnrpEvent::PeerUp { server_id, .. } => {
                        bump(&self.peers_up);
                        ("peer-up", *server_id)
                    }
                    EnrpEvent::PeerDown { server_id } => {
                        bump(&self.peers_down);
                        ("peer-down", *server_id)
                    }
                    EnrpEvent::PeerRemoved { server_id } => ("peer-removed", *server_id),
                    EnrpEvent::TakeoverWon { target, .. } => {
                        bump(&self.takeovers_won);
                        ("takeover-won", *target)
                    }
                    EnrpEvent::SyncDone { .. } => ("sync-done", own),
                    EnrpEvent::ResyncDone { peer, .. } => ("resync-done", *peer),
                    _ => return,
                };
                listening.then(|| {
                    serde_json::json!({ "type": kind, "peer": peer.to_string() }).to_string()
                })
            }
            _ => None,
        };
        if let Some(j) = json {
            self.send(j);
        }
    }

    fn send(&self, mut json: String) {
        // `{"seq":N,` in front of the event's own members.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        json.replace_range(..1, &format!("{{\"seq\":{seq},"));
        let _ = self.tx.send(Arc::from(json));
    }
}

fn pe_event(kind: &str, handle: &PoolHandle, pe: &PoolElement, reason: Option<&str>) -> String {
    let transport = match &pe.user_transport {
        UserTransport::Ip(t) => transport_url(t),
        UserTransport::Opaque(b) => format!("opaque:{}", hex::encode(b)),
    };
    let mut v = serde_json::json!({
        "type": kind,
        "pool": handle.to_string(),
        "pe": pe.id.to_string(),
        "home": pe.home_registrar.to_string(),
        "policy": pe.policy.policy_type().to_string(),
        "load_percent": pe.policy.load()
            .map(|l| (f64::from(l) / f64::from(u32::MAX) * 10000.0).round() / 100.0),
        "user_transport": transport,
    });
    if let Some(r) = reason {
        v["reason"] = r.into();
    }
    v.to_string()
}
