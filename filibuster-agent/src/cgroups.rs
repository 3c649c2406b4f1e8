//! cgroup v2: one cgroup per run (`filibuster-<agent pid>`), with a child
//! per service and one for the test. A cgroup is how the kernel programs
//! know who is calling, and how every process of a service is ended at once.
// System calls and kernel memory no safe wrapper covers; each `unsafe`
// says why it holds.
#![allow(unsafe_code)]

use std::{
    fs::{self, File, OpenOptions},
    os::{
        fd::AsRawFd,
        unix::{fs::MetadataExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

const RUN_PREFIX: &str = "filibuster-";

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir))
        })
        .next()
        .context("no cgroup v2 filesystem is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup) or boot with systemd.unified_cgroup_hierarchy=1")
}

/// A cgroup: one this run created, or one it attaches to. A handle only:
/// [`RunCgroups`] removes the ones the run created.
#[derive(Clone, Debug)]
pub struct Cgroup {
    path: PathBuf,
    id: u64,
    /// Where its limits are kept, for one this run created (a v1 cgroup
    /// of the same name, on a hybrid host, which its processes join too).
    limited: Option<Limited>,
}

/// A created cgroup's limits: the files that count the times they were
/// hit, and, on a hybrid host, the v1 cgroups its processes also join.
#[derive(Clone, Debug)]
struct Limited {
    limits: Limits,
    pids_events: PathBuf,
    memory_events: PathBuf,
    /// Each v1 cgroup's `cgroup.procs` (none with cgroup v2's controllers).
    v1_procs: Vec<PathBuf>,
}

/// `[limits]`: what the processes of one service (each copy, in each
/// cell) or of the test may hold at once, so that a fork bomb or a leak
/// under a fault stays in its cgroup instead of taking the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Processes and threads (`pids.max`).
    pub pids: u64,
    /// Bytes of memory (`memory.max`); the kernel ends a process past it.
    pub memory: u64,
}

/// How a limit of one cgroup was hit, when it was.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// A fork or thread was refused at `pids.max`.
    Pids(u64),
    /// A process was killed at `memory.max`.
    Memory(u64),
}

impl Cgroup {
    fn create(path: PathBuf, enforcement: &Enforcement, limits: Limits) -> Result<Self> {
        fs::create_dir(&path)
            .with_context(|| format!("cannot create cgroup {}", path.display()))?;
        let id = fs::metadata(&path)?.ino();
        let limited = enforcement.limit(&path, limits)?;
        Ok(Self { path, id, limited })
    }

    /// Which of its limits its processes hit, if any did.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        let limited = self.limited.as_ref()?;
        let count = |file: &Path, key: &str| {
            fs::read_to_string(file).ok().and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
            })
        };
        if count(&limited.memory_events, "oom_kill ").is_some_and(|n| n > 0) {
            return Some(LimitHit::Memory(limited.limits.memory));
        }
        if count(&limited.pids_events, "max ").is_some_and(|n| n > 0) {
            return Some(LimitHit::Pids(limited.limits.pids));
        }
        None
    }

    /// A cgroup someone else made (a container's, a unit's, a harness's):
    /// the run attaches to it and never changes or removes it.
    pub fn existing(path: &Path) -> Result<Self> {
        fs::metadata(path.join("cgroup.procs")).with_context(|| {
            format!(
                "{} is not a cgroup v2 directory: give its path under the cgroup2 mount",
                path.display()
            )
        })?;
        let id = fs::metadata(path)?.ino();
        Ok(Self {
            path: path.to_path_buf(),
            id,
            limited: None,
        })
    }

    /// The cgroup process `pid` lives in.
    pub fn of_process(mount: &Path, pid: u32) -> Result<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .with_context(|| format!("no process {pid}: check the service's pid"))?;
        let relative = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .with_context(|| format!("process {pid} is not in a cgroup v2 hierarchy"))?;
        Self::existing(&mount.join(relative.trim_start_matches('/')))
    }

    /// The id the kernel programs see (`bpf_get_current_cgroup_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where the cgroup is in the cgroup file system.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file a process writes "0" to in order to move itself here.
    /// Its depth in the tree mounted at `mount` (the root is 0), as the
    /// kernel counts a cgroup's level.
    pub fn level(&self, mount: &Path) -> u8 {
        self.path
            .strip_prefix(mount)
            .map_or(0, |relative| relative.components().count())
            .try_into()
            .unwrap_or(u8::MAX)
    }

    /// Its `cgroup.procs`: writing a pid there moves the process in.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Whether any process is in the cgroup or one under it.
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|line| line == "populated 1"))
    }

    /// Makes `command` start inside this cgroup: the child moves itself
    /// here before exec, so nothing it runs ever runs outside.
    pub fn start_inside(&self, command: &mut Command) -> Result<()> {
        let v1 = self.limited.iter().flat_map(|l| &l.v1_procs);
        // The v1 cgroups first: the v2 one, joined last, is where the
        // kernel programs and the agent look.
        let files: Vec<File> = v1
            .chain(std::iter::once(&self.procs_file()))
            .map(|path| {
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))
            })
            .collect::<Result<_>>()?;
        // SAFETY: only write(2), async-signal-safe, runs between fork and
        // exec; the closure owns `files`, so the descriptors stay open.
        unsafe {
            command.pre_exec(move || {
                for file in &files {
                    if libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Ends every process in the cgroup, descendants included.
    pub fn kill_all(&self) {
        if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            // Kernels before 5.14 have no cgroup.kill.
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The run's cgroup and its children; dropping it ends their processes and
/// removes them.
#[derive(Debug)]
pub struct RunCgroups {
    root: PathBuf,
    children: Vec<Cgroup>,
    enforcement: Enforcement,
    limits: Limits,
}

/// Where this host enforces the run's limits.
#[derive(Debug)]
enum Enforcement {
    /// cgroup v2's own `pids` and `memory` controllers, enabled for the
    /// run's children.
    V2,
    /// A hybrid host's v1 `pids` and `memory` hierarchies (cgroup v2 then
    /// has neither): the run's cgroups there, of the same names.
    V1 { pids: PathBuf, memory: PathBuf },
    /// Neither: the limits are not enforced (said once, at start).
    Unavailable,
}

impl Enforcement {
    /// For the run's new cgroup `root`: v2's controllers if its parent
    /// hands them down, else the v1 hierarchies' run cgroups (made here).
    fn for_run(root: &Path) -> Result<Self> {
        let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let has = |name: &str| controllers.split_whitespace().any(|c| c == name);
        if has("pids") && has("memory") {
            fs::write(root.join("cgroup.subtree_control"), "+pids +memory").with_context(|| {
                format!(
                    "cannot enable the pids and memory controllers in {}",
                    root.display()
                )
            })?;
            return Ok(Self::V2);
        }
        let name = root.file_name().expect("a run cgroup's name");
        let (Some(pids), Some(memory)) = (v1_mount("pids"), v1_mount("memory")) else {
            return Ok(Self::Unavailable);
        };
        let (pids, memory) = (pids.join(name), memory.join(name));
        for dir in [&pids, &memory] {
            fs::create_dir(dir)
                .with_context(|| format!("cannot create cgroup {}", dir.display()))?;
        }
        Ok(Self::V1 { pids, memory })
    }

    /// Sets `limits` on the run's new child cgroup `path`.
    fn limit(&self, path: &Path, limits: Limits) -> Result<Option<Limited>> {
        let write = |file: PathBuf, value: u64| {
            fs::write(&file, value.to_string())
                .with_context(|| format!("cannot set {} to {value}", file.display()))
        };
        match self {
            Self::V2 => {
                write(path.join("pids.max"), limits.pids)?;
                write(path.join("memory.max"), limits.memory)?;
                Ok(Some(Limited {
                    limits,
                    pids_events: path.join("pids.events"),
                    memory_events: path.join("memory.events"),
                    v1_procs: Vec::new(),
                }))
            }
            Self::V1 { pids, memory } => {
                let name = path.file_name().expect("a child cgroup's name");
                let (pids, memory) = (pids.join(name), memory.join(name));
                for dir in [&pids, &memory] {
                    fs::create_dir(dir)
                        .with_context(|| format!("cannot create cgroup {}", dir.display()))?;
                }
                write(pids.join("pids.max"), limits.pids)?;
                write(memory.join("memory.limit_in_bytes"), limits.memory)?;
                Ok(Some(Limited {
                    limits,
                    pids_events: pids.join("pids.events"),
                    memory_events: memory.join("memory.oom_control"),
                    v1_procs: vec![pids.join("cgroup.procs"), memory.join("cgroup.procs")],
                }))
            }
            Self::Unavailable => Ok(None),
        }
    }

    /// The run's cgroups in the v1 hierarchies, if it has any.
    fn v1_roots(&self) -> Vec<&Path> {
        match self {
            Self::V1 { pids, memory } => vec![pids, memory],
            _ => Vec::new(),
        }
    }
}

/// Where the v1 hierarchy of `controller` is mounted, on a hybrid host.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, kind, options) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        (kind == "cgroup" && options.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(dir))
    })
}

impl RunCgroups {
    /// Makes the run's cgroup under `mount`, the cgroup v2 file system,
    /// its children to be held to `limits`.
    pub fn create(mount: &Path, limits: Limits) -> Result<Self> {
        let root = mount.join(format!("{RUN_PREFIX}{}", std::process::id()));
        fs::create_dir(&root).with_context(|| {
            format!(
                "cannot create cgroup {} (is this run as root?)",
                root.display()
            )
        })?;
        let mut run = Self {
            root,
            children: Vec::new(),
            enforcement: Enforcement::Unavailable,
            limits,
        };
        // Set after `run` exists, so that its drop removes what a failure
        // here leaves.
        run.enforcement = Enforcement::for_run(&run.root)?;
        if let Enforcement::Unavailable = run.enforcement {
            eprintln!(
                "filibuster: warning: this host's cgroups have no pids and memory controllers for the run: [limits] are not enforced"
            );
        }
        Ok(run)
    }

    /// Makes a child cgroup for one service (or the test), named after it,
    /// held to the run's limits.
    pub fn add(&mut self, name: &str) -> Result<&Cgroup> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("`{name}` cannot name a cgroup: use letters, digits, `-` or `_`");
        }
        let cgroup = Cgroup::create(self.root.join(name), &self.enforcement, self.limits)?;
        self.children.push(cgroup);
        Ok(self.children.last().expect("just pushed"))
    }

    /// The children made so far, in the order they were added.
    pub fn children(&self) -> &[Cgroup] {
        &self.children
    }

    /// The run's own cgroup, parent of its children.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The child made for `name`.
    pub fn get(&self, name: &str) -> Option<&Cgroup> {
        self.children
            .iter()
            .find(|c| c.path.file_name().is_some_and(|n| n == name))
    }
}

impl Drop for RunCgroups {
    fn drop(&mut self) {
        for child in &self.children {
            child.kill_all();
        }
        for child in &self.children {
            remove_when_empty(&child.path);
        }
        remove_when_empty(&self.root);
        // Their processes were the v2 cgroups' own, ended above.
        for root in self.enforcement.v1_roots() {
            remove_when_empty(root);
        }
    }
}

/// The processes in the cgroup at `path` and in the cgroups under it.
pub fn pids_under(path: &Path) -> Vec<u32> {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter(|entry| entry.file_name() == "cgroup.procs")
        .flat_map(|entry| {
            fs::read_to_string(entry.path())
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Removes the cgroup at `path` and every cgroup under it (a service may
/// have made some of its own), deepest first, once their processes are
/// gone.
fn remove_when_empty(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let tree: Vec<PathBuf> = walkdir::WalkDir::new(path)
        .contents_first(true)
        .into_iter()
        .flatten()
        .filter(|entry| entry.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect();
    for cgroup in tree {
        // rmdir fails with EBUSY until the killed processes are reaped.
        while fs::remove_dir(&cgroup).is_err() && cgroup.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Fails, saying why, if programs attached to `target` (a service's cgroup,
/// `name` the service) would reach beyond that service: the root of the
/// tree or a cgroup holding the agent (every connect on the host, the
/// agent's own upstream ones included, would be redirected), or a cgroup
/// inside or around one already managed (`managed`: what for), whose
/// connects would be claimed twice.
pub fn check_attachable(
    mount: &Path,
    name: &str,
    target: &Path,
    agent: &Path,
    managed: &[(String, PathBuf)],
) -> Result<()> {
    let shown = target.display();
    if target == mount {
        bail!(
            "service `{name}`: cgroup {shown} is the root of the cgroup tree, where every process of the host is: give the service's own cgroup (its pid or container)"
        );
    }
    if agent.starts_with(target) {
        bail!(
            "service `{name}`: cgroup {shown} holds filibuster itself ({}): its own connects would be redirected; run the agent outside the service's cgroup, or give a cgroup of the service alone",
            agent.display()
        );
    }
    for (what, other) in managed {
        if target.starts_with(other) || other.starts_with(target) {
            bail!(
                "service `{name}`: cgroup {shown} is inside or around {what}'s cgroup {}: each service needs a cgroup of its own, apart from the others",
                other.display()
            );
        }
    }
    Ok(())
}

/// The cgroup the agent itself runs in.
pub fn own_cgroup(mount: &Path) -> Result<PathBuf> {
    Ok(Cgroup::of_process(mount, std::process::id())?.path)
}

/// Removes the cgroups of earlier runs (an agent killed with SIGKILL, say),
/// ending any process left in them; returns what it removed. Only for the
/// holder of the host lock: no other agent runs then, so every run's
/// cgroup but this process's own is stale, whatever process its pid now
/// names.
pub fn remove_stale_runs(mount: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(mount) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(RUN_PREFIX)) else {
            continue;
        };
        match pid.parse::<u32>() {
            Ok(pid) if pid != std::process::id() => {}
            _ => continue,
        }
        let root = entry.path();
        let children: Vec<PathBuf> = fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect();
        for child in &children {
            let _ = fs::write(child.join("cgroup.kill"), "1");
        }
        for child in &children {
            remove_when_empty(child);
        }
        remove_when_empty(&root);
        for v1 in ["pids", "memory"].into_iter().filter_map(v1_mount) {
            remove_when_empty(&v1.join(&name));
        }
        removed.push(root);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_targets_that_reach_beyond_their_service_are_refused() {
        let mount = Path::new("/sys/fs/cgroup");
        let agent = mount.join("user.slice/session-1.scope");
        let managed = [
            ("the run".to_string(), mount.join("filibuster-42")),
            (
                "service `cart`".to_string(),
                mount.join("system.slice/cart.service"),
            ),
        ];
        let check = |target: &Path| {
            check_attachable(mount, "x", target, &agent, &managed).map_err(|e| e.to_string())
        };
        assert!(check(&mount.join("system.slice/shop.service")).is_ok());
        let err = check(mount).unwrap_err();
        assert!(err.contains("is the root of the cgroup tree"), "{err}");
        for holding_the_agent in ["user.slice", "user.slice/session-1.scope"] {
            let err = check(&mount.join(holding_the_agent)).unwrap_err();
            assert!(err.contains("holds filibuster itself"), "{err}");
        }
        for overlapping in [
            "system.slice",
            "system.slice/cart.service/worker",
            "filibuster-42/foo",
        ] {
            let err = check(&mount.join(overlapping)).unwrap_err();
            assert!(err.contains("inside or around"), "{overlapping}: {err}");
        }
    }
}
