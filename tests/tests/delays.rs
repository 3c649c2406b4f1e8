//! Delays: a call forwarded late, answered as its callee answers. Two
//! sequential calls that each fit their own timeout, slow together, take
//! longer than their caller's caller waits (examples/slow-dependencies):
//! found, replayed, and gone once the calls are made at once.

use filibuster_tests::{assert_valid_report, read_json, replay, run_test, scratch, workspace};
use serde_json::Value;

fn config(name: &str) -> String {
    workspace()
        .join("examples/slow-dependencies")
        .join(name)
        .display()
        .to_string()
}

/// The kinds and codes of an execution's faults: "delay 1600".
fn faults(execution: &Value) -> Vec<String> {
    execution["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["fault"]["kind"].as_str().unwrap(),
                f["fault"]["code"]
            )
        })
        .collect()
}

#[test]
fn two_slow_dependencies_in_sequence_are_found_replayed_and_fixed_by_asking_at_once() {
    let dir = scratch("delays");
    let output = run_test(
        &dir,
        &[
            "--config",
            &config("filibuster.toml"),
            "--report-json",
            "report.json",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "the shop's budget is overrun"
    );
    assert_valid_report(&dir.join("report.json"));
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["executions"], 4);
    let log = report["execution_log"].as_array().expect("log");
    for alone in &log[1..3] {
        assert_eq!(faults(alone), ["delay 1600"]);
        assert_eq!(alone["result"], "passed");
        // Forwarded late, then answered by the callee itself.
        let seconds = alone["seconds"].as_f64().unwrap();
        assert!(seconds >= 1.6, "{seconds} s");
        let delayed = alone["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["callee"] != "shop")
            .filter(|c| c["outcome"]["detail"] == 200);
        assert!(delayed.is_some(), "{alone}");
    }
    let failure = &report["failures"][0];
    assert_eq!(
        faults(failure),
        ["delay 1600", "delay 1600"],
        "both slow together"
    );
    assert_eq!(failure["test_result"], "failed (exit 1)");

    let replayed = replay(&dir, &config("filibuster.toml"));
    assert_eq!(
        replayed.status.code(),
        Some(1),
        "the replay fails the same way"
    );

    let fixed = run_test(
        &dir,
        &[
            "--config",
            &config("fixed.toml"),
            "--report-json",
            "fixed.json",
        ],
    );
    assert_eq!(fixed.status.code(), Some(0));
    assert_eq!(read_json(&dir.join("fixed.json"))["executions"], 4);

    // The guided search finds it too.
    let guided = run_test(
        &dir,
        &["--config", &config("filibuster.toml"), "--search", "guided"],
    );
    assert_eq!(guided.status.code(), Some(1));
}
