//! Helpers for the end-to-end suites in `tests/tests`: build and run the
//! `filibuster` binary against the bundled examples.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The `filibuster` binary, built from this workspace once per test
/// process (with the examples' Rust service, which configs run from
/// `target/debug`).
pub fn filibuster() -> Command {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    let binary = BINARY.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--package",
                "filibuster-agent",
                "--package",
                "polyglot-gateway",
            ])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building filibuster failed");
        workspace().join("target/debug/filibuster")
    });
    Command::new(binary)
}

/// A fresh directory for one test's outputs.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("filibuster-tests-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `filibuster test` with `args` from `dir`; returns its output.
/// One cell unless `args` say otherwise: the suites check the exact
/// execution counts of the search one execution at a time, which more
/// cells may exceed (see README, "Cells").
pub fn run_test(dir: &Path, args: &[&str]) -> Output {
    let one_cell = (!args.contains(&"--cells")).then_some(["--cells", "1"]);
    // The suites check the original tool's execution counts; the guided
    // search has its own suite (search.rs).
    let filibusters = (!args.contains(&"--search")).then_some(["--search", "filibuster"]);
    let output = filibuster()
        .arg("test")
        .args(args)
        .args(one_cell.iter().flatten())
        .args(filibusters.iter().flatten())
        .current_dir(dir)
        .output()
        .expect("filibuster runs");
    eprintln!(
        "--- filibuster {args:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Replays, from `dir`, the `counterexample.json` a run wrote there, with
/// `config`.
pub fn replay(dir: &Path, config: &str) -> Output {
    run_test(
        dir,
        &[
            "--config",
            config,
            "--counterexample-file",
            "counterexample.json",
        ],
    )
}

/// Runs the tutorial's buggy application, however it is deployed, under
/// `config` with `args`, and checks that foo's bug is found (foo's call to
/// bar refused) and that its replay fails the same way.
pub fn assert_finds_foos_bug(dir: &Path, config: &str, args: &[&str]) {
    let output = run_test(dir, &[&["--config", config], args].concat());
    assert_eq!(output.status.code(), Some(1), "foo's bug is found");
    let counterexample = read_json(&dir.join("counterexample.json"));
    let fault = &counterexample["faults"][0];
    assert_eq!(fault["site"]["caller"], "foo");
    assert_eq!(fault["site"]["callee"], "bar");
    assert_eq!(fault["fault"]["kind"], "connection-refused");
    assert_eq!(
        replay(dir, config).status.code(),
        Some(1),
        "the replay fails the same way"
    );
}

/// A copy of `example`'s config in `dir`, with `extra` appended: its
/// commands still run in the example's directory.
pub fn config_variant(example: &Path, extra: &str, dir: &Path) -> PathBuf {
    let original =
        std::fs::read_to_string(example.join("filibuster.toml")).expect("example config");
    let cd = format!("cd '{}' && ", example.display());
    let text = original
        .replace("command = \"", &format!("command = \"{cd}"))
        .replace(
            "pytest = \"",
            &format!("loop = true\ncommand = \"{cd}python3 -m pytest -q -p no:cacheprovider "),
        );
    let path = dir.join("filibuster.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).expect("config variant written");
    path
}

/// Reads a JSON file the run wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// The cgroups of Filibuster runs that are still on this host: under the
/// cgroup v2 mount, and, on a hybrid host, where `[limits]` are kept, the
/// v1 `pids` and `memory` hierarchies.
pub fn leftover_cgroups() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let v1 = mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let limits = |o: &str| o == "pids" || o == "memory";
        (f.get(2) == Some(&"cgroup") && f.get(3).is_some_and(|o| o.split(',').any(limits)))
            .then(|| PathBuf::from(f[1]))
    });
    cgroup_mount()
        .into_iter()
        .chain(v1)
        .flat_map(|mount| std::fs::read_dir(mount).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("filibuster-"))
        })
        .collect()
}

/// Where cgroup v2 is mounted.
pub fn cgroup_mount() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .ok_or_else(|| anyhow::anyhow!("no cgroup2 mount"))
}

/// Filibuster's kernel programs still loaded in the kernel (by anyone),
/// after giving the kernel a moment to free those whose last link closed.
pub fn our_programs_loaded() -> Vec<String> {
    use filibuster_common::programs;
    let ours = [
        programs::CONNECT4,
        programs::CONNECT6,
        programs::GETPEERNAME4,
        programs::GETPEERNAME6,
        programs::SOCK_OPS,
        programs::SENDS,
        programs::READS,
    ];
    let loaded = || -> Vec<String> {
        aya::programs::loaded_programs()
            .flatten()
            .filter_map(|program| program.name_as_str().map(str::to_string))
            .filter(|name| ours.contains(&name.as_str()))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let left = loaded();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A tutorial service the harness starts itself, as a container engine or
/// systemd would: in a cgroup of its own and, if given, a network namespace
/// of its own (a name under `/run/netns`). Ended, and its cgroup removed
/// (with its parent, if that is a harness cgroup), on drop.
pub struct HarnessService {
    pub process: Child,
    pub cgroup: PathBuf,
}

impl HarnessService {
    pub fn start(
        cgroup: PathBuf,
        netns: Option<&str>,
        script: &str,
        env: &[(&str, String)],
    ) -> Self {
        std::fs::create_dir_all(&cgroup).expect("the service's cgroup");
        let enter = netns.map_or(String::new(), |netns| {
            format!("nsenter --net=/run/netns/{netns} ")
        });
        let process = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec {enter}python3 {script}",
                cgroup.display()
            ))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(workspace().join("examples/tutorial"))
            .spawn()
            .expect("the service starts");
        Self { process, cgroup }
    }
}

impl Drop for HarnessService {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.cgroup).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(parent) = self.cgroup.parent().filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fbtest-"))
        }) {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Checks the JSON report at `path` against `docs/report.schema.json`
/// (with Python's jsonschema, which setup installs).
pub fn assert_valid_report(path: &Path) {
    let schema = workspace().join("docs/report.schema.json");
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 report = json.load(open(sys.argv[2]))\n\
                 validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())\n\
                 errors = [f'{list(e.absolute_path)}: {e.message}' for e in validator.iter_errors(report)]\n\
                 sys.exit('\\n'.join(errors[:10]) if errors else 0)\n";
    let output = Command::new("python3")
        .args(["-c", check])
        .arg(&schema)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{} does not follow {}:\n{}",
        path.display(),
        schema.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
