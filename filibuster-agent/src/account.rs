//! Who launched services and tests run as. Under `sudo`, the user who ran
//! it (what they write in the workspace stays theirs, their HOME and its
//! packages apply); a service's `user =` says otherwise. The agent alone
//! keeps root: it needs it for the kernel programs, cgroups and
//! namespaces, not the application.
// System calls and kernel memory no safe wrapper covers; each `unsafe`
// says why it holds.
#![allow(unsafe_code)]

use std::{ffi::CString, os::unix::process::CommandExt, path::PathBuf, process::Command};

use anyhow::{Context, Result, anyhow};
use nix::unistd::{Gid, Uid, User, getgrouplist, setgid, setgroups, setuid};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    name: String,
    uid: Uid,
    gid: Gid,
    /// Supplementary groups, as a login would have them.
    groups: Vec<Gid>,
    home: PathBuf,
}

impl Account {
    /// The user who ran `sudo` (`SUDO_UID`, `SUDO_GID`); `None` when the
    /// agent was not started through sudo, or by root.
    pub fn invoking() -> Result<Option<Self>> {
        let id = |name: &str| -> Result<Option<u32>> {
            std::env::var(name)
                .ok()
                .map(|value| {
                    value
                        .parse()
                        .with_context(|| format!("{name}={value} is not a numeric id"))
                })
                .transpose()
        };
        let (Some(uid), Some(gid)) = (id("SUDO_UID")?, id("SUDO_GID")?) else {
            return Ok(None);
        };
        if uid == 0 {
            return Ok(None);
        }
        let gid = Gid::from_raw(gid);
        match User::from_uid(Uid::from_raw(uid)).context("cannot read the user database")? {
            Some(user) => Self::of(user, gid).map(Some),
            // A user the host does not name (an id passed into a
            // container): its ids alone.
            None => Ok(Some(Self {
                name: uid.to_string(),
                uid: Uid::from_raw(uid),
                gid,
                groups: vec![gid],
                home: PathBuf::from("/"),
            })),
        }
    }

    /// The user `name` (a service's `user =`).
    pub fn named(name: &str) -> Result<Self> {
        let user = User::from_name(name)
            .context("cannot read the user database")?
            .ok_or_else(|| anyhow!("there is no user `{name}` on this host"))?;
        let gid = user.gid;
        Self::of(user, gid)
    }

    fn of(user: User, gid: Gid) -> Result<Self> {
        let login = CString::new(user.name.clone())?;
        let groups = getgrouplist(&login, gid)
            .with_context(|| format!("cannot list the groups of user `{}`", user.name))?;
        Ok(Self {
            name: user.name,
            uid: user.uid,
            gid,
            groups,
            home: user.dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> u32 {
        self.uid.as_raw()
    }

    /// Makes `command` run as this account. Registered after every other
    /// step taken between fork and exec (joining a cgroup, a network
    /// namespace), which need root.
    pub fn apply(&self, command: &mut Command) {
        command
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: setgroups, setgid and setuid are system calls, safe
        // between fork and exec; the group list was built before the fork.
        unsafe {
            command.pre_exec(move || {
                setgroups(&groups)?;
                setgid(gid)?;
                setuid(uid)?;
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_missing_user_and_reads_a_present_one() {
        let err = Account::named("no-such-user-here").unwrap_err();
        assert_eq!(
            err.to_string(),
            "there is no user `no-such-user-here` on this host"
        );
        let root = Account::named("root").unwrap();
        assert_eq!((root.uid, root.gid), (Uid::from_raw(0), Gid::from_raw(0)));
        assert!(root.groups.contains(&Gid::from_raw(0)));
    }
}
