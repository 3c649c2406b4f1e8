//! One agent per host: two runs would fight over the kernel's view of the
//! same services and over their ports. The lock is an flock, so the kernel
//! releases it when the agent dies, however it dies. It is taken twice:
//!
//! - on a directory in the cgroup v2 filesystem (`filibuster.lock`, mode
//!   0700), which agents in different mount and pid namespaces that share
//!   the host's cgroups (two CI containers) see as the same inode, and
//!   which no unprivileged user can open, so none can hold it to keep
//!   agents from running;
//! - on `/run/filibuster.lock` (0600, never through a symlink), which also
//!   says which process holds it.

use std::{
    fs::{self, File},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

const LOCK_FILE: &str = "/run/filibuster.lock";
/// In the cgroup v2 filesystem: a directory, as nothing else can be made
/// there. Not `filibuster-<pid>`, the runs' own.
const LOCK_DIRECTORY: &str = "filibuster.lock";

/// Held for the run; released on drop (or by the kernel on exit).
pub struct HostLock {
    _file: Flock<File>,
    directory: Option<(Flock<File>, PathBuf)>,
}

impl HostLock {
    pub fn acquire(cgroup_mount: &Path) -> Result<Self> {
        let directory = cgroup_mount.join(LOCK_DIRECTORY);
        let mut lock = Self::acquire_at(Path::new(LOCK_FILE))?;
        lock.directory = Some((lock_directory(&directory)?, directory));
        Ok(lock)
    }

    fn acquire_at(path: &Path) -> Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot open the host lock {} (a symlink there is refused): remove it",
                    path.display()
                )
            })?;
        // A lock file others can read is one they can hold.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict the host lock {}", path.display()))?;
        let mut lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| another_agent(path))?;
        lock.set_len(0)?;
        write!(lock, "{}", std::process::id())?;
        Ok(Self {
            _file: lock,
            directory: None,
        })
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        // Leaves the cgroup filesystem as it was; the file lock stays (in
        // /run, gone at reboot). Removed while still held: an agent that
        // opened it meanwhile then finds the lock it gets is on a
        // directory no longer there, and takes the next one.
        if let Some((lock, path)) = self.directory.take() {
            let _ = fs::remove_dir(path);
            drop(lock);
        }
    }
}

fn lock_directory(path: &Path) -> Result<Flock<File>> {
    // A holder removes it as it ends: a few tries at the one there now.
    for _ in 0..8 {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the host lock {}", path.display()));
            }
        }
        let directory = match File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(directory) => directory,
            // Removed between the two: try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the host lock {}", path.display()));
            }
        };
        directory
            .set_permissions(fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict the host lock {}", path.display()))?;
        if let Some(lock) = lock_current(path, directory)? {
            return Ok(lock);
        }
    }
    anyhow::bail!(
        "cannot hold the host lock {}: it keeps being removed (another filibuster starting and ending?): try again",
        path.display()
    )
}

/// Locks `directory`, opened at `path`, if it still is what `path` names:
/// `None` when it was removed (or replaced) since, its lock then no one's.
fn lock_current(path: &Path, directory: File) -> Result<Option<Flock<File>>> {
    // Our /run lock was free: the holder sees another /run.
    let lock = Flock::lock(directory, FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another filibuster is running on this host, in another mount namespace (a container sharing the host's cgroups): wait for it to end, or stop it"
        )
    })?;
    let held = lock.metadata()?.ino();
    Ok(fs::metadata(path)
        .is_ok_and(|now| now.ino() == held)
        .then_some(lock))
}

fn another_agent(pid_file: &Path) -> anyhow::Error {
    let holder = fs::read_to_string(pid_file).unwrap_or_default();
    anyhow::anyhow!(
        "another filibuster (pid {}) is running on this host: wait for it to end, or stop it",
        holder.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_on_a_directory_removed_since_it_was_opened_is_not_taken() {
        let path = std::env::temp_dir().join(format!("filibuster-lockdir-{}", std::process::id()));
        fs::create_dir(&path).unwrap();
        let open = || File::options().read(true).open(&path).unwrap();
        // Opened, then removed by the holder ending, then made anew by a
        // third agent: the first one's lock would be on nothing.
        let stale = open();
        fs::remove_dir(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(lock_current(&path, stale).unwrap().is_none());
        let lock = lock_current(&path, open()).unwrap();
        assert!(lock.is_some(), "the directory there now is locked");
        let err = lock_current(&path, open()).err().unwrap().to_string();
        assert!(err.contains("another filibuster is running"), "{err}");
        drop(lock);
        fs::remove_dir(&path).unwrap();
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let path = std::env::temp_dir().join(format!("filibuster-lock-{}", std::process::id()));
        let first = HostLock::acquire_at(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let err = HostLock::acquire_at(&path).err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(HostLock::acquire_at(&path).is_ok());
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_lock_file_others_could_read_is_restricted_and_a_symlink_refused() {
        let dir = std::env::temp_dir().join(format!("filibuster-lock-dir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lock");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let lock = HostLock::acquire_at(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(lock);
        let planted = dir.join("planted");
        std::os::unix::fs::symlink(dir.join("elsewhere"), &planted).unwrap();
        let err = HostLock::acquire_at(&planted).err().unwrap().to_string();
        assert!(err.contains("a symlink there is refused"), "{err}");
        assert!(!dir.join("elsewhere").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_lock_is_private_and_exclusive() {
        let dir = std::env::temp_dir().join(format!("filibuster-lock-d-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = lock_directory(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert!(lock_directory(&dir).is_err());
        drop(first);
        assert!(lock_directory(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
