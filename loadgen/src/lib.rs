//! `loadgen`: simulated sellers and bidders driving an auction server through the client
//! library (no second protocol implementation), with HdrHistogram latency distributions, a
//! JSON report, the `.hgrm` percentile distribution, an HTML page with plots, result
//! verification, and bare TLS baselines to compare against (an echo, and a relay in the
//! auction's shape whose knee `loadgen knee` sets beside the auction's). See README "Load
//! generator and benchmarks".

pub mod baseline;
pub mod cpu;
pub mod hgrm;
pub mod html;
pub mod knee;
pub mod lossy;
pub mod pace;
pub mod plan;
pub mod progress;
pub mod readme;
pub mod report;
pub mod rounds;
pub mod run;
pub mod scrape;
pub mod stats;
pub mod summary;

pub use report::Report;
pub use run::{run, Options, Outcome, RunError};
