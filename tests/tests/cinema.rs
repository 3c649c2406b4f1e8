//! The seed's cinema topologies as real Flask services under the agent:
//! the execution counts through the kernel and the proxy must be exactly
//! the seed's (and the model tests' in `explore::models`).

use std::path::{Path, PathBuf};

use filibuster_tests::{config_variant, filibuster, read_json, run_test, scratch, workspace};
use serde_json::{Value, json};

fn example(name: &str) -> PathBuf {
    workspace().join("examples/cinema").join(name)
}

/// Runs the search with `config` from `dir`; returns its report after
/// checking that every execution passed and indices were stable.
fn explore_with(dir: &Path, config: &Path, flags: &[&str]) -> Value {
    let config = config.display().to_string();
    let mut args = vec!["--config", &config, "--report-json", "report.json"];
    args.extend(flags);
    let output = run_test(dir, &args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{config}: every execution passes"
    );
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["unstable"], json!([]), "{config}: stable indices");
    report
}

/// Explores `name`; returns (executions, pruned).
fn explore(name: &str, flags: &[&str]) -> (u64, u64) {
    let config = example(name).join("filibuster.toml");
    let report = explore_with(&scratch(name), &config, flags);
    (
        report["executions"].as_u64().expect("executions"),
        report["pruned"].as_u64().expect("pruned"),
    )
}

/// Whether some execution injected HTTP `code` on a call to `callee`.
fn injected_status(report: &Value, callee: &str, code: u64) -> bool {
    report["execution_log"]
        .as_array()
        .expect("log")
        .iter()
        .flat_map(|e| e["faults"].as_array().expect("faults"))
        .any(|f| f["site"]["callee"] == callee && f["fault"]["code"] == code)
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

#[test]
fn analysed_statuses_become_faults() {
    let dir = scratch("cinema-analysis");
    let analyze = filibuster()
        .args(["analyze", "--services-directory"])
        .arg(example("common"))
        .args(["--output-file", "analysis.json"])
        .current_dir(&dir)
        .output()
        .expect("filibuster analyze runs");
    assert!(analyze.status.success(), "{analyze:?}");
    let analysis = read_json(&dir.join("analysis.json"));
    assert_eq!(
        analysis["services"]["bookings"]["http_statuses"],
        json!([404])
    );
    assert_eq!(
        analysis["services"]["bookings_chained"]["http_statuses"],
        json!([404, 503])
    );
    // As the original tool reads an analysis: a connection error, a
    // timeout, 500 and the 404 found, not the generic 502 and 503. So
    // bookings and movies fail 4 ways each: 1 + 4 + 4 executions.
    let report = explore_with(
        &dir,
        &example("cinema-1").join("filibuster.toml"),
        &["--analysis-file", "analysis.json"],
    );
    assert_eq!(report["executions"], 9);
    assert!(injected_status(&report, "bookings", 404));
    assert!(!injected_status(&report, "bookings", 503));
}

#[test]
fn learned_statuses_become_faults_on_calls_found_later() {
    // Calls to bookings fail only by connection; bookings answers 503 by
    // itself when movies fails, which learning adds to the retry's faults.
    let dir = scratch("cinema-learn");
    let config = config_variant(
        &example("cinema-3"),
        "[[faults]]\nservice = \"bookings\"\nreplace = [\"connection-error\"]\n",
        &dir,
    );
    let flags = ["--disable-dynamic-reduction"];
    let plain = explore_with(&dir, &config, &flags);
    assert!(!injected_status(&plain, "bookings", 503));
    let learned = explore_with(
        &dir,
        &config,
        &["--disable-dynamic-reduction", "--learn-faults"],
    );
    assert!(injected_status(&learned, "bookings", 503));
    assert!(learned["executions"].as_u64() > plain["executions"].as_u64());
}
