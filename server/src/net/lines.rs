//! Reading request lines from a channel or settlement connection: bounded lines, one idle
//! timer per connection, and every line handed to the task that owns the connection's state
//! (an item or the settlement desk) as one command. A line that cannot be read is reported
//! through that task too, so that every write to the connection goes through its one queue.

use auction_protocol::channel::LineError;
use auction_protocol::limits::MAX_LINE;
use auction_protocol::Reason;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// A task's command that carries one connection's lines.
pub(crate) trait LineCommand: Send + Sized {
    /// A decoded request.
    type Request;
    /// Decodes one line (without its line ending).
    fn decode(line: &str) -> Result<Self::Request, LineError>;
    fn request(conn: u64, request: Self::Request) -> Self;
    /// A line that could not be decoded; `fatal` closes the connection after the error.
    fn bad_line(conn: u64, error: LineError, fatal: bool) -> Self;
}

/// Reads request lines until the peer closes, sending each to `task` as a command. A bad line
/// is answered and reading goes on; a line over the limit, bytes that are not UTF-8 or nothing
/// at all (not even a blank line) for the idle timeout end the connection with an error that
/// says why. When that error has been handed over, or the task is gone, this waits for ever:
/// the connection's writer finishes what is queued and closes.
///
/// The idle timeout is one timer per connection, re-armed only when it fires early (something
/// arrived since it was set), not one timer registration per line on the bid path.
pub(crate) async fn read_lines<R: AsyncRead + Unpin, C: LineCommand>(
    reader: R,
    task: &mpsc::Sender<C>,
    conn: u64,
    idle_timeout: Duration,
) {
    let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
    let mut last_heard = Instant::now();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        let next = tokio::select! {
            next = lines.next() => match next {
                Some(next) => next,
                None => return,
            },
            _ = &mut idle => {
                if last_heard.elapsed() < idle_timeout {
                    idle.as_mut().reset(last_heard + idle_timeout);
                    continue;
                }
                let detail = format!(
                    "nothing received for {} s; clients send a blank line now and then to stay connected",
                    idle_timeout.as_secs()
                );
                return fail(task, conn, Reason::IdleTimeout, detail).await;
            }
        };
        last_heard = Instant::now();
        let cmd = match next {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match C::decode(line.trim_end_matches('\r')) {
                Ok(request) => C::request(conn, request),
                Err(error) => C::bad_line(conn, error, false),
            },
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                let detail = format!("lines are limited to {MAX_LINE} bytes");
                return fail(task, conn, Reason::TooLarge, detail).await;
            }
            Err(LinesCodecError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return fail(task, conn, Reason::Malformed, "lines must be UTF-8".into()).await;
            }
            // The connection broke: there is no one to tell.
            Err(LinesCodecError::Io(_)) => return,
        };
        if task.send(cmd).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Ends reading with an error the task sends before closing the connection.
async fn fail<C: LineCommand>(task: &mpsc::Sender<C>, conn: u64, reason: Reason, detail: String) {
    let error = LineError {
        reason,
        req: None,
        detail,
    };
    let _ = task.send(C::bad_line(conn, error, true)).await;
    std::future::pending::<()>().await;
}
