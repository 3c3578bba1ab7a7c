//! Who may do what at this registrar (RFC 5355 threats 2.2–2.6 and 2.15): an access
//! policy over the identities peers proved with TLS client certificates
//! ([`PeerIdentity`], filled in by the shell).
//!
//! - **Secure mode** (`require_tls`, "all or nothing", threat 2.15): registrations and
//!   de-registrations that do not arrive over TLS are refused with cause 0xa (Rejected
//!   due to security considerations), and ENRP messages that do not arrive over TLS are
//!   dropped (counted). Handle resolutions are not state changes: plaintext ones follow
//!   the rules below (the rule for `anonymous`).
//! - **Rules**: with none, every connection may do everything (secure mode aside). With
//!   rules, an action is allowed when a rule that matches the peer grants it. A rule's
//!   `identity` is a certificate name (a subjectAltName DNS name or IP address, or the
//!   subject common name; case-insensitive), `*` for any verified certificate, or
//!   `anonymous` for a peer without one. Pool handles are listed exactly, as a prefix
//!   (`Web*`), or `*` for all.
//! - A PE may de-register only itself: that is the registrar's older rule (a PE held by
//!   another live connection is not de-registered by proxy), which holds with or without
//!   TLS.

use rserpool_wire::PoolHandle;

use crate::io::{PeerIdentity, RecvMeta, TransportProto};

/// One access rule (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccessRule {
    /// A certificate name, `*` (any verified certificate) or `anonymous`.
    pub identity: String,
    /// Pool handles it may register PEs in (and de-register them from).
    pub register: Vec<String>,
    /// Pool handles it may resolve.
    pub resolve: Vec<String>,
    /// It may be a peer registrar (ENRP).
    pub peer: bool,
}

/// The registrar's access policy.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccessPolicy {
    /// Registrations, de-registrations and ENRP only over TLS.
    pub require_tls: bool,
    pub rules: Vec<AccessRule>,
}

/// Whether `pattern` (exact, `prefix*`, or `*`) names `handle`.
pub fn handle_matches(pattern: &str, handle: &PoolHandle) -> bool {
    let h = handle.as_bytes();
    match pattern.strip_suffix('*') {
        Some(prefix) => h.starts_with(prefix.as_bytes()),
        None => h == pattern.as_bytes(),
    }
}

fn identity_matches(rule: &str, who: Option<&PeerIdentity>) -> bool {
    match (rule, who) {
        ("anonymous", None) => true,
        ("anonymous", Some(_)) | (_, None) => false,
        ("*", Some(_)) => true,
        (name, Some(id)) => id.names.iter().any(|n| n.eq_ignore_ascii_case(name)),
    }
}

impl AccessPolicy {
    fn tls(meta: &RecvMeta) -> bool {
        meta.transport == TransportProto::Tls
    }

    fn rules_for<'a>(&'a self, meta: &'a RecvMeta) -> impl Iterator<Item = &'a AccessRule> {
        self.rules
            .iter()
            .filter(move |r| identity_matches(&r.identity, meta.identity.as_deref()))
    }

    /// May this peer register (or de-register) PEs in `handle`?
    pub fn may_register(&self, meta: &RecvMeta, handle: &PoolHandle) -> bool {
        if self.require_tls && !Self::tls(meta) {
            return false;
        }
        self.rules.is_empty()
            || self
                .rules_for(meta)
                .any(|r| r.register.iter().any(|p| handle_matches(p, handle)))
    }

    /// May this peer resolve `handle`?
    pub fn may_resolve(&self, meta: &RecvMeta, handle: &PoolHandle) -> bool {
        self.rules.is_empty()
            || self
                .rules_for(meta)
                .any(|r| r.resolve.iter().any(|p| handle_matches(p, handle)))
    }

    /// May this peer speak ENRP with us?
    pub fn may_peer(&self, meta: &RecvMeta) -> bool {
        if self.require_tls && !Self::tls(meta) {
            return false;
        }
        self.rules.is_empty() || self.rules_for(meta).any(|r| r.peer)
    }

    /// Whether ENRP datagrams (multicast presences, which carry no identity) are heard.
    pub fn hears_datagrams(&self) -> bool {
        !self.require_tls && self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn meta(tls: bool, names: Option<&[&str]>) -> RecvMeta {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 4000));
        RecvMeta {
            protocol: rserpool_wire::Protocol::Asap,
            transport: if tls {
                TransportProto::Tls
            } else {
                TransportProto::Tcp
            },
            peer,
            peer_addrs: vec![peer.ip()],
            identity: names.map(|n| {
                Arc::new(PeerIdentity {
                    names: n.iter().map(|s| s.to_string()).collect(),
                })
            }),
        }
    }

    #[test]
    fn rules_grant_by_identity_and_handle() {
        let p = AccessPolicy {
            require_tls: true,
            rules: vec![
                AccessRule {
                    identity: "pe1.example".into(),
                    register: vec!["PoolA".into()],
                    resolve: vec!["*".into()],
                    peer: false,
                },
                AccessRule {
                    identity: "anonymous".into(),
                    resolve: vec!["Public*".into()],
                    ..AccessRule::default()
                },
                AccessRule {
                    identity: "*".into(),
                    resolve: vec!["PoolA".into()],
                    ..AccessRule::default()
                },
                AccessRule {
                    identity: "r2.example".into(),
                    peer: true,
                    ..AccessRule::default()
                },
            ],
        };
        let a = PoolHandle::from("PoolA");
        let b = PoolHandle::from("PoolB");
        let pe1 = meta(true, Some(&["PE1.example"]));
        assert!(p.may_register(&pe1, &a));
        assert!(!p.may_register(&pe1, &b));
        // The same name over plaintext cannot happen (no certificate), and plaintext never
        // registers in secure mode.
        assert!(!p.may_register(&meta(false, None), &a));
        let anon = meta(false, None);
        assert!(p.may_resolve(&anon, &PoolHandle::from("PublicWeb")));
        assert!(!p.may_resolve(&anon, &a));
        let other = meta(true, Some(&["x.example"]));
        assert!(p.may_resolve(&other, &a) && !p.may_resolve(&other, &b));
        assert!(p.may_peer(&meta(true, Some(&["r2.example"]))));
        assert!(!p.may_peer(&pe1));
        assert!(!p.may_peer(&meta(false, None)));
        assert!(!p.hears_datagrams());
        // No rules, no secure mode: everything.
        let open = AccessPolicy::default();
        assert!(open.may_register(&anon, &b) && open.may_peer(&anon) && open.hears_datagrams());
    }
}
