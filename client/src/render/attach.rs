//! What the client says about where the account's announcements go: a roaming login, the
//! start of `watch`, contact with the server lost and found again, and announcements moving
//! to another address. All of it goes to stderr except `watch`'s first line, which starts
//! its output.

use super::Out;
use auction_client::ClientError;
use serde_json::json;
use std::time::Duration;

impl Out {
    /// A command run on another machine made it one of the account's devices (a login).
    pub fn logged_in(&self, account: &str, pending: u32, devices: u32) {
        if self.json {
            say_err!(
                "{}",
                json!({"type": "logged-in", "account": account, "pending": pending, "devices": devices})
            );
        } else {
            let others = match devices.saturating_sub(1) {
                0 => String::new(),
                n => format!(" as well as to {n} other device(s)"),
            };
            say_err!(
                "auction-client: logged in as {account} from this address: announcements come here now{others} ({pending} notice(s) pending; `watch` shows them)."
            );
        }
    }

    /// `watch` is attached and listening.
    pub fn watching(&self, account: &str, pending: u32) {
        if self.json {
            self.line(json!({"type": "watching", "account": account, "pending": pending}));
        } else {
            say!("Watching for announcements as {account} ({pending} pending). Ctrl-C to stop.");
        }
    }

    /// The server answers again after it had stopped (`pending`: the notices it holds, when
    /// its answer said).
    pub fn contact_back(&self, pending: Option<u32>) {
        match pending {
            Some(n) => say_err!(
                "auction-client: the server is back; announcements resume ({n} notice(s) pending)."
            ),
            None => say_err!("auction-client: the server is back; announcements resume."),
        }
    }

    /// The server stopped answering; the next try is in `retry_in`.
    pub fn contact_lost(&self, error: &ClientError, retry_in: Duration) {
        say_err!(
            "auction-client: lost contact with the server ({error}); trying again in {:.1} s.",
            retry_in.as_secs_f64()
        );
    }

    /// The shell's first attach failed; it keeps trying.
    pub fn attach_failed(&self, error: &ClientError) {
        say_err!("auction-client: could not attach ({error}); trying again.");
    }

    /// The account is gone or newer devices took this one's place: the shell no longer gets
    /// announcements.
    pub fn moved_away(&self, error: &ClientError) {
        say_err!("auction-client: {error}; announcements no longer come to this shell.");
    }
}
