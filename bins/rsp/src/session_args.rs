//! Session-layer options shared by the session clients (`rsp fetch`, `rsp pingpong`,
//! `rsp calcapp`), and the session channel's TLS on a PE (`rsp serve`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rserpool::service::session::{SessionOptions, SessionTls};
use rserpool::transport::tls::{ClientAuth, TlsFiles, TlsSettings};

use crate::args::{self, CspArgs, RegistrarArgs};

/// The session heartbeat and failover limits.
#[derive(Debug, Args, Clone)]
pub struct SessionArgs {
    /// Send a session heartbeat this often (a stopped PE keeps its connection open; the
    /// heartbeat finds it). 0 = none (RSPLIB PEs do not answer it).
    #[arg(long, default_value = "200ms", value_parser = args::duration)]
    pub heartbeat: Duration,
    /// A PE silent this long after a heartbeat has failed.
    #[arg(long, default_value = "600ms", value_parser = args::duration)]
    pub heartbeat_timeout: Duration,
    /// Give up after this many PEs failed in a row.
    #[arg(long, default_value = "8")]
    pub attempts: u32,
    /// The PEs do not acknowledge messages (RSPLIB's): resend only what was not sent.
    #[arg(long)]
    pub unacknowledged: bool,
    /// Connect to the pool's PEs over TLS (their certificates must chain to --tls-ca).
    #[arg(long)]
    pub session_tls: bool,
    /// Connect to the pool's TCP PEs over MPTCP: subflows over every path the hosts
    /// announce (`ip mptcp endpoint`) for PEs listening on mptcp://, plain TCP to the
    /// others. With --session-tls, TLS over MPTCP.
    #[arg(long)]
    pub session_mptcp: bool,
    /// An identity the pool's PEs may prove (certificate DNS subjectAltName or subject
    /// CN; repeatable; implies --session-tls). Checked on connect and on every failover;
    /// a PE with a certificate for another name is refused and the session moves on.
    /// Without it a PE's certificate must name --tls-server-name or its address.
    #[arg(long = "pe-identity", value_name = "NAME")]
    pub pe_identity: Vec<String>,
}

/// TLS on the session listeners of `rsp serve` (the session services).
#[derive(Debug, Args, Clone, Default)]
pub struct SessionServeTlsArgs {
    /// Serve sessions over TLS with this certificate chain (PEM; re-read on SIGHUP:
    /// new sessions get the new one, open ones stay). Registered as TCP: PUs use TLS
    /// with --session-tls.
    #[arg(long, value_name = "FILE", requires = "session_tls_key")]
    pub session_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --session-tls-cert.
    #[arg(long, value_name = "FILE", requires = "session_tls_cert")]
    pub session_tls_key: Option<PathBuf>,
}

impl SessionServeTlsArgs {
    /// The loaded settings; `None` without the flags.
    pub fn load(&self) -> anyhow::Result<Option<Arc<TlsSettings>>> {
        let (Some(cert), Some(key)) = (&self.session_tls_cert, &self.session_tls_key) else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ca: Vec::new(),
            client_auth: ClientAuth::None,
            server_name: None,
        };
        Ok(Some(
            TlsSettings::load(files).context("session TLS certificate")?,
        ))
    }
}

impl SessionArgs {
    pub fn options(&self) -> SessionOptions {
        let mut o = SessionOptions::default();
        o.config.heartbeat_interval = (!self.heartbeat.is_zero()).then_some(self.heartbeat);
        o.config.heartbeat_timeout = self.heartbeat_timeout;
        o.config.max_attempts = self.attempts.max(1);
        o.config.acknowledged = !self.unacknowledged;
        o.mptcp = self.session_mptcp;
        o
    }

    /// [`SessionArgs::options`] with the session channel's TLS (trust anchors, client
    /// certificate and server name from the registrar TLS flags `tls`).
    pub fn options_with(&self, tls: &args::TlsClientArgs) -> anyhow::Result<SessionOptions> {
        let mut o = self.options();
        if self.session_mptcp {
            rserpool::transport::tcp::mptcp_available("leave out --session-mptcp")
                .context("--session-mptcp")?;
        }
        if self.session_tls || !self.pe_identity.is_empty() {
            if tls.ca.is_empty() {
                anyhow::bail!("--session-tls needs trust anchors (--tls-ca FILE)");
            }
            let settings = tls.load()?.context("TLS settings")?;
            o.tls = Some(SessionTls {
                settings,
                pe_identities: self.pe_identity.clone(),
            });
        }
        Ok(o)
    }
}

/// What a session client front end (`rsp pingpong`, `rsp calcapp`) starts with: a pool
/// user on its registrars taking every PE of an answer, the count its CSP report shows,
/// and the CSP reporter when one is configured (`label: N what`).
pub struct ClientStart {
    pub pu: Arc<rserpool::pu::PoolUser>,
    pub counted: Arc<std::sync::atomic::AtomicU64>,
    pub csp: Option<rserpool::service::csp::CspReporter>,
}

impl ClientStart {
    pub async fn new(
        registrars: &RegistrarArgs,
        csp: &CspArgs,
        label: String,
        what: &'static str,
    ) -> anyhow::Result<ClientStart> {
        let pu = Arc::new(rserpool::pu::PoolUser::start(
            registrars
                .pu_options(rserpool::pu::PuOptions::default())
                .map_err(crate::exit::usage)?
                .hr_items(u32::MAX),
        ));
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let csp = csp.pool_user(label, what, counted.clone()).await?;
        Ok(ClientStart { pu, counted, csp })
    }

    /// Count one more of what the CSP report shows.
    pub fn count(&self) {
        self.counted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The client is done: the CSP reporter sends its final report.
    pub async fn stop(self) {
        if let Some(c) = self.csp {
            c.stop().await;
        }
    }
}
