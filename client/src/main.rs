//! `auction-client`: the command line for people and scripts. Parses arguments, runs one
//! command (or the interactive shell) through the client library, renders the result and
//! exits with 0 (done), 1 (refused by the server), 2 (usage) or 3 (network or TLS failure).

mod cli;
mod render;

use anyhow::Result;
use auction_client::{BidResult, Client, ClientError, ItemSession, Offer, Reconnect};
use auction_protocol::settle::{SettleBody, SettleRequestBody, SettleState};
use auction_protocol::udp::AttachMode;
use auction_protocol::Reason;
use clap::Parser;
use cli::{BidArgs, Cli, Command, OfferArgs, SettleArgs, ShellLine};
use render::Out;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// How a command ended, for the exit code.
enum Done {
    Ok,
    Refused,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    let code = match run(cli, out).await {
        Ok(Done::Ok) => 0,
        Ok(Done::Refused) => 1,
        Err(e) => {
            let (code, reason) = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Denied { reason, .. }) => (1, reason.code()),
                Some(ClientError::Local(_)) => (2, "usage".into()),
                Some(_) => (3, "network".into()),
                None => (3, "local".into()),
            };
            out.error(&reason, &render::error_message(&e));
            code
        }
    };
    std::process::exit(code);
}

async fn connect(cli: &Cli) -> Result<Client> {
    let server = auction_client::resolve(&cli.server).await?;
    let home = cli
        .home
        .clone()
        .unwrap_or_else(auction_client::identity::default_home);
    Client::new_from(server, &home, &cli.ca, cli.bind).await
}

/// Roaming login: a command run with an account on a machine whose IP does not get the
/// account's announcements takes them (`attach` in `roam` mode; pending notices follow to the
/// next `watch` or `shell` here). From the IP that has them it changes nothing.
async fn roam(client: &Client, out: Out) -> Result<()> {
    if client.identity.account_name().is_none() {
        return Ok(());
    }
    match client.attach_as(AttachMode::Roam).await {
        Ok((pending, true)) => {
            out.logged_in(&client.name()?, pending);
            Ok(())
        }
        Ok((_, false)) => Ok(()),
        // Gone, say: the command itself will say what is wrong.
        Err(ClientError::Denied { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn run(cli: Cli, out: Out) -> Result<Done> {
    let client = Arc::new(connect(&cli).await?);
    if !matches!(
        cli.command,
        Command::Register { .. } | Command::Deregister | Command::Watch | Command::Shell
    ) {
        roam(&client, out).await?;
    }
    match cli.command {
        Command::Watch => watch(client, out).await.map(|()| Done::Ok),
        Command::Shell => shell(client, out).await.map(|()| Done::Ok),
        command => execute(&client, command, out, false).await,
    }
}

/// Runs one short command. In the shell (`in_shell`), a bid keeps following its item in the
/// background.
async fn execute(client: &Arc<Client>, command: Command, out: Out, in_shell: bool) -> Result<Done> {
    match command {
        Command::Register { name } => {
            client.register(&name).await?;
            out.registered(&name);
            if in_shell {
                // Announcements for the new account come to this shell from now on, through
                // server restarts too (the task ends with the process).
                client.attach().await?;
                tokio::spawn(announce_moved(client.clone(), out));
            }
        }
        Command::Deregister => {
            let name = client.name()?;
            client.deregister().await?;
            out.deregistered(&name);
        }
        Command::Offer(OfferArgs {
            description,
            min,
            duration,
        }) => {
            let o = client
                .offer(&description, min, duration.map(|d| d.as_secs()))
                .await?;
            out.offered(o.item, &o.channel, o.ends_at);
        }
        Command::Items => out.items(&client.list().await?),
        Command::Subscribe { item } => out.subscribed(&client.subscribe(item).await?),
        Command::Unsubscribe { item } => {
            client.unsubscribe(item).await?;
            out.unsubscribed(item);
        }
        Command::Status { item } => out.status(&client.status(item).await?),
        Command::Settle(args) => {
            let prompt = !in_shell && std::io::IsTerminal::is_terminal(&std::io::stdin());
            settle(client, args, prompt, out).await?;
        }
        Command::Negotiate { item, accept, .. } => {
            out.negotiated(item, client.negotiate(item, accept).await?)
        }
        Command::Bid(BidArgs {
            item,
            amount,
            max,
            follow,
        }) => {
            let (offer, asked) = match (amount, max) {
                (_, Some(max)) => (Offer::Max(max), max),
                (Some(amount), None) => (Offer::Amount(amount), amount),
                (None, None) => anyhow::bail!(ClientError::Local(
                    "give an amount, or --max AMOUNT for a proxy bid".into()
                )),
            };
            let mut session = ItemSession::open(client.clone(), item, Reconnect::default()).await?;
            // The id stays the same if the bid has to be sent again after a reconnection, so
            // the server never counts it twice.
            let result = session
                .bid(offer, bid_id(), |e| out.session_event(e))
                .await?;
            out.bid(item, &result, asked);
            let accepted = matches!(result, BidResult::Accepted { .. });
            if in_shell {
                // Updates print as they arrive while the shell takes more commands.
                tokio::spawn(async move { follow_session(&mut session, out).await });
            } else if follow {
                follow_session(&mut session, out).await;
            } else {
                session.close().await;
            }
            return Ok(if accepted { Done::Ok } else { Done::Refused });
        }
        // Long-running modes are started by `run`; inside the shell they make no sense.
        Command::Watch | Command::Shell => anyhow::bail!(ClientError::Local(
            "the shell already prints announcements as they arrive".into()
        )),
    }
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

/// A fresh id for a bid, so a resent bid is never counted twice.
fn bid_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Prints the item's events until its auction has a result, reconnecting through server
/// restarts.
async fn follow_session(session: &mut ItemSession, out: Out) {
    while let Some(event) = session.next_event().await {
        match event {
            Ok(event) => out.session_event(&event),
            Err(e) => {
                out.gave_up_following(&e);
                break;
            }
        }
    }
}

/// Keeps the server sending this account's announcements here: re-attaches every 10 s in
/// `keep` mode (the server then also retries pending notices). When the server stops
/// answering, says so, and keeps trying with backoff until it is back. Returns when the
/// account has logged in from another address (`moved`): the announcements went there.
async fn keep_attached(client: Arc<Client>, out: Out) -> ClientError {
    let mut lost_since: Option<std::time::Instant> = None;
    let mut delay = Duration::from_secs(1);
    loop {
        match client.attach_as(AttachMode::Keep).await {
            Ok((pending, _)) => {
                if lost_since.take().is_some() {
                    out.contact_back(pending);
                }
                delay = Duration::from_secs(1);
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(
                e @ ClientError::Denied {
                    reason: Reason::Moved,
                    ..
                },
            ) => return e,
            Err(e) => {
                let wait = delay.mul_f64(rand::random_range(0.5..1.5));
                if lost_since.is_none() {
                    lost_since = Some(std::time::Instant::now());
                }
                out.contact_lost(&e, wait);
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Attaches, then prints announcements, staying attached through server restarts.
async fn watch(client: Arc<Client>, out: Out) -> Result<()> {
    let pending = client.attach().await?;
    out.watching(&client.name()?, pending);
    let mut reattach = tokio::spawn(keep_attached(client.clone(), out));
    loop {
        tokio::select! {
            update = client.next_update() => match update {
                Some(update) => out.update(&update),
                None => break,
            },
            // The account logged in elsewhere: this watch no longer gets anything.
            moved = &mut reattach => {
                let e = moved.map_err(|e| anyhow::anyhow!("{e}"))?;
                return Err(e.into());
            }
        }
    }
    reattach.abort();
    Ok(())
}

/// `keep_attached` for the shell: says so when the account logged in elsewhere.
async fn announce_moved(client: Arc<Client>, out: Out) {
    // Starting is a login: announcements come here, wherever they went before.
    if let Err(e) = client.attach().await {
        out.attach_failed(&e);
    }
    let e = keep_attached(client, out).await;
    out.moved_away(&e);
}

async fn shell(client: Arc<Client>, out: Out) -> Result<()> {
    out.shell_banner();
    let reattach = client
        .name()
        .is_ok()
        .then(|| tokio::spawn(announce_moved(client.clone(), out)));
    let announcements = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(update) = client.next_update().await {
                out.update(&update);
            }
        })
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        out.shell_prompt();
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let words = match shell_words::split(&line) {
            Ok(w) if w.is_empty() => continue,
            Ok(w) => w,
            Err(e) => {
                out.error("usage", &format!("cannot read that line: {e}"));
                continue;
            }
        };
        match words[0].as_str() {
            "quit" | "exit" => break,
            "help" => {
                out.shell_help();
                continue;
            }
            _ => {}
        }
        let parsed = match ShellLine::try_parse_from(&words) {
            Ok(p) => p,
            Err(e) => {
                out.shell_usage(&e);
                continue;
            }
        };
        if let Err(e) = execute(&client, parsed.command, out, true).await {
            out.error("error", &render::error_message(&e));
        }
    }
    announcements.abort();
    if let Some(reattach) = reattach {
        reattach.abort();
    }
    Ok(())
}
