//! The seed's cinema topologies as real Flask services under the agent:
//! the execution counts through the kernel and the proxy must be exactly
//! the seed's (and the model tests' in `explore::models`).

use filibuster_tests::{read_json, run_test, scratch, workspace};

/// Explores `example`; returns (executions, pruned) after checking that
/// every execution passed and indices were stable.
fn explore(example: &str, flags: &[&str]) -> (u64, u64) {
    let dir = scratch(example);
    let config = workspace()
        .join("examples/cinema")
        .join(example)
        .join("filibuster.toml");
    let config = config.display().to_string();
    let mut args = vec!["--config", &config, "--report-json", "report.json"];
    args.extend(flags);
    let output = run_test(&dir, &args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{example} passes every execution"
    );
    let report = read_json(&dir.join("report.json"));
    assert_eq!(
        report["unstable"],
        serde_json::json!([]),
        "{example}: stable indices"
    );
    (
        report["executions"].as_u64().expect("executions"),
        report["pruned"].as_u64().expect("pruned"),
    )
}

#[test]
fn cinema_1_sequence() {
    assert_eq!(explore("cinema-1", &[]), (10, 0));
}

#[test]
fn cinema_2_chain_and_its_reduction() {
    assert_eq!(
        explore("cinema-2", &["--disable-dynamic-reduction"]),
        (10, 0)
    );
    assert_eq!(explore("cinema-2", &[]), (9, 1));
}

#[test]
fn cinema_3_retry_loop() {
    assert_eq!(explore("cinema-3", &["--disable-dynamic-reduction"]).0, 91);
    assert_eq!(explore("cinema-3", &[]).0, 37);
}

#[test]
fn cinema_5_default_responses() {
    assert_eq!(explore("cinema-5", &[]), (25, 0));
}

#[test]
fn cinema_6_fallback() {
    assert_eq!(explore("cinema-6", &[]), (41, 0));
}
