//! A raw UDP peer for tests that must see exactly what goes over the wire: datagrams built by
//! hand, signed with a key the test holds.

use super::{within, TestServer};
use auction_protocol::udp::{self, Request, RequestBody, ServerBody};
use auction_protocol::{sign, Reason, VERSION};
use ring::signature::Ed25519KeyPair;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// A raw UDP peer: builds datagrams by hand and reads answers.
pub struct Raw {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub cookie: Option<String>,
}

impl Raw {
    pub async fn new(t: &TestServer) -> Raw {
        Raw {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server: t.server.udp_addr(),
            cookie: None,
        }
    }

    pub async fn send(&self, datagram: &[u8]) {
        self.sock.send_to(datagram, self.server).await.unwrap();
    }

    /// The next answer; announcements (NEW-ITEM after a registration here) are skipped.
    pub async fn recv(&self) -> ServerBody {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, _) = within(5, "a datagram", self.sock.recv_from(&mut buf))
                .await
                .unwrap();
            let body = udp::decode_server(&buf[..n]).unwrap().body;
            if body.req().is_some() || matches!(body, ServerBody::Error { .. }) {
                return body;
            }
        }
    }

    pub fn body(&self, req: u64, body: RequestBody) -> Vec<u8> {
        udp::encode_request(&Request {
            v: VERSION,
            req,
            cookie: self.cookie.clone(),
            body,
        })
    }

    /// Gets a cookie by sending a LIST without one.
    pub async fn validate(&mut self) {
        self.send(&self.body(1, RequestBody::List)).await;
        match self.recv().await {
            ServerBody::Cookie { cookie, .. } => self.cookie = Some(cookie),
            other => panic!("expected a cookie, got {other:?}"),
        }
    }

    /// `body` as request `req`, signed with `k`.
    pub fn signed(&self, k: &Ed25519KeyPair, req: u64, body: RequestBody) -> Vec<u8> {
        sign::sign_datagram(k, &self.body(req, body))
    }

    /// `account`'s signed offer of a lamp (minimum 5.00, 60 s) as request `req`.
    pub fn lamp_offer(&self, k: &Ed25519KeyPair, account: &str, req: u64) -> Vec<u8> {
        self.signed(
            k,
            req,
            RequestBody::Offer {
                account: account.into(),
                description: "lamp".into(),
                min: auction_protocol::Cents(500),
                duration: Some(60),
                reserve: None,
                buy_now: None,
            },
        )
    }

    /// A validated peer with a fresh key, registered as `name` with request number `req`.
    pub async fn account(t: &TestServer, name: &str, req: u64) -> (Raw, Ed25519KeyPair) {
        let mut raw = Raw::new(t).await;
        raw.validate().await;
        let k = keys();
        let register = RequestBody::Register {
            name: name.into(),
            key: sign::public_key_of(&k),
        };
        match raw.ask(&raw.signed(&k, req, register)).await {
            ServerBody::Registered { .. } => (raw, k),
            other => panic!("{other:?}"),
        }
    }

    /// Executes REPLAY_WINDOW signed ATTACHes numbered `from`, `from + 1`, ..., which pushes
    /// every older request number of `account` out of its replay window.
    pub async fn fill_window(&self, k: &Ed25519KeyPair, account: &str, from: u64) {
        for n in 0..auction_protocol::limits::REPLAY_WINDOW as u64 {
            let attach = self.signed(
                k,
                from + n,
                RequestBody::Attach {
                    account: account.into(),
                    mode: Default::default(),
                },
            );
            let answer = self.ask(&attach).await;
            assert!(matches!(answer, ServerBody::Attached { .. }), "{answer:?}");
        }
    }

    pub async fn ask(&self, datagram: &[u8]) -> ServerBody {
        self.send(datagram).await;
        self.recv().await
    }
}

pub fn keys() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

pub fn error_reason(body: ServerBody) -> Reason {
    match body {
        ServerBody::Error { reason, .. } => reason,
        other => panic!("expected an error, got {other:?}"),
    }
}
