//! The rules of one sale's settlement, without I/O or clocks (callers pass `now`): who may do
//! what, when the buyer's time runs out, and who gets a second-chance offer. The settlement
//! desk (`settle/`) owns one of these per sold item, stores it whole after every
//! change, and turns what happened into messages and notices.
//!
//! The buyer gives a shipping name and address, the seller a contact; each sees the other's
//! once given, and the sale is settled when both have. A buyer who has not answered by the
//! deadline loses the sale (cancelled); the seller may then offer it to the best remaining
//! bidder at that bidder's highest bid, who accepts (and becomes the buyer, with a new
//! deadline) or declines. Nobody is offered the same item twice.

use auction_protocol::settle::{
    check_info, Role, SettleState, SettlementView, Shipping, MAX_CONTACT, MAX_SHIP_ADDRESS,
    MAX_SHIP_NAME,
};
use auction_protocol::{Cents, Reason};

use crate::accounts::AccountId;
use crate::rules::refusal::Refusal;

/// An account taking part, with its name for views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub id: AccountId,
    pub name: String,
}

/// A sold item, as its auction ended: what its settlement starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub item: u64,
    pub description: String,
    pub seller: Party,
    pub buyer: Party,
    pub amount: Cents,
    /// When the auction closed (Unix ms): the buyer's time to settle counts from here.
    pub closed_at: u64,
}

/// One sale's settlement: exactly what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub item: u64,
    pub description: String,
    pub seller: Party,
    /// The buyer now; `None` after a cancellation and while a second-chance offer is open.
    pub buyer: Option<Party>,
    /// The price: the winning bid, or the second-chance bidder's highest bid.
    pub amount: Cents,
    /// Unix ms: when the buyer's details, or the answer to an offer, are due.
    pub deadline: Option<u64>,
    pub shipping: Option<Shipping>,
    pub contact: Option<String>,
    /// An open second-chance offer: to whom, at what price.
    pub offer: Option<(Party, Cents)>,
    /// Everyone who was the buyer or was offered the item: never offered it (again).
    pub passed: Vec<AccountId>,
}

/// What an expired deadline did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lapsed {
    /// The buyer gave no shipping details in time: the sale is cancelled.
    Buyer(Party),
    /// The bidder offered a second chance did not answer in time.
    Offer(Party),
}

/// What an `inform` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Informed {
    /// The buyer gave shipping details (the seller is to be told).
    pub shipping: bool,
    /// Both sides have now given theirs.
    pub settled: bool,
}

impl Settlement {
    /// A new sale's settlement: the buyer has `timeout_ms` from the close to give shipping
    /// details.
    pub fn new(sale: Sale, timeout_ms: u64) -> Settlement {
        Settlement {
            item: sale.item,
            description: sale.description,
            seller: sale.seller,
            passed: vec![sale.buyer.id],
            buyer: Some(sale.buyer),
            amount: sale.amount,
            deadline: Some(sale.closed_at + timeout_ms),
            shipping: None,
            contact: None,
            offer: None,
        }
    }

    pub fn state(&self) -> SettleState {
        match (&self.offer, &self.buyer, &self.shipping, &self.contact) {
            (Some(_), ..) => SettleState::Offered,
            (None, None, ..) => SettleState::Cancelled,
            (None, Some(_), None, _) => SettleState::AwaitingBuyer,
            (None, Some(_), Some(_), None) => SettleState::AwaitingSeller,
            (None, Some(_), Some(_), Some(_)) => SettleState::Settled,
        }
    }

    /// Who `account` is in this settlement.
    pub fn role(&self, account: AccountId) -> Result<Role, Refusal> {
        if account == self.seller.id {
            Ok(Role::Seller)
        } else if self.buyer.as_ref().is_some_and(|b| b.id == account) {
            Ok(Role::Buyer)
        } else if self.offer.as_ref().is_some_and(|(p, _)| p.id == account) {
            Ok(Role::Offered)
        } else if self.passed.contains(&account) {
            // The buyer whose time ran out, or a bidder whose offer lapsed or was declined.
            Err(Refusal::new(
                Reason::TooLate,
                format!(
                    "item {} is no longer yours to settle: your time to settle (or to answer the offer) passed, or you declined it",
                    self.item
                ),
            ))
        } else {
            Err(Refusal::new(
                Reason::NotAParty,
                format!(
                    "you are not the buyer or the seller of item {}, nor offered it",
                    self.item
                ),
            ))
        }
    }

    /// The `inform` fields `role` still has to give.
    pub fn need(&self, role: Role) -> Vec<String> {
        let state = self.state();
        match role {
            Role::Buyer if self.shipping.is_none() => vec!["name".into(), "address".into()],
            Role::Seller if self.contact.is_none() && state != SettleState::Cancelled => {
                vec!["contact".into()]
            }
            _ => vec![],
        }
    }

    /// The settlement as `role` sees it: the shipping details and the contact are for buyer
    /// and seller only.
    pub fn view(&self, role: Role) -> SettlementView {
        let party = role != Role::Offered;
        SettlementView {
            item: self.item,
            description: self.description.clone(),
            role,
            state: self.state(),
            seller: self.seller.name.clone(),
            buyer: self.buyer.as_ref().map(|b| b.name.clone()),
            amount: self.offer.as_ref().map_or(self.amount, |(_, a)| *a),
            deadline: self.deadline,
            shipping: self.shipping.clone().filter(|_| party),
            contact: self.contact.clone().filter(|_| party),
        }
    }

    /// The buyer's shipping details, or the seller's contact.
    pub fn inform(
        &mut self,
        account: AccountId,
        name: Option<String>,
        address: Option<String>,
        contact: Option<String>,
    ) -> Result<Informed, Refusal> {
        let item = self.item;
        match self.role(account)? {
            Role::Buyer => {
                let (Some(name), Some(address), None) = (name, address, &contact) else {
                    return Err(Refusal::new(
                        Reason::InvalidInfo,
                        "the buyer gives `name` and `address` (and no `contact`)".into(),
                    ));
                };
                if self.shipping.is_some() {
                    return Err(Refusal::new(
                        Reason::WrongState,
                        format!("your shipping details for item {item} were given already"),
                    ));
                }
                check_info("name", &name, MAX_SHIP_NAME, false)?;
                check_info("address", &address, MAX_SHIP_ADDRESS, true)?;
                self.shipping = Some(Shipping { name, address });
                self.deadline = None;
                Ok(Informed {
                    shipping: true,
                    settled: self.state() == SettleState::Settled,
                })
            }
            Role::Seller => {
                let (Some(contact), None, None) = (contact, &name, &address) else {
                    return Err(Refusal::new(
                        Reason::InvalidInfo,
                        "the seller gives `contact` (and no `name` or `address`)".into(),
                    ));
                };
                if self.contact.is_some() {
                    return Err(Refusal::new(
                        Reason::WrongState,
                        format!("your contact for item {item} was given already"),
                    ));
                }
                check_info("contact", &contact, MAX_CONTACT, false)?;
                self.contact = Some(contact);
                Ok(Informed {
                    shipping: false,
                    settled: self.state() == SettleState::Settled,
                })
            }
            Role::Offered => Err(Refusal::new(
                Reason::WrongState,
                format!("answer the second-chance offer for item {item} first"),
            )),
        }
    }

    /// Applies a deadline that has passed by `now`, if one has.
    pub fn expire(&mut self, now: u64) -> Option<Lapsed> {
        if self.deadline.is_none_or(|d| now < d) {
            return None;
        }
        match self.state() {
            SettleState::AwaitingBuyer => {
                self.deadline = None;
                self.buyer.take().map(Lapsed::Buyer)
            }
            SettleState::Offered => {
                self.deadline = None;
                self.offer.take().map(|(p, _)| Lapsed::Offer(p))
            }
            // A deadline that no longer applies: gone, so no timer keeps firing for it.
            _ => {
                self.deadline = None;
                None
            }
        }
    }

    /// Whether `account` may make a second-chance offer now: the seller, after a cancellation.
    /// Checked before the bids are read.
    pub fn may_offer(&self, account: AccountId) -> Result<(), Refusal> {
        let item = self.item;
        if self.role(account)? != Role::Seller {
            return Err(Refusal::new(
                Reason::NotAParty,
                format!("only the seller of item {item} makes second-chance offers"),
            ));
        }
        if self.state() != SettleState::Cancelled {
            return Err(Refusal::new(
                Reason::WrongState,
                format!(
                    "item {item}'s sale is not cancelled ({}); a second chance follows a cancelled sale",
                    state_words(self.state())
                ),
            ));
        }
        Ok(())
    }

    /// The seller offers a cancelled sale to the best bidder not yet passed over.
    /// `bids` is each bidder's highest accepted bid, best first.
    pub fn second_chance(
        &mut self,
        account: AccountId,
        bids: &[(Party, Cents)],
        now: u64,
        timeout_ms: u64,
    ) -> Result<(Party, Cents), Refusal> {
        self.may_offer(account)?;
        let item = self.item;
        let Some((party, amount)) = bids
            .iter()
            .find(|(p, _)| p.id != self.seller.id && !self.passed.contains(&p.id))
            .cloned()
        else {
            return Err(Refusal::new(
                Reason::NoRunnerUp,
                format!("no other bidder is left to offer item {item} to"),
            ));
        };
        self.passed.push(party.id);
        self.offer = Some((party.clone(), amount));
        self.deadline = Some(now + timeout_ms);
        Ok((party, amount))
    }

    /// The bidder offered a second chance answers: accepting makes it the buyer at the
    /// offered price, with `timeout_ms` to give its shipping details.
    pub fn answer_offer(
        &mut self,
        account: AccountId,
        accept: bool,
        now: u64,
        timeout_ms: u64,
    ) -> Result<(), Refusal> {
        if self.role(account)? != Role::Offered {
            return Err(Refusal::new(
                Reason::WrongState,
                format!(
                    "no second-chance offer for item {} is open to you",
                    self.item
                ),
            ));
        }
        let Some((party, amount)) = self.offer.take() else {
            return Err(Refusal::new(Reason::WrongState, "no offer is open".into()));
        };
        if accept {
            self.buyer = Some(party);
            self.amount = amount;
            self.shipping = None;
            self.deadline = Some(now + timeout_ms);
        } else {
            self.deadline = None;
        }
        Ok(())
    }
}

/// The state in a few words, for messages.
pub fn state_words(state: SettleState) -> &'static str {
    match state {
        SettleState::AwaitingBuyer => "waiting for the buyer's shipping details",
        SettleState::AwaitingSeller => "waiting for the seller's contact",
        SettleState::Settled => "settled",
        SettleState::Cancelled => "cancelled",
        SettleState::Offered => "offered to another bidder",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: AccountId, name: &str) -> Party {
        Party {
            id,
            name: name.into(),
        }
    }

    /// Item 7 sold by alice (1) to bob (2) for 20.00; bob's details due at t = 1000.
    fn sale() -> Settlement {
        let sale = Sale {
            item: 7,
            description: "Lamp".into(),
            seller: p(1, "alice"),
            buyer: p(2, "bob"),
            amount: Cents(2000),
            closed_at: 400,
        };
        Settlement::new(sale, 600)
    }

    fn reason<T: std::fmt::Debug>(r: Result<T, Refusal>) -> Reason {
        r.unwrap_err().reason
    }

    #[test]
    fn both_sides_inform_and_each_sees_the_others_details() {
        let mut s = sale();
        assert_eq!(s.state(), SettleState::AwaitingBuyer);
        assert_eq!(s.need(Role::Buyer), ["name", "address"]);
        assert_eq!(s.need(Role::Seller), ["contact"]);
        assert_eq!(reason(s.role(3)), Reason::NotAParty);
        // Wrong fields for the role; a card number anywhere.
        assert_eq!(
            reason(s.inform(2, None, None, Some("x".into()))),
            Reason::InvalidInfo
        );
        let card = Some("4111 1111 1111 1111".into());
        assert_eq!(
            reason(s.inform(2, Some("Bob".into()), card, None)),
            Reason::CardNumber
        );
        let done = s
            .inform(2, Some("Bob B".into()), Some("1 Main St".into()), None)
            .unwrap();
        assert_eq!(
            done,
            Informed {
                shipping: true,
                settled: false
            }
        );
        assert_eq!((s.state(), s.deadline), (SettleState::AwaitingSeller, None));
        assert_eq!(s.view(Role::Seller).shipping.unwrap().name, "Bob B");
        assert_eq!(
            reason(s.inform(2, Some("B".into()), Some("2".into()), None)),
            Reason::WrongState
        );
        let done = s
            .inform(1, None, None, Some("alice@example.org".into()))
            .unwrap();
        assert!(done.settled);
        assert_eq!(s.state(), SettleState::Settled);
        assert_eq!(
            s.view(Role::Buyer).contact.as_deref(),
            Some("alice@example.org")
        );
        // Nothing lapses once settled.
        assert_eq!(s.expire(u64::MAX), None);
    }

    #[test]
    fn a_silent_buyer_loses_the_sale_and_the_runner_up_gets_a_second_chance() {
        let mut s = sale();
        s.inform(1, None, None, Some("alice@example.org".into()))
            .unwrap();
        assert_eq!(s.expire(999), None);
        assert_eq!(
            reason(s.second_chance(1, &[], 999, 500)),
            Reason::WrongState,
            "not cancelled yet"
        );
        assert_eq!(s.expire(1000), Some(Lapsed::Buyer(p(2, "bob"))));
        assert_eq!(s.state(), SettleState::Cancelled);
        assert_eq!(reason(s.role(2)), Reason::TooLate, "bob's time passed");
        assert_eq!(
            reason(s.role(9)),
            Reason::NotAParty,
            "a stranger never was one"
        );
        // Best first: bob (the lapsed winner) is skipped, carol is offered at her bid.
        let bids = [
            (p(2, "bob"), Cents(2000)),
            (p(3, "carol"), Cents(1800)),
            (p(4, "dan"), Cents(900)),
        ];
        assert_eq!(
            reason(s.second_chance(3, &bids, 1000, 500)),
            Reason::NotAParty
        );
        assert_eq!(
            s.second_chance(1, &bids, 1000, 500).unwrap(),
            (p(3, "carol"), Cents(1800))
        );
        assert_eq!(s.state(), SettleState::Offered);
        let offered = s.view(Role::Offered);
        assert_eq!((offered.amount, offered.contact), (Cents(1800), None));
        // Carol lets it lapse; dan is next and accepts.
        assert_eq!(s.expire(1500), Some(Lapsed::Offer(p(3, "carol"))));
        assert_eq!(s.second_chance(1, &bids, 1600, 500).unwrap().0, p(4, "dan"));
        assert_eq!(
            reason(s.answer_offer(3, true, 1700, 500)),
            Reason::TooLate,
            "carol's offer lapsed"
        );
        s.answer_offer(4, true, 1700, 500).unwrap();
        assert_eq!(
            (s.state(), s.amount, s.deadline),
            (SettleState::AwaitingBuyer, Cents(900), Some(2200))
        );
        s.inform(4, Some("Dan".into()), Some("2 High St".into()), None)
            .unwrap();
        assert_eq!(
            s.state(),
            SettleState::Settled,
            "the seller's contact stands"
        );
        // Everyone has been passed over now.
        assert_eq!(s.passed, [2, 3, 4]);
    }

    #[test]
    fn a_declined_offer_returns_to_cancelled_and_the_list_runs_out() {
        let mut s = sale();
        s.expire(1000);
        let bids = [(p(3, "carol"), Cents(1800))];
        s.second_chance(1, &bids, 1000, 500).unwrap();
        s.answer_offer(3, false, 1100, 500).unwrap();
        assert_eq!(s.state(), SettleState::Cancelled);
        assert_eq!(
            reason(s.second_chance(1, &bids, 1200, 500)),
            Reason::NoRunnerUp
        );
    }
}
