//! Property tests of the wire protocol: whatever bytes arrive, the decoders answer with a value
//! or a reasoned error and never panic; what the encoders write, the decoders read back
//! unchanged; signatures and cookies accept exactly what was signed or issued.

use auction_protocol::channel::{self, ChannelBody, ChannelRequestBody};
use auction_protocol::cookie::CookieKey;
use auction_protocol::limits::{MAX_AMOUNT_CENTS, MAX_DATAGRAM, MAX_REQ};
use auction_protocol::udp::{self, Request, RequestBody, ServerBody};
use auction_protocol::{sign, Cents, PublicKey, Reason, VERSION};
use proptest::prelude::*;
use ring::signature::Ed25519KeyPair;
use std::net::SocketAddr;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, quotes, backslashes and control characters included.
    proptest::string::string_regex("(?s).{0,40}").unwrap()
}

fn cents() -> impl Strategy<Value = Cents> {
    (0..=MAX_AMOUNT_CENTS).prop_map(Cents)
}

fn request_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        (text(), any::<[u8; 32]>()).prop_map(|(name, key)| RequestBody::Register {
            name,
            key: PublicKey(key)
        }),
        text().prop_map(|account| RequestBody::Deregister { account }),
        (
            text(),
            text(),
            cents(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(cents()),
            proptest::option::of(cents())
        )
            .prop_map(|(account, description, min, duration, reserve, buy_now)| {
                RequestBody::Offer {
                    account,
                    description,
                    min,
                    duration,
                    reserve,
                    buy_now,
                }
            }),
        Just(RequestBody::List),
        any::<u64>().prop_map(|item| RequestBody::Status { item }),
        (text(), 0..3u8).prop_map(|(account, m)| RequestBody::Attach {
            account,
            mode: [
                auction_protocol::udp::AttachMode::Login,
                auction_protocol::udp::AttachMode::Keep,
                auction_protocol::udp::AttachMode::Roam
            ][m as usize],
        }),
        (text(), any::<u64>()).prop_map(|(account, notice)| RequestBody::Ack { account, notice }),
        (text(), any::<u64>()).prop_map(|(account, item)| RequestBody::Subscribe { account, item }),
        (text(), any::<u64>())
            .prop_map(|(account, item)| RequestBody::Unsubscribe { account, item }),
        text().prop_map(|account| RequestBody::Subscriptions { account }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        0..=MAX_REQ,
        proptest::option::of("[0-9a-f]{40}"),
        request_body(),
    )
        .prop_map(|(req, cookie, body)| Request {
            v: VERSION,
            req,
            cookie,
            body,
        })
}

fn channel_body() -> impl Strategy<Value = ChannelBody> {
    prop_oneof![
        (
            any::<u64>(),
            cents(),
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(cents()),
            proptest::option::of(cents())
        )
            .prop_map(|(req, amount, ends_at, leading, max, next_min)| {
                ChannelBody::BidAccepted {
                    req,
                    amount,
                    ends_at,
                    leading,
                    max,
                    next_min,
                }
            }),
        (any::<u64>(), text(), proptest::option::of(cents()), cents()).prop_map(
            |(req, message, highest, next_min)| ChannelBody::BidRejected {
                req,
                reason: Reason::TooLow,
                message,
                highest,
                next_min,
            }
        ),
        (
            (any::<u64>(), cents(), text(), any::<u64>()),
            (
                proptest::option::of(cents()),
                proptest::option::of(any::<bool>()),
                proptest::option::of(cents())
            )
        )
            .prop_map(
                |((item, amount, bidder, ends_at), (next_min, reserve_met, buy_now))| {
                    ChannelBody::Highest {
                        item,
                        amount,
                        bidder,
                        ends_at,
                        next_min,
                        reserve_met,
                        buy_now,
                    }
                }
            ),
        any::<u64>().prop_map(|item| ChannelBody::BidOver { item }),
        (any::<u64>(), text(), cents()).prop_map(|(item, winner, amount)| ChannelBody::SoldTo {
            item,
            winner,
            amount
        }),
        (proptest::option::of(any::<u64>()), text()).prop_map(|(req, message)| {
            ChannelBody::Error {
                req,
                reason: Reason::Malformed,
                message,
            }
        }),
    ]
}

fn keys(seed: [u8; 32]) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&seed).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn udp_decoders_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        match udp::decode_request(&bytes) {
            Ok(incoming) => {
                prop_assert!(bytes.len() <= MAX_DATAGRAM);
                prop_assert_eq!(incoming.request.v, VERSION);
                prop_assert!(incoming.request.req <= MAX_REQ);
            }
            Err(e) => prop_assert!(!e.detail.is_empty()),
        }
        let _ = udp::decode_server(&bytes);
    }

    #[test]
    fn udp_decoder_never_panics_on_json_like_text(
        text in r#"\{("(v|req|type|signed|sig|cookie|name|key|item|account)"|[:,\[\]{}0-9"a-z.\-e+]){0,40}\}"#
    ) {
        let _ = udp::decode_request(text.as_bytes());
        let _ = channel::decode_request(&text);
        let _ = channel::decode_message(&text);
    }

    #[test]
    fn channel_decoders_never_panic_on_text(line in "(?s).{0,300}") {
        if let Err(e) = channel::decode_request(&line) {
            prop_assert!(!e.detail.is_empty());
        }
        let _ = channel::decode_message(&line);
    }

    #[test]
    fn requests_round_trip(request in request()) {
        let bytes = udp::encode_request(&request);
        // Oversized requests are refused by size, not misread.
        match udp::decode_request(&bytes) {
            Ok(back) => {
                prop_assert_eq!(back.request, request);
                prop_assert!(back.signed.is_none());
            }
            Err(e) => {
                prop_assert!(bytes.len() > MAX_DATAGRAM, "{e:?}");
                prop_assert_eq!(e.reason, Reason::TooLarge);
            }
        }
    }

    #[test]
    fn signed_requests_verify_and_any_change_is_caught(
        request in request(),
        seed in any::<[u8; 32]>(),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let keys = keys(seed);
        let body = udp::encode_request(&request);
        let datagram = sign::sign_datagram(&keys, &body);
        prop_assume!(datagram.len() <= MAX_DATAGRAM);
        let incoming = udp::decode_request(&datagram).unwrap();
        prop_assert_eq!(&incoming.request, &request);
        let signed = incoming.signed.unwrap();
        prop_assert_eq!(signed.body, &body[..]);
        let public = sign::public_key_of(&keys);
        prop_assert!(sign::verify(&public, signed.body, signed.sig).is_ok());
        // One flipped bit anywhere in the signed body: the signature no longer matches.
        let mut altered = body.clone();
        let i = flip.index(altered.len());
        altered[i] ^= 1 << bit;
        prop_assert!(sign::verify(&public, &altered, signed.sig).is_err());
        // Another key does not verify it either.
        let other = sign::public_key_of(&self::keys([seed[0].wrapping_add(1); 32]));
        prop_assume!(other != public);
        prop_assert!(sign::verify(&other, signed.body, signed.sig).is_err());
    }

    #[test]
    fn signature_check_never_panics(sig in "(?s).{0,200}", body in proptest::collection::vec(any::<u8>(), 0..200), key in any::<[u8; 32]>()) {
        prop_assert!(sign::verify(&PublicKey(key), &body, &sig).is_err());
    }

    #[test]
    fn channel_requests_round_trip(req in any::<u64>(), amount in cents(), id in proptest::option::of("[!-~]{1,64}"), kind in 0..3u8) {
        let body = match kind {
            0 => ChannelRequestBody::Status,
            1 => ChannelRequestBody::Bid { amount, id },
            _ => ChannelRequestBody::ProxyBid { max: amount, id },
        };
        let line = channel::encode_request(req, body.clone());
        prop_assert!(line.ends_with('\n'));
        let back = channel::decode_request(line.trim_end()).unwrap();
        prop_assert_eq!(back.req, req);
        prop_assert_eq!(back.body, body);
    }

    #[test]
    fn channel_messages_round_trip(body in channel_body()) {
        let line = channel::encode_line(body.clone());
        prop_assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        prop_assert_eq!(channel::decode_message(line.trim_end()).unwrap().body, body);
    }

    #[test]
    fn server_datagrams_round_trip(req in any::<u64>(), name in text(), reason_text in text()) {
        for body in [
            ServerBody::Registered { req, name: name.clone() },
            ServerBody::RegisterDenied { req, reason: Reason::NameTaken, message: reason_text.clone() },
            ServerBody::Cookie { req, cookie: "00".repeat(20) },
        ] {
            let bytes = udp::encode(body.clone());
            prop_assert_eq!(udp::decode_server(&bytes).unwrap().body, body);
        }
    }

    #[test]
    fn cookies_are_accepted_only_as_issued(
        master in any::<[u8; 32]>(),
        port in 1u16..,
        other_port in 1u16..,
        now in 1_000_000u64..4_000_000_000,
        junk in "(?s).{0,60}",
    ) {
        let key = CookieKey::new(&master);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let cookie = key.issue(addr, now);
        prop_assert!(key.check(addr, &cookie, now));
        prop_assert!(key.check(addr, &cookie, now + 60));
        // Expired, for another address, from another key, or made up: refused.
        prop_assert!(!key.check(addr, &cookie, now + 10_000));
        if other_port != port {
            prop_assert!(!key.check(SocketAddr::from(([127, 0, 0, 1], other_port)), &cookie, now));
        }
        let mut other_master = master;
        other_master[0] ^= 1;
        prop_assert!(!CookieKey::new(&other_master).check(addr, &cookie, now));
        prop_assume!(junk != cookie);
        prop_assert!(!key.check(addr, &junk, now));
    }

    #[test]
    fn amounts_parse_back_and_never_panic(c in cents(), junk in "(?s).{0,30}") {
        prop_assert_eq!(Cents::parse_decimal(&c.to_string()), Ok(c));
        let _ = Cents::parse_decimal(&junk);
    }
}
