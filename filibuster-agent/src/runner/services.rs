//! The services the agent launches: each in its cgroup, its output in a
//! log file, ready once it listens on its port.

use std::{
    fs::File,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::account::Account;
use crate::{
    cgroups::Cgroup,
    config::{Config, Service},
    netns::NetNs,
};

/// Fails if another process holds a port a launched service needs.
pub fn check_ports(config: &Config, host: &NetNs) -> Result<()> {
    for (service, _) in config.launched() {
        if host.listens_on(service.port) {
            bail!(
                "port {} of service `{}` is already in use by another process: stop it, or change [services.{}].port",
                service.port,
                service.name,
                service.name
            );
        }
    }
    Ok(())
}

/// Where the control API listens unless told: Filibuster's own port.
pub const DEFAULT_CONTROL_PORT: u16 = 5005;

/// The control API's port: `requested`, or the default unless a service
/// is declared on it, in which case a free one (tests learn it from
/// `FILIBUSTER_CONTROL_URL`). The agent never takes a service's port:
/// the service would fail to bind, or, attached, its callers would reach
/// the control API instead of it.
pub fn control_port(config: &Config, requested: Option<u16>) -> Result<u16> {
    let on = |port: u16| config.services.iter().find(|s| s.port == port);
    if let Some(port) = requested {
        if let Some(service) = on(port) {
            bail!(
                "service `{}` listens on port {port}, which --control-port gives the control API: pass --control-port with a port no service uses, or leave it out to let filibuster pick one",
                service.name
            );
        }
        return Ok(port);
    }
    let Some(service) = on(DEFAULT_CONTROL_PORT) else {
        return Ok(DEFAULT_CONTROL_PORT);
    };
    // A port the kernel picks is free on the host; cells' namespaces are
    // new, so it is free there too.
    let free = loop {
        let probe = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .context("cannot find a free port for the control API: pass --control-port")?;
        let port = probe.local_addr()?.port();
        if on(port).is_none() {
            break port;
        }
    };
    eprintln!(
        "filibuster: service `{}` listens on {DEFAULT_CONTROL_PORT}, the control API's usual port: the control API is on 127.0.0.1:{free} (tests find it in FILIBUSTER_CONTROL_URL)",
        service.name
    );
    Ok(free)
}

/// The name of cell `cell`'s copy of `name` (its cgroup, its log): cell 0
/// is the host's and keeps the plain name.
pub fn in_cell(name: &str, cell: usize) -> String {
    match cell {
        0 => name.to_string(),
        _ => format!("{name}.cell{cell}"),
    }
}

/// Where the run's logs go: one file per service, one for a looping test.
/// A new directory (mode 0700, `mkdtemp`): never one that exists, so never
/// one planted there, as a symlink or otherwise, by someone else.
pub fn log_dir() -> Result<PathBuf> {
    let template = std::env::temp_dir().join("filibuster-XXXXXX");
    nix::unistd::mkdtemp(&template)
        .with_context(|| format!("cannot create a log directory like {}", template.display()))
}

/// What starting one cell's copy of the launched services takes, owned,
/// so that cells beyond the first start while the first one explores.
pub struct CellLaunch {
    pub config: Arc<Config>,
    /// Each launched service's cgroup in this cell, in config order.
    pub cgroups: Vec<Cgroup>,
    /// Who each launched service runs as, in config order (`None`: root).
    pub accounts: Vec<Option<Account>>,
    pub cell: usize,
    pub netns: Arc<NetNs>,
    pub logs: PathBuf,
    pub timeout: Duration,
}

impl CellLaunch {
    /// Starts the cell's copy of every service the agent launches (killed
    /// when the returned children are dropped), in its network namespace,
    /// and waits until each listens there; says which cell it was.
    pub async fn start(self) -> (usize, Result<Vec<Child>>) {
        let cell = self.cell;
        (cell, self.start_services(|_| true).await)
    }

    /// Ends and starts anew the cell's copy of each service whose state
    /// only a restart puts back (`restart = "every-execution"`), and
    /// waits until each listens again.
    pub async fn restart(self) -> Result<Vec<Child>> {
        let restarted = |service: &Service| service.restart_every_execution;
        let launched = self.config.launched().zip(&self.cgroups);
        for ((service, _), cgroup) in launched.filter(|((s, _), _)| restarted(s)) {
            cgroup.kill_all();
            let deadline = Instant::now() + self.timeout;
            while cgroup.populated() {
                if Instant::now() > deadline {
                    bail!("service `{}` did not end when restarted", service.name);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.start_services(restarted).await
    }

    /// Starts the cell's copy of the launched services `which` picks.
    async fn start_services(self, which: impl Fn(&Service) -> bool) -> Result<Vec<Child>> {
        let log_path = |name: &str| self.logs.join(format!("{}.log", in_cell(name, self.cell)));
        let mut running = Vec::new();
        let launched = self
            .config
            .launched()
            .zip(&self.cgroups)
            .zip(&self.accounts)
            .filter(|(((service, _), _), _)| which(service));
        let mut started = Vec::new();
        for (((service, command_line), cgroup), account) in launched {
            let log_path = log_path(&service.name);
            // Appended to: a restarted service's log keeps what it said before.
            let log = File::options().create(true).append(true).open(&log_path)?;
            let mut command = std::process::Command::new("sh");
            command
                .arg("-c")
                .arg(command_line)
                .current_dir(&self.config.dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            cgroup.start_inside(&mut command)?;
            self.netns.start_inside(&mut command);
            if let Some(account) = account {
                account.apply(&mut command);
            }
            let child = Command::from(command)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start service `{}`", service.name))?;
            running.push(child);
            started.push((service, cgroup));
        }
        let deadline = Instant::now() + self.timeout;
        for ((service, cgroup), process) in started.into_iter().zip(running.iter_mut()) {
            // On any address: `localhost` is `::1` alone for some (Node's
            // `listen(port, "localhost")` where /etc/hosts says so).
            while !self.netns.listens_on(service.port) {
                let log_path = log_path(&service.name);
                // A command that daemonizes (nginx by default, `redis-server
                // --daemonize yes`, a start script ending in `&`) exits at
                // once, its daemon left in the cgroup: that is the service.
                let exited = process
                    .try_wait()?
                    .filter(|status| !(status.success() && cgroup.populated()));
                if let Some(status) = exited {
                    bail!(
                        "service `{}` exited ({status}) before listening on port {}; its log {} ends: {}",
                        service.name,
                        service.port,
                        log_path.display(),
                        log_tail(&log_path)
                    );
                }
                if Instant::now() > deadline {
                    bail!(
                        "service `{}` did not listen on port {} within {}s: check [services.{}].port; its log {} ends: {}",
                        service.name,
                        service.port,
                        self.timeout.as_secs(),
                        service.name,
                        log_path.display(),
                        log_tail(&log_path)
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(running)
    }
}

/// The last lines of a service's log, on one line: what a service that
/// would not start said last ("Address already in use").
fn log_tail(path: &std::path::Path) -> String {
    const LINES: usize = 3;
    let text = File::open(path)
        .map(|mut log| super::functional::tail(&mut log))
        .unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match &lines[lines.len().saturating_sub(LINES)..] {
        [] => "(nothing)".to_string(),
        last => last.join(" | "),
    }
}
