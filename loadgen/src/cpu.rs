//! CPU time of processes, for the report's `cpu` block: loadgen's own (it drives the load on
//! the same cores as the server it measures) and the baseline server's (a child process with no
//! metrics page). The auction server's comes from its metrics (`process_cpu_seconds_total`,
//! read by `scrape.rs`); this reads the same /proc/PID/stat fields it exports.
//!
//! Plain functions called by the task running a phase, before and after it; nothing here is
//! shared or waits for anything but a small file read. Where /proc is not there (not Linux) every
//! reading is `None`, never a made-up number.

/// User + system CPU seconds of this process (every thread).
pub fn own_seconds() -> Option<f64> {
    seconds_of("/proc/self/stat")
}

/// User + system CPU seconds of process `pid` (every thread; not its children's).
pub fn process_seconds(pid: u32) -> Option<f64> {
    seconds_of(&format!("/proc/{pid}/stat"))
}

/// Most bytes of a stat file read: the line is a few hundred bytes.
const MAX_STAT: u64 = 4096;

fn seconds_of(path: &str) -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAX_STAT)
            .read_to_string(&mut text)
            .ok()?;
        let hz = rustix::param::clock_ticks_per_second();
        let ticks = cpu_ticks(&text)?;
        (hz > 0).then(|| ticks as f64 / hz as f64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, MAX_STAT);
        None
    }
}

/// utime + stime (fields 14 and 15, in clock ticks) of a /proc/PID/stat line. Field 2, the
/// command name, is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`. `None` for anything that is not such a line.
///
/// The server's metrics read the same line (`server/src/metrics.rs`): the two crates share no
/// library but the wire protocol's, which is no place for this.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt (13), then utime (14) and stime (15).
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// CPU seconds of loadgen and of the server under test at the start of a measured phase;
/// [`Span::finish`] gives what each used over it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    server: Option<f64>,
    own: Option<f64>,
}

/// What loadgen and the server used over a measured phase, in CPU seconds; `None` where it
/// could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spent {
    pub server: Option<f64>,
    pub loadgen: Option<f64>,
}

impl Span {
    /// Starts a span from the server's reading (`None`: not measurable) and loadgen's own.
    pub(crate) fn start(server: Option<f64>) -> Span {
        Span {
            server,
            own: own_seconds(),
        }
    }

    /// Ends the span with the server's reading now.
    pub(crate) fn finish(self, server: Option<f64>) -> Spent {
        Spent {
            server: difference(self.server, server),
            loadgen: difference(self.own, own_seconds()),
        }
    }
}

/// `after - before`, rounded to the millisecond (the readings are whole clock ticks, and the
/// metrics page's floats carry noise past that); `None` when either is missing or the counter
/// went back (a restarted process).
pub(crate) fn difference(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    let d = after? - before?;
    (d >= 0.0 && d.is_finite()).then(|| (d * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_from_a_stat_line() {
        // A command name with spaces and parentheses; utime 1234, stime 56.
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 2 0 1234 56 0 0 20 0 9 0 100 200000 300\n";
        assert_eq!(cpu_ticks(line), Some(1290));
    }

    #[test]
    fn never_panics_on_odd_stat_lines() {
        for odd in [
            "",
            ")",
            "(",
            ")))",
            "4242 (x",
            "4242 (x) S 1 2 3",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 -5 56",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 12é4 56",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 1.5 56",
            "4242 (x) S 1 4242 4242 0 -1 4194560 900 0 2 0 18446744073709551615 1",
            "é) ü ö ä 1 2 3 4 5 6 7 8",
        ] {
            assert_eq!(cpu_ticks(odd), None, "{odd:?}");
        }
        // Any byte soup: no panic.
        let soup: String = (0u32..2000)
            .map(|i| char::from_u32((i * 7919) % 0x2FF).unwrap_or(')'))
            .collect();
        for end in (0..soup.len()).filter(|&i| soup.is_char_boundary(i)) {
            let _ = cpu_ticks(&soup[..end]);
        }
    }

    #[test]
    fn differences_are_absent_rather_than_made_up() {
        assert_eq!(difference(Some(1.0), Some(3.5)), Some(2.5));
        assert_eq!(difference(Some(0.1), Some(0.3)), Some(0.2));
        assert_eq!(difference(None, Some(3.5)), None);
        assert_eq!(difference(Some(1.0), None), None);
        assert_eq!(
            difference(Some(5.0), Some(1.0)),
            None,
            "a restarted process"
        );
        assert_eq!(difference(Some(f64::NAN), Some(1.0)), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_and_a_child() {
        assert!(own_seconds().is_some());
        assert_eq!(
            process_seconds(std::process::id()).map(|s| s >= 0.0),
            Some(true)
        );
        assert_eq!(process_seconds(u32::MAX), None);
    }
}
