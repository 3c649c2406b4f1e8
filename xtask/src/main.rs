//! Developer tasks. Each one sets up what it needs first, so the same
//! command works on a fresh Linux host and on a warm one.
//!
//!   cargo xtask setup   install the toolchain pieces and Python packages
//!   cargo xtask demo    set up, build, and run the bundled tutorial (finds its bug)
//!   cargo xtask test    set up, lint, then run every test: unit, kernel and end to end
//!   cargo xtask bench   set up, build in release mode, measure, print one table

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod fuzz;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent; needs root).
    Setup,
    /// Set up, build, and run Filibuster on the bundled tutorial example.
    Demo,
    /// Set up, lint, then run the unit tests, the root-only end-to-end
    /// suites, and each fuzz target briefly.
    Test,
    /// Run the fuzz targets (every parser of outside input), each for a
    /// while, from the corpus in fuzz/corpus.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (all when none is given).
        targets: Vec<String>,
    },
    /// Measure interception overhead, exploration speed and the agent's
    /// footprint, side by side, and print one table (needs root).
    Bench {
        /// Also write the table to bench/results/<date>.md.
        #[arg(long)]
        save: bool,
        /// Measure only these parts (all when none is given).
        #[arg(long, value_enum)]
        only: Vec<bench::Section>,
        /// Measure interception over only these wires (all when none is given).
        #[arg(long, value_enum)]
        wire: Vec<bench::Wire>,
    },
}

/// How long `cargo xtask test` fuzzes each target.
const FUZZ_IN_TESTS: Duration = Duration::from_secs(10);

/// Debian packages: LLVM for bpf-linker, and what the examples use.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // A cache for the examples, passed through as TCP. (Node.js and npm
    // come with the machine, from NodeSource; Debian's npm would conflict.)
    "redis-server",
    // `ip` and `nsenter`: the container tests build namespaces and bridges.
    "iproute2",
    "util-linux",
];
/// What only the tests need: the HTML report is checked in a real browser;
/// real container engines run the tutorial's services: Docker (its suite
/// starts dockerd itself, there is no systemd) and Podman, with runc (crun
/// refuses this host's hybrid cgroup layout), netavark and aardvark-dns (a
/// network whose containers reach each other by name), iptables (both
/// engines' firewall driver; without it a container's network cannot be
/// set up).
const TEST_APT_PACKAGES: &[&str] = &[
    "chromium",
    "docker.io",
    "podman",
    "runc",
    "netavark",
    "aardvark-dns",
    "iptables",
];
const PYTHON_PACKAGES: &[&str] = &[
    "flask",
    "requests",
    "pytest",
    "grpcio",
    "redis",
    // The storefront example: async services as they are usually written.
    "fastapi",
    "uvicorn",
    "httpx",
    // The end-to-end suites check reports against docs/report.schema.json.
    "jsonschema",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup => setup(&root),
        Task::Demo => {
            setup(&root)?;
            run(Command::new("cargo")
                .args(["build", "--release", "--package", "filibuster-agent"])
                .current_dir(&root))?;
            let status = Command::new(root.join("target/release/filibuster"))
                .args(["test", "--config", "examples/tutorial/filibuster.toml"])
                .current_dir(&root)
                .status()
                .context("cannot start filibuster")?;
            // Exit 1 is the expected outcome here: the tutorial has a bug.
            match status.code() {
                Some(1) => {
                    println!(
                        "\nThe bug above is the tutorial's. The fixed variant passes:\n  sudo target/release/filibuster test --config examples/tutorial/fixed.toml"
                    );
                    Ok(())
                }
                _ => bail!(
                    "the demo should have found the tutorial's bug, but filibuster ended with {status}"
                ),
            }
        }
        Task::Fuzz { seconds, targets } => {
            fuzz::run_targets(&root, &targets, Duration::from_secs(seconds))
        }
        Task::Bench { save, only, wire } => {
            setup(&root)?;
            bench::run_all(&root, &only, &wire, save)
        }
        Task::Test => {
            setup(&root)?;
            apt_install(TEST_APT_PACKAGES)?;
            run(Command::new("cargo")
                .args(["fmt", "--all", "--check"])
                .current_dir(&root))?;
            // The default members and the end-to-end suites: the eBPF crate
            // only builds for its own target, the fuzz targets with the
            // fuzzer's instrumentation.
            run(Command::new("cargo")
                .args([
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "filibuster-ebpf",
                    "--exclude",
                    "filibuster-fuzz",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .current_dir(&root))?;
            // Fast tests first: the search on models, parsing, layouts.
            run(Command::new("cargo")
                .args([
                    "test",
                    "--package",
                    "filibuster-common",
                    "--package",
                    "filibuster-agent",
                ])
                .current_dir(&root))?;
            // The end-to-end suites share the examples' ports and the host's
            // cgroups: one test at a time.
            run(Command::new("cargo")
                .args([
                    "test",
                    "--package",
                    "filibuster-tests",
                    "--",
                    "--test-threads=1",
                ])
                .current_dir(&root))?;
            // Each parser of outside input, briefly, from the kept corpus.
            fuzz::run_targets(&root, &[], FUZZ_IN_TESTS)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn setup(root: &Path) -> Result<()> {
    if !is_root() {
        bail!(
            "setup installs packages and the tests load kernel programs: run as root (sudo -E cargo xtask ...)"
        );
    }
    apt_install(APT_PACKAGES)?;
    let components = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    if !components.lines().any(|c| c.starts_with("rust-src")) {
        println!("setup: adding the rust-src component (the BPF target builds core from source)");
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        println!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)"
        );
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"))?;
    }
    // The polyglot example's Node.js service, from the npm registry, as
    // its lock file pins it.
    let cart = root.join("examples/polyglot/cart");
    if !cart.join("node_modules/@grpc/grpc-js").is_dir() {
        println!("setup: installing the polyglot example's npm packages");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&cart))?;
    }
    // The helpers are installed editable, so the repo's copy is the one used.
    let client = root.join("clients/python");
    let python_ready = output(Command::new("python3").args([
        "-c",
        "import flask, requests, pytest, grpc, redis, jsonschema, filibuster; print(filibuster.__file__)",
    ]))
    .is_ok_and(|path| Path::new(path.trim()).starts_with(&client));
    if !python_ready {
        println!("setup: installing Python packages and the filibuster test helpers");
        run(Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--root-user-action=ignore"])
            .args(PYTHON_PACKAGES)
            .arg("--editable")
            .arg(&client))?;
    }
    Ok(())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// Installs the Debian packages of `packages` that are missing.
fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        println!("setup: installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

fn dpkg_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.contains("install ok installed"))
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
