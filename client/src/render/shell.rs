//! What the interactive shell prints around the commands: its greeting, its help (made from
//! the same command definitions as the command line, so it cannot leave a flag out) and the
//! grammar errors of a line it could not parse.

use super::Out;
use crate::cli::{ShellLine, NOT_IN_SHELL};
use clap::CommandFactory;

impl Out {
    /// The greeting (not with `--json`).
    pub fn shell_banner(&self, account: Option<&str>, history: bool) {
        if self.json {
            return;
        }
        let who = match account {
            Some(name) => format!("as {name}; announcements print as they arrive"),
            None => "without an account yet: `register NAME` makes one".into(),
        };
        let keys = if history {
            " Up and Down recall earlier commands, Tab completes commands, flags and item numbers."
        } else {
            ""
        };
        say!("auction-client shell {who}. `help` lists the commands, `quit` ends.{keys}");
    }

    /// `help`: every command with its one-line description; `help COMMAND`: its whole usage.
    pub fn shell_help(&self, topic: Option<&str>) {
        let mut commands = ShellLine::command();
        if let Some(name) = topic {
            match commands.find_subcommand_mut(name) {
                Some(cmd) if !NOT_IN_SHELL.contains(&name) => {
                    let help = cmd.render_long_help().to_string();
                    say!("{}", help.trim_end());
                }
                _ => say_err!("There is no command '{name}' in the shell; `help` lists them."),
            }
            return;
        }
        let rows: Vec<(String, String)> = commands
            .get_subcommands()
            .filter(|c| !NOT_IN_SHELL.contains(&c.get_name()))
            .map(|c| {
                let usage = c.clone().render_usage().to_string();
                let usage = usage.trim_start_matches("Usage: ").trim().to_owned();
                let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
                (usage, about)
            })
            .chain([
                (
                    "help [COMMAND]".into(),
                    "This list, or one command's flags.".into(),
                ),
                ("quit".into(), "Leave the shell (Ctrl-D does too).".into()),
            ])
            .collect();
        let width = rows.iter().map(|(u, _)| u.len()).max().unwrap_or(0).min(48);
        say!("Commands:");
        for (usage, about) in rows {
            let first = about.lines().next().unwrap_or("");
            if usage.len() > width {
                say!("  {usage}\n  {:width$}  {first}", "");
            } else {
                say!("  {usage:width$}  {first}");
            }
        }
    }

    /// A line that is not a command, or not a well-formed one, as clap explains it.
    pub fn shell_usage(&self, error: &clap::Error) {
        say_err!("{}", error.render().to_string().trim_end());
    }
}
