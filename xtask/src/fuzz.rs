//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` (one per parser of
//! outside input), built with libFuzzer's coverage instrumentation and run
//! for a while each, from the corpus kept in `fuzz/corpus/<target>`.
//!
//! Built without cargo-fuzz: its sanitizer flag needs a nightly compiler,
//! and the coverage passes libFuzzer needs are plain `-C` flags that this
//! stable toolchain takes. They go to the host target only (named
//! explicitly), not to build scripts or to the kernel programs' own build.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use crate::run;

/// Every fuzz target, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 8] = [
    "observed_heads",
    "observed_frames",
    "sniffed",
    "config",
    "counterexample",
    "analysis",
    "source",
    "loop_result",
];

const HOST: &str = "x86_64-unknown-linux-gnu";

/// Runs each of `targets` (all when empty) for `each`.
pub fn run_targets(root: &Path, targets: &[String], each: Duration) -> Result<()> {
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for target in targets {
            if !TARGETS.contains(&target.as_str()) {
                bail!(
                    "no fuzz target `{target}`: the targets are {}",
                    TARGETS.join(", ")
                );
            }
        }
        targets.iter().map(String::as_str).collect()
    };
    let target_dir = root.join("target/fuzz");
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--package",
            "filibuster-fuzz",
            "--target",
            HOST,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-Cpasses=sancov-module \
             -Cllvm-args=-sanitizer-coverage-level=4 \
             -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
             -Cllvm-args=-sanitizer-coverage-pc-table \
             -Cllvm-args=-sanitizer-coverage-trace-compares \
             --cfg fuzzing -Cdebug-assertions -Coverflow-checks",
        )
        .current_dir(root))?;
    let work = std::env::temp_dir().join("filibuster-fuzz");
    for target in targets {
        // New inputs go to a scratch corpus; the repository's is read only.
        let found = work.join(target);
        std::fs::create_dir_all(&found)?;
        let seeds = root.join("fuzz/corpus").join(target);
        println!("fuzz: {target} for {}s", each.as_secs());
        let status = Command::new(target_dir.join(HOST).join("release").join(target))
            .arg(format!("-max_total_time={}", each.as_secs()))
            .arg(format!("-artifact_prefix={}/", found.display()))
            .arg("-print_final_stats=0")
            .arg(&found)
            .arg(&seeds)
            .status()
            .with_context(|| format!("cannot run fuzz target {target}"))?;
        if !status.success() {
            bail!(
                "fuzz target {target} found an input that fails ({status}): see the crash-* file in {} and add it to fuzz/corpus/{target} once fixed",
                found.display()
            );
        }
    }
    Ok(())
}
