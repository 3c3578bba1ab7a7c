//! Argument types shared by the network subcommands: durations, endpoints, policies,
//! registrar lists.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rserpool::link::RegistrarLink;
use rserpool::pe::PeOptions;
use rserpool::pu::PuOptions;
use rserpool::transport::udp::ASAP_ANNOUNCE_GROUP;
use rserpool::url::parse_endpoint;
use rserpool_proto::io::Endpoint;
use rserpool_wire::{Policy, PolicyType, ASAP_PORT};

/// A duration: `250ms`, `5s`, `2m`, `1h`, or a plain number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration (e.g. 500ms, 5s, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "s" | "sec" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => bail!("unknown time unit {u:?} in {s:?} (use ms, s, m or h)"),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        bail!("duration {s:?} out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// clap value parser for durations.
pub fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// clap value parser for ASAP endpoints (`tcp://127.0.0.1:3863`, `[::1]`, `sctp://…`).
pub fn asap_endpoint(s: &str) -> Result<Endpoint, String> {
    parse_endpoint(s, ASAP_PORT).map_err(|e| e.to_string())
}

/// Registrars to use (PE and PU side).
#[derive(Debug, Clone, Args)]
pub struct RegistrarArgs {
    /// A registrar to use, e.g. tcp://127.0.0.1:3863, tcp://[::1]:3863 (repeatable).
    /// Default: tcp://127.0.0.1:3863 and tcp://[::1]:3863, plus any registrar heard
    /// announcing itself on the announce group (a pool user waits up to 5 s for one
    /// before giving up).
    #[arg(long = "registrar", short = 'r', value_name = "URL", value_parser = asap_endpoint)]
    pub registrars: Vec<Endpoint>,
    /// Do not listen for registrar announces (multicast); use the given registrars only.
    #[arg(long)]
    pub no_announces: bool,
    /// Multicast group (ADDR:PORT) on which registrars announce themselves, as set with
    /// `rsp registrar --announce-group`. Default 239.0.0.50:3863.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_announces")]
    pub announce_group: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

/// TLS towards `tls://` registrars (and peers).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsClientArgs {
    /// Trust anchors (PEM) a tls:// registrar's certificate must chain to (repeatable).
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub ca: Vec<std::path::PathBuf>,
    /// Our certificate chain (PEM), offered for mutual TLS.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// The name the registrar's certificate must carry (default: the address connected
    /// to, which must then be an IP address subjectAltName of the certificate).
    #[arg(long = "tls-server-name", value_name = "NAME")]
    pub server_name: Option<String>,
}

impl TlsClientArgs {
    /// The loaded settings; `None` without any TLS flag.
    pub fn load(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<rserpool::transport::tls::TlsSettings>>> {
        if self.ca.is_empty() && self.cert.is_none() && self.server_name.is_none() {
            return Ok(None);
        }
        let files = rserpool::transport::tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
            client_auth: rserpool::transport::tls::ClientAuth::None,
            server_name: self.server_name.clone(),
        };
        Ok(Some(
            rserpool::transport::tls::TlsSettings::load(files).context("TLS settings")?,
        ))
    }
}

impl RegistrarArgs {
    pub fn endpoints(&self) -> Vec<Endpoint> {
        if !self.registrars.is_empty() {
            return self.registrars.clone();
        }
        default_registrars()
    }

    /// The announce group listened on (None: announces not used).
    pub fn group(&self) -> Option<SocketAddr> {
        (!self.no_announces).then(|| self.announce_group.unwrap_or(ASAP_ANNOUNCE_GROUP))
    }

    /// The registrar link of a PE or PU: the one mapping of these flags (fails on
    /// unreadable TLS files).
    pub fn link(&self) -> anyhow::Result<RegistrarLink> {
        let tls = self.tls.load()?;
        if tls.is_none()
            && self
                .endpoints()
                .iter()
                .any(|e| e.transport == rserpool_proto::io::TransportProto::Tls)
        {
            bail!("a tls:// registrar needs trust anchors (--tls-ca FILE)");
        }
        if let Some(e) = self
            .endpoints()
            .into_iter()
            .find(|e| e.transport == rserpool_proto::io::TransportProto::Mptcp)
        {
            rserpool::transport::tcp::mptcp_available("use tcp:// instead of mptcp://")
                .with_context(|| format!("registrar {e}"))?;
        }
        Ok(RegistrarLink {
            registrars: self.endpoints(),
            announce_group: self.group(),
            connect_timeout: None,
            tls,
        })
    }

    /// Registrars and announces of a pool user.
    pub fn pu_options(&self, opts: PuOptions) -> anyhow::Result<PuOptions> {
        Ok(opts.link(self.link()?))
    }

    /// Registrars and announces of a pool element.
    pub fn pe_options(&self, opts: PeOptions) -> anyhow::Result<PeOptions> {
        Ok(opts.link(self.link()?))
    }

    /// The registrars tried, in words: `known` (configured, then announced ones) and
    /// whether any was heard announcing itself.
    pub fn describe(&self, known: &[Endpoint]) -> String {
        rserpool::service::call::describe_registrars(known, &self.endpoints(), self.group())
    }
}

/// tcp://127.0.0.1:3863 and tcp://[::1]:3863.
pub fn default_registrars() -> Vec<Endpoint> {
    ["127.0.0.1:3863", "[::1]:3863"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .map(Endpoint::tcp)
        .collect()
}

/// Longest pool handle RSPLIB handles: its registrar and tools abort on longer ones.
pub const RSPLIB_MAX_HANDLE: usize = 32;

/// Warn (stderr) when `pool` is longer than RSPLIB accepts; ours take up to the
/// registrar's `--max-handle-length`.
pub fn warn_long_handle(cmd: &str, pool: &str) {
    let n = pool.len();
    if n > RSPLIB_MAX_HANDLE {
        eprintln!(
            "rsp {cmd}: warning: pool handle {pool:?} is {n} bytes long; RSPLIB registrars and \
             pool users accept at most {RSPLIB_MAX_HANDLE} bytes (longer handles make them abort)"
        );
    }
}

/// A load or degradation: a percentage (`25%`, `12.5%`) or a raw 32-bit value
/// (`0x40000000`, `1073741824`); 100 % = 0xFFFFFFFF.
pub fn fraction(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("bad percentage {s:?}"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("percentage {s:?} not within 0-100%"));
        }
        return Ok((v / 100.0 * f64::from(u32::MAX)).round() as u32);
    }
    integer(s)
}

/// A 32-bit integer, decimal or 0x-hex.
pub fn integer(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a 32-bit number"))
}

/// The pool member selection policy of a PE and its values.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Selection policy: rr, wrr, rand, wrand, prio, lu, lud, plu, rlu, rplu, rlud, plud,
    /// rplud, wrand-dpf, lu-dpf, lud-dpf, plu-dpf, plud-dpf.
    #[arg(long, default_value = "rr", value_name = "NAME")]
    pub policy: String,
    /// Weight (wrr, wrand, wrand-dpf).
    #[arg(long, default_value = "1", value_parser = integer)]
    pub weight: u32,
    /// Priority (prio).
    #[arg(long, default_value = "0", value_parser = integer)]
    pub priority: u32,
    /// Load, e.g. 25% or 0x40000000 (least-used family).
    #[arg(long, default_value = "0", value_parser = fraction)]
    pub load: u32,
    /// Load degradation per selection, e.g. 1% (…-degradation / plu family).
    #[arg(long, default_value = "0", value_parser = fraction)]
    pub degradation: u32,
    /// Distance penalty factor (…-dpf policies), raw 32-bit value.
    #[arg(long, default_value = "0", value_parser = integer)]
    pub dpf: u32,
    /// Distance in ms (…-dpf policies).
    #[arg(long, default_value = "0", value_parser = integer)]
    pub distance: u32,
}

impl PolicyArgs {
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let ty = PolicyType::from_short_name(&self.policy).ok_or_else(|| {
            let names: Vec<&str> = PolicyType::all().filter_map(|t| t.short_name()).collect();
            anyhow!(
                "unknown policy {:?}; known: {}",
                self.policy,
                names.join(", ")
            )
        })?;
        let values: Vec<u32> = match ty {
            PolicyType::ROUND_ROBIN | PolicyType::RANDOM => vec![],
            PolicyType::WEIGHTED_ROUND_ROBIN | PolicyType::WEIGHTED_RANDOM => vec![self.weight],
            PolicyType::PRIORITY => vec![self.priority],
            PolicyType::LEAST_USED | PolicyType::RANDOMIZED_LEAST_USED => vec![self.load],
            PolicyType::WEIGHTED_RANDOM_DPF => vec![self.weight, self.dpf, self.distance],
            PolicyType::LEAST_USED_DPF => vec![self.load, self.dpf, self.distance],
            PolicyType::LEAST_USED_DEGRADATION_DPF
            | PolicyType::PRIORITY_LEAST_USED_DPF
            | PolicyType::PRIORITY_LEAST_USED_DEGRADATION_DPF => {
                vec![self.load, self.degradation, self.dpf, self.distance]
            }
            _ => vec![self.load, self.degradation],
        };
        Policy::from_values(ty, &values)
            .ok_or_else(|| anyhow!("policy {:?} cannot be built", self.policy))
    }
}

/// A tokio runtime for a network subcommand.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The unit of the Registration Life field, as every subcommand spells it: `ms`
/// (RSPLIB, Wireshark; also `milliseconds`) or `s` (RFC 5354; also `seconds`).
pub fn parse_lifetime_unit(s: &str) -> Option<rserpool_wire::LifetimeUnit> {
    match s {
        "ms" | "milliseconds" => Some(rserpool_wire::LifetimeUnit::Milliseconds),
        "s" | "seconds" => Some(rserpool_wire::LifetimeUnit::Seconds),
        _ => None,
    }
}

/// clap value parser for `--lifetime-unit`.
pub fn lifetime_unit(s: &str) -> Result<rserpool_wire::LifetimeUnit, String> {
    parse_lifetime_unit(s).ok_or_else(|| format!("{s:?}: expected ms or s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn fractions() {
        assert_eq!(fraction("0%"), Ok(0));
        assert_eq!(fraction("100%"), Ok(u32::MAX));
        assert_eq!(fraction("0x10"), Ok(16));
        assert!(fraction("101%").is_err());
    }

    #[test]
    fn policies() {
        let p = |name: &str, load: u32| PolicyArgs {
            policy: name.into(),
            weight: 3,
            priority: 1,
            load,
            degradation: 0,
            dpf: 0,
            distance: 0,
        };
        assert_eq!(p("rr", 0).policy().unwrap(), Policy::RoundRobin);
        assert_eq!(
            p("wrr", 0).policy().unwrap(),
            Policy::WeightedRoundRobin { weight: 3 }
        );
        assert_eq!(p("lu", 9).policy().unwrap(), Policy::LeastUsed { load: 9 });
        assert!(p("nope", 0).policy().is_err());
    }
}

/// Component Status Protocol reports to RSPLIB's cspmonitor (PEs and pool users).
#[derive(Debug, Clone, Default, Args)]
pub struct CspArgs {
    /// Send status reports to RSPLIB's cspmonitor at ADDR[:PORT] (port 2960 by default);
    /// the environment variable CSP_SERVER does the same. Default off.
    #[arg(long, value_name = "ADDR")]
    pub csp_server: Option<String>,
    /// Interval of the status reports: milliseconds as RSPLIB (1000) or with a unit
    /// (500ms, 2s); the environment variable CSP_INTERVAL does the same. Default 1s.
    #[arg(long, value_name = "MS")]
    pub csp_interval: Option<String>,
}

impl CspArgs {
    /// A pool user's reporter (when configured): `label: N what`, N counted by the caller.
    pub async fn pool_user(
        &self,
        label: String,
        what: &'static str,
        count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> anyhow::Result<Option<rserpool::service::csp::CspReporter>> {
        let Some(cfg) = self.config().map_err(crate::exit::usage)? else {
            return Ok(None);
        };
        let status = move || {
            format!(
                "{label}: {} {what}",
                count.load(std::sync::atomic::Ordering::Relaxed)
            )
        };
        Ok(Some(
            rserpool::service::csp::spawn_pu_reporter(cfg, &[], status).await?,
        ))
    }

    /// The reporter's settings (flags, else environment); `None` = off.
    pub fn config(&self) -> anyhow::Result<Option<rserpool::service::csp::CspConfig>> {
        use rserpool::service::csp;
        let interval = match self.csp_interval.as_deref() {
            Some(i) => Some(csp::parse_interval(i).context("--csp-interval")?),
            None => None,
        };
        csp::CspConfig::from_args_or_env(self.csp_server.as_deref(), interval)
            .context("--csp-server")
    }
}
