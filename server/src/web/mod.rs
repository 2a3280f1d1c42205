//! The read-only web side: the live board (`board.rs` holds what it shows, `pages.rs` renders
//! it as HTML that works without JavaScript, `events.rs` streams changes as Server-Sent Events)
//! and the Prometheus `/metrics`, on one HTTP/1.1 server.
//!
//! Who owns what: the accept loop owns the listener and the connection permits; each
//! connection is its own task. Nothing here waits for storage: the board only ever holds what
//! is already durable, and an item's bid history is read from the database's committed rows.
//!
//! Bounded like the rest: connections are admitted within a budget (the permit is taken before
//! `accept`, so the surplus waits in the kernel's backlog, not in memory), and one source (an
//! IPv4 address or an IPv6 /64) holds at most `--web-per-source` of them, so one host cannot
//! take every place; each connection has a deadline for its request head and small buffers
//! (hyper's, and the kernel's send buffer); open event streams have their own cap, past which
//! the answer is `503` with the reason. A browser that reads slowly holds one connection, its
//! buffers and one cursor, never a queue of events (see `events.rs`).

pub mod board;
mod events;
mod pages;

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use board::{BidCounts, Board, BoardBid, BoardItem};

use crate::metrics::Metrics;
use crate::store::Storage;

/// How long a connection may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once beyond the event streams (page loads, scripts, `/metrics`).
pub(crate) const PAGE_CONNECTIONS: usize = 64;

/// The default cap on open event streams (`--web-streams`).
pub const DEFAULT_STREAMS: usize = 256;

/// The default cap on connections from one source (`--web-per-source`): a browser opens up
/// to six per host, plus one stream per open page.
pub const DEFAULT_PER_SOURCE: usize = 16;

/// hyper's read and write buffer per connection (its smallest is 8 KiB): what a request head
/// may take, and what waits for a browser that does not read, beside the kernel's buffer.
const HTTP_BUFFER: usize = 16 * 1024;

/// The kernel's send buffer per connection (Linux doubles it): what a browser that stops
/// reading can hold in the kernel.
const SEND_BUFFER: usize = 32 * 1024;

/// How long the refusal of a source over its budget may take to write.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Bids shown on an item's page (the earliest ones; the page says when there are more).
pub const HISTORY_SHOWN: u64 = 1000;

/// What the HTTP server serves: the board (with the storage its item pages read), the metrics,
/// or both.
#[derive(Clone)]
pub struct Site {
    pub board: Option<BoardSite>,
    pub metrics: Option<Arc<Metrics>>,
    /// Connections one source may hold at once.
    pub per_source: usize,
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
    let sources = Sources::new(site.per_source);
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
            let (tcp, peer) = tokio::select! {
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
            let Some(slot) = sources.take(peer.ip()) else {
                // It keeps its permit while told (a write of a few hundred bytes): a flooding
                // source cannot make the server hold more sockets than the budget.
                conns.spawn(refuse(tcp, sources.cap, permit));
                continue;
            };
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER);
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                let _permit = (permit, slot);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(HTTP_BUFFER)
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

/// How many connections each source holds (see the module header).
struct Sources {
    held: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    cap: usize,
}

/// One connection's place in its source's budget, given back when dropped.
struct SourceSlot {
    held: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    source: IpAddr,
}

impl Sources {
    fn new(cap: usize) -> Sources {
        Sources {
            held: Arc::default(),
            cap,
        }
    }

    /// A place for one more connection from `ip`, unless its source holds all it may. (The
    /// lock is held only to count, never across an `.await`.)
    fn take(&self, ip: IpAddr) -> Option<SourceSlot> {
        let source = crate::rules::ratelimit::source_of(ip);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(source).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            held: self.held.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.source);
            }
        }
    }
}

/// Tells a source over its budget why, without reading its request, and closes.
async fn refuse(
    mut tcp: tokio::net::TcpStream,
    cap: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "your address already holds {cap} connections to this board, the most one source may; close some and try again\n"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 10\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

fn router(site: Site) -> Router {
    let (board, metrics) = (site.board.is_some(), site.metrics.is_some());
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
    app.fallback(move || async move {
        let message = match (board, metrics) {
            (true, true) => {
                "not found: the board is at /, an item at /item/N, the metrics at /metrics\n"
            }
            (true, false) => "not found: the board is at /, an item at /item/N\n",
            _ => "not found: the metrics are at /metrics\n",
        };
        (StatusCode::NOT_FOUND, message)
    })
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
            "item {item} is not on this board: it is neither open nor among the latest {} results\n",
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
