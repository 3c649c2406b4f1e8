//! What a run sets up on the host and takes down again: the host lock,
//! the kernel programs and their listeners, the cgroups, the services, the
//! control API. Dropping a [`Host`] ends the services, stops the tasks
//! (closing the programs' links) and removes the cgroups, in that order.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use filibuster_common::{Listeners, Settings};
use tokio::{net::TcpListener, process::Child, sync::mpsc, task::JoinHandle};

use super::{
    functional::FunctionalTest,
    host_lock::HostLock,
    services::{self, CellLaunch},
};
use crate::{
    account::Account,
    cgroups::{self, Cgroup, LimitHit, Limits, RunCgroups},
    config::{Compose, Config, Service, ServiceProtocol, ServiceSource, TEST_CALLER, TestSpec},
    containers::{self, Located},
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
    tasks: Tasks,
    _proxy: proxy::Threads,
    pub cgroups: RunCgroups,
    pub session: Arc<Session>,
    /// Made (namespaces, cgroups, listeners, control APIs), whether used
    /// or not.
    cells: Vec<Cell>,
    /// The cells the run uses: the first `usable` ones.
    usable: usize,
    config: Arc<Config>,
    /// Who each launched service (in config order) and the test run as;
    /// `None`: root.
    accounts: Vec<Option<Account>>,
    test_account: Option<Account>,
    control_port: u16,
    logs: PathBuf,
    startup_timeout: Duration,
    /// From the run's start to the programs attached.
    pub attached_at: Duration,
    /// From the run's start to every service listening.
    pub ready: Duration,
    _lock: HostLock,
}

impl Drop for Host {
    /// Before the fields go (services, tasks, the proxy and its listeners,
    /// cgroups): attached services that keep serving must never connect to
    /// a listener of ours that closed.
    fn drop(&mut self) {
        self.session.detach_connects();
        // Test-only: widens the window between the teardown's two steps
        // (detach, then close the listeners) from microseconds, so that a
        // test can tell their order (containers.rs).
        if let Some(pause) = std::env::var(TEARDOWN_PAUSE)
            .ok()
            .and_then(|ms| ms.parse().ok())
        {
            std::thread::sleep(Duration::from_millis(pause));
        }
    }
}

/// How long (ms) [`Host`]'s teardown pauses between its steps; for tests.
const TEARDOWN_PAUSE: &str = "FILIBUSTER_TEARDOWN_PAUSE_MS";

/// How many cells a run asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellCount {
    /// As many as the cores and the memory allow (at most [`MAX_CELLS`]).
    Auto,
    /// This many.
    Exactly(usize),
}

/// Cells a run uses at most: waiting costs no CPU, so several per core
/// overlap, but each is a copy of every service.
pub const MAX_CELLS: usize = 8;

/// One copy of the application: cell 0 in the agent's own network
/// namespace (what a run with one cell is), the others each in a new one.
/// What the host keeps of it; what it runs lives in the session.
struct Cell {
    netns: Arc<NetNs>,
    test_loop: Arc<TestLoop>,
    loop_results: Option<mpsc::UnboundedReceiver<LoopResult>>,
}

/// Removes what runs killed before they could clean up left on this host
/// (their cgroups, and the services still in them), saying so; the caller
/// holds the host lock. Returns how many runs it cleaned up after.
fn clean_up_killed_runs(cgroup_mount: &Path) -> usize {
    let stale = cgroups::remove_stale_runs(cgroup_mount);
    for cgroup in &stale {
        eprintln!(
            "filibuster: removed cgroup {} left by an earlier run that was killed, and ended what ran in it",
            cgroup.display()
        );
    }
    stale.len()
}

/// `filibuster cleanup`: what a killed agent left, removed, when no agent
/// runs.
pub fn clean_up() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("filibuster cleanup removes cgroups: run it with sudo");
    }
    let mount = cgroups::cgroup2_mount()?;
    let _lock = HostLock::acquire(&mount)?;
    if clean_up_killed_runs(&mount) == 0 {
        eprintln!("filibuster: nothing left by an earlier run");
    }
    Ok(())
}

impl Host {
    pub async fn prepare(
        config: &Config,
        faults: FaultSpace,
        control_port: Option<u16>,
        startup_timeout: Duration,
        started: Instant,
        count: CellCount,
        kernel_log: bool,
    ) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            bail!(
                "filibuster needs root to load kernel programs and create cgroups: run it with sudo (filibuster doctor checks the rest of this host)"
            );
        }
        let mount = cgroups::cgroup2_mount()
            .context("cannot place the services in cgroups (filibuster doctor checks this host)")?;
        let lock = HostLock::acquire(&mount)?;
        clean_up_killed_runs(&mount);
        let test_account = Account::invoking()?;
        let composed;
        let config = match &config.compose {
            Some(compose) => {
                composed = with_compose(config, compose, test_account.as_ref())?;
                &composed
            }
            None => config,
        };
        let own = Arc::new(NetNs::own()?);
        services::check_ports(config, &own)?;
        let control_port = services::control_port(config, control_port)?;
        let accounts = config
            .launched()
            .map(|(service, _)| match &service.user {
                Some(name) => Account::named(name)
                    .map(Some)
                    .with_context(|| format!("[services.{}].user", service.name)),
                None => Ok(test_account.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let attaches = config
            .services
            .iter()
            .any(|s| !matches!(s.source, ServiceSource::Command(_)));
        let most = match count {
            CellCount::Exactly(n) if n > 1 && attaches => bail!(
                "--cells {n}: services the agent attaches to cannot be copied into cells; run with --cells 1 (or leave it at auto)"
            ),
            CellCount::Exactly(n) => n.clamp(1, MAX_CELLS),
            CellCount::Auto if attaches => 1,
            CellCount::Auto => MAX_CELLS.min(4 * proxy::thread_count()),
        };

        let (mut kernel, events) = Kernel::load(kernel_log).context(
            "the kernel programs do not load (filibuster doctor says what this host lacks)",
        )?;
        let programs_log = kernel.take_log();

        // Cell 0 is the host's namespace; the others get their own.
        let mut cell_namespaces = vec![own.clone()];
        for _ in 1..most {
            cell_namespaces.push(Arc::new(NetNs::isolated()?));
        }
        let mut namespaces = cell_namespaces.clone();
        let mut cgroups = RunCgroups::create(&mount, limits(config))?;
        let agent_cgroup = cgroups::own_cgroup(&mount)?;
        let mut attached = Vec::new();
        let mut placed = Vec::new();
        let mut published = Vec::new();
        for service in &config.services {
            let (cgroup, pid) = match &service.source {
                ServiceSource::Command(_) => {
                    for (cell, netns) in cell_namespaces.iter().enumerate() {
                        cgroups.add(&services::in_cell(&service.name, cell))?;
                        placed.push((service, netns.clone()));
                    }
                    continue;
                }
                ServiceSource::Cgroup(path) => (Cgroup::existing(path)?, None),
                ServiceSource::Process(pid) => (Cgroup::of_process(&mount, *pid)?, Some(*pid)),
                ServiceSource::Container(reference) => {
                    let invoking = test_account.as_ref();
                    for address in containers::published(reference, service.port, invoking) {
                        published.push((service, address));
                    }
                    match containers::locate(&mount, reference, invoking)? {
                        Located::Process(pid) => (Cgroup::of_process(&mount, pid)?, Some(pid)),
                        Located::Cgroup(path) => (Cgroup::existing(&path)?, None),
                    }
                }
            };
            let mut managed = vec![("this run".to_string(), cgroups.root().to_path_buf())];
            managed.extend(attached.iter().map(|(name, c): &(&str, Cgroup)| {
                (format!("service `{name}`"), c.path().to_path_buf())
            }));
            cgroups::check_attachable(
                &mount,
                &service.name,
                cgroup.path(),
                &agent_cgroup,
                &managed,
            )?;
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
        for cell in 0..most {
            cgroups.add(&services::in_cell(TEST_CALLER, cell))?;
        }

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

        // Each launched service's and the test's copies, by cell; attached
        // services are in cell 0.
        let mut callers: Vec<(usize, &str, &Cgroup)> = Vec::new();
        let launched = config
            .launched()
            .map(|(s, _)| s.name.as_str())
            .chain([TEST_CALLER]);
        for name in launched {
            for cell in 0..most {
                let cgroup = cgroups
                    .get(&services::in_cell(name, cell))
                    .expect("made above");
                callers.push((cell, name, cgroup));
            }
        }
        callers.extend(attached.iter().map(|(name, c)| (0, *name, c)));
        let mut ids = HashSet::new();
        for (_, name, cgroup) in &callers {
            if !ids.insert(cgroup.id()) {
                bail!(
                    "service `{name}` shares cgroup {} with another service: the kernel cannot tell their calls apart; give each its own cgroup",
                    cgroup.path().display()
                );
            }
            kernel.attach(cgroup, *name != TEST_CALLER)?;
        }
        let levels = callers.iter().map(|(_, _, cgroup)| cgroup.level(&mount));
        kernel.configure(Settings {
            control_port,
            managed_levels: [levels.clone().min().unwrap_or(0), levels.max().unwrap_or(0)],
            _pad: [0; 2],
        })?;
        let attached_at = started.elapsed();
        let session = Arc::new(Session::new(
            kernel,
            events,
            directory(&placed, &published, &own)?,
            faults,
            &namespaces,
            cell_namespaces.iter().map(|n| n.cookie()).collect(),
        ));
        for (cell, name, cgroup) in &callers {
            session.add_caller(*cell, cgroup.id(), cgroup.path(), name);
        }
        let caller_namespaces: Vec<u64> = namespaces.iter().map(|n| n.cookie()).collect();
        for service in &config.services {
            if service.protocol == ServiceProtocol::Tcp {
                session.declare_opaque(&service.name, &caller_namespaces)?;
            }
        }
        let mut tasks = Tasks::default();
        tasks.spawn(
            "reading the kernel's events",
            absorb_kernel_events(session.clone()),
        );
        if let Some(log) = programs_log {
            tasks.spawn("printing the kernel programs' log", log.print());
        }
        let token = run_token()?;
        let mut cells = Vec::new();
        for (index, netns) in cell_namespaces.into_iter().enumerate() {
            // Each cell's control API where its test expects it, on both
            // loopbacks: `localhost` may be `::1` first, and a port left free
            // there is anyone's to answer the test on.
            let in_use = || {
                format!(
                    "control port {control_port} is in use (another filibuster running?): stop it or pass --control-port"
                )
            };
            let listeners = netns
                .enter(|| {
                    let v4 = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, control_port))?;
                    let v6 = match std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, control_port))
                    {
                        Ok(v6) => Some(v6),
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
                        // No IPv6 here: nothing to take.
                        Err(_) => None,
                    };
                    Ok(std::iter::once(v4).chain(v6).collect::<Vec<_>>())
                })
                .with_context(in_use)?;
            let (test_loop, loop_results) = TestLoop::new(index, token.clone());
            for listener in listeners {
                listener.set_nonblocking(true)?;
                tasks.spawn(
                    "serving the control API",
                    control::serve(
                        TcpListener::from_std(listener)?,
                        netns.clone(),
                        session.clone(),
                        test_loop.clone(),
                    ),
                );
            }
            cells.push(Cell {
                netns,
                test_loop,
                loop_results: Some(loop_results),
            });
        }
        let proxy = proxy::Threads::start(listeners, &session, attaches)?;

        let logs = services::log_dir()?;
        let mut host = Self {
            _services: Vec::new(),
            tasks,
            _proxy: proxy,
            cgroups,
            session,
            cells,
            usable: 1,
            config: Arc::new(config.clone()),
            accounts,
            test_account,
            control_port,
            logs,
            startup_timeout,
            attached_at,
            ready: Duration::ZERO,
            _lock: lock,
        };
        // Cell 0 now; the others while it explores (`launch`).
        host._services = host.launch(0).start().await.1?;
        host.ready = started.elapsed();
        host.usable = match count {
            CellCount::Auto => host.cells_memory_allows(),
            CellCount::Exactly(_) => most,
        };
        eprintln!(
            "filibuster: {} service(s) up in {:.1}s{}{}; logs in {}",
            config.launched().count(),
            started.elapsed().as_secs_f64(),
            match &host.test_account {
                Some(account) => format!(" as {} (who ran sudo)", account.name()),
                None => String::new(),
            },
            match (count, host.usable) {
                (_, 1) => String::new(),
                (CellCount::Auto, n) => format!(" (up to {n} cells, added while they pay)"),
                (CellCount::Exactly(_), n) =>
                    format!(" ({n} cells: the other copies are starting)"),
            },
            host.logs.display()
        );
        Ok(host)
    }

    /// How many cells the run uses.
    pub fn cells(&self) -> usize {
        self.usable
    }

    /// What starting cell `cell`'s copy of the launched services takes.
    pub fn launch(&self, cell: usize) -> CellLaunch {
        CellLaunch {
            config: self.config.clone(),
            cgroups: self
                .config
                .launched()
                .map(|(s, _)| {
                    self.cgroups
                        .get(&services::in_cell(&s.name, cell))
                        .expect("a cgroup per launched service and cell")
                        .clone()
                })
                .collect(),
            accounts: self.accounts.clone(),
            cell,
            netns: self.cells[cell].netns.clone(),
            logs: self.logs.clone(),
            timeout: self.startup_timeout,
        }
    }

    /// Fails, saying what and what to do, once the run's results can no
    /// longer be trusted: one of the agent's own tasks stopped (a bug: its
    /// panic is printed above), or a service or the test hit one of its
    /// `[limits]` (what it did after is no answer to the fault planned).
    pub fn check_health(&self) -> Result<()> {
        if let Some(doing) = self.tasks.ended() {
            bail!(
                "the agent stopped {doing} (a bug in filibuster, its panic printed above): the run cannot go on; please report it with this output"
            );
        }
        for cgroup in self.cgroups.children() {
            let Some(hit) = cgroup.limit_hit() else {
                continue;
            };
            let name = cgroup
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            let who = match name.split_once(".cell") {
                _ if name == TEST_CALLER => "the functional test".to_string(),
                Some((service, cell)) if service == TEST_CALLER => {
                    format!("the functional test (cell {cell})")
                }
                Some((service, cell)) => format!("service `{service}` (cell {cell})"),
                None => format!("service `{name}`"),
            };
            bail!(match hit {
                LimitHit::Pids(most) => format!(
                    "{who} hit its limit of {most} processes and threads: raise [limits] pids in the config if it needs more, or find what forks without end"
                ),
                LimitHit::Memory(bytes) => format!(
                    "{who} was killed for memory past its limit of {} MiB: raise [limits] memory in the config if it needs more, or find what leaks",
                    bytes >> 20
                ),
            });
        }
        Ok(())
    }

    /// The resident memory of every process in the run's cgroups (all
    /// cells' services and tests), in KiB.
    pub fn resident_kib(&self) -> u64 {
        resident_kib(self.cgroups.children())
    }

    /// The cells that fit in half the memory available, measured on cell
    /// 0's running services (at least one, at most the ones made).
    fn cells_memory_allows(&self) -> usize {
        let cell_0: Vec<Cgroup> = self
            .config
            .launched()
            .filter_map(|(s, _)| self.cgroups.get(&s.name).cloned())
            .collect();
        let resident = resident_kib(&cell_0);
        let available = status_kib("/proc/meminfo", "MemAvailable:").unwrap_or(0);
        let fit = (available / 2)
            .checked_div(resident)
            .map_or(usize::MAX, |n| n as usize);
        fit.clamp(1, self.cells.len())
    }

    /// Cell `cell`'s functional test, in its test cgroup and namespace,
    /// driven through its control API. One per cell: it takes the cell's
    /// test-loop results.
    pub fn functional_test(
        &mut self,
        cell: usize,
        test: TestSpec,
        dir: &Path,
        timeout: Duration,
    ) -> FunctionalTest {
        let state = &mut self.cells[cell];
        let results = state
            .loop_results
            .take()
            .expect("one functional test per cell");
        FunctionalTest::new(
            test,
            dir,
            (
                self.cgroups
                    .get(&services::in_cell(TEST_CALLER, cell))
                    .expect("the test cgroup")
                    .clone(),
                state.netns.clone(),
                self.test_account.clone(),
            ),
            self.control_port,
            timeout,
            (state.test_loop.clone(), results),
            self.logs
                .join(format!("{}.log", services::in_cell("test", cell))),
        )
    }
}

/// The resident memory of the processes in `cgroups`, in KiB.
fn resident_kib(cgroups: &[Cgroup]) -> u64 {
    cgroups
        .iter()
        .flat_map(Cgroup::pids)
        .filter_map(|pid| status_kib(&format!("/proc/{pid}/status"), "VmRSS:"))
        .sum()
}

/// Processes and threads one service or test may have at once, unless
/// `[limits] pids` says otherwise: far above what services run, well
/// below what exhausts the host.
const DEFAULT_PIDS: u64 = 4096;

/// The run's `[limits]`, the defaults filled in: memory, half the host's.
fn limits(config: &Config) -> Limits {
    let half_the_host = status_kib("/proc/meminfo", "MemTotal:").map_or(u64::MAX, |kib| kib * 512);
    Limits {
        pids: config.limits.pids.unwrap_or(DEFAULT_PIDS),
        memory: config.limits.memory.unwrap_or(half_the_host),
    }
}

/// A `Key: <n> kB` line's number, from a /proc file.
fn status_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The network namespace of an attached service: its process's, or the
/// one all processes of its cgroup share. Namespaces already open are
/// reused, so each gets one listener.
/// `config` with the running services of its Compose project (those it
/// names itself stay as it says).
fn with_compose(config: &Config, compose: &Compose, invoking: Option<&Account>) -> Result<Config> {
    let mut config = config.clone();
    for service in containers::compose_services(compose, invoking)? {
        if !config.services.iter().any(|s| s.name == service.name) {
            config.services.push(service);
        }
    }
    Ok(config)
}

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
fn directory(
    placed: &[(&Service, Arc<NetNs>)],
    published: &[(&Service, SocketAddr)],
    host: &NetNs,
) -> Result<Vec<ServiceAddress>> {
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
    // A container's port published on the host (`-p 127.0.0.1:8080:80`)
    // is the service too, to callers on the host: a test that reaches
    // the front through it calls the front, and what the front does
    // while serving it is under test.
    for (service, address) in published {
        directory.push(ServiceAddress {
            name: service.name.clone(),
            port: address.port(),
            netns: host.cookie(),
            addresses: match address.ip() {
                ip if ip.is_unspecified() => host.addresses()?,
                ip => vec![ip],
            },
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

/// Background tasks of the run, each named by what it does, stopped with
/// it. Each loops for the whole run: one that ended, panicked.
#[derive(Default)]
struct Tasks(Vec<(&'static str, JoinHandle<()>)>);

impl Tasks {
    fn spawn(&mut self, doing: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.0.push((doing, tokio::spawn(task)));
    }

    /// What the first task that ended was doing.
    fn ended(&self) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(_, task)| task.is_finished())
            .map(|(doing, _)| *doing)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_background_task_that_panicked_is_named() {
        let mut tasks = Tasks::default();
        tasks.spawn("waiting", std::future::pending());
        tasks.spawn("reading the kernel's events", async {
            panic!("a malformed event");
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while tasks.ended().is_none() && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(tasks.ended(), Some("reading the kernel's events"));
    }
}
