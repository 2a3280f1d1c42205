//! A party's TLS connection to the server's settlement desk (see `auction_protocol::settle`):
//! requests answered in order, and what the server pushes when the other party acts.

use auction_protocol::limits::MAX_LINE;
use auction_protocol::settle::{self, SettleBody, SettleRequestBody};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::channel::tls_connect;
use crate::error::{ClientError, Result};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSED: &str = "the settlement desk closed the connection";

fn is_closed(e: &ClientError) -> bool {
    matches!(e, ClientError::Protocol(m) if m == CLOSED)
}

type Tls = TlsStream<TcpStream>;

pub struct SettleConnection {
    lines: FramedRead<ReadHalf<Tls>, LinesCodec>,
    writer: WriteHalf<Tls>,
    next_req: u64,
    /// Messages the server pushed while an answer was awaited.
    pushed: VecDeque<SettleBody>,
}

impl SettleConnection {
    /// Connects to the settlement desk at `addr` (`host:port`), from the local IP `local` when
    /// given.
    pub async fn open(
        connector: &TlsConnector,
        addr: &str,
        local: Option<std::net::IpAddr>,
    ) -> Result<SettleConnection> {
        let tls = tls_connect(connector, addr, local).await?;
        let (reader, writer) = tokio::io::split(tls);
        Ok(SettleConnection {
            lines: FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE)),
            writer,
            next_req: 1,
            pushed: VecDeque::new(),
        })
    }

    /// Sends `body` and returns the server's answer (`inform-req` or `settlement`); a refusal
    /// is [`ClientError::Denied`].
    pub async fn request(&mut self, body: SettleRequestBody) -> Result<SettleBody> {
        let req = self.next_req;
        self.next_req += 1;
        let line = settle::encode_request(req, body);
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.flush().await?;
        loop {
            let msg = timeout(ANSWER_TIMEOUT, self.read()).await.map_err(|_| {
                ClientError::Protocol("no answer from the settlement desk".into())
            })??;
            match msg {
                SettleBody::Error {
                    req: Some(r),
                    reason,
                    message,
                } if r == req => return Err(ClientError::Denied { reason, message }),
                SettleBody::Error {
                    req: None,
                    reason,
                    message,
                } => return Err(ClientError::Denied { reason, message }),
                SettleBody::InformReq { req: r, .. } if r == req => return Ok(msg),
                SettleBody::Settlement { req: Some(r), .. } if r == req => return Ok(msg),
                other => self.pushed.push_back(other),
            }
        }
    }

    /// The next message the server pushes (`shipping-info`, `settlement`); `None` when the
    /// connection closes.
    pub async fn next_push(&mut self) -> Option<Result<SettleBody>> {
        if let Some(msg) = self.pushed.pop_front() {
            return Some(Ok(msg));
        }
        match self.read().await {
            Ok(msg) => Some(Ok(msg)),
            Err(e) if is_closed(&e) => None,
            Err(e) => Some(Err(e)),
        }
    }

    async fn read(&mut self) -> Result<SettleBody> {
        match self.lines.next().await {
            Some(Ok(line)) => settle::decode_message(&line)
                .map(|m| m.body)
                .map_err(|e| ClientError::Protocol(e.to_string())),
            Some(Err(e)) => Err(ClientError::Protocol(e.to_string())),
            None => Err(ClientError::Protocol(CLOSED.into())),
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
    }
}
