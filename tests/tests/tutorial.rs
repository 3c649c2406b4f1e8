//! The tutorial end to end: three unmodified Flask services, the real
//! kernel programs and proxy, the original tool's functional test.

use filibuster_tests::{
    assert_valid_report, filibuster, leftover_cgroups, our_programs_loaded, read_json, replay,
    run_test, scratch, workspace,
};

fn config(name: &str) -> String {
    workspace()
        .join("examples/tutorial")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn finds_foos_missing_handler_and_replays_it() {
    let dir = scratch("tutorial-bug");
    // As a GitHub Actions job runs it, with a summary page to append to.
    let output = filibuster()
        .arg("test")
        .args([
            "--config",
            &config("filibuster.toml"),
            "--report-json",
            "report.json",
            "--junit",
            "junit.xml",
            "--cells",
            "1",
            "--search",
            "filibuster",
        ])
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .current_dir(&dir)
        .output()
        .expect("filibuster runs");
    assert_eq!(output.status.code(), Some(1), "the bug must be found");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("foo → bar GET /bar/baz  [connection refused ✗, timeout ✓"),
        "the summary shows the faults tried per call"
    );

    let counterexample = read_json(&dir.join("counterexample.json"));
    let faults = counterexample["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{counterexample}");
    assert_eq!(faults[0]["site"]["caller"], "foo");
    assert_eq!(faults[0]["site"]["callee"], "bar");
    assert_eq!(faults[0]["fault"]["kind"], "connection-refused");

    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["result"], "failed");
    // As in the tutorial: the bug shows in the 11th scheduled execution, one pruned.
    assert_eq!(report["executions"], 10);
    assert_eq!(report["pruned"], 1);
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["counterexample"], "counterexample.json");
    assert_eq!(report["execution_log"].as_array().map(Vec::len), Some(10));
    let discovered = report["calls"].as_array().expect("calls discovered");
    let foo_bar = discovered
        .iter()
        .find(|c| c["callee"] == "bar")
        .expect("foo → bar discovered");
    assert_eq!(foo_bar["faults"][0]["fault"]["kind"], "connection-refused");
    assert_eq!(foo_bar["faults"][0]["tolerated"], false);

    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("JUnit written");
    assert_eq!(junit.matches("<testcase ").count(), 10, "{junit}");
    assert_eq!(junit.matches("<failure ").count(), 1, "{junit}");
    // Named by the combination, which stays put from run to run.
    assert!(
        junit.contains("name=\"foo → bar GET /bar/baz: connection refused\""),
        "{junit}"
    );
    assert!(junit.contains("name=\"no fault injected\""), "{junit}");
    assert!(!junit.contains("execution 10"), "{junit}");

    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("CI summary");
    assert!(
        summary.contains("a fault combination fails the test"),
        "{summary}"
    );
    assert!(
        summary.contains("### Execution 10: foo → bar GET /bar/baz: connection refused"),
        "{summary}"
    );
    assert!(
        summary.contains("--counterexample-file counterexample.json"),
        "{summary}"
    );
    assert!(summary.contains("```mermaid\ngraph LR"), "{summary}");
    assert!(
        summary.contains("foo[\"foo\"] -->|fails the test| bar[\"bar\"]"),
        "{summary}"
    );
    assert_valid_report(&dir.join("report.json"));
    assert_eq!(report["schema_version"], 2);
    assert!(report["tool"].as_str().unwrap().starts_with("filibuster "));
    assert!(report["started_at"].as_str().unwrap().ends_with('Z'));

    let calls = failures[0]["calls"].as_array().expect("calls");
    let test_call = calls
        .iter()
        .find(|c| c["caller"] == "test")
        .expect("the test's call to foo");
    assert_eq!(
        test_call["outcome"]["detail"], 500,
        "foo answered 500: {test_call}"
    );

    let replayed = replay(&dir, &config("filibuster.toml"));
    assert_eq!(
        replayed.status.code(),
        Some(1),
        "the replay must fail the same way"
    );
    assert!(String::from_utf8_lossy(&replayed.stderr).contains("counterexample reproduced"));

    let fixed = replay(&dir, &config("fixed.toml"));
    assert_eq!(
        fixed.status.code(),
        Some(0),
        "the fix must pass the counterexample"
    );
    assert!(
        leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        leftover_cgroups()
    );
}

#[test]
fn the_fixed_tutorial_passes_every_execution() {
    let dir = scratch("tutorial-fixed");
    let output = run_test(
        &dir,
        &[
            "--config",
            &config("fixed.toml"),
            "--disable-dynamic-reduction",
            "--report-json",
            "full.json",
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    // 1 fault-free + 5 faults on foo → bar + 5 on bar → baz, as the tutorial counts.
    let full = read_json(&dir.join("full.json"));
    assert_eq!(
        (full["result"].as_str(), full["executions"].as_u64()),
        (Some("passed"), Some(11))
    );
    // Each destination's first connection taught the agent it speaks
    // HTTP/1.1; from then on the kernel read the calls off direct
    // connections, except for the pairs an execution planned a fault on.
    let calls: usize = full["execution_log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|execution| execution["calls"].as_array().expect("calls").len())
        .sum();
    let observed = full["agent"]["observed_calls"].as_u64().expect("counted");
    assert!(
        observed as usize * 3 > calls,
        "{observed} of {calls} calls read off direct connections"
    );

    let output = run_test(
        &dir,
        &[
            "--config",
            &config("fixed.toml"),
            "--report-json",
            "reduced.json",
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    let reduced = read_json(&dir.join("reduced.json"));
    assert_eq!(
        (reduced["executions"].as_u64(), reduced["pruned"].as_u64()),
        (Some(10), Some(1))
    );
    assert!(!dir.join("counterexample.json").exists());
}

#[test]
fn bad_input_ends_with_a_one_line_error_and_exit_2() {
    let dir = scratch("bad-input");
    std::fs::write(
        dir.join("typo.toml"),
        "[services.foo]\ncommand = \"true\"\nport = \"x\"\n",
    )
    .unwrap();
    let output = run_test(&dir, &["--config", "typo.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("typo.toml: line 3:"), "{stderr}");

    std::fs::write(
        dir.join("analysis.json"),
        "{\"services\": {\n  \"bar\": {\"http_statuses\": [\"503\"]}\n}}\n",
    )
    .unwrap();
    let output = run_test(
        &dir,
        &[
            "--config",
            &config("fixed.toml"),
            "--analysis-file",
            "analysis.json",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("analysis.json: line 2: invalid type: string \"503\", expected u16"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let output = run_test(
        &dir,
        &[
            "--config",
            &config("fixed.toml"),
            "--functional-test",
            "false",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fails with no fault injected"), "{stderr}");

    std::fs::write(
        dir.join("exits.toml"),
        "[test]\ncommand = \"true\"\n[services.quitter]\ncommand = \"exit 3\"\nport = 5999\n",
    )
    .unwrap();
    let output = run_test(&dir, &["--config", "exits.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("service `quitter` exited"), "{stderr}");
    assert!(
        leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        leftover_cgroups()
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:5998").unwrap();
    std::fs::write(
        dir.join("busy.toml"),
        "[test]\ncommand = \"true\"\n[services.web]\ncommand = \"sleep 10\"\nport = 5998\n",
    )
    .unwrap();
    let output = run_test(&dir, &["--config", "busy.toml"]);
    drop(busy);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("port 5998 of service `web` is already in use")
    );
}

/// The same search, whether the test starts once per execution, loops in
/// one process (`--test-loop`), or runs under the pytest plugin.
#[test]
fn loop_modes_explore_exactly_as_per_process_mode() {
    let explore = |name: &str, config_file: &str, flags: &[&str]| {
        let dir = scratch(name);
        let config = config(config_file);
        let mut args = vec!["--config", &config, "--report-json", "report.json"];
        args.extend(flags);
        let output = run_test(&dir, &args);
        assert_eq!(output.status.code(), Some(1), "{name} finds the bug");
        let report = read_json(&dir.join("report.json"));
        let faults: Vec<_> = report["execution_log"]
            .as_array()
            .expect("execution log")
            .iter()
            .map(|e| e["faults"].clone())
            .collect();
        (
            faults,
            read_json(&dir.join("counterexample.json"))["faults"].clone(),
        )
    };
    let per_process = explore("modes-per-process", "filibuster.toml", &[]);
    assert_eq!(per_process.0.len(), 10);
    assert_eq!(
        explore("modes-loop", "filibuster.toml", &["--test-loop"]),
        per_process
    );
    assert_eq!(explore("modes-pytest", "pytest.toml", &[]), per_process);
}

/// With `--keep-going`, every failing combination is reported, each with
/// its own counterexample.
#[test]
fn keep_going_reports_every_failing_combination() {
    let dir = scratch("keep-going");
    // A test that tolerates nothing: every injected fault fails it.
    let strict = "python3 -c 'import requests; r = requests.get(\"http://localhost:5000/foo/bar/baz\", timeout=5); assert r.status_code == 200, r.status_code'";
    let output = run_test(
        &dir,
        &[
            "--config",
            &config("fixed.toml"),
            "--functional-test",
            strict,
            "--keep-going",
            "--report-json",
            "report.json",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let report = read_json(&dir.join("report.json"));
    let executions = report["executions"].as_u64().expect("executions");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(
        failures.len() as u64,
        executions - 1,
        "all but the fault-free one"
    );
    let mut combinations: Vec<String> = failures.iter().map(|f| f["faults"].to_string()).collect();
    combinations.sort();
    combinations.dedup();
    assert_eq!(combinations.len(), failures.len(), "each combination once");
    for failure in failures {
        let path = failure["counterexample"]
            .as_str()
            .expect("a counterexample");
        let written = read_json(&dir.join(path));
        let sites = |faults: &serde_json::Value| -> Vec<serde_json::Value> {
            let faults = faults.as_array().expect("faults");
            faults.iter().map(|f| f["site"].clone()).collect()
        };
        assert_eq!(sites(&written["faults"]), sites(&failure["faults"]));
    }
}

/// A looping test process that dies mid-loop fails that execution and is
/// restarted; one that never speaks the protocol, or hangs, ends the run
/// with a one-line reason.
#[test]
fn a_looping_test_that_dies_or_hangs_never_leaves_the_agent_waiting() {
    let dir = scratch("loop-failures");
    let script = dir.join("flaky_loop.py");
    std::fs::write(
        &script,
        "import os, sys, time\nimport requests\nimport filibuster\nfor n in filibuster.executions():\n    requests.get(\"http://localhost:5000/foo/bar/baz\", timeout=5)\n    if n == 3 and sys.argv[1] == 'die':\n        os._exit(4)\n    if n == 3 and sys.argv[1] == 'hang':\n        time.sleep(60)\n    filibuster.report(n, True)\n",
    )
    .unwrap();
    let config = config("fixed.toml");
    let run = |how: &str, flags: &[&str]| {
        let command = format!("python3 {} {how}", script.display());
        let mut args = vec![
            "--config",
            &config,
            "--test-loop",
            "--functional-test",
            &command,
            "--report-json",
            "report.json",
        ];
        args.extend(flags);
        run_test(&dir, &args)
    };

    let died = run("die", &["--keep-going"]);
    assert_eq!(died.status.code(), Some(1));
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["executions"], 10, "restarted after execution 3");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["number"], 3);
    assert_eq!(
        failures[0]["test_result"],
        "failed (the test process exited: exit 4)"
    );

    // A hang under faults is a failure found (the setup's only without).
    let hung = run("hang", &["--execution-timeout", "3"]);
    assert_eq!(hung.status.code(), Some(1));
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["failures"][0]["number"], 3);
    assert_eq!(report["failures"][0]["test_result"], "failed (timed out)");
    assert_eq!(report["failures"][0]["diagnosis"]["kind"], "hang");

    let output = run_test(
        &dir,
        &[
            "--config",
            &config,
            "--test-loop",
            "--functional-test",
            "echo not looping; exit 3",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("exited (exit 3) before asking for execution 1"),
        "{stderr}"
    );
    assert!(stderr.contains("not looping"), "{stderr}");
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn the_html_report_shows_the_failure_in_a_browser_and_fetches_nothing() {
    let dir = scratch("tutorial-html");
    let output = run_test(
        &dir,
        &[
            "--config",
            &config("filibuster.toml"),
            "--report-json",
            "report.json",
            "--report-html",
            "report.html",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let page = std::fs::read_to_string(dir.join("report.html")).expect("HTML written");
    // The same page from the saved JSON, later.
    let rendered = filibuster()
        .args(["report", "--json", "report.json", "--html", "again.html"])
        .current_dir(&dir)
        .output()
        .expect("filibuster report runs");
    assert!(rendered.status.success(), "{rendered:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("again.html")).unwrap(),
        page
    );

    // Nothing in it can fetch: no source, stylesheet or import, every link
    // an anchor within the page.
    for fetching in ["src=", "<link", "@import", "url(", "<script"] {
        assert!(!page.contains(fetching), "{fetching}");
    }
    assert!(
        page.split("href=")
            .skip(1)
            .all(|rest| rest.starts_with("\"#"))
    );

    // Opened in a real browser with no network at all (a namespace of its
    // own, loopback down, so neither the page nor the browser's own
    // services can reach anything): the DOM shows the tree and the failing
    // call.
    let chromium = |extra: &[&str]| {
        std::process::Command::new("unshare")
            .args(["--net", "chromium"])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1400,1800",
                "--disable-background-networking",
                "--no-first-run",
            ])
            .args(extra)
            .arg(format!("file://{}", dir.join("report.html").display()))
            .output()
            .expect("chromium runs (cargo xtask test installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("a fault combination fails the test"), "{dom}");
    assert!(dom.contains("foo → bar GET /bar/baz"), "{dom}");
    assert!(dom.contains("connection refused ✗"), "{dom}");
    assert!(dom.contains("id=\"failure-10\""), "{dom}");
    let shot = dir.join("report.png");
    chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "a screenshot of the page"
    );
}

#[test]
fn kernel_log_prints_each_connects_decision_and_is_off_by_default() {
    let dir = scratch("kernel-log");
    let with = run_test(
        &dir,
        &[
            "--config",
            &config("filibuster.toml"),
            "--only-initial-execution",
            "--kernel-log",
        ],
    );
    assert_eq!(with.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&with.stderr);
    // foo's call to bar, and bar's to baz, redirected to the proxy.
    for port in [5001, 5002] {
        let line = format!("to port {port}, attempt 1: action 1");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("filibuster: kernel: connect from cgroup")
                    && l.ends_with(&line)),
            "{stderr}"
        );
    }
    let without = run_test(
        &dir,
        &[
            "--config",
            &config("filibuster.toml"),
            "--only-initial-execution",
        ],
    );
    assert_eq!(without.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&without.stderr).contains("filibuster: kernel:"));
}

#[test]
fn doctor_checks_this_host_the_way_the_agent_uses_it() {
    let output = filibuster().arg("doctor").output().expect("doctor runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for line in [
        "ok    root",
        "ok    kernel",
        "ok    cgroup v2",
        "ok    kernel programs",
        "ok    socket destroy",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    assert!(
        our_programs_loaded().is_empty(),
        "loaded to check, then gone"
    );
}

#[test]
fn a_budget_ends_the_search_with_what_it_left() {
    let dir = scratch("budget");
    let fixed = config("fixed.toml");
    for (flags, reached, executions) in [
        (
            &["--max-executions", "3"][..],
            "3 executions (--max-executions)",
            Some(3),
        ),
        (&["--time-budget", "1ms"][..], "1ms (--time-budget)", None),
    ] {
        let mut args = vec!["--config", &fixed, "--report-json", "report.json"];
        args.extend(flags);
        let output = run_test(&dir, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "nothing failed so far: {stderr}"
        );
        assert!(
            stderr.contains(&format!("the budget of {reached} was reached")),
            "{stderr}"
        );
        assert!(stderr.contains("faults never tried: "), "{stderr}");
        let report = read_json(&dir.join("report.json"));
        assert_eq!(report["budget"]["reached"], reached);
        assert!(report["budget"]["scheduled_left"].as_u64() > Some(0));
        if let Some(executions) = executions {
            assert_eq!(report["executions"], executions);
        }
        assert_valid_report(&dir.join("report.json"));
    }
}
