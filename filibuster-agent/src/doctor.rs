//! `filibuster doctor`: whether this host has what the agent needs, each
//! thing checked the way the agent uses it (the kernel programs loaded,
//! a socket destroyed), with what to do where it falls short.

use std::{
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
};

use crate::{cgroups, ebpf::Kernel, sockdiag};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Present and usable.
    Ok,
    /// Needed, and missing: the line says what to do.
    Fix,
    /// Not needed by every run (a container engine): said for the record.
    Note,
}

#[derive(Debug)]
/// One thing the agent needs of the host, and how it stands.
pub struct Check {
    /// How it came out.
    pub status: Status,
    /// What was checked, in a few words.
    pub what: &'static str,
    /// What was found, or what to do about it.
    pub detail: String,
}

/// The oldest kernel with every helper the programs call:
/// `bpf_set_retval` (5.18), so that a refused connect is ECONNREFUSED to
/// its caller, and `bpf_loop` (5.17) for the HTTP/2 walk. Loading them
/// (below) is the real test.
const OLDEST_KERNEL: (u32, u32) = (5, 18);

/// Every check, in the order they matter.
pub fn checks() -> Vec<Check> {
    let mut checks = vec![root(), kernel_version(), cgroup_v2()];
    // Loading needs root; without it the line above says so.
    if checks[0].status == Status::Ok {
        checks.push(programs());
        checks.push(socket_destroy());
    }
    checks.extend(["docker", "podman"].map(engine));
    checks
}

fn check(status: Status, what: &'static str, detail: impl Into<String>) -> Check {
    Check {
        status,
        what,
        detail: detail.into(),
    }
}

fn root() -> Check {
    if nix::unistd::geteuid().is_root() {
        check(Status::Ok, "root", "running as root")
    } else {
        check(
            Status::Fix,
            "root",
            "not root: the agent loads kernel programs and makes cgroups; run it with sudo",
        )
    }
}

fn kernel_version() -> Check {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let (major, minor) = OLDEST_KERNEL;
    if version >= OLDEST_KERNEL {
        check(
            Status::Ok,
            "kernel",
            format!("{release} ({major}.{minor} or later needed)"),
        )
    } else {
        check(
            Status::Fix,
            "kernel",
            format!(
                "{release}: {major}.{minor} or later is needed (bpf_set_retval, bpf_loop); upgrade the kernel"
            ),
        )
    }
}

fn cgroup_v2() -> Check {
    match cgroups::cgroup2_mount() {
        Ok(mount) if mount.as_os_str() == "/sys/fs/cgroup" => check(
            Status::Ok,
            "cgroup v2",
            format!("mounted at {}", mount.display()),
        ),
        Ok(mount) => check(
            Status::Ok,
            "cgroup v2",
            format!(
                "mounted at {} beside v1 controllers (a hybrid layout): services are placed there; Docker's containers (cgroupfs driver) are too; Podman needs --runtime runc (crun refuses this layout)",
                mount.display()
            ),
        ),
        Err(e) => check(Status::Fix, "cgroup v2", format!("{e:#}")),
    }
}

fn programs() -> Check {
    match Kernel::load(false) {
        Ok(_) => check(
            Status::Ok,
            "kernel programs",
            "cgroup/connect4/6, getpeername4/6, sock_ops, cgroup_skb (with bpf_loop), raw tracepoints and the ring buffer load and verify",
        ),
        Err(e) => check(Status::Fix, "kernel programs", format!("{e:#}")),
    }
}

/// What the agent does to a pool's kept connection when a fault is
/// planned on it (`SOCK_DESTROY`, CONFIG_INET_DIAG_DESTROY).
fn socket_destroy() -> Check {
    let destroyed = (|| {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (_accepted, _) = listener.accept()?;
        sockdiag::destroy(client.local_addr()?, listener.local_addr()?, u64::MAX)
    })();
    match destroyed {
        Ok(()) => check(
            Status::Ok,
            "socket destroy",
            "sock_diag destroys a socket (a pool's kept connection reaches a planned fault)",
        ),
        Err(e) => check(
            Status::Fix,
            "socket destroy",
            format!(
                "sock_diag cannot destroy a socket ({e}): the kernel needs CONFIG_INET_DIAG_DESTROY, or a fault planned on a pooled connection is not met"
            ),
        ),
    }
}

fn engine(name: &'static str) -> Check {
    let installed = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return check(
            Status::Note,
            name,
            "not installed (needed only for container = and [compose])",
        );
    }
    let answers = Command::new(name)
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (answers, name) {
        (true, _) => check(Status::Ok, name, "installed and answering"),
        (false, "docker") => check(
            Status::Note,
            name,
            "installed, its daemon does not answer: start it (systemctl start docker, or dockerd & where there is no systemd)",
        ),
        (false, _) => check(
            Status::Note,
            name,
            "installed, `info` fails: run it by hand to see why",
        ),
    }
}

/// The checks as lines, and whether all that is needed is there.
pub fn report(checks: &[Check]) -> (String, bool) {
    let lines: Vec<String> = checks
        .iter()
        .map(|c| {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Fix => "FIX ",
                Status::Note => "note",
            };
            format!("  {mark}  {:<16} {}", c.what, c.detail)
        })
        .collect();
    let ready = checks.iter().all(|c| c.status != Status::Fix);
    (lines.join("\n"), ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fix_makes_the_host_not_ready_and_a_note_does_not() {
        let lines = |checks: &[Check]| report(checks);
        let (text, ready) = lines(&[
            check(Status::Ok, "root", "running as root"),
            check(Status::Note, "docker", "not installed"),
        ]);
        assert!(ready, "{text}");
        assert!(text.contains("ok    root"), "{text}");
        let (text, ready) = lines(&[check(Status::Fix, "kernel", "4.19: upgrade")]);
        assert!(!ready);
        assert!(text.contains("FIX   kernel"), "{text}");
    }
}
