//! What a run leaves behind: the counterexample that replays a failure,
//! the JSON and JUnit reports, and what the terminal shows.

mod diagnosis;
mod html;
mod junit;
mod markdown;
mod progress;
mod run;
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
pub use run::{RunReport, SCHEMA_VERSION};
pub use summary::{render as render_calls, render_traffic, traffic};

use crate::{
    explore::{
        CallRecord, CallSite, ExecutionIndex, Finished, PlannedFault, Progress, RetryGroup, Search,
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
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BudgetReport {
    /// "10 executions (--max-executions)".
    pub reached: String,
    /// Executions still scheduled when it was.
    pub scheduled_left: usize,
    /// Per call site, the faults they would have tried that no execution
    /// run had.
    pub untried: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

/// The HTML page of a report saved by `--report-json`, written to `html`.
pub fn render_saved(json: &Path, html: &Path) -> Result<()> {
    let page = html::render(&RunReport::read(json)?);
    json_file::replace(html, "HTML report", |file| {
        std::io::Write::write_all(file, page.as_bytes())
    })
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
