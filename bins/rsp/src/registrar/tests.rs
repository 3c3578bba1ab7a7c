//! Unit tests of the settings: flags over TOML, defaults, range checks.

use std::net::SocketAddr;
use std::time::Duration;

use rserpool_proto::io::TransportProto;
use rserpool_proto::registrar::{AddressScope, PeIdMove};
use rserpool_proto::{ConnLimits, RegistrarConfig};

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

#[test]
fn enrp_settings_from_flags_and_toml_with_ranges_checked() {
    use rserpool_proto::registrar::{EnrpConfig, TakeoverElection, DEFAULT_PRESENCE_GROUP};
    // Defaults: EnrpConfig's, and the three default ENRP listeners (not explicit).
    let r = Settings::default().resolve().unwrap();
    assert_eq!(r.core.enrp, EnrpConfig::default());
    assert!(!r.explicit_enrp_listen);
    assert_eq!(
        r.enrp_listen
            .iter()
            .map(|e| (e.transport, e.primary().map(|a| a.port())))
            .collect::<Vec<_>>(),
        vec![
            (TransportProto::Sctp, Some(9901)),
            (TransportProto::Tcp, Some(9901)),
            (TransportProto::Tcp, Some(9901))
        ]
    );
    let file: Settings = toml::from_str(
        r#"
        peer = ["tcp://10.0.0.2", "sctp://10.0.0.3:9902", "tcp://10.0.0.2:9901"]
        enrp_listen = ["tcp://127.0.0.1:0"]
        presence_group = "on"
        heartbeat_cycle = "200ms"
        max_time_last_heard = 0.5
        max_time_no_response = "300ms"
        takeover_expiry = "1s"
        mentor_discovery_timeout = 0
        max_pes_per_response = 500
        download_session_timeout = "2s"
        takeover_election = "highest"
        takeover_suggestion = true
        peer_only_listed = true
        rewrite_tcp_asap_for_sctp_peers = true
        "#,
    )
    .unwrap();
    // A flag wins over the file.
    let flags = Settings {
        takeover_election: Some("lowest".into()),
        ..Settings::default()
    };
    let r = flags.over(file).resolve().unwrap();
    let e = &r.core.enrp;
    assert_eq!(
        e.peers,
        vec![
            Endpoint::tcp(sa("10.0.0.2:9901")),
            Endpoint::sctp(vec![sa("10.0.0.3:9902")])
        ],
        "default port 9901, duplicates dropped"
    );
    assert!(r.explicit_enrp_listen);
    assert_eq!(r.enrp_listen, vec![Endpoint::tcp(sa("127.0.0.1:0"))]);
    assert_eq!(e.presence_group, Some(DEFAULT_PRESENCE_GROUP));
    assert_eq!(e.heartbeat_cycle, Duration::from_millis(200));
    assert_eq!(e.max_time_last_heard, Duration::from_millis(500));
    assert_eq!(e.max_time_no_response, Duration::from_millis(300));
    assert_eq!(e.takeover_expiry, Duration::from_secs(1));
    assert_eq!(e.mentor_discovery_timeout, Duration::ZERO);
    assert_eq!(e.max_pes_per_response, 500);
    assert_eq!(e.download_session_timeout, Duration::from_secs(2));
    assert_eq!(e.takeover_election, TakeoverElection::Lowest);
    assert!(e.takeover_suggestion);
    assert!(!e.accept_unlisted_peers);
    assert!(e.rewrite_tcp_asap_for_sctp_peers);
    // The listing is a config file that gives the same settings back.
    let listed: Settings = toml::from_str(&r.listing_text()).unwrap();
    assert_eq!(listed.resolve().unwrap().core.enrp, r.core.enrp);
    // ENRP off.
    let off = Settings {
        enrp_listen: vec!["off".into()],
        presence_group: Some("off".into()),
        ..Settings::default()
    }
    .resolve()
    .unwrap();
    assert!(off.enrp_listen.is_empty() && off.explicit_enrp_listen);
    assert_eq!(off.core.enrp.presence_group, None);
    let listed: Settings = toml::from_str(&off.listing_text()).unwrap();
    assert!(listed.resolve().unwrap().enrp_listen.is_empty());
    // Out of range or malformed: an error naming the setting.
    for (bad, key) in [
        (
            Settings {
                heartbeat_cycle: Some(Duration::from_millis(50)),
                ..Settings::default()
            },
            "heartbeat_cycle",
        ),
        (
            Settings {
                heartbeat_cycle: Some(Duration::from_secs(6)),
                ..Settings::default()
            },
            "max_time_last_heard",
        ),
        (
            Settings {
                max_time_no_response: Some(Duration::from_secs(7200)),
                ..Settings::default()
            },
            "max_time_no_response",
        ),
        (
            Settings {
                max_pes_per_response: Some(0),
                ..Settings::default()
            },
            "max_pes_per_response",
        ),
        (
            Settings {
                takeover_election: Some("oldest".into()),
                ..Settings::default()
            },
            "takeover_election",
        ),
        (
            Settings {
                presence_group: Some("10.0.0.1:9901".into()),
                ..Settings::default()
            },
            "presence_group",
        ),
        (
            Settings {
                peer: vec!["udp://10.0.0.1".into()],
                ..Settings::default()
            },
            "peer",
        ),
        (
            Settings {
                enrp_listen: vec!["off".into(), "tcp://127.0.0.1:0".into()],
                ..Settings::default()
            },
            "enrp_listen",
        ),
    ] {
        let err = format!("{:#}", bad.resolve().unwrap_err());
        assert!(err.contains(key), "{key}: {err}");
    }
}
