//! What the interactive shell prints around the commands: its greeting, its help, its prompt
//! and the grammar errors of a line it could not parse.

use super::Out;
use std::io::Write;

const SHELL_HELP: &str = "Commands: register NAME | deregister | offer DESCRIPTION --min AMOUNT [--duration DUR] |\nitems | status ITEM | subscribe ITEM | unsubscribe ITEM |\nnegotiate ITEM --accept AMOUNT | negotiate ITEM --refuse |\nsettle ITEM [--name N --address A | --contact C] [--second-chance] [--accept-offer] |\nbid ITEM AMOUNT | bid ITEM --max AMOUNT (then follows the item) | help | quit";

impl Out {
    /// The greeting, with the help (not with `--json`).
    pub fn shell_banner(&self) {
        if !self.json {
            println!("auction-client shell; announcements print as they arrive.\n{SHELL_HELP}");
        }
    }

    /// The answer to `help` (also with `--json`).
    pub fn shell_help(&self) {
        println!("{SHELL_HELP}");
    }

    /// The prompt before each line (not with `--json`).
    pub fn shell_prompt(&self) {
        if !self.json {
            print!("auction> ");
            let _ = std::io::stdout().flush();
        }
    }

    /// A line that is not a command, or not a well-formed one, as clap explains it.
    pub fn shell_usage(&self, error: &clap::Error) {
        eprintln!("{}", error.render().to_string().trim_end());
    }
}
