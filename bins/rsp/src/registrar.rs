//! `rsp registrar`: the registrar daemon (ASAP over SCTP and TCP; announces by UDP
//! multicast).
//!
//! Settings come from built-in defaults, then the TOML file (`--config`), then flags —
//! every setting exists in all three places. Unknown TOML keys are errors naming the key;
//! `--validate` checks the settings and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rserpool::transport::TransportConfig;
use rserpool::url::parse_endpoint;
use rserpool_proto::handlespace::HandlespaceConfig;
use rserpool_proto::io::TransportProto;
use rserpool_proto::registrar::{AddressScope, PeIdMove};
use rserpool_proto::{ConnLimits, RegistrarConfig};
use rserpool_wire::{LifetimeUnit, ServerId, ASAP_PORT};
use serde::Deserialize;

use crate::args;
pub use rserpool::service::oplog::{limits_line, log_limits};
use rserpool::service::registrar::{self, DEFAULT_ADMIN};
pub use rserpool::service::registrar::{sctp_groups, Running};

/// Run a registrar (ENRP server) for pool elements and pool users over SCTP and TCP.
///
/// With no options it listens on sctp://[::]:3863 (every IPv4 and IPv6 address of the
/// host, multi-homed), tcp://0.0.0.0:3863 and tcp://[::]:3863, serves its handlespace to
/// `rsp dump` on 127.0.0.1:9990 and announces itself on 239.0.0.50:3863. On a kernel
/// without SCTP an SCTP listener is skipped with a warning as long as a TCP listener is
/// left; if only SCTP listeners were asked for, the registrar exits with status 2 and a
/// message saying the kernel has no SCTP.
/// On start it prints `rsp registrar: server id 0x… listening on URL… admin ADDR` on
/// stdout. SIGINT / SIGTERM stop it gracefully; SIGHUP re-reads the --config file (flags
/// still win), applies what can change at run time (limits, keep-alive timings, log
/// settings) and logs what changed and what needs a restart.
#[derive(Debug, Args)]
pub struct RegistrarArgs {
    /// TOML configuration file; its keys are the long flag names with `_` for `-`
    /// (e.g. `listen = ["tcp://0.0.0.0:3863"]`, `keepalive_interval = "3s"`).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration and flags, print the resulting settings, exit.
    #[arg(long)]
    pub validate: bool,
    #[command(flatten)]
    pub settings: Settings,
}

/// Every registrar setting: a flag and a TOML key each; unset = default.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Endpoint to listen on for ASAP (repeatable), e.g. sctp://0.0.0.0:3863,
    /// sctp://10.0.0.1,10.0.0.2:3863 (multi-homed), tcp://[::1]:0 (0 = ephemeral).
    /// SCTP endpoints on the same port form one multi-homed listener.
    /// Default: sctp://[::]:3863, tcp://0.0.0.0:3863 and tcp://[::]:3863.
    #[arg(long = "listen", short = 'l', value_name = "URL")]
    #[serde(default)]
    pub listen: Vec<String>,
    /// Admin listener for `rsp dump` (line-JSON over TCP, no authentication), or "off".
    /// A loopback address unless admin_allow_remote. Default 127.0.0.1:9990.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Server ID (hex 0x… or decimal). Default: random.
    #[arg(long, value_parser = args::integer)]
    #[serde(default, deserialize_with = "de_u32")]
    pub server_id: Option<u32>,
    /// Most simultaneous accepted connections. When full, a new connection takes the place
    /// of one without registered PEs (silent for over 1s first, else the one idle
    /// longest); only when every connection has PEs is it refused (1..1000000).
    /// Default 4096.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most simultaneous connections from one source address (IPv6: one /64); a new one
    /// beyond it replaces that source's connection without PEs idle longest. 0 = no cap.
    /// Default 512.
    #[arg(long, value_name = "N")]
    pub max_connections_per_source: Option<usize>,
    /// Close a connection without registered PEs after this long without a message
    /// (0 = never; connections with PEs are never closed for idleness). Default 30s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub idle_timeout: Option<Duration>,
    /// Messages queued towards one peer before it counts as stuck and is dropped
    /// (1..1000000). Default 1024.
    #[arg(long)]
    pub write_queue: Option<usize>,
    /// Longest pool handle accepted, in bytes. Default 64.
    #[arg(long)]
    pub max_handle_length: Option<usize>,
    /// Most PEs in the handlespace (1..100000000). Default 1000000.
    #[arg(long)]
    pub max_pes: Option<usize>,
    /// Unit of the Registration Life field: ms (RSPLIB, Wireshark) or s (RFC 5354).
    /// Default ms.
    #[arg(long, value_name = "ms|s")]
    pub lifetime_unit: Option<String>,
    /// Keep-alive period towards registered PEs (0 = no keep-alives, else 100ms..1h).
    /// Default 3s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub keepalive_interval: Option<Duration>,
    /// Wait this long for a keep-alive acknowledgement before removing a PE (100ms..1h).
    /// Default 2s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub keepalive_timeout: Option<Duration>,
    /// Without probing (--probe-on-unreachable=false): remove a PE once this many
    /// connections that resolved its pool reported it unreachable (1..1000). Default 3.
    #[arg(long)]
    pub max_bad_pe_reports: Option<u32>,
    /// Probe a PE reported unreachable with a keep-alive and remove it only if it does not
    /// answer (false: count reports as RSPLIB does). Default true.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub probe_on_unreachable: Option<bool>,
    /// Who may register a PE identifier registered over another live connection:
    /// when-gone (only once that connection closed or its PE failed a keep-alive probe)
    /// or always (the last registration wins, as in RSPLIB). Default when-gone.
    #[arg(long, value_name = "when-gone|always")]
    pub pe_id_move: Option<String>,
    /// Longest Registration Life accepted (0 = no limit; else at least 1s).
    /// Default 1h.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub max_registration_life: Option<Duration>,
    /// Lowest scope of a registered user address: loopback, link-local, site-local or
    /// global. Loopback addresses are only accepted over a loopback connection.
    /// Default loopback.
    #[arg(long, value_name = "SCOPE")]
    pub min_address_scope: Option<String>,
    /// Most PEs registered over one connection (0 = unlimited). Default 1000.
    #[arg(long)]
    pub max_pes_per_connection: Option<usize>,
    /// Most PEs registered from one source address (an IPv6 /64 counts as one), over all
    /// its connections (0 = unlimited). Default 10000.
    #[arg(long)]
    pub max_pes_per_source: Option<usize>,
    /// Most PEs in one pool (0 = unlimited). Default 100000.
    #[arg(long)]
    pub max_pes_per_pool: Option<usize>,
    /// PEs per handle resolution when the PU asks for no number (1..max_hr_items).
    /// Default 3.
    #[arg(long)]
    pub default_hr_items: Option<u32>,
    /// Put each PE's ASAP transport into handle resolution responses (RSPLIB leaves it
    /// out; its pool users accept both). Default true.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub hr_include_asap_transport: Option<bool>,
    /// Remove a PE as soon as its registration connection closes (RSPLIB). Default false.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub remove_pes_on_close: Option<bool>,
    /// Send ASAP_SERVER_ANNOUNCE by UDP multicast. Default true (`--announce=false`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub announce: Option<bool>,
    /// Announce multicast group. Default 239.0.0.50:3863.
    #[arg(long, value_name = "ADDR")]
    pub announce_group: Option<SocketAddr>,
    /// Announce period (100ms..1h). Default 1s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub announce_interval: Option<Duration>,
    /// Append every message sent and received as `label=HEX` lines to FILE (for
    /// rserpool-dissect). Also RSERPOOL_WIRE_LOG=FILE.
    #[arg(long, value_name = "FILE")]
    pub wire_log: Option<PathBuf>,
    /// Allow the admin listener on a non-loopback address. The admin channel has no
    /// authentication: anyone who reaches it reads the whole handlespace. Default false.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub admin_allow_remote: Option<bool>,
    /// Most PEs in one handle resolution response, whatever the PU asks for (1..1024).
    /// Default 128 (RSPLIB).
    #[arg(long)]
    pub max_hr_items: Option<u32>,
    /// Each keep-alive period is shortened by a random 0 to this many percent, to spread
    /// the probes (0..90). Default 25.
    #[arg(long, value_name = "PERCENT")]
    pub keepalive_jitter_percent: Option<u32>,
    /// Give up opening an outbound connection after this long (100ms..10m). Default 5s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub connect_timeout: Option<Duration>,
    /// TTL (hop limit) of the announces sent by multicast (0..255). Default 30.
    #[arg(long)]
    pub multicast_ttl: Option<u32>,
    /// Log filter: error, warn, info, debug, trace, or directives such as
    /// `info,rserpool=debug`. Default warn. Order of precedence: RUST_LOG, --log-level,
    /// -v, the `log_level` key.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log events as JSON lines (the `log_json` key; the flag is the global --log-json).
    /// Default false.
    #[arg(skip)]
    pub log_json: Option<bool>,
    /// At info level, a summary of the handlespace changes (registered, removed,
    /// rejected) this often when something changed; each PE's own events are at debug
    /// level. 0 = no summaries. Default 10s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub log_summary_interval: Option<Duration>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }
    let raw: Option<Raw> = Option::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(Raw::Text(s)) => args::parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Raw::Secs(v)) => args::parse_duration(&v.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn de_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Num(u32),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Num(v)) => Ok(Some(v)),
        Some(Raw::Text(s)) => args::integer(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

impl Settings {
    /// Flags (self) over the file's settings.
    fn over(self, file: Settings) -> Settings {
        Settings {
            listen: if self.listen.is_empty() {
                file.listen
            } else {
                self.listen
            },
            admin: self.admin.or(file.admin),
            server_id: self.server_id.or(file.server_id),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_source: self
                .max_connections_per_source
                .or(file.max_connections_per_source),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            write_queue: self.write_queue.or(file.write_queue),
            max_handle_length: self.max_handle_length.or(file.max_handle_length),
            max_pes: self.max_pes.or(file.max_pes),
            lifetime_unit: self.lifetime_unit.or(file.lifetime_unit),
            keepalive_interval: self.keepalive_interval.or(file.keepalive_interval),
            keepalive_timeout: self.keepalive_timeout.or(file.keepalive_timeout),
            max_bad_pe_reports: self.max_bad_pe_reports.or(file.max_bad_pe_reports),
            probe_on_unreachable: self.probe_on_unreachable.or(file.probe_on_unreachable),
            pe_id_move: self.pe_id_move.or(file.pe_id_move),
            max_registration_life: self.max_registration_life.or(file.max_registration_life),
            min_address_scope: self.min_address_scope.or(file.min_address_scope),
            max_pes_per_connection: self.max_pes_per_connection.or(file.max_pes_per_connection),
            max_pes_per_source: self.max_pes_per_source.or(file.max_pes_per_source),
            max_pes_per_pool: self.max_pes_per_pool.or(file.max_pes_per_pool),
            default_hr_items: self.default_hr_items.or(file.default_hr_items),
            hr_include_asap_transport: self
                .hr_include_asap_transport
                .or(file.hr_include_asap_transport),
            remove_pes_on_close: self.remove_pes_on_close.or(file.remove_pes_on_close),
            announce: self.announce.or(file.announce),
            announce_group: self.announce_group.or(file.announce_group),
            announce_interval: self.announce_interval.or(file.announce_interval),
            wire_log: self.wire_log.or(file.wire_log),
            admin_allow_remote: self.admin_allow_remote.or(file.admin_allow_remote),
            max_hr_items: self.max_hr_items.or(file.max_hr_items),
            keepalive_jitter_percent: self
                .keepalive_jitter_percent
                .or(file.keepalive_jitter_percent),
            connect_timeout: self.connect_timeout.or(file.connect_timeout),
            multicast_ttl: self.multicast_ttl.or(file.multicast_ttl),
            log_level: self.log_level.or(file.log_level),
            log_json: self.log_json.or(file.log_json),
            log_summary_interval: self.log_summary_interval.or(file.log_summary_interval),
        }
    }
}

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
    /// Load `--config` (if any) under the flags.
    pub fn load(flags: Settings, config: Option<&PathBuf>) -> anyhow::Result<Settings> {
        let Some(path) = config else {
            return Ok(flags);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // toml's message names the key (e.g. "unknown field `foo`"); one line with its
        // position, so it also fits a log line (SIGHUP).
        let file: Settings = toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or_else(String::new, |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = before.len() - start + 1;
                // The key of that line, when the message does not say it.
                let key = text[start..]
                    .split(['=', '\n'])
                    .next()
                    .map(str::trim)
                    .filter(|k| !k.is_empty() && text[start..].contains('='))
                    .filter(|k| !e.message().contains(k))
                    .map(|k| format!(" {k}:"))
                    .unwrap_or_default();
                format!(" line {line}, column {column}:{key}")
            });
            let message = e.message().trim().replace('\n', "; ");
            anyhow!("{}:{at} {message}", path.display())
        })?;
        Ok(flags.over(file))
    }

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
                TransportProto::Tcp | TransportProto::Mptcp | TransportProto::Sctp => {}
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
        if self.server_id == Some(0) {
            bail!("server_id 0 is reserved (\"not yet determined\")");
        }
        let write_queue = in_range(
            "write_queue",
            self.write_queue.unwrap_or(tr_defaults.write_queue),
            1,
            1_000_000,
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
            default_hr_items,
            max_hr_items,
            hr_include_asap_transport: self
                .hr_include_asap_transport
                .unwrap_or(defaults.hr_include_asap_transport),
            announce_group: announce.then(|| {
                self.announce_group
                    .unwrap_or(rserpool::transport::udp::ASAP_ANNOUNCE_GROUP)
            }),
            announce_interval,
            remove_pes_on_close: self
                .remove_pes_on_close
                .unwrap_or(defaults.remove_pes_on_close),
            ..defaults
        };
        // The core's limits decide; the shell's hard limit leaves room above them for
        // connections being closed (see rserpool_proto::conn_limits).
        let max_connections = connections.shell_limit();
        let core = RegistrarConfig {
            connections,
            ..core
        };
        let transport = TransportConfig {
            max_connections,
            write_queue,
            connect_timeout,
            multicast_ttl,
            ..tr_defaults
        };
        Ok(Resolved {
            service: registrar::ServiceConfig {
                listen,
                explicit_listen,
                admin,
                explicit_admin,
                core,
                transport,
                wire_log: self.wire_log.clone(),
                log_summary_interval,
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

pub use rserpool::service::human_duration;

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

impl Resolved {
    /// Every setting as `(key, TOML value)`; `None` = unset (printed as a comment). The
    /// listing with `key = value` lines is itself a valid `--config` file.
    pub fn listing(&self) -> Vec<(&'static str, Option<String>)> {
        let c = &self.core;
        let t = &self.transport;
        let d = |d: Duration| Some(toml_str(&human_duration(d)));
        // PE quotas: 0 = unlimited (kept as usize::MAX in the core).
        let limit = |v: usize| if v == usize::MAX { 0 } else { v }.to_string();
        let listen: Vec<String> = self
            .listen
            .iter()
            .map(|e| toml_str(&e.to_string()))
            .collect();
        vec![
            ("listen", Some(format!("[{}]", listen.join(", ")))),
            (
                "admin",
                Some(toml_str(
                    &self
                        .admin
                        .map_or_else(|| "off".to_owned(), |a| a.to_string()),
                )),
            ),
            (
                "admin_allow_remote",
                Some(self.admin_allow_remote.to_string()),
            ),
            ("server_id", c.server_id.map(|id| toml_str(&id.to_string()))),
            (
                "max_connections",
                Some(c.connections.max_connections.to_string()),
            ),
            (
                "max_connections_per_source",
                Some(c.connections.max_per_source.to_string()),
            ),
            (
                "idle_timeout",
                d(c.connections.idle_timeout.unwrap_or(Duration::ZERO)),
            ),
            ("write_queue", Some(t.write_queue.to_string())),
            ("connect_timeout", d(t.connect_timeout)),
            ("multicast_ttl", Some(t.multicast_ttl.to_string())),
            (
                "max_handle_length",
                Some(c.handlespace.max_handle_len.to_string()),
            ),
            ("max_pes", Some(c.handlespace.max_pes.to_string())),
            (
                "max_pes_per_pool",
                Some(limit(c.handlespace.max_pes_per_pool)),
            ),
            (
                "max_pes_per_connection",
                Some(limit(c.max_pes_per_connection)),
            ),
            ("max_pes_per_source", Some(limit(c.max_pes_per_source))),
            ("pe_id_move", Some(toml_str(c.pe_id_move.name()))),
            (
                "max_registration_life",
                d(c.max_registration_life.unwrap_or(Duration::ZERO)),
            ),
            (
                "min_address_scope",
                Some(toml_str(c.min_address_scope.name())),
            ),
            (
                "lifetime_unit",
                Some(toml_str(match c.lifetime_unit {
                    LifetimeUnit::Seconds => "s",
                    _ => "ms",
                })),
            ),
            (
                "keepalive_interval",
                d(c.keepalive_interval.unwrap_or(Duration::ZERO)),
            ),
            ("keepalive_timeout", d(c.keepalive_timeout)),
            (
                "keepalive_jitter_percent",
                Some(c.keepalive_jitter_percent.to_string()),
            ),
            ("max_bad_pe_reports", Some(c.max_bad_pe_reports.to_string())),
            (
                "probe_on_unreachable",
                Some(c.probe_on_unreachable.to_string()),
            ),
            ("default_hr_items", Some(c.default_hr_items.to_string())),
            ("max_hr_items", Some(c.max_hr_items.to_string())),
            (
                "hr_include_asap_transport",
                Some(c.hr_include_asap_transport.to_string()),
            ),
            (
                "remove_pes_on_close",
                Some(c.remove_pes_on_close.to_string()),
            ),
            ("announce", Some(c.announce_group.is_some().to_string())),
            (
                "announce_group",
                Some(toml_str(
                    &c.announce_group
                        .unwrap_or(rserpool::transport::udp::ASAP_ANNOUNCE_GROUP)
                        .to_string(),
                )),
            ),
            ("announce_interval", d(c.announce_interval)),
            (
                "wire_log",
                self.wire_log
                    .as_ref()
                    .map(|p| toml_str(&p.display().to_string())),
            ),
            ("log_level", Some(toml_str(&self.log_level))),
            ("log_json", Some(self.log_json.to_string())),
            (
                "log_summary_interval",
                d(self.log_summary_interval.unwrap_or(Duration::ZERO)),
            ),
        ]
    }

    /// The listing as text: `key = value` lines (a valid TOML file).
    pub fn listing_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.listing() {
            match v {
                Some(v) => out.push_str(&format!("{k} = {v}\n")),
                None => out.push_str(&format!(
                    "# {k}: {}\n",
                    if k == "server_id" {
                        "random (chosen at start)"
                    } else {
                        "off"
                    }
                )),
            }
        }
        out
    }
}

pub fn run(args: &RegistrarArgs, log: &crate::logging::LogArgs) -> anyhow::Result<ExitCode> {
    let flags = args.settings.clone().with_log_args(log);
    let settings =
        Settings::load(flags.clone(), args.config.as_ref()).map_err(crate::exit::usage)?;
    let resolved = settings.resolve().map_err(crate::exit::usage)?;
    if args.validate {
        println!("# configuration ok; the effective settings (usable as a --config file):");
        print!("{}", resolved.listing_text());
        return Ok(ExitCode::SUCCESS);
    }
    crate::logging::apply(&resolved.log_level, resolved.log_json).map_err(crate::exit::usage)?;
    raise_fd_limit(resolved.transport.max_connections);
    args::runtime()?.block_on(async {
        // From here on SIGHUP reloads instead of killing the process.
        let hangup = rserpool::signal::Hangup::new().context("cannot catch SIGHUP")?;
        let running = start(resolved.clone()).await?;
        println!("{}", startup_line(&running));
        let reload = Reload {
            flags,
            path: args.config.clone(),
            current: resolved,
        };
        serve(running, rserpool::signal::terminate(), hangup, reload).await;
        Ok(ExitCode::SUCCESS)
    })
}

impl Settings {
    /// The global `-v` and `--log-json` flags as the `log_level` / `log_json` settings
    /// (`--log-level` wins over `-v`).
    pub fn with_log_args(mut self, log: &crate::logging::LogArgs) -> Settings {
        if self.log_level.is_none() && log.verbose > 0 {
            self.log_level = Some(log.level().to_owned());
        }
        if log.log_json {
            self.log_json = Some(true);
        }
        self
    }
}

/// What SIGHUP re-reads: the `--config` file under the same flags.
pub struct Reload {
    pub flags: Settings,
    pub path: Option<PathBuf>,
    /// The settings in force.
    pub current: Resolved,
}

impl Reload {
    /// Re-read the file and apply what can change at run time; log one line saying what
    /// changed, and a warning for what needs a restart. An invalid file changes nothing.
    pub async fn reload(&mut self, running: &Running) {
        let Some(path) = self.path.clone() else {
            tracing::warn!("SIGHUP: the registrar was started without --config; nothing to reload");
            return;
        };
        let new = match Settings::load(self.flags.clone(), Some(&path)).and_then(|s| s.resolve()) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!("SIGHUP: {e:#}; configuration not reloaded, the running one stays");
                return;
            }
        };
        // What needs a restart (sockets, identity) keeps its running value; the rest
        // (the whole core configuration, the log settings) is applied.
        let cur = &self.current;
        let mut next = new.clone();
        next.listen = cur.listen.clone();
        next.explicit_listen = cur.explicit_listen;
        next.admin = cur.admin;
        next.explicit_admin = cur.explicit_admin;
        next.admin_allow_remote = cur.admin_allow_remote;
        next.core.server_id = cur.core.server_id;
        next.core.lifetime_unit = cur.core.lifetime_unit;
        next.transport = cur.transport.clone();
        // The shell's hard connection limit sits above the core's: both stay.
        next.core.connections.max_connections = cur.core.connections.max_connections;
        next.wire_log = cur.wire_log.clone();
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        for (((key, old), (_, now)), (_, wanted)) in cur
            .listing()
            .into_iter()
            .zip(next.listing())
            .zip(new.listing())
        {
            if old != now {
                applied.push(format!("{key} {} -> {}", show(&old), show(&now)));
            }
            if now != wanted {
                restart.push(format!("{key} {} -> {}", show(&now), show(&wanted)));
            }
        }
        if running
            .apply(next.core.clone(), next.log_summary_interval)
            .await
            .is_err()
        {
            return; // shutting down
        }
        let mut notes = String::new();
        match crate::logging::apply(&next.log_level, next.log_json) {
            Ok(crate::logging::Applied::FilterFromEnv)
                if applied.iter().any(|c| c.starts_with("log_level ")) =>
            {
                notes = " (RUST_LOG is set and keeps deciding the log filter)".into();
            }
            Ok(_) => {}
            Err(e) => tracing::error!("SIGHUP: log settings: {e:#}"),
        }
        self.current = next;
        if applied.is_empty() {
            tracing::info!(
                "SIGHUP: configuration reloaded from {}: nothing changed",
                path.display()
            );
        } else {
            tracing::info!(
                "SIGHUP: configuration reloaded from {}: {}{notes}",
                path.display(),
                applied.join(", ")
            );
        }
        if !restart.is_empty() {
            tracing::warn!(
                "SIGHUP: {} changed in {} but take effect only after a restart; the running \
                 values stay",
                restart.join(", "),
                path.display()
            );
        }
    }
}

/// Raise the soft open-file limit towards what the connection limit needs.
pub fn raise_fd_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let want = max_connections as u64 + 256;
    let cur = getrlimit(Resource::Nofile);
    let soft = cur.current.unwrap_or(u64::MAX);
    if soft >= want {
        return;
    }
    let target = cur.maximum.map_or(want, |hard| want.min(hard));
    let new = rustix::process::Rlimit {
        current: Some(target),
        maximum: cur.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) if target < max_connections as u64 => tracing::warn!(
            "open-file limit {target} is below what {max_connections} connections need"
        ),
        Ok(()) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit from {soft}: {e}"),
    }
}

/// Serve until `stop`, reloading the configuration at each SIGHUP; then shut down
/// gracefully.
pub async fn serve(
    running: Running,
    stop: impl std::future::Future<Output = ()>,
    mut hangup: rserpool::signal::Hangup,
    mut reload: Reload,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = hangup.recv() => reload.reload(&running).await,
        }
    }
    running.stop().await;
}

/// `rsp registrar: server id 0x… listening on URL… admin ADDR` (what scripts wait for).
pub fn startup_line(running: &Running) -> String {
    let eps: Vec<String> = running.endpoints.iter().map(ToString::to_string).collect();
    let admin = running
        .admin
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    format!(
        "rsp registrar: server id {} listening on {} admin {admin}",
        running.server_id,
        eps.join(" ")
    )
}

/// Bind everything and start the registrar service with these settings.
pub async fn start(cfg: Resolved) -> anyhow::Result<Running> {
    registrar::start(cfg.service).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserpool_proto::io::Endpoint;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn listen_urls_accept_sctp_and_default_to_both_transports() {
        let r = Settings::default().resolve().unwrap();
        assert!(!r.explicit_listen);
        let schemes: Vec<TransportProto> = r.listen.iter().map(|e| e.transport).collect();
        assert_eq!(
            schemes,
            vec![
                TransportProto::Sctp,
                TransportProto::Tcp,
                TransportProto::Tcp
            ]
        );
        let s = Settings {
            listen: vec![
                "sctp://10.0.0.1,10.0.0.2:3863".into(),
                "tcp://127.0.0.1:0".into(),
            ],
            hr_include_asap_transport: Some(false),
            ..Settings::default()
        };
        let r = s.resolve().unwrap();
        assert_eq!(
            r.listen[0],
            Endpoint::sctp(vec![sa("10.0.0.1:3863"), sa("10.0.0.2:3863")])
        );
        assert!(!r.core.hr_include_asap_transport);
        let bad = Settings {
            listen: vec!["udp://0.0.0.0:3863".into()],
            ..Settings::default()
        };
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn protection_settings_from_flags_and_toml_with_ranges_checked() {
        let r = Settings::default().resolve().unwrap();
        let d = RegistrarConfig::default();
        assert_eq!(r.core.pe_id_move, PeIdMove::WhenGone);
        assert_eq!(r.core.max_registration_life, d.max_registration_life);
        assert_eq!(r.core.min_address_scope, AddressScope::Loopback);
        assert_eq!(r.core.max_pes_per_connection, 1000);
        assert_eq!(r.core.max_pes_per_source, 10_000);
        assert_eq!(r.core.handlespace.max_pes_per_pool, 100_000);
        assert!(r.core.probe_on_unreachable);

        let file: Settings = toml::from_str(
            "pe_id_move = \"always\"\nmax_registration_life = \"10m\"\n\
             min_address_scope = \"site-local\"\nmax_pes_per_connection = 5\n\
             max_pes_per_source = 0\nmax_pes_per_pool = 0\nprobe_on_unreachable = false\n\
             max_bad_pe_reports = 4\n",
        )
        .unwrap();
        let flags = Settings {
            max_pes_per_connection: Some(7),
            ..Settings::default()
        };
        let r = flags.over(file).resolve().unwrap();
        assert_eq!(r.core.pe_id_move, PeIdMove::Always);
        assert_eq!(r.core.max_registration_life, Some(Duration::from_secs(600)));
        assert_eq!(r.core.min_address_scope, AddressScope::SiteLocal);
        assert_eq!(r.core.max_pes_per_connection, 7, "the flag wins");
        assert_eq!(r.core.max_pes_per_source, 0, "0 = unlimited");
        assert_eq!(
            r.core.handlespace.max_pes_per_pool,
            usize::MAX,
            "0 = unlimited"
        );
        assert!(!r.core.probe_on_unreachable);
        assert_eq!(r.core.max_bad_pe_reports, 4);
        let r = Settings {
            max_registration_life: Some(Duration::ZERO),
            ..Settings::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.core.max_registration_life, None, "0 = no limit");

        for (bad, field) in [
            (
                Settings {
                    pe_id_move: Some("sometimes".into()),
                    ..Settings::default()
                },
                "pe_id_move",
            ),
            (
                Settings {
                    min_address_scope: Some("sitelocal".into()),
                    ..Settings::default()
                },
                "min_address_scope",
            ),
            (
                Settings {
                    max_registration_life: Some(Duration::from_millis(500)),
                    ..Settings::default()
                },
                "max_registration_life",
            ),
            (
                Settings {
                    max_bad_pe_reports: Some(0),
                    ..Settings::default()
                },
                "max_bad_pe_reports",
            ),
        ] {
            let e = bad.resolve().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn toml_takes_sctp_listeners_and_the_hr_option() {
        let file: Settings = toml::from_str(
            "listen = [\"sctp://[::]:3863\", \"tcp://0.0.0.0:3863\"]\nhr_include_asap_transport = false\n",
        )
        .unwrap();
        let r = Settings::default().over(file).resolve().unwrap();
        assert_eq!(r.listen[0].transport, TransportProto::Sctp);
        assert!(!r.core.hr_include_asap_transport);
    }

    #[test]
    fn connection_limits_from_flags_and_toml() {
        // Defaults: the core's limits decide, the shell's hard limit sits above them.
        let r = Settings::default().resolve().unwrap();
        assert_eq!(r.core.connections, ConnLimits::default());
        assert!(r.transport.max_connections > r.core.connections.max_connections);
        let file: Settings = toml::from_str(
            "max_connections = 64\nmax_connections_per_source = 0\nidle_timeout = \"1s\"\n",
        )
        .unwrap();
        let r = Settings::default().over(file.clone()).resolve().unwrap();
        assert_eq!(
            r.core.connections,
            ConnLimits {
                max_connections: 64,
                max_per_source: 0,
                idle_timeout: Some(Duration::from_secs(1)),
            }
        );
        assert_eq!(r.transport.max_connections, 128);
        // Flags over the file; 0 turns the idle timeout off.
        let flags = Settings {
            idle_timeout: Some(Duration::ZERO),
            max_connections_per_source: Some(3),
            ..Settings::default()
        };
        let r = flags.over(file).resolve().unwrap();
        assert_eq!(r.core.connections.idle_timeout, None);
        assert_eq!(r.core.connections.max_per_source, 3);
        // Out of range: the error names the field.
        for (s, field) in [
            (
                Settings {
                    idle_timeout: Some(Duration::from_millis(5)),
                    ..Settings::default()
                },
                "idle_timeout",
            ),
            (
                Settings {
                    max_connections_per_source: Some(2_000_000),
                    ..Settings::default()
                },
                "max_connections_per_source",
            ),
            (
                Settings {
                    max_connections: Some(0),
                    ..Settings::default()
                },
                "max_connections",
            ),
        ] {
            let e = s.resolve().unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
