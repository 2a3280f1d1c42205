//! Reading the server's Prometheus metrics (`auction-server --metrics ADDR`) so a report can
//! put the server's own figures next to what the clients measured.
//!
//! The text exposition format is line-based and simple; this reads just enough of it (sample
//! lines: `name{label="value",...} number`), bounded in size, and never panics on odd input.

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest metrics page read.
const MAX_BODY: usize = 4 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scrape(pub Vec<Sample>);

impl Scrape {
    /// The sum of every sample called `name` (over all label sets), if there is any.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .0
            .iter()
            .filter(|s| s.name == name)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }
}

/// Parses the Prometheus text format; lines that are not samples are skipped.
pub fn parse(text: &str) -> Scrape {
    Scrape(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i + 1,
                ',' | ' ' => continue,
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &after[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// GETs `url` (`http://host:port/path`) and parses it.
pub async fn fetch(url: &str) -> Result<Scrape> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("'{url}': only http:// metrics URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let text = tokio::time::timeout(TIMEOUT, get(authority, path))
        .await
        .with_context(|| format!("no answer from {url} within 5 s"))??;
    Ok(parse(&text))
}

async fn get(authority: &str, path: &str) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("{authority}{path} answered {}", response.status());
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading {authority}{path}: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).context("the metrics page is not UTF-8")
}

/// The server's figures for one run, from scrapes before the channels opened, after they
/// opened, and after the measured phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerFigures {
    pub url: String,
    /// Deltas over the measured phase.
    pub bids_accepted: Option<f64>,
    pub bids_rejected: Option<f64>,
    pub commits: Option<f64>,
    pub changes_per_commit: Option<f64>,
    pub commit_ms_mean: Option<f64>,
    pub outgoing_dropped: Option<f64>,
    /// Gauges once the channels were open.
    pub open_connections: Option<f64>,
    pub rss_before_channels_bytes: Option<f64>,
    pub rss_with_channels_bytes: Option<f64>,
    /// (RSS with channels - RSS before) / channels opened.
    pub rss_per_channel_bytes: Option<f64>,
}

impl ServerFigures {
    pub fn from_scrapes(
        url: &str,
        before_channels: &Scrape,
        with_channels: &Scrape,
        after: &Scrape,
        channels: usize,
    ) -> ServerFigures {
        // A labelled family has no samples until its first event: absent counts as 0.
        let delta = |name: &str| {
            Some(after.sum(name).unwrap_or(0.0) - with_channels.sum(name).unwrap_or(0.0))
        };
        let commits = delta("auction_commit_batch_changes_count");
        let changes = delta("auction_commit_batch_changes_sum");
        let commit_s = delta("auction_commit_duration_seconds_sum");
        let rss0 = before_channels.sum("process_resident_memory_bytes");
        let rss1 = with_channels.sum("process_resident_memory_bytes");
        ServerFigures {
            url: url.to_owned(),
            bids_accepted: delta("auction_bids_accepted_total"),
            bids_rejected: delta("auction_bids_rejected_total"),
            commits,
            changes_per_commit: ratio(changes, commits),
            commit_ms_mean: ratio(commit_s.map(|s| s * 1000.0), commits),
            outgoing_dropped: delta("auction_outgoing_dropped_total"),
            open_connections: with_channels.sum("auction_channel_connections"),
            rss_before_channels_bytes: rss0,
            rss_with_channels_bytes: rss1,
            rss_per_channel_bytes: match (rss0, rss1) {
                (Some(a), Some(b)) if channels > 0 => Some((b - a) / channels as f64),
                _ => None,
            },
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let n = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        out.push(format!(
            "bids accepted {}, rejected {} (server's count over the measured phase)",
            n(self.bids_accepted),
            n(self.bids_rejected)
        ));
        out.push(format!(
            "commits {}, {} changes per commit, {} ms per commit",
            n(self.commits),
            self.changes_per_commit
                .map_or("-".into(), |v| format!("{v:.1}")),
            self.commit_ms_mean
                .map_or("-".into(), |v| format!("{v:.3}"))
        ));
        out.push(format!(
            "open channel connections {}, outgoing messages dropped {}",
            n(self.open_connections),
            n(self.outgoing_dropped)
        ));
        if let (Some(a), Some(b)) = (self.rss_before_channels_bytes, self.rss_with_channels_bytes) {
            out.push(format!(
                "resident memory {:.1} MiB before the channels, {:.1} MiB with them: {} per channel",
                a / 1048576.0,
                b / 1048576.0,
                self.rss_per_channel_bytes
                    .map_or("-".into(), |v| format!("{:.1} KiB", v / 1024.0))
            ));
        }
        out
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_and_without_labels() {
        let text = "# HELP auction_bids_rejected Bids refused.\n\
                    # TYPE auction_bids_rejected counter\n\
                    auction_bids_rejected_total{reason=\"too-low\"} 12\n\
                    auction_bids_rejected_total{reason=\"auction-over\",x=\"a\\\"b\"} 3\n\
                    auction_open_items 20\n\
                    auction_commit_duration_seconds_bucket{le=\"+Inf\"} 7\n\
                    process_resident_memory_bytes 1.5e7 1700000000\n\
                    \n\
                    garbage{unterminated=\"x 5\n\
                    {} 4\n\
                    novalue\n";
        let s = parse(text);
        assert_eq!(s.sum("auction_bids_rejected_total"), Some(15.0));
        assert_eq!(s.sum("auction_open_items"), Some(20.0));
        assert_eq!(s.sum("process_resident_memory_bytes"), Some(1.5e7));
        assert_eq!(s.sum("auction_commit_duration_seconds_bucket"), Some(7.0));
        assert_eq!(s.sum("missing"), None);
        assert_eq!(s.0.len(), 5);
        assert_eq!(s.0[1].labels["x"], "a\"b");
    }

    #[test]
    fn never_panics_on_odd_lines() {
        for line in [
            "{",
            "a{",
            "a{b",
            "a{b=",
            "a{b=\"",
            "a{b=\"\\",
            "a{}",
            "a{} x",
            "é{ü=\"ö\"} 1",
        ] {
            let _ = parse(line);
        }
        assert_eq!(parse("é{ü=\"ö\"} 1").0.len(), 1);
    }
}
