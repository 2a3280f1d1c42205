//! The registration plane and the channels under hostile or broken input: address validation,
//! signatures, replays, retransmissions, client certificates, malformed datagrams and lines.
//! Raw UDP sockets and raw TLS clients, so nothing the client library does hides a flaw.

mod common;

use auction_client::ClientError;
use auction_protocol::channel::{self, ChannelBody};
use auction_protocol::udp::{RequestBody, ServerBody};
use auction_protocol::{sign, Cents, Reason};
use common::raw::{error_reason, keys, Raw};
use common::{quick_config, start, within, TestServer};
use futures_util::StreamExt;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LinesCodec};

#[tokio::test]
async fn unvalidated_addresses_get_only_a_cookie_and_nothing_is_recorded() {
    let t = start(quick_config()).await;
    let raw = Raw::new(&t).await;
    let k = keys();
    let body = raw.body(
        7,
        RequestBody::Register {
            name: "mallory".into(),
            key: sign::public_key_of(&k),
        },
    );
    let answer = raw.ask(&sign::sign_datagram(&k, &body)).await;
    assert!(
        matches!(answer, ServerBody::Cookie { req: 7, .. }),
        "{answer:?}"
    );
    // A forged cookie is no better.
    let mut forged = Raw::new(&t).await;
    forged.cookie = Some("00".repeat(20));
    let answer = forged.ask(&forged.body(8, RequestBody::List)).await;
    assert!(
        matches!(answer, ServerBody::Cookie { req: 8, .. }),
        "{answer:?}"
    );
    // Nothing was registered: someone else can take the name.
    let other = t.client("other").await;
    other.register("mallory").await.unwrap();
    // A cookie is bound to the address it was issued to.
    let mut a = Raw::new(&t).await;
    a.validate().await;
    let mut b = Raw::new(&t).await;
    b.cookie = a.cookie.clone();
    assert!(matches!(
        b.ask(&b.body(9, RequestBody::List)).await,
        ServerBody::Cookie { .. }
    ));
    assert!(matches!(
        a.ask(&a.body(9, RequestBody::List)).await,
        ServerBody::Items { .. }
    ));
}

#[tokio::test]
async fn tiny_datagrams_are_not_amplified_and_the_server_keeps_serving() {
    let t = start(quick_config()).await;
    let raw = Raw::new(&t).await;
    // A 1-byte datagram would draw an error far larger than itself: no answer at all.
    raw.send(b"x").await;
    // The next thing heard is the cookie for the following request, not an error for "x".
    let answer = raw.ask(&raw.body(5, RequestBody::List)).await;
    assert!(
        matches!(answer, ServerBody::Cookie { req: 5, .. }),
        "{answer:?}"
    );
}

#[tokio::test]
async fn malformed_datagrams_get_an_error_with_a_reason() {
    let t = start(quick_config()).await;
    let raw = Raw::new(&t).await;
    let junk = format!(
        "{{\"v\":1,\"type\":\"steal-everything\",\"req\":3,\"pad\":\"{}\"}}",
        "x".repeat(120)
    );
    assert_eq!(
        error_reason(raw.ask(junk.as_bytes()).await),
        Reason::Malformed
    );
    let old = format!(
        "{{\"v\":9,\"type\":\"list\",\"req\":4,\"pad\":\"{}\"}}",
        "x".repeat(100)
    );
    match raw.ask(old.as_bytes()).await {
        ServerBody::Error { req, reason, .. } => {
            assert_eq!((req, reason), (Some(4), Reason::UnsupportedVersion))
        }
        other => panic!("{other:?}"),
    }
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 256) as u8).collect();
    assert_eq!(error_reason(raw.ask(&garbage).await), Reason::Malformed);
    let oversized = vec![b'{'; 1500];
    assert_eq!(error_reason(raw.ask(&oversized).await), Reason::TooLarge);
    // Still serving everyone.
    let c = t.registered("alice").await;
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn unsigned_and_altered_requests_are_refused() {
    let t = start(quick_config()).await;
    let (raw, k) = Raw::account(&t, "alice", 10).await;
    let offer = RequestBody::Offer {
        account: "alice".into(),
        description: "lamp".into(),
        min: Cents(500),
        duration: Some(60),
        reserve: None,
        buy_now: None,
    };
    // Unsigned.
    assert_eq!(
        error_reason(raw.ask(&raw.body(11, offer.clone())).await),
        Reason::SignatureRequired
    );
    // Signed by another key.
    let signed_by_other = sign::sign_datagram(&keys(), &raw.body(12, offer.clone()));
    assert_eq!(
        error_reason(raw.ask(&signed_by_other).await),
        Reason::BadSignature
    );
    // Signed, then altered: the minimum changed from 500 to 900.
    let good = raw.signed(&k, 13, offer.clone());
    let altered = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"min\":500", "\"min\":900");
    assert_ne!(altered.as_bytes(), good.as_slice());
    assert_eq!(
        error_reason(raw.ask(altered.as_bytes()).await),
        Reason::BadSignature
    );
    // A signature lifted onto another request (same key, other body) fails too.
    let sig = String::from_utf8(good.clone()).unwrap();
    let sig = sig
        .rsplit_once("\"sig\":\"")
        .unwrap()
        .1
        .trim_end_matches("\"}")
        .to_owned();
    let other_body = String::from_utf8(raw.body(
        14,
        RequestBody::Deregister {
            account: "alice".into(),
        },
    ))
    .unwrap();
    let lifted = format!("{{\"signed\":{other_body},\"sig\":\"{sig}\"}}");
    assert_eq!(
        error_reason(raw.ask(lifted.as_bytes()).await),
        Reason::BadSignature
    );
    // Nothing of that created an item.
    assert!(t.client("x").await.list().await.unwrap().is_empty());
    // The genuine one works.
    assert!(matches!(raw.ask(&good).await, ServerBody::OfferConf { .. }));

    // Nobody but the account takes its announcements or takes a device away: `attach` and
    // `detach` unsigned, or signed by another key, are refused like any signed request.
    for (req, body) in [
        (
            20,
            RequestBody::Attach {
                account: "alice".into(),
                mode: Default::default(),
            },
        ),
        (
            22,
            RequestBody::Detach {
                account: "alice".into(),
            },
        ),
    ] {
        assert_eq!(
            error_reason(raw.ask(&raw.body(req, body.clone())).await),
            Reason::SignatureRequired
        );
        let by_other = sign::sign_datagram(&keys(), &raw.body(req + 1, body));
        assert_eq!(error_reason(raw.ask(&by_other).await), Reason::BadSignature);
    }
    let detach = RequestBody::Detach {
        account: "alice".into(),
    };
    let genuine = raw.signed(&k, 24, detach);
    assert!(matches!(
        raw.ask(&genuine).await,
        ServerBody::Detached { .. }
    ));
}

#[tokio::test]
async fn a_retransmitted_request_runs_once_however_many_came_between() {
    let t = start(quick_config()).await;
    let (raw, k) = Raw::account(&t, "alice", 100).await;
    let offer = raw.lamp_offer(&k, "alice", 101);
    let first = raw.ask(&offer).await;
    let ServerBody::OfferConf { item, .. } = first.clone() else {
        panic!("{first:?}")
    };
    // The same datagram again (a retransmission, or a replay by someone who captured it):
    // the same answer, and no second item.
    assert_eq!(raw.ask(&offer).await, first);
    assert_eq!(raw.ask(&offer).await, first);
    // The same number on a different request is refused, not answered with the offer's answer
    // (two processes of one account with a clock that stands still can collide like this).
    let other = raw.signed(
        &k,
        101,
        RequestBody::Attach {
            account: "alice".into(),
            mode: Default::default(),
        },
    );
    assert_eq!(error_reason(raw.ask(&other).await), Reason::RequestReused);
    assert_eq!(raw.ask(&offer).await, first);
    let items = t.client("x").await.list().await.unwrap();
    assert_eq!(items.iter().map(|i| i.item).collect::<Vec<_>>(), vec![item]);
    // 64 newer requests and one more (say from a second machine whose clock is ahead): the
    // offer's answer is kept for the whole retransmission budget all the same, so a client
    // whose answer was lost gets it, not `stale-request`, and no second item. (That it is
    // forgotten after the budget, and stale then, is in `restart.rs`
    // `the_replay_window_survives_a_restart` and the unit tests of `rules/replay.rs`.)
    raw.fill_window(&k, "alice", 200).await;
    raw.fill_window(&k, "alice", 300).await;
    assert_eq!(raw.ask(&offer).await, first);
    assert_eq!(t.client("x").await.list().await.unwrap().len(), 1);
    // A refusal is remembered too: the same DEREGISTER again gets the same DEREG-DENIED.
    let dereg = raw.signed(
        &k,
        1000,
        RequestBody::Deregister {
            account: "alice".into(),
        },
    );
    assert!(matches!(
        raw.ask(&dereg).await,
        ServerBody::DeregDenied {
            reason: Reason::HasOpenItems,
            ..
        }
    ));
    assert!(matches!(
        raw.ask(&dereg).await,
        ServerBody::DeregDenied {
            reason: Reason::HasOpenItems,
            ..
        }
    ));
}

#[tokio::test]
async fn a_retransmitted_deregistration_is_confirmed_not_refused() {
    let t = start(quick_config()).await;
    let (raw, k) = Raw::account(&t, "bob", 1).await;
    let dereg = raw.signed(
        &k,
        2,
        RequestBody::Deregister {
            account: "bob".into(),
        },
    );
    assert_eq!(raw.ask(&dereg).await, ServerBody::DeregConf { req: 2 });
    // The confirmation was "lost"; the client sends the same request again.
    assert_eq!(raw.ask(&dereg).await, ServerBody::DeregConf { req: 2 });
    // But a new request for the gone account is refused.
    let again = raw.signed(
        &k,
        3,
        RequestBody::Deregister {
            account: "bob".into(),
        },
    );
    assert!(matches!(
        raw.ask(&again).await,
        ServerBody::DeregDenied {
            reason: Reason::NotRegistered,
            ..
        }
    ));
}

type Creds = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// Presents a certificate with whatever key it is given, matching or not (rustls' own
/// `with_client_auth_cert` refuses a mismatched pair before connecting).
#[derive(Debug)]
struct Forged(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Forged {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

type ClientAuth = rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>;

/// A TLS 1.3 client trusting the test CA, whose client authentication `auth` sets up.
async fn tls_with(
    t: &TestServer,
    channel: &str,
    auth: impl FnOnce(ClientAuth) -> rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let ca = auction_server::certs::load_certs(&t.ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca[0].clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(auth(builder)));
    let tcp = TcpStream::connect(channel).await?;
    connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// Presents `chain` with `key`, whether or not they belong together.
async fn forged_tls(
    t: &TestServer,
    channel: &str,
    (chain, key): Creds,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
    tls_with(t, channel, |b| {
        b.with_client_cert_resolver(Arc::new(Forged(certified)))
    })
    .await
}

/// A TLS client with the given client credentials (or none), trusting the test CA.
async fn raw_tls(
    t: &TestServer,
    channel: &str,
    creds: Option<Creds>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_with(t, channel, |b| match creds {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        None => b.with_no_client_auth(),
    })
    .await
}

/// Whether the server refuses the connection: in TLS 1.3 the client finishes its side of the
/// handshake first, so a refusal shows up as an alert (an error) or a close on the first read.
async fn first_line(
    tls: std::io::Result<tokio_rustls::client::TlsStream<TcpStream>>,
) -> Result<String, String> {
    let tls = tls.map_err(|e| e.to_string())?;
    let mut lines = FramedRead::new(tls, LinesCodec::new());
    match within(5, "first line", lines.next()).await {
        Some(Ok(line)) => Ok(line),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("closed".into()),
    }
}

#[tokio::test]
async fn channels_refuse_missing_unregistered_and_deregistered_certificates() {
    let t = start(quick_config()).await;
    let alice = t.registered("alice").await;
    let offered = alice.offer("Painting", Cents(100), Some(60)).await.unwrap();

    // No client certificate at all.
    let none = first_line(raw_tls(&t, &offered.channel, None).await).await;
    assert!(none.is_err(), "{none:?}");

    // A certificate whose key was never registered.
    let stranger = t.client("stranger").await;
    let unregistered = first_line(
        raw_tls(
            &t,
            &offered.channel,
            Some(stranger.identity.tls_credentials()),
        )
        .await,
    )
    .await;
    let err = unregistered.expect_err("unregistered key must be refused");
    assert!(err.contains("alert") || err.contains("closed"), "{err}");
    assert!(matches!(
        stranger.open_channel(&offered.channel).await,
        Err(ClientError::Tls(_))
    ));

    // A key that was registered, then deregistered.
    let dave = t.registered("dave").await;
    assert!(
        first_line(raw_tls(&t, &offered.channel, Some(dave.identity.tls_credentials())).await)
            .await
            .is_ok()
    );
    dave.deregister().await.unwrap();
    let gone =
        first_line(raw_tls(&t, &offered.channel, Some(dave.identity.tls_credentials())).await)
            .await;
    assert!(gone.is_err(), "{gone:?}");

    // A registered account gets in, and the channel knows who it is.
    let bob = t.registered("bob").await;
    let line =
        first_line(raw_tls(&t, &offered.channel, Some(bob.identity.tls_credentials())).await)
            .await
            .unwrap();
    match channel::decode_message(&line).unwrap().body {
        ChannelBody::State { you, .. } => assert_eq!(you, "bob"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_for_a_registered_key_without_the_private_key_is_refused() {
    // An attacker copies Alice's certificate (public) but signs the handshake with its own key:
    // rustls' signature check in the verifier must refuse it.
    let t = start(quick_config()).await;
    let alice = t.registered("alice").await;
    let offered = alice.offer("Painting", Cents(100), Some(60)).await.unwrap();
    let mallory = t.client("mallory").await;
    let (alice_chain, _) = alice.identity.tls_credentials();
    let (_, mallory_key) = mallory.identity.tls_credentials();
    let stolen =
        first_line(forged_tls(&t, &offered.channel, (alice_chain.clone(), mallory_key)).await)
            .await;
    assert!(stolen.is_err(), "{stolen:?}");
    // Control: the same forging client with Alice's real key gets in, so the refusal above
    // is the signature check and not the forging machinery.
    let (_, alice_key) = alice.identity.tls_credentials();
    let genuine =
        first_line(forged_tls(&t, &offered.channel, (alice_chain, alice_key)).await).await;
    assert!(genuine.is_ok(), "{genuine:?}");
}

#[tokio::test]
async fn malformed_lines_get_an_error_and_the_channel_keeps_working() {
    let t = start(quick_config()).await;
    let [alice, bob, carol] = t.people(["alice", "bob", "carol"]).await;
    let offered = alice.offer("Chair", Cents(100), Some(60)).await.unwrap();
    let tls = raw_tls(&t, &offered.channel, Some(bob.identity.tls_credentials()))
        .await
        .unwrap();
    let (r, mut w) = tokio::io::split(tls);
    let mut lines = FramedRead::new(r, LinesCodec::new());
    macro_rules! next {
        () => {
            channel::decode_message(&within(5, "a line", lines.next()).await.unwrap().unwrap())
                .unwrap()
                .body
        };
    }
    assert!(matches!(next!(), ChannelBody::State { .. }));
    // Blank lines are ignored; garbage and wrong types get an error naming the reason.
    w.write_all(b"\n\r\nhello\n{\"v\":1,\"req\":5,\"type\":\"bid\",\"amount\":-3}\n")
        .await
        .unwrap();
    match next!() {
        ChannelBody::Error { reason, .. } => assert_eq!(reason, Reason::Malformed),
        other => panic!("{other:?}"),
    }
    match next!() {
        ChannelBody::Error { reason, req, .. } => {
            assert_eq!((reason, req), (Reason::Malformed, Some(5)))
        }
        other => panic!("{other:?}"),
    }
    // The same connection still bids.
    w.write_all(
        channel::encode_request(
            6,
            channel::ChannelRequestBody::Bid {
                amount: Cents(100),
                id: None,
            },
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    loop {
        match next!() {
            ChannelBody::BidAccepted { req: 6, .. } => break,
            ChannelBody::Highest { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    // A line over the limit: an error, then the server closes this connection...
    let long = vec![b'a'; auction_protocol::limits::MAX_LINE + 10];
    w.write_all(&long).await.unwrap();
    w.write_all(b"\n").await.unwrap();
    loop {
        match next!() {
            ChannelBody::Error { reason, .. } => {
                assert_eq!(reason, Reason::TooLarge);
                break;
            }
            ChannelBody::Highest { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    // ...and everyone else carries on.
    let mut c = carol.open_item(offered.item).await.unwrap();
    assert!(matches!(
        c.bid(Cents(200), None).await.unwrap(),
        auction_client::BidResult::Accepted { .. }
    ));
}
