//! Cells: executions side by side, each in its own copy of the services
//! (a network namespace and cgroups). They find what one execution at a
//! time finds, never touch each other's calls, and leave nothing behind.

use std::{
    collections::BTreeSet,
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use filibuster_tests::{
    assert_finds_foos_bug, filibuster, leftover_cgroups, our_programs_loaded, read_json, run_test,
    scratch, workspace,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

fn config(path: &str) -> String {
    workspace()
        .join("examples")
        .join(path)
        .display()
        .to_string()
}

/// Runs `config` with `flags` from `dir`; returns (exit code, report).
fn explore(dir: &Path, config: &str, flags: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--config", config, "--report-json", "report.json"];
    args.extend(flags);
    let output = run_test(dir, &args);
    (output.status.code(), read_json(&dir.join("report.json")))
}

/// The fault combinations of the failing executions.
fn failing(report: &Value) -> BTreeSet<String> {
    report["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| f["faults"].to_string())
        .collect()
}

/// The network namespaces some process is in.
fn namespaces_in_use() -> BTreeSet<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("ns/net")).ok())
        .map(|link| link.display().to_string())
        .collect()
}

#[test]
fn cells_find_foos_bug_and_the_replay_runs_in_one() {
    let dir = scratch("cells-bug");
    assert_finds_foos_bug(&dir, &config("tutorial/filibuster.toml"), &["--cells", "4"]);
    let report = read_json(&dir.join("counterexample.json"));
    assert_eq!(report["faults"].as_array().unwrap().len(), 1);
}

#[test]
fn cells_find_the_failures_one_cell_finds() {
    let dir = scratch("cells-keep-going");
    let tutorial = config("tutorial/filibuster.toml");
    let flags = ["--keep-going", "--disable-dynamic-reduction"];
    let (code, one) = explore(&dir, &tutorial, &[&flags[..], &["--cells", "1"]].concat());
    assert_eq!(code, Some(1));
    let (code, four) = explore(&dir, &tutorial, &[&flags[..], &["--cells", "4"]].concat());
    assert_eq!(code, Some(1));
    assert_eq!(four["cells"], 4);
    assert_eq!(failing(&four), failing(&one));
    assert_eq!(four["executions"], one["executions"]);
}

#[test]
fn cells_explore_the_protocol_examples_as_one_cell_does() {
    // gRPC over HTTP/2; Rust, Node.js and Python with Redis; concurrent
    // requests told apart by traceparent: the same executions in 3 cells
    // as in one (no reduction, so the count does not depend on the order
    // results come back), with the same verdicts.
    for example in [
        "grpc/fixed.toml",
        "polyglot/fixed.toml",
        "traced/filibuster.toml",
    ] {
        let dir = scratch(&format!("cells-{}", example.replace('/', "-")));
        let explore_in = |cells: &str| {
            let flags = [
                "--disable-dynamic-reduction",
                "--keep-going",
                "--cells",
                cells,
            ];
            explore(&dir, &config(example), &flags)
        };
        let (code, one) = explore_in("1");
        let (code_in_cells, three) = explore_in("3");
        assert_eq!(three["cells"], 3, "{example}");
        assert_eq!(code_in_cells, code, "{example}: {three}");
        assert_eq!(three["executions"], one["executions"], "{example}");
        assert_eq!(failing(&three), failing(&one), "{example}");
    }
}

#[test]
fn cells_keep_their_faults_and_assertions_to_themselves() {
    // Every execution of the fixed tutorial passes only if each cell's
    // test sees its own execution's faults, and no other's: a fault armed
    // in one cell failing a call in another, or an assertion answered for
    // another cell, fails a test that checks `was_fault_injected`.
    let dir = scratch("cells-isolation");
    let before = namespaces_in_use();
    let (code, report) = explore(
        &dir,
        &config("tutorial/fixed.toml"),
        &["--cells", "8", "--disable-dynamic-reduction"],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["executions"], 11);
    assert_eq!(report["cells"], 8);
    // The cinema's retry loop, without reduction: the seed's 91, in cells.
    let (code, report) = explore(
        &dir,
        &config("cinema/cinema-3/filibuster.toml"),
        &["--cells", "4", "--disable-dynamic-reduction"],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["executions"], 91);
    // Nothing of any cell is left.
    assert_eq!(namespaces_in_use(), before);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn cells_with_attached_services_are_refused_with_the_reason() {
    let dir = scratch("cells-attached");
    std::fs::write(
        dir.join("filibuster.toml"),
        "[test]\ncommand = \"true\"\n[services.init]\npid = 1\nport = 1\n",
    )
    .unwrap();
    let output = run_test(&dir, &["--config", "filibuster.toml", "--cells", "2"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cells 2: services the agent attaches to cannot be copied into cells"),
        "{stderr}"
    );
}

#[test]
fn however_a_run_with_cells_ends_nothing_is_left() {
    let before = namespaces_in_use();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL] {
        let mut agent = filibuster()
            .args([
                "test",
                "--cells",
                "4",
                "--search",
                "filibuster",
                "--config",
                &config("tutorial/fixed.toml"),
            ])
            .current_dir(scratch("cells-signals"))
            .stderr(Stdio::null())
            .spawn()
            .expect("filibuster starts");
        // Until the other cells' copies are up: a namespace per cell.
        let deadline = Instant::now() + Duration::from_secs(30);
        while namespaces_in_use().len() < before.len() + 3 {
            assert!(Instant::now() < deadline, "the cells never came up");
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(500));
        kill(Pid::from_raw(agent.id() as i32), signal).expect("signal sent");
        agent.wait().expect("the agent ends");
        if signal == Signal::SIGKILL {
            // The next run removes what the killed one left.
            let next = run_test(
                &scratch("cells-next"),
                &[
                    "--config",
                    &config("tutorial/fixed.toml"),
                    "--only-initial-execution",
                ],
            );
            assert_eq!(next.status.code(), Some(0));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while namespaces_in_use() != before && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(namespaces_in_use(), before, "after {signal}");
        assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
        assert_eq!(our_programs_loaded(), Vec::<String>::new());
    }
}

#[test]
fn auto_adds_cells_where_held_time_pays_for_them() {
    let dir = scratch("cells-auto");
    let production = config("timeouts/production.toml");
    let (code, report) = explore(&dir, &production, &["--cells", "auto"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report["cells"].as_u64().unwrap() > 1, "{}", report["cells"]);
    // The fixed tutorial's timeouts are short: as many cells as pay, and
    // the same verdict.
    let (code, _) = explore(&dir, &config("tutorial/fixed.toml"), &["--cells", "auto"]);
    assert_eq!(code, Some(0));
}

/// A chain whose first hop retries once, client timeouts graded by depth
/// (examples/retry): users' 500 when both attempts failed is found, and
/// replayed though the failed retry's connect came after the first had
/// taught the agent that bookings speaks HTTP/1.1; fixed, eight cells run
/// the guided search in no more executions than Filibuster's, each
/// failure-free.
#[test]
fn the_retry_chain_is_found_and_replayed_and_the_guided_search_runs_no_more_than_filibusters() {
    let dir = scratch("cells-retry");
    let buggy = config("retry/filibuster.toml");
    // Filibuster's depth-first order, one cell: statuses on both attempts
    // fail first, faults the proxy must answer (not the kernel refuse).
    let (code, found) = explore(&dir, &buggy, &[]);
    assert_eq!(code, Some(1), "{found}");
    let counterexample = read_json(&dir.join("counterexample.json"));
    let kinds: Vec<&Value> = counterexample["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .map(|f| &f["fault"]["kind"])
        .collect();
    assert_eq!(kinds, ["http-status", "http-status"], "{counterexample}");
    let replay = run_test(
        &dir,
        &[
            "--config",
            &buggy,
            "--counterexample-file",
            "counterexample.json",
        ],
    );
    assert_eq!(replay.status.code(), Some(1), "the replay fails again");
    let fixed = config("retry/fixed.toml");
    let (code, guided) = explore(&dir, &fixed, &["--cells", "8", "--search", "guided"]);
    assert_eq!(code, Some(0), "{guided}");
    let (code, theirs) = explore(&dir, &fixed, &["--cells", "8"]);
    assert_eq!(code, Some(0), "{theirs}");
    let executions = |report: &Value| report["executions"].as_u64().expect("executions");
    assert!(
        executions(&guided) <= executions(&theirs),
        "guided {} against Filibuster's {}",
        executions(&guided),
        executions(&theirs)
    );
    // Learned as the calls were held: both callers' timeouts.
    let timeouts = guided["timeouts"].to_string();
    assert!(
        timeouts.contains("bookings") && timeouts.contains("movies"),
        "{timeouts}"
    );
}
