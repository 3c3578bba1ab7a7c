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
