//! `--html PATH` (a run, a baseline) and `summarize --html PATH`: one self-contained HTML page
//! with the latency percentile curves and the answers per second as inline SVG (`plot.rs`),
//! and the figures the text report prints, as tables. Nothing is fetched and no script runs.
//!
//! An exporter beside the text table (`Report::table`) and JSON (serde): it renders reports
//! already computed and returns a string; `main.rs` writes the file. Nothing here is shared
//! with another task or waits on anything.

mod plot;

pub use plot::{latency_series, latency_svg, rate_series, rate_svg, PlotError, Series};

use crate::report::{Report, Subject};
use std::fmt::Write;

/// A report and the name it goes by on the page ("auction", or a file's name in a summary).
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a> {
    pub label: &'a str,
    pub report: &'a Report,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em}\
td{text-align:right;font-variant-numeric:tabular-nums}th{text-align:left;background:#f4f4f4}\
pre{background:#f8f8f8;padding:.8em;overflow-x:auto}";

/// The whole page. `summary` is `loadgen summarize`'s text (medians, ratios), shown as is.
pub fn page(
    title: &str,
    runs: &[Labelled<'_>],
    summary: Option<&str>,
) -> Result<String, PlotError> {
    let latency = latency_svg(runs)?;
    let rate = rate_svg(runs)?;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    if let Some(r) = runs.first() {
        let m = &r.report.machine;
        let _ = writeln!(
            out,
            "<p>loadgen {}, {} cores, {} {}.</p>",
            escape(&m.loadgen_version),
            m.cores,
            escape(&m.os),
            escape(&m.arch)
        );
    }
    let _ = write!(
        out,
        "<h2>Latency</h2>\n<figure id=\"latency\">\n{latency}\n<figcaption>Percentile curves \
         (HdrHistogram): x is the share of values at or below y, on a 1/(1-p) scale; the \
         maximum is drawn at one in the number of values.</figcaption>\n</figure>\n\
         <h2>Answers per second</h2>\n<figure id=\"rate\">\n{rate}\n<figcaption>Answers in each \
         second of the measured phase; a last, partial second is drawn at its rate, or left out \
         when shorter than a quarter second.</figcaption>\n</figure>\n"
    );
    if let Some(text) = summary {
        let _ = write!(out, "<h2>Summary</h2>\n<pre>{}</pre>\n", escape(text));
    }
    figures_table(&mut out, runs);
    latency_table(&mut out, runs);
    details(&mut out, runs);
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// One row per figure of the text report, one column per report.
fn figures_table(out: &mut String, runs: &[Labelled<'_>]) {
    type Figure = fn(&Report) -> String;
    let rows: [(&str, Figure); 18] = [
        ("kind", |r| r.kind.clone()),
        ("bidders", |r| r.config.bidders.to_string()),
        ("items", |r| r.config.items.to_string()),
        ("channels", |r| r.spread.channels.to_string()),
        ("bidders per item", |r| {
            format!(
                "{}-{}",
                r.spread.bidders_per_item_min, r.spread.bidders_per_item_max
            )
        }),
        ("loop", |r| {
            let target = r.config.target_rate;
            let target = target.map(|t| format!(" at {t:.0}/s target"));
            format!("{}{}", r.config.mode, target.unwrap_or_default())
        }),
        ("measured (s)", |r| format!("{:.1}", r.elapsed_s)),
        ("sent", |r| r.counts.sent.to_string()),
        ("answered", |r| r.counts.answered.to_string()),
        ("answered/s", |r| {
            format!("{:.0}", r.throughput.answered_per_s)
        }),
        ("accepted", |r| r.counts.accepted.to_string()),
        ("accepted/s", |r| {
            format!("{:.0}", r.throughput.accepted_per_s)
        }),
        ("rejected", |r| {
            let reasons: Vec<String> = (r.counts.rejected.iter())
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let total = r.counts.rejected_total();
            if reasons.is_empty() {
                total.to_string()
            } else {
                format!("{total} ({})", reasons.join(", "))
            }
        }),
        ("sent below the price on purpose", |r| {
            r.counts.deliberately_low.to_string()
        }),
        ("achieved / target rate", |r| {
            (r.throughput.achieved_fraction).map_or("-".into(), |f| format!("{:.1} %", f * 100.0))
        }),
        ("channels reopened", |r| r.counts.reconnected.to_string()),
        ("copies relayed / due", |r| {
            let n = &r.counts;
            format!("{} / {}", n.relayed, n.relay_due)
        }),
        ("unanswered, errors", |r| {
            let errors: Vec<String> = (r.counts.errors.iter())
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if errors.is_empty() && r.counts.unanswered == 0 {
                "none".into()
            } else {
                format!("{} unanswered; {}", r.counts.unanswered, errors.join(", "))
            }
        }),
    ];
    out.push_str("<h2>Figures</h2>\n<table id=\"figures\">\n<thead><tr><th>figure</th>");
    for run in runs {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(run.label));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    // Figures of bidding a baseline does not have; its text report leaves them out too.
    let auction_only = [
        "accepted",
        "accepted/s",
        "rejected",
        "sent below the price on purpose",
    ];
    for (name, figure) in rows {
        let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(name));
        for run in runs {
            let subject = run.report.subject();
            let value = if (subject != Subject::Auction && auction_only.contains(&name))
                || (subject != Subject::Relay && name == "copies relayed / due")
            {
                "-".to_owned()
            } else {
                figure(run.report)
            };
            let _ = write!(out, "<td>{}</td>", escape(&value));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The text report's latency table, for every report.
fn latency_table(out: &mut String, runs: &[Labelled<'_>]) {
    out.push_str(
        "<h2>Latency (ms)</h2>\n<table id=\"latencies\">\n<thead><tr><th>report</th>\
         <th>latency</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th>\
         <th>max</th></tr></thead>\n<tbody>\n",
    );
    for run in runs {
        for (name, s) in run.report.latency_rows() {
            let Some(s) = s else { continue };
            let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
            let _ = writeln!(
                out,
                "<tr><th scope=\"row\">{}</th><th scope=\"row\">{name}</th><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(run.label),
                s.count,
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.p999),
                ms(s.max)
            );
        }
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The server's figures, the verification and the notes, as sentences.
fn details(out: &mut String, runs: &[Labelled<'_>]) {
    for run in runs {
        let r = run.report;
        let mut lines: Vec<String> = Vec::new();
        if let Some(server) = &r.server {
            lines.push(format!("server ({}):", server.url));
            lines.extend(server.lines());
        }
        lines.extend(
            r.cpu
                .lines(r.subject())
                .into_iter()
                .map(|l| format!("CPU over the measured phase: {l}")),
        );
        match &r.verify {
            Some(v) if v.passed => lines.push(format!(
                "verified: {} items closed with the winner and price loadgen saw accepted \
                 (unsold where that was below a reserve); every bid answered",
                v.items_checked
            )),
            Some(v) => {
                lines.push("VERIFICATION FAILED:".into());
                lines.extend(v.problems.iter().cloned());
            }
            None => {}
        }
        lines.extend(r.notes.iter().map(|n| format!("note: {n}")));
        if lines.is_empty() {
            continue;
        }
        let _ = write!(out, "<h3>{}</h3>\n<ul>\n", escape(run.label));
        for line in lines {
            let _ = writeln!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }
}
