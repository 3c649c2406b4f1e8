//! `filibuster`: the command line (see `filibuster --help`).
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Parser, Subcommand};
use filibuster::{
    Analysis,
    runner::{self, Verdict},
};
use tokio::signal::unix::{SignalKind, signal};

/// Service-level fault injection testing for unmodified services.
///
/// Exit status: 0 every execution passed; 1 an execution failed (a
/// counterexample was written or reproduced); 2 usage, config or
/// environment error.
#[derive(Parser)]
#[command(name = "filibuster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the functional test under every combination of faults that matters.
    Test(Box<TestArgs>),
    /// Observe the application without injecting anything and print the
    /// calls seen: during one run of the functional test, or for a while.
    Trace(TraceArgs),
    /// Render a saved JSON report (`test --report-json`) as a
    /// self-contained HTML page.
    Report(ReportArgs),
    /// Check that this host has what the agent needs (root, the kernel,
    /// cgroup v2, the kernel programs loading, container engines), and say
    /// what to do where it does not. Exit 0 when it is ready.
    Doctor,
    /// Remove what an agent killed with SIGKILL left on this host: its
    /// cgroups, and the services still running in them. `test` does this
    /// when it starts, too.
    Cleanup,
    /// Find the error statuses each service's source can answer with.
    ///
    /// Each subdirectory of the services directory is a service named after
    /// it. Pass the output to `filibuster test --analysis-file`.
    Analyze(AnalyzeArgs),
}

/// What every command that runs the application takes.
#[derive(clap::Args)]
struct RunArgs {
    /// The run's config file (services and test); commands run from its directory.
    #[arg(long, default_value = "filibuster.toml")]
    config: PathBuf,
    /// Seconds one execution of the test may take before it counts as hung.
    #[arg(long, default_value_t = 60)]
    execution_timeout: u64,
    /// Seconds the services may take to start listening.
    #[arg(long, default_value_t = 30)]
    startup_timeout: u64,
    /// Loopback port of the control API that tests ask about injected
    /// faults (the test finds it in FILIBUSTER_CONTROL_URL). Default: 5005,
    /// or a free port when a service is declared on 5005.
    #[arg(long)]
    control_port: Option<u16>,
    /// Print the kernel programs' own diagnostics (each connect's
    /// decision: redirected, refused, direct, observed) as they come.
    #[arg(long)]
    kernel_log: bool,
}

#[derive(clap::Args)]
struct TraceArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Watch the services' traffic for this many seconds instead of
    /// running the functional test.
    #[arg(long)]
    duration: Option<u64>,
    /// Also write the calls seen here, as JSON.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The JSON report `filibuster test --report-json` wrote.
    #[arg(long)]
    json: PathBuf,
    /// Where to write the HTML page.
    #[arg(long)]
    html: PathBuf,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// The directory holding one subdirectory of source per service.
    #[arg(long)]
    services_directory: PathBuf,
    /// Where to write the analysis (JSON).
    #[arg(long, default_value = "analysis.json")]
    output_file: PathBuf,
}

#[derive(clap::Args)]
struct TestArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The functional test command (overrides [test] of the config).
    #[arg(long)]
    functional_test: Option<String>,
    /// Start the test once and drive it with the test-loop protocol.
    #[arg(long)]
    test_loop: bool,
    /// Replay exactly the execution this counterexample describes.
    #[arg(long)]
    counterexample_file: Option<PathBuf>,
    /// Where to write a counterexample when an execution fails.
    #[arg(long, default_value = "counterexample.json")]
    counterexample_output: PathBuf,
    /// Run only the fault-free execution.
    #[arg(long)]
    only_initial_execution: bool,
    /// How to search: `guided` (bugs first, cheapest equivalent faults,
    /// bounded retries) or `filibuster` (the original tool's, exactly).
    #[arg(long, value_enum, default_value_t)]
    search: filibuster::Search,
    /// Guided search: combine faults freely over the first N attempts of a
    /// call repeated under one request (a retry, a poll); a later attempt
    /// fails only when every attempt before it failed the same way.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    retry_depth: u32,
    /// Run every scheduled execution, even those whose outcomes were already seen.
    #[arg(long)]
    disable_dynamic_reduction: bool,
    /// Inject at most this many faults in one execution.
    #[arg(long)]
    max_faults: Option<usize>,
    /// Explore every combination and report every failing one, instead of
    /// stopping at the first.
    #[arg(long)]
    keep_going: bool,
    /// Hand out at most this many executions (bugs first), then end with
    /// what was covered and what was left.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_executions: Option<u64>,
    /// Hand out no execution after this long (`90s`, `10m`, `1h`), then end
    /// with what was covered and what was left.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    time_budget: Option<Duration>,
    /// Also try, on calls to a service, the error statuses it was seen
    /// answering with during the run.
    #[arg(long)]
    learn_faults: bool,
    /// Also fail calls a service makes outside every request of the test
    /// (a health check, a poller, work after its answer). Off by default:
    /// when they happen depends on the clock, so such a failure may not
    /// replay.
    #[arg(long)]
    fail_calls_outside_requests: bool,
    /// Also try the error statuses `filibuster analyze` found in each
    /// service's source.
    #[arg(long, conflicts_with = "analyze")]
    analysis_file: Option<PathBuf>,
    /// Analyse the services' source under DIR first (one subdirectory per
    /// service, as `filibuster analyze` reads it) and try the statuses it
    /// finds; overrides `[analysis]` of the config.
    #[arg(long, value_name = "DIR")]
    analyze: Option<PathBuf>,
    /// Write a JSON report of the run here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write a JUnit XML report here: one test case per execution.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (no network needed to view).
    #[arg(long)]
    report_html: Option<PathBuf>,
    /// Run up to this many executions side by side, each in its own copy
    /// of the services (a cell: a network namespace and cgroups); `auto`
    /// adds cells while the time held for timeouts pays for them. With
    /// services the agent attaches to, one.
    #[arg(long, default_value = "auto", value_parser = parse_cells)]
    cells: runner::CellCount,
}

/// `auto` or a number of cells from 1 to the most a run uses.
fn parse_cells(text: &str) -> Result<runner::CellCount, String> {
    match text {
        "auto" => Ok(runner::CellCount::Auto),
        _ => match text.parse::<usize>() {
            Ok(n @ 1..=runner::MAX_CELLS) => Ok(runner::CellCount::Exactly(n)),
            _ => Err(format!(
                "expected `auto` or a number from 1 to {}",
                runner::MAX_CELLS
            )),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    filibuster::raise_descriptor_limit();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FILIBUSTER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        // The run handles signals itself: it still writes what it found.
        Commands::Test(args) => {
            exit_code(block_on(runner::run(test_options(args))).map(Ended::Ran))
        }
        Commands::Trace(args) => interruptible(async move {
            runner::trace(runner::TraceOptions {
                config: args.run.config,
                duration: args.duration.map(Duration::from_secs),
                execution_timeout: Duration::from_secs(args.run.execution_timeout),
                startup_timeout: Duration::from_secs(args.run.startup_timeout),
                control_port: args.run.control_port,
                kernel_log: args.run.kernel_log,
                report_json: args.report_json,
            })
            .await
            .map(|()| Verdict::Passed)
        }),
        Commands::Analyze(args) => exit_code(analyze(&args).map(|()| Ended::Ran(Verdict::Passed))),
        Commands::Cleanup => exit_code(runner::clean_up().map(|()| Ended::Ran(Verdict::Passed))),
        Commands::Doctor => {
            let (lines, ready) = filibuster::doctor::report(&filibuster::doctor::checks());
            println!("filibuster doctor\n{lines}");
            if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Commands::Report(args) => {
            exit_code(render_report(&args).map(|()| Ended::Ran(Verdict::Passed)))
        }
    }
}

fn test_options(args: Box<TestArgs>) -> runner::Options {
    let args = *args;
    runner::Options {
        config: args.run.config,
        functional_test: args.functional_test,
        test_loop: args.test_loop,
        counterexample_file: args.counterexample_file,
        only_initial_execution: args.only_initial_execution,
        search: args.search,
        dynamic_reduction: !args.disable_dynamic_reduction,
        max_faults: args.max_faults,
        retry_depth: args.retry_depth,
        keep_going: args.keep_going,
        budget: runner::Budget {
            executions: args.max_executions.map(|n| n as usize),
            time: args.time_budget,
        },
        learn_faults: args.learn_faults,
        fail_calls_outside_requests: args.fail_calls_outside_requests,
        analysis_file: args.analysis_file,
        analyze: args.analyze,
        report_json: args.report_json,
        junit: args.junit,
        report_html: args.report_html,
        counterexample_output: args.counterexample_output,
        execution_timeout: Duration::from_secs(args.run.execution_timeout),
        startup_timeout: Duration::from_secs(args.run.startup_timeout),
        control_port: args.run.control_port,
        kernel_log: args.run.kernel_log,
        cells: args.cells,
    }
}

/// Runs `work` until it ends or a SIGINT, SIGTERM, SIGHUP or SIGQUIT
/// arrives (a closed terminal or ssh session, Ctrl-\\ as well as Ctrl-C).
/// Dropping the work on a signal runs its cleanup: services ended, cgroups
/// removed, programs detached.
/// Runs `work` on the agent's runtime to its end.
fn block_on<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    // The run's own work (the control API, the test, the search) needs one
    // thread; the proxy runs on threads of its own (`proxy::Threads`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(work);
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

fn interruptible(work: impl Future<Output = Result<Verdict>>) -> ExitCode {
    exit_code(block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut quit = signal(SignalKind::quit())?;
        Ok(tokio::select! {
            result = work => Ended::Ran(result?),
            _ = interrupt.recv() => Ended::Signalled(libc::SIGINT),
            _ = terminate.recv() => Ended::Signalled(libc::SIGTERM),
            _ = hangup.recv() => Ended::Signalled(libc::SIGHUP),
            _ = quit.recv() => Ended::Signalled(libc::SIGQUIT),
        })
    }))
}

/// How a command ended, when it did not fail.
enum Ended {
    Ran(Verdict),
    /// Stopped by this signal, after cleaning up.
    Signalled(i32),
}

fn render_report(args: &ReportArgs) -> Result<()> {
    filibuster::render_saved_report(&args.json, &args.html)?;
    eprintln!("filibuster: HTML report written to {}", args.html.display());
    Ok(())
}

fn analyze(args: &AnalyzeArgs) -> Result<()> {
    let analysis = Analysis::of_directory(&args.services_directory)?;
    for line in analysis.describe() {
        eprintln!("filibuster: {line}");
    }
    analysis.write(&args.output_file)?;
    eprintln!(
        "filibuster: analysis written to {}",
        args.output_file.display()
    );
    Ok(())
}

fn exit_code(outcome: Result<Ended>) -> ExitCode {
    match outcome {
        Ok(Ended::Ran(Verdict::Passed)) => ExitCode::SUCCESS,
        Ok(Ended::Ran(Verdict::Failed)) => ExitCode::from(1),
        Ok(Ended::Signalled(signal)) => {
            eprintln!("filibuster: interrupted; services stopped and cgroups removed");
            // As shells report a process a signal ended: 128 + its number.
            ExitCode::from(128 + signal as u8)
        }
        Err(e) => match e.downcast_ref::<runner::Interrupted>() {
            Some(&runner::Interrupted(signal)) => exit_code(Ok(Ended::Signalled(signal))),
            None => {
                eprintln!("filibuster: error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::Cli;

    /// `docs/cli.md` and `docs/man/`, generated from the definitions above
    /// so that they cannot drift from `--help`: a change to a flag fails
    /// this test until they are written anew with
    /// `FILIBUSTER_WRITE_DOCS=1 cargo test -p filibuster-agent --bin filibuster`.
    #[test]
    fn the_committed_cli_reference_and_man_pages_are_the_command_lines() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let mut pages = vec![("cli.md".to_string(), clap_markdown::help_markdown::<Cli>())];
        let command = Cli::command();
        let man = |command: clap::Command, title: &str| {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .title(title)
                .render(&mut page)
                .expect("a man page");
            String::from_utf8(page).expect("UTF-8")
        };
        pages.push((
            "man/filibuster.1".into(),
            man(command.clone(), "filibuster"),
        ));
        for subcommand in command.get_subcommands() {
            let name = format!("filibuster-{}", subcommand.get_name());
            let named = subcommand
                .clone()
                .display_name(&name)
                .bin_name(format!("filibuster {}", subcommand.get_name()));
            pages.push((format!("man/{name}.1"), man(named, &name)));
        }
        let write = std::env::var_os("FILIBUSTER_WRITE_DOCS").is_some();
        for (path, generated) in pages {
            let path = docs.join(path);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &generated).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == generated,
                "{} is stale: write it anew with FILIBUSTER_WRITE_DOCS=1 cargo test -p filibuster-agent --bin filibuster",
                path.display()
            );
        }
    }
}
