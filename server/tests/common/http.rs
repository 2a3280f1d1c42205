//! A small HTTP/1.1 client for the board's tests: whole responses, and Server-Sent Events read
//! one event at a time. Raw sockets on purpose: the tests see exactly what a browser gets.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response: status, headers (names lowercase) and body.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Connection: close`, read to the end.
pub async fn get(addr: SocketAddr, path: &str) -> Page {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("the response within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let (status, headers) = parse_head(head);
    Page {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// An open event stream (or the refusal it got instead).
pub struct Stream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    /// Everything read from the stream so far, for tests that look for what must not be there.
    pub seen: String,
}

/// `GET path` with extra headers, keeping the connection to read events from.
pub async fn stream(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Stream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (n, v) in extra {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(tcp);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("the response head within 10 s")
            .unwrap();
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let (status, headers) = parse_head(&head);
    Stream {
        status,
        headers,
        reader,
        seen: String::new(),
    }
}

impl Stream {
    /// The next event (comments and keep-alives skipped), or `None` if none comes within
    /// `secs` or the stream ends. Chunked framing lines are skipped too: an event's lines
    /// never look like a bare hexadecimal number.
    pub async fn next(&mut self, secs: u64) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout_at(deadline, self.reader.read_line(&mut line))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.seen.push_str(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if line.is_empty() && !event.is_empty() {
                return Some(Sse { event, id, data });
            }
        }
    }

    /// The next `item` event about `item` that `pick` accepts.
    pub async fn item_event(
        &mut self,
        item: u64,
        what: &str,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> Sse {
        loop {
            let e = self
                .next(10)
                .await
                .unwrap_or_else(|| panic!("no event for {what} within 10 s"));
            if e.event == "item" {
                let v = e.json();
                if v["item"]["item"] == item && pick(&v) {
                    return e;
                }
            }
        }
    }
}

/// Serves `t`'s board (with its metrics) on a fresh port 0 listener; returns its address.
pub async fn serve_board(t: &super::TestServer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    t.server.serve_web(listener, true).unwrap()
}
