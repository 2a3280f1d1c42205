//! The percentile distribution in the text format of HdrHistogram's
//! `outputPercentileDistribution` (what the HdrHistogram plotter and `hdr-plot` read): a
//! header, one line per percentile step (`Value Percentile TotalCount 1/(1-Percentile)`), and
//! `#[Mean = ...]` footer lines. Values are recorded in microseconds and written in
//! milliseconds.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile steps per halving of the distance to 100 %, as the Java default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Microseconds per output unit (milliseconds).
const SCALE: f64 = 1000.0;

/// One step of the percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The highest value (µs) at or below which `percentile` of the values fall.
    pub value_us: u64,
    /// 0 to 1.
    pub percentile: f64,
    /// Values at or below `value_us`.
    pub total_count: u64,
}

/// The steps of the distribution, as the text format lists them and the report's curves
/// (`latency_curves_us`) keep them: one list of steps for both, so the plot and the `.hgrm`
/// file cannot disagree. Empty for an empty histogram.
pub fn percentile_steps(h: &Histogram<u64>) -> Vec<Step> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut total = 0u64;
    h.iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| {
            total += v.count_since_last_iteration();
            Step {
                value_us: h.highest_equivalent(v.value_iterated_to()),
                percentile: v.quantile_iterated_to(),
                total_count: total,
            }
        })
        .collect()
}

pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for step in percentile_steps(h) {
        let value = step.value_us as f64 / SCALE;
        let (q, total) = (step.percentile, step.total_count);
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h)
    );
    out
}

/// Sub-buckets per bucket: the smallest power of two that holds 2 x 10^digits values.
fn sub_buckets(h: &Histogram<u64>) -> u64 {
    (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn four_columns_and_footer() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines[1], "");
        let rows: Vec<Vec<f64>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        // Values and counts never go down; percentiles climb to 1 with the total count.
        for w in rows.windows(2) {
            assert!(w[1][0] >= w[0][0] && w[1][1] >= w[0][1] && w[1][2] >= w[0][2]);
        }
        assert!(rows[..rows.len() - 1].iter().all(|r| r.len() == 4));
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 10_000.0);
        assert!((last[0] - 10.0).abs() < 0.011, "max in ms: {}", last[0]);
        // The median row: about 5 ms at percentile 0.5.
        let median = rows.iter().find(|r| r[1] >= 0.5).unwrap();
        assert!((median[0] - 5.0).abs() < 0.01, "{median:?}");
        assert!(text.contains("#[Mean    =        5.00"), "{text}");
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn empty_histogram_is_only_header_and_footer() {
        let text = percentile_distribution(&new_histogram());
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }
}
