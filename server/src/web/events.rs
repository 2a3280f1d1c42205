//! `GET /events`: the board's changes as Server-Sent Events, one stream per page.
//!
//! A stream holds a permit (the cap on open streams), a cursor and the board's `watch`; when
//! woken it sends, one at a time as the connection takes them, the state now of each item
//! changed since its cursor (`item` events, with the server's time, so a page counts down on
//! the server's clock). It builds the next event only when hyper asks for it, which hyper
//! does only when its small write buffer has room: a browser that stops reading holds its
//! buffers and a cursor, and when it reads again gets each changed item once, as it is then. A page whose
//! cursor the board can no longer serve (another server run, or results it has dropped) is
//! told to re-read the page (`reload`). Every event's id is `BOOT-SEQ`, so a browser that
//! reconnects sends it back as `Last-Event-ID` and resumes where it was.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::board::{Board, BoardBid, BoardItem, Change, Next};
use super::{event_id, parse_event_id, BoardSite, EventsQuery};
use crate::clock::unix_ms;

/// A comment line this often keeps proxies and the browser from timing the stream out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A stream collects changes at most this often: the changes of a busy auction in between are
/// sent together, each item once, so a stream costs the board a bounded number of looks a
/// second however fast the bids come (and a page gets at most 40 updates a second).
const MIN_GAP: Duration = Duration::from_millis(25);

/// The data of an `item` event.
#[derive(Serialize)]
struct ItemEvent<'a> {
    /// The server's clock when the event was sent (Unix ms).
    now: u64,
    item: &'a BoardItem,
    bid: Option<&'a BoardBid>,
}

/// The data of a `reload` event.
#[derive(Serialize)]
struct ReloadEvent {
    now: u64,
    why: &'static str,
}

struct Follow {
    board: Arc<Board>,
    changed: watch::Receiver<u64>,
    /// The last change sent; `None`: the page's state is from another run or unreadable.
    cursor: Option<u64>,
    only: Option<u64>,
    /// When it last caught up.
    last: tokio::time::Instant,
    _permit: OwnedSemaphorePermit,
}

pub(super) async fn stream(
    State(site): State<BoardSite>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(permit) = site.streams.clone().try_acquire_owned() else {
        let message = format!(
            "the board already has {} live streams open, the most it serves; refresh the page to see the state, or try again later\n",
            site.stream_cap
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10"), (header::CONNECTION, "close")],
            message,
        )
            .into_response();
    };
    let board = site.board.clone();
    let mut changed = board.subscribe();
    changed.borrow_and_update();
    // Where the page's state is from: the last event it got, or the state it was rendered
    // with; an id that is not text, not ours or not readable means the page must re-read.
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().map(str::to_owned).unwrap_or_default()),
        None => query.since,
    };
    let cursor = match resume {
        Some(id) => parse_event_id(board.boot, &id),
        None => Some(board.seq()),
    };
    let follow = Follow {
        board,
        changed,
        cursor,
        only: query.item,
        last: tokio::time::Instant::now(),
        _permit: permit,
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.next_event() {
                return Some((Ok::<_, Infallible>(event), f));
            }
            // Up to date: wait for the next change (or the end of the server), and let a burst
            // of changes gather.
            f.changed.changed().await.ok()?;
            tokio::time::sleep_until(f.last + MIN_GAP).await;
            f.changed.borrow_and_update();
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// One line of JSON (serializing these plain structs cannot fail).
fn json(data: &impl Serialize) -> String {
    serde_json::to_string(data).unwrap_or_default()
}

impl Follow {
    /// The event for the next change after the cursor, `reload` when the board cannot tell
    /// what changed after it, or `None` when the page is up to date.
    fn next_event(&mut self) -> Option<Event> {
        let now = unix_ms();
        let next = match self.cursor {
            Some(cursor) => self.board.next_after(cursor, self.only),
            None => Next::Lost,
        };
        match next {
            Next::Change(change) => {
                let Change { seq, item, bid } = *change;
                self.cursor = Some(seq);
                let data = ItemEvent {
                    now,
                    item: &item,
                    bid: bid.as_ref(),
                };
                Some(
                    Event::default()
                        .event("item")
                        .id(event_id(self.board.boot, seq))
                        .data(json(&data)),
                )
            }
            Next::UpToDate => {
                self.last = tokio::time::Instant::now();
                None
            }
            Next::Lost => {
                let seq = self.board.seq();
                self.cursor = Some(seq);
                let data = ReloadEvent {
                    now,
                    why: "the board has changed more than this page can be told; re-read it",
                };
                Some(
                    Event::default()
                        .event("reload")
                        .id(event_id(self.board.boot, seq))
                        .data(json(&data)),
                )
            }
        }
    }
}
