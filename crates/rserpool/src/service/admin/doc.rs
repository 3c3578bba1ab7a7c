//! The JSON documents of a dump ([`DumpDoc`] and its parts) and their table rendering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rserpool_proto::registrar::{EnrpPhase, PeerInfo};
use rserpool_proto::registrar::{HandlespaceSnapshot, PoolSnapshot};
use rserpool_proto::Registrar;
use rserpool_proto::{Counters, EnrpCounters};
use rserpool_wire::{LifetimeUnit, PoolElement, TransportAddr, UserTransport};
use serde::{Deserialize, Serialize};
/// The handlespace as `rsp dump --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpDoc {
    /// The registrar's server ID (0x…).
    pub server_id: String,
    pub pool_count: usize,
    pub pe_count: usize,
    pub pools: Vec<PoolDoc>,
    /// Messages received / sent by type since start.
    pub counters: Vec<CounterDoc>,
    /// Accepted connections and what the connection limits did since start.
    #[serde(default)]
    pub connections: ConnectionsDoc,
    /// How often each protection of the registrar acted (refusals, ignored reports …),
    /// the ones that did only.
    #[serde(default)]
    pub protections: Vec<ProtectionDoc>,
    /// ENRP: the start-up phase and the peer registrars.
    #[serde(default)]
    pub enrp: EnrpDoc,
    /// The TLS listeners' handshakes since start.
    #[serde(default)]
    pub tls: Vec<TlsListenerDoc>,
    /// What the message length limit did since start.
    #[serde(default)]
    pub message_length: MessageLengthDoc,
}

/// What the message length limit (`max_message_len`, and the 4-byte minimum of a TCP
/// or TLS stream) did since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MessageLengthDoc {
    /// The limit in bytes.
    pub max_message_len: usize,
    /// TCP (and MPTCP) connections closed: a message longer than the limit.
    pub tcp_too_long: u64,
    /// TCP connections closed: a Message Length below 4.
    pub tcp_too_short: u64,
    /// TLS connections closed: a message longer than the limit.
    pub tls_too_long: u64,
    /// TLS connections closed: a Message Length below 4.
    pub tls_too_short: u64,
    /// SCTP messages longer than the limit, dropped (the association stays).
    pub sctp_too_long: u64,
}

/// One TLS listener's handshakes since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TlsListenerDoc {
    /// `tls://addr:port`.
    pub listener: String,
    /// `asap` or `enrp`.
    pub protocol: String,
    /// Handshakes completed.
    pub accepted: u64,
    /// Handshakes that failed (bad or untrusted certificate, protocol error, closed).
    pub failed: u64,
    /// Handshakes not done within 10 s.
    pub timed_out: u64,
    /// Connections closed unshaken: 256 handshakes were under way on this listener.
    pub refused_busy: u64,
}

/// The registrar's ENRP side: where it is in its start-up and its peers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrpDoc {
    /// `discovering` (listening for a mentor), `synchronizing` (downloading the
    /// handlespace from it) or `serving`.
    pub phase: String,
    pub peers: Vec<PeerDoc>,
    /// What the ENRP side refused, ignored or did since start (takeovers, audits,
    /// re-synchronisations, own-ID claims, unsolicited responses …), the nonzero ones.
    #[serde(default)]
    pub counters: Vec<ProtectionDoc>,
}

impl Default for EnrpDoc {
    fn default() -> Self {
        Self {
            phase: EnrpPhase::Serving.name().to_owned(),
            peers: Vec::new(),
            counters: Vec::new(),
        }
    }
}

/// The nonzero ENRP counters, named.
fn enrp_counters(c: &EnrpCounters) -> Vec<ProtectionDoc> {
    [
        ("own-id looped back", c.own_id_looped),
        ("own-id claims dropped", c.own_id_claims),
        ("unlisted senders dropped", c.unlisted_dropped),
        ("peers refused (list full)", c.peers_refused),
        ("handle updates refused", c.updates_refused),
        ("handle updates ignored", c.updates_ignored),
        ("unsolicited responses dropped", c.unsolicited),
        ("ENRP errors sent", c.errors_sent),
        ("ENRP errors received", c.errors_received),
        ("audit mismatches", c.audit_mismatches),
        ("re-synchronisations", c.resyncs),
        ("PEs purged by re-synchronisation", c.resync_purged),
        ("takeovers started", c.takeovers_started),
        ("takeovers won", c.takeovers_won),
        ("takeovers abandoned", c.takeovers_abandoned),
        (
            "duplicate peer connections closed",
            c.duplicate_conns_closed,
        ),
        ("takeovers of this registrar announced", c.takeovers_of_self),
        ("contested PEs kept (two homes)", c.contested_kept),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, count)| ProtectionDoc {
        what: what.to_owned(),
        count,
    })
    .collect()
}

/// One peer registrar as this registrar sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerDoc {
    /// Server ID (0x…); 0x0 while not identified yet.
    pub server_id: String,
    /// Where it is reached (a static peer's URL, or its Server Information).
    pub endpoint: Option<String>,
    /// unidentified, active, probing or taking-over.
    pub state: String,
    /// Time since its last message, in milliseconds (`None`: never heard).
    pub last_heard_ms: Option<u64>,
    /// Our checksum over the PEs whose home it is (16 bits, 0x…).
    pub checksum_expected: String,
    /// The checksum its last presence reported.
    pub checksum_reported: Option<String>,
    /// PEs whose home it is, in our copy of the handlespace.
    pub owned_pes: usize,
    /// It was our mentor (the start-up download came from it).
    pub mentor: bool,
}

impl EnrpDoc {
    /// The phase, peers and counters of a registrar, ages taken at `now`.
    pub fn new(
        phase: EnrpPhase,
        peers: &[PeerInfo],
        counters: &EnrpCounters,
        now: Instant,
    ) -> Self {
        Self {
            phase: phase.name().to_owned(),
            counters: enrp_counters(counters),
            peers: peers
                .iter()
                .map(|p| PeerDoc {
                    server_id: p.server_id.to_string(),
                    endpoint: p.endpoint.as_ref().map(ToString::to_string),
                    state: p.state.name().to_owned(),
                    last_heard_ms: p.last_heard.map(|t| ms(now.saturating_duration_since(t))),
                    checksum_expected: format!("{:#06x}", p.checksum_expected),
                    checksum_reported: p.checksum_reported.map(|c| format!("{c:#06x}")),
                    owned_pes: p.owned_pes,
                    mentor: p.mentor,
                })
                .collect(),
        }
    }

    /// Of a registrar core (for the admin listener and tests).
    pub fn of(r: &Registrar, now: Instant) -> Self {
        Self::new(r.enrp_phase(), &r.peers(), &r.counters().enrp, now)
    }

    /// The peers as a table (nothing without peers), then the nonzero counters.
    pub fn table(&self) -> String {
        let counters: String = self
            .counters
            .iter()
            .map(|c| format!("ENRP {}: {}\n", c.what, c.count))
            .collect();
        if self.peers.is_empty() {
            return counters;
        }
        let mut rows = vec![[
            "PEER", "ENDPOINT", "STATE", "HEARD", "CHECKSUM", "REPORTED", "PES", "",
        ]
        .map(String::from)];
        for p in &self.peers {
            rows.push([
                p.server_id.clone(),
                p.endpoint.clone().unwrap_or_else(|| "-".into()),
                p.state.clone(),
                p.last_heard_ms
                    .map(|v| format!("{} ago", human_ms(v)))
                    .unwrap_or_else(|| "never".into()),
                p.checksum_expected.clone(),
                p.checksum_reported.clone().unwrap_or_else(|| "-".into()),
                p.owned_pes.to_string(),
                if p.mentor { "mentor" } else { "" }.to_owned(),
            ]);
        }
        format!(
            "peers ({}):\n{}{counters}",
            self.peers.len(),
            columns(&rows)
        )
    }
}

/// Rows as left-aligned columns two spaces apart, one line each.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProtectionDoc {
    pub what: String,
    pub count: u64,
}

/// Accepted connections and the connection limits' actions since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnectionsDoc {
    /// Accepted connections open now.
    pub open: Option<usize>,
    /// Connections without PEs closed after the idle timeout.
    pub idle_closed: u64,
    /// Connections closed to make room for new ones (max_connections).
    pub evicted: u64,
    /// Connections closed to make room for newer ones from the same source.
    pub source_evicted: u64,
    /// New connections refused because every connection that could make room had PEs.
    pub refused: u64,
}

impl ConnectionsDoc {
    pub(super) fn new(counters: &Counters, open: Option<usize>) -> Self {
        let c = &counters.connections;
        Self {
            open,
            idle_closed: c.idle_closed,
            evicted: c.evicted,
            source_evicted: c.source_evicted,
            refused: c.refused,
        }
    }
}

impl ProtectionDoc {
    /// The protections that acted, with their counts.
    pub(super) fn list(counters: &Counters) -> Vec<ProtectionDoc> {
        counters
            .guards
            .nonzero()
            .map(|(what, count)| ProtectionDoc {
                what: what.to_owned(),
                count,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolDoc {
    /// The pool handle as text, or 0x-hex when not printable.
    pub handle: String,
    /// Policy short name (rr, lu …).
    pub policy: String,
    pub pes: Vec<PeDoc>,
}

impl PoolDoc {
    /// A pool of a handlespace snapshot (whole or one page of it), ages against `now`.
    pub fn of(p: &PoolSnapshot, now: Instant, unit: LifetimeUnit) -> Self {
        PoolDoc {
            handle: p.handle.to_string(),
            policy: p.policy.to_string(),
            pes: p
                .pes
                .iter()
                .map(|(pe, bk)| pe_doc(pe, bk, now, unit))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeDoc {
    /// PE identifier (0x…).
    pub id: String,
    /// Home registrar (owner) server ID.
    pub home: String,
    /// Policy short name and its value words (loads/degradations 0xFFFFFFFF = 100 %).
    pub policy: String,
    pub policy_values: Vec<u32>,
    /// Load in percent, for policies that carry one.
    pub load_percent: Option<f64>,
    /// Registration Life as registered, in milliseconds.
    pub registration_life_ms: Option<u64>,
    /// Time since the first registration, in milliseconds.
    pub age_ms: Option<u64>,
    /// User transport as a URL (`tcp://127.0.0.1:4000`, `sctp://10.0.0.1,10.0.0.2:4000`).
    pub user_transport: String,
    /// The user transport also takes ASAP control messages (SCTP "data plus control",
    /// as RSPLIB's PEs register); shown as `+ctrl` in the table.
    #[serde(default)]
    pub control_channel: bool,
    /// Each user transport address as `ip:port` / `[ip]:port`.
    pub addresses: Vec<String>,
    /// The PE's ASAP endpoint as the registrar sees it.
    pub asap_transport: Option<String>,
    pub unreachable_reports: u32,
    /// Time since the last keep-alive acknowledgement, in milliseconds.
    pub last_keepalive_ack_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CounterDoc {
    pub message: String,
    pub received: u64,
    pub sent: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A transport as a URL: `sctp://10.0.0.1,10.0.0.2:4000`, `tcp://[::1]:4000`.
pub fn transport_url(t: &TransportAddr) -> String {
    let scheme = t.kind.name();
    let hosts: Vec<String> = t
        .addrs
        .iter()
        .map(|a| match a {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        })
        .collect();
    format!("{scheme}://{}:{}", hosts.join(","), t.port)
}

pub(crate) fn pe_doc(
    pe: &PoolElement,
    bk: &rserpool_proto::handlespace::Bookkeeping,
    now: Instant,
    unit: LifetimeUnit,
) -> PeDoc {
    let (user_transport, addresses) = match &pe.user_transport {
        UserTransport::Ip(t) => (
            transport_url(t),
            t.addrs
                .iter()
                .map(|a| SocketAddr::new(*a, t.port).to_string())
                .collect(),
        ),
        UserTransport::Opaque(b) => (format!("opaque:{}", hex::encode(b)), Vec::new()),
    };
    let policy = pe.policy.policy_type();
    PeDoc {
        id: pe.id.to_string(),
        home: pe.home_registrar.to_string(),
        policy: policy.to_string(),
        policy_values: pe.policy.values().as_slice().to_vec(),
        load_percent: pe
            .policy
            .load()
            .map(|l| (f64::from(l) / f64::from(u32::MAX) * 10000.0).round() / 100.0),
        registration_life_ms: unit.to_duration(pe.registration_life).map(ms),
        age_ms: bk
            .registered_at
            .map(|t| ms(now.saturating_duration_since(t))),
        control_channel: matches!(
            &pe.user_transport,
            UserTransport::Ip(t) if t.use_field == rserpool_wire::TransportUse::DATA_PLUS_CONTROL
        ),
        user_transport,
        addresses,
        asap_transport: pe.asap_transport.as_ref().map(transport_url),
        unreachable_reports: bk.unreachable_reports,
        last_keepalive_ack_ms: bk
            .last_keepalive_ack
            .map(|t| ms(now.saturating_duration_since(t))),
    }
}

impl DumpDoc {
    /// Build from a registrar snapshot taken at `now`.
    pub fn new(
        snap: &HandlespaceSnapshot,
        counters: &Counters,
        enrp: EnrpDoc,
        now: Instant,
        unit: LifetimeUnit,
    ) -> Self {
        let pools: Vec<PoolDoc> = snap
            .pools
            .iter()
            .map(|p| PoolDoc::of(p, now, unit))
            .collect();
        DumpDoc {
            server_id: snap.server_id.to_string(),
            pool_count: pools.len(),
            pe_count: pools.iter().map(|p| p.pes.len()).sum(),
            pools,
            connections: ConnectionsDoc::new(counters, None),
            counters: counters
                .by_type()
                .map(|(message, received, sent)| CounterDoc {
                    message: message.to_owned(),
                    received,
                    sent,
                })
                .collect(),
            protections: ProtectionDoc::list(counters),
            enrp,
            tls: Vec::new(),
            message_length: MessageLengthDoc::default(),
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "POOL",
            "POLICY",
            "PE",
            "HOME",
            "LOAD",
            "LIFE",
            "AGE",
            "USER TRANSPORT",
            "ASAP TRANSPORT",
        ]
        .map(String::from)];
        for p in &self.pools {
            for pe in &p.pes {
                rows.push([
                    p.handle.clone(),
                    pe.policy.clone(),
                    pe.id.clone(),
                    pe.home.clone(),
                    pe.load_percent
                        .map(|l| format!("{l}%"))
                        .unwrap_or_else(|| "-".into()),
                    pe.registration_life_ms
                        .map(human_ms)
                        .unwrap_or_else(|| "inf".into()),
                    pe.age_ms.map(human_ms).unwrap_or_else(|| "-".into()),
                    if pe.control_channel {
                        format!("{}+ctrl", pe.user_transport)
                    } else {
                        pe.user_transport.clone()
                    },
                    pe.asap_transport.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
        }
        let mut out = format!(
            "registrar {}: {} pool(s), {} PE(s); ENRP {}\n",
            self.server_id, self.pool_count, self.pe_count, self.enrp.phase
        );
        out.push_str(&columns(&rows));
        out.push_str(&self.enrp.table());
        let c = &self.connections;
        if c.idle_closed + c.evicted + c.source_evicted + c.refused > 0 {
            let open = c.open.map(|n| format!("{n} open; ")).unwrap_or_default();
            out.push_str(&format!(
                "connections: {open}closed by the limits: {} idle, {} to make room, {} over the per-source cap; {} refused\n",
                c.idle_closed, c.evicted, c.source_evicted, c.refused
            ));
        }
        for p in &self.protections {
            out.push_str(&format!("{}: {}\n", p.what, p.count));
        }
        for t in &self.tls {
            out.push_str(&format!(
                "TLS handshakes on {} ({}): {} accepted, {} failed, {} timed out, {} refused (256 under way)\n",
                t.listener, t.protocol, t.accepted, t.failed, t.timed_out, t.refused_busy
            ));
        }
        let m = &self.message_length;
        if m.tcp_too_long + m.tcp_too_short + m.tls_too_long + m.tls_too_short + m.sctp_too_long > 0
        {
            out.push_str(&format!(
                "message length (limit {} bytes): connections closed: TCP {} too long, {} too short; TLS {} too long, {} too short; SCTP messages dropped: {} too long\n",
                m.max_message_len,
                m.tcp_too_long,
                m.tcp_too_short,
                m.tls_too_long,
                m.tls_too_short,
                m.sctp_too_long
            ));
        }
        out
    }
}

fn human_ms(v: u64) -> String {
    if v >= 10_000 {
        format!("{}s", v / 1000)
    } else if v >= 1000 {
        format!("{:.1}s", v as f64 / 1000.0)
    } else {
        format!("{v}ms")
    }
}
