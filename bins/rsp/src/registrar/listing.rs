//! The `--validate` listing: every resolved setting as a TOML `key = value` line.

use std::time::Duration;

use rserpool::service::human_duration;
use rserpool_wire::LifetimeUnit;

use super::Resolved;

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
        let e = &c.enrp;
        let peers: Vec<String> = e.peers.iter().map(|p| toml_str(&p.to_string())).collect();
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
            ("max_message_len", Some(t.max_message_len.to_string())),
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
            ("max_hr_rate", Some(c.max_hr_rate.to_string())),
            ("max_eu_rate", Some(c.max_eu_rate.to_string())),
            ("max_pes_per_identity", Some(limit(c.max_pes_per_identity))),
            (
                "max_registration_rate",
                Some(c.max_registration_rate.to_string()),
            ),
            (
                "max_registration_rate_per_identity",
                Some(c.max_registration_rate_per_identity.to_string()),
            ),
            (
                "max_subscriptions_per_connection",
                Some(c.max_subscriptions_per_connection.to_string()),
            ),
            ("max_subscriptions", Some(c.max_subscriptions.to_string())),
            ("subscription_interval", d(c.subscription_interval)),
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
            ("keepalive_batch", d(c.keepalive_batch)),
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
            ("fast_resolutions", Some(c.fast_resolutions.to_string())),
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
                "enrp_listen",
                Some(if self.enrp_listen.is_empty() {
                    format!("[{}]", toml_str("off"))
                } else {
                    let eps: Vec<String> = self
                        .enrp_listen
                        .iter()
                        .map(|e| toml_str(&e.to_string()))
                        .collect();
                    format!("[{}]", eps.join(", "))
                }),
            ),
            ("peer", Some(format!("[{}]", peers.join(", ")))),
            (
                "presence_group",
                Some(toml_str(
                    &e.presence_group
                        .map_or_else(|| "off".to_owned(), |g| g.to_string()),
                )),
            ),
            ("heartbeat_cycle", d(e.heartbeat_cycle)),
            ("max_time_last_heard", d(e.max_time_last_heard)),
            ("max_time_no_response", d(e.max_time_no_response)),
            ("takeover_expiry", d(e.takeover_expiry)),
            ("mentor_discovery_timeout", d(e.mentor_discovery_timeout)),
            (
                "max_pes_per_response",
                Some(e.max_pes_per_response.to_string()),
            ),
            ("download_session_timeout", d(e.download_session_timeout)),
            (
                "takeover_election",
                Some(toml_str(e.takeover_election.name())),
            ),
            (
                "takeover_suggestion",
                Some(e.takeover_suggestion.to_string()),
            ),
            (
                "peer_only_listed",
                Some((!e.accept_unlisted_peers).to_string()),
            ),
            (
                "rewrite_tcp_asap_for_sctp_peers",
                Some(e.rewrite_tcp_asap_for_sctp_peers.to_string()),
            ),
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
            // ---- the DNS view ----
            (
                "dns",
                self.dns
                    .as_ref()
                    .map(|v| toml_str(&format!("udp://{}", v.listen))),
            ),
            ("dns_zone", Some(toml_str(&dns_view(self).zone))),
            ("dns_ttl", Some(dns_view(self).ttl.to_string())),
            (
                "dns_max_answers",
                Some(dns_view(self).max_answers.to_string()),
            ),
            (
                "dns_rate_per_source",
                Some(dns_view(self).per_source_rate.to_string()),
            ),
            // ---- access ----
            ("require_tls", Some(c.access.require_tls.to_string())),
            ("pe_control_tls", Some(c.pe_control_tls.to_string())),
            (
                "acl",
                Some(format!(
                    "[{}]",
                    c.access
                        .rules
                        .iter()
                        .map(|r| {
                            let l = |v: &[String]| {
                                v.iter().map(|x| toml_str(x)).collect::<Vec<_>>().join(", ")
                            };
                            format!(
                                "{{ identity = {}, register = [{}], resolve = [{}], peer = {} }}",
                                toml_str(&r.identity),
                                l(&r.register),
                                l(&r.resolve),
                                r.peer
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            // ---- TLS ----
            (
                "tls_cert",
                tls_files(self)
                    .and_then(|f| f.cert.as_ref().map(|p| toml_str(&p.display().to_string()))),
            ),
            (
                "tls_key",
                tls_files(self)
                    .and_then(|f| f.key.as_ref().map(|p| toml_str(&p.display().to_string()))),
            ),
            (
                "tls_ca",
                Some(format!(
                    "[{}]",
                    tls_files(self)
                        .map(|f| f
                            .ca
                            .iter()
                            .map(|p| toml_str(&p.display().to_string()))
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                )),
            ),
            (
                "tls_client_auth",
                Some(toml_str(
                    tls_files(self).map_or("none", |f| f.client_auth.name()),
                )),
            ),
            (
                "tls_server_name",
                tls_files(self).and_then(|f| f.server_name.as_deref().map(toml_str)),
            ),
            // ---- CSP reports ----
            (
                "csp_server",
                self.csp.as_ref().map(|c| toml_str(&c.server.to_string())),
            ),
            (
                "csp_interval",
                Some(toml_str(&format!(
                    "{}ms",
                    self.csp
                        .as_ref()
                        .map_or(rserpool::service::csp::DEFAULT_CSP_INTERVAL, |c| c.interval)
                        .as_millis()
                ))),
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

/// The TLS files, when TLS is configured.
fn tls_files(r: &Resolved) -> Option<&rserpool::transport::tls::TlsFiles> {
    r.transport.tls.as_deref().map(|t| t.files())
}

/// The DNS view's settings, or its defaults when it is off.
fn dns_view(r: &Resolved) -> rserpool::service::dns::DnsConfig {
    r.dns.clone().unwrap_or_else(|| {
        rserpool::service::dns::DnsConfig::new(std::net::SocketAddr::from((
            std::net::Ipv6Addr::UNSPECIFIED,
            5353,
        )))
    })
}
