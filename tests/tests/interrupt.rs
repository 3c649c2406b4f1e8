//! However the agent ends (SIGINT, SIGTERM, SIGKILL), it leaves the host
//! as it found it: no cgroup of ours (after the next start at the latest,
//! for SIGKILL), no service of ours running, no program attached; and one
//! agent at a time.

use std::{
    net::TcpStream,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Child, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use filibuster_tests::{
    filibuster, leftover_cgroups, our_programs_loaded, read_json, run_test, scratch, workspace,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

fn tutorial(config: &str) -> String {
    workspace()
        .join("examples/tutorial")
        .join(config)
        .display()
        .to_string()
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// An agent exploring the fixed tutorial, caught mid-run: its services up.
fn agent_mid_run() -> Child {
    let child = filibuster()
        .args(["test", "--config", &tutorial("fixed.toml")])
        .args(["--search", "filibuster"])
        .current_dir(scratch("interrupt"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("filibuster starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(listening(5000) && listening(5001) && listening(5002)) {
        assert!(Instant::now() < deadline, "the services never came up");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(800)); // a few executions in
    child
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).expect("signal sent");
}

fn assert_host_clean() {
    assert_eq!(our_programs_loaded(), Vec::<String>::new());
    assert!(
        leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        leftover_cgroups()
    );
    for port in [5000, 5001, 5002] {
        assert!(!listening(port), "a service still listens on {port}");
    }
}

#[test]
fn sigint_sigterm_sighup_and_sigquit_end_the_run_and_clean_up() {
    for sent in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        let agent = agent_mid_run();
        signal(&agent, sent);
        let output = agent.wait_with_output().expect("the agent ends");
        // As shells report it: 128 + the signal's number.
        assert_eq!(output.status.code(), Some(128 + sent as i32), "{sent}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("interrupted; services stopped"), "{stderr}");
        assert_host_clean();
    }
}

#[test]
fn sigterm_after_a_failure_leaves_its_counterexample_and_the_reports() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("interrupt-found");
    // The buggy tutorial, going on after failures: SIGTERM (a CI job's
    // timeout) once the first is found.
    let mut agent = filibuster()
        .args(["test", "--config", &tutorial("filibuster.toml")])
        .args(["--search", "guided", "--keep-going", "--cells", "1"])
        .args(["--report-json", "report.json", "--junit", "junit.xml"])
        .current_dir(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("filibuster starts");
    let mut lines = BufReader::new(agent.stderr.take().unwrap()).lines();
    let failed = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("→ failed"))
        .expect("a failure is found");
    signal(&agent, Signal::SIGTERM);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = agent.wait().expect("the agent ends");
    assert_eq!(
        status.code(),
        Some(128 + Signal::SIGTERM as i32),
        "{rest:?}"
    );
    // Before: nothing written.
    let counterexample = read_json(&dir.join("counterexample.json"));
    assert_eq!(
        counterexample["faults"][0]["site"]["callee"], "bar",
        "{failed}"
    );
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["result"], "error");
    assert_eq!(report["error"], "interrupted by SIGTERM");
    assert!(!report["failures"].as_array().unwrap().is_empty());
    assert!(dir.join("junit.xml").exists());
    assert_host_clean();
}

#[test]
fn after_sigkill_the_next_start_removes_what_was_left() {
    let mut agent = agent_mid_run();
    let killed = format!("filibuster-{}", agent.id());
    signal(&agent, Signal::SIGKILL);
    agent.wait().expect("reaped");
    // The kernel detached the programs with the agent's links; the
    // services, in our cgroups (v2's, and on a hybrid host the v1 ones
    // that keep the limits), are ended by the next start.
    assert_eq!(our_programs_loaded(), Vec::<String>::new());
    let left = leftover_cgroups();
    assert!(!left.is_empty());
    assert!(left.iter().all(|p| p.ends_with(&killed)), "{left:?}");
    let dir = scratch("after-sigkill");
    let next = run_test(
        &dir,
        &[
            "--config",
            &tutorial("fixed.toml"),
            "--only-initial-execution",
        ],
    );
    assert_eq!(next.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert!(
        stderr.contains("left by an earlier run that was killed"),
        "{stderr}"
    );
    assert_host_clean();
}

#[test]
fn cleanup_removes_a_killed_runs_cgroups_even_when_its_pid_names_another_process() {
    // What a killed agent leaves, under the name of a pid that runs again
    // (pid 1 always does): a run's cgroup with a service still in it.
    let run = filibuster_tests::cgroup_mount()
        .expect("cgroup v2")
        .join("filibuster-1");
    let service = run.join("reused-pid");
    std::fs::create_dir_all(&service).expect("cgroup made");
    let mut left = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep runs");
    std::fs::write(service.join("cgroup.procs"), left.id().to_string()).expect("moved in");

    let cleanup = filibuster()
        .arg("cleanup")
        .output()
        .expect("filibuster runs");
    let stderr = String::from_utf8_lossy(&cleanup.stderr);
    assert_eq!(cleanup.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("filibuster-1 left by an earlier run that was killed"),
        "{stderr}"
    );
    let ended = left.wait().expect("reaped");
    assert_eq!(
        ended.signal(),
        Some(Signal::SIGKILL as i32),
        "the service was ended"
    );
    assert_host_clean();

    let again = filibuster()
        .arg("cleanup")
        .output()
        .expect("filibuster runs");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("nothing left by an earlier run"),
        "{stderr}"
    );
}

/// A service written as such services are (one worker process per item
/// of a request; a buffer per request), in `dir`, under `limits`.
fn limited_service(dir: &Path, limits: &str) -> String {
    std::fs::write(
        dir.join("exporter.py"),
        r#"import http.server, subprocess

class Export(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/render":
            report = bytearray(256 << 20)  # the whole export, in memory
            report[-1] = 1
        workers = [subprocess.Popen(["sleep", "5"]) for _ in range(64)]
        for worker in workers:
            worker.kill()
        self.send_response(200)
        self.end_headers()

http.server.ThreadingHTTPServer(("127.0.0.1", 5340), Export).serve_forever()
"#,
    )
    .unwrap();
    let config = dir.join("filibuster.toml");
    std::fs::write(
        &config,
        format!(
            "[services.exporter]\ncommand = \"python3 exporter.py\"\nport = 5340\n\n[limits]\n{limits}\n"
        ),
    )
    .unwrap();
    config.display().to_string()
}

#[test]
fn a_service_past_its_limits_ends_the_run_saying_which_and_what_to_do() {
    let dir = scratch("limits");
    for (limits, path, expected) in [
        (
            "pids = 16",
            "/export",
            "service `exporter` hit its limit of 16 processes and threads: raise [limits] pids",
        ),
        (
            "memory = \"64m\"",
            "/render",
            "service `exporter` was killed for memory past its limit of 64 MiB: raise [limits] memory",
        ),
    ] {
        let config = limited_service(&dir, limits);
        let output = run_test(
            &dir,
            &[
                "--config",
                &config,
                "--functional-test",
                &format!(
                    "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5340{path}\")'"
                ),
                "--only-initial-execution",
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            leftover_cgroups().is_empty(),
            "cgroups left: {:?}",
            leftover_cgroups()
        );
    }
    // Within its limits (the defaults), it passes.
    let config = limited_service(&dir, "");
    let output = run_test(
        &dir,
        &[
            "--config",
            &config,
            "--functional-test",
            "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5340/render\")'",
            "--only-initial-execution",
        ],
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn a_second_agent_in_other_mount_and_pid_namespaces_is_refused_too() {
    // As a second CI container sharing the host's cgroups would run it:
    // its own /run, its own pids.
    let agent = agent_mid_run();
    let binary = workspace().join("target/debug/filibuster");
    let second = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(format!(
            "mount -t tmpfs tmpfs /run && exec {} test --config {} --control-port 5206",
            binary.display(),
            tutorial("fixed.toml")
        ))
        .current_dir(scratch("namespaced-agent"))
        .output()
        .expect("unshare runs");
    signal(&agent, Signal::SIGTERM);
    agent.wait_with_output().expect("the first agent ends");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another filibuster is running on this host"),
        "{stderr}"
    );
    assert_host_clean();
}

#[test]
fn a_second_agent_refuses_to_run_beside_the_first() {
    let agent = agent_mid_run();
    let pid = agent.id();
    let second = run_test(
        &scratch("second-agent"),
        &[
            "--config",
            &tutorial("fixed.toml"),
            "--control-port",
            "5205",
        ],
    );
    signal(&agent, Signal::SIGTERM);
    agent.wait_with_output().expect("the first agent ends");
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("another filibuster (pid {pid}) is running")),
        "{stderr}"
    );
    assert_host_clean();
}

/// `filibuster test` on `config` from `dir`, one cell, Filibuster's search,
/// a JSON report, allowed 512 descriptors: the floods below need about
/// 2,000 without a bound.
fn with_few_descriptors(dir: &Path, config: &str) -> std::process::Command {
    let _ = filibuster(); // built
    let mut agent = std::process::Command::new("prlimit");
    agent
        .args(["--nofile=512:512", "--"])
        .arg(workspace().join("target/debug/filibuster"))
        .args(["test", "--config", config, "--cells", "1"])
        .args(["--search", "filibuster", "--report-json", "report.json"])
        .current_dir(dir)
        .stderr(Stdio::piped());
    agent
}

/// Waits until the agent's control API listens (its run has begun).
fn wait_for_control_api() {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listening(5005) {
        assert!(Instant::now() < deadline, "the control API never came up");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The run ended passing after `executions` executions; its calls.
fn passed_after(dir: &Path, output: &Output, executions: u64) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report = read_json(&dir.join("report.json"));
    assert_eq!(report["executions"], executions, "{stderr}");
    assert_host_clean();
    report["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            format!(
                "{} → {} {} {}",
                c["caller"], c["callee"], c["method"], c["target"]
            )
        })
        .collect()
}

#[test]
fn the_control_api_answers_the_run_only() {
    use std::io::{Read, Write};
    let dir = scratch("control-outside");
    let agent = with_few_descriptors(&dir, &tutorial("fixed.toml"))
        .spawn()
        .expect("prlimit runs filibuster");
    wait_for_control_api();
    // 300 connections from outside the run, each a byte into a request:
    // before, they took the slots the test's own questions need.
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", 5005)).ok())
        .map(|mut stream| {
            let _ = stream.write_all(b"G");
            stream
        })
        .collect();
    // And a question from outside: which service is failed right now.
    let mut asking = TcpStream::connect(("127.0.0.1", 5005)).expect("connects");
    asking
        .write_all(b"GET /filibuster/fault-injected HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    asking
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = asking.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("the run's own tests and services only"),
        "{answer}"
    );
    let output = agent.wait_with_output().expect("the agent ends");
    drop(held);
    passed_after(&dir, &output, 10);
}

#[test]
fn a_flood_of_idle_connections_to_the_control_api_changes_nothing() {
    // 2,000 connections that never send a request: without a bound the
    // agent runs out, and its proxy can no longer accept the services'
    // calls.
    let dir = scratch("idle-flood");
    let agent = with_few_descriptors(&dir, &tutorial("fixed.toml"))
        .spawn()
        .expect("prlimit runs filibuster");
    wait_for_control_api();
    let idle: Vec<TcpStream> = (0..2000)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", 5005)).ok())
        .collect();
    let output = agent.wait_with_output().expect("the agent ends");
    drop(idle);
    passed_after(&dir, &output, 10);
}

/// A functional test that, in the run's first execution (while foo is
/// not yet known to speak HTTP/1.1, so that its connects go through the
/// proxy), first opens 2,000 connections to foo and never uses them (from
/// five processes, each within the agent's limit it inherits); then
/// makes its request on a connection opened half a second ahead (as a
/// client connected at startup would). Later executions connect to foo
/// directly, where a flood would only measure Flask's listen backlog.
const IDLE_CLIENT: &str = r#"
import os, signal, socket, sys, time
holders = []
if not os.path.exists("flooded"):
    open("flooded", "w").close()
    for _ in range(5):
        ready, done = os.pipe()
        pid = os.fork()
        if pid == 0:
            held = [socket.create_connection(("127.0.0.1", 5000)) for _ in range(400)]
            os.write(done, b"x")
            signal.pause()
        os.read(ready, 1)
        holders.append(pid)
kept = socket.create_connection(("127.0.0.1", 5000))
time.sleep(0.5)
kept.sendall(b"GET /foo/bar/baz HTTP/1.1\r\nHost: foo\r\nConnection: close\r\n\r\n")
answer = b""
while chunk := kept.recv(65536):
    answer += chunk
for pid in holders:
    os.kill(pid, signal.SIGKILL)
status = int(answer.split(b" ", 2)[1])
body = answer.split(b"\r\n\r\n", 1)[1]
sys.exit(0 if (status == 200 and body == b"foo bar baz") or status in (503, 404) else 1)
"#;

#[test]
fn connections_opened_ahead_of_their_requests_change_nothing() {
    // Through the proxy, which may hold 512 descriptors: idle connections
    // are no calls, and the oldest are closed when descriptors run out;
    // the request on the connection opened ahead is a call, read as HTTP.
    let dir = scratch("idle-proxied");
    std::fs::write(dir.join("idle_client.py"), IDLE_CLIENT).unwrap();
    let tutorial = workspace().join("examples/tutorial");
    let config = std::fs::read_to_string(tutorial.join("fixed.toml"))
        .unwrap()
        .replace(
            "command = \"python3 functional/test_foo_bar_baz.py\"",
            "command = \"python3 idle_client.py\"",
        )
        .replace(
            "command = \"python3 services/",
            &format!("command = \"python3 {}/services/", tutorial.display()),
        );
    std::fs::write(dir.join("filibuster.toml"), config).unwrap();
    let output = with_few_descriptors(&dir, "filibuster.toml")
        .output()
        .expect("prlimit runs filibuster");
    assert_eq!(
        passed_after(&dir, &output, 10),
        [
            r#""test" → "foo" "GET" "/foo/bar/baz""#,
            r#""foo" → "bar" "GET" "/bar/baz""#,
            r#""bar" → "baz" "GET" "/baz""#,
        ]
    );
}
