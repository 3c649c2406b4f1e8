//! Network namespaces. A container's services live in a namespace of their
//! own, where the agent's loopback listener is out of reach and where
//! addresses mean what that namespace's routes say. So the agent opens a
//! listener inside each namespace a managed caller lives in, and makes a
//! caller's upstream connections from the caller's namespace.
//!
//! A socket belongs to the namespace of the thread that created it, and a
//! thread may switch namespace (`setns`): sockets for another namespace are
//! created on a short-lived thread that enters it, then used from anywhere.
// System calls and kernel memory no safe wrapper covers; each `unsafe`
// says why it holds.
#![allow(unsafe_code)]

use std::{
    fs::{self, File},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::MetadataExt,
    },
};

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};
use tokio::net::{TcpSocket, TcpStream};

/// One set of the agent's listeners in a namespace (not yet registered
/// with any runtime: each proxy thread takes its own).
pub struct LoopbackListeners {
    /// The IPv4 listener, on 127.0.0.1.
    pub v4: std::net::TcpListener,
    /// The IPv6 listener, on ::1, where the namespace has IPv6.
    pub v6: Option<std::net::TcpListener>,
}

/// `copies` listening sockets sharing one free port of `ip`.
fn bind_copies(ip: IpAddr, copies: usize) -> io::Result<Vec<std::net::TcpListener>> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrStorage, bind, listen,
        setsockopt, socket, sockopt::ReusePort,
    };
    let family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let mut port = 0;
    (0..copies)
        .map(|_| {
            let fd = socket(
                family,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                SockProtocol::Tcp,
            )?;
            setsockopt(&fd, ReusePort, &true)?;
            bind(
                fd.as_raw_fd(),
                &SockaddrStorage::from(SocketAddr::new(ip, port)),
            )?;
            listen(&fd, Backlog::MAXCONN)?;
            let listener = std::net::TcpListener::from(fd);
            port = listener.local_addr()?.port();
            Ok(listener)
        })
        .collect()
}

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    /// The kernel's identity of the namespace (`bpf_get_netns_cookie`).
    cookie: u64,
    /// The agent's own namespace: entered without a thread.
    own: bool,
}

impl NetNs {
    /// The namespace the agent runs in.
    pub fn own() -> Result<Self> {
        Self::open("/proc/self/ns/net", None)
    }

    /// The namespace process `pid` runs in.
    pub fn of_process(pid: u32) -> Result<Self> {
        Self::open(&format!("/proc/{pid}/ns/net"), Some(pid))
    }

    /// A new namespace with only its loopback, up: a cell's. It lives as
    /// long as this handle or a process inside it, so nothing of it
    /// outlasts the agent and the services it started there.
    pub fn isolated() -> Result<Self> {
        let file = std::thread::spawn(|| -> io::Result<File> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
            loopback_up()?;
            File::open("/proc/thread-self/ns/net")
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        .context("cannot create a network namespace for a cell (the agent needs CAP_SYS_ADMIN)")?;
        let mut netns = Self {
            file,
            cookie: 0,
            own: false,
        };
        netns.cookie = netns
            .enter(|| netns_cookie(&std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?))
            .context("cannot read the cookie of a cell's network namespace")?;
        Ok(netns)
    }

    /// Makes `command` start inside this namespace.
    pub fn start_inside(self: &std::sync::Arc<Self>, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if self.own {
            return;
        }
        let netns = self.clone();
        // SAFETY: setns is async-signal-safe; the fd stays open in `netns`.
        unsafe {
            command.pre_exec(move || {
                setns(netns.file.as_fd(), CloneFlags::CLONE_NEWNET)?;
                Ok(())
            });
        }
    }

    fn open(path: &str, pid: Option<u32>) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot open network namespace {path} ({e}): the process must be running, and the agent needs root in the host's namespaces"
            )
        })?;
        let mut netns = Self {
            file,
            cookie: 0,
            own: pid.is_none() || Self::is_own(path),
        };
        netns.cookie = netns
            .enter(|| netns_cookie(&std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?))
            .with_context(|| format!("cannot read the cookie of network namespace {path}"))?;
        Ok(netns)
    }

    fn is_own(path: &str) -> bool {
        let inode = |p: &str| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        inode(path) == inode("/proc/self/ns/net")
    }

    /// The kernel's cookie for the namespace, as the programs key it.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// Runs `work` inside this namespace: here when it is the agent's own,
    /// on a thread of its own otherwise (which ends with it).
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        if self.own {
            return work();
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)?;
                    work()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        })
    }

    /// The agent's transparent listeners on this namespace's loopback,
    /// IPv4 and IPv6 (unless it is off there): `copies` sockets on one
    /// port each (`SO_REUSEPORT`), one per proxy thread, the kernel
    /// spreading connections over them.
    pub fn bind_listeners(&self, copies: usize) -> Result<Vec<LoopbackListeners>> {
        self.enter(|| {
            let v4 = bind_copies(Ipv4Addr::LOCALHOST.into(), copies)?;
            let v6 = bind_copies(Ipv6Addr::LOCALHOST.into(), copies).ok();
            let mut v6 = v6.into_iter().flatten();
            Ok(v4
                .into_iter()
                .map(|v4| LoopbackListeners { v4, v6: v6.next() })
                .collect())
        })
        .context(
            "cannot open a listener on loopback in a service's network namespace (is its `lo` up?)",
        )
    }

    /// A connection to `destination`, made from this namespace.
    pub async fn connect(&self, destination: SocketAddr) -> io::Result<TcpStream> {
        let socket = self.enter(|| {
            if destination.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
        })?;
        socket.set_nodelay(true)?;
        socket.connect(destination).await
    }

    /// The addresses of this namespace's interfaces: where its services
    /// are reached from elsewhere.
    pub fn addresses(&self) -> Result<Vec<IpAddr>> {
        self.enter(|| {
            Ok(nix::ifaddrs::getifaddrs()?
                .filter_map(|interface| {
                    let address = interface.address?;
                    if let Some(v4) = address.as_sockaddr_in() {
                        Some(IpAddr::V4(v4.ip()))
                    } else {
                        address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                    }
                })
                .collect())
        })
        .context("cannot list the addresses of a service's network namespace")
    }

    /// Whether a socket of this namespace listens on TCP `port`, on any
    /// address: a socket of some process other than the agent (its own
    /// listeners, the control API's among them, are no service's).
    pub fn listens_on(&self, port: u16) -> bool {
        let own = own_socket_inodes();
        self.enter(|| Ok(tcp_sockets("thread-self")))
            .is_ok_and(|sockets| {
                sockets.iter().any(|row| {
                    listening_port(row) == Some(port)
                        && row.inode.is_none_or(|inode| !own.contains(&inode))
                })
            })
    }
}

/// The inodes of the sockets the agent's own process holds, from the
/// `socket:[inode]` links of `/proc/self/fd`.
fn own_socket_inodes() -> std::collections::HashSet<u64> {
    fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The TCP ports sockets listen on in the network namespace of `process`
/// (a pid, or `self`), sorted, from `/proc/<process>/net/tcp*`; not
/// Docker's embedded DNS server, which listens on a random port in every
/// container of a user-defined network.
pub fn listening_ports(process: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = tcp_sockets(process)
        .iter()
        .filter_map(listening_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The TCP sockets of the network namespace of `process` (a pid, `self`
/// or `thread-self`), from `/proc/<process>/net/tcp` and `tcp6`.
pub(crate) fn tcp_sockets(process: &str) -> Vec<TcpRow> {
    ["tcp", "tcp6"]
        .iter()
        .flat_map(|table| {
            fs::read_to_string(format!("/proc/{process}/net/{table}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(TcpRow::parse)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One socket of `/proc/net/tcp{,6}`: `sl local_address rem_address st
/// tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TcpRow {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// The kernel's TCP state: `01` established, `0A` listening.
    pub(crate) state: u8,
    pub(crate) inode: Option<u64>,
}

pub(crate) const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;

impl TcpRow {
    pub(crate) fn parse(row: &str) -> Option<Self> {
        let fields: Vec<&str> = row.split_whitespace().collect();
        Some(Self {
            local: endpoint(fields.get(1)?)?,
            remote: endpoint(fields.get(2)?)?,
            state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
            inode: fields.get(9).and_then(|inode| inode.parse().ok()),
        })
    }
}

/// Where Docker's embedded DNS server listens in a container.
const DOCKER_DNS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11));

/// The port of a listening socket of a service (not the engine's DNS).
fn listening_port(row: &TcpRow) -> Option<u16> {
    (row.state == TCP_LISTEN && row.local.ip() != DOCKER_DNS).then_some(row.local.port())
}

/// `HEXIP:HEXPORT` as the kernel prints it: the address's 32-bit words
/// each in host order.
fn endpoint(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(ip.get(8 * i..8 * i + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match ip.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[4 * i..4 * i + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::from(octets)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Brings up the loopback of the calling thread's namespace (new
/// namespaces start with it down). By ioctl: a netlink client would be a
/// dependency for one flag.
fn loopback_up() -> io::Result<()> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .or_else(|_| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?;
    // SAFETY: ifreq is plain data; the kernel reads and writes within it.
    unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) != 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The cookie of the namespace `socket` was created in.
fn netns_cookie(socket: &impl AsFd) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cookie`. nix has
    // no wrapper for SO_NETNS_COOKIE (Linux 5.14).
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_rows_of_proc_net_tcp() {
        let listening =
            "   0: 0100007F:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0";
        let connected =
            "   1: 0100007F:1389 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0";
        let listening_port = |row| TcpRow::parse(row).as_ref().and_then(listening_port);
        assert_eq!(listening_port(listening), Some(5001));
        let docker_dns =
            "   2: 0B00007F:A321 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0";
        assert_eq!(listening_port(docker_dns), None);
        assert_eq!(listening_port(connected), None);
        assert_eq!(listening_port("garbage"), None);
    }

    #[test]
    fn reads_established_rows_of_proc_net_tcp() {
        let v4 = "  36: 0100007F:ECB6 0100007F:18F6 01 00000000:00000000 00:00000000 00000000     0        0 918859 1 0 20 4 22 15 -1";
        assert_eq!(
            TcpRow::parse(v4),
            Some(TcpRow {
                local: "127.0.0.1:60598".parse().unwrap(),
                remote: "127.0.0.1:6390".parse().unwrap(),
                state: TCP_ESTABLISHED,
                inode: Some(918859),
            })
        );
        let listening = "   3: 00000000:18F6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 918807 1";
        assert_ne!(TcpRow::parse(listening).unwrap().state, TCP_ESTABLISHED);
        // ::ffff:127.0.0.1, as a dual-stack socket's peer is.
        let mapped = endpoint("0000000000000000FFFF00000100007F:18F6").unwrap();
        assert_eq!(
            mapped.ip().to_canonical(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(endpoint("garbage"), None);
    }
}
