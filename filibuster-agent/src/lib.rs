//! Filibuster: service-level fault injection testing for unmodified
//! services. See README.md for how to use it and how it is built.

// Unsafe code only where a module allows it, each block with its reason.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod accept;
mod account;
mod analyze;
pub mod cgroups;
mod config;
mod containers;
mod control;
pub mod doctor;
pub mod ebpf;
mod explore;
pub mod json_file;
pub mod netns;
pub mod observe;
mod proxy;
mod report;
pub mod runner;
mod session;
mod sockdiag;

// What the command line needs of the modules above, and nothing else.
pub use accept::raise_descriptor_limit;
pub use analyze::Analysis;
pub use explore::Search;
pub use report::render_saved as render_saved_report;

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

    /// Frames of an observed HTTP/2 connection, as the kernel reports them:
    /// each chunk is one frame, alternately sent and received, its first
    /// byte the frame's type, its second its flags, the rest its payload,
    /// reported in two parts split where its first payload byte says.
    pub fn observed_frames(data: &[u8]) {
        use crate::observe::http2::{FramePart, Tracker};
        let mut tracker = Tracker::default();
        for (n, chunk) in data.split(|&b| b == 0xfe).enumerate() {
            let [kind, flags, payload @ ..] = chunk else {
                continue;
            };
            let split = payload
                .first()
                .map_or(0, |&at| usize::from(at) % (payload.len() + 1));
            let (first, second) = payload.split_at(split);
            for (offset, bytes) in [(0, first), (split, second)] {
                let part = FramePart {
                    kind: kind & 0xf,
                    flags: *flags,
                    stream: (n / 2) as u32,
                    frame_len: payload.len() as u32,
                    offset: offset as u32,
                    bytes,
                };
                let _ = tracker.frame(n % 2 == 0, &part);
            }
        }
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

    /// A service's source file: the first byte picks the language, the
    /// rest is its text.
    pub fn source(data: &[u8]) {
        if let Some((&language, text)) = data.split_first()
            && let Ok(text) = std::str::from_utf8(text)
        {
            let _ = crate::analyze::read_source(text, language);
        }
    }

    /// The body of a test-loop result posted to the control API.
    pub fn loop_result(data: &[u8]) {
        let _ = serde_json::from_slice::<crate::control::LoopResult>(data);
    }
}
