//! What a run sets up on the host and takes down again: the host lock,
//! the kernel programs and their listeners, the cgroups, the services, the
//! control API. Dropping a [`Host`] ends the services, stops the tasks
//! (closing the programs' links) and removes the cgroups, in that order.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use filibuster_common::{Listeners, Settings};
use tokio::{net::TcpListener, process::Child, sync::mpsc, task::JoinHandle};

use super::{functional::FunctionalTest, host_lock::HostLock, services};
use crate::{
    cgroups::{self, Cgroup, RunCgroups},
    config::{Config, Service, ServiceProtocol, ServiceSource, TEST_CALLER, TestSpec},
    containers,
    control::{self, LoopResult, TestLoop},
    ebpf::Kernel,
    explore::FaultSpace,
    netns::NetNs,
    proxy,
    session::{ServiceAddress, Session, check_unique_ports},
};

pub struct Host {
    // Dropped in this order.
    _services: Vec<Child>,
    _tasks: Tasks,
    _proxy: proxy::Threads,
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

        let (mut kernel, events) = Kernel::load()?;
        kernel.configure(Settings {
            control_port,
            _pad: [0; 3],
        })?;

        let own = Arc::new(NetNs::own()?);
        let mut namespaces = vec![own.clone()];
        let mut cgroups = RunCgroups::create(&mount)?;
        let mut attached = Vec::new();
        let mut placed = Vec::new();
        for service in &config.services {
            let (cgroup, pid) = match &service.source {
                ServiceSource::Command(_) => {
                    cgroups.add(&service.name)?;
                    placed.push((service, own.clone()));
                    continue;
                }
                ServiceSource::Cgroup(path) => (Cgroup::existing(path)?, None),
                ServiceSource::Process(pid) => (Cgroup::of_process(&mount, *pid)?, Some(*pid)),
                ServiceSource::Container(reference) => (
                    Cgroup::existing(&containers::cgroup_of(&mount, reference)?)?,
                    None,
                ),
            };
            let netns = namespace_of(service, &cgroup, pid, &mut namespaces)?;
            if !netns.listens_on(service.port) {
                bail!(
                    "service `{}` is to be attached, but nothing listens on port {} in its network namespace: start it first, or fix [services.{}].port",
                    service.name,
                    service.port,
                    service.name
                );
            }
            attached.push((service.name.as_str(), cgroup));
            placed.push((service, netns));
        }
        cgroups.add(TEST_CALLER)?;

        // A listener in every namespace a caller lives in, for every proxy
        // thread, registered before any program is attached.
        let threads = proxy::thread_count();
        let mut listeners: Vec<Vec<proxy::ThreadListener>> =
            (0..threads).map(|_| Vec::new()).collect();
        for netns in &namespaces {
            let copies = netns.bind_listeners(threads)?;
            let port = |l: &std::net::TcpListener| l.local_addr().map(|a| a.port());
            kernel.add_listeners(
                netns.cookie(),
                Listeners {
                    port_v4: port(&copies[0].v4)?,
                    port_v6: copies[0].v6.as_ref().map_or(Ok(0), port)?,
                    _pad: 0,
                },
            )?;
            for (thread, copy) in listeners.iter_mut().zip(copies) {
                thread.extend(
                    [Some(copy.v4), copy.v6]
                        .into_iter()
                        .flatten()
                        .map(|l| (l, netns.clone())),
                );
            }
        }

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
            kernel.attach(cgroup, *name != TEST_CALLER)?;
        }
        let attached_at = started.elapsed();
        let session = Arc::new(Session::new(
            kernel,
            events,
            directory(&placed)?,
            faults,
            &namespaces,
        ));
        for (name, cgroup) in &callers {
            session.add_caller(cgroup.id(), name);
        }
        let caller_namespaces: Vec<u64> = namespaces.iter().map(|n| n.cookie()).collect();
        for service in &config.services {
            if service.protocol == ServiceProtocol::Tcp {
                session.declare_opaque(&service.name, &caller_namespaces)?;
            }
        }
        let (test_loop, loop_results) = TestLoop::new(run_token()?);
        let tasks = Tasks(vec![
            tokio::spawn(control::serve(
                control_listener,
                session.clone(),
                test_loop.clone(),
            )),
            tokio::spawn(absorb_kernel_events(session.clone())),
        ]);
        let proxy = proxy::Threads::start(listeners, &session)?;

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
            _proxy: proxy,
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

/// The network namespace of an attached service: its process's, or the
/// one all processes of its cgroup share. Namespaces already open are
/// reused, so each gets one listener.
fn namespace_of(
    service: &Service,
    cgroup: &Cgroup,
    pid: Option<u32>,
    namespaces: &mut Vec<Arc<NetNs>>,
) -> Result<Arc<NetNs>> {
    let pid = match pid {
        Some(pid) => pid,
        None => {
            let pids = cgroup.pids();
            let Some(&first) = pids.first() else {
                bail!(
                    "service `{}` is to be attached, but cgroup {} has no process: start it first",
                    service.name,
                    cgroup.path().display()
                );
            };
            let netns_of = |pid: i32| {
                std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .map(|m| (m.dev(), m.ino()))
                    .ok()
            };
            let distinct: HashSet<_> = pids.iter().filter_map(|&p| netns_of(p)).collect();
            if distinct.len() > 1 {
                bail!(
                    "the processes of service `{}` (cgroup {}) live in {} network namespaces: attach each by pid as a service of its own",
                    service.name,
                    cgroup.path().display(),
                    distinct.len()
                );
            }
            first as u32
        }
    };
    let netns = NetNs::of_process(pid)?;
    if let Some(known) = namespaces.iter().find(|n| n.cookie() == netns.cookie()) {
        return Ok(known.clone());
    }
    let netns = Arc::new(netns);
    namespaces.push(netns.clone());
    Ok(netns)
}

/// Where every service listens, for naming the callees of connects.
fn directory(placed: &[(&Service, Arc<NetNs>)]) -> Result<Vec<ServiceAddress>> {
    let mut addresses: HashMap<u64, Vec<IpAddr>> = HashMap::new();
    let mut directory = Vec::new();
    for (service, netns) in placed {
        let cookie = netns.cookie();
        let addresses = match addresses.entry(cookie) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(netns.addresses()?),
        };
        directory.push(ServiceAddress {
            name: service.name.clone(),
            port: service.port,
            netns: cookie,
            addresses: addresses.clone(),
        });
    }
    check_unique_ports(&directory)?;
    Ok(directory)
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

/// Takes in what the kernel reported every few milliseconds, whether or
/// not anything asks: heads of observed connections arrive without waking
/// the agent, and must not fill the ring buffer under load.
async fn absorb_kernel_events(session: Arc<Session>) {
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        session.absorb();
    }
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
