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
use crate::{cgroups::Cgroup, config::Config, netns::NetNs};

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
        (cell, self.start_services().await)
    }

    async fn start_services(self) -> Result<Vec<Child>> {
        let log_path = |name: &str| self.logs.join(format!("{}.log", in_cell(name, self.cell)));
        let mut running = Vec::new();
        let launched = self
            .config
            .launched()
            .zip(&self.cgroups)
            .zip(&self.accounts);
        for (((service, command_line), cgroup), account) in launched {
            let log_path = log_path(&service.name);
            let log = File::create(&log_path)?;
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
        }
        let deadline = Instant::now() + self.timeout;
        let launched = self.config.launched().zip(&self.cgroups);
        for (((service, _), cgroup), process) in launched.zip(running.iter_mut()) {
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
                        self.timeout.as_secs(),
                        service.name,
                        log_path.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(running)
    }
}
