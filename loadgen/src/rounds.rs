//! Rounds of back-to-back runs, and medians over them: `summarize`, `knee` and `readme` all
//! take the median of what several rounds measured and pair each auction run with the baseline
//! run made right after it. One copy of those two rules, here.
//!
//! Pure functions over reports already read; nothing here does I/O.

use crate::report::{Report, Subject};

/// The median (the mean of the middle two for an even count), ignoring NaN; `None` when there
/// is no value.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The lower median: for an even count the lower of the middle two, so the result is one of
/// the values (a rate that was tried, not one between two). `None` when there is no value.
pub fn lower_median<T: Copy>(
    values: &[T],
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_by(&cmp);
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// The round of each report: its `config.round` (`--round`, as the scripts pass it) or, for a
/// report without one, its place among the reports of the same kind, rate and spread given
/// before it without one (1, 2, ...), so reports passed round by round still pair up.
pub fn assign(reports: &[&Report]) -> Vec<u32> {
    let key = |r: &Report| {
        (
            match r.subject() {
                Subject::Auction => 0,
                Subject::Echo => 1,
                Subject::Relay => 2,
            },
            r.config.target_rate.map(f64::to_bits),
            r.config.items_per_bidder,
        )
    };
    let mut seen: Vec<(_, u32)> = Vec::new();
    reports
        .iter()
        .map(|r| match r.config.round {
            Some(round) => round,
            None => {
                let k = key(r);
                match seen.iter_mut().find(|(s, _)| *s == k) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        seen.push((k, 1));
                        1
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(vec![f64::NAN]), None);
        let cmp = |a: &f64, b: &f64| a.total_cmp(b);
        assert_eq!(
            lower_median(&[4000.0, 1000.0, 2000.0, 8000.0], cmp),
            Some(2000.0)
        );
        assert_eq!(lower_median(&[4000.0, 1000.0, 2000.0], cmp), Some(2000.0));
        assert_eq!(lower_median(&[7.0], cmp), Some(7.0));
        assert_eq!(lower_median(&[], cmp), None);
    }

    fn report(kind: &str, fan_out: bool, rate: Option<f64>, round: Option<u32>) -> Report {
        let mut json = crate::report::tests::report_json();
        json["kind"] = kind.into();
        json["config"]["fan_out"] = fan_out.into();
        json["config"]["target_rate"] = rate.into();
        if let Some(round) = round {
            json["config"]["round"] = round.into();
        }
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn rounds_come_from_the_reports_or_their_order() {
        let reports = [
            report("auction", false, Some(1000.0), None),
            report("baseline", true, Some(1000.0), None),
            report("auction", false, Some(2000.0), None),
            report("auction", false, Some(1000.0), None),
            report("baseline", true, Some(1000.0), None),
            report("baseline", false, Some(1000.0), None),
        ];
        let refs: Vec<&Report> = reports.iter().collect();
        assert_eq!(assign(&refs), [1, 1, 1, 2, 2, 1]);
        let reports = [
            report("auction", false, None, Some(3)),
            report("auction", false, None, None),
            report("auction", false, None, Some(1)),
        ];
        let refs: Vec<&Report> = reports.iter().collect();
        assert_eq!(assign(&refs), [3, 1, 1]);
    }
}
