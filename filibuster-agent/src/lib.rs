//! Filibuster: service-level fault injection testing for unmodified
//! services. See README.md for how to use it and how it is built.

pub mod accept;
mod account;
pub mod analyze;
pub mod cgroups;
pub mod config;
pub mod containers;
pub mod control;
pub mod ebpf;
pub mod explore;
pub mod json_file;
pub mod netns;
pub mod observe;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod session;
pub mod sockdiag;

/// Entry points for the fuzz targets (`fuzz/`): each parser of outside
/// input, from bytes. Not an interface: `cargo xtask fuzz` is its user.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::PathBuf;

    /// Segments of an observed connection, as the kernel reports them:
    /// each chunk is one segment, alternately sent and received.
    pub fn observed_heads(data: &[u8]) {
        let mut tracker = crate::observe::http1::Tracker::default();
        for (n, segment) in data.split(|&b| b == 0xff).enumerate() {
            let _ = tracker.segment(n % 2 == 0, n as u32, segment);
        }
        let _ = crate::observe::trace_id(data);
    }

    /// A connection's first bytes, as the proxy's sniffer sees them.
    pub fn sniffed(data: &[u8]) {
        let _ = crate::proxy::sniff::classify(data);
    }

    /// A `filibuster.toml`.
    pub fn config(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = crate::config::Config::parse(text, PathBuf::from("/"));
        }
    }

    /// A counterexample file, made into the execution it replays.
    pub fn counterexample(data: &[u8]) {
        if let Ok(counterexample) = serde_json::from_slice::<crate::report::Counterexample>(data) {
            let faults = counterexample
                .faults
                .into_iter()
                .map(|f| f.planned)
                .collect();
            let _ = crate::explore::Plan::replay(faults);
        }
    }

    /// An analysis file, made into the faults it adds.
    pub fn analysis(data: &[u8]) {
        if let Ok(analysis) = serde_json::from_slice::<crate::analyze::Analysis>(data) {
            let _ = analysis.faults();
        }
    }

    /// The body of a test-loop result posted to the control API.
    pub fn loop_result(data: &[u8]) {
        let _ = serde_json::from_slice::<crate::control::LoopResult>(data);
    }
}
