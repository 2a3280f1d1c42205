//! The registry's gate: every datagram passes, in this order, the per-source rate limit, the
//! bounded decoder, the address check (a stateless cookie), the signature of the account it
//! acts for, and that account's replay window, before the request itself runs.
//!
//! [`Gate::check`] is pure: it takes the time and the accounts' keys and windows, and returns
//! what to do ([`Gated`]): nothing is sent from here, so its order is unit-tested without a
//! socket. The registry task owns the gate; a repeated request's cached answer still waits
//! for storage like the first answer did (it may not be durable yet).

use auction_protocol::cookie::CookieKey;
use auction_protocol::limits::{COOKIE_AMPLIFICATION, REPLAY_MAX_ANSWERS, RETRANSMIT_SECS};
use auction_protocol::udp::{self, Request, RequestBody, ServerBody};
use auction_protocol::{sign, PublicKey, Reason};
use std::net::SocketAddr;

use super::{deny, not_registered, AfterAnswer, Registry};
use crate::clock::Now;
use crate::rules::ratelimit::{self, SourceLimiter};
use crate::rules::replay::{self, ReplayWindow, RequestDigest, Verdict};
use crate::store::Record;

/// The accounts the gate checks signatures and replay windows against.
pub(super) trait Signers {
    /// The key of account `name`, live or recently deregistered.
    fn key(&self, name: &str) -> Option<PublicKey>;
    /// The replay window of account `name`, if `key` is its key.
    fn window(&mut self, name: &str, key: &PublicKey) -> Option<&mut ReplayWindow>;
}

/// What to do with a datagram.
#[derive(Debug, PartialEq)]
pub(super) enum Gated {
    /// It passed: handle the request, for `acting`'s account when it acts for one.
    Pass {
        /// Boxed: a request is a few hundred bytes, the other verdicts a pointer or two.
        request: Box<Request>,
        acting: Option<Acting>,
    },
    /// Answer this at once (to an unvalidated source only when it does not amplify).
    Reply(Vec<u8>),
    /// A repeated request: its first answer again, once that is durable.
    Repeat(Vec<u8>),
    /// Over the source's rate: say so (at most once a second per source), or nothing.
    Limited(Option<Vec<u8>>),
    /// Say nothing.
    Drop,
}

/// The account a request acts for, checked: its answer goes into this account's window.
#[derive(Debug, PartialEq)]
pub(super) struct Acting {
    pub name: String,
    pub key: PublicKey,
    pub digest: RequestDigest,
}

pub(super) struct Gate {
    cookies: CookieKey,
    limiter: SourceLimiter,
    /// Datagrams per second per source, for the `rate-limited` message.
    rate: f64,
}

impl Gate {
    /// A gate whose cookies derive from `master` (random per run: cookies do not survive a
    /// restart, clients just ask again).
    pub(super) fn new(master: &[u8; 32], rate: f64, burst: f64) -> Gate {
        Gate {
            cookies: CookieKey::new(master),
            limiter: SourceLimiter::new(rate, burst, ratelimit::MAX_SOURCES),
            rate,
        }
    }

    /// Checks one datagram from `src` received at `now`.
    pub(super) fn check(
        &mut self,
        data: &[u8],
        src: SocketAddr,
        now: Now,
        signers: &mut impl Signers,
    ) -> Gated {
        if let ratelimit::Verdict::Limited { tell } =
            self.limiter.check(src.ip(), now.instant.into_std())
        {
            if !tell {
                return Gated::Limited(None);
            }
            tracing::info!(%src, "rate-limiting a source");
            let req = match udp::decode_request(data) {
                Ok(incoming) => Some(incoming.request.req),
                Err(e) => e.req,
            };
            let message = format!(
                "more than {} datagrams per second from this address; slow down",
                self.rate
            );
            let body = ServerBody::Error {
                req,
                reason: Reason::RateLimited,
                message,
            };
            return Gated::Limited(unamplified(data, src, body));
        }
        let incoming = match udp::decode_request(data) {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::debug!(%src, error = %e, "refused a datagram");
                let body = ServerBody::Error {
                    req: e.req,
                    reason: e.reason,
                    message: e.detail,
                };
                return unamplified(data, src, body).map_or(Gated::Drop, Gated::Reply);
            }
        };
        let request = incoming.request;
        let req = request.req;
        let validated = request
            .cookie
            .as_deref()
            .is_some_and(|c| self.cookies.check(src, c, now.secs()));
        if !validated {
            let cookie = self.cookies.issue(src, now.secs());
            let body = ServerBody::Cookie { req, cookie };
            return unamplified(data, src, body).map_or(Gated::Drop, Gated::Reply);
        }

        // From here the source has shown it receives: answers need not be small.
        let Some(name) = request.body.account() else {
            return Gated::Pass {
                request: Box::new(request),
                acting: None,
            };
        };
        let Some(signed) = incoming.signed else {
            let message = "this request must be signed with the account's key";
            return refuse(req, Reason::SignatureRequired, message);
        };
        let key = match (&request.body, signers.key(name)) {
            (RequestBody::Register { key, .. }, _) => *key,
            (_, Some(key)) => key,
            (_, None) => {
                let message = not_registered(name);
                return Gated::Reply(deny(&request.body, req, Reason::NotRegistered, message));
            }
        };
        if let Err(e) = sign::verify(&key, signed.body, signed.sig) {
            return refuse(req, Reason::BadSignature, &e.to_string());
        }
        let digest = replay::digest(&request.body);
        let at = now.instant.into_std();
        match signers
            .window(name, &key)
            .map(|w| w.check(req, &digest, at))
        {
            Some(Verdict::Repeat(answer)) => return Gated::Repeat(answer.to_vec()),
            Some(Verdict::Full) => {
                let message = format!(
                    "more than {REPLAY_MAX_ANSWERS} requests from this account in \
                     {RETRANSMIT_SECS} s; slow down"
                );
                return refuse(req, Reason::RateLimited, &message);
            }
            Some(Verdict::Stale) => {
                let message = "request number is older than this account's replay window";
                return refuse(req, Reason::StaleRequest, message);
            }
            Some(Verdict::Reused) => {
                let message =
                    "this request number was already used for a different request; use a new one";
                return refuse(req, Reason::RequestReused, message);
            }
            Some(Verdict::New) | None => {}
        }
        let acting = Acting {
            name: name.to_owned(),
            key,
            digest,
        };
        Gated::Pass {
            request: Box::new(request),
            acting: Some(acting),
        }
    }
}

/// `body` encoded, if it is small relative to the request it answers, so the server cannot
/// amplify a flood sent from spoofed addresses.
fn unamplified(request: &[u8], src: SocketAddr, body: ServerBody) -> Option<Vec<u8>> {
    let datagram = udp::encode(body);
    if datagram.len() <= request.len() * COOKIE_AMPLIFICATION {
        Some(datagram)
    } else {
        tracing::debug!(%src, "dropped a reply that would amplify an unvalidated request");
        None
    }
}

fn refuse(req: u64, reason: Reason, message: &str) -> Gated {
    Gated::Reply(udp::encode(ServerBody::Error {
        req: Some(req),
        reason,
        message: message.to_owned(),
    }))
}

impl Registry {
    /// One datagram from `src`, through the gate and then the request it carries.
    pub(super) async fn on_datagram(&mut self, data: &[u8], src: SocketAddr, now: Now) {
        let (request, acting) = match self.gate.check(data, src, now, &mut self.accounts) {
            Gated::Pass { request, acting } => (*request, acting),
            Gated::Reply(datagram) => return self.sends.push((src, datagram)),
            Gated::Repeat(datagram) => return self.emit(src, datagram),
            Gated::Limited(told) => {
                self.ctx.metrics.udp_limited.inc();
                self.sends.extend(told.map(|datagram| (src, datagram)));
                return;
            }
            Gated::Drop => return,
        };
        let req = request.req;
        let mut answer = self.execute(request.body, req, src, now).await;
        if let AfterAnswer::AwaitChannel(item) = answer.after {
            // Several nodes: the new item is stored with this answer as it stands (no channel
            // yet), so a retransmission after a crash gets it rather than a second item; the
            // answer naming the channel replaces it once the item's node has opened it.
            self.record_reply(acting.as_ref(), req, &answer, now);
            self.append_records();
            answer = self.await_channel(req, item).await;
        }
        self.record_reply(acting.as_ref(), req, &answer, now);
        self.append_records();
        for datagram in answer.datagrams {
            self.emit(src, datagram);
        }
        match answer.after {
            AfterAnswer::Nothing => {}
            AfterAnswer::AnnounceItem(item) | AfterAnswer::AwaitChannel(item) => {
                self.announce_item(item)
            }
            AfterAnswer::Attached {
                account,
                evicted,
                pending,
            } => {
                for (to, told) in evicted {
                    self.emit(to, told);
                }
                if pending {
                    self.notices.restart(account, now.instant);
                    self.retransmit(now);
                }
            }
        }
    }
}

impl Registry {
    /// Keeps `answer`'s first datagram in the replay window of the account that signed the
    /// request, if any, and records it with the request's changes.
    fn record_reply(
        &mut self,
        acting: Option<&Acting>,
        req: u64,
        answer: &super::Answer,
        now: Now,
    ) {
        let (Some(acting), Some(first)) = (acting, answer.datagrams.first()) else {
            return;
        };
        // Only into the window of the account that signed: a refused REGISTER for a taken
        // name, signed by another key, must not touch the owner's window.
        let recorded =
            self.accounts
                .window_of(&acting.name, &acting.key)
                .map(|(account, window)| {
                    window.record(req, acting.digest, first.clone(), now.instant.into_std());
                    (account, window.floor())
                });
        if let Some((account, floor)) = recorded {
            self.records.push(Record::Replied {
                account,
                req,
                digest: acting.digest,
                answer: first.clone(),
                floor,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auction_protocol::limits::REPLAY_WINDOW;
    use auction_protocol::udp::encode_request;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use std::collections::HashMap;
    use std::time::Duration;

    /// Accounts for the gate: name -> (key, window).
    #[derive(Default)]
    struct Book(HashMap<String, (PublicKey, ReplayWindow)>);

    impl Signers for Book {
        fn key(&self, name: &str) -> Option<PublicKey> {
            self.0.get(name).map(|(k, _)| *k)
        }
        fn window(&mut self, name: &str, key: &PublicKey) -> Option<&mut ReplayWindow> {
            self.0
                .get_mut(name)
                .filter(|(k, _)| k == key)
                .map(|(_, w)| w)
        }
    }

    const SRC: ([u8; 4], u16) = ([127, 0, 0, 1], 5000);

    fn src() -> SocketAddr {
        SocketAddr::from(SRC)
    }

    fn now() -> Now {
        Now {
            ms: 1_800_000_000_000,
            instant: tokio::time::Instant::now(),
        }
    }

    fn keys() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn public(keys: &Ed25519KeyPair) -> PublicKey {
        PublicKey(keys.public_key().as_ref().try_into().unwrap())
    }

    fn request(req: u64, cookie: Option<String>, body: RequestBody) -> Request {
        Request {
            v: auction_protocol::VERSION,
            req,
            cookie,
            body,
        }
    }

    fn signed(keys: &Ed25519KeyPair, request: &Request) -> Vec<u8> {
        sign::sign_datagram(keys, &encode_request(request))
    }

    fn reason(gated: &Gated) -> Option<Reason> {
        let datagram = match gated {
            Gated::Reply(d) | Gated::Repeat(d) | Gated::Limited(Some(d)) => d,
            _ => return None,
        };
        match udp::decode_server(datagram).unwrap().body {
            ServerBody::Error { reason, .. } => Some(reason),
            _ => None,
        }
    }

    fn is_cookie(gated: &Gated) -> bool {
        let Gated::Reply(datagram) = gated else {
            return false;
        };
        matches!(
            udp::decode_server(datagram).unwrap().body,
            ServerBody::Cookie { .. }
        )
    }

    /// A gate and a valid cookie for `src()`.
    fn gate(burst: f64) -> (Gate, String) {
        let gate = Gate::new(&[7; 32], 100.0, burst);
        let cookie = gate.cookies.issue(src(), now().secs());
        (gate, cookie)
    }

    #[test]
    fn the_rate_limit_comes_before_everything_else() {
        let (mut gate, cookie) = gate(5.0);
        let list = encode_request(&request(1, Some(cookie), RequestBody::List));
        let no_cookie = encode_request(&request(1, None, RequestBody::List));
        let mut book = Book::default();
        let t = now();
        for _ in 0..5 {
            assert!(matches!(
                gate.check(&list, src(), t, &mut book),
                Gated::Pass { .. }
            ));
        }
        // Over the burst: told once, then silence; even garbage is not decoded.
        let told = gate.check(&list, src(), t, &mut book);
        assert_eq!(reason(&told), Some(Reason::RateLimited));
        assert_eq!(
            gate.check(b"garbage", src(), t, &mut book),
            Gated::Limited(None)
        );
        // Another source is not affected; the first recovers as time passes.
        let other = SocketAddr::from(([127, 0, 0, 2], 5000));
        assert!(matches!(
            gate.check(&no_cookie, other, t, &mut book),
            Gated::Reply(_)
        ));
        let later = Now {
            instant: t.instant + Duration::from_secs(1),
            ..t
        };
        assert!(matches!(
            gate.check(&list, src(), later, &mut book),
            Gated::Pass { .. }
        ));
    }

    #[test]
    fn decoding_comes_before_the_cookie_and_nothing_amplifies() {
        let (mut gate, _) = gate(100.0);
        let mut book = Book::default();
        // Unreadable, without a cookie: the answer says why, not "here is a cookie".
        let bad = format!(
            r#"{{"v":1,"req":3,"type":"no-such-request","pad":"{}"}}"#,
            ".".repeat(200)
        );
        let bad = bad.as_bytes();
        assert_eq!(
            reason(&gate.check(bad, src(), now(), &mut book)),
            Some(Reason::Malformed)
        );
        // A readable request without a cookie gets one; with a cookie made for another
        // address, too.
        let list = encode_request(&request(1, None, RequestBody::List));
        assert!(is_cookie(&gate.check(&list, src(), now(), &mut book)));
        let elsewhere = gate
            .cookies
            .issue(SocketAddr::from(([10, 0, 0, 1], 1)), now().secs());
        let list = encode_request(&request(1, Some(elsewhere), RequestBody::List));
        assert!(is_cookie(&gate.check(&list, src(), now(), &mut book)));
        // Two bytes cannot buy an answer of more than six.
        assert_eq!(gate.check(b"{}", src(), now(), &mut book), Gated::Drop);
    }

    #[test]
    fn signature_then_replay_window_for_requests_that_act_for_an_account() {
        let (mut gate, cookie) = gate(100.0);
        let alice = keys();
        let mallory = keys();
        let mut book = Book::default();
        book.0
            .insert("alice".into(), (public(&alice), ReplayWindow::default()));
        let ack = |req| {
            request(
                req,
                Some(cookie.clone()),
                RequestBody::Ack {
                    account: "alice".into(),
                    notice: 9,
                },
            )
        };
        // Without a cookie, nothing about accounts or signatures is checked, let alone said:
        // an unknown account, a bad signature and a good one all get a cookie.
        let t = now();
        let mut no_cookie = ack(5);
        no_cookie.cookie = None;
        assert!(is_cookie(&gate.check(
            &signed(&alice, &no_cookie),
            src(),
            t,
            &mut book
        )));
        assert!(is_cookie(&gate.check(
            &signed(&mallory, &no_cookie),
            src(),
            t,
            &mut book
        )));
        no_cookie.body = RequestBody::Ack {
            account: "bob".into(),
            notice: 9,
        };
        assert!(is_cookie(&gate.check(
            &signed(&alice, &no_cookie),
            src(),
            t,
            &mut book
        )));
        assert!(book.window("alice", &public(&alice)).unwrap().floor() == 0);

        // Unsigned, unknown account, signed by the wrong key: each refused with its reason.
        let unsigned = encode_request(&ack(5));
        let got = gate.check(&unsigned, src(), t, &mut book);
        assert_eq!(reason(&got), Some(Reason::SignatureRequired));
        let mut for_bob = ack(5);
        for_bob.body = RequestBody::Ack {
            account: "bob".into(),
            notice: 9,
        };
        let got = gate.check(&signed(&alice, &for_bob), src(), t, &mut book);
        assert_eq!(reason(&got), Some(Reason::NotRegistered));
        // A request with its own denial (PROTOCOL.md) is refused with it.
        let subscribe = request(
            6,
            Some(cookie.clone()),
            RequestBody::Subscribe {
                account: "bob".into(),
                item: 1,
            },
        );
        let Gated::Reply(denied) = gate.check(&signed(&alice, &subscribe), src(), t, &mut book)
        else {
            panic!("an unknown account is refused");
        };
        assert!(matches!(
            udp::decode_server(&denied).unwrap().body,
            ServerBody::SubscriptionDenied {
                reason: Reason::NotRegistered,
                ..
            }
        ));
        let got = gate.check(&signed(&mallory, &ack(5)), src(), t, &mut book);
        assert_eq!(reason(&got), Some(Reason::BadSignature));
        // Signed by Alice: it passes, acting for her.
        let Gated::Pass { acting, .. } = gate.check(&signed(&alice, &ack(5)), src(), t, &mut book)
        else {
            panic!("a signed request passes");
        };
        let acting = acting.unwrap();
        assert_eq!(acting.name, "alice");
        // Once answered, the same number gets the same answer; another request under that
        // number is refused; a number below the window is stale.
        let at = t.instant.into_std();
        let window = book.window("alice", &public(&alice)).unwrap();
        window.record(5, acting.digest, b"first answer".to_vec(), at);
        let got = gate.check(&signed(&alice, &ack(5)), src(), t, &mut book);
        assert_eq!(got, Gated::Repeat(b"first answer".to_vec()));
        let mut other = ack(5);
        other.body = RequestBody::Ack {
            account: "alice".into(),
            notice: 10,
        };
        let got = gate.check(&signed(&alice, &other), src(), t, &mut book);
        assert_eq!(reason(&got), Some(Reason::RequestReused));
        // 65 newer requests: during the retransmission budget, 5 still gets its first answer;
        // after it, 5 and the numbers below are stale.
        for req in 6..6 + REPLAY_WINDOW as u64 + 1 {
            let window = book.window("alice", &public(&alice)).unwrap();
            window.record(req, acting.digest, vec![], at);
        }
        let got = gate.check(&signed(&alice, &ack(5)), src(), t, &mut book);
        assert_eq!(got, Gated::Repeat(b"first answer".to_vec()));
        let later = Now {
            ms: t.ms + replay::KEEP.as_millis() as u64,
            instant: t.instant + replay::KEEP,
        };
        for req in [1, 5] {
            let got = gate.check(&signed(&alice, &ack(req)), src(), later, &mut book);
            assert_eq!(reason(&got), Some(Reason::StaleRequest), "request {req}");
        }
    }
}
