//! TLS for the tests: a registrar's TLS listener flags and its `tls://` endpoint, and a
//! PE / PU over real rustls with a client certificate.

use std::path::Path;
use std::time::{Duration, Instant};

use super::certs::p;
use super::{registration, Registrar};

/// The `tls://` endpoint of a registrar's startup line.
pub fn tls_url(reg: &Registrar) -> String {
    let line = reg
        .proc
        .out
        .wait(0, Instant::now() + Duration::from_secs(5), |l| {
            l.starts_with("rsp registrar:")
        })
        .unwrap()
        .1;
    line.split_whitespace()
        .find(|w| w.starts_with("tls://"))
        .unwrap_or_else(|| panic!("no tls:// endpoint in {line:?}"))
        .to_owned()
}

/// The flags of a registrar's TLS listener on an ephemeral loopback port: its certificate
/// and key, the CA its clients' certificates must chain to, and `--tls-client-auth`
/// (`optional` / `required`).
pub fn tls_listener<'a>(
    cert: &'a Path,
    key: &'a Path,
    ca: &'a Path,
    client_auth: &'a str,
) -> [&'a str; 10] {
    [
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-cert",
        p(cert),
        "--tls-key",
        p(key),
        "--tls-ca",
        p(ca),
        "--tls-client-auth",
        client_auth,
    ]
}

/// A registration client over TLS with a client certificate (real rustls).
pub struct TlsPe {
    rt: tokio::runtime::Runtime,
    conn: rserpool::service::bench::MessageConn,
}

impl TlsPe {
    pub fn connect(url: &str, ca: &Path, cert: &Path, key: &Path) -> TlsPe {
        use rserpool::transport::tls::{TlsFiles, TlsSettings};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tls = TlsSettings::load(TlsFiles {
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
            ca: vec![ca.to_owned()],
            ..TlsFiles::default()
        })
        .unwrap();
        let ep = rserpool_proto::io::Endpoint {
            transport: rserpool_proto::io::TransportProto::Tls,
            addrs: vec![url.trim_start_matches("tls://").parse().unwrap()],
        };
        let conn = rt
            .block_on(rserpool::service::bench::MessageConn::connect_tls(
                &ep, &tls,
            ))
            .unwrap();
        TlsPe { rt, conn }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.rt.block_on(self.conn.send(bytes)).unwrap();
    }

    /// The answer to the next registration: Ok, or the first cause code.
    pub fn answer(&mut self) -> Result<(), rserpool_wire::CauseCode> {
        use rserpool_wire::AsapMessage;
        loop {
            let m = self.rt.block_on(self.conn.recv()).unwrap();
            match AsapMessage::decode(&m).unwrap().message {
                AsapMessage::RegistrationResponse { reject: false, .. } => return Ok(()),
                AsapMessage::RegistrationResponse { error, .. } => {
                    return Err(error.unwrap().causes[0].code)
                }
                _ => continue,
            }
        }
    }

    pub fn register(&mut self, pool: &str, id: u32) -> Result<(), rserpool_wire::CauseCode> {
        let m = registration(
            pool.as_bytes(),
            id,
            rserpool_wire::Policy::RoundRobin,
            3000 + id as u16,
        );
        self.send(&m.encode_to_vec());
        self.answer()
    }

    /// Resolve `pool`: the next handle resolution response.
    pub fn resolve(&mut self, pool: &str) -> rserpool_wire::AsapMessage {
        use rserpool_wire::AsapMessage;
        let m = AsapMessage::HandleResolution {
            subscribe: false,
            handle: pool.into(),
            items: None,
        };
        self.send(&m.encode_to_vec());
        loop {
            let m = self.rt.block_on(self.conn.recv()).unwrap();
            let m = AsapMessage::decode(&m).unwrap().message;
            if matches!(m, AsapMessage::HandleResolutionResponse { .. }) {
                return m;
            }
        }
    }
}
