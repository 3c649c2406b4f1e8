//! A real container engine: the tutorial's three services as Podman
//! containers on a Podman network, calling each other by container name
//! through the engine's DNS. No registry is reached: each container's root
//! filesystem is the host's, under an overlay (`--rootfs /:O`), so it runs
//! the host's Python and Flask. The agent attaches by `container =` and by
//! Compose project, finds foo's bug and replays it; afterwards the
//! containers serve on, unintercepted, with nothing of ours left.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use filibuster_tests::{
    assert_finds_foos_bug, leftover_cgroups, our_programs_loaded, run_test, scratch, workspace,
};

const NETWORK: &str = "fbtengine";
const PROJECT: &str = "fbt-shop";

fn podman(args: &[&str]) -> String {
    let output = Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs (cargo xtask test installs it)");
    assert!(
        output.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The three containers on their network, removed when dropped.
struct Shop {
    foo_url: String,
}

impl Shop {
    fn start() -> Self {
        Self::remove();
        podman(&["network", "create", NETWORK]);
        let python = String::from_utf8(
            Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let tutorial = workspace().join("examples/tutorial");
        for (service, env) in [
            ("baz", ""),
            ("bar", "BAZ_URL=http://fbt-baz:5002"),
            ("foo", "BAR_URL=http://fbt-bar:5001"),
        ] {
            let name = format!("fbt-{service}");
            let project = format!("com.docker.compose.project={PROJECT}");
            let label = format!("com.docker.compose.service={service}");
            let app = format!("services/{service}/app.py");
            let mut args = vec![
                "--runtime",
                "runc",
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
                // Within this host's limits (Podman's defaults are above).
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
                "--workdir",
                tutorial.to_str().unwrap(),
            ];
            if !env.is_empty() {
                args.extend(["--env", env]);
            }
            args.extend(["--rootfs", "/:O", python.trim(), &app]);
            podman(&args);
        }
        let ip = podman(&[
            "container",
            "inspect",
            "--format",
            &format!("{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}"),
            "fbt-foo",
        ]);
        let shop = Self {
            foo_url: format!("http://{ip}:5000"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while shop.ask_foo().as_deref() != Some("foo bar baz") {
            assert!(Instant::now() < deadline, "the containers never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        shop
    }

    /// foo's answer to the tutorial's request, asked directly.
    fn ask_foo(&self) -> Option<String> {
        let address = self.foo_url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET /foo/bar/baz HTTP/1.0\r\nHost: {address}\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.trim().to_string())
    }

    fn config(&self, dir: &std::path::Path, name: &str, services: &str) -> String {
        let tutorial = workspace().join("examples/tutorial");
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[test]\ncommand = \"cd {} && FOO_URL={} python3 functional/test_foo_bar_baz.py\"\n{services}",
                tutorial.display(),
                self.foo_url
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    fn assert_left_as_found(&self) {
        for service in ["foo", "bar", "baz"] {
            let running = podman(&[
                "container",
                "inspect",
                "--format",
                "{{.State.Running}}",
                &format!("fbt-{service}"),
            ]);
            assert_eq!(running, "true", "fbt-{service} still runs");
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
            let _ = Command::new("podman")
                .args(["rm", "--force", "--time", "0", &format!("fbt-{service}")])
                .output();
        }
        let _ = Command::new("podman")
            .args(["network", "rm", "--force", NETWORK])
            .output();
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        Self::remove();
    }
}

#[test]
fn podman_containers_by_name_and_by_compose_project() {
    let shop = Shop::start();
    let dir = scratch("engine-podman");

    // By container name, resolved through `podman container inspect`.
    let by_name = shop.config(
        &dir,
        "by-name.toml",
        "[services.foo]\ncontainer = \"fbt-foo\"\nport = 5000\n\
         [services.bar]\ncontainer = \"fbt-bar\"\nport = 5001\n\
         [services.baz]\ncontainer = \"fbt-baz\"\nport = 5002\n",
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

    // A project that is not running: one line, nothing attached.
    let missing = shop.config(&dir, "missing.toml", "[compose]\nproject = \"nope\"\n");
    let output = run_test(&dir, &["--config", &missing]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no running container of Compose project `nope`"),
        "{stderr}"
    );
    shop.assert_left_as_found();
}
