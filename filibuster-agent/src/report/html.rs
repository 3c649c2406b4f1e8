//! The run as one self-contained HTML page, rendered from the JSON report
//! (so a saved report renders the same later: `filibuster report`). No
//! script and nothing fetched: inline CSS only, readable offline and from
//! a CI artifact. The failures-only filter of the matrix is a checkbox and
//! a CSS rule.
//!
//! Written by hand rather than with a template engine: five sections of
//! plain markup, whose only rule is that every text from the run is
//! escaped (`esc`).

use std::{collections::HashMap, fmt::Write as _};

use serde_json::Value;

use crate::explore::{CallSite, Fault, Outcome};

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

/// The page for `report` (the JSON `filibuster test --report-json` writes).
pub fn render(report: &Value) -> String {
    let mut page = String::new();
    let result = report["result"].as_str().unwrap_or("unknown");
    let _ = write!(
        page,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Filibuster: {}</title><style>{STYLE}</style></head><body>",
        esc(result)
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

fn summary(report: &Value, page: &mut String) {
    let result = report["result"].as_str().unwrap_or("unknown");
    let verdict = match result {
        "passed" => "every execution passed",
        "failed" => "a fault combination fails the test",
        _ => "the run could not go on",
    };
    let _ = write!(
        page,
        "<h1>Filibuster: <span class={}>{}</span></h1><p id=summary><code>{}</code> · {} · {} execution(s) ({} search), {} pruned, {} cell(s) · {:.1} s, {:.1} s of it holding calls for timeouts</p>",
        esc(result),
        verdict,
        esc(report["config"].as_str().unwrap_or("")),
        esc(report["tool"].as_str().unwrap_or("")),
        report["executions"],
        esc(report["search"].as_str().unwrap_or("?")),
        report["pruned"],
        report["cells"],
        report["elapsed_seconds"].as_f64().unwrap_or(0.0),
        report["held_seconds"].as_f64().unwrap_or(0.0),
    );
    if let Some(error) = report["error"].as_str() {
        let _ = write!(page, "<pre class=error>{}</pre>", esc(error));
    }
    for failure in array(&report["failures"]) {
        let _ = write!(
            page,
            "<p>Execution <a href=\"#failure-{n}\">{n}</a> failed. Replay: <code>{}</code></p>",
            esc(failure["replay"].as_str().unwrap_or("")),
            n = failure["number"],
        );
    }
}

/// The application's timeout map, learned from the held calls; and what a
/// budget left untried.
fn timeouts(report: &Value, page: &mut String) {
    let learned = array(&report["timeouts"]);
    if !learned.is_empty() {
        page.push_str("<h2>Timeouts learned</h2><table><tr><th>caller → callee</th><th>gave up after</th><th>held calls</th></tr>");
        for timeout in learned {
            let after = match timeout["gave_up_after_seconds"].as_f64() {
                Some(seconds) => format!("{seconds:.1} s"),
                None => "never: no timeout".to_string(),
            };
            let _ = write!(
                page,
                "<tr><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
                esc(timeout["caller"].as_str().unwrap_or("")),
                esc(timeout["callee"].as_str().unwrap_or("")),
                esc(&after),
                timeout["holds"],
            );
        }
        page.push_str("</table>");
    }
    if let Some(reached) = report["budget"]["reached"].as_str() {
        let _ = write!(
            page,
            "<h2>Budget</h2><p>The budget of {} was reached with {} execution(s) still scheduled.</p><ul>",
            esc(reached),
            report["budget"]["scheduled_left"],
        );
        if let Some(untried) = report["budget"]["untried"].as_object() {
            for (site, faults) in untried {
                let faults: Vec<&str> = array(faults).iter().filter_map(Value::as_str).collect();
                let _ = write!(
                    page,
                    "<li>{}: never tried {}</li>",
                    esc(site),
                    esc(&faults.join(", "))
                );
            }
        }
        page.push_str("</ul>");
    }
}

/// The calls discovered, nested under their parents, each with the faults
/// tried on it linking to the executions that tried them.
fn call_tree(report: &Value, page: &mut String) {
    page.push_str("<h2>Calls discovered</h2>");
    let calls = array(&report["calls"]);
    let mut children: HashMap<String, Vec<&Value>> = HashMap::new();
    for call in calls {
        children
            .entry(call["parent"].to_string())
            .or_default()
            .push(call);
    }
    fn branch(parent: &str, children: &HashMap<String, Vec<&Value>>, page: &mut String) {
        let Some(calls) = children.get(parent) else {
            return;
        };
        page.push_str("<ul class=tree>");
        for call in calls {
            let _ = write!(page, "<li><span class=call>{}</span>", esc(&site(call)));
            if call["setup"].as_bool() == Some(true) {
                page.push_str("<small class=setup>setup (not under test)</small>");
            }
            for tried in array(&call["faults"]) {
                let tolerated = tried["tolerated"].as_bool().unwrap_or(false);
                let links: Vec<String> = array(&tried["executions"])
                    .iter()
                    .map(|n| format!("<a href=\"#execution-{n}\">{n}</a>"))
                    .collect();
                let _ = write!(
                    page,
                    "<span class=\"fault {}\" title=\"executions {}\">{} {}</span>",
                    if tolerated { "ok" } else { "bad" },
                    array(&tried["executions"])
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    esc(&fault(&tried["fault"])),
                    if tolerated { "✓" } else { "✗" },
                );
                let _ = write!(page, "<small>{}</small>", links.join(" "));
            }
            branch(&call["execution_index"].to_string(), children, page);
            page.push_str("</li>");
        }
        page.push_str("</ul>");
    }
    branch("null", &children, page);
}

/// Executions × calls: the fault each execution injected where, the calls
/// it made (·) and those it did not make; failing rows marked, and a
/// checkbox that hides the passing ones.
fn matrix(report: &Value, page: &mut String) {
    let calls = array(&report["calls"]);
    page.push_str(
        "<h2>Executions × calls</h2><input type=checkbox id=only-failed><label for=only-failed> failing executions only</label><table class=matrix><tr><th>execution</th>",
    );
    for call in calls {
        let _ = write!(page, "<th class=call>{}</th>", esc(&site(call)));
    }
    page.push_str("<th>result</th></tr>");
    for execution in array(&report["execution_log"]) {
        let passed = execution["result"] == "passed";
        let _ = write!(
            page,
            "<tr id=\"execution-{n}\" class={}><th>{n}</th>",
            if passed { "passed-row" } else { "failed-row" },
            n = execution["number"],
        );
        let made: HashMap<String, &Value> = array(&execution["calls"])
            .iter()
            .map(|c| (c["execution_index"].to_string(), c))
            .collect();
        for call in calls {
            let index = call["execution_index"].to_string();
            let injected = array(&execution["faults"])
                .iter()
                .find(|f| f["index"] == call["execution_index"]);
            match (injected, made.contains_key(&index)) {
                (Some(planned), _) => {
                    let _ = write!(
                        page,
                        "<td class=injected>{}</td>",
                        esc(&fault(&planned["fault"]))
                    );
                }
                (None, true) => page.push_str("<td>·</td>"),
                (None, false) => page.push_str("<td class=vanished></td>"),
            }
        }
        let _ = write!(
            page,
            "<td>{}</td></tr>",
            esc(execution["result"].as_str().unwrap_or(""))
        );
    }
    page.push_str("</table>");
}

/// Each failure: its calls with their outcomes beside the fault-free
/// execution's, the diagnosis, the test's output and how to replay it.
fn failures(report: &Value, page: &mut String) {
    let failures = array(&report["failures"]);
    if failures.is_empty() {
        return;
    }
    let fault_free = array(&report["execution_log"])
        .iter()
        .find(|e| array(&e["faults"]).is_empty());
    for failure in failures {
        let faults: Vec<String> = array(&failure["faults"])
            .iter()
            .map(|f| format!("{}: {}", site(&f["site"]), fault(&f["fault"])))
            .collect();
        let _ = write!(
            page,
            "<h2 id=\"failure-{}\">Execution {} failed with {}</h2>",
            failure["number"],
            failure["number"],
            esc(&faults.join("; "))
        );
        if !failure["diagnosis"].is_null() {
            let _ = write!(
                page,
                "<p class=diagnosis><b>Diagnosis</b> ({}): <code>{}</code></p>",
                esc(failure["diagnosis"]["kind"].as_str().unwrap_or("")),
                esc(&failure["diagnosis"].to_string())
            );
        }
        page.push_str("<div class=side><div><h3>This execution</h3>");
        outcomes(array(&failure["calls"]), page);
        page.push_str("</div>");
        if let Some(fault_free) = fault_free {
            page.push_str("<div><h3>With no fault injected</h3>");
            outcomes(array(&fault_free["calls"]), page);
            page.push_str("</div>");
        }
        let _ = write!(
            page,
            "</div><h3>Test output ({})</h3><pre>{}</pre><p>Counterexample: <code>{}</code><br>Replay: <code>{}</code></p>",
            esc(failure["test_result"].as_str().unwrap_or("")),
            esc(failure["test_output"].as_str().unwrap_or("")),
            esc(failure["counterexample"]
                .as_str()
                .unwrap_or("(none written)")),
            esc(failure["replay"].as_str().unwrap_or("")),
        );
    }
}

/// An execution's calls as a tree, with how each ended.
fn outcomes(calls: &[Value], page: &mut String) {
    let depth_of = |call: &Value| call["execution_index"].as_array().map_or(1, Vec::len);
    page.push_str("<pre>");
    for call in calls {
        let _ = writeln!(
            page,
            "{}{} → {}",
            "  ".repeat(depth_of(call)),
            esc(&site(call)),
            esc(&outcome(&call["outcome"]))
        );
    }
    page.push_str("</pre>");
}

/// Held time per execution, as bars.
fn timeline(report: &Value, page: &mut String) {
    let log = array(&report["execution_log"]);
    let longest = log
        .iter()
        .filter_map(|e| e["seconds"].as_f64())
        .fold(0.0, f64::max)
        .max(0.001);
    page.push_str("<h2>Time held for timeouts, per execution</h2><table>");
    for execution in log {
        let seconds = execution["seconds"].as_f64().unwrap_or(0.0);
        let held = execution["held_seconds"].as_f64().unwrap_or(0.0);
        let _ = write!(
            page,
            "<tr><td>{}</td><td><span class=bar style=\"width:{:.0}px;background:#ccc\"></span><span class=bar style=\"width:{:.0}px\"></span></td><td>{held:.2} s held of {seconds:.2} s</td></tr>",
            execution["number"],
            400.0 * (seconds - held).max(0.0) / longest,
            400.0 * held / longest,
        );
    }
    page.push_str("</table>");
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// "foo → bar GET /bar/baz", from a call or a site.
fn site(call: &Value) -> String {
    shown::<CallSite>(call)
}

/// "connection refused", "HTTP 503", from a serialised fault.
fn fault(fault: &Value) -> String {
    shown::<Fault>(fault)
}

fn outcome(outcome: &Value) -> String {
    shown::<Outcome>(outcome)
}

/// A value of the report as the terminal shows it: read back into the type
/// that wrote it, displayed as that type displays (a call's extra fields
/// are ignored); empty if it is not one.
fn shown<T: serde::de::DeserializeOwned + std::fmt::Display>(value: &Value) -> String {
    T::deserialize(value).map_or_else(|_| String::new(), |v| v.to_string())
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
    use super::*;

    #[test]
    fn renders_offline_with_the_failure_and_escapes_what_the_run_wrote() {
        let report = serde_json::json!({
            "result": "failed", "config": "t.toml", "tool": "filibuster 0.1.0",
            "executions": 2, "pruned": 0, "cells": 1, "elapsed_seconds": 1.0, "held_seconds": 0.5,
            "calls": [
                {"execution_index": [["a", 1]], "parent": null, "caller": "test", "callee": "foo",
                 "protocol": "http", "method": "GET", "target": "/foo", "faults": []},
                {"execution_index": [["a", 1], ["b", 1]], "parent": [["a", 1]], "caller": "foo",
                 "callee": "bar", "protocol": "http", "method": "GET", "target": "/<bar>",
                 "faults": [{"fault": {"kind": "connection-refused"}, "executions": [2], "tolerated": false}]}
            ],
            "execution_log": [
                {"number": 1, "faults": [], "result": "passed", "seconds": 0.2, "held_seconds": 0.0, "calls": []},
                {"number": 2, "faults": [{"index": [["a", 1], ["b", 1]], "fault": {"kind": "connection-refused"},
                  "site": {"caller": "foo", "callee": "bar", "protocol": "http", "method": "GET", "target": "/<bar>"}}],
                 "result": "failed (exit 1)", "seconds": 0.8, "held_seconds": 0.5, "calls": []}
            ],
            "failures": [{"number": 2, "faults": [], "calls": [], "test_result": "failed (exit 1)",
                "test_output": "AssertionError: <script>", "diagnosis": null,
                "counterexample": "counterexample.json", "replay": "filibuster test --counterexample-file counterexample.json"}],
            "unstable": []
        });
        let page = render(&report);
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
    fn a_thousand_executions_of_forty_calls_stay_under_a_few_megabytes() {
        let index = |i: usize| serde_json::json!([["a", 1], [format!("{i:016x}"), 1]]);
        let calls: Vec<Value> = (0..40)
            .map(|i| {
                serde_json::json!({"execution_index": index(i), "parent": [["a", 1]],
                    "caller": "gateway", "callee": format!("service-{i}"), "protocol": "http",
                    "method": "GET", "target": format!("/api/v1/resource/{i}"),
                    "faults": [{"fault": {"kind": "timeout"}, "executions": (1..=25).collect::<Vec<_>>(), "tolerated": true}]})
            })
            .collect();
        let log: Vec<Value> = (1..=1000)
            .map(|n| {
                let made: Vec<Value> = (0..40)
                    .map(|i| serde_json::json!({"execution_index": index(i), "caller": "gateway",
                        "callee": format!("service-{i}"), "method": "GET", "target": "/", "protocol": "http",
                        "outcome": {"kind": "status", "detail": 200}, "connection": n}))
                    .collect();
                serde_json::json!({"number": n, "result": "passed", "seconds": 0.3, "held_seconds": 0.1,
                    "faults": [{"index": index(n % 40), "fault": {"kind": "timeout"},
                        "site": {"caller": "gateway", "callee": "x", "protocol": "http", "method": "GET", "target": "/"}}],
                    "calls": made})
            })
            .collect();
        let report = serde_json::json!({"result": "passed", "calls": calls, "execution_log": log,
            "failures": [], "executions": 1000});
        let page = render(&report);
        assert!(page.len() < 4 * 1024 * 1024, "{} bytes", page.len());
    }
}
