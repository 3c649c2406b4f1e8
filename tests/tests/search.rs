//! The guided search (the default) end to end, beside Filibuster's own:
//! the same bugs, fewer executions to the first, and retry and polling
//! loops that end.

use std::collections::BTreeSet;

use filibuster_tests::{assert_valid_report, read_json, replay, run_test, scratch, workspace};
use serde_json::Value;

fn config(example: &str) -> String {
    workspace()
        .join("examples")
        .join(example)
        .join("filibuster.toml")
        .display()
        .to_string()
}

/// Runs `example` with `args`, writing `report.json` in `dir`.
fn explore(dir: &std::path::Path, example: &str, args: &[&str]) -> (Option<i32>, Value) {
    let config = config(example);
    let output = run_test(
        dir,
        &[&["--config", &config, "--report-json", "report.json"], args].concat(),
    );
    let report = read_json(&dir.join("report.json"));
    (output.status.code(), report)
}

/// Each failing execution's faults, as the set of calls failed ("caller →
/// callee METHOD target"): the classes of failure a run found.
fn failure_classes(report: &Value) -> BTreeSet<Vec<String>> {
    report["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|failure| {
            let mut sites: Vec<String> = failure["faults"]
                .as_array()
                .expect("faults")
                .iter()
                .map(|fault| {
                    let site = &fault["site"];
                    format!(
                        "{} → {} {} {}",
                        site["caller"], site["callee"], site["method"], site["target"]
                    )
                })
                .collect();
            sites.sort();
            sites.dedup();
            sites
        })
        .collect()
}

#[test]
fn the_tutorials_bug_in_under_half_the_executions_and_replayed() {
    let dir = scratch("search-tutorial");
    let (code, filibusters) = explore(&dir, "tutorial", &["--search", "filibuster"]);
    assert_eq!(code, Some(1));
    let (code, guided) = explore(&dir, "tutorial", &["--search", "guided"]);
    assert_eq!(code, Some(1), "the guided search finds foo's bug too");
    assert_valid_report(&dir.join("report.json"));
    assert_eq!(guided["search"], "guided");
    let executions = |report: &Value| report["executions"].as_u64().expect("executions");
    // Filibuster's depth-first order reaches foo's refused call to bar
    // tenth; bugs first, third (the fault-free run, then connection errors
    // deepest first).
    assert_eq!((executions(&filibusters), executions(&guided)), (10, 3));
    let counterexample = read_json(&dir.join("counterexample.json"));
    assert_eq!(counterexample["faults"][0]["site"]["caller"], "foo");
    assert_eq!(counterexample["faults"][0]["site"]["callee"], "bar");
    assert_eq!(
        replay(&dir, &config("tutorial")).status.code(),
        Some(1),
        "the replay fails the same way"
    );
}

#[test]
fn with_keep_going_every_class_of_failure_the_exhaustive_search_finds() {
    // The tutorial (a refused call), and a timeout budget that only a
    // timeout shows: the guided search must not stand a cheaper fault in
    // for a timeout that does something else.
    for example in ["tutorial", "timeouts"] {
        let dir = scratch(&format!("search-keep-going-{example}"));
        let (_, exhaustive) = explore(
            &dir,
            example,
            &[
                "--keep-going",
                "--search",
                "filibuster",
                "--disable-dynamic-reduction",
            ],
        );
        let (_, guided) = explore(&dir, example, &["--keep-going", "--search", "guided"]);
        let expected = failure_classes(&exhaustive);
        assert!(!expected.is_empty(), "{example} has a bug");
        let found = failure_classes(&guided);
        for class in &expected {
            assert!(found.contains(class), "{example}: guided missed {class:?}");
        }
        assert!(
            guided["executions"].as_u64() <= exhaustive["executions"].as_u64(),
            "{example}"
        );
    }
}

#[test]
fn a_polling_loop_ends_and_the_bug_before_it_is_found() {
    let dir = scratch("search-polling");
    let (code, report) = explore(&dir, "polling", &["--search", "guided"]);
    assert_eq!(code, Some(1), "front's bug is found");
    let counterexample = read_json(&dir.join("counterexample.json"));
    let fault = &counterexample["faults"][0];
    assert_eq!(fault["site"]["method"], "POST", "{counterexample}");
    assert_eq!(fault["fault"]["kind"], "http-status");
    // Single faults first: the fault-free run, the connection errors,
    // then statuses, deepest call first.
    assert!(report["executions"].as_u64() < Some(20), "{report}");
    // The polls past the second were not faulted alone, and the report
    // says so.
    let groups = report["retry_groups"].as_array().expect("retry groups");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(
        groups[0]["site"]
            .as_str()
            .unwrap()
            .ends_with("GET /jobs/q3")
    );
    assert_eq!(groups[0]["combined"], 2);
    assert!(groups[0]["attempts"].as_u64() >= Some(3));

    // Everything, to the end: bounded, though each failed poll makes
    // another.
    let (code, everything) = explore(&dir, "polling", &["--search", "guided", "--keep-going"]);
    assert_eq!(code, Some(1));
    let executions = everything["executions"].as_u64().expect("executions");
    assert!(executions < 150, "{executions} executions");
    assert!(everything["pruned_by"]["equivalent_faults"].as_u64() > Some(0));
}
