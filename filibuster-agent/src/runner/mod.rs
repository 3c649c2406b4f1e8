//! A run: check the host, start the services in their cgroups, attach the
//! kernel programs, then run the functional test once per execution the
//! search asks for, until it is done or (without `--keep-going`) an
//! execution fails; then report.

mod cells;
mod functional;
mod host;
mod host_lock;
mod services;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    analyze::Analysis,
    config::{Config, TestMode, TestSpec},
    explore::{
        Explorer, Fault, FaultSpace, Finished, Options as SearchOptions, Plan, PlannedFault, Search,
    },
    json_file,
    report::{
        self, AgentFootprint, Counterexample, CounterexampleFault, ExecutionResult,
        FailureArtifacts, RunReport, RunSummary, Terminal,
    },
    session::{ConnectTarget, Session},
};
use cells::Cells;
use functional::TestResult;
use host::Host;
pub use host::{CellCount, MAX_CELLS, clean_up};
use tokio::task::JoinSet;

#[derive(Clone, Debug)]
/// What `filibuster test` was asked to do, as the command line gave it.
pub struct Options {
    /// The `filibuster.toml` of the application.
    pub config: PathBuf,
    /// Overrides the config's test command (run per execution, or in a
    /// loop with `test_loop`).
    pub functional_test: Option<String>,
    /// Run the test once as a loop that asks for each execution (`--test-loop`).
    pub test_loop: bool,
    /// Replay this counterexample instead of searching.
    pub counterexample_file: Option<PathBuf>,
    /// Run only the fault-free execution.
    pub only_initial_execution: bool,
    /// Which search orders and prunes the executions.
    pub search: Search,
    /// Skip executions whose faults are implied by earlier ones.
    pub dynamic_reduction: bool,
    /// At most this many faults in one execution.
    pub max_faults: Option<usize>,
    /// How many times a call is failed in a row, for callers that retry.
    pub retry_depth: u32,
    /// Explore everything; report every failing combination.
    pub keep_going: bool,
    /// Where the search stops handing out executions.
    pub budget: Budget,
    /// Add the faults source analysis and earlier runs found to the fault space.
    pub learn_faults: bool,
    /// Fail calls a service makes outside any request of the test's, too.
    pub fail_calls_outside_requests: bool,
    /// An analysis file whose faults join the fault space.
    pub analysis_file: Option<PathBuf>,
    /// A services source tree to analyse before the run.
    pub analyze: Option<PathBuf>,
    /// Where the JSON report is written.
    pub report_json: Option<PathBuf>,
    /// Where the JUnit report is written.
    pub junit: Option<PathBuf>,
    /// A self-contained HTML page of the run.
    pub report_html: Option<PathBuf>,
    /// Where a new counterexample is written.
    pub counterexample_output: PathBuf,
    /// How long one execution's test may take before it is stopped.
    pub execution_timeout: Duration,
    /// How long the services may take to listen.
    pub startup_timeout: Duration,
    /// `None`: the default port, or a free one if a service has it.
    pub control_port: Option<u16>,
    /// Executions run side by side, each in its own copy of the services.
    pub cells: CellCount,
    /// Print the kernel programs' diagnostics (`--kernel-log`).
    pub kernel_log: bool,
}

/// A bound the user sets on a search too big to finish (`--max-executions`,
/// `--time-budget`): executions are handed out, bugs first, until it is
/// reached; those out finish.
#[derive(Clone, Copy, Debug, Default)]
pub struct Budget {
    /// Hand out at most this many executions.
    pub executions: Option<usize>,
    /// Hand out executions for at most this long.
    pub time: Option<Duration>,
}

impl Budget {
    /// Why no more executions are handed out, after `handed_out` of them
    /// and `elapsed` since the run started. The fault-free execution is
    /// always run: it says whether the test passes at all.
    fn reached(&self, handed_out: usize, elapsed: Duration) -> Option<String> {
        if handed_out == 0 {
            return None;
        }
        if let Some(most) = self.executions
            && handed_out >= most
        {
            return Some(format!("{most} executions (--max-executions)"));
        }
        match self.time {
            Some(budget) if elapsed >= budget => Some(format!(
                "{} (--time-budget)",
                humantime::format_duration(budget)
            )),
            _ => None,
        }
    }
}

/// How a run ended, when it could run at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The test passed in every execution.
    Passed,
    /// An execution failed: a counterexample was written.
    Failed,
}

/// What a run has done so far: reported whether it ends well or in error.
/// One execution's run in a cell, as its task hands it back.
struct Ran {
    cell: usize,
    number: usize,
    faults: Vec<PlannedFault>,
    began: Instant,
    ended: Instant,
    held_before: Duration,
}

#[derive(Default)]
struct RunRecord {
    /// Cells the run used.
    cells: usize,
    /// What the services and tests of all cells held at the end, in KiB.
    services_rss_kib: u64,
    /// Once the search has begun.
    explorer: Option<Explorer>,
    results: Vec<ExecutionResult>,
    failures: Vec<FailureArtifacts>,
    held: Duration,
    /// Once the run is over (not when it ended in error).
    agent: Option<AgentFootprint>,
    /// `[test] scope` as written.
    scope: Vec<String>,
    /// Failures found, with what replays each, not yet written out: at
    /// the end, or when the run is interrupted.
    found: Vec<Found>,
    /// The budget that ended the search, when one did.
    budget: Option<String>,
}

struct Found {
    number: usize,
    diagnosis: Option<report::Diagnosis>,
    /// `None` when replaying one.
    counterexample: Option<Counterexample>,
}

/// The run was stopped by this signal (its cleanup done, what was found
/// written out).
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = nix::sys::signal::Signal::try_from(self.0)
            .map_or_else(|_| format!("signal {}", self.0), |s| s.to_string());
        write!(f, "interrupted by {name}")
    }
}

impl std::error::Error for Interrupted {}

/// The first SIGINT, SIGTERM, SIGHUP (a closed terminal or ssh session)
/// or SIGQUIT (Ctrl-\\) to arrive.
async fn interrupted() -> Result<Interrupted> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(Interrupted(tokio::select! {
        _ = interrupt.recv() => libc::SIGINT,
        _ = terminate.recv() => libc::SIGTERM,
        _ = hangup.recv() => libc::SIGHUP,
        _ = quit.recv() => libc::SIGQUIT,
    }))
}

/// Runs the search; on a signal, stops it (dropping it cleans the host
/// up) and still writes what was found: counterexamples and reports.
pub async fn run(options: Options) -> Result<Verdict> {
    let started = Instant::now();
    let mut record = RunRecord::default();
    let outcome = tokio::select! {
        outcome = explore(&options, started, &mut record) => outcome,
        signal = interrupted() => Err(anyhow::Error::new(signal?)),
    };
    write_found(&mut record, &options);
    // The reports are written on every exit, an error's too: CI shows why.
    let error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    let budget = record.budget.take().map(|reached| {
        let explorer = record.explorer.as_ref();
        report::BudgetReport {
            reached,
            scheduled_left: explorer.map_or(0, |e| e.progress().scheduled),
            untried: explorer.map(Explorer::left_untried).unwrap_or_default(),
        }
    });
    let summary = RunSummary {
        config: &options.config,
        scope: &record.scope,
        budget,
        search: options.search,
        retry_depth: options.retry_depth,
        retry_groups: record
            .explorer
            .as_ref()
            .map(|explorer| explorer.retry_groups().cloned().collect())
            .unwrap_or_default(),
        started_at: std::time::SystemTime::now() - started.elapsed(),
        executions: record
            .explorer
            .as_ref()
            .map_or(&[], |explorer| explorer.executions()),
        results: &record.results,
        failures: &record.failures,
        progress: record
            .explorer
            .as_ref()
            .map(Explorer::progress)
            .unwrap_or_default(),
        elapsed: started.elapsed(),
        held: record.held,
        cells: record.cells,
        services_rss_kib: record.services_rss_kib,
        agent: record.agent,
        error: error.as_deref(),
    };
    let report = RunReport::new(&summary);
    if outcome.is_ok() {
        print_summary(&summary, &report, options.counterexample_file.is_some());
    }
    let written = write_reports(&options, &report);
    match (outcome, written) {
        (Err(e), Err(report_error)) => Err(e.context(format!("{report_error:#}"))),
        (Err(e), Ok(())) => Err(e),
        // A report that cannot be written does not change the verdict.
        (Ok(verdict), Err(report_error)) => {
            eprintln!("filibuster: {report_error:#}");
            Ok(verdict)
        }
        (Ok(verdict), Ok(())) => Ok(verdict),
    }
}

fn write_reports(options: &Options, report: &RunReport) -> Result<()> {
    if let Some(path) = &options.report_json {
        report.write(path)?;
    }
    if let Some(path) = &options.junit {
        report::write_junit(report, path)?;
    }
    if let Some(path) = &options.report_html {
        let page = report::html(report);
        json_file::replace(path, "HTML report", |file| {
            std::io::Write::write_all(file, page.as_bytes())
        })?;
    }
    // A CI job's summary page (GitHub Actions sets this), appended to.
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let markdown = report::markdown(report);
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut file| file.write_all(markdown.as_bytes()))
            .with_context(|| format!("cannot append to GITHUB_STEP_SUMMARY {}", path.display()))?;
    }
    Ok(())
}

/// `filibuster test`'s options with what they name loaded and checked,
/// once: the config, the test, the counterexample to replay, the fault
/// space. Everything the run is built from.
struct RunPlan {
    config: Config,
    test: TestSpec,
    replay: Option<Counterexample>,
    faults: FaultSpace,
    cells: CellCount,
}

impl RunPlan {
    fn new(options: &Options) -> Result<Self> {
        let config = Config::load(&options.config)?;
        let test = test_spec(options, &config)?;
        let replay = options
            .counterexample_file
            .as_deref()
            .map(Counterexample::read)
            .transpose()?;
        let mut faults = FaultSpace::new(config.fault_rules.clone());
        let analysed = options
            .analyze
            .as_ref()
            .or(config.analysis_directory.as_ref());
        if let Some(path) = &options.analysis_file {
            faults = faults.with_analysis(Analysis::read(path)?.faults());
        } else if let Some(dir) = analysed {
            let analysis = Analysis::of_directory(dir)?;
            for line in analysis.describe() {
                eprintln!("filibuster: analysis: {line}");
            }
            faults = faults.with_analysis(analysis.faults());
        }
        if options.learn_faults {
            faults = faults.learning();
        }
        if options.fail_calls_outside_requests {
            faults = faults.outside_requests();
        }
        faults = faults.with_scope(config.scope.iter().map(|(_, p)| p.clone()).collect());
        // A replay, or the fault-free execution alone, is one execution.
        let cells = if replay.is_some() || options.only_initial_execution {
            CellCount::Exactly(1)
        } else {
            options.cells
        };
        Ok(Self {
            config,
            test,
            replay,
            faults,
            cells,
        })
    }

    /// The search: the counterexample's one execution (its connects sent
    /// where they went), or the one the options ask for.
    fn explorer(&self, options: &Options, session: &Session) -> Explorer {
        let Some(counterexample) = &self.replay else {
            return Explorer::new(SearchOptions {
                search: options.search,
                dynamic_reduction: options.dynamic_reduction,
                max_faults: options.max_faults,
                retry_depth: options.retry_depth,
            });
        };
        session.learn_connect_targets(
            counterexample
                .faults
                .iter()
                .filter_map(|f| f.connect.clone().map(|c| (f.planned.index.clone(), c))),
        );
        Explorer::replay(Plan::replay(
            counterexample
                .faults
                .iter()
                .map(|f| f.planned.clone())
                .collect(),
        ))
    }
}

/// The run itself: services up, then executions until the search is done
/// or one fails; `record` keeps what was done, for the reports.
async fn explore(options: &Options, started: Instant, record: &mut RunRecord) -> Result<Verdict> {
    let plan = RunPlan::new(options)?;
    record.scope = plan
        .config
        .scope
        .iter()
        .map(|(written, _)| written.clone())
        .collect();
    let mut host = Host::prepare(
        &plan.config,
        plan.faults.clone(),
        options.control_port,
        options.startup_timeout,
        started,
        plan.cells,
        options.kernel_log,
    )
    .await?;
    let mut cells = Cells::new(
        &mut host,
        plan.cells,
        &plan.config,
        plan.test.clone(),
        options.execution_timeout,
    );
    record.cells = cells.launched();
    let session = &host.session.clone();
    record.explorer = Some(plan.explorer(options, session));

    let terminal = Terminal::start();
    // Filibuster's own time: from a cell's test ending to its next one
    // starting.
    let mut between_executions = Duration::ZERO;
    let mut running = JoinSet::new();
    let mut stopping = false;
    let mut handed_out = 0;
    loop {
        while !stopping && let Some((cell, mut functional)) = cells.take_idle() {
            if let Some(reached) = options.budget.reached(handed_out, started.elapsed()) {
                record.budget = Some(reached);
                stopping = true;
            }
            let explorer = record.explorer.as_mut().expect("the search");
            let Some(execution) = (!stopping).then(|| explorer.next_execution()).flatten() else {
                cells.put_back(cell, functional);
                break;
            };
            handed_out += 1;
            let number = execution.number;
            let faults: Vec<_> = execution.plan().faults().cloned().collect();
            let last_ended = functional.last_ended();
            // Before the execution begins: nothing armed, and what the
            // services do for it is no execution's.
            cells.reset(&host, cell, &mut functional).await?;
            let settle = session.begin(cell, execution)?;
            if let Some(ended) = last_ended {
                between_executions += ended.elapsed() + settle;
            }
            let held_before = session.held(cell);
            running.spawn(async move {
                tokio::time::sleep(settle).await;
                let began = Instant::now();
                let test = functional.run(number).await;
                let ran = Ran {
                    cell,
                    number,
                    faults,
                    began,
                    ended: Instant::now(),
                    held_before,
                };
                (functional, ran, test)
            });
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            Some(joined) = running.join_next() => joined,
            Some(started) = cells.next_started(&mut host) => {
                started?;
                continue;
            }
        };
        let (functional, ran, test) = joined.context("a cell's test runner failed")?;
        let test = test?;
        host.check_health()?;
        cells.put_back(ran.cell, functional);
        let passed = test.passed();
        ended_execution(
            ran,
            test,
            record,
            &terminal,
            &plan.test.command,
            session,
            options,
        )?;
        // The executions already out finish; none is handed out after.
        if (!passed && !options.keep_going) || options.only_initial_execution {
            stopping = true;
        }
        if !stopping {
            let explorer = record.explorer.as_ref().expect("the search");
            cells.grow(&host, &record.results, explorer.progress().scheduled);
            record.cells = cells.launched();
        }
    }
    cells.finish().await;
    drop(terminal);
    record.services_rss_kib = host.resident_kib();
    record.agent = Some(AgentFootprint::measure(
        host.attached_at,
        host.ready,
        between_executions,
        session.observed_calls(),
    ));
    // The cells' services end before the host's cgroups go.
    drop(cells);
    drop(host);
    Ok(if record.found.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed
    })
}

/// What an execution's end tells the search, the terminal and the
/// reports; an error when the fault-free execution shows the test cannot
/// pass at all.
fn ended_execution(
    ran: Ran,
    test: functional::TestRun,
    record: &mut RunRecord,
    terminal: &Terminal,
    test_command: &str,
    session: &Session,
    options: &Options,
) -> Result<()> {
    let Ran {
        cell,
        number,
        faults,
        began,
        ended,
        held_before,
    } = ran;
    let explorer = record.explorer.as_mut().expect("the search");
    let execution = session.end(cell).expect("the execution just run");
    let held = session.held(cell) - held_before;
    record.held += held;
    let lost_events = explorer.finish(execution, test.passed()).lost_events;
    let progress = explorer.progress();
    terminal.update(progress);
    terminal.line(&format!(
        "filibuster: execution {number} ({} scheduled, {} pruned{}): {} → {}{}",
        progress.scheduled,
        progress.pruned,
        match record.cells {
            1 => String::new(),
            _ => format!(", cell {cell}"),
        },
        report::describe_faults(&faults),
        test.verdict(),
        match lost_events {
            0 => String::new(),
            n => format!(
                " (the kernel lost {n} event(s) meanwhile, its buffer full: calls may be missing, and this execution is not used to skip others)"
            ),
        }
    ));
    let passed = test.passed();
    let at = record
        .results
        .partition_point(|result| result.number < number);
    record.results.insert(
        at,
        ExecutionResult {
            number,
            duration: ended - began,
            held,
            verdict: test.verdict(),
            output: if passed {
                String::new()
            } else {
                test.output.clone()
            },
        },
    );
    let timed_out = test.result == TestResult::TimedOut;
    // With no fault injected, a hang or a failure is the setup's; with
    // faults, it is what the search is looking for.
    if faults.is_empty() && timed_out {
        bail!(
            "the functional test did not finish within {}s with no fault injected: raise --execution-timeout or fix the hang",
            options.execution_timeout.as_secs(),
        );
    }
    if faults.is_empty() && !passed {
        bail!(
            "the functional test fails with no fault injected ({}): fix the test or the services first\n{}",
            test.verdict(),
            test.output.trim_end()
        );
    }
    if !passed {
        let finished = explorer.execution(number).expect("just finished");
        let diagnosis = report::diagnose(&finished.calls, timed_out, (began, ended));
        if let Some(diagnosis) = &diagnosis {
            terminal.line(&format!("filibuster: {diagnosis}"));
        }
        record.found.push(Found {
            number,
            diagnosis,
            counterexample: options
                .counterexample_file
                .is_none()
                .then(|| counterexample_of(finished, test_command, session)),
        });
    }
    Ok(())
}

/// The test to run: the command line's, else the config's.
fn test_spec(options: &Options, config: &Config) -> Result<TestSpec> {
    if let Some(command) = &options.functional_test {
        return Ok(TestSpec {
            command: command.clone(),
            mode: if options.test_loop {
                TestMode::Loop
            } else {
                TestMode::PerExecution
            },
            reset: config.test.as_ref().and_then(|t| t.reset.clone()),
        });
    }
    let mut spec = config.test.clone().with_context(|| {
        format!(
            "no functional test: add [test] command = \"...\" to {} or pass --functional-test",
            options.config.display()
        )
    })?;
    if options.test_loop {
        spec.mode = TestMode::Loop;
    }
    Ok(spec)
}

/// The first failure's counterexample goes where the user said; further
/// ones (`--keep-going`) beside it, named after their execution.
fn counterexample_path(first: &Path, earlier_failures: usize, execution: usize) -> PathBuf {
    if earlier_failures == 0 {
        return first.to_path_buf();
    }
    let stem = first.file_stem().unwrap_or_default().to_string_lossy();
    let extension = first
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    first.with_file_name(format!("{stem}-{execution}{extension}"))
}

/// What replays failed execution `finished`: its faults, and for each
/// refusal the connect attempt it refused.
fn counterexample_of(finished: &Finished, command: &str, session: &Session) -> Counterexample {
    Counterexample {
        functional_test: command.to_string(),
        execution: finished.number,
        faults: finished
            .faults
            .iter()
            .map(|planned| CounterexampleFault {
                planned: planned.clone(),
                // Where every faulted call goes, so that the replay sends
                // its caller's connects there through the proxy from the
                // start: a retry's second connect would otherwise go
                // directly, once the first taught the agent what the
                // destination speaks. For a refusal, the attempt refused
                // in this very execution.
                connect: session.connect_target(&planned.index).map(|target| {
                    let refused = (planned.fault == Fault::ConnectionRefused)
                        .then(|| {
                            finished
                                .calls
                                .iter()
                                .find(|call| call.index == planned.index)
                                .and_then(|call| call.connect_ordinal)
                        })
                        .flatten();
                    ConnectTarget {
                        ordinal: refused.unwrap_or(target.ordinal),
                        ..target
                    }
                }),
            })
            .collect(),
    }
}

/// Writes out the failures found, in execution order: each one's
/// counterexample file (the first at `--counterexample-output`, later
/// ones beside it), and what replays it.
fn write_found(record: &mut RunRecord, options: &Options) {
    record.found.sort_by_key(|found| found.number);
    for found in std::mem::take(&mut record.found) {
        let written = found.counterexample.and_then(|counterexample| {
            let path = counterexample_path(
                &options.counterexample_output,
                record.failures.len(),
                found.number,
            );
            // The failure stands even if its file cannot be written.
            match counterexample.write(&path) {
                Ok(()) => Some(path),
                Err(e) => {
                    eprintln!("filibuster: {e:#}");
                    None
                }
            }
        });
        let replay = match written
            .as_deref()
            .or(options.counterexample_file.as_deref())
        {
            Some(path) => format!(
                "filibuster test --config {} --counterexample-file {}",
                options.config.display(),
                path.display()
            ),
            None => "(no counterexample could be written)".to_string(),
        };
        record.failures.push(FailureArtifacts {
            number: found.number,
            diagnosis: found.diagnosis,
            replay,
            counterexample: written,
        });
    }
}

/// `names`, each once with how many times it came (`a ×3; b`), the first
/// few: a warning stays one line however many calls it is about.
fn counted(names: impl Iterator<Item = String>) -> String {
    const SHOWN: usize = 5;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in names {
        match counts.iter_mut().find(|(seen, _)| *seen == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    let more = counts.len().saturating_sub(SHOWN);
    let mut shown: Vec<String> = counts
        .into_iter()
        .take(SHOWN)
        .map(|(name, count)| match count {
            1 => name,
            n => format!("{name} ×{n}"),
        })
        .collect();
    if more > 0 {
        shown.push(format!("{more} more"));
    }
    shown.join("; ")
}

/// What the terminal shows of a finished run: `report`, with what only
/// the executions' own call logs show (`run`).
fn print_summary(run: &RunSummary, report: &RunReport, replaying: bool) {
    eprintln!(
        "\ncalls discovered (faults tried: ✓ the test passed, ✗ it failed):\n{}",
        report::render_calls(&report.calls)
    );
    for finished in run.unstable() {
        let changed: Vec<String> = finished
            .vanished
            .iter()
            .filter_map(|v| report::changed_path(v, finished))
            .collect();
        let why = match changed.as_slice() {
            [] => "probably a path with an id or a time in it".to_string(),
            changed => format!(
                "{}: state left by the execution before, or a clock; put it back before each execution with [test] reset = \"command\", or [services.<name>] restart = \"every-execution\"",
                counted(changed.iter().cloned())
            ),
        };
        eprintln!(
            "filibuster: warning: execution {} was planned on calls that did not happen again ({}): indices are unstable, {why}; its discoveries were not explored",
            finished.number,
            counted(finished.vanished.iter().map(|s| s.to_string()))
        );
    }
    for failure in run.failures {
        let finished = run.execution(failure.number);
        let result = run.result_of(failure.number).expect("a failure's result");
        eprintln!(
            "\nfilibuster: execution {} {} with: {}",
            finished.number,
            result.verdict,
            report::describe_faults(&finished.faults)
        );
        eprintln!("calls:\n{}", report::call_tree(&finished.calls));
        if let Some(diagnosis) = &failure.diagnosis {
            eprintln!("filibuster: {diagnosis}");
        }
        if run.scope.is_empty()
            && let Some(fault_free) = run.executions.first()
            && let Some(hint) = report::setup_hint(finished, fault_free)
        {
            eprintln!("filibuster: {hint}");
        }
        eprintln!("test output:\n{}", result.output.trim_end());
        match &failure.counterexample {
            Some(path) => eprintln!(
                "filibuster: counterexample written to {}; replay it with:\n  {}",
                path.display(),
                failure.replay
            ),
            None if replaying => eprintln!("filibuster: counterexample reproduced"),
            None => {}
        }
    }
    if !report.timeouts.is_empty() {
        eprintln!(
            "filibuster: timeouts learned from held calls: {}",
            report::describe_timeouts(&report.timeouts)
        );
    }
    if let Some(budget) = &run.budget {
        let untried: Vec<String> = budget
            .untried
            .iter()
            .map(|(site, faults)| {
                format!(
                    "{site}: {}",
                    faults.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        eprintln!(
            "filibuster: the budget of {} was reached: {} scheduled execution(s) not run{}",
            budget.reached,
            budget.scheduled_left,
            match untried.as_slice() {
                [] => String::new(),
                untried => format!("; faults never tried: {}", untried.join("; ")),
            }
        );
    }
    for group in &run.retry_groups {
        eprintln!(
            "filibuster: {} was repeated up to {} times in one request; faults were combined over its first {} attempts only, later ones failed only when all before them had, the same way (--retry-depth)",
            group.site, group.attempts, run.retry_depth
        );
    }
    let held = run.held.as_secs_f64();
    let elapsed = run.elapsed.as_secs_f64();
    let pruned = report.describe_pruned();
    match run.failures.len() {
        0 => eprintln!(
            "filibuster: all {} execution(s) passed ({pruned}) in {elapsed:.1}s, {held:.1}s of it holding calls for timeouts",
            run.progress.executions,
        ),
        failed => eprintln!(
            "filibuster: {failed} of {} execution(s) failed ({pruned}) in {elapsed:.1}s",
            run.progress.executions,
        ),
    }
}

/// What `filibuster trace` needs.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// The `filibuster.toml` of the application.
    pub config: PathBuf,
    /// Watch for this long instead of running the functional test once.
    pub duration: Option<Duration>,
    /// How long the test may take before it is stopped.
    pub execution_timeout: Duration,
    /// How long the services may take to listen.
    pub startup_timeout: Duration,
    /// `None`: the default port, or a free one if a service has it.
    pub control_port: Option<u16>,
    /// Where to write the calls seen as JSON.
    pub report_json: Option<PathBuf>,
    /// Print the kernel programs' diagnostics (`--kernel-log`).
    pub kernel_log: bool,
}

/// Observes the application, injecting nothing, and prints the calls seen:
/// during one run of the functional test, or for `duration` of whatever
/// traffic the services have (attached services serving real users).
pub async fn trace(options: TraceOptions) -> Result<()> {
    let started = Instant::now();
    let config = Config::load(&options.config)?;
    enum Observe {
        For(Duration),
        Test(TestSpec),
    }
    let observe = match (options.duration, &config.test) {
        (Some(duration), _) => Observe::For(duration),
        (None, Some(test)) => Observe::Test(test.clone()),
        (None, None) => bail!(
            "nothing to observe: give --duration SECONDS, or a [test] in {}",
            options.config.display()
        ),
    };
    let mut host = Host::prepare(
        &config,
        FaultSpace::default(),
        options.control_port,
        options.startup_timeout,
        started,
        CellCount::Exactly(1),
        options.kernel_log,
    )
    .await?;
    // A replay of no fault: calls are recorded, nothing is scheduled.
    let mut explorer = Explorer::replay(Plan::replay(Vec::new()));
    let execution = explorer.next_execution().expect("one execution");
    // Nothing is planned, so nothing to settle.
    host.session.begin(0, execution)?;
    match observe {
        Observe::For(duration) => {
            eprintln!("filibuster: observing for {}s", duration.as_secs());
            tokio::time::sleep(duration).await;
        }
        Observe::Test(test) => {
            let mut functional =
                host.functional_test(0, test, &config.dir, options.execution_timeout);
            let run = functional.run(1).await?;
            functional.finish().await;
            eprintln!("filibuster: the functional test {}", run.verdict());
        }
    }
    let execution = host.session.end(0).expect("the execution just run");
    let traffic = report::traffic(execution.calls());
    println!("{}", report::render_traffic(&traffic));
    if let Some(path) = &options.report_json {
        json_file::write(
            path,
            "trace report",
            &serde_json::json!({
                "schema_version": report::SCHEMA_VERSION,
                "tool": format!("filibuster {}", env!("CARGO_PKG_VERSION")),
                "config": options.config,
                "calls": traffic,
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_names_each_call_once_and_a_few_at_most() {
        let names = |list: &[&str]| counted(list.iter().map(|s| s.to_string()));
        assert_eq!(names(&["a", "b", "a", "a"]), "a ×3; b");
        let many: Vec<String> = (0..8).map(|n| format!("c{n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(names(&many), "c0; c1; c2; c3; c4; 3 more");
    }
}
