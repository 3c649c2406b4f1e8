//! HTTP/2, gRPC, pooled HTTP/1.1 and TCP pass-through end to end: the gRPC
//! shop (Python grpcio) and the polyglot app (Rust hyper, Node.js
//! @grpc/grpc-js, Python grpcio, Redis), each with a seeded bug found and
//! a fixed variant explored in the count its model predicts
//! (`explore::models`).

use std::path::{Path, PathBuf};

use filibuster_tests::{config_variant, read_json, replay, run_test, scratch, workspace};
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    workspace().join("examples").join(name)
}

fn config(example_name: &str, file: &str) -> String {
    example(example_name).join(file).display().to_string()
}

/// Runs `filibuster test` in a fresh directory; returns the directory, the
/// exit code and the JSON report.
fn explore(scratch_name: &str, config: &str, flags: &[&str]) -> (PathBuf, Option<i32>, Value) {
    let dir = scratch(scratch_name);
    let mut args = vec!["--config", config, "--report-json", "report.json"];
    args.extend(flags);
    let output = run_test(&dir, &args);
    let report = read_json(&dir.join("report.json"));
    (dir, output.status.code(), report)
}

fn executions(report: &Value) -> &Vec<Value> {
    report["execution_log"].as_array().expect("execution log")
}

fn calls<'a>(execution: &'a Value, caller: &str, callee: &str) -> Vec<&'a Value> {
    execution["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter(|c| c["caller"] == caller && c["callee"] == callee)
        .collect()
}

/// Runs `filibuster test` on the polyglot example with cart's bug fixed and
/// `extra` appended to its config (the last section is redis's), writing
/// report.json in a fresh directory; returns the directory and the run.
fn run_fixed_polyglot(scratch_name: &str, extra: &str) -> (PathBuf, std::process::Output) {
    let dir = scratch(scratch_name);
    let variant = config_variant(&example("polyglot"), extra, &dir);
    let text = std::fs::read_to_string(&variant).expect("variant");
    std::fs::write(&variant, text.replace("server.js buggy", "server.js")).expect("fixed");
    let config = variant.display().to_string();
    let output = run_test(&dir, &["--config", &config, "--report-json", "report.json"]);
    (dir, output)
}

/// Runs the counterexample the search wrote in `dir`; it must fail again.
fn replays(dir: &Path, config: &str) {
    let replayed = replay(dir, config);
    assert_eq!(
        replayed.status.code(),
        Some(1),
        "the replay fails the same way"
    );
    assert!(String::from_utf8_lossy(&replayed.stderr).contains("counterexample reproduced"));
}

#[test]
fn grpc_shop_bug_found_on_one_stream_and_replayed() {
    let buggy = config("grpc", "filibuster.toml");
    let (dir, code, report) = explore("grpc-bug", &buggy, &[]);
    assert_eq!(
        code,
        Some(1),
        "frontend's unhandled Trending failure is found"
    );
    let failure = &report["failures"][0];
    let faults = failure["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{failure}");
    assert_eq!(
        faults[0]["site"]["target"],
        "/shop.Recommendations/Trending"
    );
    assert_eq!(faults[0]["site"]["protocol"], "grpc");
    let test_call = &failure["calls"][0];
    assert_eq!(test_call["outcome"]["kind"], "grpc");
    assert_eq!(test_call["outcome"]["detail"], 2, "frontend failed UNKNOWN");
    replays(&dir, &buggy);
}

#[test]
fn grpc_shop_fixed_explores_as_modelled_one_stream_failing_at_a_time() {
    let (_, code, report) = explore("grpc-fixed", &config("grpc", "fixed.toml"), &[]);
    assert_eq!(code, Some(0), "every combination passes");
    assert_eq!(
        (report["executions"].as_u64(), report["pruned"].as_u64()),
        (Some(22), Some(18))
    );
    assert_eq!(report["unstable"], Value::Array(Vec::new()));
    // Most calls are read off direct connections the kernel observes: each
    // service's channel keeps one connection, the first through the proxy
    // (which learns that the destination speaks h2c) and closed by it
    // (GOAWAY) once no fault needs it, the next direct; a fault planned on
    // a pair destroys its observed one, and the channel reconnects at once.
    let calls_made: usize = executions(&report)
        .iter()
        .map(|e| e["calls"].as_array().map_or(0, Vec::len))
        .sum();
    let observed = report["agent"]["observed_calls"].as_u64().expect("counted");
    assert!(
        observed as usize * 2 > calls_made,
        "{observed} of {calls_made} calls read off direct connections"
    );

    // ForYou fails with UNAVAILABLE; Trending, next on the same HTTP/2
    // connection, succeeds.
    let survived = executions(&report).iter().any(|execution| {
        let recommendations = calls(execution, "frontend", "recommendations");
        let [for_you, trending] = recommendations.as_slice() else {
            return false;
        };
        for_you["outcome"]["detail"]["kind"] == "grpc-status"
            && for_you["outcome"]["detail"]["code"] == 14
            && trending["outcome"]["kind"] == "grpc"
            && trending["outcome"]["detail"] == 0
            && for_you["connection"] == trending["connection"]
    });
    assert!(survived, "a failed stream leaves its connection serving");
}

#[test]
fn polyglot_bug_found_through_redis_and_replayed() {
    let buggy = config("polyglot", "filibuster.toml");
    let (dir, code, report) = explore("polyglot-bug", &buggy, &[]);
    assert_eq!(code, Some(1), "cart's 200 without items is found");
    let failure = &report["failures"][0];
    let faults = failure["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{failure}");
    assert_eq!(faults[0]["site"]["callee"], "redis");
    assert_eq!(faults[0]["site"]["protocol"], "tcp");
    assert_eq!(faults[0]["fault"]["kind"], "connection-refused");
    replays(&dir, &buggy);
}

#[test]
fn polyglot_fixed_explores_as_modelled() {
    let (_, code, report) = explore("polyglot-fixed", &config("polyglot", "fixed.toml"), &[]);
    assert_eq!(code, Some(0), "every combination passes");
    assert_eq!(
        (report["executions"].as_u64(), report["pruned"].as_u64()),
        (Some(15), Some(4))
    );
    // Redis works untouched through the proxy when not failed.
    let first = &executions(&report)[0];
    assert_eq!(
        calls(first, "inventory", "redis")[0]["outcome"]["kind"],
        "connected"
    );
    assert_eq!(calls(first, "test", "gateway")[0]["outcome"]["detail"], 200);
}

#[test]
fn pooled_http1_connection_reset_then_next_request_succeeds() {
    // Only connection errors on gateway's calls to cart.
    let (dir, output) = run_fixed_polyglot(
        "polyglot-pooled",
        r#"
[[faults]]
service = "cart"
replace = ["connection-error"]

[[faults]]
service = "{inventory,redis}"
replace = []
"#,
    );
    assert_eq!(output.status.code(), Some(0));
    let report = read_json(&dir.join("report.json"));
    let log = executions(&report);
    // No fault; the first call failed, then retried; both failed.
    assert_eq!(log.len(), 3, "{report}");
    let pooled = calls(&log[0], "gateway", "cart")[0]["connection"].clone();
    let [reset, retried] = calls(&log[1], "gateway", "cart")[..] else {
        panic!("gateway calls cart twice: {}", log[1]);
    };
    assert_eq!(
        reset["connection"], pooled,
        "the pooled connection was reused"
    );
    assert_eq!(reset["outcome"]["detail"]["kind"], "connection-reset");
    assert_ne!(
        retried["connection"], pooled,
        "the retry opened a connection"
    );
    assert_eq!(retried["outcome"]["detail"], 200);
    assert_eq!(
        calls(&log[1], "test", "gateway")[0]["outcome"]["detail"],
        200
    );
}

#[test]
fn declared_tcp_service_is_connected_to_directly_and_its_faults_still_land() {
    // Redis declared opaque, its connects reported by the kernel; only
    // Redis is failed, by refusal (in the kernel) and by timeout (which
    // needs the proxy to hold the connection).
    let (dir, output) = run_fixed_polyglot(
        "polyglot-direct",
        r#"protocol = "tcp"

[[faults]]
service = "redis"
add = ["timeout"]

[[faults]]
service = "{cart,inventory}"
replace = []
"#,
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = read_json(&dir.join("report.json"));
    let log = executions(&report);
    let fault_of = |execution: &Value| {
        let faults = execution["faults"].as_array().expect("faults");
        faults
            .iter()
            .map(|f| f["fault"]["kind"].as_str().expect("kind").to_string())
            .collect::<Vec<_>>()
    };
    let planned: Vec<Vec<String>> = log.iter().map(fault_of).collect();
    assert_eq!(
        planned,
        [
            vec![],
            vec!["timeout".to_string()],
            vec!["connection-refused".to_string()]
        ],
        "{report}"
    );
    // Unfailed, the direct connect is the call, answered.
    let direct = calls(&log[0], "inventory", "redis");
    assert_eq!(direct.len(), 1, "{}", log[0]);
    assert_eq!(direct[0]["outcome"]["kind"], "connected");
    assert_eq!(direct[0]["protocol"], "tcp");
    // The timeout needed the proxy, which held the connection until
    // inventory's socket timeout gave up; the refusal happened in the
    // kernel, which held nothing.
    assert!(
        log[1]["held_seconds"].as_f64().expect("held") > 0.0,
        "{}",
        log[1]
    );
    assert_eq!(log[2]["held_seconds"].as_f64(), Some(0.0));
    let refused = calls(&log[2], "inventory", "redis");
    assert_eq!(
        refused[0]["outcome"]["detail"]["kind"],
        "connection-refused"
    );
}

#[test]
fn a_response_with_many_headers_goes_through_the_proxy_as_it_goes_direct() {
    // The test's first call to the service is proxied (its protocol is not
    // known yet); an answer with 150 headers is more than hyper reads by
    // default, which would fail the call only because the agent is there.
    let dir = scratch("many-headers");
    let service = "from flask import Flask\n\
                   app = Flask(__name__)\n\
                   @app.route('/many')\n\
                   def many():\n    \
                   return 'ok', 200, {f'x-header-{i}': 'v' for i in range(150)}\n\
                   app.run(port=5000)\n";
    // A raw client: Python's own refuses more than 100 headers.
    let test = "import socket, sys\n\
                s = socket.create_connection(('127.0.0.1', 5000), timeout=5)\n\
                s.sendall(b'GET /many HTTP/1.1\\r\\nHost: many\\r\\nConnection: close\\r\\n\\r\\n')\n\
                answer = b''\n\
                while chunk := s.recv(65536):\n    answer += chunk\n\
                sys.exit(0 if answer.startswith(b'HTTP/1.1 200') else answer[:200])\n";
    std::fs::write(dir.join("many.py"), service).unwrap();
    std::fs::write(dir.join("test_many.py"), test).unwrap();
    std::fs::write(
        dir.join("filibuster.toml"),
        "[test]\ncommand = \"python3 test_many.py\"\n[services.many]\ncommand = \"python3 many.py\"\nport = 5000\n",
    )
    .unwrap();
    let output = run_test(
        &dir,
        &[
            "--config",
            "filibuster.toml",
            "--report-json",
            "report.json",
        ],
    );
    let report = read_json(&dir.join("report.json"));
    assert_eq!(output.status.code(), Some(0), "{}", report["error"]);
    let first = &executions(&report)[0];
    assert_eq!(calls(first, "test", "many")[0]["outcome"]["detail"], 200);
}
