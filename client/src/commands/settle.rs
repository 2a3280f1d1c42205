//! `settle ITEM`: completes a sale over TLS with the settlement desk. Opens the sale (or answers
//! a second-chance offer, or makes one), gives the details the desk asks for (from the flags,
//! or typed in at a terminal), shows where the sale stands and, with `--wait`, what the other
//! side does until it is settled or cancelled. The connection is this command's alone and is
//! closed when it ends.

use super::Done;
use crate::cli::SettleArgs;
use crate::render::Out;
use anyhow::Result;
use auction_client::{Client, ClientError};
use auction_protocol::settle::{SettleBody, SettleRequestBody, SettleState};
use std::io::IsTerminal;

pub async fn run(client: &Client, args: SettleArgs, out: Out, in_shell: bool) -> Result<Done> {
    // Asking needs a terminal, and the shell's own input is not one to borrow.
    let prompt = !in_shell && std::io::stdin().is_terminal();
    settle(client, args, prompt, out).await?;
    Ok(Done::Ok)
}

/// `settle`: where the sale stands, the request the flags ask for, and the details the
/// server asks for (from the flags, or typed in when `prompt`).
async fn settle(client: &Client, mut args: SettleArgs, prompt: bool, out: Out) -> Result<()> {
    let item = args.item;
    let mut conn = client.open_settlement(item).await?;
    let mut answer = if args.accept_offer || args.decline_offer {
        let accept = args.accept_offer;
        conn.request(SettleRequestBody::AnswerOffer { item, accept })
            .await?
    } else {
        conn.request(SettleRequestBody::Open { item }).await?
    };
    if args.second_chance {
        answer = conn
            .request(SettleRequestBody::SecondChance { item })
            .await?;
    }
    if let SettleBody::InformReq { need, .. } = &answer {
        // Where it stands, before asking (with flags, only the outcome is shown).
        let given = |field: &str| match field {
            "name" => args.name.is_some(),
            "address" => args.address.is_some(),
            _ => args.contact.is_some(),
        };
        if out.json || (prompt && !need.iter().all(|f| given(f))) {
            out.settle_message(&answer);
        }
        let inform = |field: &str, given: &mut Option<String>| -> Result<Option<String>> {
            if !need.iter().any(|n| n == field) {
                return Ok(None);
            }
            if let Some(v) = given.take() {
                return Ok(Some(v));
            }
            if !prompt {
                anyhow::bail!(ClientError::Local(format!(
                    "the server asks for your {field}: give --{field} (or run `settle` in a terminal to be asked)"
                )));
            }
            Ok(Some(ask(field, out)?))
        };
        let name = inform("name", &mut args.name)?;
        let address = inform("address", &mut args.address)?;
        let contact = inform("contact", &mut args.contact)?;
        answer = conn
            .request(SettleRequestBody::Inform {
                item,
                name,
                address,
                contact,
            })
            .await?;
    }
    // Flags the server did not ask for (given already, or the other role's) change nothing.
    for (field, value) in [
        ("name", &args.name),
        ("address", &args.address),
        ("contact", &args.contact),
    ] {
        if value.is_some() {
            out.flag_ignored(field);
        }
    }
    out.settle_message(&answer);
    if args.wait {
        while !matches!(&answer, SettleBody::Settlement { settlement, .. }
            if matches!(settlement.state, SettleState::Settled | SettleState::Cancelled))
        {
            match conn.next_push().await {
                Some(msg) => {
                    answer = msg?;
                    out.settle_message(&answer);
                }
                None => break,
            }
        }
    }
    conn.close().await;
    Ok(())
}

/// Reads one settlement field typed at the terminal.
fn ask(field: &str, out: Out) -> Result<String> {
    out.prompt_field(field)?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
