//! One agent per host: two runs would fight over the kernel's view of the
//! same services and over their ports. The lock is an flock, so the kernel
//! releases it when the agent dies, however it dies.

use std::{
    fs::{self, File},
    io::Write,
    path::Path,
};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

const LOCK_FILE: &str = "/run/filibuster.lock";

/// Held for the run; released on drop (or by the kernel on exit).
pub struct HostLock {
    _held: Flock<File>,
}

impl HostLock {
    pub fn acquire() -> Result<Self> {
        Self::acquire_at(Path::new(LOCK_FILE))
    }

    fn acquire_at(path: &Path) -> Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the host lock {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, _)) => {
                let holder = fs::read_to_string(path).unwrap_or_default();
                bail!(
                    "another filibuster (pid {}) is running on this host: wait for it to end, or stop it",
                    holder.trim()
                );
            }
        };
        lock.set_len(0)?;
        write!(lock, "{}", std::process::id())?;
        Ok(Self { _held: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let path = std::env::temp_dir().join(format!("filibuster-lock-{}", std::process::id()));
        let first = HostLock::acquire_at(&path).unwrap();
        let err = HostLock::acquire_at(&path).err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(HostLock::acquire_at(&path).is_ok());
        fs::remove_file(path).unwrap();
    }
}
