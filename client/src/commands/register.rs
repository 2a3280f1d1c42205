//! `register NAME`: creates an account for this client's key and keeps the name in the home
//! directory. In the shell, the account's announcements come to the shell from then on.

use super::{attach, Done};
use crate::render::Out;
use anyhow::Result;
use auction_client::Client;
use std::sync::Arc;

pub async fn run(client: &Arc<Client>, name: &str, out: Out, in_shell: bool) -> Result<Done> {
    client.register(name).await?;
    out.registered(name);
    if in_shell {
        // Announcements for the new account come to this shell from now on, through
        // server restarts too (the task ends with the process).
        client.attach().await?;
        let contact = attach::Contact::default();
        tokio::spawn(attach::stay_attached(client.clone(), out, contact));
    }
    Ok(Done::Ok)
}
