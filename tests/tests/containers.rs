//! Services in containers the agent did not start, built from the parts a
//! container engine uses, as a runtime would lay them out (`engine.rs` runs
//! a real engine, Podman): each service
//! runs in a network namespace of its own, joined to the host by a veth
//! pair on a bridge, and in a cgroup of its own, named as Docker names its
//! scopes. The tutorial's foo is attached by pid, bar by `container =`
//! (its id prefix), baz, on the host (bar reaches it at the bridge's
//! address), by cgroup path. The agent finds foo's bug and replays it,
//! `trace` prints the call tree, a load of outside requests running
//! alongside sees no redirection and changes nothing in the run; however
//! the agent ends (SIGINT, SIGTERM, SIGKILL), the services serve on
//! unintercepted, with no program, cgroup or listener of ours left.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use filibuster_tests::{
    HarnessService, assert_finds_foos_bug, cgroup_mount, filibuster, leftover_cgroups,
    our_programs_loaded, read_json, run_test, scratch, workspace,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

const BRIDGE: &str = "fbt0";
const HOST_IP: &str = "10.203.0.1";
const FOO_IP: &str = "10.203.0.2";
const BAR_IP: &str = "10.203.0.3";
/// bar's container id, as Docker would have made it.
const BAR_ID: &str = "b4a7c0de5eed0fa11ab1e5eed0fa11ab1e5eed0fa11ab1e5eed0fa11ab1e5eed";

fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip (iproute2) runs");
    assert!(status.success(), "ip {args} failed");
}

/// Best effort: `ip` removing what may not be there.
fn ip_quietly(args: &str) {
    let _ = Command::new("ip")
        .args(args.split_whitespace())
        .stderr(std::process::Stdio::null())
        .status();
}

/// A bridge on the host with an address, like docker0; removed on drop
/// with every namespace made on it.
struct Network {
    namespaces: Vec<String>,
}

impl Network {
    fn create() -> Self {
        ip_quietly(&format!("link del {BRIDGE}"));
        ip(&format!("link add {BRIDGE} type bridge"));
        ip(&format!("addr add {HOST_IP}/24 dev {BRIDGE}"));
        ip(&format!("link set {BRIDGE} up"));
        Self {
            namespaces: Vec::new(),
        }
    }

    /// A network namespace with `address` on its eth0, plugged into the
    /// bridge (by `<namespace>-h` on the host), its loopback up.
    fn namespace(&mut self, name: &str, address: &str) -> String {
        let netns = format!("fbt-{name}");
        Self::remove(&netns);
        ip(&format!("netns add {netns}"));
        self.namespaces.push(netns.clone());
        ip(&format!(
            "link add {netns}-h type veth peer name eth0 netns {netns}"
        ));
        ip(&format!("link set {netns}-h master {BRIDGE} up"));
        ip(&format!("-n {netns} addr add {address}/24 dev eth0"));
        ip(&format!("-n {netns} link set eth0 up"));
        ip(&format!("-n {netns} link set lo up"));
        netns
    }

    /// Removes a namespace and its veth pair: the pair through its host
    /// end, at once (the kernel frees a deleted namespace, and the pair
    /// with it, only later).
    fn remove(netns: &str) {
        ip_quietly(&format!("link del {netns}-h"));
        ip_quietly(&format!("netns del {netns}"));
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for netns in &self.namespaces {
            Self::remove(netns);
        }
        ip_quietly(&format!("link del {BRIDGE}"));
    }
}

/// The TCP ports something listens on in `service`'s network namespace.
fn listening_ports(service: &HarnessService) -> Vec<u16> {
    filibuster::netns::listening_ports(&service.process.id().to_string())
}

/// One HTTP/1.0 GET; the status line's code and the body.
fn get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn wait_until_serving(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(get(address, "/health-check"), Ok((200, _))) {
        assert!(Instant::now() < deadline, "nothing serves at {address}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Requests from outside every managed cgroup, for as long as `running`:
/// to bar's health check across the bridge, and to a server on the host's
/// loopback that answers each client with the port it sees it on.
/// Returns (requests, failures, requests that arrived through a proxy).
fn outside_load(running: Arc<AtomicBool>) -> thread::JoinHandle<(u32, u32, u32)> {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_address = server.local_addr().unwrap().to_string();
    thread::spawn(move || {
        while let Ok((mut stream, peer)) = server.accept() {
            // Read the request first: closing on unread bytes sends a reset.
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request);
            let _ = write!(stream, "HTTP/1.0 200 OK\r\n\r\n{}", peer.port());
        }
    });
    let bar = format!("{BAR_IP}:5001");
    thread::spawn(move || {
        let (mut requests, mut failures, mut proxied) = (0, 0, 0);
        while running.load(Ordering::Relaxed) {
            requests += 2;
            if !matches!(get(&bar, "/health-check"), Ok((200, _))) {
                failures += 1;
            }
            match seen_directly(&server_address) {
                Ok(true) => {}
                Ok(false) => proxied += 1,
                Err(_) => failures += 1,
            }
        }
        (requests, failures, proxied)
    })
}

/// Whether the server at `address` sees this client's own port as its peer.
fn seen_directly(address: &str) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(address)?;
    let port = stream.local_addr()?.port();
    write!(stream, "GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.ends_with(&format!("\r\n\r\n{port}")))
}

/// A run's executions as its JSON report lists them, without timings.
fn executions(report: PathBuf) -> serde_json::Value {
    let mut log = read_json(&report)["execution_log"].clone();
    for execution in log.as_array_mut().expect("an execution log") {
        execution["seconds"] = serde_json::Value::Null;
        execution["held_seconds"] = serde_json::Value::Null;
    }
    log
}

/// The three services up in their containers, and a config attaching to
/// them.
struct Cluster {
    foo: HarnessService,
    bar: HarnessService,
    baz: HarnessService,
    dir: PathBuf,
    config: String,
    // Dropped last: the namespaces outlive the processes in them.
    _network: Network,
}

impl Cluster {
    fn start(name: &str) -> Self {
        let mut network = Network::create();
        let foo_netns = network.namespace("foo", FOO_IP);
        let bar_netns = network.namespace("bar", BAR_IP);
        let engine = cgroup_mount().unwrap().join("fbtest-docker");
        let foo_container = HarnessService::start(
            engine.join(format!("docker-{}.scope", "f00".repeat(21) + "f")),
            Some(&foo_netns),
            "services/foo/app.py",
            &[("BAR_URL", format!("http://{BAR_IP}:5001"))],
        );
        let bar_container = HarnessService::start(
            engine.join(format!("docker-{BAR_ID}.scope")),
            Some(&bar_netns),
            "services/bar/app.py",
            &[("BAZ_URL", format!("http://{HOST_IP}:5002"))],
        );
        let baz_container = HarnessService::start(
            cgroup_mount().unwrap().join("fbtest-baz.service"),
            None,
            "services/baz/app.py",
            &[],
        );
        wait_until_serving(&format!("{FOO_IP}:5000"));
        wait_until_serving(&format!("{BAR_IP}:5001"));
        wait_until_serving("127.0.0.1:5002");

        let dir = scratch(name);
        let config = dir.join("filibuster.toml");
        fs::write(
            &config,
            format!(
                "[test]\ncommand = \"cd {t} && FOO_URL=http://{FOO_IP}:5000 python3 functional/test_foo_bar_baz.py\"\n\
                 [services.foo]\npid = {pid}\nport = 5000\n\
                 [services.bar]\ncontainer = \"{bar_id}\"\nport = 5001\n\
                 [services.baz]\ncgroup = \"{baz}\"\nport = 5002\n",
                t = workspace().join("examples/tutorial").display(),
                pid = foo_container.process.id(),
                bar_id = &BAR_ID[..12],
                baz = baz_container.cgroup.display(),
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        Self {
            foo: foo_container,
            bar: bar_container,
            baz: baz_container,
            dir,
            config,
            _network: network,
        }
    }

    /// Left as found: no program or cgroup of ours, no listener of ours in
    /// their namespaces, their cgroups in place, and the services calling
    /// each other directly (a redirect left behind would fail foo's call).
    fn assert_left_as_found(&self) {
        assert_eq!(our_programs_loaded(), Vec::<String>::new());
        assert_eq!(leftover_cgroups(), Vec::<PathBuf>::new());
        assert_eq!(listening_ports(&self.foo), [5000]);
        assert_eq!(listening_ports(&self.bar), [5001]);
        for container in [&self.foo, &self.bar, &self.baz] {
            assert!(container.cgroup.exists());
        }
        let answer = get(&format!("{FOO_IP}:5000"), "/foo/bar/baz").unwrap();
        assert_eq!(answer, (200, "foo bar baz".to_string()));
    }
}

#[test]
fn containers_in_their_own_namespaces_are_attached_and_left_as_found() {
    let cluster = Cluster::start("containers");
    let (dir, config) = (&cluster.dir, cluster.config.as_str());

    assert_finds_foos_bug(dir, config, &["--report-json", "quiet.json"]);

    // The same run with outside traffic alongside: none of it is
    // redirected or failed, and the run explores exactly as before.
    let running = Arc::new(AtomicBool::new(true));
    let load = outside_load(running.clone());
    let loaded = run_test(dir, &["--config", config, "--report-json", "loaded.json"]);
    running.store(false, Ordering::Relaxed);
    let (requests, failures, proxied) = load.join().unwrap();
    assert!(requests >= 20, "only {requests} outside requests ran");
    assert_eq!(
        (failures, proxied),
        (0, 0),
        "of {requests} outside requests"
    );
    assert_eq!(loaded.status.code(), Some(1));
    assert_eq!(
        executions(dir.join("loaded.json")),
        executions(dir.join("quiet.json"))
    );

    let trace = filibuster()
        .args(["trace", "--config", config])
        .output()
        .expect("filibuster trace runs");
    assert!(trace.status.success(), "{trace:?}");
    let tree = String::from_utf8_lossy(&trace.stdout);
    for line in [
        "  test → foo GET /foo/bar/baz  ×1 (200 ×1)",
        "    foo → bar GET /bar/baz  ×1 (200 ×1)",
        "      bar → baz GET /baz  ×1 (200 ×1)",
    ] {
        assert!(tree.contains(line), "{tree}");
    }
    cluster.assert_left_as_found();
}

/// Sends `signal` to `agent` mid-run (its cgroup there, a few executions
/// or a while of its test in); returns how it ended.
fn signal_mid_run(agent: std::process::Child, signal: Signal) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftover_cgroups().is_empty() {
        assert!(Instant::now() < deadline, "the run never started");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(1500));
    kill(Pid::from_raw(agent.id() as i32), signal).expect("signal sent");
    agent.wait_with_output().expect("the agent ends")
}

#[test]
fn however_the_agent_ends_the_containers_are_left_as_found() {
    let cluster = Cluster::start("containers-killed");
    for sent in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL] {
        // Filibuster's search: ten executions, seconds of them, to be
        // caught in the middle of.
        let agent = filibuster()
            .args([
                "test",
                "--config",
                &cluster.config,
                "--search",
                "filibuster",
            ])
            .current_dir(&cluster.dir)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("filibuster starts");
        let output = signal_mid_run(agent, sent);
        if sent == Signal::SIGKILL {
            // Only the run's cgroup is left (the test's, with the v1
            // cgroups keeping its limits on a hybrid host), empty; the
            // next start removes it.
            let left = leftover_cgroups();
            let run = left[0].file_name().expect("a run's cgroup").to_owned();
            assert!(left.iter().all(|p| p.ends_with(&run)), "{left:?}");
            let next = run_test(
                &cluster.dir,
                &["--config", &cluster.config, "--only-initial-execution"],
            );
            assert_eq!(next.status.code(), Some(0));
        } else {
            // As shells report it: 128 + the signal's number.
            assert_eq!(
                output.status.code(),
                Some(128 + sent as i32),
                "{sent}: {output:?}"
            );
        }
        cluster.assert_left_as_found();
    }
}

/// Requests through foo (foo → bar → baz: the attached services' own
/// calls) for as long as `running`; returns (requests, failures).
fn load_through_foo(running: Arc<AtomicBool>) -> thread::JoinHandle<(u32, u32)> {
    thread::spawn(move || {
        let (mut requests, mut failures) = (0, 0);
        while running.load(Ordering::Relaxed) {
            requests += 1;
            if !matches!(
                get(&format!("{FOO_IP}:5000"), "/foo/bar/baz"),
                Ok((200, body)) if body == "foo bar baz"
            ) {
                failures += 1;
            }
        }
        (requests, failures)
    })
}

/// A TCP probe of baz from inside foo's container, as a liveness probe or
/// a sidecar checks a port: connect and close, every 10 ms, until the
/// file `argv[1]` exists; prints how many probes were made and how many
/// failed. A connection on which nothing is said is no call, and foo makes
/// no call to baz, so that destination is never learned (connected to
/// directly): while the programs are attached, every probe goes through
/// the proxy, the last ones included.
const PROBE: &str = r#"
import os, socket, sys, time
made = failed = 0
while not os.path.exists(sys.argv[1]):
    made += 1
    try:
        socket.create_connection(("10.203.0.1", 5002), timeout=2).close()
    except OSError:
        failed += 1
    time.sleep(0.01)
print(made, failed)
"#;

impl Cluster {
    /// Starts [`PROBE`] in foo's container; it stops when `stop` exists.
    fn probe_baz_from_foo(&self, stop: &Path) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec nsenter --net=/run/netns/fbt-foo python3 -c \"$0\" {}",
                self.foo.cgroup.display(),
                stop.display()
            ))
            .arg(PROBE)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the probe starts")
    }
}

/// Half a second between the agent's teardown steps (detach the programs,
/// then close the listeners): with the order reversed, the attached
/// services' connects in that time go to closed listeners, and fail.
const TEARDOWN_PAUSE: &str = "FILIBUSTER_TEARDOWN_PAUSE_MS";

#[test]
fn the_services_own_calls_never_fail_as_the_agent_comes_and_goes() {
    let cluster = Cluster::start("containers-teardown");
    let (dir, config) = (&cluster.dir, cluster.config.as_str());
    // A run that ends on its own, then one stopped mid-run by SIGTERM (its
    // test still sleeping): the agent attaches, injects nothing, and
    // detaches while foo keeps calling bar and bar baz.
    for signal in [None, Some(Signal::SIGTERM)] {
        let running = Arc::new(AtomicBool::new(true));
        let load = load_through_foo(running.clone());
        let stop = dir.join("stop-probing");
        let _ = fs::remove_file(&stop);
        let probe = cluster.probe_baz_from_foo(&stop);
        thread::sleep(Duration::from_millis(300));
        match signal {
            None => {
                let output = filibuster()
                    .args(["test", "--config", config, "--only-initial-execution"])
                    .env(TEARDOWN_PAUSE, "500")
                    .current_dir(dir)
                    .output()
                    .expect("filibuster runs");
                assert_eq!(output.status.code(), Some(0));
            }
            Some(signal) => {
                let agent = filibuster()
                    .args(["test", "--config", config, "--only-initial-execution"])
                    .args(["--functional-test", "sleep 10"])
                    .env(TEARDOWN_PAUSE, "500")
                    .current_dir(dir)
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("filibuster starts");
                let output = signal_mid_run(agent, signal);
                assert_eq!(output.status.code(), Some(128 + signal as i32));
            }
        }
        thread::sleep(Duration::from_millis(300));
        running.store(false, Ordering::Relaxed);
        let (requests, failures) = load.join().unwrap();
        assert!(requests >= 20, "only {requests} requests through foo");
        assert_eq!(failures, 0, "{failures} of {requests} failed ({signal:?})");
        fs::write(&stop, "").unwrap();
        let probed = probe.wait_with_output().expect("the probe ends");
        let probed = String::from_utf8_lossy(&probed.stdout);
        let (made, failed) = probed.trim().split_once(' ').expect("the probe's counts");
        assert!(made.parse::<u32>().unwrap() >= 50, "only {made} probes");
        assert_eq!(failed, "0", "{failed} of {made} probes failed ({signal:?})");
    }
    cluster.assert_left_as_found();
}
