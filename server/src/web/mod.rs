//! The read-only web side: the live board (`board.rs` holds what it shows, `pages.rs` renders
//! it as HTML that works without JavaScript, `events.rs` streams changes as Server-Sent Events)
//! and the Prometheus `/metrics`, on one HTTP/1.1 server.
//!
//! Who owns what: the accept loop owns the listener and the connection permits; each
//! connection is its own task. Nothing here waits for storage: the board only ever holds what
//! is already durable, and an item's bid history is read from the database's committed rows.
//!
//! Bounded like the rest: connections are admitted within a budget (the permit is taken before
//! `accept`, so the surplus waits in the kernel's backlog, not in memory); each connection has
//! a deadline for its request head; open event streams have their own cap, past which the
//! answer is `503` with the reason. A browser that reads slowly holds one connection and one
//! cursor, never a queue (see `board.rs`).

pub mod board;
mod events;
mod pages;

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use board::{Board, BoardBid, BoardItem};

use crate::metrics::Metrics;
use crate::store::Storage;

/// How long a connection may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once beyond the event streams (page loads, scripts, `/metrics`).
const PAGE_CONNECTIONS: usize = 64;

/// The default cap on open event streams (`--web-streams`).
pub const DEFAULT_STREAMS: usize = 256;

/// Bids shown on an item's page (the earliest ones; the page says when there are more).
pub const HISTORY_SHOWN: u64 = 1000;

/// What the HTTP server serves: the board (with the storage its item pages read), the metrics,
/// or both.
#[derive(Clone)]
pub struct Site {
    pub board: Option<BoardSite>,
    pub metrics: Option<Arc<Metrics>>,
}

/// The board and what its pages need.
#[derive(Clone)]
pub struct BoardSite {
    pub board: Arc<Board>,
    pub storage: Arc<dyn Storage>,
    /// Open event streams at once; one more is refused with 503.
    pub streams: Arc<Semaphore>,
    pub stream_cap: usize,
}

/// Serves `site` on `listener` until `shutdown`; returns the address it serves.
pub fn serve(
    listener: TcpListener,
    site: Site,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<SocketAddr> {
    let addr = listener
        .local_addr()
        .context("the web listener has no address")?;
    let streams = site.board.as_ref().map_or(0, |b| b.stream_cap);
    let permits = Arc::new(Semaphore::new(streams + PAGE_CONNECTIONS));
    let app = router(site);
    let conns = tasks.clone();
    tasks.spawn(async move {
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = shutdown.cancelled() => return,
            };
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "the web listener failed to accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                let _permit = permit;
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                tokio::select! {
                    _ = conn => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    });
    Ok(addr)
}

fn router(site: Site) -> Router {
    let mut app = Router::new();
    if let Some(metrics) = site.metrics {
        app = app.route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        );
    }
    let board_routes = site.board.map(|board| {
        Router::new()
            .route("/", get(board_page))
            .route("/item/{item}", get(item_page))
            .route("/projector", get(projector_page))
            .route("/projector/{item}", get(projector_item_page))
            .route("/events", get(events::stream))
            .route("/board.js", get(script))
            .route("/board.css", get(style))
            .with_state(board)
    });
    if let Some(routes) = board_routes {
        app = app.merge(routes);
    }
    app.fallback(not_found)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: the board is at /, an item at /item/N, the metrics (when served here) at /metrics\n",
    )
        .into_response()
}

async fn board_page(State(site): State<BoardSite>) -> Response {
    html(pages::board(&site.board, false))
}

async fn projector_page(State(site): State<BoardSite>) -> Response {
    html(pages::board(&site.board, true))
}

async fn item_page(State(site): State<BoardSite>, Path(item): Path<u64>) -> Response {
    item_response(site, item, false).await
}

async fn projector_item_page(State(site): State<BoardSite>, Path(item): Path<u64>) -> Response {
    item_response(site, item, true).await
}

async fn item_response(site: BoardSite, item: u64, projector: bool) -> Response {
    let (seq, shown) = site.board.item(item);
    let Some(shown) = shown else {
        let message = format!(
            "item {item} is not on this board: it is neither open here nor among the latest {} results\n",
            board::RECENT_RESULTS
        );
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    let storage = site.storage.clone();
    let history =
        tokio::task::spawn_blocking(move || storage.history(item, HISTORY_SHOWN + 1)).await;
    let history = match history {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            tracing::warn!(item, error = %format!("{e:#}"), "could not read an item's bids");
            let message = "the item's bids could not be read from the database; try again\n";
            return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    html(pages::item(&site.board, seq, &shown, &history, projector))
}

/// A page: never cached, so a plain refresh shows the state now.
fn html(page: maud::Markup) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::response::Html(page.into_string()),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("board.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("board.css"),
    )
        .into_response()
}

/// The query of `/events`: where the page's state is from, and the one item it shows.
#[derive(Debug, serde::Deserialize)]
struct EventsQuery {
    since: Option<String>,
    item: Option<u64>,
}

/// The `Last-Event-ID` a reconnecting browser sends, if any.
fn last_event_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `BOOT-SEQ`, the id of every event (and the `since` a page is rendered with).
fn event_id(boot: u64, seq: u64) -> String {
    format!("{boot}-{seq}")
}

/// The sequence number in `id` if it is from this server run.
fn parse_event_id(boot: u64, id: &str) -> Option<u64> {
    let (b, s) = id.split_once('-')?;
    (b.parse::<u64>().ok()? == boot).then_some(())?;
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_another_runs_ids_are_not_ours() {
        assert_eq!(parse_event_id(7, &event_id(7, 42)), Some(42));
        assert_eq!(parse_event_id(8, &event_id(7, 42)), None);
        assert_eq!(parse_event_id(7, "7-"), None);
        assert_eq!(parse_event_id(7, "garbage"), None);
        assert_eq!(parse_event_id(7, "7-99999999999999999999999"), None);
    }
}
