//! Tests as people write them (`examples/cart`): the test logs in, opens a
//! cart and fills it before the request it checks, and the cart's ids come
//! from a counter in memory. `[test] scope` says what is under test,
//! `[test] reset` puts the counter back before every execution.

use std::path::{Path, PathBuf};

use filibuster_tests::{read_json, replay, run_test, scratch, workspace};
use serde_json::Value;

fn example() -> PathBuf {
    workspace().join("examples/cart")
}

/// The example's config `name` in `dir`, its commands run in the
/// example's directory, with `edit` applied to its text.
fn variant_of(name: &str, dir: &Path, edit: impl Fn(String) -> String) -> String {
    let cd = format!("cd '{}' && ", example().display());
    let text = std::fs::read_to_string(example().join(name))
        .unwrap()
        .replace("command = \"", &format!("command = \"{cd}"))
        .replace("reset = \"", &format!("reset = \"{cd}"))
        .replace(
            "pytest = \"",
            &format!("loop = true\ncommand = \"{cd}python3 -m pytest -q -p no:cacheprovider "),
        );
    let path = dir.join("filibuster.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path.display().to_string()
}

fn variant(dir: &Path, edit: impl Fn(String) -> String) -> String {
    variant_of("filibuster.toml", dir, edit)
}

fn without(line: &str) -> impl Fn(String) -> String + '_ {
    move |text| {
        text.lines()
            .filter(|l| !l.starts_with(line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn calls(report: &Value) -> &Vec<Value> {
    report["calls"].as_array().expect("calls")
}

#[test]
fn only_the_checkout_is_under_test_and_its_bug_is_found() {
    let dir = scratch("scope-checkout");
    let report = assert_only_the_checkout_is_failed(&dir, &variant(&dir, |text| text));
    assert_eq!(report["scope"], serde_json::json!(["POST /checkout/*"]));
}

#[test]
fn setup_marked_in_the_test_itself_is_not_under_test_either() {
    let dir = scratch("scope-marked");
    let report = assert_only_the_checkout_is_failed(&dir, &variant_of("marked.toml", &dir, |t| t));
    assert_eq!(report["scope"], serde_json::json!([]));
}

#[test]
fn a_pytest_fixture_marked_as_setup_is_not_under_test() {
    let dir = scratch("scope-pytest");
    let report = assert_only_the_checkout_is_failed(&dir, &variant_of("pytest.toml", &dir, |t| t));
    assert_eq!(report["scope"], serde_json::json!([]));
}

/// Runs `config`: the payment bug is found and replays, what the test
/// does before the checkout is setup, never failed. Returns the report.
fn assert_only_the_checkout_is_failed(dir: &Path, config: &str) -> Value {
    let output = run_test(dir, &["--config", config, "--report-json", "report.json"]);
    assert_eq!(output.status.code(), Some(1), "the payment bug is found");
    let counterexample = read_json(&dir.join("counterexample.json"));
    let fault = &counterexample["faults"][0];
    assert_eq!(fault["site"]["caller"], "cart");
    assert_eq!(fault["site"]["callee"], "payment");
    // A payment unreachable or too slow: both raise in the checkout.
    assert!(
        ["connection-refused", "timeout"].contains(&fault["fault"]["kind"].as_str().unwrap()),
        "{fault}"
    );
    assert_eq!(replay(dir, config).status.code(), Some(1), "it replays");

    let report = read_json(&dir.join("report.json"));
    // The cart is c1 in every execution: stable indices.
    assert_eq!(report["unstable"], serde_json::json!([]));
    // Logging in, opening and filling the cart: shown as setup, never
    // failed; only what the checkout calls is.
    let setup: Vec<String> = calls(&report)
        .iter()
        .filter(|c| c["setup"] == true)
        .map(|c| {
            format!(
                "{} → {} {} {}",
                c["caller"], c["callee"], c["method"], c["target"]
            )
        })
        .collect();
    assert_eq!(setup.len(), 6, "{setup:?}");
    for call in calls(&report) {
        if call["setup"] == true {
            assert_eq!(call["faults"], serde_json::json!([]), "{call}");
        }
    }
    for execution in report["execution_log"].as_array().unwrap() {
        for planned in execution["faults"].as_array().unwrap() {
            let site = &planned["site"];
            let under_checkout = (site["callee"] == "payment")
                || (site["callee"] == "auth" && site["target"] == "/verify");
            assert!(under_checkout, "a fault outside the checkout: {planned}");
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(setup, not under test)"), "{stderr}");
    report
}

#[test]
fn without_scope_a_failure_in_the_setup_is_named_as_such() {
    let dir = scratch("scope-none");
    let config = variant(&dir, without("scope ="));
    let output = run_test(
        &dir,
        &[
            "--config",
            &config,
            "--keep-going",
            "--max-faults",
            "1",
            "--report-json",
            "report.json",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let report = read_json(&dir.join("report.json"));
    let requests: Vec<&Value> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["faulted_requests"])
        .collect();
    // auth failing while the cart is opened fails the test's setup; the
    // checkout's own bug is there too.
    assert!(
        requests.contains(&&serde_json::json!(["POST /carts"])),
        "{requests:?}"
    );
    assert!(
        requests.contains(&&serde_json::json!(["POST /checkout/c1"])),
        "{requests:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "were injected while the test's request POST /carts was served, not its last (POST /checkout/c1): if that is setup, not what the test checks, say what is with [test] scope = [\"POST /checkout/c1\"]"
        ),
        "{stderr}"
    );
}

#[test]
fn without_reset_the_changing_cart_id_is_named() {
    let dir = scratch("scope-no-reset");
    let config = variant(&dir, without("reset ="));
    let output = run_test(&dir, &["--config", &config, "--report-json", "report.json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Each execution checks out another cart: the faults planned on c1's
    // checkout meet no call there (only a refusal, armed on the connect,
    // still lands), and the run says why.
    assert!(
        stderr.contains("POST /checkout/c1 became /checkout/c2 (`c1` → `c2`)"),
        "{stderr}"
    );
    assert!(stderr.contains("[test] reset"), "{stderr}");
    let report = read_json(&dir.join("report.json"));
    let changed = &report["unstable"][0]["changed"];
    assert!(
        changed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "POST /checkout/c1 became /checkout/c2 (`c1` → `c2`)"),
        "{changed}"
    );
}

#[test]
fn a_reset_that_fails_is_a_setup_error() {
    let dir = scratch("scope-bad-reset");
    let config = variant(&dir, |text| {
        text.replace(
            "python3 functional/reset.py",
            "echo no database here >&2; exit 3",
        )
    });
    let output = run_test(&dir, &["--config", &config]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[test] reset"), "{stderr}");
    assert!(
        stderr.contains("failed (exit 3): no database here"),
        "{stderr}"
    );
}

#[test]
fn restarting_the_cart_before_every_execution_puts_its_counter_back_too() {
    let dir = scratch("scope-restart");
    let config = variant(&dir, |text| {
        without("reset =")(text)
            .replace("port = 5401", "port = 5401\nrestart = \"every-execution\"")
    });
    let output = run_test(&dir, &["--config", &config, "--report-json", "report.json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the payment bug is found: {stderr}"
    );
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["unstable"], serde_json::json!([]));
    assert_eq!(replay(&dir, &config).status.code(), Some(1), "it replays");
}
