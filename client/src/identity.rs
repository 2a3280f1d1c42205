//! A client's identity: an Ed25519 key pair and a self-signed certificate for it, generated
//! with rcgen on first use and kept in the client's home directory, plus the name the key was
//! registered under. The same key signs UDP requests and authenticates TLS channels.

use anyhow::{Context, Result};
use auction_protocol::{sign, PublicKey};
use ring::signature::Ed25519KeyPair;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const KEY_FILE: &str = "identity.key";
const CERT_FILE: &str = "identity.pem";
const ACCOUNT_FILE: &str = "account.json";

pub struct Identity {
    keys: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    cert: CertificateDer<'static>,
    pub public: PublicKey,
    store: Store,
}

/// Where the account name lives: next to the key in a home directory, or only in memory
/// (load generators and tests that need many throwaway identities).
enum Store {
    Home(PathBuf),
    Memory(Mutex<Option<String>>),
}

#[derive(Serialize, Deserialize)]
struct AccountFile {
    name: String,
}

/// `$AUCTION_HOME`, else the platform's config directory (`~/.config/auction-client`).
pub fn default_home() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("auction-client")
}

impl Identity {
    /// Loads the identity in `home`, creating the directory, key and certificate if missing.
    pub fn load_or_create(home: &Path) -> Result<Identity> {
        fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
        let key_path = home.join(KEY_FILE);
        let cert_path = home.join(CERT_FILE);
        if !key_path.exists() {
            let (key_pem, cert_pem) = generate()?;
            write_private(&key_path, &key_pem)?;
            fs::write(&cert_path, cert_pem)
                .with_context(|| format!("cannot write {}", cert_path.display()))?;
        }
        let key_pem =
            fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
        let cert_pem =
            fs::read(&cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
        Identity::from_pem(&key_pem, &cert_pem, Store::Home(home.to_owned()))
            .with_context(|| format!("the identity in {}", home.display()))
    }

    /// A new identity kept only in memory: nothing is written to disk, and the account name
    /// lives as long as this value.
    pub fn ephemeral() -> Result<Identity> {
        let (key_pem, cert_pem) = generate()?;
        Identity::from_pem(
            key_pem.as_bytes(),
            cert_pem.as_bytes(),
            Store::Memory(Mutex::new(None)),
        )
    }

    fn from_pem(key_pem: &[u8], cert_pem: &[u8], store: Store) -> Result<Identity> {
        let pkcs8 = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der.secret_pkcs8_der().to_vec(),
            _ => anyhow::bail!("{KEY_FILE} is not a PKCS#8 Ed25519 key"),
        };
        let keys = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| anyhow::anyhow!("{KEY_FILE} is not an Ed25519 key"))?;
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .ok()
            .with_context(|| format!("{CERT_FILE} holds no certificate"))?;
        Ok(Identity {
            public: sign::public_key_of(&keys),
            keys,
            pkcs8,
            cert,
            store,
        })
    }

    pub fn keys(&self) -> &Ed25519KeyPair {
        &self.keys
    }

    /// Certificate chain and key for the TLS client.
    pub fn tls_credentials(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()));
        (vec![self.cert.clone()], key)
    }

    /// The name this identity was registered under, if any.
    pub fn account_name(&self) -> Option<String> {
        match &self.store {
            Store::Home(home) => {
                let text = fs::read_to_string(home.join(ACCOUNT_FILE)).ok()?;
                serde_json::from_str::<AccountFile>(&text)
                    .ok()
                    .map(|a| a.name)
            }
            Store::Memory(name) => name.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    pub fn save_account_name(&self, name: &str) -> Result<()> {
        match &self.store {
            Store::Home(home) => {
                let path = home.join(ACCOUNT_FILE);
                let text = serde_json::to_string(&AccountFile {
                    name: name.to_owned(),
                })?;
                fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
            }
            Store::Memory(slot) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.to_owned());
                Ok(())
            }
        }
    }

    pub fn forget_account_name(&self) -> Result<()> {
        match &self.store {
            Store::Home(home) => {
                let path = home.join(ACCOUNT_FILE);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(e).with_context(|| format!("cannot remove {}", path.display()))
                    }
                    _ => Ok(()),
                }
            }
            Store::Memory(slot) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
        }
    }
}

/// Says what is wrong with a PEM file in words: `pem::Error`'s own `Display` shows the
/// offending marker or line as a list of byte values, so those two are spelled out as text
/// (the wording `rustls-pemfile` used).
pub(crate) fn describe_pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "section end {:?} missing",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("illegal section start: {:?}", String::from_utf8_lossy(line))
        }
        pem::Error::Base64Decode(e) => e.clone(),
        other => other.to_string(),
    }
}

/// A fresh Ed25519 key (PKCS#8 v1 PEM) and a self-signed certificate for it (PEM).
fn generate() -> Result<(String, String)> {
    let v2 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("could not generate a key pair"))?;
    let v1 = pkcs8_v1(v2.as_ref()).context("unexpected Ed25519 key encoding")?;
    let key = rcgen::KeyPair::from_der_and_sign_algo(
        &PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(v1)),
        &rcgen::PKCS_ED25519,
    )?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "auction-client account key");
    let cert = params.self_signed(&key)?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// ring writes PKCS#8 v2 (seed and public key); OpenSSL 3 cannot read that for Ed25519, so the
/// key is stored as v1 (seed only), which both read. The v2 layout starts with a 16-byte header
/// that differs from v1's only in its length and version bytes, followed by the seed.
fn pkcs8_v1(v2: &[u8]) -> Option<Vec<u8>> {
    let seed = v2.get(16..48)?;
    if v2.get(5..16)? != &PKCS8_V1_PREFIX[5..16] {
        return None;
    }
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Some(v1)
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_key_is_pkcs8_v1_and_matches_the_certificate() {
        let home = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(home.path()).unwrap();
        let (chain, key) = id.tls_credentials();
        let PrivateKeyDer::Pkcs8(der) = key else {
            panic!("not PKCS#8")
        };
        assert_eq!(der.secret_pkcs8_der().len(), 48);
        assert_eq!(&der.secret_pkcs8_der()[..16], &PKCS8_V1_PREFIX);
        // The certificate holds the same public key, and a reload gives the same identity.
        assert!(chain[0].as_ref().windows(32).any(|w| w == id.public.0));
        let again = Identity::load_or_create(home.path()).unwrap();
        assert_eq!(again.public, id.public);
    }

    #[test]
    fn a_garbled_key_or_certificate_is_named() {
        let (key_pem, cert_pem) = generate().unwrap();
        let memory = || Store::Memory(Mutex::new(None));
        let no_key = Identity::from_pem(b"not a key", cert_pem.as_bytes(), memory());
        assert_eq!(
            no_key.err().unwrap().to_string(),
            "identity.key is not a PKCS#8 Ed25519 key"
        );
        let cut = &key_pem.as_bytes()[..key_pem.len() / 2];
        let cut_key = Identity::from_pem(cut, cert_pem.as_bytes(), memory());
        assert_eq!(
            cut_key.err().unwrap().to_string(),
            "identity.key is not a PKCS#8 Ed25519 key"
        );
        let no_cert = Identity::from_pem(key_pem.as_bytes(), b"", memory());
        assert_eq!(
            no_cert.err().unwrap().to_string(),
            "identity.pem holds no certificate"
        );
        let cut = &cert_pem.as_bytes()[..cert_pem.len() / 2];
        let e = CertificateDer::pem_slice_iter(cut)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(
            describe_pem_error(&e),
            r#"section end "CERTIFICATE" missing"#
        );
    }

    #[test]
    fn ephemeral_identities_keep_their_name_in_memory() {
        let a = Identity::ephemeral().unwrap();
        let b = Identity::ephemeral().unwrap();
        assert_ne!(a.public, b.public);
        assert_eq!(a.account_name(), None);
        a.save_account_name("alice").unwrap();
        assert_eq!(a.account_name().as_deref(), Some("alice"));
        assert_eq!(b.account_name(), None);
        a.forget_account_name().unwrap();
        assert_eq!(a.account_name(), None);
    }
}
