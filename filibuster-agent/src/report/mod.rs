//! What a run leaves behind: the counterexample that replays a failure,
//! the JSON and JUnit reports, and what the terminal shows.

mod diagnosis;
mod html;
mod junit;
mod markdown;
mod progress;
mod summary;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use diagnosis::{Diagnosis, diagnose};
pub use html::render as html;
pub use junit::write_junit;
pub use markdown::render as markdown;
pub use progress::Terminal;
pub use summary::{
    DiscoveredCall, discovered_calls, render as render_calls, render_traffic, traffic,
};

use crate::{
    explore::{
        CallRecord, CallSite, ExecutionIndex, Finished, Outcome, PlannedFault, Progress, Protocol,
        Pruned, RetryGroup, Search,
    },
    json_file,
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
        json_file::write(path, "counterexample", self)
    }

    pub fn read(path: &Path) -> Result<Self> {
        json_file::read(
            path,
            "counterexample file",
            "a counterexample written by `filibuster test`",
        )
    }
}

/// How one execution of the functional test went, as reports show it.
#[derive(Debug)]
pub struct ExecutionResult {
    pub number: usize,
    pub duration: Duration,
    /// Of which spent holding calls for timeout faults.
    pub held: Duration,
    pub passed: bool,
    /// "passed", "failed (exit 1)", "failed (timed out)".
    pub verdict: String,
    /// What the test printed; kept for failures only.
    pub output: String,
}

/// A failure, what its calls show, and how to replay it.
#[derive(Debug)]
pub struct FailureArtifacts {
    pub number: usize,
    pub diagnosis: Option<Diagnosis>,
    pub counterexample: Option<PathBuf>,
    pub replay: String,
}

/// Everything a finished run reports on.
pub struct RunSummary<'a> {
    pub config: &'a Path,
    /// `[test] scope`: the test's requests under test (empty: all).
    pub scope: &'a [String],
    /// The budget that ended the search, and what it left untried.
    pub budget: Option<BudgetReport>,
    pub search: Search,
    pub retry_depth: u32,
    /// Calls repeated under one request beyond the retry depth.
    pub retry_groups: Vec<RetryGroup>,
    pub started_at: std::time::SystemTime,
    pub executions: &'a [Finished],
    pub results: &'a [ExecutionResult],
    pub failures: &'a [FailureArtifacts],
    pub progress: Progress,
    pub elapsed: Duration,
    pub held: Duration,
    /// Cells the run used (0 when it ended before they existed).
    pub cells: usize,
    /// The resident memory of every cell's services and tests at the end.
    pub services_rss_kib: u64,
    /// `None` when the run ended in error.
    pub agent: Option<AgentFootprint>,
    /// Why the run could not go on (exit 2), in one line.
    pub error: Option<&'a str>,
}

/// What the agent itself cost, for the benchmarks (`cargo xtask bench`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AgentFootprint {
    /// From start to kernel programs attached.
    pub attached_seconds: f64,
    /// From start to every service listening.
    pub ready_seconds: f64,
    pub peak_rss_kib: u64,
    /// User and system CPU time of the agent's own process.
    pub cpu_seconds: f64,
    /// Times its threads gave up a CPU (waiting, or preempted): with a
    /// load's request count, how often a request made the agent sleep.
    pub context_switches: u64,
    /// Time from the end of one execution's test to the start of the
    /// next's: the search, the kernel's maps, the bookkeeping.
    pub between_executions_seconds: f64,
    /// HTTP/1.1 calls read off direct connections by the kernel, which
    /// the proxy did not have to carry.
    pub observed_calls: u64,
}

/// The process's own peak resident memory. Not getrusage's ru_maxrss,
/// which counts the parent's memory at the exec that started us.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl AgentFootprint {
    pub fn measure(
        attached: Duration,
        ready: Duration,
        between_executions: Duration,
        observed_calls: u64,
    ) -> Self {
        use nix::sys::{
            resource::{UsageWho, getrusage},
            time::TimeValLike,
        };
        let usage = getrusage(UsageWho::RUSAGE_SELF).ok();
        let cpu_seconds = usage.map_or(0.0, |u| {
            (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
        });
        let context_switches = usage.map_or(0, |u| {
            (u.voluntary_context_switches() + u.involuntary_context_switches()) as u64
        });
        Self {
            attached_seconds: attached.as_secs_f64(),
            ready_seconds: ready.as_secs_f64(),
            peak_rss_kib: peak_rss_kib().unwrap_or(0),
            cpu_seconds,
            context_switches,
            between_executions_seconds: between_executions.as_secs_f64(),
            observed_calls,
        }
    }
}

impl RunSummary<'_> {
    /// Execution `number`'s result (both lists are in execution order).
    pub fn result_of(&self, number: usize) -> Option<&ExecutionResult> {
        let at = self
            .results
            .binary_search_by_key(&number, |r| r.number)
            .ok()?;
        Some(&self.results[at])
    }

    pub fn execution(&self, number: usize) -> &Finished {
        let at = self
            .executions
            .binary_search_by_key(&number, |f| f.number)
            .expect("a finished execution");
        &self.executions[at]
    }

    /// Executions planned on calls that then did not happen.
    pub fn unstable(&self) -> impl Iterator<Item = &Finished> {
        self.executions.iter().filter(|f| !f.vanished.is_empty())
    }
}

/// The test's requests (its own calls) that the faults of `execution`
/// were injected while serving, in the order it made them.
pub fn faulted_requests(execution: &Finished) -> Vec<&CallSite> {
    let request_of = |call: &CallRecord| {
        std::iter::successors(Some(call), |c| {
            c.parent.map(|p| &execution.calls[p.position()])
        })
        .last()
        .map(|root| root.index.clone())
    };
    let faulted: HashSet<ExecutionIndex> = execution
        .calls
        .iter()
        .filter(|c| c.injected.is_some())
        .filter_map(request_of)
        .collect();
    execution
        .calls
        .iter()
        .filter(|c| c.parent.is_none() && faulted.contains(&c.index))
        .map(|c| &*c.site)
        .collect()
}

/// With no `[test] scope`: when no fault of a failing `execution` was
/// injected while serving the test's last request (as the fault-free
/// execution `reference` made it: the failing one may have stopped
/// before it), the failure may be in the test's setup (a login, a cart
/// being filled), not in what it checks; says so, and how to say what is
/// under test.
pub fn setup_hint(execution: &Finished, reference: &Finished) -> Option<String> {
    let last = &reference.calls.iter().rfind(|c| c.parent.is_none())?.site;
    let faulted = faulted_requests(execution);
    if faulted.is_empty() || faulted.iter().any(|r| **r == **last) {
        return None;
    }
    let named: Vec<String> = faulted
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    Some(format!(
        "execution {}'s faults were injected while the test's request {} was served, not its last ({} {}): if that is setup, not what the test checks, say what is with [test] scope = [\"{} {}\"]",
        execution.number,
        named.join(", "),
        last.method,
        last.target,
        last.method,
        last.target,
    ))
}

/// What changed in the path of a call that vanished from `execution`: the
/// call of the same caller, callee and method it most likely became, and
/// the parts of the path that differ (`/checkout/c1` became
/// `/checkout/c2`: `c1` → `c2`). `None` when no such call happened.
pub fn changed_path(vanished: &CallSite, execution: &Finished) -> Option<String> {
    let segments = |target: &str| -> Vec<String> {
        target
            .split(['/', '?', '&', '='])
            .map(str::to_string)
            .collect()
    };
    let before = segments(&vanished.target);
    execution
        .calls
        .iter()
        .map(|call| &*call.site)
        .filter(|site| {
            site.caller == vanished.caller
                && site.callee == vanished.callee
                && site.method == vanished.method
                && site.target != vanished.target
        })
        .filter_map(|site| {
            let after = segments(&site.target);
            if after.len() != before.len() {
                return None;
            }
            let changed: Vec<String> = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| b != a)
                .map(|(b, a)| format!("`{b}` → `{a}`"))
                .collect();
            Some((changed.len(), site, changed))
        })
        .min_by_key(|(count, ..)| *count)
        .map(|(_, site, changed)| {
            format!(
                "{} {} became {} ({})",
                vanished.method,
                vanished.target,
                site.target,
                changed.join(", ")
            )
        })
}

/// What holding calls for timeout faults taught about one caller's
/// timeout on one callee.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LearnedTimeout {
    pub caller: String,
    pub callee: String,
    /// The longest the caller waited on a held call before giving up;
    /// `None` when it never did (held to its execution's end).
    pub gave_up_after_seconds: Option<f64>,
    /// How many held calls this comes from.
    pub holds: usize,
}

/// The application's timeout map: per caller and callee, how long the
/// caller waited on the calls a timeout fault held, as learned over every
/// execution (a caller that gave up on one and not on another is shown
/// as never giving up: that call has no timeout).
pub fn learned_timeouts(executions: &[Finished]) -> Vec<LearnedTimeout> {
    let mut map: std::collections::BTreeMap<(&str, &str), (Option<f64>, bool, usize)> =
        std::collections::BTreeMap::new();
    let held = executions
        .iter()
        .flat_map(|e| &e.calls)
        .filter(|c| c.injected == Some(crate::explore::Fault::Timeout));
    for call in held {
        let entry = map
            .entry((&call.site.caller, &call.site.callee))
            .or_insert((None, false, 0));
        entry.2 += 1;
        match call.ended {
            Some(ended) => {
                let waited = ended.duration_since(call.began).as_secs_f64();
                entry.0 = Some(entry.0.map_or(waited, |w: f64| w.max(waited)));
            }
            None => entry.1 = true,
        }
    }
    map.into_iter()
        .map(
            |((caller, callee), (waited, never, holds))| LearnedTimeout {
                caller: caller.to_string(),
                callee: callee.to_string(),
                gave_up_after_seconds: if never { None } else { waited },
                holds,
            },
        )
        .collect()
}

/// The timeout map on one line: "foo → bar 1.5 s; bar → baz never".
pub fn describe_timeouts(timeouts: &[LearnedTimeout]) -> String {
    timeouts
        .iter()
        .map(|t| match t.gave_up_after_seconds {
            Some(seconds) => format!("{} → {} gave up after {seconds:.1} s", t.caller, t.callee),
            None => format!("{} → {} never gave up (no timeout)", t.caller, t.callee),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A search a budget ended (`--max-executions`, `--time-budget`).
#[derive(Clone, Debug, Serialize)]
pub struct BudgetReport {
    /// "10 executions (--max-executions)".
    pub reached: String,
    /// Executions still scheduled when it was.
    pub scheduled_left: usize,
    /// Per call site, the faults they would have tried that no execution
    /// run had.
    pub untried: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

/// The JSON report's layout: raised when a field changes meaning or goes.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub schema_version: u32,
    /// "filibuster <version>".
    pub tool: String,
    /// When the run started, RFC 3339, UTC.
    pub started_at: String,
    /// The run's config file, as given.
    pub config: &'a Path,
    /// `[test] scope`: the test's requests under test (empty: all).
    pub scope: &'a [String],
    /// `null` unless a budget ended the search.
    pub budget: Option<&'a BudgetReport>,
    /// The application's timeout map, from the calls held for timeouts.
    pub timeouts: Vec<LearnedTimeout>,
    /// "passed", "failed", or "error" (the run could not go on).
    pub result: &'static str,
    /// What went wrong, when the result is "error".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
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
    pub execution_log: Vec<ExecutionEntry<'a>>,
    /// Every call discovered, with the faults tried on it.
    pub calls: Vec<DiscoveredCall>,
    pub failures: Vec<FailureReport<'a>>,
    /// Executions whose planned calls did not happen again.
    pub unstable: Vec<UnstableReport<'a>>,
}

#[derive(Debug, Serialize)]
pub struct RetryGroupReport {
    /// "caller → callee METHOD target".
    pub site: String,
    /// The most attempts seen in one request.
    pub attempts: u32,
    /// Over how many first attempts faults were combined freely.
    pub combined: u32,
}

#[derive(Debug, Serialize)]
pub struct ExecutionEntry<'a> {
    pub number: usize,
    pub faults: &'a [PlannedFault],
    pub result: &'a str,
    pub seconds: f64,
    /// Of `seconds`, the time calls were held for timeout faults until
    /// their callers gave up.
    pub held_seconds: f64,
    /// Kernel events lost while it ran (its ring buffer full): `calls` may
    /// miss some.
    pub lost_events: u64,
    pub calls: Vec<CallReport<'a>>,
}

#[derive(Debug, Serialize)]
pub struct FailureReport<'a> {
    pub number: usize,
    pub faults: &'a [PlannedFault],
    pub calls: Vec<CallReport<'a>>,
    pub test_result: &'a str,
    pub test_output: &'a str,
    /// What the calls show: a timeout budget, a hang.
    pub diagnosis: Option<&'a Diagnosis>,
    pub counterexample: Option<&'a Path>,
    pub replay: &'a str,
    /// The test's requests the faults were injected while serving
    /// ("POST /carts"): with no `[test] scope`, a failure none of whose
    /// faults served the test's last request may be in its setup.
    pub faulted_requests: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct UnstableReport<'a> {
    pub execution: usize,
    pub vanished: &'a [CallSite],
    /// What changed in their paths, where a call like them happened.
    pub changed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CallReport<'a> {
    pub execution_index: &'a ExecutionIndex,
    pub caller: &'a str,
    pub callee: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub protocol: Protocol,
    pub outcome: &'a Outcome,
    /// The run's number for the connection that carried the call.
    pub connection: Option<u32>,
}

impl<'a> Report<'a> {
    pub fn new(run: &'a RunSummary<'a>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            tool: format!("filibuster {}", env!("CARGO_PKG_VERSION")),
            started_at: humantime::format_rfc3339_seconds(run.started_at).to_string(),
            config: run.config,
            scope: run.scope,
            budget: run.budget.as_ref(),
            timeouts: learned_timeouts(run.executions),
            result: match (run.error, run.failures.is_empty()) {
                (Some(_), _) => "error",
                (None, true) => "passed",
                (None, false) => "failed",
            },
            error: run.error,
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
                    faults: &finished.faults,
                    result: &result.verdict,
                    seconds: result.duration.as_secs_f64(),
                    held_seconds: result.held.as_secs_f64(),
                    lost_events: finished.lost_events,
                    calls: finished.calls.iter().map(CallReport::from).collect(),
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
                        faults: &finished.faults,
                        calls: finished.calls.iter().map(CallReport::from).collect(),
                        test_result: &result.verdict,
                        test_output: &result.output,
                        diagnosis: failure.diagnosis.as_ref(),
                        counterexample: failure.counterexample.as_deref(),
                        replay: &failure.replay,
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
                    vanished: &f.vanished,
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
}

impl<'a> From<&'a CallRecord> for CallReport<'a> {
    fn from(call: &'a CallRecord) -> Self {
        Self {
            execution_index: &call.index,
            caller: &call.site.caller,
            callee: &call.site.callee,
            method: &call.site.method,
            target: &call.site.target,
            protocol: call.site.protocol,
            outcome: &call.outcome,
            connection: call.connection,
        }
    }
}

/// One line per fault: "bar → baz GET /baz: HTTP 503".
/// "12 pruned: 3 by reduction, 9 equivalent faults; 4.0 s of timeouts
/// saved", as much of it as applies.
pub fn describe_pruned(run: &RunSummary) -> String {
    let Pruned {
        dynamic_reduction,
        equivalent_faults,
        no_impact,
    } = run.progress.pruned_by;
    let rules: Vec<String> = [
        (dynamic_reduction, "by reduction"),
        (equivalent_faults, "equivalent faults"),
        (no_impact, "no impact"),
    ]
    .into_iter()
    .filter(|&(count, _)| count > 0)
    .map(|(count, rule)| format!("{count} {rule}"))
    .collect();
    let mut text = format!("{} pruned", run.progress.pruned);
    if !rules.is_empty() {
        text += &format!(": {}", rules.join(", "));
    }
    let saved = run.progress.held_saved.as_secs_f64();
    if saved > 0.0 {
        text += &format!("; {saved:.1}s of timeouts saved");
    }
    text
}

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
        let setup = if call.setup {
            "  (setup, not under test)"
        } else {
            ""
        };
        lines.push(format!(
            "{}{} → {}{setup}",
            "  ".repeat(depth + 1),
            call.site,
            call.outcome
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use super::*;
    use crate::explore::{CallRecord, ExecutionIndex, Outcome, Protocol};

    fn site(method: &str, target: &str) -> CallSite {
        CallSite {
            caller: "test".into(),
            callee: "cart".into(),
            protocol: Protocol::Http,
            method: method.into(),
            target: target.into(),
        }
    }

    #[test]
    fn a_vanished_call_is_explained_by_the_part_of_its_path_that_changed() {
        let calls = ["/carts", "/checkout/c2?coupon=x", "/carts/c2/items"]
            .into_iter()
            .map(|target| CallRecord {
                index: ExecutionIndex::default(),
                parent: None,
                site: Arc::new(site("POST", target)),
                injected: None,
                outcome: Outcome::Status(200),
                connection: None,
                connect_ordinal: None,
                began: Instant::now(),
                ended: None,
                setup: false,
            })
            .collect();
        let execution = Finished {
            number: 2,
            faults: Vec::new(),
            calls,
            passed: true,
            vanished: Vec::new(),
            lost_events: 0,
        };
        assert_eq!(
            changed_path(&site("POST", "/checkout/c1?coupon=x"), &execution).as_deref(),
            Some("POST /checkout/c1?coupon=x became /checkout/c2?coupon=x (`c1` → `c2`)")
        );
        assert_eq!(changed_path(&site("GET", "/checkout/c1"), &execution), None);
    }

    #[test]
    fn held_calls_make_the_applications_timeout_map() {
        use crate::explore::Fault;
        let t0 = Instant::now();
        let held = |caller: &str, callee: &str, waited_ms: Option<u64>| CallRecord {
            index: ExecutionIndex::default(),
            parent: None,
            site: Arc::new(CallSite {
                caller: caller.into(),
                callee: callee.into(),
                protocol: Protocol::Http,
                method: "GET".into(),
                target: "/".into(),
            }),
            injected: Some(Fault::Timeout),
            outcome: Outcome::Injected(Fault::Timeout),
            connection: None,
            connect_ordinal: None,
            began: t0,
            ended: waited_ms.map(|ms| t0 + std::time::Duration::from_millis(ms)),
            setup: false,
        };
        let execution = |calls| Finished {
            number: 1,
            faults: Vec::new(),
            calls,
            passed: true,
            vanished: Vec::new(),
            lost_events: 0,
        };
        let executions = [
            execution(vec![
                held("users", "bookings", Some(500)),
                held("bookings", "movies", None),
            ]),
            execution(vec![held("users", "bookings", Some(1500))]),
        ];
        let map = learned_timeouts(&executions);
        assert_eq!(
            describe_timeouts(&map),
            "bookings → movies never gave up (no timeout); users → bookings gave up after 1.5 s"
        );
        assert_eq!(map[1].holds, 2);
    }
}
