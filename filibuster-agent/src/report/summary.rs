//! The calls a run discovered, merged over all its executions into one
//! tree, with the faults tried on each and whether the test tolerated them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::explore::{CallRecord, CallSite, ExecutionIndex, Fault, Finished};

#[derive(Debug, Serialize, Deserialize)]
pub struct DiscoveredCall {
    pub execution_index: ExecutionIndex,
    /// The call this one was made while serving (`None`: the test's).
    pub parent: Option<ExecutionIndex>,
    #[serde(flatten)]
    pub site: Arc<CallSite>,
    /// In how many executions the call happened.
    pub seen: usize,
    pub faults: Vec<FaultTried>,
    /// Made for the test's setup, outside `[test] scope`: never failed.
    pub setup: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FaultTried {
    pub fault: Fault,
    /// The executions that injected it (alone or with others).
    pub executions: Vec<usize>,
    /// Whether the test passed in every one of them.
    pub tolerated: bool,
}

/// Every call seen, in the order first seen; parents before children.
pub fn discovered_calls(executions: &[Finished]) -> Vec<DiscoveredCall> {
    let mut order: Vec<DiscoveredCall> = Vec::new();
    let mut position: HashMap<ExecutionIndex, usize> = HashMap::new();
    let mut tried: HashMap<ExecutionIndex, BTreeMap<Fault, Vec<(usize, bool)>>> = HashMap::new();
    for execution in executions {
        for call in &execution.calls {
            let at = *position.entry(call.index.clone()).or_insert_with(|| {
                order.push(DiscoveredCall {
                    execution_index: call.index.clone(),
                    parent: call
                        .parent
                        .map(|p| execution.calls[p.position()].index.clone()),
                    site: call.site.clone(),
                    seen: 0,
                    faults: Vec::new(),
                    setup: call.setup,
                });
                order.len() - 1
            });
            order[at].seen += 1;
        }
        for planned in &execution.faults {
            tried
                .entry(planned.index.clone())
                .or_default()
                .entry(planned.fault.clone())
                .or_default()
                .push((execution.number, execution.passed));
        }
    }
    for call in &mut order {
        let Some(faults) = tried.remove(&call.execution_index) else {
            continue;
        };
        call.faults = faults
            .into_iter()
            .map(|(fault, runs)| FaultTried {
                fault,
                tolerated: runs.iter().all(|(_, passed)| *passed),
                executions: runs.into_iter().map(|(n, _)| n).collect(),
            })
            .collect();
    }
    order
}

/// The tree for the terminal: one line per call, indented under its
/// parent, with its faults marked ✓ (tolerated) or ✗ (the test failed).
pub fn render(calls: &[DiscoveredCall]) -> String {
    let mut children: Children = HashMap::new();
    for call in calls {
        children.entry(call.parent.as_ref()).or_default().push(call);
    }
    let mut lines = Vec::new();
    render_children(&children, None, 1, &mut lines);
    lines.join("\n")
}

type Children<'a> = HashMap<Option<&'a ExecutionIndex>, Vec<&'a DiscoveredCall>>;

/// The lines of the calls under `parent`. Consecutive siblings of one site
/// with no fault tried and no calls of their own (a test polling, a load)
/// are one line with their count: thousands of identical lines would bury
/// the calls that matter.
fn render_children(
    children: &Children<'_>,
    parent: Option<&ExecutionIndex>,
    depth: usize,
    lines: &mut Vec<String>,
) {
    let Some(siblings) = children.get(&parent) else {
        return;
    };
    let plain = |c: &DiscoveredCall| {
        c.faults.is_empty() && !children.contains_key(&Some(&c.execution_index))
    };
    let mut at = 0;
    while let Some(&call) = siblings.get(at) {
        let alike = if plain(call) {
            siblings[at..]
                .iter()
                .take_while(|c| plain(c) && c.site == call.site)
                .count()
        } else {
            1
        };
        let mut line = format!("{}{}", "  ".repeat(depth), call.site);
        if alike > 1 {
            line += &format!("  ×{alike}");
        }
        let faults: Vec<String> = call
            .faults
            .iter()
            .map(|t| format!("{} {}", t.fault, if t.tolerated { "✓" } else { "✗" }))
            .collect();
        if !faults.is_empty() {
            line += &format!("  [{}]", faults.join(", "));
        }
        if call.setup {
            line += "  (setup, not under test)";
        }
        lines.push(line);
        render_children(children, Some(&call.execution_index), depth + 1, lines);
        at += alike;
    }
}

/// One line of `filibuster trace`: the calls of one site along one path
/// of callers, merged.
#[derive(Debug, Serialize)]
pub struct TrafficLine<'a> {
    /// How many callers up to the test (1: the test's own calls).
    pub depth: usize,
    #[serde(flatten)]
    pub site: &'a CallSite,
    pub count: usize,
    /// How they ended, with how many each way.
    pub outcomes: BTreeMap<String, usize>,
}

/// Calls as `filibuster trace` shows them: repeated calls along the same
/// path of callers merged, with how often each happened and how it ended.
pub fn traffic(calls: &[CallRecord]) -> Vec<TrafficLine<'_>> {
    let mut lines: Vec<TrafficLine> = Vec::new();
    let mut by_path: HashMap<Vec<&CallSite>, usize> = HashMap::new();
    for call in calls {
        let mut path: Vec<&CallSite> =
            std::iter::successors(Some(call), |c| c.parent.map(|p| &calls[p.position()]))
                .map(|c| &*c.site)
                .collect();
        path.reverse();
        let depth = path.len();
        let at = *by_path.entry(path).or_insert_with(|| {
            lines.push(TrafficLine {
                depth,
                site: &call.site,
                count: 0,
                outcomes: BTreeMap::new(),
            });
            lines.len() - 1
        });
        lines[at].count += 1;
        *lines[at]
            .outcomes
            .entry(call.outcome.to_string())
            .or_default() += 1;
    }
    lines
}

/// The trace as the terminal shows it: a line per site and path.
pub fn render_traffic(lines: &[TrafficLine]) -> String {
    lines
        .iter()
        .map(|line| {
            let outcomes: Vec<String> = line
                .outcomes
                .iter()
                .map(|(outcome, n)| format!("{outcome} ×{n}"))
                .collect();
            format!(
                "{}{}  ×{} ({})",
                "  ".repeat(line.depth),
                line.site,
                line.count,
                outcomes.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::{Explorer, Options, Outcome, Protocol};

    fn site(caller: &str, callee: &str) -> CallSite {
        CallSite {
            caller: caller.into(),
            callee: callee.into(),
            protocol: Protocol::Http,
            method: "GET".into(),
            target: format!("/{callee}"),
        }
    }

    /// test → users → bookings, where users does not survive a 503.
    fn explore_chain() -> Vec<Finished> {
        let mut explorer = Explorer::new(Options::default());
        while let Some(mut execution) = explorer.next_execution() {
            let (users, _) = execution.begin_call(None, site("test", "users"), |_| Vec::new());
            let faults = [Fault::Timeout, Fault::HttpStatus(503)];
            let (bookings, fault) =
                execution.begin_call(Some(users), site("users", "bookings"), |_| faults.to_vec());
            execution.end_call(bookings, Outcome::Status(200));
            execution.end_call(users, Outcome::Status(200));
            let passed = fault != Some(Fault::HttpStatus(503));
            explorer.finish(execution, passed);
        }
        explorer.executions().to_vec()
    }

    #[test]
    fn merges_executions_into_a_tree_of_calls_with_their_faults() {
        let calls = discovered_calls(&explore_chain());
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].seen, 3);
        assert!(calls[0].faults.is_empty());
        assert_eq!(calls[1].parent.as_ref(), Some(&calls[0].execution_index));
        let tried: Vec<_> = calls[1]
            .faults
            .iter()
            .map(|t| (t.fault.clone(), t.tolerated))
            .collect();
        assert_eq!(
            tried,
            vec![(Fault::Timeout, true), (Fault::HttpStatus(503), false)]
        );
        assert_eq!(
            render_traffic(&traffic(&explore_chain()[0].calls)),
            "  test → users GET /users  ×1 (200 ×1)\n    users → bookings GET /bookings  ×1 (200 ×1)"
        );
        assert_eq!(
            render(&calls),
            "  test → users GET /users\n    users → bookings GET /bookings  [timeout ✓, HTTP 503 ✗]"
        );
    }

    #[test]
    fn a_run_of_alike_plain_calls_is_one_line() {
        let mut explorer = Explorer::new(Options::default());
        let mut execution = explorer.next_execution().expect("the first execution");
        let no_faults = |_: &CallSite| Vec::new();
        for _ in 0..3 {
            execution.begin_call(None, site("test", "health"), no_faults);
        }
        let (users, _) = execution.begin_call(None, site("test", "users"), no_faults);
        execution.begin_call(Some(users), site("users", "bookings"), no_faults);
        execution.begin_call(None, site("test", "health"), no_faults);
        explorer.finish(execution, true);
        assert_eq!(
            render(&discovered_calls(explorer.executions())),
            "  test → health GET /health  ×3\n  test → users GET /users\n    users → bookings GET /bookings\n  test → health GET /health"
        );
    }
}
