//! The kernel programs' own diagnostics (`--kernel-log`): the records
//! aya-log-ebpf writes to their `AYA_LOGS` ring buffer, printed to the
//! terminal as they come. Off by default: the programs then skip each
//! record at a branch (their log level is set at load).

use std::time::Duration;

use anyhow::{Context, Result};
use aya::Ebpf;
use aya_log::{EbpfLogger, Level};

/// The level the programs log at: their debug records with the log on,
/// none without.
pub(super) fn level(enabled: bool) -> u8 {
    if enabled { Level::Debug as u8 } else { 0 }
}

/// Prints each record on a line of its own, as the agent's other lines.
struct Printer;

impl log::Log for Printer {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        eprintln!("filibuster: kernel: {}", record.args());
    }

    fn flush(&self) {}
}

/// The programs' log, read from its ring buffer.
pub struct KernelLog(EbpfLogger<Printer>);

impl KernelLog {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        EbpfLogger::init_with_logger(ebpf, Printer)
            .map(Self)
            .context("cannot read the kernel programs' log (--kernel-log)")
    }

    /// Prints the records as they come, until the task is aborted. Read
    /// every few milliseconds, as the events' ring buffer is: waking on
    /// its descriptor would need an unsafe registration for a debug aid.
    pub async fn print(mut self) {
        let mut every = tokio::time::interval(Duration::from_millis(10));
        loop {
            every.tick().await;
            self.0.flush();
        }
    }
}
