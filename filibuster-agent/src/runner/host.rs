//! What a run sets up on the host and takes down again: the host lock,
//! the kernel programs and their listeners, the cgroups, the services, the
//! control API. Dropping a [`Host`] ends the services, stops the tasks
//! (closing the programs' links) and removes the cgroups, in that order.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use filibuster_common::Settings;
use tokio::{net::TcpListener, process::Child, sync::mpsc, task::JoinHandle};

use super::{functional::FunctionalTest, host_lock::HostLock, services};
use crate::{
    cgroups::{self, Cgroup, RunCgroups},
    config::{Config, Service, ServiceSource, TEST_CALLER, TestSpec},
    control::{self, LoopResult, TestLoop},
    ebpf::Kernel,
    explore::FaultSpace,
    proxy,
    session::Session,
};

pub struct Host {
    // Dropped in this order.
    _services: Vec<Child>,
    _tasks: Tasks,
    pub cgroups: RunCgroups,
    pub session: Arc<Session>,
    test_loop: Arc<TestLoop>,
    loop_results: Option<mpsc::UnboundedReceiver<LoopResult>>,
    control_port: u16,
    logs: PathBuf,
    /// From the run's start to the programs attached.
    pub attached_at: Duration,
    /// From the run's start to every service listening.
    pub ready: Duration,
    _lock: HostLock,
}

impl Host {
    pub async fn prepare(
        config: &Config,
        faults: FaultSpace,
        control_port: u16,
        startup_timeout: Duration,
        started: Instant,
    ) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "filibuster needs root to load kernel programs and create cgroups: run it with sudo"
            );
        }
        let lock = HostLock::acquire()?;
        let mount = cgroups::cgroup2_mount()?;
        for stale in cgroups::remove_stale_runs(&mount) {
            eprintln!(
                "filibuster: removed cgroup {} left by an earlier run that was killed",
                stale.display()
            );
        }
        services::check_ports(config)?;
        let control_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, control_port))
            .await
            .with_context(|| format!("control port {} is in use (another filibuster running?): stop it or pass --control-port", control_port))?;

        let mut kernel = Kernel::load()?;
        let listener_v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        // IPv6 may be disabled on the host; IPv4 then carries every call.
        let listener_v6 = TcpListener::bind("[::1]:0").await.ok();
        kernel.configure(Settings {
            listener_port_v4: listener_v4.local_addr()?.port(),
            listener_port_v6: listener_v6
                .as_ref()
                .map_or(Ok(0), |l| l.local_addr().map(|a| a.port()))?,
            control_port,
            _pad: 0,
        })?;

        let mut cgroups = RunCgroups::create(&mount)?;
        let mut attached = Vec::new();
        for service in &config.services {
            match &service.source {
                ServiceSource::Command(_) => {
                    cgroups.add(&service.name)?;
                }
                ServiceSource::Cgroup(path) => {
                    attached.push(attach_to(service, Cgroup::existing(path)?)?)
                }
                ServiceSource::Process(pid) => {
                    attached.push(attach_to(service, Cgroup::of_process(&mount, *pid)?)?)
                }
            }
        }
        cgroups.add(TEST_CALLER)?;
        let callers: Vec<(&str, &Cgroup)> = cgroups
            .children()
            .iter()
            .map(|c| {
                (
                    c.path()
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default(),
                    c,
                )
            })
            .chain(attached.iter().map(|(name, c)| (*name, c)))
            .collect();
        let mut ids = HashSet::new();
        for (name, cgroup) in &callers {
            if !ids.insert(cgroup.id()) {
                bail!(
                    "service `{name}` shares cgroup {} with another service: the kernel cannot tell their calls apart; give each its own cgroup",
                    cgroup.path().display()
                );
            }
            kernel.attach(cgroup)?;
        }
        let attached_at = started.elapsed();
        let ports: HashMap<u16, String> = config
            .services
            .iter()
            .map(|s| (s.port, s.name.clone()))
            .collect();
        let session = Arc::new(Session::new(kernel, ports, faults));
        for (name, cgroup) in &callers {
            session.add_caller(cgroup.id(), name);
        }
        let (test_loop, loop_results) = TestLoop::new(run_token()?);
        let tasks = vec![
            tokio::spawn(control::serve(
                control_listener,
                session.clone(),
                test_loop.clone(),
            )),
            tokio::spawn(proxy::serve(listener_v4, session.clone())),
        ];
        let mut tasks = Tasks(tasks);
        if let Some(listener) = listener_v6 {
            tasks
                .0
                .push(tokio::spawn(proxy::serve(listener, session.clone())));
        }

        let logs = services::log_dir()?;
        let services = services::start(config, &cgroups, &logs, startup_timeout).await?;
        let ready = started.elapsed();
        eprintln!(
            "filibuster: {} service(s) up in {:.1}s; logs in {}",
            services.len(),
            started.elapsed().as_secs_f64(),
            logs.display()
        );
        Ok(Self {
            _services: services,
            _tasks: tasks,
            cgroups,
            session,
            test_loop,
            loop_results: Some(loop_results),
            control_port,
            logs,
            attached_at,
            ready,
            _lock: lock,
        })
    }

    /// The run's functional test, in the test cgroup, driven through this
    /// host's control API. One per run: it takes the test loop's results.
    pub fn functional_test(
        &mut self,
        test: TestSpec,
        dir: &Path,
        timeout: Duration,
    ) -> FunctionalTest {
        let results = self
            .loop_results
            .take()
            .expect("one functional test per run");
        FunctionalTest::new(
            test,
            dir,
            self.cgroups
                .get(TEST_CALLER)
                .expect("the test cgroup")
                .clone(),
            self.control_port,
            timeout,
            (self.test_loop.clone(), results),
            self.logs.join("test.log"),
        )
    }
}

/// An attached service's cgroup, if the agent can reach its processes.
fn attach_to(service: &Service, cgroup: Cgroup) -> Result<(&str, Cgroup)> {
    let elsewhere = cgroup.pids_in_other_netns();
    if !elsewhere.is_empty() {
        bail!(
            "service `{}` (cgroup {}) runs in another network namespace (pids {elsewhere:?}): attaching across namespaces is not supported yet; run the agent in that namespace",
            service.name,
            cgroup.path().display()
        );
    }
    Ok((&service.name, cgroup))
}

/// The secret a looping test process presents: only the process the run
/// started (which gets it in its environment) may drive the run.
fn run_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the run's token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
