use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use filibuster::runner::{self, Verdict};
use tokio::signal::unix::{SignalKind, signal};

/// Service-level fault injection testing for unmodified services.
///
/// Exit status: 0 every execution passed; 1 an execution failed (a
/// counterexample was written or reproduced); 2 usage, config or
/// environment error.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the functional test under every combination of faults that matters.
    Test(TestArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    /// The run's config file (services and test); commands run from its directory.
    #[arg(long, default_value = "filibuster.toml")]
    config: PathBuf,
    /// The functional test command (overrides [test].command).
    #[arg(long)]
    functional_test: Option<String>,
    /// Replay exactly the execution this counterexample describes.
    #[arg(long)]
    counterexample_file: Option<PathBuf>,
    /// Where to write a counterexample when an execution fails.
    #[arg(long, default_value = "counterexample.json")]
    counterexample_output: PathBuf,
    /// Run only the fault-free execution.
    #[arg(long)]
    only_initial_execution: bool,
    /// Run every scheduled execution, even those whose outcomes were already seen.
    #[arg(long)]
    disable_dynamic_reduction: bool,
    /// Inject at most this many faults in one execution.
    #[arg(long)]
    max_faults: Option<usize>,
    /// Write a JSON summary of the run here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Seconds one execution of the test may take before it counts as hung.
    #[arg(long, default_value_t = 60)]
    execution_timeout: u64,
    /// Seconds the services may take to start listening.
    #[arg(long, default_value_t = 30)]
    startup_timeout: u64,
    /// Loopback port of the control API that tests ask about injected faults.
    #[arg(long, default_value_t = 5005)]
    control_port: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FILIBUSTER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let Commands::Test(args) = cli.command;
    let options = runner::Options {
        config: args.config,
        functional_test: args.functional_test,
        counterexample_file: args.counterexample_file,
        only_initial_execution: args.only_initial_execution,
        dynamic_reduction: !args.disable_dynamic_reduction,
        max_faults: args.max_faults,
        report_json: args.report_json,
        counterexample_output: args.counterexample_output,
        execution_timeout: Duration::from_secs(args.execution_timeout),
        startup_timeout: Duration::from_secs(args.startup_timeout),
        control_port: args.control_port,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        // Dropping the run on a signal runs its cleanup: services ended,
        // cgroups removed, programs detached.
        tokio::select! {
            result = runner::run(options) => result.map(Some),
            _ = interrupt.recv() => Ok(None),
            _ = terminate.recv() => Ok(None),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(Some(Verdict::Passed)) => ExitCode::SUCCESS,
        Ok(Some(Verdict::Failed)) => ExitCode::from(1),
        Ok(None) => {
            eprintln!("filibuster: interrupted; services stopped and cgroups removed");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("filibuster: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
