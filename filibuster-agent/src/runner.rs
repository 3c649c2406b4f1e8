//! A run: check the host, start the services in their cgroups, attach the
//! kernel programs, then run the functional test once per execution the
//! search asks for, until it is done or an execution fails.

use std::{
    collections::HashMap,
    fs::{self, File},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use filibuster_common::Settings;
use tokio::{io::AsyncReadExt, net::TcpListener, process::Command, task::JoinHandle};

use crate::{
    cgroups::{self, Cgroup, RunCgroups},
    config::{Config, TEST_CALLER},
    control,
    ebpf::Kernel,
    explore::{Explorer, Fault, Options as SearchOptions, Plan},
    proxy,
    report::{self, Counterexample, CounterexampleFault, Report},
    session::Session,
};

#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    pub functional_test: Option<String>,
    pub counterexample_file: Option<PathBuf>,
    pub only_initial_execution: bool,
    pub dynamic_reduction: bool,
    pub max_faults: Option<usize>,
    pub report_json: Option<PathBuf>,
    /// Where a new counterexample is written.
    pub counterexample_output: PathBuf,
    pub execution_timeout: Duration,
    pub startup_timeout: Duration,
    pub control_port: u16,
}

/// How a run ended, when it could run at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
}

pub async fn run(options: Options) -> Result<Verdict> {
    let started = Instant::now();
    if !nix::unistd::geteuid().is_root() {
        bail!("filibuster needs root to load kernel programs and create cgroups: run it with sudo");
    }
    let config = Config::load(&options.config)?;
    let test_command = options
        .functional_test
        .clone()
        .or_else(|| config.test_command.clone())
        .with_context(|| {
            format!(
                "no functional test: add [test] command = \"...\" to {} or pass --functional-test",
                options.config.display()
            )
        })?;
    let counterexample = options
        .counterexample_file
        .as_deref()
        .map(Counterexample::read)
        .transpose()?;

    let mount = cgroups::cgroup2_mount()?;
    for stale in cgroups::remove_stale_runs(&mount) {
        eprintln!(
            "filibuster: removed cgroup {} left by an earlier run that was killed",
            stale.display()
        );
    }
    for service in &config.services {
        if TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, service.port)),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            bail!(
                "port {} of service `{}` is already in use by another process: stop it, or change [services.{}].port",
                service.port,
                service.name,
                service.name
            );
        }
    }
    let control_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.control_port))
        .await
        .with_context(|| format!("control port {} is in use (another filibuster running?): stop it or pass --control-port", options.control_port))?;

    let mut kernel = Kernel::load()?;
    let listener_v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    // IPv6 may be disabled on the host; IPv4 then carries every call.
    let listener_v6 = TcpListener::bind("[::1]:0").await.ok();
    kernel.configure(Settings {
        listener_port_v4: listener_v4.local_addr()?.port(),
        listener_port_v6: listener_v6
            .as_ref()
            .map_or(Ok(0), |l| l.local_addr().map(|a| a.port()))?,
        control_port: options.control_port,
        _pad: 0,
    })?;

    let mut cgroups = RunCgroups::create(&mount)?;
    for service in &config.services {
        cgroups.add(&service.name)?;
    }
    cgroups.add(TEST_CALLER)?;
    for cgroup in cgroups.children() {
        kernel.attach(cgroup)?;
    }
    let ports: HashMap<u16, String> = config
        .services
        .iter()
        .map(|s| (s.port, s.name.clone()))
        .collect();
    let session = Arc::new(Session::new(kernel, ports));
    for (cgroup, name) in cgroups.children().iter().zip(
        config
            .services
            .iter()
            .map(|s| s.name.as_str())
            .chain([TEST_CALLER]),
    ) {
        session.add_caller(cgroup.id(), name);
    }
    let mut tasks = Tasks(vec![
        tokio::spawn(control::serve(control_listener, session.clone())),
        tokio::spawn(proxy::serve(listener_v4, session.clone())),
    ]);
    if let Some(listener) = listener_v6 {
        tasks
            .0
            .push(tokio::spawn(proxy::serve(listener, session.clone())));
    }

    let logs = log_dir()?;
    let services = start_services(&config, &cgroups, &logs, options.startup_timeout).await?;
    eprintln!(
        "filibuster: {} service(s) up in {:.1}s; logs in {}",
        services.len(),
        started.elapsed().as_secs_f64(),
        logs.display()
    );

    let mut explorer = match &counterexample {
        Some(counterexample) => {
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
        None => Explorer::new(SearchOptions {
            dynamic_reduction: options.dynamic_reduction,
            max_faults: options.max_faults,
        }),
    };
    let test_cgroup = cgroups.children().last().expect("the test cgroup");

    let mut failure = None;
    while let Some(execution) = explorer.next_execution() {
        let number = execution.number;
        let faults: Vec<_> = execution.plan().faults().cloned().collect();
        session.begin(execution)?;
        let test = run_test(
            &test_command,
            &config.dir,
            test_cgroup,
            number,
            options.execution_timeout,
        )
        .await?;
        let execution = session.end().expect("the execution just run");
        let finished = explorer.finish(execution, test.passed()).number;
        let progress = explorer.progress();
        eprintln!(
            "filibuster: execution {number} ({} scheduled, {} pruned): {} → {}",
            progress.scheduled,
            progress.pruned,
            report::describe_faults(&faults),
            test.verdict()
        );
        if let TestResult::TimedOut = test.result {
            let (holding, _) = session.holds();
            if number == 1 || holding == 0 {
                bail!(
                    "the functional test did not finish within {}s{}: raise --execution-timeout or fix the hang",
                    options.execution_timeout.as_secs(),
                    if number == 1 {
                        " with no fault injected"
                    } else {
                        ""
                    }
                );
            }
            eprintln!(
                "filibuster: {holding} call(s) held by a timeout fault were never given up on: the caller has no timeout"
            );
        }
        if !test.passed() {
            if number == 1 && counterexample.is_none() {
                bail!(
                    "the functional test fails with no fault injected (exit {}): fix the test or the services first\n{}",
                    test.verdict(),
                    test.output
                );
            }
            failure = Some((finished, test.output));
            break;
        }
        if options.only_initial_execution {
            break;
        }
    }

    let (_, held) = session.holds();
    let progress = explorer.progress();
    let failing = failure.as_ref().map(|(number, _)| {
        explorer
            .executions()
            .iter()
            .find(|f| f.number == *number)
            .expect("ran")
    });
    let replay = format!(
        "filibuster test --config {} --counterexample-file {}",
        options.config.display(),
        options.counterexample_output.display()
    );
    if let Some(finished) = failing {
        eprintln!(
            "\nfilibuster: execution {} failed with: {}",
            finished.number,
            report::describe_faults(&finished.faults)
        );
        eprintln!("calls:\n{}", report::call_tree(&finished.calls));
        let (_, output) = failure.as_ref().expect("failed");
        eprintln!("test output:\n{}", output.trim_end());
        match &counterexample {
            Some(_) => eprintln!("filibuster: counterexample reproduced"),
            None => {
                let counterexample = Counterexample {
                    functional_test: test_command.clone(),
                    execution: finished.number,
                    faults: finished
                        .faults
                        .iter()
                        .map(|planned| CounterexampleFault {
                            planned: planned.clone(),
                            connect: (planned.fault == Fault::ConnectionRefused)
                                .then(|| session.connect_target(&planned.index))
                                .flatten(),
                        })
                        .collect(),
                };
                counterexample.write(&options.counterexample_output)?;
                eprintln!(
                    "filibuster: counterexample written to {}; replay it with:\n  {replay}",
                    options.counterexample_output.display()
                );
            }
        }
    } else {
        eprintln!(
            "filibuster: all {} execution(s) passed ({} pruned) in {:.1}s, {:.1}s of it holding calls for timeouts",
            progress.executions,
            progress.pruned,
            started.elapsed().as_secs_f64(),
            held.as_secs_f64()
        );
    }
    if let Some(path) = &options.report_json {
        let failure = failing.map(|f| {
            (
                f,
                failure.as_ref().expect("failed").1.clone(),
                replay.clone(),
            )
        });
        Report::new(progress, started.elapsed(), held, failure).write(path)?;
    }
    drop(services);
    drop(tasks);
    drop(cgroups);
    Ok(if failing.is_some() {
        Verdict::Failed
    } else {
        Verdict::Passed
    })
}

/// Background tasks of the run, stopped with it.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn log_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("filibuster-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

async fn start_services(
    config: &Config,
    cgroups: &RunCgroups,
    logs: &Path,
    timeout: Duration,
) -> Result<Vec<tokio::process::Child>> {
    let mut running = Vec::new();
    for (service, cgroup) in config.services.iter().zip(cgroups.children()) {
        let log_path = logs.join(format!("{}.log", service.name));
        let log = File::create(&log_path)?;
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&service.command)
            .current_dir(&config.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cgroup.start_inside(&mut command)?;
        let child = Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start service `{}`", service.name))?;
        running.push(child);
    }
    let deadline = Instant::now() + timeout;
    for (service, process) in config.services.iter().zip(running.iter_mut()) {
        loop {
            if TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, service.port)),
                Duration::from_millis(100),
            )
            .is_ok()
            {
                break;
            }
            let log_path = logs.join(format!("{}.log", service.name));
            if let Some(status) = process.try_wait()? {
                bail!(
                    "service `{}` exited ({status}) before listening on port {}: see {}",
                    service.name,
                    service.port,
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "service `{}` did not listen on port {} within {}s: check [services.{}].port and its log {}",
                    service.name,
                    service.port,
                    timeout.as_secs(),
                    service.name,
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(running)
}

enum TestResult {
    Exited(std::process::ExitStatus),
    TimedOut,
}

struct TestRun {
    result: TestResult,
    output: String,
}

impl TestRun {
    fn passed(&self) -> bool {
        matches!(&self.result, TestResult::Exited(status) if status.success())
    }

    fn verdict(&self) -> String {
        match &self.result {
            TestResult::Exited(status) if status.success() => "passed".into(),
            TestResult::Exited(status) => match status.code() {
                Some(code) => format!("failed (exit {code})"),
                None => format!("failed ({status})"),
            },
            TestResult::TimedOut => "failed (timed out)".into(),
        }
    }
}

async fn run_test(
    command_line: &str,
    dir: &Path,
    cgroup: &Cgroup,
    execution: usize,
    timeout: Duration,
) -> Result<TestRun> {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(command_line)
        .current_dir(dir)
        .env("FILIBUSTER_EXECUTION", execution.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cgroup.start_inside(&mut command)?;
    let mut child = Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the functional test `{command_line}`"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        out.extend(err);
        String::from_utf8_lossy(&out).into_owned()
    };
    let waited = tokio::time::timeout(timeout, async { tokio::join!(child.wait(), collect) }).await;
    Ok(match waited {
        Ok((status, output)) => TestRun {
            result: TestResult::Exited(status?),
            output,
        },
        Err(_) => {
            cgroup.kill_all();
            TestRun {
                result: TestResult::TimedOut,
                output: String::new(),
            }
        }
    })
}
