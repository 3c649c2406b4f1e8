//! The run as Markdown for a CI job's summary page (GitHub Actions'
//! `GITHUB_STEP_SUMMARY`): the verdict and counts, each failure with its
//! faults, diagnosis and replay command, and a Mermaid graph of the
//! services and their calls with the edges whose faults failed the test
//! marked.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{RunReport, describe_faults, run::RunResult, summary::DiscoveredCall};

pub fn render(run: &RunReport) -> String {
    let mut md = String::new();
    let verdict = match run.result {
        RunResult::Error => "⚠️ could not run",
        RunResult::Passed => "✅ every execution passed",
        RunResult::Failed => "❌ a fault combination fails the test",
    };
    let _ = writeln!(md, "## Filibuster: {verdict}\n");
    let _ = writeln!(
        md,
        "`{}`: {} execution(s) ({} search), {}, {:.1} s ({:.1} s holding calls for timeouts){}\n",
        run.config.display(),
        run.executions,
        run.search.as_str(),
        run.describe_pruned(),
        run.elapsed_seconds,
        run.held_seconds,
        match run.cells {
            0 | 1 => String::new(),
            n => format!(", {n} cells"),
        }
    );
    if let Some(error) = &run.error {
        let _ = writeln!(md, "```\n{error}\n```\n");
    }
    for failure in &run.failures {
        let _ = writeln!(
            md,
            "### Execution {}: {}\n",
            failure.number,
            describe_faults(&failure.faults)
        );
        if let Some(diagnosis) = &failure.diagnosis {
            let _ = writeln!(md, "{diagnosis}\n");
        }
        let _ = writeln!(md, "Replay:\n\n```sh\n{}\n```\n", failure.replay);
    }
    if !run.calls.is_empty() {
        let _ = writeln!(md, "```mermaid\n{}```", graph(&run.calls));
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
