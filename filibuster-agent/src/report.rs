//! What a run leaves behind: the counterexample that replays a failure,
//! the JSON report, and what the terminal shows.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    explore::{CallRecord, ExecutionIndex, Finished, Outcome, PlannedFault, Progress},
    session::ConnectTarget,
};

/// One fault of a counterexample, with what replaying it needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CounterexampleFault {
    #[serde(flatten)]
    pub planned: PlannedFault,
    /// For a refused connection: which connect to refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectTarget>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Counterexample {
    pub functional_test: String,
    /// The execution that failed, counted from 1.
    pub execution: usize,
    pub faults: Vec<CounterexampleFault>,
}

impl Counterexample {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("serialisable");
        fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read counterexample file {}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {}: {e}: expected a counterexample written by `filibuster test`",
                path.display(),
                e.line()
            )
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// "passed" or "failed".
    pub result: &'static str,
    pub executions: usize,
    pub pruned: usize,
    pub elapsed_seconds: f64,
    /// Time spent holding calls for timeout faults.
    pub held_seconds: f64,
    /// The faults of the failing execution (empty when all passed).
    pub faults: Vec<&'a PlannedFault>,
    pub failing_execution: Option<ExecutionReport<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ExecutionReport<'a> {
    pub number: usize,
    pub calls: Vec<CallReport<'a>>,
    pub test_output: String,
    pub replay: String,
}

#[derive(Debug, Serialize)]
pub struct CallReport<'a> {
    pub execution_index: &'a ExecutionIndex,
    pub caller: &'a str,
    pub callee: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub outcome: &'a Outcome,
}

impl<'a> Report<'a> {
    pub fn new(
        progress: Progress,
        elapsed: Duration,
        held: Duration,
        failure: Option<(&'a Finished, String, String)>,
    ) -> Self {
        Self {
            result: if failure.is_some() {
                "failed"
            } else {
                "passed"
            },
            executions: progress.executions,
            pruned: progress.pruned,
            elapsed_seconds: elapsed.as_secs_f64(),
            held_seconds: held.as_secs_f64(),
            faults: failure
                .as_ref()
                .map(|(f, ..)| f.faults.iter().collect())
                .unwrap_or_default(),
            failing_execution: failure.map(|(finished, test_output, replay)| ExecutionReport {
                number: finished.number,
                calls: finished.calls.iter().map(CallReport::from).collect(),
                test_output,
                replay,
            }),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("serialisable");
        fs::write(path, text + "\n")
            .with_context(|| format!("cannot write report {}", path.display()))
    }
}

impl<'a> From<&'a CallRecord> for CallReport<'a> {
    fn from(call: &'a CallRecord) -> Self {
        Self {
            execution_index: &call.index,
            caller: &call.site.caller,
            callee: &call.site.callee,
            method: &call.site.method,
            target: &call.site.target,
            outcome: &call.outcome,
        }
    }
}

/// One line per fault: "bar → baz GET /baz: HTTP 503".
pub fn describe_faults(faults: &[PlannedFault]) -> String {
    if faults.is_empty() {
        return "no fault".into();
    }
    faults
        .iter()
        .map(|f| format!("{}: {}", f.site, f.fault))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The calls of an execution as an indented tree, with their outcomes.
pub fn call_tree(calls: &[CallRecord]) -> String {
    let mut lines = Vec::new();
    for call in calls {
        let depth = std::iter::successors(call.parent, |p| calls[p.position()].parent).count();
        lines.push(format!(
            "{}{} → {}",
            "  ".repeat(depth + 1),
            call.site,
            call.outcome
        ));
    }
    lines.join("\n")
}
