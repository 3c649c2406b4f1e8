//! The run as one typed document: what `--report-json` writes, and what
//! the JUnit, Markdown and HTML renderings are made from (the HTML of a
//! saved report too: `filibuster report` reads it back into this type).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{
    AgentFootprint, BudgetReport, Diagnosis, LearnedTimeout, RunSummary, changed_path,
    faulted_requests, learned_timeouts,
    summary::{self, DiscoveredCall},
};
use crate::{
    explore::{CallRecord, CallSite, ExecutionIndex, Outcome, PlannedFault, Pruned, Search},
    json_file,
};

/// The layout: raised when a field changes meaning or goes.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    /// "filibuster <version>".
    pub tool: String,
    /// When the run started, RFC 3339, UTC.
    pub started_at: String,
    /// The run's config file, as given.
    pub config: PathBuf,
    /// `[test] scope`: the test's requests under test (empty: all).
    pub scope: Vec<String>,
    /// `null` unless a budget ended the search.
    pub budget: Option<BudgetReport>,
    /// The application's timeout map, from the calls held for timeouts.
    pub timeouts: Vec<LearnedTimeout>,
    pub result: RunResult,
    /// What went wrong, when the result is "error".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub executions: usize,
    pub pruned: usize,
    pub search: Search,
    /// `pruned`, by the rule that skipped each.
    pub pruned_by: Pruned,
    /// Time timeouts would have held calls where the guided search tried
    /// a cheaper fault known to do the same (as long as each held when it
    /// was tried).
    pub held_saved_seconds: f64,
    /// Calls repeated under one request more often than the retry depth:
    /// their later attempts failed only when all before them had, the
    /// same way.
    pub retry_groups: Vec<RetryGroupReport>,
    /// Executions run side by side at most (cells).
    pub cells: usize,
    /// The resident memory of every cell's services and tests at the end
    /// of the run, in KiB.
    pub services_rss_kib: u64,
    /// Executions that ran in a cell before results that would have
    /// pruned them came back (see `explore::Progress`).
    pub beyond_sequential: usize,
    pub elapsed_seconds: f64,
    /// Time spent holding calls for timeout faults.
    pub held_seconds: f64,
    /// `null` when the run ended in error.
    pub agent: Option<AgentFootprint>,
    /// Every execution run, in order.
    pub execution_log: Vec<ExecutionEntry>,
    /// Every call discovered, with the faults tried on it.
    pub calls: Vec<DiscoveredCall>,
    pub failures: Vec<FailureReport>,
    /// Executions whose planned calls did not happen again.
    pub unstable: Vec<UnstableReport>,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Every execution passed.
    Passed,
    /// A fault combination fails the test.
    Failed,
    /// The run could not go on.
    Error,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RetryGroupReport {
    /// "caller → callee METHOD target".
    pub site: String,
    /// The most attempts seen in one request.
    pub attempts: u32,
    /// Over how many first attempts faults were combined freely.
    pub combined: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExecutionEntry {
    pub number: usize,
    pub faults: Vec<PlannedFault>,
    /// The test's verdict: "passed", "failed (exit 1)", "failed (timed out)".
    pub result: String,
    pub seconds: f64,
    /// Of `seconds`, the time calls were held for timeout faults until
    /// their callers gave up.
    pub held_seconds: f64,
    /// Kernel events lost while it ran (its ring buffer full): `calls` may
    /// miss some.
    pub lost_events: u64,
    pub calls: Vec<CallReport>,
}

impl ExecutionEntry {
    pub fn passed(&self) -> bool {
        self.result == "passed"
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FailureReport {
    pub number: usize,
    pub faults: Vec<PlannedFault>,
    pub calls: Vec<CallReport>,
    pub test_result: String,
    pub test_output: String,
    /// What the calls show: a timeout budget, a hang.
    pub diagnosis: Option<Diagnosis>,
    pub counterexample: Option<PathBuf>,
    pub replay: String,
    /// The test's requests the faults were injected while serving
    /// ("POST /carts"): with no `[test] scope`, a failure none of whose
    /// faults served the test's last request may be in its setup.
    pub faulted_requests: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UnstableReport {
    pub execution: usize,
    pub vanished: Vec<CallSite>,
    /// What changed in their paths, where a call like them happened.
    pub changed: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CallReport {
    pub execution_index: ExecutionIndex,
    #[serde(flatten)]
    pub site: CallSite,
    pub outcome: Outcome,
    /// The run's number for the connection that carried the call.
    pub connection: Option<u32>,
}

impl From<&CallRecord> for CallReport {
    fn from(call: &CallRecord) -> Self {
        Self {
            execution_index: call.index.clone(),
            site: (*call.site).clone(),
            outcome: call.outcome.clone(),
            connection: call.connection,
        }
    }
}

impl RunReport {
    pub fn new(run: &RunSummary) -> Self {
        let calls_of = |calls: &[CallRecord]| calls.iter().map(CallReport::from).collect();
        Self {
            schema_version: SCHEMA_VERSION,
            tool: format!("filibuster {}", env!("CARGO_PKG_VERSION")),
            started_at: humantime::format_rfc3339_seconds(run.started_at).to_string(),
            config: run.config.to_path_buf(),
            scope: run.scope.to_vec(),
            budget: run.budget.clone(),
            timeouts: learned_timeouts(run.executions),
            result: match (run.error, run.failures.is_empty()) {
                (Some(_), _) => RunResult::Error,
                (None, true) => RunResult::Passed,
                (None, false) => RunResult::Failed,
            },
            error: run.error.map(str::to_string),
            executions: run.progress.executions,
            pruned: run.progress.pruned,
            search: run.search,
            pruned_by: run.progress.pruned_by,
            held_saved_seconds: run.progress.held_saved.as_secs_f64(),
            retry_groups: run
                .retry_groups
                .iter()
                .map(|group| RetryGroupReport {
                    site: group.site.to_string(),
                    attempts: group.attempts,
                    combined: run.retry_depth,
                })
                .collect(),
            cells: run.cells,
            services_rss_kib: run.services_rss_kib,
            beyond_sequential: run.progress.beyond_sequential,
            elapsed_seconds: run.elapsed.as_secs_f64(),
            held_seconds: run.held.as_secs_f64(),
            agent: run.agent,
            execution_log: run
                .executions
                .iter()
                // An execution cut short by an error has no result.
                .filter_map(|finished| Some((finished, run.result_of(finished.number)?)))
                .map(|(finished, result)| ExecutionEntry {
                    number: finished.number,
                    faults: finished.faults.clone(),
                    result: result.verdict.clone(),
                    seconds: result.duration.as_secs_f64(),
                    held_seconds: result.held.as_secs_f64(),
                    lost_events: finished.lost_events,
                    calls: calls_of(&finished.calls),
                })
                .collect(),
            calls: summary::discovered_calls(run.executions),
            failures: run
                .failures
                .iter()
                .map(|failure| {
                    let finished = run.execution(failure.number);
                    let result = run.result_of(failure.number).expect("a failure's result");
                    FailureReport {
                        number: failure.number,
                        faults: finished.faults.clone(),
                        calls: calls_of(&finished.calls),
                        test_result: result.verdict.clone(),
                        test_output: result.output.clone(),
                        diagnosis: failure.diagnosis.clone(),
                        counterexample: failure.counterexample.clone(),
                        replay: failure.replay.clone(),
                        faulted_requests: faulted_requests(finished)
                            .iter()
                            .map(|r| format!("{} {}", r.method, r.target))
                            .collect(),
                    }
                })
                .collect(),
            unstable: run
                .unstable()
                .map(|f| UnstableReport {
                    execution: f.number,
                    vanished: f.vanished.clone(),
                    changed: f
                        .vanished
                        .iter()
                        .filter_map(|v| changed_path(v, f))
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        json_file::write(path, "report", self)
    }

    /// A report saved by `--report-json`, of this layout.
    pub fn read(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Layout {
            schema_version: u32,
        }
        let expected = "a report written by `filibuster test --report-json`";
        let Layout { schema_version } = json_file::read(path, "report", expected)?;
        if schema_version != SCHEMA_VERSION {
            bail!(
                "{} is a report of layout {schema_version}, this filibuster reads layout {SCHEMA_VERSION}: render it with the version that wrote it, or run the test again",
                path.display()
            );
        }
        json_file::read(path, "report", expected)
    }

    /// The execution with no fault injected, when it ran.
    pub fn fault_free(&self) -> Option<&ExecutionEntry> {
        self.execution_log.iter().find(|e| e.faults.is_empty())
    }

    /// "12 pruned: 3 by reduction, 9 equivalent faults; 4.0 s of timeouts
    /// saved", as much of it as applies.
    pub fn describe_pruned(&self) -> String {
        let Pruned {
            dynamic_reduction,
            equivalent_faults,
            no_impact,
        } = self.pruned_by;
        let rules: Vec<String> = [
            (dynamic_reduction, "by reduction"),
            (equivalent_faults, "equivalent faults"),
            (no_impact, "no impact"),
        ]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .map(|(count, rule)| format!("{count} {rule}"))
        .collect();
        let mut text = format!("{} pruned", self.pruned);
        if !rules.is_empty() {
            text += &format!(": {}", rules.join(", "));
        }
        if self.held_saved_seconds > 0.0 {
            text += &format!("; {:.1}s of timeouts saved", self.held_saved_seconds);
        }
        text
    }
}

#[cfg(test)]
impl RunReport {
    /// The report of a run that made `executions`, each failing one's test
    /// having printed `output`.
    pub(super) fn of_executions(executions: &[crate::explore::Finished], output: &str) -> Self {
        use std::time::{Duration, SystemTime};

        use super::{ExecutionResult, FailureArtifacts};
        let results: Vec<ExecutionResult> = executions
            .iter()
            .map(|e| ExecutionResult {
                number: e.number,
                duration: Duration::from_millis(300),
                held: Duration::from_millis(100),
                verdict: if e.passed {
                    "passed"
                } else {
                    "failed (exit 1)"
                }
                .to_string(),
                output: if e.passed { "" } else { output }.to_string(),
            })
            .collect();
        let failures: Vec<FailureArtifacts> = executions
            .iter()
            .filter(|e| !e.passed)
            .map(|e| FailureArtifacts {
                number: e.number,
                diagnosis: None,
                counterexample: Some(PathBuf::from("counterexample.json")),
                replay: "filibuster test --counterexample-file counterexample.json".into(),
            })
            .collect();
        Self::new(&RunSummary {
            config: Path::new("filibuster.toml"),
            scope: &[],
            budget: None,
            search: Search::Guided,
            retry_depth: 1,
            retry_groups: Vec::new(),
            started_at: SystemTime::now(),
            executions,
            results: &results,
            failures: &failures,
            progress: crate::explore::Progress {
                executions: executions.len(),
                ..Default::default()
            },
            elapsed: Duration::from_secs(1),
            held: Duration::from_millis(500),
            cells: 1,
            services_rss_kib: 0,
            agent: None,
            error: None,
        })
    }
}
