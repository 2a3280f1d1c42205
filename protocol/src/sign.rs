//! Account keys and the byte layout that UDP signatures cover.
//!
//! An account is an Ed25519 key pair. A signed datagram is
//! `{"signed":BODY,"sig":"HEX"}` where `BODY` is the request object exactly as the client
//! serialized it, and `HEX` is the signature over `SIGNING_CONTEXT || BODY`. The server verifies
//! the bytes of `BODY` as they arrived (never a re-serialization), so any change to them is
//! detected, and the context prefix keeps these signatures from being valid anywhere else.

use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Prepended to the body before signing: domain separation from every other use of the key
/// (the same key signs TLS handshakes).
pub const SIGNING_CONTEXT: &[u8] = b"auction-udp-v1\0";

/// An Ed25519 public key, 32 bytes; on the wire 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(PublicKey(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Short form for logs and people: the first 8 bytes in hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PublicKey::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("key must be 64 hex digits (Ed25519)"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not 128 hex digits")]
    Encoding,
    #[error("the signature does not match the account's key")]
    Mismatch,
}

/// The exact bytes a signature covers.
pub fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(body);
    msg
}

/// Checks `sig_hex` over `body` with `key`.
pub fn verify(key: &PublicKey, body: &[u8], sig_hex: &str) -> Result<(), SignatureError> {
    let mut sig = [0u8; 64];
    hex::decode_to_slice(sig_hex, &mut sig).map_err(|_| SignatureError::Encoding)?;
    UnparsedPublicKey::new(&signature::ED25519, key.0)
        .verify(&signed_message(body), &sig)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs `body` and wraps it into the datagram layout described above.
pub fn sign_datagram(keys: &Ed25519KeyPair, body: &[u8]) -> Vec<u8> {
    let sig = keys.sign(&signed_message(body));
    let mut out = Vec::with_capacity(body.len() + 150);
    out.extend_from_slice(b"{\"signed\":");
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"sig\":\"");
    out.extend_from_slice(hex::encode(sig.as_ref()).as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// The public half of a key pair in wire form.
pub fn public_key_of(keys: &Ed25519KeyPair) -> PublicKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(keys.public_key().as_ref());
    PublicKey(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn keys() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn signature_covers_exact_body_bytes() {
        let k = keys();
        let body = br#"{"v":1,"type":"offer","req":7}"#;
        let datagram = sign_datagram(&k, body);
        let text = std::str::from_utf8(&datagram).unwrap();
        let sig = text
            .rsplit_once("\"sig\":\"")
            .unwrap()
            .1
            .trim_end_matches("\"}");
        let key = public_key_of(&k);
        assert_eq!(verify(&key, body, sig), Ok(()));
        // One changed byte, even whitespace, breaks it.
        assert_eq!(
            verify(&key, br#"{"v":1,"type":"offer","req":8}"#, sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, br#"{"v":1, "type":"offer","req":7}"#, sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&public_key_of(&keys()), body, sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&key, body, "zz"), Err(SignatureError::Encoding));
    }

    #[test]
    fn key_hex_round_trip() {
        let key = public_key_of(&keys());
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PublicKey>("\"abcd\"").is_err());
    }
}
