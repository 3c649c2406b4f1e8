//! The cells a run hands its executions to: which are idle (each with its
//! functional test), which are still starting their copy of the services,
//! and, with `--cells auto`, when starting one more pays.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use tokio::{process::Child, task::JoinSet};

use super::{CellCount, functional::FunctionalTest, host::Host};
use crate::{
    config::{Config, TestSpec},
    proxy,
    report::ExecutionResult,
};

pub(super) struct Cells {
    idle: Vec<(usize, FunctionalTest)>,
    /// Cells starting their services: each says which it was.
    starting: JoinSet<(usize, Result<Vec<Child>>)>,
    /// Started so far (cell 0 included): the cells the run uses.
    launched: usize,
    /// `--cells auto`: cells are added while they pay.
    adaptive: bool,
    /// What cell 0's services took to start: what one more cell costs.
    start_cost: Duration,
    /// Services of the cells after the first, ended with the run (before
    /// the host's cgroups go).
    services: Vec<Child>,
    /// Per cell, the latest copies of its services restarted for each
    /// execution (`restart = "every-execution"`).
    restarted: HashMap<usize, Vec<Child>>,
    restarts: bool,
    /// What each cell's functional test runs.
    test: TestSpec,
    dir: PathBuf,
    execution_timeout: Duration,
}

impl Cells {
    /// Cell 0 idle (its services are up with the host), the others of a
    /// fixed count starting; `auto` starts more later (`grow`).
    pub fn new(
        host: &mut Host,
        count: CellCount,
        config: &Config,
        test: TestSpec,
        execution_timeout: Duration,
    ) -> Self {
        let adaptive = count == CellCount::Auto;
        let mut cells = Self {
            idle: Vec::new(),
            starting: JoinSet::new(),
            launched: if adaptive { 1 } else { host.cells() },
            adaptive,
            start_cost: host.ready.saturating_sub(host.attached_at),
            services: Vec::new(),
            restarted: HashMap::new(),
            restarts: config.services.iter().any(|s| s.restart_every_execution),
            test,
            dir: config.dir.clone(),
            execution_timeout,
        };
        cells.join(host, 0);
        for cell in 1..cells.launched {
            cells.starting.spawn(host.launch(cell).start());
        }
        cells
    }

    /// The cells the run uses so far.
    pub fn launched(&self) -> usize {
        self.launched
    }

    /// An idle cell, if one is.
    pub fn take_idle(&mut self) -> Option<(usize, FunctionalTest)> {
        self.idle.pop()
    }

    /// `cell` is idle again.
    pub fn put_back(&mut self, cell: usize, functional: FunctionalTest) {
        self.idle.push((cell, functional));
    }

    /// Cell `cell` as its next execution must find it: services that
    /// restart for each execution restarted, the test's `reset` run,
    /// while the session takes what the services do meanwhile for no
    /// execution's.
    pub async fn reset(
        &mut self,
        host: &Host,
        cell: usize,
        functional: &mut FunctionalTest,
    ) -> Result<()> {
        host.session.resetting(cell, true);
        let restarted = match self.restarts {
            true => host.launch(cell).restart().await.map(Some),
            false => Ok(None),
        };
        let reset = functional.reset().await;
        host.session.resetting(cell, false);
        if let Some(children) = restarted? {
            // The earlier copies ended; these are ended with the run.
            self.restarted.insert(cell, children);
        }
        reset
    }

    /// The next cell to finish starting, idle from now on; `None` when
    /// none is starting.
    pub async fn next_started(&mut self, host: &mut Host) -> Option<Result<()>> {
        let joined = self.starting.join_next().await?;
        Some(
            joined
                .context("a cell's start failed")
                .and_then(|(cell, services)| {
                    self.services
                        .extend(services.with_context(|| format!("cell {cell}"))?);
                    self.join(host, cell);
                    Ok(())
                }),
        )
    }

    /// With `auto`: starts as many more cells as pay for themselves, as
    /// many at once as there are cores to start them.
    pub fn grow(&mut self, host: &Host, results: &[ExecutionResult], scheduled: usize) {
        while self.adaptive
            && self.launched < host.cells()
            && self.starting.len() < proxy::thread_count()
            && another_cell_pays(results, scheduled, self.launched, self.start_cost)
        {
            self.starting.spawn(host.launch(self.launched).start());
            self.launched += 1;
        }
    }

    /// Ends the idle cells' tests (a test loop is told the run is over);
    /// the services end when this is dropped.
    pub async fn finish(&mut self) {
        for (_, functional) in &mut self.idle {
            functional.finish().await;
        }
    }

    fn join(&mut self, host: &mut Host, cell: usize) {
        let functional =
            host.functional_test(cell, self.test.clone(), &self.dir, self.execution_timeout);
        self.idle.push((cell, functional));
    }
}

/// Whether starting one more cell, on top of `cells`, would save more
/// time than it costs (`start_cost`: what cell 0's services took to
/// start): the time the `scheduled` executions are expected to spend held
/// for timeouts, at the mean so far, shared by one more cell.
fn another_cell_pays(
    results: &[ExecutionResult],
    scheduled: usize,
    cells: usize,
    start_cost: Duration,
) -> bool {
    // The fault-free execution holds nothing: wait for one with faults.
    if results.len() < 2 {
        return false;
    }
    let held: f64 = results.iter().map(|r| r.held.as_secs_f64()).sum();
    let expected = scheduled as f64 * held / results.len() as f64;
    let cells = cells as f64;
    expected * (1.0 / cells - 1.0 / (cells + 1.0)) > start_cost.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(held_ms: u64) -> ExecutionResult {
        ExecutionResult {
            number: 1,
            duration: Duration::from_millis(held_ms + 50),
            held: Duration::from_millis(held_ms),
            verdict: "passed".into(),
            output: String::new(),
        }
    }

    #[test]
    fn cells_are_added_while_the_time_they_share_outweighs_their_start() {
        let start = Duration::from_millis(600);
        // Long timeouts: 2 s held per execution, 20 to come.
        let slow = [result(0), result(2000), result(2000)];
        assert!(another_cell_pays(&slow, 20, 1, start));
        assert!(another_cell_pays(&slow, 20, 4, start));
        assert!(!another_cell_pays(&slow, 20, 8, start));
        // Nothing held: one cell.
        let fast = [result(0), result(0), result(0)];
        assert!(!another_cell_pays(&fast, 100, 1, start));
        // Too few executions left to pay for a start.
        assert!(!another_cell_pays(&slow, 1, 1, Duration::from_secs(1)));
        // Not before an execution with faults has shown what it holds.
        assert!(!another_cell_pays(&slow[..1], 20, 1, start));
    }
}
