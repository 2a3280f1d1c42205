//! The two charts of the HTML page, as SVG drawn by `plotters`: the latency percentile curves
//! (HdrHistogram's classic plot) and the answers per second over the run.
//!
//! Compute, then render: `latency_series` and `rate_series` turn reports into plain points
//! (unit-tested), and `draw_*` only hands them to plotters. Nothing here is shared or waits on
//! anything: it reads reports already written and returns a string.

use super::Labelled;
use crate::report::{CurvePoint, Subject};
use plotters::prelude::*;

const SIZE: (u32, u32) = (900, 460);
/// A last, partial second shorter than this is left out of the rate chart: a few answers in a
/// few milliseconds would be drawn as a spike or a cliff that did not happen.
const SHORTEST_PARTIAL_SECOND: f64 = 0.25;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {reason}")]
pub struct PlotError {
    chart: &'static str,
    reason: String,
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The latency curves of every report: x is 1/(1-percentile) (so 10 is 90 %, 100 is 99 %),
/// y the latency in ms. An auction report gives its bid round trip and fan-out, an echo
/// baseline report its echo round trip, a relay baseline report its round trip and fan-out. Reports written before loadgen kept curves give none.
pub fn latency_series(runs: &[Labelled<'_>]) -> Vec<Series> {
    let mut out = Vec::new();
    for run in runs {
        let r = run.report;
        let subject = r.subject();
        let round_trip = (
            subject.round_trip(),
            &r.latency_curves_us.bid_round_trip,
            r.latency_us.bid_round_trip.as_ref().map_or(0, |s| s.count),
        );
        let fan_out = (
            subject.fan_out(),
            &r.latency_curves_us.fan_out,
            r.latency_us.fan_out.as_ref().map_or(0, |s| s.count),
        );
        let curves = match subject {
            Subject::Echo => vec![("TLS echo round trip", round_trip.1, round_trip.2)],
            Subject::Relay => vec![
                ("TLS relay round trip", round_trip.1, round_trip.2),
                fan_out,
            ],
            Subject::Auction => vec![round_trip, fan_out],
        };
        for (what, curve, count) in curves {
            if curve.is_empty() {
                continue;
            }
            out.push(Series {
                name: series_name(what, runs.len(), run.label),
                points: percentile_points(curve, count),
            });
        }
    }
    out
}

/// The points of one curve. 100 % has no finite 1/(1-p): the maximum is drawn at one in
/// `count` (the rarest value the run could show), or at the last step when that is further.
fn percentile_points(curve: &[CurvePoint], count: u64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(curve.len());
    for p in curve {
        let ms = p.us as f64 / 1000.0;
        let x = if p.percentile < 1.0 {
            1.0 / (1.0 - p.percentile)
        } else {
            let last = points.last().map_or(1.0, |&(x, _)| x);
            last.max(count as f64)
        };
        points.push((x, ms));
    }
    points
}

/// Answers per second of each report, at the middle of each second of the measured phase. A
/// last, partial second is drawn at its rate (answers / its length), or left out when shorter
/// than [`SHORTEST_PARTIAL_SECOND`].
pub fn rate_series(runs: &[Labelled<'_>]) -> Vec<Series> {
    runs.iter()
        .filter(|run| !run.report.throughput.per_second.is_empty())
        .map(|run| {
            let r = run.report;
            let what = r.subject().answers_per_s();
            Series {
                name: series_name(what, runs.len(), run.label),
                points: rate_points(&r.throughput.per_second, r.elapsed_s),
            }
        })
        .collect()
}

fn rate_points(per_second: &[u64], elapsed_s: f64) -> Vec<(f64, f64)> {
    let n = per_second.len();
    per_second
        .iter()
        .enumerate()
        .filter_map(|(i, &count)| {
            let start = i as f64;
            // Every second but the last is whole; the last lasts what is left of the run.
            let length = if i + 1 < n {
                1.0
            } else {
                (elapsed_s - start).clamp(0.0, 1.0)
            };
            (length >= SHORTEST_PARTIAL_SECOND)
                .then(|| (start + length / 2.0, count as f64 / length))
        })
        .collect()
}

/// The curve's name alone for one report; with several, which report it comes from too.
fn series_name(what: &str, reports: usize, label: &str) -> String {
    if reports == 1 {
        what.to_owned()
    } else {
        format!("{what} ({label})")
    }
}

/// The tick label of x = 1/(1-p) = 10^n: "0%", "90%", "99%", "99.9%", ...
fn percentile_label(x: f64) -> String {
    let decimals = (x.log10().round() as usize).saturating_sub(2);
    format!("{:.*}%", decimals, 100.0 * (1.0 - 1.0 / x))
}

/// Decimals enough to tell the y ticks apart at this scale.
fn decimals_for(top: f64) -> usize {
    match top {
        t if t < 1.0 => 3,
        t if t < 10.0 => 2,
        t if t < 100.0 => 1,
        _ => 0,
    }
}

fn largest(series: &[Series], f: impl Fn(&(f64, f64)) -> f64) -> f64 {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(&f))
        .fold(0.0, f64::max)
}

/// Line colours, in order: dark and far apart enough to tell apart on white.
const COLOURS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

fn style(i: usize) -> ShapeStyle {
    COLOURS[i % COLOURS.len()].stroke_width(2)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// The latency chart alone, as an SVG document.
pub fn latency_svg(runs: &[Labelled<'_>]) -> Result<String, PlotError> {
    let series = latency_series(runs);
    let mut svg = String::new();
    draw_latency(&mut svg, &series).map_err(|e| PlotError {
        chart: "latency",
        reason: e.to_string(),
    })?;
    Ok(svg)
}

/// The rate chart alone, as an SVG document.
pub fn rate_svg(runs: &[Labelled<'_>]) -> Result<String, PlotError> {
    let series = rate_series(runs);
    let mut svg = String::new();
    draw_rate(&mut svg, &series).map_err(|e| PlotError {
        chart: "rate",
        reason: e.to_string(),
    })?;
    Ok(svg)
}

fn draw_latency(svg: &mut String, series: &[Series]) -> DrawResult {
    // Whole decades of 1/(1-p), at least to 99 %.
    let decades = largest(series, |p| p.0).log10().ceil().max(2.0) as i32;
    let x_end = 10f64.powi(decades);
    let ticks: Vec<f64> = (0..=decades).map(|n| 10f64.powi(n)).collect();
    let y_end = (largest(series, |p| p.1) * 1.05).max(0.001);
    let decimals = decimals_for(y_end);

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(16)
        // Room for the last tick's label ("99.999%"), centred on the right edge.
        .margin_right(36)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (1f64..x_end).log_scale().with_key_points(ticks),
            0f64..y_end,
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style(i)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style(i)));
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
}

fn draw_rate(svg: &mut String, series: &[Series]) -> DrawResult {
    let x_end = largest(series, |p| p.0).ceil().max(1.0);
    let y_end = (largest(series, |p| p.1) * 1.1).max(1.0);

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Answers per second over the run", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_end, 0f64..y_end)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measured phase")
        .y_desc("answers per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style(i)).point_size(3))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style(i)));
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_ticks_read_as_nines() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn the_maximum_is_drawn_at_one_in_count() {
        let curve = [
            CurvePoint {
                percentile: 0.0,
                us: 1000,
            },
            CurvePoint {
                percentile: 0.9,
                us: 2000,
            },
            CurvePoint {
                percentile: 1.0,
                us: 5000,
            },
        ];
        let points = percentile_points(&curve, 500);
        assert_eq!(points[0], (1.0, 1.0));
        assert!((points[1].0 - 10.0).abs() < 1e-9 && points[1].1 == 2.0);
        assert_eq!(points[2], (500.0, 5.0));
        // Never left of the step before it.
        assert_eq!(percentile_points(&curve, 2)[2].0, points[1].0);
    }

    #[test]
    fn a_short_last_second_is_left_out_and_a_longer_one_scaled() {
        // 2.1 s: the last 0.1 s is too short to draw as a rate.
        assert_eq!(
            rate_points(&[100, 120, 3], 2.1),
            vec![(0.5, 100.0), (1.5, 120.0)]
        );
        // 1.5 s: 50 answers in the last half second are 100/s.
        assert_eq!(
            rate_points(&[100, 50], 1.5),
            vec![(0.5, 100.0), (1.25, 100.0)]
        );
    }
}
