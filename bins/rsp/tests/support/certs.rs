//! Certificates made in the test (rcgen): a CA, and leaf certificates for loopback
//! addresses or for one DNS name, written as PEM files for the processes under test.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    /// The CA certificate's PEM file.
    pub pem: PathBuf,
}

/// A self-signed CA named `name`, its certificate written to `dir/name.pem`.
pub fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { cert, key, pem }
}

/// A leaf certificate for 127.0.0.1, ::1 and `name.rserpool.test` signed by `ca`: (cert
/// file, key file). A server's may also act as a client (a registrar towards its peers).
pub fn leaf(dir: &Path, ca: &Ca, name: &str, client: bool) -> (PathBuf, PathBuf) {
    let mut p = CertificateParams::new(vec![format!("{name}.rserpool.test")]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    p.subject_alt_names
        .push(SanType::IpAddress("::1".parse().unwrap()));
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = if client {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    sign(dir, ca, name, p)
}

/// A server certificate for DNS name `dns` only (no address), signed by `ca`, written as
/// `dir/file.crt` and `dir/file.key`.
pub fn leaf_for_name(dir: &Path, ca: &Ca, file: &str, dns: &str) -> (PathBuf, PathBuf) {
    let mut p = CertificateParams::new(vec![dns.to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, dns);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign(dir, ca, file, p)
}

fn sign(dir: &Path, ca: &Ca, file: &str, p: CertificateParams) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let c = dir.join(format!("{file}.crt"));
    let k = dir.join(format!("{file}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A path as the `&str` a command line takes.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
