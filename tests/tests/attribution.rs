//! Causality under concurrency: front serves two overlapping requests,
//! each calling leaf with the same signature. The W3C traceparent front
//! propagates ties each call to its own request, so the execution indices
//! are the same run after run and a fault planned on one request's call
//! fails that request, not the other.

use filibuster_tests::{read_json, run_test, scratch, workspace};
use serde_json::Value;

/// (planned faults, every call's index) of each execution.
type Shape = Vec<(Value, Vec<Value>)>;

fn explore(name: &str) -> Value {
    let dir = scratch(name);
    let config = workspace().join("examples/traced/filibuster.toml");
    let output = run_test(
        &dir,
        &[
            "--config",
            &config.display().to_string(),
            "--disable-dynamic-reduction",
            "--report-json",
            "report.json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "every execution passes");
    read_json(&dir.join("report.json"))
}

fn shape(report: &Value) -> Shape {
    let log = report["execution_log"].as_array().expect("log");
    log.iter()
        .map(|execution| {
            let mut indices: Vec<Value> = execution["calls"]
                .as_array()
                .expect("calls")
                .iter()
                .map(|c| c["execution_index"].clone())
                .collect();
            indices.sort_by_key(Value::to_string);
            (execution["faults"].clone(), indices)
        })
        .collect()
}

#[test]
fn overlapping_requests_keep_their_own_calls() {
    let first = explore("traced-1");
    // No fault; a's leaf call; b's; both (b's call is new once a's failed).
    assert_eq!(first["executions"], 4, "{first}");
    for execution in first["execution_log"].as_array().expect("log") {
        let calls = execution["calls"].as_array().expect("calls");
        for fault in execution["faults"].as_array().expect("faults") {
            let index = fault["index"].as_array().expect("index");
            let owner = calls
                .iter()
                .filter(|c| c["caller"] == "test")
                .find(|c| index.starts_with(c["execution_index"].as_array().expect("index")))
                .expect("the faulted call has a test request as ancestor");
            assert_eq!(
                owner["outcome"]["detail"], 503,
                "the request whose call was failed answers 503: {execution}"
            );
        }
        let failed_requests = calls
            .iter()
            .filter(|c| c["caller"] == "test" && c["outcome"]["detail"] == 503)
            .count();
        assert_eq!(
            failed_requests,
            execution["faults"].as_array().expect("faults").len(),
            "only requests with a failed call fail: {execution}"
        );
    }
    let second = explore("traced-2");
    assert_eq!(
        shape(&first),
        shape(&second),
        "the same executions, run after run"
    );
}
