//! `settle ITEM`: completes a sale over TLS with the settlement desk. Opens the sale (or answers
//! a second-chance offer, or makes one), gives the details the desk asks for (from the flags,
//! or typed in at a terminal), shows where the sale stands and, with `--wait`, what the other
//! side does until it is settled or cancelled. The connection is this command's alone and is
//! closed when it ends.

use super::Done;
use crate::cli::SettleArgs;
use crate::line_editor::{LineEditor, Read};
use crate::render::{self, Out};
use anyhow::Result;
use auction_client::{Client, ClientError};
use auction_protocol::settle::{SettleBody, SettleRequestBody, SettleState};
use std::io::IsTerminal;

pub async fn run(
    client: &Client,
    args: SettleArgs,
    out: Out,
    shell: Option<&LineEditor>,
) -> Result<Done> {
    // Asking needs a person at a terminal: the shell's editor on one, or a terminal of its own.
    let asker = match shell {
        Some(editor) if editor.interactive => Asker::Shell(editor),
        Some(_) => Asker::Nobody,
        None if std::io::stdin().is_terminal() => Asker::Terminal,
        None => Asker::Nobody,
    };
    settle(client, args, &asker, out).await?;
    Ok(Done::Ok)
}

/// Who types in the details the flags did not give.
enum Asker<'a> {
    Terminal,
    Shell(&'a LineEditor),
    Nobody,
}

impl Asker<'_> {
    /// Reads one settlement field.
    async fn ask(&self, field: &str, out: Out) -> Result<String> {
        match self {
            Asker::Terminal => ask(field, out),
            Asker::Shell(editor) => match editor.read(render::field_prompt(field), false).await {
                Read::Line(line) => Ok(line.trim().to_owned()),
                Read::Interrupted | Read::Eof => anyhow::bail!(ClientError::Local(format!(
                    "settle stopped: no {field} given"
                ))),
            },
            Asker::Nobody => anyhow::bail!(ClientError::Local(format!(
                "the server asks for your {field}: give --{field}"
            ))),
        }
    }
}

/// `settle`: where the sale stands, the request the flags ask for, and the details the
/// server asks for (from the flags, or typed in when someone can be asked).
async fn settle(client: &Client, mut args: SettleArgs, asker: &Asker<'_>, out: Out) -> Result<()> {
    let prompt = !matches!(asker, Asker::Nobody);
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
        let need = need.clone();
        let given = |field: &str| match field {
            "name" => args.name.is_some(),
            "address" => args.address.is_some(),
            _ => args.contact.is_some(),
        };
        let missing = need.iter().any(|f| !given(f));
        // The offer was made, or taken: that was this command's job, done. What the desk asks
        // for next is shown, to give with the flags it names.
        if missing && !prompt && (args.second_chance || args.accept_offer) {
            out.settle_message(&answer);
            conn.close().await;
            return Ok(());
        }
        // Where it stands, before asking (with flags, only the outcome is shown).
        if out.json || (prompt && missing) {
            out.settle_message(&answer);
        }
        let mut fields = [
            ("name", args.name.take()),
            ("address", args.address.take()),
            ("contact", args.contact.take()),
        ];
        let mut informed: [Option<String>; 3] = [None, None, None];
        for (slot, (field, value)) in informed.iter_mut().zip(fields.iter_mut()) {
            if !need.iter().any(|n| n == field) {
                continue;
            }
            *slot = Some(match value.take() {
                Some(v) => v,
                None => asker.ask(field, out).await?,
            });
        }
        // Flags the server did not ask for are put back, to be reported below.
        [args.name, args.address, args.contact] = fields.map(|(_, v)| v);
        let [name, address, contact] = informed;
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

/// Reads one settlement field typed at the terminal of its own.
fn ask(field: &str, out: Out) -> Result<String> {
    out.prompt_field(field)?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
