//! The shell's line editor: line editing, history kept in the client's home, completion of
//! commands, their flags and item numbers, and live messages printed above the prompt without
//! breaking the line being typed (rustyline).
//!
//! rustyline blocks while it reads, so the editor lives on a thread of its own and serves
//! requests for a line (the shell's next command, or a field `settle` asks for) one at a time;
//! the async side waits for the answer. While the editor is on a terminal, everything the
//! client prints goes through its printer (see `render::print_above_prompt`). On a pipe it
//! reads plain lines, prints no prompt and prints as usual, so scripts can drive the shell.

use crate::cli::ShellLine;
use crate::render;
use anyhow::Result;
use clap::CommandFactory;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Lines of history kept in the home.
const HISTORY: usize = 1000;

/// What reading one line gave.
pub enum Read {
    Line(String),
    /// Ctrl-C: the line typed so far is dropped.
    Interrupted,
    /// Ctrl-D or the end of the input.
    Eof,
}

struct Ask {
    prompt: String,
    /// Whether the line goes into the history (commands do; a shipping address does not).
    history: bool,
    reply: oneshot::Sender<Read>,
}

/// The item numbers the shell knows are open, for completion: kept up to date by whoever
/// sees items come and go (a listing, NEW-ITEM, ITEM-CLOSED).
#[derive(Clone, Default)]
pub struct KnownItems(Arc<Mutex<BTreeSet<u64>>>);

impl KnownItems {
    pub fn add(&self, item: u64) {
        self.lock().insert(item);
    }

    pub fn remove(&self, item: u64) {
        self.lock().remove(&item);
    }

    pub fn replace(&self, items: impl IntoIterator<Item = u64>) {
        *self.lock() = items.into_iter().collect();
    }

    // A std mutex: held for one set operation, never across `.await`.
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle the async side reads lines through.
pub struct LineEditor {
    asks: std::sync::mpsc::Sender<Ask>,
    /// On a terminal (prompts are shown, fields can be asked for).
    pub interactive: bool,
}

impl LineEditor {
    /// Starts the editor thread, with the history in `history` (read now, appended to after
    /// each command) and completion of the items in `items`.
    pub fn start(history: Option<PathBuf>, items: KnownItems) -> Result<LineEditor> {
        let config = rustyline::Config::builder()
            .max_history_size(HISTORY)?
            .history_ignore_space(true)
            .history_ignore_dups(true)?
            .auto_add_history(false)
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config)?;
        editor.set_helper(Some(ShellHelper::new(items)));
        if let Some(path) = &history {
            // A first run has none yet.
            let _ = editor.load_history(path);
        }
        // Only a terminal has a printer: on a pipe there is no line being typed to keep.
        let interactive = match editor.create_external_printer() {
            Ok(mut printer) => {
                render::print_above_prompt(Some(Box::new(move |line: String| {
                    let _ = printer.print(line);
                })));
                true
            }
            Err(_) => false,
        };
        let (asks, requests) = std::sync::mpsc::channel::<Ask>();
        std::thread::Builder::new()
            .name("line-editor".into())
            .spawn(move || serve(editor, requests, history))?;
        Ok(LineEditor { asks, interactive })
    }

    /// Reads one line after `prompt`.
    pub async fn read(&self, prompt: &str, history: bool) -> Read {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            prompt: prompt.to_owned(),
            history,
            reply,
        };
        if self.asks.send(ask).is_err() {
            return Read::Eof;
        }
        answer.await.unwrap_or(Read::Eof)
    }
}

impl Drop for LineEditor {
    fn drop(&mut self) {
        // Printing goes straight to the terminal again.
        render::print_above_prompt(None);
    }
}

/// The editor thread: one line per request until the shell drops its handle.
fn serve(
    mut editor: Editor<ShellHelper, DefaultHistory>,
    requests: std::sync::mpsc::Receiver<Ask>,
    history: Option<PathBuf>,
) {
    while let Ok(ask) = requests.recv() {
        let read = match editor.readline(&ask.prompt) {
            Ok(line) => {
                if ask.history && !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(path) = &history {
                        if let Err(e) = editor.append_history(path) {
                            tracing::debug!(error = %e, "could not save the shell's history");
                        }
                    }
                }
                Read::Line(line)
            }
            Err(ReadlineError::Interrupted) => Read::Interrupted,
            Err(ReadlineError::Eof) => Read::Eof,
            Err(e) => {
                tracing::warn!(error = %e, "the line editor failed");
                Read::Eof
            }
        };
        let _ = ask.reply.send(read);
    }
}

/// Completion for the shell: command names, then the flags of the command typed, and item
/// numbers where a command takes one. All from the same definitions as the command line.
struct ShellHelper {
    commands: clap::Command,
    items: KnownItems,
}

impl ShellHelper {
    fn new(items: KnownItems) -> ShellHelper {
        ShellHelper {
            commands: ShellLine::command(),
            items,
        }
    }

    /// The names of every shell command (the CLI's but the long-running modes the shell
    /// already is, plus `help` and `quit`).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .commands
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .filter(|n| !crate::cli::NOT_IN_SHELL.contains(&n.as_str()))
            .collect();
        names.extend(["help".into(), "quit".into()]);
        names
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let words: Vec<&str> = before[..start].split_whitespace().collect();
        let pair = |s: String| Pair {
            display: s.clone(),
            replacement: s,
        };
        let candidates: Vec<String> = match words.first() {
            None => self.names(),
            Some(&"help") => self.names(),
            Some(name) => match self.commands.find_subcommand(name) {
                None => Vec::new(),
                Some(cmd) if word.starts_with('-') => cmd
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .map(|l| format!("--{l}"))
                    .collect(),
                Some(cmd) => {
                    // An item number goes first, where the command takes one.
                    let takes_item = cmd.get_positionals().any(|a| a.get_id() == "item");
                    if takes_item && words.len() == 1 {
                        let items = self.items.lock();
                        items.iter().map(u64::to_string).collect()
                    } else {
                        Vec::new()
                    }
                }
            },
        };
        let matching = candidates
            .into_iter()
            .filter(|c| c.starts_with(word))
            .map(pair)
            .collect();
        Ok((start, matching))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(helper: &ShellHelper, line: &str) -> Vec<String> {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (_, pairs) = helper.complete(line, line.len(), &ctx).unwrap();
        pairs.into_iter().map(|p| p.replacement).collect()
    }

    #[test]
    fn completes_commands_flags_and_open_item_numbers() {
        let items = KnownItems::default();
        items.replace([3, 12, 17]);
        let helper = ShellHelper::new(items.clone());
        assert_eq!(complete(&helper, "sub"), ["subscribe"]);
        assert_eq!(complete(&helper, "help un"), ["unsubscribe"]);
        let all = complete(&helper, "");
        assert!(all.contains(&"settle".to_string()) && all.contains(&"quit".to_string()));
        assert!(
            !all.contains(&"watch".to_string()),
            "the shell is a watch already"
        );
        assert_eq!(complete(&helper, "bid 1"), ["12", "17"]);
        assert_eq!(complete(&helper, "bid 17 --m"), ["--max"]);
        assert!(complete(&helper, "settle 3 --sec").contains(&"--second-chance".to_string()));
        // No item number after the item, nor for a command that takes none.
        assert!(complete(&helper, "bid 17 1").is_empty());
        assert!(complete(&helper, "items 1").is_empty());
        items.remove(12);
        assert_eq!(complete(&helper, "status 1"), ["17"]);
    }
}
