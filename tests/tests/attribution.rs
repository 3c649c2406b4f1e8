//! Causality under concurrency: front serves two overlapping requests,
//! each calling leaf with the same signature. The W3C traceparent front
//! propagates ties each call to its own request; without it, and with
//! front's threads sharing pooled connections to leaf, the kernel's record
//! of which thread read which request and sent which call does. Either way
//! the execution indices are the same run after run and a fault planned on
//! one request's call fails that request, not the other. In the pooled
//! variant, front's pool keeps a connection the kernel observes directly
//! from one execution to the next: a fault planned on leaf lands only if
//! the agent destroys it first (checked: without that, this fails).

use filibuster_tests::{read_json, run_test, scratch, workspace};
use serde_json::Value;

/// (planned faults, every call's index) of each execution.
type Shape = Vec<(Value, Vec<Value>)>;

fn explore(name: &str, config: &str) -> Value {
    let dir = scratch(name);
    let config = workspace().join("examples/traced").join(config);
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

/// Every fault fails the request whose call it was planned on, and only
/// those requests fail.
fn assert_faults_land_on_their_requests(report: &Value) {
    for execution in report["execution_log"].as_array().expect("log") {
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
}

#[test]
fn overlapping_requests_keep_their_own_calls() {
    let first = explore("traced-1", "filibuster.toml");
    // No fault; a's leaf call; b's; both (b's call is new once a's failed).
    assert_eq!(first["executions"], 4, "{first}");
    assert_faults_land_on_their_requests(&first);
    let second = explore("traced-2", "filibuster.toml");
    assert_eq!(
        shape(&first),
        shape(&second),
        "the same executions, run after run"
    );
}

#[test]
fn without_traceparent_the_sending_thread_ties_calls_to_requests() {
    let first = explore("untraced-1", "untraced.toml");
    assert_eq!(first["executions"], 4, "{first}");
    assert_faults_land_on_their_requests(&first);
    let second = explore("untraced-2", "untraced.toml");
    assert_eq!(shape(&first), shape(&second));
    // The same executions as when front propagates traceparent.
    assert_eq!(
        shape(&first),
        shape(&explore("traced-3", "filibuster.toml"))
    );
}
