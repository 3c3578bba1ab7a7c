//! The registrar's protections against valid ASAP messages used as attacks (RFC 5355
//! threats; the choices are listed in the [`registrar`](super) module docs): which
//! addresses a PE may register, who may take over a PE identifier, which unreachability
//! reports count, and the per-connection / per-source PE quotas.
//!
//! This file holds the vocabulary (settings, refusal reasons, report outcomes) and the
//! bounded per-connection and per-PE state; the decisions are taken in `registrar.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use rserpool_wire::{PeId, PoolElement, PoolHandle};

use crate::io::{ConnId, RecvMeta};

/// Who may register a PE identifier that is registered over another live connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PeIdMove {
    /// Only when the old connection is gone or the PE failed its keep-alive. A registration
    /// that names a PE still held by a live connection is answered after a keep-alive probe
    /// of the holder: an acknowledgement refuses it (0xa), a failed probe moves the PE.
    #[default]
    WhenGone,
    /// Always: the last registration wins (RSPLIB; the old behaviour).
    Always,
}

impl PeIdMove {
    /// `when-gone` or `always`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "when-gone" => Some(PeIdMove::WhenGone),
            "always" => Some(PeIdMove::Always),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PeIdMove::WhenGone => "when-gone",
            PeIdMove::Always => "always",
        }
    }
}

/// Reach of a unicast address, lowest first (RSPLIB's `-minaddressscope` levels plus
/// link-local).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AddressScope {
    /// 127.0.0.0/8, ::1: only valid on the registrar's own host.
    #[default]
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), fc00::/7 (ULA), fec0::/10.
    SiteLocal,
    /// Everything else that is unicast.
    Global,
}

impl AddressScope {
    /// `loopback`, `link-local`, `site-local` or `global`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "loopback" => Some(AddressScope::Loopback),
            "link-local" => Some(AddressScope::LinkLocal),
            "site-local" => Some(AddressScope::SiteLocal),
            "global" => Some(AddressScope::Global),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            AddressScope::Loopback => "loopback",
            AddressScope::LinkLocal => "link-local",
            AddressScope::SiteLocal => "site-local",
            AddressScope::Global => "global",
        }
    }
}

/// The scope of a user transport address, or `None` when nobody can be reached at it:
/// unspecified (0.0.0.0/8, ::), broadcast (255.255.255.255), multicast (224/4, ff00::/8)
/// or reserved (240/4). An IPv4-mapped IPv6 address is judged as its IPv4 address.
pub fn scope_of(ip: IpAddr) -> Option<AddressScope> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => scope_v4(v4),
        IpAddr::V6(v6) => scope_v6(v6),
    }
}

fn scope_v4(a: Ipv4Addr) -> Option<AddressScope> {
    let o = a.octets();
    if o[0] == 0 || o[0] >= 224 {
        // "this network", multicast, reserved and the limited broadcast address.
        return None;
    }
    Some(if o[0] == 127 {
        AddressScope::Loopback
    } else if o[0] == 169 && o[1] == 254 {
        AddressScope::LinkLocal
    } else if o[0] == 10
        || (o[0] == 172 && (16..32).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 100 && (64..128).contains(&o[1]))
    {
        AddressScope::SiteLocal
    } else {
        AddressScope::Global
    })
}

fn scope_v6(a: Ipv6Addr) -> Option<AddressScope> {
    let s0 = a.segments()[0];
    if a.is_unspecified() || s0 & 0xff00 == 0xff00 {
        return None;
    }
    Some(if a.is_loopback() {
        AddressScope::Loopback
    } else if s0 & 0xffc0 == 0xfe80 {
        AddressScope::LinkLocal
    } else if s0 & 0xffc0 == 0xfec0 || s0 & 0xfe00 == 0xfc00 {
        AddressScope::SiteLocal
    } else {
        AddressScope::Global
    })
}

/// Whom a per-source quota counts: an IPv4 address, or the /64 prefix of an IPv6 address
/// (one host can use every address of its /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKey {
    V4(u32),
    V6Net(u64),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => SourceKey::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Why a registration was refused (for logs and counters; the cause code goes on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The PE carried an ASAP transport; the registrar fills it in (Discrepancy #28).
    AsapTransportGiven,
    /// Registration Life 0, or above `max_registration_life`.
    RegistrationLife,
    /// Port 0, or an unspecified, broadcast, multicast or reserved address.
    UnusableAddress,
    /// An SCTP or TCP Transport Use other than 0 (data only) or 1 (data plus control).
    TransportUse,
    /// An address below `min_address_scope`.
    AddressScope,
    /// A loopback address registered over a connection that does not come from loopback.
    LoopbackFromElsewhere,
    /// The PE identifier is registered over another live connection whose PE answers.
    IdentifierInUse,
    /// `max_pes_per_connection` PEs are registered over this connection.
    ConnectionQuota,
    /// `max_pes_per_source` PEs are registered from this source address.
    SourceQuota,
    /// `max_pes_per_identity` PEs are registered by this TLS identity.
    IdentityQuota,
    /// Over `max_registration_rate` registrations per second on this connection.
    ConnectionRate,
    /// Over `max_registration_rate_per_identity` registrations per second by this identity.
    IdentityRate,
    /// The pool holds `max_pes_per_pool` PEs.
    PoolFull,
    /// The handlespace holds `max_pes` PEs.
    HandlespaceFull,
    /// The handlespace's checks: handle, PE identifier, policy, transport consistency
    /// (the cause code says which).
    Handlespace,
    /// Not over TLS in secure mode, or no access rule lets this peer register there.
    Security,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::AsapTransportGiven => "the PE sent its own ASAP transport",
            Refusal::RegistrationLife => "registration life is 0 or above the maximum",
            Refusal::UnusableAddress => {
                "port 0 or an unspecified, broadcast, multicast or reserved address"
            }
            Refusal::TransportUse => "transport use is neither data-only nor data-plus-control",
            Refusal::AddressScope => "an address is below the minimum address scope",
            Refusal::LoopbackFromElsewhere => "a loopback address registered from another host",
            Refusal::IdentifierInUse => {
                "the PE identifier is registered over another live connection"
            }
            Refusal::ConnectionQuota => "too many PEs on this connection",
            Refusal::SourceQuota => "too many PEs from this source address",
            Refusal::IdentityQuota => "too many PEs registered by this TLS identity",
            Refusal::ConnectionRate => "too many registrations per second on this connection",
            Refusal::IdentityRate => "too many registrations per second by this TLS identity",
            Refusal::PoolFull => "the pool is full",
            Refusal::HandlespaceFull => "the handlespace is full",
            Refusal::Handlespace => "refused by the handlespace checks",
            Refusal::Security => "not allowed by the access policy (TLS, identity, pool)",
        })
    }
}

/// What became of an ASAP_ENDPOINT_UNREACHABLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportOutcome {
    /// Counted; a keep-alive probe went to the PE.
    Probing,
    /// Counted; a keep-alive towards the PE is already under way and decides.
    AwaitingKeepAlive,
    /// Counted; the PE answered a probe less than `keepalive_timeout` ago: no new probe.
    ProbeLimited,
    /// Counted, below `max_bad_pe_reports` (without probing).
    Counted,
    /// Counted; the PE belongs to another registrar, which probes it.
    NotOwned,
    /// Ignored: the reporting connection never resolved that pool.
    NotResolved,
    /// Not counted again (without probing): this connection already reported the PE.
    Repeated,
    /// Ignored: no such PE.
    UnknownPe,
}

impl fmt::Display for ReportOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReportOutcome::Probing => "probing the PE",
            ReportOutcome::AwaitingKeepAlive => "a keep-alive to the PE is under way",
            ReportOutcome::ProbeLimited => "the PE answered a probe moments ago",
            ReportOutcome::Counted => "counted",
            ReportOutcome::NotOwned => "counted; its home registrar probes it",
            ReportOutcome::NotResolved => "ignored: the reporter never resolved the pool",
            ReportOutcome::Repeated => "not counted again: the reporter already reported this PE",
            ReportOutcome::UnknownPe => "ignored: no such PE",
        })
    }
}

/// Pools a connection resolved (most recent last), for judging its reports.
pub(crate) const RESOLVED_POOLS_PER_CONN: usize = 32;
/// Registrations of held PE identifiers one connection may have waiting for a probe.
pub(crate) const PENDING_MOVES_PER_CONN: usize = 16;
/// Reporting connections remembered per PE (at least `max_bad_pe_reports`).
pub(crate) const REPORTERS_PER_PE: usize = 16;

/// Per-connection state (bounded).
#[derive(Debug, Default)]
pub(crate) struct ConnGuard {
    /// Pools this connection resolved with at least one PE in the answer.
    resolved: VecDeque<PoolHandle>,
    /// Registrations from this connection waiting for a probe of the holder.
    pub pending: Vec<(PoolHandle, PeId)>,
}

impl ConnGuard {
    pub fn note_resolved(&mut self, handle: &PoolHandle) {
        if self.resolved.iter().any(|h| h == handle) {
            return;
        }
        if self.resolved.len() >= RESOLVED_POOLS_PER_CONN {
            self.resolved.pop_front();
        }
        self.resolved.push_back(handle.clone());
    }
    pub fn has_resolved(&self, handle: &PoolHandle) -> bool {
        self.resolved.iter().any(|h| h == handle)
    }
    pub fn is_idle(&self) -> bool {
        self.resolved.is_empty() && self.pending.is_empty()
    }
}

/// A registration of a PE identifier held by another live connection, waiting for the
/// outcome of a keep-alive probe of the holder.
#[derive(Debug, Clone)]
pub(crate) struct PendingMove {
    pub conn: ConnId,
    pub meta: RecvMeta,
    pub handle: PoolHandle,
    pub pe: PoolElement,
}

/// Per-PE state (only for PEs that were reported or claimed; dropped when it has nothing
/// left to remember).
#[derive(Debug, Default)]
pub(crate) struct PeGuard {
    /// Connections whose reports counted since the PE last answered a keep-alive.
    pub reporters: Vec<ConnId>,
    /// Counted reports wait for the keep-alive under way: its failure is "unreachable".
    pub probing: bool,
    /// The last keep-alive sent because of a report or a claim (one per keep-alive
    /// timeout at most).
    pub last_probe: Option<Instant>,
    /// A registration of this PE's identifier from another connection.
    pub pending: Option<PendingMove>,
}

/// Per-PE state by pool and PE identifier (looked up by `&PoolHandle`, no clone).
#[derive(Debug, Default)]
pub(crate) struct PeGuards(BTreeMap<PoolHandle, BTreeMap<PeId, PeGuard>>);

impl PeGuards {
    pub fn get(&self, handle: &PoolHandle, id: PeId) -> Option<&PeGuard> {
        self.0.get(handle)?.get(&id)
    }
    pub fn get_mut(&mut self, handle: &PoolHandle, id: PeId) -> Option<&mut PeGuard> {
        self.0.get_mut(handle)?.get_mut(&id)
    }
    pub fn entry(&mut self, handle: &PoolHandle, id: PeId) -> &mut PeGuard {
        if !self.0.contains_key(handle) {
            self.0.insert(handle.clone(), BTreeMap::new());
        }
        self.0
            .get_mut(handle)
            .expect("inserted above")
            .entry(id)
            .or_default()
    }
    pub fn remove(&mut self, handle: &PoolHandle, id: PeId) -> Option<PeGuard> {
        let pool = self.0.get_mut(handle)?;
        let g = pool.remove(&id);
        if pool.is_empty() {
            self.0.remove(handle);
        }
        g
    }
    /// Drop the entry when it holds nothing that still matters at `now`.
    pub fn prune(
        &mut self,
        handle: &PoolHandle,
        id: PeId,
        now: Instant,
        window: std::time::Duration,
    ) {
        let done = self.get(handle, id).is_some_and(|g| {
            g.reporters.is_empty()
                && !g.probing
                && g.pending.is_none()
                && g.last_probe
                    .is_none_or(|t| now >= crate::common::later(t, window))
        });
        if done {
            self.remove(handle, id);
        }
    }
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn scopes() {
        for (a, want) in [
            ("127.0.0.1", Some(AddressScope::Loopback)),
            ("127.255.0.9", Some(AddressScope::Loopback)),
            ("::1", Some(AddressScope::Loopback)),
            ("::ffff:127.0.0.1", Some(AddressScope::Loopback)),
            ("169.254.1.1", Some(AddressScope::LinkLocal)),
            ("fe80::1", Some(AddressScope::LinkLocal)),
            ("10.1.2.3", Some(AddressScope::SiteLocal)),
            ("172.16.0.1", Some(AddressScope::SiteLocal)),
            ("172.31.255.1", Some(AddressScope::SiteLocal)),
            ("172.32.0.1", Some(AddressScope::Global)),
            ("192.168.1.1", Some(AddressScope::SiteLocal)),
            ("100.64.0.1", Some(AddressScope::SiteLocal)),
            ("fd00::1", Some(AddressScope::SiteLocal)),
            ("fec0::1", Some(AddressScope::SiteLocal)),
            ("8.8.8.8", Some(AddressScope::Global)),
            ("2001:db8::1", Some(AddressScope::Global)),
            ("::ffff:8.8.8.8", Some(AddressScope::Global)),
            ("0.0.0.0", None),
            ("0.1.2.3", None),
            ("::", None),
            ("255.255.255.255", None),
            ("224.0.0.1", None),
            ("239.0.0.50", None),
            ("240.0.0.1", None),
            ("ff02::1", None),
            ("ff0e::1", None),
            ("::ffff:224.0.0.1", None),
            ("::ffff:0.0.0.0", None),
        ] {
            assert_eq!(scope_of(ip(a)), want, "{a}");
        }
        assert!(AddressScope::Loopback < AddressScope::LinkLocal);
        assert!(AddressScope::SiteLocal < AddressScope::Global);
        for s in ["loopback", "link-local", "site-local", "global"] {
            assert_eq!(AddressScope::parse(s).map(AddressScope::name), Some(s));
        }
        assert_eq!(AddressScope::parse("sitelocal"), None);
    }

    #[test]
    fn source_keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(
            SourceKey::of(ip("2001:db8::1")),
            SourceKey::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8::1")),
            SourceKey::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:10.0.0.1")),
            SourceKey::of(ip("10.0.0.1"))
        );
        assert_ne!(SourceKey::of(ip("10.0.0.1")), SourceKey::of(ip("10.0.0.2")));
    }

    #[test]
    fn resolved_pools_are_bounded() {
        let mut g = ConnGuard::default();
        for i in 0..(RESOLVED_POOLS_PER_CONN + 5) {
            g.note_resolved(&PoolHandle::from(format!("p{i}").as_str()));
        }
        assert_eq!(g.resolved.len(), RESOLVED_POOLS_PER_CONN);
        assert!(!g.has_resolved(&PoolHandle::from("p0")));
        assert!(g.has_resolved(&PoolHandle::from(
            format!("p{}", RESOLVED_POOLS_PER_CONN + 4).as_str()
        )));
        g.note_resolved(&PoolHandle::from("p10"));
        assert_eq!(g.resolved.len(), RESOLVED_POOLS_PER_CONN);
    }
}
