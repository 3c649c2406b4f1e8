//! Services the agent did not start: the harness runs them in cgroups of
//! its own, as a container engine or systemd would, and the agent attaches
//! to one by cgroup path and to one by pid, finds the tutorial's bug, and
//! leaves them running, unmodified and no longer intercepted.

use std::{
    fs,
    net::TcpStream,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use filibuster_tests::{
    HarnessService, assert_finds_foos_bug, cgroup_mount, filibuster, run_test, scratch, workspace,
};

/// A tutorial service in a cgroup of the harness's, on the host's network.
fn outside(name: &str, script: &str) -> HarnessService {
    let cgroup = cgroup_mount()
        .expect("cgroup v2")
        .join(format!("fbtest-{name}"));
    HarnessService::start(cgroup, None, script, &[])
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn status_of(url: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            &format!("import requests; print(requests.get('{url}', timeout=5).status_code)"),
        ])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn attached_by_cgroup_and_by_pid_the_bug_is_found_and_the_services_keep_running() {
    let foo = outside("foo", "services/foo/app.py");
    let bar = outside("bar", "services/bar/app.py");
    wait_listening(5000);
    wait_listening(5001);

    let dir = scratch("attach");
    let tutorial = workspace().join("examples/tutorial");
    let config = dir.join("filibuster.toml");
    fs::write(
        &config,
        format!(
            "[test]\ncommand = \"cd {t} && python3 functional/test_foo_bar_baz.py\"\n\
             [services.foo]\npid = {pid}\nport = 5000\n\
             [services.bar]\ncgroup = \"{cgroup}\"\nport = 5001\n\
             [services.baz]\ncommand = \"cd {t} && python3 services/baz/app.py\"\nport = 5002\n",
            t = tutorial.display(),
            pid = foo.process.id(),
            cgroup = bar.cgroup.display(),
        ),
    )
    .unwrap();
    let config = config.display().to_string();

    assert_finds_foos_bug(&dir, &config, &[]);

    // `trace` observes one run of the test, injecting nothing.
    let trace_json = dir.join("trace.json");
    let trace = filibuster()
        .args(["trace", "--config", &config, "--report-json"])
        .arg(&trace_json)
        .output()
        .expect("filibuster trace runs");
    assert!(trace.status.success(), "{trace:?}");
    let traced: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&trace_json).unwrap()).unwrap();
    let bar_baz = &traced["calls"][2];
    assert_eq!(
        (&bar_baz["caller"], &bar_baz["callee"], &bar_baz["depth"]),
        (
            &serde_json::json!("bar"),
            &serde_json::json!("baz"),
            &serde_json::json!(3)
        ),
        "{traced}"
    );
    assert_eq!(bar_baz["outcomes"]["200"], 1);
    let tree = String::from_utf8_lossy(&trace.stdout);
    assert!(
        tree.contains("  test → foo GET /foo/bar/baz  ×1 (200 ×1)"),
        "{tree}"
    );
    assert!(
        tree.contains("    foo → bar GET /bar/baz  ×1 (200 ×1)"),
        "{tree}"
    );
    assert!(
        tree.contains("      bar → baz GET /baz  ×1 (200 ×1)"),
        "{tree}"
    );

    // ... or whatever traffic the running services get, for a while: here
    // a client outside every managed cgroup, whose own calls go direct.
    let client = thread::spawn(|| {
        thread::sleep(Duration::from_millis(1500));
        for _ in 0..3 {
            status_of("http://127.0.0.1:5000/foo/bar/baz");
        }
    });
    let watched = filibuster()
        .args(["trace", "--config", &config, "--duration", "4"])
        .output()
        .expect("filibuster trace runs");
    client.join().unwrap();
    assert!(watched.status.success(), "{watched:?}");
    let tree = String::from_utf8_lossy(&watched.stdout);
    assert!(
        tree.contains("  foo → bar GET /bar/baz  ×3 (200 ×3)"),
        "{tree}"
    );
    assert!(!tree.contains("test →"), "{tree}");

    // Still running, and no longer intercepted: foo reaches bar directly
    // (bar answers 503 because baz, which the agent launched, is gone; a
    // redirect left behind would make foo's connect fail and foo answer 500).
    assert_eq!(status_of("http://127.0.0.1:5001/health-check"), "200");
    assert_eq!(status_of("http://127.0.0.1:5000/foo/bar/baz"), "503");
    assert!(
        foo.cgroup.exists() && bar.cgroup.exists(),
        "their cgroups stay"
    );
}

#[test]
fn a_service_to_attach_that_does_not_listen_is_named() {
    let dir = scratch("attach-missing");
    // In a cgroup of its own, as a service is (the root one is refused).
    let cgroup = cgroup_mount().expect("cgroup v2").join("fbtest-ghost");
    fs::create_dir_all(&cgroup).unwrap();
    let mut ghost = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec sleep 30",
            cgroup.display()
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the ghost never moved");
        thread::sleep(Duration::from_millis(10));
    }
    fs::write(
        dir.join("filibuster.toml"),
        format!(
            "[test]\ncommand = \"true\"\n[services.ghost]\npid = {}\nport = 5997\n",
            ghost.id()
        ),
    )
    .unwrap();
    let output = run_test(&dir, &["--config", "filibuster.toml"]);
    let _ = ghost.kill();
    let _ = ghost.wait();
    let _ = fs::remove_dir(&cgroup);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "service `ghost` is to be attached, but nothing listens on port 5997 in its network namespace"
        ),
        "{stderr}"
    );
}

#[test]
fn attaching_where_the_whole_host_or_the_agent_is_is_refused() {
    let dir = scratch("attach-refused");
    let mount = cgroup_mount().expect("cgroup v2");
    let targets = [
        (
            format!("cgroup = \"{}\"", mount.display()),
            "is the root of the cgroup tree",
        ),
        // The harness's own process: the agent it starts is in its cgroup
        // (here the root, elsewhere a session's).
        (format!("pid = {}", std::process::id()), "cgroup"),
    ];
    for (target, why) in targets {
        fs::write(
            dir.join("filibuster.toml"),
            format!("[test]\ncommand = \"true\"\n[services.everything]\n{target}\nport = 1\n"),
        )
        .unwrap();
        let output = run_test(&dir, &["--config", "filibuster.toml"]);
        assert_eq!(output.status.code(), Some(2), "{target}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(why)
                && (stderr.contains("root of the cgroup tree")
                    || stderr.contains("holds filibuster itself")),
            "{target}: {stderr}"
        );
    }
}
