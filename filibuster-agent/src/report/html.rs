//! The run as one self-contained HTML page, rendered from its typed report
//! (a saved JSON report renders the same later: `filibuster report`). No
//! script and nothing fetched: inline CSS only, readable offline and from
//! a CI artifact. The failures-only filter of the matrix is a checkbox and
//! a CSS rule.
//!
//! Written by hand rather than with a template engine: five sections of
//! plain markup, whose only rule is that every text from the run is
//! escaped (`esc`).

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
};

use super::{
    describe_faults,
    run::{CallReport, RunReport, RunResult},
    summary::DiscoveredCall,
};
use crate::explore::ExecutionIndex;

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;max-width:110em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.passed{color:#176f2c}.failed{color:#b00020}.error{color:#a65b00}
code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:30em}
ul.tree{list-style:none;padding-left:1.2em}ul.tree li{margin:.15em 0}
.fault{display:inline-block;margin:0 .2em;padding:0 .35em;border-radius:3px;font-size:12px}
.setup{color:#888;margin-left:.5em}.fault.ok{background:#e3f4e6}.fault.bad{background:#fbe0e3;font-weight:bold}
table.matrix{border-collapse:collapse;font-size:12px}
table.matrix th,table.matrix td{border:1px solid #ddd;padding:2px 5px;text-align:center;white-space:nowrap}
table.matrix th.call{writing-mode:vertical-rl;transform:rotate(180deg);max-height:16em;font-weight:normal}
tr.failed-row{background:#fde8ea}td.injected{background:#ffe9b3}td.vanished{color:#bbb}
#only-failed:checked ~ table.matrix tr.passed-row{display:none}
.bar{display:inline-block;height:10px;background:#6b8ed6;vertical-align:middle}
.side{display:flex;gap:2em;flex-wrap:wrap}.side>div{flex:1;min-width:30em}
";

/// The page of a run, from its report (a saved one too: `filibuster report`).
pub fn render(report: &RunReport) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Filibuster: {}</title><style>{STYLE}</style></head><body>",
        report.result.as_str()
    );
    summary(report, &mut page);
    call_tree(report, &mut page);
    matrix(report, &mut page);
    failures(report, &mut page);
    timeouts(report, &mut page);
    timeline(report, &mut page);
    page.push_str("</body></html>\n");
    page
}

fn summary(report: &RunReport, page: &mut String) {
    let verdict = match report.result {
        RunResult::Passed => "every execution passed",
        RunResult::Failed => "a fault combination fails the test",
        RunResult::Error => "the run could not go on",
    };
    let _ = write!(
        page,
        "<h1>Filibuster: <span class={}>{}</span></h1><p id=summary><code>{}</code> · {} · {} execution(s) ({} search), {} pruned, {} cell(s) · {:.1} s, {:.1} s of it holding calls for timeouts</p>",
        report.result.as_str(),
        verdict,
        esc(&report.config.display().to_string()),
        esc(&report.tool),
        report.executions,
        report.search.as_str(),
        report.pruned,
        report.cells,
        report.elapsed_seconds,
        report.held_seconds,
    );
    if let Some(error) = &report.error {
        let _ = write!(page, "<pre class=error>{}</pre>", esc(error));
    }
    for failure in &report.failures {
        let _ = write!(
            page,
            "<p>Execution <a href=\"#failure-{n}\">{n}</a> failed. Replay: <code>{}</code></p>",
            esc(&failure.replay),
            n = failure.number,
        );
    }
}

/// The application's timeout map, learned from the held calls; and what a
/// budget left untried.
fn timeouts(report: &RunReport, page: &mut String) {
    if !report.timeouts.is_empty() {
        page.push_str("<h2>Timeouts learned</h2><table><tr><th>caller → callee</th><th>gave up after</th><th>held calls</th></tr>");
        for timeout in &report.timeouts {
            let after = match timeout.gave_up_after_seconds {
                Some(seconds) => format!("{seconds:.1} s"),
                None => "never: no timeout".to_string(),
            };
            let _ = write!(
                page,
                "<tr><td>{} → {}</td><td>{after}</td><td>{}</td></tr>",
                esc(&timeout.caller),
                esc(&timeout.callee),
                timeout.holds,
            );
        }
        page.push_str("</table>");
    }
    if let Some(budget) = &report.budget {
        let _ = write!(
            page,
            "<h2>Budget</h2><p>The budget of {} was reached with {} execution(s) still scheduled.</p><ul>",
            esc(&budget.reached),
            budget.scheduled_left,
        );
        for (site, faults) in &budget.untried {
            let faults: Vec<&str> = faults.iter().map(String::as_str).collect();
            let _ = write!(
                page,
                "<li>{}: never tried {}</li>",
                esc(site),
                esc(&faults.join(", "))
            );
        }
        page.push_str("</ul>");
    }
}

/// The calls discovered, nested under their parents, each with the faults
/// tried on it linking to the executions that tried them.
fn call_tree(report: &RunReport, page: &mut String) {
    page.push_str("<h2>Calls discovered</h2>");
    let mut children: HashMap<Option<&ExecutionIndex>, Vec<&DiscoveredCall>> = HashMap::new();
    for call in &report.calls {
        children.entry(call.parent.as_ref()).or_default().push(call);
    }
    fn branch(
        parent: Option<&ExecutionIndex>,
        children: &HashMap<Option<&ExecutionIndex>, Vec<&DiscoveredCall>>,
        page: &mut String,
    ) {
        let Some(calls) = children.get(&parent) else {
            return;
        };
        page.push_str("<ul class=tree>");
        for call in calls {
            let _ = write!(
                page,
                "<li><span class=call>{}</span>",
                esc(&call.site.to_string())
            );
            if call.setup {
                page.push_str("<small class=setup>setup (not under test)</small>");
            }
            for tried in &call.faults {
                let numbers: Vec<String> = tried.executions.iter().map(usize::to_string).collect();
                let links: Vec<String> = numbers
                    .iter()
                    .map(|n| format!("<a href=\"#execution-{n}\">{n}</a>"))
                    .collect();
                let _ = write!(
                    page,
                    "<span class=\"fault {}\" title=\"executions {}\">{} {}</span><small>{}</small>",
                    if tried.tolerated { "ok" } else { "bad" },
                    numbers.join(", "),
                    esc(&tried.fault.to_string()),
                    if tried.tolerated { "✓" } else { "✗" },
                    links.join(" "),
                );
            }
            branch(Some(&call.execution_index), children, page);
            page.push_str("</li>");
        }
        page.push_str("</ul>");
    }
    branch(None, &children, page);
}

/// Executions × calls: the fault each execution injected where, the calls
/// it made (·) and those it did not make; failing rows marked, and a
/// checkbox that hides the passing ones.
fn matrix(report: &RunReport, page: &mut String) {
    page.push_str(
        "<h2>Executions × calls</h2><input type=checkbox id=only-failed><label for=only-failed> failing executions only</label><table class=matrix><tr><th>execution</th>",
    );
    for call in &report.calls {
        let _ = write!(page, "<th class=call>{}</th>", esc(&call.site.to_string()));
    }
    page.push_str("<th>result</th></tr>");
    for execution in &report.execution_log {
        let _ = write!(
            page,
            "<tr id=\"execution-{n}\" class={}><th>{n}</th>",
            if execution.passed() {
                "passed-row"
            } else {
                "failed-row"
            },
            n = execution.number,
        );
        let made: HashSet<&ExecutionIndex> =
            execution.calls.iter().map(|c| &c.execution_index).collect();
        for call in &report.calls {
            let injected = execution
                .faults
                .iter()
                .find(|f| f.index == call.execution_index);
            match (injected, made.contains(&call.execution_index)) {
                (Some(planned), _) => {
                    let _ = write!(
                        page,
                        "<td class=injected>{}</td>",
                        esc(&planned.fault.to_string())
                    );
                }
                (None, true) => page.push_str("<td>·</td>"),
                (None, false) => page.push_str("<td class=vanished></td>"),
            }
        }
        let _ = write!(page, "<td>{}</td></tr>", esc(&execution.result));
    }
    page.push_str("</table>");
}

/// Each failure: its calls with their outcomes beside the fault-free
/// execution's, the diagnosis, the test's output and how to replay it.
fn failures(report: &RunReport, page: &mut String) {
    for failure in &report.failures {
        let _ = write!(
            page,
            "<h2 id=\"failure-{n}\">Execution {n} failed with {}</h2>",
            esc(&describe_faults(&failure.faults)),
            n = failure.number,
        );
        if let Some(diagnosis) = &failure.diagnosis {
            let _ = write!(
                page,
                "<p class=diagnosis><b>Diagnosis</b>: {}</p>",
                esc(&diagnosis.to_string())
            );
        }
        page.push_str("<div class=side><div><h3>This execution</h3>");
        outcomes(&failure.calls, page);
        page.push_str("</div>");
        if let Some(fault_free) = report.fault_free() {
            page.push_str("<div><h3>With no fault injected</h3>");
            outcomes(&fault_free.calls, page);
            page.push_str("</div>");
        }
        let counterexample = failure.counterexample.as_ref().map_or_else(
            || "(none written)".to_string(),
            |path| path.display().to_string(),
        );
        let _ = write!(
            page,
            "</div><h3>Test output ({})</h3><pre>{}</pre><p>Counterexample: <code>{}</code><br>Replay: <code>{}</code></p>",
            esc(&failure.test_result),
            esc(&failure.test_output),
            esc(&counterexample),
            esc(&failure.replay),
        );
    }
}

/// An execution's calls as a tree, with how each ended.
fn outcomes(calls: &[CallReport], page: &mut String) {
    page.push_str("<pre>");
    for call in calls {
        let _ = writeln!(
            page,
            "{}{} → {}",
            "  ".repeat(call.execution_index.depth()),
            esc(&call.site.to_string()),
            esc(&call.outcome.to_string())
        );
    }
    page.push_str("</pre>");
}

/// Held time per execution, as bars.
fn timeline(report: &RunReport, page: &mut String) {
    let log = &report.execution_log;
    let longest = log.iter().map(|e| e.seconds).fold(0.0, f64::max).max(0.001);
    page.push_str("<h2>Time held for timeouts, per execution</h2><table>");
    for execution in log {
        let (seconds, held) = (execution.seconds, execution.held_seconds);
        let _ = write!(
            page,
            "<tr><td>{}</td><td><span class=bar style=\"width:{:.0}px;background:#ccc\"></span><span class=bar style=\"width:{:.0}px\"></span></td><td>{held:.2} s held of {seconds:.2} s</td></tr>",
            execution.number,
            400.0 * (seconds - held).max(0.0) / longest,
            400.0 * held / longest,
        );
    }
    page.push_str("</table>");
}

/// Text from the run, made safe to put in markup.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use super::*;
    use crate::explore::{
        CallRecord, CallSite, Explorer, Fault, Finished, Options, Outcome, PlannedFault, Protocol,
    };

    fn site(caller: &str, callee: &str, target: &str) -> CallSite {
        CallSite {
            caller: caller.into(),
            callee: callee.into(),
            protocol: Protocol::Http,
            method: "GET".into(),
            target: target.into(),
        }
    }

    /// test → foo → bar, where foo does not survive bar refusing.
    fn explored() -> RunReport {
        let mut explorer = Explorer::new(Options::default());
        while let Some(mut execution) = explorer.next_execution() {
            let (foo, _) = execution.begin_call(None, site("test", "foo", "/foo"), |_| Vec::new());
            let (bar, fault) =
                execution.begin_call(Some(foo), site("foo", "bar", "/<bar>"), |_| {
                    vec![Fault::ConnectionRefused]
                });
            execution.end_call(bar, Outcome::Status(200));
            execution.end_call(foo, Outcome::Status(200));
            explorer.finish(execution, fault.is_none());
        }
        RunReport::of_executions(explorer.executions(), "AssertionError: <script>")
    }

    #[test]
    fn renders_offline_with_the_failure_and_escapes_what_the_run_wrote() {
        let page = render(&explored());
        assert!(page.contains("a fault combination fails the test"));
        assert!(page.contains("foo → bar GET /&lt;bar&gt;"));
        assert!(page.contains("connection refused ✗"));
        assert!(page.contains("AssertionError: &lt;script&gt;"));
        assert!(
            !page.contains("<script"),
            "no script, none from the run either"
        );
        assert!(page.contains("id=\"failure-2\""));
        assert!(page.contains("class=failed-row"));
        // Nothing fetched when opened (no source, no stylesheet, no import).
        for fetch in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!page.contains(fetch), "{fetch}");
        }
    }

    #[test]
    fn a_saved_report_renders_the_same_page() {
        let report = explored();
        let saved: RunReport =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(render(&saved), render(&report));
    }

    #[test]
    fn a_thousand_executions_of_forty_calls_stay_under_a_few_megabytes() {
        let root = crate::explore::ExecutionIndex::default();
        let sites: Vec<Arc<CallSite>> = (0..40)
            .map(|i| {
                Arc::new(site(
                    "gateway",
                    &format!("service-{i}"),
                    &format!("/api/v1/resource/{i}"),
                ))
            })
            .collect();
        let executions: Vec<Finished> = (1..=1000)
            .map(|number| {
                let calls: Vec<CallRecord> = sites
                    .iter()
                    .enumerate()
                    .map(|(i, site)| CallRecord {
                        index: root.child(i as u64, 1),
                        parent: None,
                        site: site.clone(),
                        injected: None,
                        outcome: Outcome::Status(200),
                        connection: Some(number as u32),
                        connect_ordinal: None,
                        began: Instant::now(),
                        ended: None,
                        setup: false,
                    })
                    .collect();
                let faulted = &calls[number % 40];
                Finished {
                    number,
                    faults: vec![PlannedFault {
                        index: faulted.index.clone(),
                        fault: Fault::Timeout,
                        site: (*faulted.site).clone(),
                    }],
                    calls,
                    passed: true,
                    vanished: Vec::new(),
                    lost_events: 0,
                }
            })
            .collect();
        let page = render(&RunReport::of_executions(&executions, ""));
        assert!(page.len() < 4 * 1024 * 1024, "{} bytes", page.len());
    }
}
