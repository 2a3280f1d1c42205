//! TLS for item channels: TLS 1.3 only, mutual authentication where a client certificate is
//! accepted exactly when its public key belongs to a live account.
//!
//! Client certificates are self-signed and carry no authority of their own: the certificate is
//! only a container for the account's Ed25519 key. What authenticates the client is (1) the key
//! being registered, checked in `verify_client_cert`, and (2) the client proving it holds the
//! private key, which rustls checks in `verify_tls13_signature` by calling its own signature
//! verification. Both are mandatory.

use auction_protocol::PublicKey;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::accounts::KeyDirectory;

/// The crypto provider every TLS object of this server uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The Ed25519 public key inside a certificate, if it holds one.
pub fn key_from_cert(der: &[u8]) -> Option<PublicKey> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return None;
    }
    let raw: [u8; 32] = spki.subject_public_key.data.as_ref().try_into().ok()?;
    Some(PublicKey(raw))
}

/// Accepts a client certificate iff its key is registered to a live account.
#[derive(Debug)]
pub struct AccountCertVerifier {
    keys: Arc<KeyDirectory>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AccountCertVerifier {
    pub fn new(keys: Arc<KeyDirectory>) -> AccountCertVerifier {
        AccountCertVerifier {
            keys,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AccountCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = key_from_cert(end_entity).ok_or_else(|| {
            rustls::Error::General("client certificates must hold an Ed25519 account key".into())
        })?;
        match self.keys.lookup(&key) {
            Some(account) => {
                tracing::debug!(account = %account.name, "client certificate belongs to a live account");
                Ok(ClientCertVerified::assertion())
            }
            // Looked up once the handshake has proved the client holds the key.
            None if self.keys.defers() => Ok(ClientCertVerified::assertion()),
            None => {
                tracing::info!(key = %key.fingerprint(), "refused client certificate: key not registered to a live account");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The server config offers TLS 1.3 only, so this is unreachable; refuse regardless.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS configuration of every item channel.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    keys: Arc<KeyDirectory>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AccountCertVerifier::new(keys)))
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
