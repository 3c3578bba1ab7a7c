//! Endpoint URLs: `tcp://127.0.0.1:3863`, `tcp://[::1]:3863`, `sctp://10.0.0.1:3863`,
//! `sctp://10.0.0.1,10.0.0.2:3863` (multi-homed: one port for all addresses),
//! `mptcp://…`, `udp://239.0.0.50:3863`.
//!
//! The port may be left out (the caller supplies the default, e.g. 3863 for ASAP). A bare
//! `host:port` without scheme means TCP. Host names are resolved with the system resolver.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use rserpool_proto::io::{Endpoint, TransportProto};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("unknown scheme {0:?} (expected tcp, sctp, mptcp or udp)")]
    Scheme(String),
    #[error("no address in {0:?}")]
    Empty(String),
    #[error("bad port in {0:?}")]
    Port(String),
    #[error("cannot resolve {0:?}")]
    Resolve(String),
    #[error("{0:?}: only SCTP endpoints may list several addresses")]
    MultiAddress(String),
}

/// Parse an endpoint URL; `default_port` fills a missing port.
pub fn parse_endpoint(url: &str, default_port: u16) -> Result<Endpoint, UrlError> {
    let (transport, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme_of(scheme)?, rest),
        None => (TransportProto::Tcp, url),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(UrlError::Empty(url.to_owned()));
    }
    // Forms: `a,b,c:port`, `[v6],[v6]:port`, `a:p1,b:p2`. An item without a port takes
    // the port of the last item that has one, else the default.
    let items = split_list(rest)
        .map(|item| split_port(item, url))
        .collect::<Result<Vec<_>, _>>()?;
    let port = items
        .iter()
        .rev()
        .find_map(|(_, p)| *p)
        // TLS has its own ports, one above the plain ones: ASAP-TLS 3864, ENRP-TLS 9902.
        .unwrap_or(if transport == TransportProto::Tls {
            default_port.saturating_add(1)
        } else {
            default_port
        });
    // A host name with several addresses: SCTP keeps them all (multi-homing), the others
    // keep the first, like a connect would.
    let keep = if transport == TransportProto::Sctp {
        usize::MAX
    } else {
        1
    };
    let mut addrs = Vec::new();
    for (host, item_port) in &items {
        let found = resolve_host(host, item_port.unwrap_or(port), url)?;
        addrs.extend(found.into_iter().take(keep));
    }
    if addrs.is_empty() {
        return Err(UrlError::Empty(url.to_owned()));
    }
    if transport != TransportProto::Sctp && addrs.len() > 1 {
        return Err(UrlError::MultiAddress(url.to_owned()));
    }
    Ok(Endpoint { transport, addrs })
}

fn scheme_of(s: &str) -> Result<TransportProto, UrlError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "tcp" | "asap" => TransportProto::Tcp,
        "sctp" => TransportProto::Sctp,
        "mptcp" => TransportProto::Mptcp,
        "tls" => TransportProto::Tls,
        "udp" => TransportProto::Udp,
        _ => return Err(UrlError::Scheme(s.to_owned())),
    })
}

/// Split `host:port` / `[v6]:port` / `host` / `v6` (unbracketed, no port).
fn split_port<'a>(s: &'a str, url: &str) -> Result<(&'a str, Option<u16>), UrlError> {
    if let Some(end) = s.rfind(']') {
        let tail = &s[end + 1..];
        return match tail.strip_prefix(':') {
            Some(p) => Ok((&s[..=end], Some(port_of(p, url)?))),
            None if tail.is_empty() => Ok((s, None)),
            None => Err(UrlError::Port(url.to_owned())),
        };
    }
    match s.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address without port.
        Some((h, _)) if h.contains(':') => Ok((s, None)),
        Some((h, p)) if !p.contains(',') => Ok((h, Some(port_of(p, url)?))),
        _ => Ok((s, None)),
    }
}

fn port_of(p: &str, url: &str) -> Result<u16, UrlError> {
    p.parse().map_err(|_| UrlError::Port(url.to_owned()))
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

fn resolve_host(host: &str, port: u16, url: &str) -> Result<Vec<SocketAddr>, UrlError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|_| UrlError::Resolve(url.to_owned()))?
        .collect();
    if found.is_empty() {
        return Err(UrlError::Resolve(url.to_owned()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forms() {
        let e = parse_endpoint("tcp://127.0.0.1:3863", 1).unwrap();
        assert_eq!(e, Endpoint::tcp(sa("127.0.0.1:3863")));
        let e = parse_endpoint("tcp://[::1]:4000", 1).unwrap();
        assert_eq!(e, Endpoint::tcp(sa("[::1]:4000")));
        let e = parse_endpoint("tcp://[::1]", 3863).unwrap();
        assert_eq!(e, Endpoint::tcp(sa("[::1]:3863")));
        let e = parse_endpoint("::1", 3863).unwrap();
        assert_eq!(e, Endpoint::tcp(sa("[::1]:3863")));
        let e = parse_endpoint("10.0.0.1", 3863).unwrap();
        assert_eq!(e, Endpoint::tcp(sa("10.0.0.1:3863")));
        let e = parse_endpoint("sctp://10.0.0.1,10.0.0.2:9", 3863).unwrap();
        assert_eq!(e, Endpoint::sctp(vec![sa("10.0.0.1:9"), sa("10.0.0.2:9")]));
        let e = parse_endpoint("sctp://[::1],127.0.0.1:9", 3863).unwrap();
        assert_eq!(e, Endpoint::sctp(vec![sa("[::1]:9"), sa("127.0.0.1:9")]));
        let e = parse_endpoint("mptcp://1.2.3.4:5", 3863).unwrap();
        assert_eq!(e.transport, TransportProto::Mptcp);
        // Display round trip.
        let e = parse_endpoint("sctp://10.0.0.1,10.0.0.2:9", 3863).unwrap();
        assert_eq!(parse_endpoint(&e.to_string(), 1).unwrap(), e);
    }

    #[test]
    fn sctp_forms() {
        // Wildcards, default port, one port for several addresses, per-address ports.
        let e = parse_endpoint("sctp://0.0.0.0", 3863).unwrap();
        assert_eq!(e, Endpoint::sctp(vec![sa("0.0.0.0:3863")]));
        let e = parse_endpoint("SCTP://[::]:9901/", 3863).unwrap();
        assert_eq!(e, Endpoint::sctp(vec![sa("[::]:9901")]));
        let e = parse_endpoint("sctp://10.0.0.1:1,10.0.0.2:2", 3863).unwrap();
        assert_eq!(e, Endpoint::sctp(vec![sa("10.0.0.1:1"), sa("10.0.0.2:2")]));
        let e = parse_endpoint("sctp://10.0.0.1, 10.0.0.2", 3863).unwrap();
        assert_eq!(
            e,
            Endpoint::sctp(vec![sa("10.0.0.1:3863"), sa("10.0.0.2:3863")])
        );
        let e = parse_endpoint("sctp://::1", 3863).unwrap();
        assert_eq!(e, Endpoint::sctp(vec![sa("[::1]:3863")]));
        assert_eq!(e.to_string(), "sctp://[::1]:3863");
        assert!(matches!(
            parse_endpoint("sctp://10.0.0.1:70000", 1),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            parse_endpoint("sctp://", 1),
            Err(UrlError::Empty(_))
        ));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_endpoint("http://1.2.3.4", 1),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            parse_endpoint("tcp://1.2.3.4:99999", 1),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            parse_endpoint("tcp://", 1),
            Err(UrlError::Empty(_))
        ));
        assert!(matches!(
            parse_endpoint("tcp://1.2.3.4,5.6.7.8:1", 1),
            Err(UrlError::MultiAddress(_))
        ));
    }
}
