//! Docker for real: the tutorial's three services as Docker containers on
//! a user-defined network, calling each other by container name through
//! Docker's DNS, foo published on `127.0.0.1` as Compose users publish
//! their front (`ports: ["127.0.0.1:5100:5000"]`), and the test on the host
//! reaching it there, through docker-proxy. No registry is reached: the
//! image is empty (`docker import`), the host's `/usr` and Python are
//! mounted read-only. The agent attaches by container name and by Compose
//! project, finds foo's bug and replays it; afterwards the containers
//! serve on, unintercepted, with nothing of ours left.
//!
//! dockerd has no systemd to start it here: the suite starts it when none
//! runs, and stops it after, with the host's firewall rules as they were
//! (dockerd sets the FORWARD policy to DROP, which would cut other
//! bridges off).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use filibuster_tests::{
    assert_finds_foos_bug, leftover_cgroups, our_programs_loaded, scratch, workspace,
};

const NETWORK: &str = "fbt-docker";
const PROJECT: &str = "fbt-dshop";
const IMAGE: &str = "filibuster-test-empty";
/// Where foo is published on the host.
const FOO_PUBLISHED: &str = "127.0.0.1:5100";

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs (cargo xtask test installs docker.io)");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The filter and nat tables with nothing in them.
const CLEAN_RULES: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
     *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";

/// A running dockerd: the one found, or one started and, when dropped,
/// stopped with the firewall rules restored as they were before it.
struct Dockerd {
    started: Option<(Child, Vec<u8>)>,
}

impl Dockerd {
    fn ensure() -> Self {
        if docker_answers() {
            return Self { started: None };
        }
        let rules = Command::new("iptables-save")
            .output()
            .expect("iptables-save runs")
            .stdout;
        let log = std::fs::File::create(scratch("dockerd").join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd starts (cargo xtask test installs docker.io)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_answers() {
            assert!(Instant::now() < deadline, "dockerd never answered");
            std::thread::sleep(Duration::from_millis(200));
        }
        Self {
            started: Some((child, rules)),
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some((mut child, rules)) = self.started.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
        // Tables empty before dockerd are not in its dump: clear the
        // tables it writes first, then put back what was there.
        if let Ok(mut restore) = Command::new("iptables-restore")
            .stdin(Stdio::piped())
            .spawn()
        {
            let mut input = restore.stdin.take().unwrap();
            let _ = input.write_all(CLEAN_RULES.as_bytes());
            let _ = input.write_all(&rules);
            drop(input);
            let _ = restore.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", "docker0"])
            .status();
    }
}

/// The three containers on their network, removed when dropped (before
/// the daemon, which is declared first).
struct Shop {
    _dockerd: Dockerd,
}

impl Shop {
    fn start() -> Self {
        let dockerd = Dockerd::ensure();
        Self::remove();
        let empty = scratch("docker-image").join("empty.tar");
        assert!(
            Command::new("tar")
                .args(["cf", empty.to_str().unwrap(), "--files-from", "/dev/null"])
                .status()
                .unwrap()
                .success()
        );
        docker(&["import", empty.to_str().unwrap(), IMAGE]);
        docker(&["network", "create", NETWORK]);
        let python = String::from_utf8(
            Command::new("python3")
                .args([
                    "-c",
                    "import sys; print(sys.executable); print(sys.base_prefix)",
                ])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let (executable, prefix) = python.trim().split_once('\n').unwrap();
        let tutorial = workspace().join("examples/tutorial");
        let mounts: Vec<String> = ["/usr", "/lib", "/lib64", "/bin", prefix]
            .into_iter()
            .map(PathBuf::from)
            .chain([tutorial.clone()])
            .filter(|path| path.exists())
            .map(|path| format!("{0}:{0}:ro", path.display()))
            .collect();
        for (service, env, publish) in [
            ("baz", "", None),
            ("bar", "BAZ_URL=http://fbd-baz:5002", None),
            ("foo", "BAR_URL=http://fbd-bar:5001", Some(FOO_PUBLISHED)),
        ] {
            let name = format!("fbd-{service}");
            let project = format!("com.docker.compose.project={PROJECT}");
            let label = format!("com.docker.compose.service={service}");
            let app = format!("services/{service}/app.py");
            let published = publish.map(|at| format!("{at}:5000"));
            let mut args = vec![
                "run",
                "--detach",
                "--name",
                &name,
                "--network",
                NETWORK,
                "--label",
                &project,
                "--label",
                &label,
                "--workdir",
                tutorial.to_str().unwrap(),
            ];
            for mount in &mounts {
                args.extend(["--volume", mount]);
            }
            if let Some(published) = &published {
                args.extend(["--publish", published]);
            }
            if !env.is_empty() {
                args.extend(["--env", env]);
            }
            args.extend([IMAGE, executable, &app]);
            docker(&args);
        }
        let shop = Self { _dockerd: dockerd };
        let deadline = Instant::now() + Duration::from_secs(30);
        while shop.ask_foo().as_deref() != Some("foo bar baz") {
            assert!(Instant::now() < deadline, "the containers never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        shop
    }

    /// foo's answer to the tutorial's request, asked where it is published.
    fn ask_foo(&self) -> Option<String> {
        let mut stream = TcpStream::connect(FOO_PUBLISHED).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET /foo/bar/baz HTTP/1.0\r\nHost: localhost\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.trim().to_string())
    }

    /// A config whose test reaches foo at `localhost` through its
    /// published port, as a test of a Compose application does.
    fn config(&self, dir: &std::path::Path, name: &str, services: &str) -> String {
        let tutorial = workspace().join("examples/tutorial");
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[test]\ncommand = \"cd {} && FOO_URL=http://localhost:5100 python3 functional/test_foo_bar_baz.py\"\n{services}",
                tutorial.display(),
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    fn assert_left_as_found(&self) {
        for service in ["foo", "bar", "baz"] {
            let running = docker(&[
                "container",
                "inspect",
                "--format",
                "{{.State.Running}}",
                &format!("fbd-{service}"),
            ]);
            assert_eq!(running, "true", "fbd-{service} still runs");
        }
        assert_eq!(
            self.ask_foo().as_deref(),
            Some("foo bar baz"),
            "served on, unintercepted"
        );
        assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
        assert!(our_programs_loaded().is_empty());
    }

    fn remove() {
        for service in ["foo", "bar", "baz"] {
            let _ = Command::new("docker")
                .args(["rm", "--force", &format!("fbd-{service}")])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", NETWORK])
            .output();
        let _ = Command::new("docker").args(["rmi", IMAGE]).output();
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        Self::remove();
    }
}

#[test]
fn docker_containers_tested_through_a_published_port() {
    let shop = Shop::start();
    let dir = scratch("engine-docker");

    // By container name, resolved through `docker container inspect`;
    // the test's call to localhost:5100 is foo's, so what foo does while
    // serving it (calling bar) is under test.
    let by_name = shop.config(
        &dir,
        "by-name.toml",
        "[services.foo]\ncontainer = \"fbd-foo\"\nport = 5000\n\
         [services.bar]\ncontainer = \"fbd-bar\"\nport = 5001\n\
         [services.baz]\ncontainer = \"fbd-baz\"\nport = 5002\n",
    );
    assert_finds_foos_bug(&dir, &by_name, &[]);
    shop.assert_left_as_found();

    // A Compose project: only [test] and [compose] to write.
    let compose = shop.config(
        &dir,
        "compose.toml",
        &format!("[compose]\nproject = \"{PROJECT}\"\n"),
    );
    assert_finds_foos_bug(&dir, &compose, &["--search", "guided"]);
    shop.assert_left_as_found();
}
