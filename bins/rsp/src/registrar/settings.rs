//! The registrar's settings as flags and TOML keys: loading `--config` under the flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use serde::Deserialize;

use crate::args;

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
    /// HTTP admin endpoint (JSON API, /metrics, /healthz, /readyz, event stream,
    /// dashboard at /; what `rsp dump` and `rsp monitor` read; no authentication), or
    /// "off". `--http` and the TOML key `http` are the same setting. A loopback address
    /// unless admin_allow_remote. Default 127.0.0.1:9990.
    #[arg(long, visible_alias = "http", value_name = "ADDR")]
    #[serde(alias = "http")]
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
    /// Longest ASAP or ENRP message accepted, in bytes (512..65535): a TCP or TLS
    /// connection whose next message claims more (or a length below 4) is closed, an
    /// SCTP message over it is dropped; each counted. Applies to peers' ENRP messages too.
    /// Default 65535 (the length field's maximum).
    #[arg(long, value_name = "BYTES")]
    pub max_message_len: Option<usize>,
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
    /// Batch keep-alives per connection on a grid of this period (0 = off, else
    /// 10ms..1h): a PE's next keep-alive moves earlier onto its connection's grid, so a
    /// connection's keep-alives leave together. Default 500ms.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub keepalive_batch: Option<Duration>,
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
    /// Handle resolutions per second accepted from one source address (an IPv6 /64
    /// counts as one); over it a pool user is answered Unknown Pool Handle (0x9), as
    /// RSPLIB's -maxhrrate. 0 = unlimited. Default 0.
    #[arg(long, value_name = "PER_SECOND")]
    pub max_hr_rate: Option<u32>,
    /// Unreachability reports per second heard from one source address; more are
    /// ignored, as RSPLIB's -maxeurate. 0 = unlimited. Default 0.
    #[arg(long, value_name = "PER_SECOND")]
    pub max_eu_rate: Option<u32>,
    /// Most PEs registered by one TLS identity (the first name of its client
    /// certificate), over all its connections (0 = unlimited). Default 10000.
    #[arg(long)]
    pub max_pes_per_identity: Option<usize>,
    /// Registrations (re-registrations included) per second accepted over one
    /// connection; over it refused with Lack of Resources (0x6). 0 = unlimited.
    /// Default 1000.
    #[arg(long, value_name = "PER_SECOND")]
    pub max_registration_rate: Option<u32>,
    /// Registrations per second accepted from one TLS identity over all its
    /// connections; over it refused with 0x6. 0 = unlimited. Default 10000.
    #[arg(long, value_name = "PER_SECOND")]
    pub max_registration_rate_per_identity: Option<u32>,
    /// Handle resolution subscriptions (S flag): most pools one connection may subscribe
    /// to; over it the PU is answered A = 0 and keeps its stale timer. 0 = no
    /// subscriptions. Default 256.
    #[arg(long)]
    pub max_subscriptions_per_connection: Option<usize>,
    /// Most subscriptions in all (over it: A = 0). Default 100000.
    #[arg(long)]
    pub max_subscriptions: Option<usize>,
    /// A subscribed pool is pushed to its subscribers at most once per this interval:
    /// the first change after a quiet interval at once, later ones together when it
    /// ends. Default 1s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub subscription_interval: Option<Duration>,
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
    /// Answer plain handle resolutions of small round-robin and random pools from copies
    /// in the connection readers, outside the core's lock (`docs/shell.md`). Default true.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub fast_resolutions: Option<bool>,
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
    /// A peer registrar to speak ENRP with (repeatable), e.g. tcp://10.0.0.2:9901 or
    /// sctp://10.0.0.2:9901 (RSPLIB). Port default 9901. Default: none (a lone
    /// registrar, unless peers are learnt from the presence group or connect to us).
    #[arg(long = "peer", value_name = "URL")]
    #[serde(default)]
    pub peer: Vec<String>,
    /// Endpoint to listen on for ENRP from peer registrars (repeatable), or "off".
    /// TCP carries ENRP messages back to back, SCTP with PPID 12. The ENRP port has no
    /// authentication: bind it to a private network or use --peer-only-listed.
    /// Default: sctp://[::]:9901, tcp://0.0.0.0:9901 and tcp://[::]:9901 (one that
    /// cannot be bound is a warning).
    #[arg(long = "enrp-listen", value_name = "URL")]
    #[serde(default)]
    pub enrp_listen: Vec<String>,
    /// Multicast group (ADDR:PORT) for ENRP presences (sent every heartbeat cycle; peers
    /// heard there are added), "on" for 239.0.0.51:9901 (RSPLIB), or "off". Default off.
    #[arg(long, value_name = "ADDR|on|off")]
    pub presence_group: Option<String>,
    /// PEER-HEARTBEAT-CYCLE: a presence to every peer this often, randomised by
    /// +-12.5 % (100ms..1h). Default 2444ms (RSPLIB; RFC 5353: 30s).
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub heartbeat_cycle: Option<Duration>,
    /// MAX-TIME-LAST-HEARD: a peer silent this long is probed (longer than
    /// heartbeat_cycle, up to 1h). Default 5s (RSPLIB; RFC 5353: 61s).
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub max_time_last_heard: Option<Duration>,
    /// MAX-TIME-NO-RESPONSE: wait this long for a probed peer's answer (or a mentor's)
    /// before taking it for dead (100ms..1h). Default 5s (RSPLIB and RFC 5353).
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub max_time_no_response: Option<Duration>,
    /// Wait this long for every peer's INIT_TAKEOVER_ACK, then give the takeover up
    /// (100ms..1h). Default 5s (RSPLIB).
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub takeover_expiry: Option<Duration>,
    /// At start, listen this long for a mentor to download the handlespace from before
    /// serving alone (0 = do not wait, up to 1h). Default 5s (RSPLIB).
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub mentor_discovery_timeout: Option<Duration>,
    /// Most PEs in one HANDLE_TABLE_RESPONSE (1..1000). Default 128 (RSPLIB).
    #[arg(long, value_name = "N")]
    pub max_pes_per_response: Option<usize>,
    /// Drop a peer's handle table download whose next request does not come within
    /// this (100ms..1h). Default 5s.
    #[arg(long, value_parser = args::duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub download_session_timeout: Option<Duration>,
    /// Who wins when two registrars take over the same dead peer: lowest server ID
    /// (RSPLIB) or highest (RFC 5353). Default lowest.
    #[arg(long, value_name = "highest|lowest")]
    pub takeover_election: Option<String>,
    /// Send and honour takeover suggestions (T flag on ADD_PE). Default false (RSPLIB).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub takeover_suggestion: Option<bool>,
    /// Speak ENRP only with the --peer registrars and those they list; messages from
    /// any other server are dropped (counted in `rsp dump`). Default false (RFC 5353:
    /// any sender becomes a peer).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub peer_only_listed: Option<bool>,
    /// In handle updates and tables sent to SCTP peers, give a PE's TCP ASAP transport
    /// as an SCTP one (same address and port), for peers that read nothing else there.
    /// Default true (RSPLIB's handlespace refuses a PE whose ASAP transport is not SCTP).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub rewrite_tcp_asap_for_sctp_peers: Option<bool>,
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
    // ---- the DNS view (rserpool::service::dns) ----
    /// Answer DNS queries for the pools (A, AAAA, SRV of POOL.<dns_zone>, PEs chosen by
    /// the pool's policy) on this UDP address, e.g. udp://[::]:5353; or "off".
    /// Default off.
    #[arg(long, value_name = "URL")]
    pub dns: Option<String>,
    /// Zone of the DNS view. Default pool.rserpool.
    #[arg(long, value_name = "NAME")]
    pub dns_zone: Option<String>,
    /// TTL of the DNS view's answers, in seconds (0..3600). Default 5.
    #[arg(long, value_name = "SECONDS")]
    pub dns_ttl: Option<u32>,
    /// Most PEs in one DNS answer (1..64). Default 8.
    #[arg(long, value_name = "N")]
    pub dns_max_answers: Option<usize>,
    /// DNS queries per second accepted from one source address (IPv6: one /64); more
    /// are dropped (0 = no limit). Default 2000.
    #[arg(long, value_name = "N")]
    pub dns_rate_per_source: Option<u32>,
    // ---- TLS (rserpool::transport::tls) ----
    /// Our certificate chain (PEM) for tls:// listeners (ASAP-TLS 3864, ENRP-TLS 9902)
    /// and, towards peers, for mutual TLS. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// The private key (PEM) of tls_cert. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Trust anchors (PEM) for peers' and clients' certificates (repeatable).
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub tls_ca: Vec<String>,
    /// Client certificates on tls:// listeners: none, optional or required (mutual TLS).
    /// Default none.
    #[arg(long, value_name = "MODE")]
    pub tls_client_auth: Option<String>,
    /// The name peers' certificates must carry (default: the address connected to).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Secure mode ("all or nothing", RFC 5355 threat 2.15): registrations and
    /// de-registrations not over TLS are refused with 0xa, ENRP not over TLS is dropped.
    /// Default false.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub require_tls: Option<bool>,
    /// Reach PEs' ASAP control endpoints (after a takeover) over TLS: the PE's
    /// certificate must chain to --tls-ca and carry the address connected to (an
    /// iPAddress subjectAltName) or --tls-server-name. Default false.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub pe_control_tls: Option<bool>,
    /// An access rule (repeatable; TOML: [[acl]] tables with the same keys), e.g.
    /// "identity=pe1.example register=EchoPool,Web* resolve=*" or "identity=anonymous
    /// resolve=Public*" or "identity=r2.example peer". identity: a certificate name, "*"
    /// (any verified certificate) or anonymous (no certificate). With rules, what no rule
    /// grants is refused (0xa). Default: no rules (everything allowed).
    #[arg(long = "acl", value_name = "RULE", value_parser = parse_acl_rule)]
    #[serde(default)]
    pub acl: Vec<AclRule>,
    // ---- Component Status Protocol reports (rserpool::service::csp) ----
    /// Send status reports to RSPLIB's cspmonitor at ADDR[:PORT] (port 2960 by default);
    /// the environment variable CSP_SERVER does the same. Default off.
    #[arg(long, value_name = "ADDR")]
    pub csp_server: Option<String>,
    /// Interval of the status reports: milliseconds as RSPLIB (1000) or with a unit
    /// (500ms, 2s); the environment variable CSP_INTERVAL does the same. Default 1s.
    #[arg(long, value_name = "MS")]
    pub csp_interval: Option<String>,
}

/// One access rule, from a flag (`identity=NAME register=A,B* resolve=* peer`) or a
/// TOML table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub identity: String,
    #[serde(default)]
    pub register: Vec<String>,
    #[serde(default)]
    pub resolve: Vec<String>,
    #[serde(default)]
    pub peer: bool,
}

/// clap value parser for `--acl`.
pub fn parse_acl_rule(s: &str) -> Result<AclRule, String> {
    let mut rule = AclRule::default();
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for word in s.split_whitespace() {
        match word.split_once('=') {
            Some(("identity", v)) => rule.identity = v.to_owned(),
            Some(("register", v)) => rule.register.extend(list(v)),
            Some(("resolve", v)) => rule.resolve.extend(list(v)),
            None if word == "peer" => rule.peer = true,
            _ => {
                return Err(format!(
                    "{word:?} in access rule {s:?}: expected identity=NAME, register=POOLS, \
                     resolve=POOLS or peer"
                ))
            }
        }
    }
    if rule.identity.is_empty() {
        return Err(format!(
            "access rule {s:?} names no identity (identity=NAME)"
        ));
    }
    Ok(rule)
}

/// A TOML value given as a string or as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOr<N> {
    Text(String),
    Num(N),
}

/// An optional value given as text (parsed by `text`) or as a number (converted by `num`).
fn de_text_or<'de, D, N, T, E>(
    d: D,
    text: impl Fn(&str) -> Result<T, E>,
    num: impl Fn(N) -> Result<T, E>,
) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    N: Deserialize<'de>,
    E: std::fmt::Display,
{
    match Option::<TextOr<N>>::deserialize(d)? {
        None => Ok(None),
        Some(TextOr::Text(s)) => text(&s).map(Some).map_err(serde::de::Error::custom),
        Some(TextOr::Num(v)) => num(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A duration as text (`"3s"`) or as a number of seconds.
fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_text_or(d, args::parse_duration, |secs: f64| {
        args::parse_duration(&secs.to_string())
    })
}

/// A u32 as a number or as text (hex 0x… or decimal).
fn de_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de_text_or(d, args::integer, |v: u32| Ok::<_, String>(v))
}

impl Settings {
    /// Flags (self) over the file's settings.
    pub(super) fn over(self, file: Settings) -> Settings {
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
            max_message_len: self.max_message_len.or(file.max_message_len),
            max_handle_length: self.max_handle_length.or(file.max_handle_length),
            max_pes: self.max_pes.or(file.max_pes),
            lifetime_unit: self.lifetime_unit.or(file.lifetime_unit),
            keepalive_interval: self.keepalive_interval.or(file.keepalive_interval),
            keepalive_timeout: self.keepalive_timeout.or(file.keepalive_timeout),
            keepalive_batch: self.keepalive_batch.or(file.keepalive_batch),
            max_bad_pe_reports: self.max_bad_pe_reports.or(file.max_bad_pe_reports),
            probe_on_unreachable: self.probe_on_unreachable.or(file.probe_on_unreachable),
            pe_id_move: self.pe_id_move.or(file.pe_id_move),
            max_registration_life: self.max_registration_life.or(file.max_registration_life),
            min_address_scope: self.min_address_scope.or(file.min_address_scope),
            max_pes_per_connection: self.max_pes_per_connection.or(file.max_pes_per_connection),
            max_pes_per_source: self.max_pes_per_source.or(file.max_pes_per_source),
            max_hr_rate: self.max_hr_rate.or(file.max_hr_rate),
            max_eu_rate: self.max_eu_rate.or(file.max_eu_rate),
            max_pes_per_identity: self.max_pes_per_identity.or(file.max_pes_per_identity),
            max_registration_rate: self.max_registration_rate.or(file.max_registration_rate),
            max_registration_rate_per_identity: self
                .max_registration_rate_per_identity
                .or(file.max_registration_rate_per_identity),
            max_subscriptions_per_connection: self
                .max_subscriptions_per_connection
                .or(file.max_subscriptions_per_connection),
            max_subscriptions: self.max_subscriptions.or(file.max_subscriptions),
            subscription_interval: self.subscription_interval.or(file.subscription_interval),
            max_pes_per_pool: self.max_pes_per_pool.or(file.max_pes_per_pool),
            default_hr_items: self.default_hr_items.or(file.default_hr_items),
            hr_include_asap_transport: self
                .hr_include_asap_transport
                .or(file.hr_include_asap_transport),
            fast_resolutions: self.fast_resolutions.or(file.fast_resolutions),
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
            peer: if self.peer.is_empty() {
                file.peer
            } else {
                self.peer
            },
            enrp_listen: if self.enrp_listen.is_empty() {
                file.enrp_listen
            } else {
                self.enrp_listen
            },
            presence_group: self.presence_group.or(file.presence_group),
            heartbeat_cycle: self.heartbeat_cycle.or(file.heartbeat_cycle),
            max_time_last_heard: self.max_time_last_heard.or(file.max_time_last_heard),
            max_time_no_response: self.max_time_no_response.or(file.max_time_no_response),
            takeover_expiry: self.takeover_expiry.or(file.takeover_expiry),
            mentor_discovery_timeout: self
                .mentor_discovery_timeout
                .or(file.mentor_discovery_timeout),
            max_pes_per_response: self.max_pes_per_response.or(file.max_pes_per_response),
            download_session_timeout: self
                .download_session_timeout
                .or(file.download_session_timeout),
            takeover_election: self.takeover_election.or(file.takeover_election),
            takeover_suggestion: self.takeover_suggestion.or(file.takeover_suggestion),
            peer_only_listed: self.peer_only_listed.or(file.peer_only_listed),
            rewrite_tcp_asap_for_sctp_peers: self
                .rewrite_tcp_asap_for_sctp_peers
                .or(file.rewrite_tcp_asap_for_sctp_peers),
            log_level: self.log_level.or(file.log_level),
            log_json: self.log_json.or(file.log_json),
            log_summary_interval: self.log_summary_interval.or(file.log_summary_interval),
            dns: self.dns.or(file.dns),
            dns_zone: self.dns_zone.or(file.dns_zone),
            dns_ttl: self.dns_ttl.or(file.dns_ttl),
            dns_max_answers: self.dns_max_answers.or(file.dns_max_answers),
            dns_rate_per_source: self.dns_rate_per_source.or(file.dns_rate_per_source),
            require_tls: self.require_tls.or(file.require_tls),
            pe_control_tls: self.pe_control_tls.or(file.pe_control_tls),
            acl: if self.acl.is_empty() {
                file.acl
            } else {
                self.acl
            },
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_ca: if self.tls_ca.is_empty() {
                file.tls_ca
            } else {
                self.tls_ca
            },
            tls_client_auth: self.tls_client_auth.or(file.tls_client_auth),
            tls_server_name: self.tls_server_name.or(file.tls_server_name),
            csp_server: self.csp_server.or(file.csp_server),
            csp_interval: self.csp_interval.or(file.csp_interval),
        }
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
