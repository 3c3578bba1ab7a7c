//! Settings checked against their ranges and filled with defaults: [`Resolved`].

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rserpool::service::human_duration;
use rserpool::service::registrar::{self, DEFAULT_ADMIN};
use rserpool::transport::TransportConfig;
use rserpool::url::parse_endpoint;
use rserpool_proto::handlespace::HandlespaceConfig;
use rserpool_proto::io::{Endpoint, TransportProto};
use rserpool_proto::registrar::{
    AddressScope, EnrpConfig, PeIdMove, TakeoverElection, DEFAULT_PRESENCE_GROUP, ENRP_PORT,
};
use rserpool_proto::{ConnLimits, RegistrarConfig};
use rserpool_wire::{LifetimeUnit, ServerId, ASAP_PORT};

use super::Settings;
use crate::args;

/// Settings checked and filled with defaults: what the registrar service needs, plus what
/// only the CLI uses (reads of the service's fields go through `Deref`).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub service: registrar::ServiceConfig,
    /// The admin listener may be on a non-loopback address.
    pub admin_allow_remote: bool,
    /// Log filter directive (RUST_LOG, when set, overrides it).
    pub log_level: String,
    pub log_json: bool,
}

impl std::ops::Deref for Resolved {
    type Target = registrar::ServiceConfig;
    fn deref(&self) -> &Self::Target {
        &self.service
    }
}

impl std::ops::DerefMut for Resolved {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.service
    }
}

impl Settings {
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let explicit_listen = !self.listen.is_empty();
        let urls: Vec<String> = if explicit_listen {
            self.listen.clone()
        } else {
            registrar::DEFAULT_LISTEN.map(String::from).to_vec()
        };
        let mut listen = Vec::new();
        for u in &urls {
            let ep = parse_endpoint(u, ASAP_PORT).with_context(|| format!("listen {u:?}"))?;
            match ep.transport {
                TransportProto::Tcp
                | TransportProto::Mptcp
                | TransportProto::Sctp
                | TransportProto::Tls => {}
                TransportProto::Udp => {
                    bail!("listen {u:?}: ASAP listens on TCP (or SCTP), not UDP")
                }
            }
            listen.push(ep);
        }
        let (admin, explicit_admin) = match self.admin.as_deref() {
            Some("off") | Some("none") | Some("") => (None, true),
            Some(a) => (
                Some(
                    parse_endpoint(a, registrar::ADMIN_PORT)
                        .ok()
                        .and_then(|e| e.primary())
                        .ok_or_else(|| {
                            anyhow!("admin {a:?}: expected an address like 127.0.0.1:9990")
                        })?,
                ),
                true,
            ),
            None => (DEFAULT_ADMIN.parse().ok(), false),
        };
        let admin_allow_remote = self.admin_allow_remote.unwrap_or(false);
        if let Some(a) = admin.filter(|a| !a.ip().is_loopback()) {
            if !admin_allow_remote {
                bail!(
                    "admin {a}: not a loopback address, and the admin channel has no \
                     authentication (anyone reaching it reads the handlespace); use \
                     127.0.0.1 or ::1, or set admin_allow_remote = true \
                     (--admin-allow-remote) to accept that"
                );
            }
        }
        let lifetime_unit = match self.lifetime_unit.as_deref() {
            None => LifetimeUnit::Milliseconds,
            Some(s) => args::parse_lifetime_unit(s)
                .ok_or_else(|| anyhow!("lifetime_unit {s:?}: expected ms or s"))?,
        };
        let defaults = RegistrarConfig::default();
        let hs_defaults = HandlespaceConfig::default();
        let tr_defaults = TransportConfig::default();
        let max_handle_len = self.max_handle_length.unwrap_or(hs_defaults.max_handle_len);
        if max_handle_len == 0 || max_handle_len > 65_000 {
            bail!("max_handle_length {max_handle_len}: expected 1..65000");
        }
        let connections = self.connection_limits()?;
        let (enrp_listen, explicit_enrp_listen) = self.enrp_listen()?;
        let enrp = self.enrp_config()?;
        if self.server_id == Some(0) {
            bail!("server_id 0 is reserved (\"not yet determined\")");
        }
        let write_queue = in_range(
            "write_queue",
            self.write_queue.unwrap_or(tr_defaults.write_queue),
            1,
            1_000_000,
        )?;
        let max_message_len = in_range(
            "max_message_len",
            self.max_message_len.unwrap_or(tr_defaults.max_message_len),
            512,
            rserpool_wire::framing::DEFAULT_MAX_MESSAGE_LEN,
        )?;
        let max_pes = in_range(
            "max_pes",
            self.max_pes.unwrap_or(hs_defaults.max_pes),
            1,
            100_000_000,
        )?;
        let max_hr_items = in_range(
            "max_hr_items",
            self.max_hr_items.unwrap_or(defaults.max_hr_items),
            1,
            1024,
        )?;
        let default_hr_items = self.default_hr_items.unwrap_or(defaults.default_hr_items);
        if !(1..=max_hr_items).contains(&default_hr_items) {
            bail!(
                "default_hr_items (--default-hr-items) = {default_hr_items} is out of range: \
                 expected 1 to max_hr_items ({max_hr_items})"
            );
        }
        let keepalive_jitter_percent = in_range(
            "keepalive_jitter_percent",
            self.keepalive_jitter_percent
                .unwrap_or(u32::from(defaults.keepalive_jitter_percent)),
            0,
            90,
        )?;
        let multicast_ttl = in_range(
            "multicast_ttl",
            self.multicast_ttl.unwrap_or(tr_defaults.multicast_ttl),
            0,
            255,
        )?;
        let keepalive_interval = match self.keepalive_interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(duration_in_range(
                "keepalive_interval",
                d,
                MIN_PERIOD,
                HOUR,
                true,
            )?),
            None => defaults.keepalive_interval,
        };
        let keepalive_timeout = duration_in_range(
            "keepalive_timeout",
            self.keepalive_timeout.unwrap_or(defaults.keepalive_timeout),
            MIN_PERIOD,
            HOUR,
            false,
        )?;
        let keepalive_batch = match self.keepalive_batch.unwrap_or(defaults.keepalive_batch) {
            d if d.is_zero() => Duration::ZERO,
            d => duration_in_range("keepalive_batch", d, Duration::from_millis(10), HOUR, true)?,
        };
        let announce_interval = duration_in_range(
            "announce_interval",
            self.announce_interval.unwrap_or(defaults.announce_interval),
            MIN_PERIOD,
            HOUR,
            false,
        )?;
        let connect_timeout = duration_in_range(
            "connect_timeout",
            self.connect_timeout.unwrap_or(tr_defaults.connect_timeout),
            MIN_PERIOD,
            Duration::from_secs(600),
            false,
        )?;
        let log_summary_interval = match self
            .log_summary_interval
            .unwrap_or(rserpool::service::oplog::DEFAULT_SUMMARY_INTERVAL)
        {
            d if d.is_zero() => None,
            d => Some(duration_in_range(
                "log_summary_interval",
                d,
                Duration::from_secs(1),
                HOUR,
                true,
            )?),
        };
        let log_level = self.log_level.clone().unwrap_or_else(|| "warn".into());
        crate::logging::check_filter(&log_level)
            .with_context(|| format!("log_level {log_level:?}"))?;
        let announce = self.announce.unwrap_or(true);
        let max_bad_pe_reports = in_range(
            "max_bad_pe_reports",
            self.max_bad_pe_reports
                .unwrap_or(defaults.max_bad_pe_reports),
            1,
            1000,
        )?;
        let pe_id_move = match self.pe_id_move.as_deref() {
            None => defaults.pe_id_move,
            Some(s) => PeIdMove::parse(s)
                .ok_or_else(|| anyhow!("pe_id_move {s:?}: expected when-gone or always"))?,
        };
        let max_registration_life = match self.max_registration_life {
            None => defaults.max_registration_life,
            Some(d) if d.is_zero() => None,
            Some(d) if d < Duration::from_secs(1) => {
                bail!("max_registration_life {d:?}: expected 0 (no limit) or at least 1s")
            }
            Some(d) => Some(d),
        };
        let min_address_scope = match self.min_address_scope.as_deref() {
            None => defaults.min_address_scope,
            Some(s) => AddressScope::parse(s).ok_or_else(|| {
                anyhow!(
                    "min_address_scope {s:?}: expected loopback, link-local, site-local or global"
                )
            })?,
        };
        // 0 = unlimited for every PE quota.
        let unlimited = |v: usize| if v == 0 { usize::MAX } else { v };
        let core = RegistrarConfig {
            server_id: self.server_id.map(ServerId),
            handlespace: HandlespaceConfig {
                max_handle_len,
                max_pes,
                max_pes_per_pool: unlimited(
                    self.max_pes_per_pool
                        .unwrap_or(hs_defaults.max_pes_per_pool),
                ),
                ..hs_defaults
            },
            lifetime_unit,
            keepalive_interval,
            keepalive_timeout,
            keepalive_batch,
            keepalive_jitter_percent: u8::try_from(keepalive_jitter_percent).unwrap_or(90),
            max_bad_pe_reports,
            probe_on_unreachable: self
                .probe_on_unreachable
                .unwrap_or(defaults.probe_on_unreachable),
            pe_id_move,
            max_registration_life,
            min_address_scope,
            max_pes_per_connection: self
                .max_pes_per_connection
                .unwrap_or(defaults.max_pes_per_connection),
            max_pes_per_source: self
                .max_pes_per_source
                .unwrap_or(defaults.max_pes_per_source),
            max_hr_rate: self.max_hr_rate.unwrap_or(defaults.max_hr_rate),
            max_eu_rate: self.max_eu_rate.unwrap_or(defaults.max_eu_rate),
            max_pes_per_identity: self
                .max_pes_per_identity
                .unwrap_or(defaults.max_pes_per_identity),
            max_registration_rate: self
                .max_registration_rate
                .unwrap_or(defaults.max_registration_rate),
            max_registration_rate_per_identity: self
                .max_registration_rate_per_identity
                .unwrap_or(defaults.max_registration_rate_per_identity),
            max_subscriptions_per_connection: self
                .max_subscriptions_per_connection
                .unwrap_or(defaults.max_subscriptions_per_connection),
            max_subscriptions: self.max_subscriptions.unwrap_or(defaults.max_subscriptions),
            subscription_interval: self
                .subscription_interval
                .unwrap_or(defaults.subscription_interval),
            default_hr_items,
            max_hr_items,
            hr_include_asap_transport: self
                .hr_include_asap_transport
                .unwrap_or(defaults.hr_include_asap_transport),
            fast_resolutions: self.fast_resolutions.unwrap_or(defaults.fast_resolutions),
            announce_group: announce.then(|| {
                self.announce_group
                    .unwrap_or(rserpool::transport::udp::ASAP_ANNOUNCE_GROUP)
            }),
            announce_interval,
            remove_pes_on_close: self
                .remove_pes_on_close
                .unwrap_or(defaults.remove_pes_on_close),
            enrp,
            pe_control_tls: self.pe_control_tls.unwrap_or(defaults.pe_control_tls),
            access: rserpool_proto::registrar::AccessPolicy {
                require_tls: self.require_tls.unwrap_or(false),
                rules: self
                    .acl
                    .iter()
                    .map(|r| rserpool_proto::registrar::AccessRule {
                        identity: r.identity.clone(),
                        register: r.register.clone(),
                        resolve: r.resolve.clone(),
                        peer: r.peer,
                    })
                    .collect(),
            },
            ..defaults
        };
        // The core's limits decide; the shell's hard limit leaves room above them for
        // connections being closed (see rserpool_proto::conn_limits).
        let max_connections = connections.shell_limit();
        let core = RegistrarConfig {
            connections,
            ..core
        };
        let tls = self.tls_settings()?;
        let transport = TransportConfig {
            tls,
            max_connections,
            write_queue,
            max_message_len,
            connect_timeout,
            multicast_ttl,
            ..tr_defaults
        };
        Ok(Resolved {
            service: registrar::ServiceConfig {
                listen,
                explicit_listen,
                enrp_listen,
                explicit_enrp_listen,
                admin,
                explicit_admin,
                core,
                transport,
                wire_log: self.wire_log.clone(),
                log_summary_interval,
                dns: self.dns_view()?,
                csp: self.csp_reports()?,
            },
            admin_allow_remote,
            log_level,
            log_json: self.log_json.unwrap_or(false),
        })
    }
}

impl Settings {
    /// `max_connections`, `max_connections_per_source` and `idle_timeout`, checked.
    fn connection_limits(&self) -> anyhow::Result<ConnLimits> {
        let defaults = ConnLimits::default();
        let max_connections = self.max_connections.unwrap_or(defaults.max_connections);
        if !(1..=MAX_CONNECTIONS_RANGE).contains(&max_connections) {
            bail!("max_connections {max_connections}: expected 1..{MAX_CONNECTIONS_RANGE}");
        }
        let max_per_source = self
            .max_connections_per_source
            .unwrap_or(defaults.max_per_source);
        if max_per_source > MAX_CONNECTIONS_RANGE {
            bail!(
                "max_connections_per_source {max_per_source}: expected 0 (no cap) or 1..{MAX_CONNECTIONS_RANGE}"
            );
        }
        let idle_timeout = match self.idle_timeout {
            None => defaults.idle_timeout,
            Some(d) if d.is_zero() => None,
            Some(d) if d < Duration::from_millis(100) || d > Duration::from_secs(86_400) => {
                bail!(
                    "idle_timeout {}ms: expected 0 (never) or 100ms..24h",
                    d.as_millis()
                )
            }
            Some(d) => Some(d),
        };
        Ok(ConnLimits {
            max_connections,
            max_per_source,
            idle_timeout,
        })
    }
}

impl Settings {
    /// `enrp_listen`: the endpoints and whether the user gave them ("off" = none).
    fn enrp_listen(&self) -> anyhow::Result<(Vec<Endpoint>, bool)> {
        let off = |u: &str| matches!(u, "off" | "none" | "");
        if self.enrp_listen.iter().any(|u| off(u)) {
            if self.enrp_listen.len() > 1 {
                bail!("enrp_listen (--enrp-listen): \"off\" cannot be combined with endpoints");
            }
            return Ok((Vec::new(), true));
        }
        let explicit = !self.enrp_listen.is_empty();
        let urls: Vec<String> = if explicit {
            self.enrp_listen.clone()
        } else {
            registrar::DEFAULT_ENRP_LISTEN.map(String::from).to_vec()
        };
        let mut out = Vec::new();
        for u in &urls {
            out.push(enrp_endpoint("enrp_listen", u)?);
        }
        Ok((out, explicit))
    }

    /// The ENRP part of the core configuration, checked; defaults from
    /// [`EnrpConfig::default`].
    fn enrp_config(&self) -> anyhow::Result<EnrpConfig> {
        let d = EnrpConfig::default();
        let mut peers = Vec::new();
        for u in &self.peer {
            let ep = enrp_endpoint("peer", u)?;
            if !peers.contains(&ep) {
                peers.push(ep);
            }
        }
        let presence_group = match self.presence_group.as_deref() {
            None => d.presence_group,
            Some("off" | "none" | "") => None,
            Some("on") => Some(DEFAULT_PRESENCE_GROUP),
            Some(s) => {
                let a: std::net::SocketAddr = s.parse().map_err(|_| {
                    anyhow!(
                        "presence_group (--presence-group) {s:?}: expected a multicast \
                         ADDR:PORT such as 239.0.0.51:9901, on or off"
                    )
                })?;
                if !a.ip().is_multicast() || a.port() == 0 {
                    bail!(
                        "presence_group (--presence-group) {s:?}: not a multicast group \
                         with a port (e.g. 239.0.0.51:9901)"
                    );
                }
                Some(a)
            }
        };
        let period = |key: &str, v: Option<Duration>, def: Duration| {
            duration_in_range(key, v.unwrap_or(def), MIN_PERIOD, HOUR, false)
        };
        let heartbeat_cycle = period("heartbeat_cycle", self.heartbeat_cycle, d.heartbeat_cycle)?;
        let max_time_last_heard = period(
            "max_time_last_heard",
            self.max_time_last_heard,
            d.max_time_last_heard,
        )?;
        if max_time_last_heard <= heartbeat_cycle {
            bail!(
                "max_time_last_heard (--max-time-last-heard) = {} must be longer than \
                 heartbeat_cycle ({}): peers would be probed between two presences",
                human_duration(max_time_last_heard),
                human_duration(heartbeat_cycle)
            );
        }
        let mentor_discovery_timeout = match self
            .mentor_discovery_timeout
            .unwrap_or(d.mentor_discovery_timeout)
        {
            z if z.is_zero() => z,
            v => duration_in_range("mentor_discovery_timeout", v, MIN_PERIOD, HOUR, true)?,
        };
        let takeover_election = match self.takeover_election.as_deref() {
            None => d.takeover_election,
            Some("lowest") => TakeoverElection::Lowest,
            Some("highest") => TakeoverElection::Highest,
            Some(s) => {
                bail!("takeover_election (--takeover-election) {s:?}: expected highest or lowest")
            }
        };
        Ok(EnrpConfig {
            peers,
            presence_group,
            heartbeat_cycle,
            max_time_last_heard,
            max_time_no_response: period(
                "max_time_no_response",
                self.max_time_no_response,
                d.max_time_no_response,
            )?,
            takeover_expiry: period("takeover_expiry", self.takeover_expiry, d.takeover_expiry)?,
            mentor_discovery_timeout,
            max_pes_per_response: in_range(
                "max_pes_per_response",
                self.max_pes_per_response.unwrap_or(d.max_pes_per_response),
                1,
                MAX_PES_PER_RESPONSE,
            )?,
            download_session_timeout: period(
                "download_session_timeout",
                self.download_session_timeout,
                d.download_session_timeout,
            )?,
            takeover_election,
            takeover_suggestion: self.takeover_suggestion.unwrap_or(d.takeover_suggestion),
            accept_unlisted_peers: self
                .peer_only_listed
                .map_or(d.accept_unlisted_peers, |only| !only),
            rewrite_tcp_asap_for_sctp_peers: self
                .rewrite_tcp_asap_for_sctp_peers
                .unwrap_or(d.rewrite_tcp_asap_for_sctp_peers),
            ..d
        })
    }
}

/// An ENRP endpoint (`peer`, `enrp_listen`): TCP or SCTP, port default 9901.
fn enrp_endpoint(key: &str, u: &str) -> anyhow::Result<Endpoint> {
    let ep = parse_endpoint(u, ENRP_PORT)
        .with_context(|| format!("{key} (--{}) {u:?}", key.replace('_', "-")))?;
    match ep.transport {
        TransportProto::Tcp | TransportProto::Sctp | TransportProto::Tls => Ok(ep),
        TransportProto::Mptcp => {
            rserpool::transport::tcp::mptcp_available("use tcp:// instead of mptcp://")
                .with_context(|| format!("{key} (--{}) {u:?}", key.replace('_', "-")))?;
            Ok(ep)
        }
        TransportProto::Udp => bail!(
            "{key} (--{}) {u:?}: ENRP runs over tcp://, mptcp://, tls:// or sctp://",
            key.replace('_', "-")
        ),
    }
}

/// Upper end of `max_pes_per_response`: a response must fit one ENRP message (64 KiB).
const MAX_PES_PER_RESPONSE: usize = 1000;

/// Upper end of `max_connections` and `max_connections_per_source`.
const MAX_CONNECTIONS_RANGE: usize = 1_000_000;

/// Shortest period accepted for keep-alives, timeouts and announces.
const MIN_PERIOD: Duration = Duration::from_millis(100);
const HOUR: Duration = Duration::from_secs(3600);

/// `value` if within `lo..=hi`, else an error naming the setting (key and flag).
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    lo: T,
    hi: T,
) -> anyhow::Result<T> {
    if value < lo || value > hi {
        bail!(
            "{key} (--{}) = {value} is out of range: expected {lo} to {hi}",
            key.replace('_', "-")
        );
    }
    Ok(value)
}

/// `d` if within `lo..=hi`, else an error naming the setting; `zero_off` = 0 is allowed
/// (and handled by the caller) and said so in the message.
fn duration_in_range(
    key: &str,
    d: Duration,
    lo: Duration,
    hi: Duration,
    zero_off: bool,
) -> anyhow::Result<Duration> {
    if d < lo || d > hi {
        bail!(
            "{key} (--{}) = {} is out of range: expected {}{} to {}",
            key.replace('_', "-"),
            human_duration(d),
            if zero_off { "0 (off) or " } else { "" },
            human_duration(lo),
            human_duration(hi)
        );
    }
    Ok(d)
}

impl Settings {
    /// The `tls_*` settings, loaded; `None` when none is given.
    fn tls_settings(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<rserpool::transport::tls::TlsSettings>>> {
        use rserpool::transport::tls;
        if self.tls_cert.is_none() && self.tls_key.is_none() && self.tls_ca.is_empty() {
            return Ok(None);
        }
        let client_auth = match self.tls_client_auth.as_deref() {
            None => tls::ClientAuth::None,
            Some(m) => tls::ClientAuth::parse(m).ok_or_else(|| {
                anyhow!("tls_client_auth {m:?}: expected none, optional or required")
            })?,
        };
        let files = tls::TlsFiles {
            cert: self.tls_cert.as_ref().map(Into::into),
            key: self.tls_key.as_ref().map(Into::into),
            ca: self.tls_ca.iter().map(Into::into).collect(),
            client_auth,
            server_name: self.tls_server_name.clone(),
        };
        Ok(Some(tls::TlsSettings::load(files).context("TLS settings")?))
    }

    /// The `csp_*` settings (else `CSP_SERVER` / `CSP_INTERVAL`), checked; `None` = off.
    fn csp_reports(&self) -> anyhow::Result<Option<rserpool::service::csp::CspConfig>> {
        use rserpool::service::csp;
        let interval = match self.csp_interval.as_deref() {
            Some(i) => Some(csp::parse_interval(i).with_context(|| "csp_interval")?),
            None => None,
        };
        csp::CspConfig::from_args_or_env(self.csp_server.as_deref(), interval)
            .with_context(|| "csp_server")
    }

    /// The `dns*` settings (the registrar's DNS view), checked; `None` = off.
    fn dns_view(&self) -> anyhow::Result<Option<rserpool::service::dns::DnsConfig>> {
        use rserpool::service::dns;
        let Some(url) = self.dns.as_deref().filter(|u| *u != "off") else {
            return Ok(None);
        };
        let listen: std::net::SocketAddr = match url.strip_prefix("udp://") {
            Some(rest) => rest.parse(),
            None if url.contains("://") => {
                bail!("dns {url:?}: the DNS view listens on udp://ADDR:PORT")
            }
            None => url.parse(),
        }
        .map_err(|_| anyhow!("dns {url:?}: expected udp://ADDR:PORT, e.g. udp://[::]:5353"))?;
        let mut cfg = dns::DnsConfig::new(listen);
        if let Some(z) = &self.dns_zone {
            if !dns::valid_zone(z) {
                bail!("dns_zone {z:?}: expected DNS labels of letters, digits, '-', '_'");
            }
            cfg.zone.clone_from(z);
        }
        if let Some(t) = self.dns_ttl {
            cfg.ttl = in_range("dns_ttl", t, 0, 3600)?;
        }
        if let Some(n) = self.dns_max_answers {
            cfg.max_answers = in_range("dns_max_answers", n, 1, 64)?;
        }
        if let Some(r) = self.dns_rate_per_source {
            cfg.per_source_rate = r;
        }
        Ok(Some(cfg))
    }
}
