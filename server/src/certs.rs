//! Certificates: generating a development CA and server certificate with rcgen, and loading
//! PEM files. Private keys are written with mode 0600 and never leave the machine.

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io::Write;
use std::path::Path;

/// The SANs a dev server certificate gets when none are given.
pub const DEFAULT_SANS: [&str; 2] = ["localhost", "127.0.0.1"];

/// Writes `ca.pem`, `ca.key`, `server.pem` and `server.key` into `dir` (created if needed).
/// The server certificate is signed by the new CA and names `sans` (DNS names or IPs).
pub fn generate_dev_certs(dir: &Path, sans: &[String]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "auction-server development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(sans.to_vec()).context("invalid --san value")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "auction-server");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &ca_cert, &ca_key)?;

    write_public(&dir.join("ca.pem"), &ca_cert.pem())?;
    write_private(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    // The chain the server presents: its own certificate, then the CA.
    write_public(
        &dir.join("server.pem"),
        &(server_cert.pem() + &ca_cert.pem()),
    )?;
    write_private(&dir.join("server.key"), &server_key.serialize_pem())?;
    Ok(())
}

fn write_public(path: &Path, pem: &str) -> Result<()> {
    fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a private key readable by its owner only.
pub fn write_private(path: &Path, pem: &str) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow!("{} holds no private key", path.display()),
        e => anyhow!("{} is not a PEM key file: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_pem_files_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let sans = vec!["localhost".to_owned()];
        generate_dev_certs(dir.path(), &sans).unwrap();
        // The server's certificate and the CA that signed it.
        assert_eq!(load_certs(&dir.path().join("server.pem")).unwrap().len(), 2);
        load_key(&dir.path().join("server.key")).unwrap();

        // A certificate where a key should be, and the other way round.
        let err = load_key(&dir.path().join("server.pem")).unwrap_err();
        assert!(err.to_string().ends_with("holds no private key"), "{err}");
        let err = load_certs(&dir.path().join("server.key")).unwrap_err();
        assert!(err.to_string().ends_with("holds no certificate"), "{err}");
        // A key cut short: its END line is missing.
        let key = fs::read_to_string(dir.path().join("server.key")).unwrap();
        let cut = dir.path().join("cut.key");
        fs::write(&cut, &key[..key.len() / 2]).unwrap();
        let err = load_key(&cut).unwrap_err();
        assert!(err.to_string().contains("is not a PEM key file"), "{err}");
    }
}
