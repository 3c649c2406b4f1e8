//! The run as Markdown for a CI job's summary page (GitHub Actions'
//! `GITHUB_STEP_SUMMARY`): the verdict and counts, each failure with its
//! faults, diagnosis and replay command, and a Mermaid graph of the
//! services and their calls with the edges whose faults failed the test
//! marked.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{RunSummary, describe_faults, summary::DiscoveredCall};

pub fn render(run: &RunSummary, calls: &[DiscoveredCall]) -> String {
    let mut md = String::new();
    let verdict = match (run.error, run.failures.is_empty()) {
        (Some(_), _) => "⚠️ could not run",
        (None, true) => "✅ every execution passed",
        (None, false) => "❌ a fault combination fails the test",
    };
    let _ = writeln!(md, "## Filibuster: {verdict}\n");
    let _ = writeln!(
        md,
        "`{}`: {} execution(s) ({} search), {}, {:.1} s ({:.1} s holding calls for timeouts){}\n",
        run.config.display(),
        run.progress.executions,
        run.search.as_str(),
        super::describe_pruned(run),
        run.elapsed.as_secs_f64(),
        run.held.as_secs_f64(),
        match run.cells {
            0 | 1 => String::new(),
            n => format!(", {n} cells"),
        }
    );
    if let Some(error) = run.error {
        let _ = writeln!(md, "```\n{error}\n```\n");
    }
    for failure in run.failures {
        let finished = run.execution(failure.number);
        let _ = writeln!(
            md,
            "### Execution {}: {}\n",
            failure.number,
            describe_faults(&finished.faults)
        );
        if let Some(diagnosis) = &failure.diagnosis {
            let _ = writeln!(md, "{diagnosis}\n");
        }
        let _ = writeln!(md, "Replay:\n\n```sh\n{}\n```\n", failure.replay);
    }
    if !calls.is_empty() {
        let _ = writeln!(md, "```mermaid\n{}```", graph(calls));
    }
    md
}

/// Services as nodes, calls as edges (one per caller and callee), an edge
/// red where a fault on it failed the test.
fn graph(calls: &[DiscoveredCall]) -> String {
    let mut edges: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for call in calls {
        let failed = call.faults.iter().any(|f| !f.tolerated);
        *edges
            .entry((&call.site.caller, &call.site.callee))
            .or_default() |= failed;
    }
    // Mermaid ids: names may hold `:` and `.` (an outside host).
    let id = |name: &str| -> String {
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let mut graph = String::from("graph LR\n");
    for (index, ((caller, callee), failed)) in edges.iter().enumerate() {
        let _ = writeln!(
            graph,
            "  {}[\"{caller}\"] -->{} {}[\"{callee}\"]",
            id(caller),
            if *failed { "|fails the test|" } else { "" },
            id(callee)
        );
        if *failed {
            let _ = writeln!(graph, "  linkStyle {index} stroke:#d00,stroke-width:3px");
        }
    }
    graph
}
