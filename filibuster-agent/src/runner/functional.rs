//! Running the functional test once per execution: either a new process
//! each time, or one long-lived process driven through the test-loop
//! protocol (`control::TestLoop`). Both give the runner the same
//! [`TestRun`], so the search cannot tell them apart.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
    sync::mpsc,
};

use crate::account::Account;
use crate::{
    cgroups::Cgroup,
    config::{TestMode, TestSpec},
    control::{LoopResult, TestLoop, Turn},
    netns::NetNs,
};

/// How one execution of the test went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestResult {
    Passed,
    /// Why, as the user should read it: "exit 1", "killed by SIGSEGV".
    Failed(String),
    TimedOut,
}

#[derive(Clone, Debug)]
pub struct TestRun {
    pub result: TestResult,
    pub output: String,
}

impl TestRun {
    pub fn passed(&self) -> bool {
        self.result == TestResult::Passed
    }

    pub fn verdict(&self) -> String {
        match &self.result {
            TestResult::Passed => "passed".into(),
            TestResult::Failed(why) => format!("failed ({why})"),
            TestResult::TimedOut => "failed (timed out)".into(),
        }
    }
}

pub struct FunctionalTest {
    command: String,
    mode: TestMode,
    /// `[test] reset`.
    reset: Option<String>,
    dir: PathBuf,
    cgroup: Cgroup,
    /// Its cell's network namespace, where it runs.
    netns: Arc<NetNs>,
    /// Who it runs as (`None`: root).
    account: Option<Account>,
    control_url: String,
    timeout: Duration,
    test_loop: Arc<TestLoop>,
    results: mpsc::UnboundedReceiver<LoopResult>,
    /// The looping test process, while it is up.
    looping: Option<Looping>,
    /// Where a looping process's own output goes.
    log: PathBuf,
    /// When its last execution's test ended.
    last_ended: Option<Instant>,
}

struct Looping {
    child: Child,
    log: File,
}

impl FunctionalTest {
    /// Made by [`super::host::Host::functional_test`], which owns the pieces.
    pub(super) fn new(
        test: TestSpec,
        dir: &Path,
        (cgroup, netns, account): (Cgroup, Arc<NetNs>, Option<Account>),
        control_port: u16,
        timeout: Duration,
        (test_loop, results): (Arc<TestLoop>, mpsc::UnboundedReceiver<LoopResult>),
        log: PathBuf,
    ) -> Self {
        Self {
            command: test.command,
            mode: test.mode,
            reset: test.reset,
            dir: dir.to_path_buf(),
            cgroup,
            netns,
            account,
            control_url: format!("http://127.0.0.1:{control_port}"),
            timeout,
            test_loop,
            results,
            looping: None,
            log,
            last_ended: None,
        }
    }

    /// Runs the test for `execution`, which has begun.
    pub async fn run(&mut self, execution: usize) -> Result<TestRun> {
        let run = match self.mode {
            TestMode::PerExecution => self.run_process(execution).await,
            TestMode::Loop => self.run_in_loop(execution).await,
        };
        self.last_ended = Some(Instant::now());
        run
    }

    /// When its last execution's test ended.
    pub fn last_ended(&self) -> Option<Instant> {
        self.last_ended
    }

    /// Tells a looping test process that the search is over and lets it
    /// end (it is killed with its cgroup if it does not).
    pub async fn finish(&mut self) {
        self.test_loop.set_turn(Turn::Done);
        if let Some(mut looping) = self.looping.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), looping.child.wait()).await;
        }
        self.cgroup.kill_all();
    }

    /// `line` run by the shell where the test runs, told where the
    /// control API is.
    fn shell(&self, line: &str) -> std::process::Command {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(line)
            .current_dir(&self.dir)
            .env("FILIBUSTER_CONTROL_URL", &self.control_url)
            .stdin(Stdio::null());
        self.netns.start_inside(&mut command);
        command
    }

    fn command_line(&self, execution: Option<usize>) -> std::process::Command {
        let mut command = self.shell(&self.command);
        command.env("FILIBUSTER_TOKEN", self.test_loop.token());
        match execution {
            Some(n) => command.env("FILIBUSTER_EXECUTION", n.to_string()),
            None => command.env("FILIBUSTER_LOOP", "1"),
        };
        command
    }

    /// Runs `[test] reset` before an execution, with no fault armed: in
    /// the test's cgroup and namespace, as its user. It failing (or
    /// taking longer than an execution may) is a setup error, with what
    /// it printed.
    pub async fn reset(&mut self) -> Result<()> {
        let Some(reset) = self.reset.clone() else {
            return Ok(());
        };
        let mut command = self.shell(&reset);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = self.spawn(command, &reset)?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(output) => {
                let output = output?;
                if !output.status.success() {
                    let printed = format!(
                        "{}{}",
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    );
                    bail!(
                        "[test] reset `{reset}` failed ({}): {}",
                        describe_exit(output.status),
                        printed
                            .trim()
                            .lines()
                            .last()
                            .unwrap_or("it printed nothing")
                    );
                }
                Ok(())
            }
            Err(_) => {
                self.cgroup.kill_all();
                bail!(
                    "[test] reset `{reset}` did not end within {}s (--execution-timeout)",
                    self.timeout.as_secs()
                )
            }
        }
    }

    /// Starts `command` (the test, or `line`) in the test's cgroup, as its account.
    fn spawn(&self, mut command: std::process::Command, line: &str) -> Result<Child> {
        self.cgroup.start_inside(&mut command)?;
        if let Some(account) = &self.account {
            account.apply(&mut command);
        }
        Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start `{line}`"))
    }

    async fn run_process(&mut self, execution: usize) -> Result<TestRun> {
        let mut command = self.command_line(Some(execution));
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.spawn(command, &self.command)?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let collect = async {
            let (out, err) = tokio::join!(Bounded::read(&mut stdout), Bounded::read(&mut stderr));
            format!("{out}{err}")
        };
        let waited =
            tokio::time::timeout(self.timeout, async { tokio::join!(child.wait(), collect) }).await;
        Ok(match waited {
            Ok((status, output)) => {
                let status = status?;
                TestRun {
                    result: if status.success() {
                        TestResult::Passed
                    } else {
                        TestResult::Failed(describe_exit(status))
                    },
                    output,
                }
            }
            Err(_) => {
                self.cgroup.kill_all();
                TestRun {
                    result: TestResult::TimedOut,
                    output: String::new(),
                }
            }
        })
    }

    fn start_looping(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.log)
            .with_context(|| format!("cannot write {}", self.log.display()))?;
        let mut command = self.command_line(None);
        command.stdout(log.try_clone()?).stderr(log.try_clone()?);
        let child = self.spawn(command, &self.command)?;
        self.looping = Some(Looping { child, log });
        Ok(())
    }

    async fn run_in_loop(&mut self, execution: usize) -> Result<TestRun> {
        if self.looping.is_none() {
            self.start_looping()?;
        }
        // Reports of executions that already ended (a late duplicate) are stale.
        while self.results.try_recv().is_ok() {}
        self.test_loop.set_turn(Turn::Run(execution));
        let looping = self.looping.as_mut().expect("started");
        let results = &mut self.results;
        let waited = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                result = results.recv() => Ok(result.expect("the sender lives in test_loop")),
                status = looping.child.wait() => Err(status),
            }
        })
        .await;
        let run = match waited {
            Ok(Ok(result)) => TestRun {
                result: if result.passed {
                    TestResult::Passed
                } else {
                    TestResult::Failed("the test body failed".into())
                },
                output: result.output,
            },
            Ok(Err(status)) => {
                let status = describe_exit(status?);
                let output = tail(&mut looping.log);
                self.looping = None;
                if self.test_loop.handed() < execution {
                    bail!(
                        "the looping functional test `{}` exited ({status}) before asking for execution {execution}: does it speak the test-loop protocol (filibuster.loop or the pytest plugin)? Its output ends:\n{output}",
                        self.command
                    );
                }
                // Restarted for the next execution.
                TestRun {
                    result: TestResult::Failed(format!("the test process exited: {status}")),
                    output,
                }
            }
            Err(_) => {
                self.cgroup.kill_all();
                self.looping = None;
                TestRun {
                    result: TestResult::TimedOut,
                    output: String::new(),
                }
            }
        };
        self.test_loop.set_turn(Turn::Wait);
        Ok(run)
    }
}

/// What a test printed, bounded: its head and its tail are kept, the
/// middle of a test that prints without end is not (nor held in memory).
#[derive(Default)]
struct Bounded {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    cut: u64,
}

impl Bounded {
    /// Bytes kept from the start, and from the end.
    const HEAD: usize = 32 * 1024;
    const TAIL: usize = 32 * 1024;

    async fn read(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
        let mut bounded = Self::default();
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            bounded.push(&chunk[..n]);
        }
        bounded.to_string()
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let room = Self::HEAD - self.head.len();
        let (head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(head);
        bytes = rest;
        self.tail.extend(bytes);
        let over = self.tail.len().saturating_sub(Self::TAIL);
        self.tail.drain(..over);
        self.cut += over as u64;
    }
}

impl std::fmt::Display for Bounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.head))?;
        if self.cut > 0 {
            write!(f, "\n[... {} bytes of output cut ...]\n", self.cut)?;
        }
        let (a, b) = self.tail.as_slices();
        f.write_str(&String::from_utf8_lossy(&[a, b].concat()))
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        _ => status.to_string(),
    }
}

/// The last lines a process wrote to its log.
pub(super) fn tail(log: &mut File) -> String {
    const TAIL_BYTES: u64 = 4096;
    let length = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    let _ = log.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)));
    let _ = log.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endless_output_keeps_its_head_and_tail() {
        let mut output = Vec::new();
        output.extend_from_slice(b"first line\n");
        output.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        output.extend_from_slice(b"\nAssertionError: the last line");
        let text = Bounded::read(&mut output.as_slice()).await;
        assert!(text.starts_with("first line\n"));
        assert!(text.ends_with("AssertionError: the last line"));
        assert!(text.len() < 70 * 1024, "{}", text.len());
        assert!(text.contains("bytes of output cut"));
        let short = Bounded::read(&mut &b"all of it"[..]).await;
        assert_eq!(short, "all of it");
    }
}
