//! Message counters every core keeps (for `rsp dump` and metrics).

use rserpool_wire::{asap_type_name, enrp_type_name, Protocol};

/// Number of slots in the per-type arrays: ASAP types 0x01…0x0e, ENRP types 0x01…0x0a,
/// slot 0 = unknown type.
pub const TYPE_SLOTS: usize = 16;

/// Messages in and out keyed by (protocol, type), plus errors and drops.
///
/// Each protocol has its own tables (the ASAP and ENRP type codes overlap):
/// `rx[t]` / `tx[t]` count ASAP message type `t` (0x01…0x0e), `enrp_rx[t]` / `enrp_tx[t]`
/// ENRP type `t` (0x01…0x0a); slot 0 collects types out of range. Application data
/// (session messages) is counted as a whole in `data_rx` / `data_tx`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Decoded ASAP messages received, by type.
    pub rx: [u64; TYPE_SLOTS],
    /// ASAP messages sent, by type.
    pub tx: [u64; TYPE_SLOTS],
    /// Decoded ENRP messages received, by type.
    pub enrp_rx: [u64; TYPE_SLOTS],
    /// ENRP messages sent, by type.
    pub enrp_tx: [u64; TYPE_SLOTS],
    /// Application data messages received (any PPID).
    pub data_rx: u64,
    /// Application data messages sent (any PPID).
    pub data_tx: u64,
    /// Messages that failed to decode (malformed, truncated, unknown type …).
    pub rx_invalid: u64,
    /// ASAP_ERROR messages sent because of something we received.
    pub errors_sent: u64,
    /// Messages received and ignored (wrong direction, unknown PE, stale response …).
    pub dropped: u64,
    /// Messages received with the wrong protocol (ENRP on an ASAP core, including ENRP
    /// messages on an ASAP stream) or as a datagram where only connections are allowed.
    pub wrong_protocol: u64,
    /// Messages not sent because they cannot be encoded (longer than 65,535 bytes even
    /// with the information of their error causes cut).
    pub unencodable: u64,
    /// Handle resolutions a registrar's connection readers answered from a pool's copy,
    /// outside the core's lock (also counted in `rx` and `tx`).
    pub fast_resolutions: u64,
    /// What the connection limits did (registrar only; see [`crate::conn_limits`]).
    pub connections: ConnCounters,
    /// The registrar's protections that acted (zero for the other cores).
    pub guards: GuardCounters,
    /// What the ENRP side refused, ignored or did (registrar only).
    pub enrp: EnrpCounters,
}

/// Connections closed by the limits of [`crate::conn_limits`], since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounters {
    /// Connections without PEs closed after the idle timeout.
    pub idle_closed: u64,
    /// Connections closed to make room for a newcomer (total limit).
    pub evicted: u64,
    /// Connections closed to make room for a newcomer from the same source.
    pub source_evicted: u64,
    /// Newcomers closed at once because every connection they could replace owns a PE.
    pub refused: u64,
}

impl Counters {
    fn slot(ty: u8) -> usize {
        let t = usize::from(ty);
        if t < TYPE_SLOTS {
            t
        } else {
            0
        }
    }
    /// Count one received message of `protocol` (for data, `ty` is ignored).
    pub(crate) fn on_rx(&mut self, protocol: Protocol, ty: u8) {
        match protocol {
            Protocol::Asap => self.rx[Self::slot(ty)] += 1,
            Protocol::Enrp => self.enrp_rx[Self::slot(ty)] += 1,
            Protocol::Data(_) => self.data_rx += 1,
        }
    }
    /// Count one sent message of `protocol` (for data, `ty` is ignored).
    pub(crate) fn on_tx(&mut self, protocol: Protocol, ty: u8) {
        match protocol {
            Protocol::Asap => self.tx[Self::slot(ty)] += 1,
            Protocol::Enrp => self.enrp_tx[Self::slot(ty)] += 1,
            Protocol::Data(_) => self.data_tx += 1,
        }
    }
    /// Received count for an ASAP message type code.
    pub fn received(&self, ty: u8) -> u64 {
        self.rx[Self::slot(ty)]
    }
    /// Sent count for an ASAP message type code.
    pub fn sent(&self, ty: u8) -> u64 {
        self.tx[Self::slot(ty)]
    }
    /// Received count for a message type code of `protocol` (all data for `Data`).
    pub fn received_of(&self, protocol: Protocol, ty: u8) -> u64 {
        match protocol {
            Protocol::Asap => self.rx[Self::slot(ty)],
            Protocol::Enrp => self.enrp_rx[Self::slot(ty)],
            Protocol::Data(_) => self.data_rx,
        }
    }
    /// Sent count for a message type code of `protocol` (all data for `Data`).
    pub fn sent_of(&self, protocol: Protocol, ty: u8) -> u64 {
        match protocol {
            Protocol::Asap => self.tx[Self::slot(ty)],
            Protocol::Enrp => self.enrp_tx[Self::slot(ty)],
            Protocol::Data(_) => self.data_tx,
        }
    }
    /// `(message name, received, sent)` for every type with a non-zero count: the ASAP
    /// types first (named as on the wire, "unknown" for slot 0), then the ENRP types,
    /// then application data ("DATA").
    pub fn by_type(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        table_iter(&self.rx, &self.tx, asap_type_name, "unknown")
            .chain(table_iter(
                &self.enrp_rx,
                &self.enrp_tx,
                enrp_type_name,
                "unknown ENRP",
            ))
            .chain((self.data_rx != 0 || self.data_tx != 0).then_some((
                "DATA",
                self.data_rx,
                self.data_tx,
            )))
    }
}

/// The non-zero rows of one protocol's per-type tables.
fn table_iter<'a>(
    rx: &'a [u64; TYPE_SLOTS],
    tx: &'a [u64; TYPE_SLOTS],
    name: fn(u8) -> Option<&'static str>,
    unknown: &'static str,
) -> impl Iterator<Item = (&'static str, u64, u64)> + 'a {
    (0..TYPE_SLOTS).filter_map(move |i| {
        let (rx, tx) = (rx[i], tx[i]);
        if rx == 0 && tx == 0 {
            return None;
        }
        let name = u8::try_from(i).ok().and_then(name).unwrap_or(unknown);
        Some((name, rx, tx))
    })
}

/// The registrar's ENRP side: inputs refused or ignored, and what it did (see the
/// `registrar::enrp` module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnrpCounters {
    /// ENRP messages with our own server ID as sender looped back to us (multicast).
    pub own_id_looped: u64,
    /// ENRP messages claiming our own server ID as sender over a connection: dropped.
    pub own_id_claims: u64,
    /// Messages from servers not in the peer list, dropped (`accept_unlisted_peers` off,
    /// or a sender ID of 0).
    pub unlisted_dropped: u64,
    /// New peers refused because the peer list is full.
    pub peers_refused: u64,
    /// Handle updates refused (inconsistent with the pool, invalid): answered with an
    /// ENRP_ERROR.
    pub updates_refused: u64,
    /// Handle updates ignored (DEL_PE from a server that is not the PE's home, ADD_PE
    /// naming us as home, unknown action).
    pub updates_ignored: u64,
    /// HANDLE_TABLE_RESPONSEs nobody asked for, and responses of the wrong direction.
    pub unsolicited: u64,
    /// ENRP_ERRORs sent.
    pub errors_sent: u64,
    /// ENRP_ERRORs received.
    pub errors_received: u64,
    /// Presences whose checksum differed from ours for that peer.
    pub audit_mismatches: u64,
    /// Re-synchronisations completed, and PEs they purged.
    pub resyncs: u64,
    pub resync_purged: u64,
    /// Takeovers started, won, abandoned.
    pub takeovers_started: u64,
    pub takeovers_won: u64,
    pub takeovers_abandoned: u64,
    /// Second connections to one peer closed (one association per peer).
    pub duplicate_conns_closed: u64,
    /// Takeovers of ourselves announced by peers (answered with a presence).
    pub takeovers_of_self: u64,
    /// PEs a peer listed as its own in a re-synchronisation while we owned them too,
    /// kept by the election's tie-break (the peer is sent an ADD_PE).
    pub contested_kept: u64,
}

/// How often each protection of the registrar acted (see the registrar module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardCounters {
    /// Registrations refused: the PE identifier is registered over another live connection.
    pub refused_identifier_in_use: u64,
    /// Registrations refused: port 0, unspecified / broadcast / multicast / reserved
    /// address, or a Transport Use other than 0 and 1.
    pub refused_unusable_address: u64,
    /// Registrations refused: an address below the minimum scope, or a loopback address
    /// from another host.
    pub refused_address_scope: u64,
    /// Registrations refused: Registration Life 0 or above the maximum.
    pub refused_registration_life: u64,
    /// Registrations refused: the connection's PE quota.
    pub refused_connection_quota: u64,
    /// Registrations refused: the source address's PE quota.
    pub refused_source_quota: u64,
    /// Registrations refused: the pool or the handlespace is full.
    pub refused_full: u64,
    /// Registrations refused: the TLS identity's PE quota.
    pub refused_identity_quota: u64,
    /// Registrations refused (0x6) over the per-connection registration rate.
    pub registration_rate_limited: u64,
    /// Registrations refused (0x6) over the per-identity registration rate.
    pub registration_rate_limited_identity: u64,
    /// Handle-table download sessions dropped: no next request within
    /// `download_session_timeout`.
    pub download_sessions_expired: u64,
    /// Download sessions started over because the requester asked with the other W.
    pub download_sessions_restarted: u64,
    /// Rate-limited messages let through untracked because a rate table was full of
    /// active keys (see `registrar::rates`).
    pub rate_untracked: u64,
    /// Registrations of a held PE identifier answered after a probe of the holder.
    pub moves_held: u64,
    /// … of which the holder failed its probe or went away and the PE moved.
    pub moves_granted: u64,
    /// Unreachability reports that counted.
    pub reports_counted: u64,
    /// Reports ignored: the reporting connection never resolved the pool.
    pub reports_not_resolved: u64,
    /// Reports not counted: the connection had already reported that PE (or 16 others
    /// had) since the PE last answered a keep-alive (they may still probe it).
    pub reports_repeated: u64,
    /// Keep-alive probes sent because of reports.
    pub report_probes: u64,
    /// Probes not sent because the PE answered one moments ago.
    pub probes_limited: u64,
    /// Handle resolutions answered Unknown Pool Handle for the per-source rate limit.
    pub hr_rate_limited: u64,
    /// Unreachability reports ignored for the per-source rate limit.
    pub eu_rate_limited: u64,
    /// Registrations and de-registrations refused by the access policy (0xa).
    pub refused_security: u64,
    /// Handle resolutions refused by the access policy (0xa).
    pub resolutions_refused_security: u64,
    /// ENRP messages dropped by the access policy (not over TLS, or not a peer).
    pub enrp_refused_access: u64,
    /// Handle resolution subscriptions made (S = 1 answered A = 1), and ended (S = 0,
    /// connection closed, pool gone); the difference is in force.
    pub subscriptions_accepted: u64,
    pub subscriptions_ended: u64,
    /// Subscriptions refused for the per-connection or total limit (answered A = 0).
    pub subscriptions_refused: u64,
    /// Pushed handle resolution responses (one per subscriber and push).
    pub subscription_pushes: u64,
    /// Pool changes that joined a push already pending (coalesced).
    pub subscription_pushes_coalesced: u64,
}

impl GuardCounters {
    /// `(description, count)` for every counter that is not zero.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> {
        self.all().filter(|(_, n)| *n > 0)
    }

    /// `(description, count)` for every counter, zero or not (for `/metrics`: each limit
    /// has its series from the start).
    pub fn all(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            (
                "registrations refused: PE identifier in use",
                self.refused_identifier_in_use,
            ),
            (
                "registrations refused: unusable address",
                self.refused_unusable_address,
            ),
            (
                "registrations refused: address scope",
                self.refused_address_scope,
            ),
            (
                "registrations refused: registration life",
                self.refused_registration_life,
            ),
            (
                "registrations refused: PEs per connection",
                self.refused_connection_quota,
            ),
            (
                "registrations refused: PEs per source address",
                self.refused_source_quota,
            ),
            (
                "registrations refused: pool or handlespace full",
                self.refused_full,
            ),
            (
                "registrations refused: PEs per TLS identity",
                self.refused_identity_quota,
            ),
            (
                "registrations over the per-connection rate (answered 0x6)",
                self.registration_rate_limited,
            ),
            (
                "registrations over the per-identity rate (answered 0x6)",
                self.registration_rate_limited_identity,
            ),
            (
                "handle-table download sessions expired",
                self.download_sessions_expired,
            ),
            (
                "handle-table download sessions restarted",
                self.download_sessions_restarted,
            ),
            (
                "rate-limited messages let through untracked (rate table full)",
                self.rate_untracked,
            ),
            (
                "registrations of a held PE identifier probed",
                self.moves_held,
            ),
            ("held PE identifiers moved", self.moves_granted),
            ("unreachability reports counted", self.reports_counted),
            (
                "reports ignored: pool not resolved",
                self.reports_not_resolved,
            ),
            ("reports not counted again", self.reports_repeated),
            ("probes sent for reports", self.report_probes),
            (
                "probes skipped: the PE answered moments ago",
                self.probes_limited,
            ),
            (
                "handle resolutions over the per-source rate (answered 0x9)",
                self.hr_rate_limited,
            ),
            (
                "unreachability reports over the per-source rate (ignored)",
                self.eu_rate_limited,
            ),
            (
                "registrations refused by the access policy (0xa)",
                self.refused_security,
            ),
            (
                "handle resolutions refused by the access policy (0xa)",
                self.resolutions_refused_security,
            ),
            (
                "ENRP messages dropped by the access policy",
                self.enrp_refused_access,
            ),
            ("subscriptions accepted", self.subscriptions_accepted),
            ("subscriptions ended", self.subscriptions_ended),
            (
                "subscriptions refused: limit (answered A = 0)",
                self.subscriptions_refused,
            ),
            ("subscription pushes sent", self.subscription_pushes),
            (
                "pool changes coalesced into a pending push",
                self.subscription_pushes_coalesced,
            ),
        ]
        .into_iter()
    }
}
