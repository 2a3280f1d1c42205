//! The registry's gate: every datagram passes rate limit → decode → cookie → signature →
//! replay window before the request itself runs; the answer is recorded in the account's replay
//! window and appended with what the request changed.

use auction_protocol::udp::{RequestBody, ServerBody};
use auction_protocol::{sign, udp, PublicKey, Reason};
use std::net::SocketAddr;

use super::{deny, not_registered, AfterAnswer, Registry};
use crate::clock::unix_secs;
use crate::rules::replay::Verdict;
use crate::rules::{ratelimit, replay};
use crate::store::Record;

impl Registry {
    pub(super) async fn on_datagram(&mut self, data: &[u8], src: SocketAddr) {
        if let ratelimit::Verdict::Limited { tell } =
            self.limiter.check(src.ip(), std::time::Instant::now())
        {
            self.ctx.metrics.udp_limited.inc();
            if tell {
                tracing::info!(%src, "rate-limiting a source");
                let req = match udp::decode_request(data) {
                    Ok(incoming) => Some(incoming.request.req),
                    Err(e) => e.req,
                };
                let body = ServerBody::Error {
                    req,
                    reason: Reason::RateLimited,
                    message: format!(
                        "more than {} datagrams per second from this address; slow down",
                        self.ctx.config.udp_rate
                    ),
                };
                self.send_unvalidated(src, data.len(), body).await;
            }
            return;
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
                self.send_unvalidated(src, data.len(), body).await;
                return;
            }
        };
        let request = incoming.request;
        let req = request.req;
        let now = unix_secs();
        let validated = request
            .cookie
            .as_deref()
            .is_some_and(|c| self.cookies.check(src, c, now));
        if !validated {
            let cookie = self.cookies.issue(src, now);
            self.send_unvalidated(src, data.len(), ServerBody::Cookie { req, cookie })
                .await;
            return;
        }

        // Signature and replay window, for requests that act for an account.
        let mut acting: Option<(String, PublicKey, replay::RequestDigest)> = None;
        if let Some(name) = request.body.account() {
            let Some(signed) = incoming.signed else {
                let msg = "this request must be signed with the account's key";
                self.refuse(src, req, Reason::SignatureRequired, msg).await;
                return;
            };
            let key = match (
                &request.body,
                self.accounts.get(name),
                self.tombstones.get(name),
            ) {
                (RequestBody::Register { key, .. }, _, _) => *key,
                (_, Some(account), _) => account.handle.key,
                (_, None, Some(tomb)) => tomb.key,
                (_, None, None) => {
                    let answer = deny(
                        &request.body,
                        req,
                        Reason::NotRegistered,
                        not_registered(name),
                    );
                    self.send(src, &answer).await;
                    return;
                }
            };
            if let Err(e) = sign::verify(&key, signed.body, signed.sig) {
                self.refuse(src, req, Reason::BadSignature, &e.to_string())
                    .await;
                return;
            }
            let digest = replay::digest(&request.body);
            match self
                .window_of(name, &key)
                .map(|(_, w)| w.check(req, &digest))
            {
                Some(Verdict::Repeat(answer)) => {
                    // The first answer may not be durable yet: it waits like the first did.
                    let answer = answer.to_vec();
                    self.emit(src, answer).await;
                    return;
                }
                Some(Verdict::Stale) => {
                    let msg = "request number is older than this account's replay window";
                    self.refuse(src, req, Reason::StaleRequest, msg).await;
                    return;
                }
                Some(Verdict::Reused) => {
                    let msg = "this request number was already used for a different request; use a new one";
                    self.refuse(src, req, Reason::RequestReused, msg).await;
                    return;
                }
                Some(Verdict::New) | None => {}
            }
            acting = Some((name.to_owned(), key, digest));
        }

        let answer = self.execute(request.body, req, src).await;
        if let (Some((name, key, digest)), Some(first)) = (acting, answer.datagrams.first()) {
            // Only into the window of the account that signed: a refused REGISTER for a taken
            // name, signed by another key, must not touch the owner's window.
            let recorded = self.window_of(&name, &key).map(|(account, window)| {
                window.record(req, digest, first.clone());
                (account, window.floor())
            });
            if let Some((account, floor)) = recorded {
                self.records.push(Record::Replied {
                    account,
                    req,
                    digest,
                    answer: first.clone(),
                    floor,
                });
            }
        }
        self.append_records();
        for datagram in answer.datagrams {
            self.emit(src, datagram).await;
        }
        match answer.after {
            AfterAnswer::Nothing => {}
            AfterAnswer::AnnounceItem(item) => self.announce_item(item).await,
            AfterAnswer::SendPending(name) => self.send_pending(&name, true).await,
        }
    }
}
