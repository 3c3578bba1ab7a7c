//! The registrar link shared by pool elements and pool users: which registrars to use,
//! whether to listen for their announces (and on which group), how long to try a
//! connection. [`crate::pe::PeOptions`] and [`crate::pu::PuOptions`] both carry one
//! [`RegistrarLink`] and the same builder methods for it.

use std::net::SocketAddr;
use std::time::Duration;

use rserpool_proto::io::Endpoint;
use rserpool_wire::Protocol;

use crate::driver::DriverConfig;
use crate::transport::udp::{MulticastSpec, ASAP_ANNOUNCE_GROUP};

/// How a PE or PU reaches registrars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarLink {
    /// Registrars configured (tried in order, besides those heard announcing).
    pub registrars: Vec<Endpoint>,
    /// Listen for registrar announces on this multicast group; `None` = static list only.
    pub announce_group: Option<SocketAddr>,
    /// Give up a connection attempt after this long; `None` = the driver's setting.
    pub connect_timeout: Option<Duration>,
    /// Trust anchors (and our certificate for mutual TLS) for `tls://` registrars.
    pub tls: Option<std::sync::Arc<crate::transport::tls::TlsSettings>>,
}

impl Default for RegistrarLink {
    /// No static registrar, announces heard on 239.0.0.50:3863.
    fn default() -> Self {
        Self {
            registrars: Vec::new(),
            announce_group: Some(ASAP_ANNOUNCE_GROUP),
            connect_timeout: None,
            tls: None,
        }
    }
}

impl RegistrarLink {
    /// Put the link into a core's registrar list and announce switch and the driver's
    /// configuration (at start).
    pub(crate) fn configure(
        &self,
        registrars: &mut Vec<Endpoint>,
        accept_announces: &mut bool,
        driver: &mut DriverConfig,
    ) {
        registrars.extend(self.registrars.iter().cloned());
        if self.announce_group.is_none() {
            *accept_announces = false;
        }
        if let Some(t) = self.connect_timeout {
            driver.transport.connect_timeout = t;
        }
        if let Some(tls) = &self.tls {
            driver.transport.tls = Some(tls.clone());
        }
    }

    /// The announce group to join, if any.
    pub(crate) fn announces(&self) -> Option<MulticastSpec> {
        self.announce_group.map(|group| MulticastSpec {
            group,
            protocol: Protocol::Asap,
        })
    }
}

/// The builder methods of the registrar link, the same on `PeOptions` and `PuOptions`
/// (each has a `link: RegistrarLink` field).
macro_rules! registrar_link_builders {
    () => {
        /// Use this registrar (besides any configured before and those announced).
        pub fn registrar(mut self, ep: rserpool_proto::io::Endpoint) -> Self {
            self.link.registrars.push(ep);
            self
        }
        /// Use these registrars.
        pub fn registrars(
            mut self,
            eps: impl IntoIterator<Item = rserpool_proto::io::Endpoint>,
        ) -> Self {
            self.link.registrars.extend(eps);
            self
        }
        /// Do not listen for announces (static registrar list only).
        pub fn no_announces(mut self) -> Self {
            self.link.announce_group = None;
            self
        }
        /// Listen for registrar announces on this multicast group instead of
        /// 239.0.0.50:3863.
        pub fn announce_group(mut self, group: std::net::SocketAddr) -> Self {
            self.link.announce_group = Some(group);
            self
        }
        /// Give up a connection attempt to a registrar after this long.
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.link.connect_timeout = Some(timeout);
            self
        }
        /// Replace the whole registrar link.
        pub fn link(mut self, link: $crate::link::RegistrarLink) -> Self {
            self.link = link;
            self
        }
    };
}
pub(crate) use registrar_link_builders;
