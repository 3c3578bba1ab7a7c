//! TLS over TCP (`tls://`, RFC 5352 §9 / RFC 5353 §6): the TCP framing of
//! [`super::tcp`] inside a rustls session (TLS 1.3, TLS 1.2 allowed).
//!
//! - **Certificates** come from PEM files ([`TlsFiles`]): our chain and key, the trust
//!   anchors (CA certificates) that peers' certificates must chain to. A listener needs a
//!   chain and key; a client offers its own for mutual authentication when it has one.
//!   [`TlsSettings::reload`] re-reads the files (SIGHUP): new handshakes use the new
//!   certificate, established connections keep theirs.
//! - **Identity**: a client checks the server's certificate against the address it
//!   connected to (an iPAddress subjectAltName, exact octets) or against the DNS name set
//!   with [`TlsFiles::server_name`] (dNSName, rustls/webpki matching: case-insensitive,
//!   `*` only as a whole left-most label). A server asks for client certificates
//!   ([`ClientAuth`]); with `Required`, a client without a certificate chaining to the
//!   trust anchors does not get a connection. [`TlsSettings::requiring_clients`] makes a
//!   listener that requires one and, optionally, one of a list of names in it (a PE's
//!   ASAP control endpoint: only the registrars it trusts may take it over).
//! - **Handshakes never block accepting**: each runs in its own task with a timeout
//!   ([`HANDSHAKE_TIMEOUT`]) and at most [`MAX_HANDSHAKES`] at once per listener (more
//!   are closed at once); only finished sessions reach the driver.
//! - Crypto: rustls with the *ring* provider. TLS-PSK (the RFC's PE↔PR mechanism) is not
//!   offered: rustls has no external PSK support (see `docs/security.md`).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rserpool_proto::io::{Endpoint, PeerIdentity, RecvMeta, TransportProto};
use rserpool_wire::framing::Deframer;
use rserpool_wire::Protocol;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, crypto::CryptoProvider, sign::CertifiedKey};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::{tcp, TransportConfig};
use super::{MessageListener, MessageRead, MessageStream, MessageWrite, Outgoing};

/// A TLS handshake must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener.
pub const MAX_HANDSHAKES: usize = 256;
/// Bytes read per call.
const READ_CHUNK: usize = 16 * 1024;

/// Whether a TLS server asks for client certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates.
    #[default]
    None,
    /// Verified when offered; clients without one are served too.
    Optional,
    /// Mutual TLS: no certificate chaining to the trust anchors, no connection.
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// Where the TLS material is (PEM files).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Our certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Trust anchors for peers' certificates (one file may hold several).
    pub ca: Vec<PathBuf>,
    /// Client certificates asked for by our listeners.
    pub client_auth: ClientAuth,
    /// The name a server's certificate must carry; `None` = the address connected to.
    pub server_name: Option<String>,
}

/// Loaded TLS settings of one process: what its listeners and its connections use.
#[derive(Debug)]
pub struct TlsSettings {
    files: TlsFiles,
    identity: Arc<Identity>,
    server: Option<Arc<rustls::ServerConfig>>,
    client: Arc<rustls::ClientConfig>,
    /// The session channel's client with expected PE identities: the chain is verified,
    /// the name is checked by [`connect_session`] against the expected identities.
    any_name_client: Arc<rustls::ClientConfig>,
}

/// Settings are equal when loaded from the same files.
impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl Eq for TlsSettings {}

/// Our certificate, replaceable at run time.
#[derive(Debug, Default)]
struct Identity(RwLock<Option<Arc<CertifiedKey>>>);

impl Identity {
    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().and_then(|g| g.clone())
    }
}

impl rustls::server::ResolvesServerCert for Identity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

impl rustls::client::ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.get()
    }

    fn has_certs(&self) -> bool {
        self.get().is_some()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!("{}: no certificate in it", path.display())));
    }
    Ok(certs)
}

fn load_identity(files: &TlsFiles) -> io::Result<Option<Arc<CertifiedKey>>> {
    let (cert, key) = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => return Ok(None),
        _ => {
            return Err(bad(
                "a TLS certificate needs its key, and a key its certificate".into(),
            ))
        }
    };
    let chain = load_certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| bad(format!("the key does not belong to the certificate: {e}")))?;
    Ok(Some(Arc::new(ck)))
}

fn load_roots(files: &TlsFiles) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for path in &files.ca {
        for c in load_certs(path)? {
            roots
                .add(c)
                .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(roots)
}

impl TlsSettings {
    /// Read the files and build the rustls configurations.
    pub fn load(files: TlsFiles) -> io::Result<Arc<Self>> {
        let identity = Arc::new(Identity(RwLock::new(load_identity(&files)?)));
        let roots = Arc::new(load_roots(&files)?);
        if files.client_auth != ClientAuth::None && roots.is_empty() {
            return Err(bad(
                "client certificates need trust anchors (a CA file)".into()
            ));
        }
        let server = if identity.get().is_some() {
            let verifier = match files.client_auth {
                ClientAuth::None => rustls::server::WebPkiClientVerifier::no_client_auth(),
                auth => {
                    let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        roots.clone(),
                        provider(),
                    );
                    let b = if auth == ClientAuth::Optional {
                        b.allow_unauthenticated()
                    } else {
                        b
                    };
                    b.build()
                        .map_err(|e| bad(format!("client verifier: {e}")))?
                }
            };
            let cfg = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(e.to_string()))?
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(identity.clone());
            Some(Arc::new(cfg))
        } else {
            None
        };
        let any_name_client = if roots.is_empty() {
            None
        } else {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider(),
            )
            .build()
            .map_err(|e| bad(format!("server verifier: {e}")))?;
            Some(
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| bad(e.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                    .with_client_cert_resolver(identity.clone()),
            )
        };
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(identity.clone());
        let client = Arc::new(client);
        Ok(Arc::new(Self {
            files,
            identity,
            server,
            any_name_client: any_name_client.map_or_else(|| client.clone(), Arc::new),
            client,
        }))
    }

    /// Re-read our certificate and key: new handshakes use them, open connections stay.
    /// (Trust anchors and client-auth mode need a restart.)
    pub fn reload(&self) -> io::Result<()> {
        let fresh = load_identity(&self.files)?;
        if let Ok(mut g) = self.identity.0.write() {
            *g = fresh;
        }
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether listeners can be started (a certificate and key are loaded).
    pub fn can_serve(&self) -> bool {
        self.server.is_some()
    }

    /// The same certificate (reloaded with these settings) and trust anchors, for
    /// listeners that require a client certificate chaining to the trust anchors and, when
    /// `identities` is not empty, naming one of them (a DNS or IP subjectAltName or the
    /// subject common name, ASCII case-insensitive). A certificate naming none of them
    /// fails the handshake and is counted as [`HandshakeStats::identity_refused`]. Needs a
    /// certificate, a key and trust anchors.
    pub fn requiring_clients(&self, identities: &[String]) -> io::Result<Arc<Self>> {
        let roots = Arc::new(load_roots(&self.files)?);
        if roots.is_empty() {
            return Err(bad(
                "client certificates need trust anchors (a CA file: --tls-ca)".into(),
            ));
        }
        if self.identity.get().is_none() {
            return Err(bad("a TLS listener needs a certificate and key".into()));
        }
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| bad(format!("client verifier: {e}")))?;
        let verifier = ClientIdentities {
            inner,
            allowed: identities.iter().map(|n| n.to_ascii_lowercase()).collect(),
        };
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(self.identity.clone());
        Ok(Arc::new(Self {
            files: TlsFiles {
                client_auth: ClientAuth::Required,
                ..self.files.clone()
            },
            identity: self.identity.clone(),
            server: Some(Arc::new(server)),
            client: self.client.clone(),
            any_name_client: self.any_name_client.clone(),
        }))
    }
}

/// A client certificate that chains to the trust anchors but names none of the identities
/// a listener accepts ([`TlsSettings::requiring_clients`]).
#[derive(Debug)]
struct IdentityNotAllowed {
    names: Vec<String>,
    allowed: Vec<String>,
}

impl std::fmt::Display for IdentityNotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client certificate names {:?}, none of the accepted identities {:?}",
            self.names, self.allowed
        )
    }
}

impl std::error::Error for IdentityNotAllowed {}

/// The refusal of the client's identity that failed a handshake, if that was why.
fn identity_refusal(e: &io::Error) -> Option<&IdentityNotAllowed> {
    let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    else {
        return None;
    };
    other.0.downcast_ref::<IdentityNotAllowed>()
}

/// Client certificates: required, verified by webpki (chain, validity, usage), then one of
/// the leaf's names must be among `allowed` (unless empty).
#[derive(Debug)]
struct ClientIdentities {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed: Vec<String>,
}

impl rustls::server::danger::ClientCertVerifier for ClientIdentities {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.is_empty() {
            return Ok(verified);
        }
        let names = identity_of(end_entity.as_ref())
            .map(|i| i.names)
            .unwrap_or_default();
        if names
            .iter()
            .any(|n| self.allowed.iter().any(|a| a.eq_ignore_ascii_case(n)))
        {
            return Ok(verified);
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(IdentityNotAllowed {
                names,
                allowed: self.allowed.clone(),
            }))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies a server's chain to the trust anchors (and its handshake signatures) but not
/// the name it was reached by: the session channel checks the certificate's names against
/// the pool's expected PE identities after the handshake ([`connect_session`]).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // webpki checks the chain (and validity, usage) before the name: a name error
        // means everything else held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(NotValidForName))
            | Err(rustls::Error::InvalidCertificate(NotValidForNameContext { .. })) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The session channel over TLS (PU -> PE): the TCP session framing inside TLS.
///
/// The PE's certificate must chain to the trust anchors of `tls`. Its name: with
/// `expected` empty, the name of [`TlsFiles::server_name`] or else the address connected
/// to (as for registrars); with `expected` given (the pool's PE identities), one of the
/// certificate's DNS subjectAltNames or subject common names must equal one of them
/// (ASCII case-insensitive), else the connection is refused with
/// [`io::ErrorKind::PermissionDenied`] (threat 2.9: an impostor with a valid certificate
/// for another name). Returns the stream and the identity verified (the matching name,
/// or the name / address checked by rustls). With `mptcp` TLS runs over an MPTCP
/// connection (plain TCP where the PE does not speak MPTCP).
pub async fn connect_session(
    addr: SocketAddr,
    tls: &TlsSettings,
    expected: &[String],
    mptcp: bool,
) -> io::Result<(tokio_rustls::client::TlsStream<TcpStream>, String)> {
    let tcp = super::tcp::connect_plain(addr, mptcp).await?;
    let (name, config): (ServerName<'static>, _) = if expected.is_empty() {
        let name = match &tls.files.server_name {
            Some(n) => ServerName::try_from(n.clone())
                .map_err(|e| bad(format!("server name {n:?}: {e}")))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        (name, tls.client.clone())
    } else {
        // SNI: the first expected identity that is a DNS name (else the address).
        let name = expected
            .iter()
            .find_map(|n| ServerName::try_from(n.clone()).ok())
            .unwrap_or(ServerName::IpAddress(addr.ip().into()));
        (name, tls.any_name_client.clone())
    };
    let shown = match &name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        _ => addr.ip().to_string(),
    };
    let connector = TlsConnector::from(config);
    let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    if expected.is_empty() {
        return Ok((s, shown));
    }
    let names = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| identity_of(leaf.as_ref()))
        .map(|i| i.names)
        .unwrap_or_default();
    match names
        .iter()
        .find(|n| expected.iter().any(|e| e.eq_ignore_ascii_case(n)))
    {
        Some(n) => Ok((s, n.clone())),
        None => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "PE identity refused: its certificate names {names:?}, not one of {expected:?}"
            ),
        )),
    }
}

/// Accept a session-channel TLS connection on `tcp` (the handshake, within
/// [`HANDSHAKE_TIMEOUT`]). Needs a certificate and key in `tls`.
pub async fn accept_session(
    tcp: TcpStream,
    tls: &TlsSettings,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let server = tls
        .server
        .clone()
        .ok_or_else(|| bad("a TLS session listener needs a certificate and key".into()))?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(server).accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// The names of a (verified) certificate: subjectAltName DNS names and IP addresses, then
/// the subject's common names. `None` when it cannot be parsed.
pub fn identity_of(der: &[u8]) -> Option<PeerIdentity> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names
                        .push(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => names
                        .push(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(v) = cn.as_str() {
            if !names.iter().any(|n| n == v) {
                names.push(v.to_owned());
            }
        }
    }
    Some(PeerIdentity { names })
}

/// An established TLS connection carrying one protocol.
pub struct TlsMessageStream {
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    protocol: Protocol,
    max_message_len: usize,
    lengths: Arc<tcp::LengthStats>,
}

impl std::fmt::Debug for TlsMessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMessageStream")
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl MessageStream for TlsMessageStream {
    type Read = TlsReader;
    type Write = TlsWriter;

    fn meta(&self, protocol: Protocol) -> io::Result<RecvMeta> {
        let mut meta = RecvMeta::single_homed(protocol, TransportProto::Tls, self.peer);
        let certs = match &self.stream {
            TlsStream::Client(s) => s.get_ref().1.peer_certificates(),
            TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
        };
        meta.identity = certs
            .and_then(|c| c.first())
            .and_then(|leaf| identity_of(leaf.as_ref()))
            .map(Arc::new);
        Ok(meta)
    }

    fn into_split(self) -> (TlsReader, TlsWriter) {
        let (r, w) = tokio::io::split(self.stream);
        (
            TlsReader {
                stream: r,
                deframer: Deframer::new(self.max_message_len),
                protocol: self.protocol,
                buf: Vec::new(),
                lengths: self.lengths,
            },
            TlsWriter {
                stream: Arc::new(TlsDirect {
                    half: tokio::sync::Mutex::new(w),
                    unflushed: std::sync::atomic::AtomicBool::new(false),
                }),
                buf: Vec::new(),
            },
        )
    }
}

pub struct TlsReader {
    stream: ReadHalf<TlsStream<TcpStream>>,
    deframer: Deframer,
    protocol: Protocol,
    buf: Vec<u8>,
    lengths: Arc<tcp::LengthStats>,
}

impl MessageRead for TlsReader {
    async fn recv(&mut self) -> io::Result<Option<(Protocol, Vec<u8>)>> {
        loop {
            match self.deframer.next_message() {
                Ok(Some(m)) => return Ok(Some((self.protocol, m.to_vec()))),
                Ok(None) => {}
                Err(e) => {
                    self.lengths.tls.count(&e);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            self.buf.clear();
            self.buf.reserve(READ_CHUNK);
            // Cancel-safe: nothing is consumed unless the read completes.
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    let left = self.deframer.buffered();
                    if left == 0 {
                        return Ok(None);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("stream ended inside a message ({left} bytes of it received)"),
                    ));
                }
                Ok(_) => self.deframer.push(&self.buf),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The write half, shared by the writer task and the direct path ([`DirectWrite`]): a
/// write goes through whoever holds it, in order.
pub struct TlsWriter {
    stream: Arc<TlsDirect>,
    buf: Vec<u8>,
}

/// The write half of a TLS connection behind an async lock: the writer task holds it
/// across its awaits, the driver's direct path only tries it.
pub struct TlsDirect {
    half: tokio::sync::Mutex<WriteHalf<TlsStream<TcpStream>>>,
    /// The direct path left encrypted records in the TLS layer that the socket did not
    /// take yet: the writer task must flush them.
    unflushed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TlsDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsDirect")
    }
}

impl MessageWrite for TlsWriter {
    async fn send(&mut self, batch: &[Outgoing]) -> io::Result<()> {
        self.buf.clear();
        for m in batch {
            self.buf.extend_from_slice(&m.bytes);
        }
        let mut half = self.stream.half.lock().await;
        half.write_all(&self.buf).await?;
        half.flush().await?;
        drop(half);
        if self.buf.capacity() > 256 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        // close_notify, then FIN.
        self.stream.half.lock().await.shutdown().await
    }

    fn direct(&self) -> Option<Arc<dyn super::DirectWrite>> {
        Some(self.stream.clone())
    }
}

impl super::DirectWrite for TlsDirect {
    /// Encrypt and write now, without waiting: nothing if the writer task holds the half
    /// or the TLS layer takes nothing. What the TLS layer took but the socket did not is
    /// flagged ([`Self::unflushed`]) for the writer task.
    fn try_write(&self, _protocol: Protocol, bytes: &[u8]) -> io::Result<usize> {
        use std::pin::Pin;
        use std::task::{Context, Poll};
        use tokio::io::AsyncWrite;
        let Ok(mut half) = self.half.try_lock() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let n = match Pin::new(&mut *half).poll_write(&mut cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
        };
        match Pin::new(&mut *half).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => self.unflushed.store(true, Ordering::Release),
        }
        Ok(n)
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn take_unflushed(&self) -> bool {
        self.unflushed.swap(false, Ordering::AcqRel)
    }
}

/// Handshakes of one listener: completed, failed, timed out, and connections closed
/// unshaken because [`MAX_HANDSHAKES`] were under way (for `/metrics` and `rsp dump`).
#[derive(Debug, Default)]
pub struct HandshakeStats {
    /// Failed (no or untrusted client certificate where one is required, protocol
    /// errors, closed), not counting `identity_refused`.
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub refused_busy: AtomicU64,
    pub accepted: AtomicU64,
    /// Client certificates that chained to the trust anchors but named none of the
    /// accepted identities ([`TlsSettings::requiring_clients`]).
    pub identity_refused: AtomicU64,
}

/// A listener's handshake counters with the endpoint it listens on.
#[derive(Debug, Clone)]
pub struct ListenerStats {
    /// `tls://addr:port`, and the protocol (`asap` or `enrp`).
    pub endpoint: String,
    pub protocol: &'static str,
    pub stats: Arc<HandshakeStats>,
}

impl TlsMessageListener {
    /// This listener's counters, for the admin interface.
    pub fn listener_stats(&self) -> ListenerStats {
        ListenerStats {
            endpoint: self
                .local_endpoint()
                .map_or_else(|_| "tls://?".into(), |e| e.to_string()),
            protocol: match self.protocol {
                Protocol::Enrp => "enrp",
                Protocol::Asap => "asap",
                _ => "data",
            },
            stats: self.stats.clone(),
        }
    }
}

/// A TLS listener: TCP accept, then the handshake in a task of its own.
pub struct TlsMessageListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    protocol: Protocol,
    max_message_len: usize,
    lengths: Arc<tcp::LengthStats>,
    in_flight: Arc<AtomicUsize>,
    done_tx: mpsc::Sender<TlsMessageStream>,
    done_rx: mpsc::Receiver<TlsMessageStream>,
    pub stats: Arc<HandshakeStats>,
}

impl std::fmt::Debug for TlsMessageListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMessageListener")
            .field("listener", &self.listener)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl MessageListener for TlsMessageListener {
    type Stream = TlsMessageStream;

    async fn accept(&mut self) -> io::Result<TlsMessageStream> {
        loop {
            tokio::select! {
                Some(s) = self.done_rx.recv() => return Ok(s),
                r = self.listener.accept() => {
                    let (tcp, peer) = r?;
                    if self.in_flight.load(Ordering::Relaxed) >= MAX_HANDSHAKES {
                        self.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                        drop(tcp);
                        continue;
                    }
                    let _ = tcp.set_nodelay(true);
                    self.in_flight.fetch_add(1, Ordering::Relaxed);
                    let acceptor = self.acceptor.clone();
                    let in_flight = self.in_flight.clone();
                    let done = self.done_tx.clone();
                    let stats = self.stats.clone();
                    let (protocol, max_message_len) = (self.protocol, self.max_message_len);
                    let lengths = self.lengths.clone();
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        match r {
                            Ok(Ok(s)) => {
                                stats.accepted.fetch_add(1, Ordering::Relaxed);
                                let _ = done
                                    .send(TlsMessageStream {
                                        stream: TlsStream::Server(s),
                                        peer,
                                        protocol,
                                        max_message_len,
                                        lengths,
                                    })
                                    .await;
                            }
                            Ok(Err(e)) if identity_refusal(&e).is_some() => {
                                stats.identity_refused.fetch_add(1, Ordering::Relaxed);
                                if let Some(why) = identity_refusal(&e) {
                                    tracing::info!(%peer, "TLS client refused: {why}");
                                }
                            }
                            Ok(Err(e)) => {
                                stats.failed.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(%peer, "TLS handshake failed: {e}");
                            }
                            Err(_) => {
                                stats.timed_out.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(%peer, "TLS handshake timed out");
                            }
                        }
                    });
                }
            }
        }
    }

    fn local_endpoint(&self) -> io::Result<Endpoint> {
        Ok(Endpoint {
            transport: TransportProto::Tls,
            addrs: vec![self.listener.local_addr()?],
        })
    }
}

/// Bind a TLS listener (needs a certificate and key in `tls`).
pub fn bind(
    addr: SocketAddr,
    protocol: Protocol,
    config: &TransportConfig,
    tls: &TlsSettings,
) -> io::Result<TlsMessageListener> {
    bind_with(addr, protocol, config, tls, false)
}

/// Bind a TLS listener whose port outbound connections may share (`SO_REUSEPORT`, as
/// [`tcp::bind_shared`]): a PE's ASAP control listener when the PE has a certificate.
pub fn bind_shared(
    addr: SocketAddr,
    protocol: Protocol,
    config: &TransportConfig,
    tls: &TlsSettings,
) -> io::Result<TlsMessageListener> {
    bind_with(addr, protocol, config, tls, true)
}

fn bind_with(
    addr: SocketAddr,
    protocol: Protocol,
    config: &TransportConfig,
    tls: &TlsSettings,
    reuse_port: bool,
) -> io::Result<TlsMessageListener> {
    let server = tls.server.clone().ok_or_else(|| {
        bad("a tls:// listener needs a certificate and key (--tls-cert, --tls-key)".into())
    })?;
    let listener = tcp::bind_listener(addr, reuse_port)?;
    let (done_tx, done_rx) = mpsc::channel(64);
    Ok(TlsMessageListener {
        listener,
        acceptor: TlsAcceptor::from(server),
        protocol,
        max_message_len: config.max_message_len,
        lengths: config.length_stats.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        done_tx,
        done_rx,
        stats: Arc::new(HandshakeStats::default()),
    })
}

/// A client TLS session to the first of `addrs` that answers (for clients that frame
/// messages themselves, e.g. the load generator).
pub async fn connect_client(
    addrs: &[SocketAddr],
    tls: &TlsSettings,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let s = connect(addrs, Protocol::Asap, &TransportConfig::default(), tls).await?;
    match s.stream {
        TlsStream::Client(c) => Ok(c),
        TlsStream::Server(_) => Err(bad("a client connection turned out a server one".into())),
    }
}

/// Connect over TCP to the first address that answers, then the TLS handshake, checking
/// the server's certificate against the address (or the configured server name).
pub async fn connect(
    addrs: &[SocketAddr],
    protocol: Protocol,
    config: &TransportConfig,
    tls: &TlsSettings,
) -> io::Result<TlsMessageStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for addr in addrs {
        let tcp = match tcp::connect_stream(*addr, config).await {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let name: ServerName<'static> = match &tls.files.server_name {
            Some(n) => ServerName::try_from(n.clone())
                .map_err(|e| bad(format!("server name {n:?}: {e}")))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        let connector = TlsConnector::from(tls.client.clone());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => {
                return Ok(TlsMessageStream {
                    stream: TlsStream::Client(s),
                    peer: *addr,
                    protocol,
                    max_message_len: config.max_message_len,
                    lengths: config.length_stats.clone(),
                })
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"),
        }
    }
    Err(last)
}
