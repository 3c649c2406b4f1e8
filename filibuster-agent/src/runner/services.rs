//! The services the agent launches: each in its cgroup, its output in a
//! log file, ready once it listens on its port.

use std::{
    fs::{self, File},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::{cgroups::RunCgroups, config::Config};

/// Whether something accepts connections on loopback `port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(100),
    )
    .is_ok()
}

/// Fails if another process holds a port a launched service needs.
pub fn check_ports(config: &Config) -> Result<()> {
    for (service, _) in config.launched() {
        if listening(service.port) {
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

/// Where the run's logs go: one file per service, one for a looping test.
pub fn log_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("filibuster-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Starts every service the agent launches (killed when the returned
/// children are dropped) and waits until each listens.
pub async fn start(
    config: &Config,
    cgroups: &RunCgroups,
    logs: &Path,
    timeout: Duration,
) -> Result<Vec<Child>> {
    let mut running = Vec::new();
    for (service, command_line) in config.launched() {
        let cgroup = cgroups
            .get(&service.name)
            .expect("a cgroup per launched service");
        let log_path = logs.join(format!("{}.log", service.name));
        let log = File::create(&log_path)?;
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(command_line)
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
    for ((service, _), process) in config.launched().zip(running.iter_mut()) {
        while !listening(service.port) {
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
