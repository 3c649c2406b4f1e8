//! Destroying a TCP socket of another process (`SOCK_DESTROY` over
//! NETLINK_SOCK_DIAG, what `ss -K` does): its owner's next use of it fails
//! with ECONNABORTED and the peer gets a reset, as when a server drops an
//! idle keep-alive connection; and asking which cgroup made a socket
//! (`INET_DIAG_CGROUP_ID`). Written by hand: each request is one fixed
//! 72-byte message, and the rust-netlink crates build only the dump
//! request's message type.
//!
//! The socket is looked up in the calling thread's network namespace.
// System calls and kernel memory no safe wrapper covers; each `unsafe`
// says why it holds.
#![allow(unsafe_code)]

use std::{
    collections::HashSet, fs, io, mem::size_of, net::SocketAddr, os::fd::AsRawFd, path::Path,
};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

use crate::{
    cgroups,
    netns::{self, NetNs, TCP_ESTABLISHED, TcpRow},
};

const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

#[repr(C)]
struct Header {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_req_v2` with its `inet_diag_sockid`.
#[repr(C)]
struct Request {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
struct Message {
    header: Header,
    request: Request,
}

/// Matches any socket cookie (`INET_DIAG_NOCOOKIE`).
const ANY_COOKIE: u64 = u64::MAX;

/// Destroys the established connections the processes of `cgroup` (and of
/// the cgroups under it) hold to `remote`: a pool's, opened before a fault
/// was planned on the pair, which would carry the calls past it. Their
/// owners reconnect, as after a server's idle timeout. Says how many.
pub fn destroy_pooled(cgroup: &Path, remote: SocketAddr) -> usize {
    let pids = cgroups::pids_under(cgroup);
    let Some(&first) = pids.first() else {
        return 0;
    };
    let held: HashSet<u64> = pids.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    let pooled: Vec<TcpRow> = netns::tcp_sockets(&first.to_string())
        .into_iter()
        .filter(|row| {
            row.state == TCP_ESTABLISHED
                && same_endpoint(row.remote, remote)
                && row.inode.is_some_and(|inode| held.contains(&inode))
        })
        .collect();
    if pooled.is_empty() {
        return 0;
    }
    let Ok(namespace) = NetNs::of_process(first) else {
        return 0;
    };
    pooled
        .into_iter()
        .filter(|row| {
            namespace
                .enter(|| destroy(row.local, row.remote, ANY_COOKIE))
                .is_ok()
        })
        .count()
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether two endpoints are the same, an IPv4-mapped IPv6 address being
/// its IPv4 one.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// Destroys the TCP socket whose local address is `local`, connected to
/// `remote`, with socket cookie `cookie` (so a socket that reused the
/// ports since is left alone).
pub fn destroy(local: SocketAddr, remote: SocketAddr, cookie: u64) -> io::Result<()> {
    let mut answer = [0u8; 256];
    let n = ask(SOCK_DESTROY, NLM_F_ACK, local, remote, cookie, &mut answer)?;
    // The acknowledgement: a header of type NLMSG_ERROR, then the error
    // (0: done; else a negated errno).
    let kind = u16::from_ne_bytes([answer[4], answer[5]]);
    if n < 20 || kind != NLMSG_ERROR {
        return Err(io::Error::other("unexpected answer to SOCK_DESTROY"));
    }
    match i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]) {
        0 => Ok(()),
        error => Err(io::Error::from_raw_os_error(-error)),
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The `inet_diag_msg` before a socket's attributes.
const DIAG_MESSAGE_LEN: usize = 72;
/// The attribute holding the id of the cgroup a socket was made in.
const INET_DIAG_CGROUP_ID: u16 = 21;

/// The id of the cgroup (v2) whose process made the TCP socket at
/// `local`, connected to `remote`, in this thread's network namespace:
/// who is on the other end of a connection accepted from loopback.
pub fn cgroup_of(local: SocketAddr, remote: SocketAddr) -> io::Result<u64> {
    let mut answer = [0u8; 1024];
    let n = ask(
        SOCK_DIAG_BY_FAMILY,
        0,
        local,
        remote,
        ANY_COOKIE,
        &mut answer,
    )?;
    let answer = &answer[..n];
    let kind = u16::from_ne_bytes([answer[4], answer[5]]);
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such socket"));
    }
    // The attributes: each a length (with its 4-byte head), a type, the
    // value, padded to 4 bytes.
    let mut at = size_of::<Header>() + DIAG_MESSAGE_LEN;
    while let Some(head) = answer.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
        let kind = u16::from_ne_bytes([head[2], head[3]]);
        if len < 4 {
            break;
        }
        if kind == INET_DIAG_CGROUP_ID
            && let Some(value) = answer.get(at + 4..at + 12)
        {
            return Ok(u64::from_ne_bytes(value.try_into().expect("8 bytes")));
        }
        at += len.next_multiple_of(4);
    }
    Err(io::Error::other(
        "the kernel reports no cgroup for the socket",
    ))
}

/// Sends one inet_diag request of `kind` about the TCP socket `local` →
/// `remote` and reads the answer into `answer`; its length.
fn ask(
    kind: u16,
    flags: u16,
    local: SocketAddr,
    remote: SocketAddr,
    cookie: u64,
    answer: &mut [u8],
) -> io::Result<usize> {
    let words = |address: SocketAddr| match address {
        SocketAddr::V4(a) => [u32::from_ne_bytes(a.ip().octets()), 0, 0, 0],
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            std::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    };
    let message = Message {
        header: Header {
            len: size_of::<Message>() as u32,
            kind,
            flags: NLM_F_REQUEST | flags,
            seq: 1,
            pid: 0,
        },
        request: Request {
            family: if local.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            } as u8,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 0,
            pad: 0,
            states: !0,
            sport: local.port().to_be(),
            dport: remote.port().to_be(),
            src: words(local),
            dst: words(remote),
            interface: 0,
            cookie: [cookie as u32, (cookie >> 32) as u32],
        },
    };
    let netlink = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // SAFETY: Message is repr(C) plain data without padding.
    let bytes = unsafe {
        std::slice::from_raw_parts((&raw const message).cast::<u8>(), size_of::<Message>())
    };
    sendto(
        netlink.as_raw_fd(),
        bytes,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    Ok(recv(netlink.as_raw_fd(), answer, MsgFlags::empty())?)
}

#[cfg(test)]
mod tests {
    use std::{
        io::{ErrorKind, Read, Write},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    fn cookie(stream: &TcpStream) -> u64 {
        let mut cookie = 0u64;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: SO_COOKIE writes a u64.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&raw mut cookie).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        cookie
    }

    /// Needs CAP_NET_ADMIN (root), as the agent has.
    #[test]
    fn names_the_cgroup_that_made_a_socket() {
        use std::os::unix::fs::MetadataExt;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        let id = cgroup_of(peer, listener.local_addr().unwrap()).unwrap();
        // A cgroup's id is its directory's inode number.
        let mount = crate::cgroups::cgroup2_mount().unwrap();
        let own = crate::cgroups::own_cgroup(&mount).unwrap();
        assert_eq!(id, std::fs::metadata(&own).unwrap().ino());
        drop(client);
    }

    #[test]
    fn destroys_exactly_the_socket_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let wrong = destroy(local, remote, cookie(&client) + 1).unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::NotFound, "{wrong}");
        client.write_all(b"still up").unwrap();
        let mut buf = [0u8; 8];
        server.read_exact(&mut buf).unwrap();
        destroy(local, remote, cookie(&client)).unwrap();
        let err = client.read(&mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNABORTED), "{err}");
        let err = server.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    }

    #[test]
    fn an_ipv4_mapped_peer_is_its_ipv4_address() {
        // ::ffff:127.0.0.1, as a dual-stack socket's peer is.
        let mapped = "[::ffff:127.0.0.1]:6390".parse().unwrap();
        assert!(same_endpoint(mapped, "127.0.0.1:6390".parse().unwrap()));
    }

    /// Needs CAP_NET_ADMIN (root) and a cgroup v2 mount, as the agent has.
    #[test]
    fn destroys_the_pooled_connections_of_a_cgroup() {
        let mount = crate::cgroups::cgroup2_mount().unwrap();
        let cgroup = mount.join(format!("fbtest-sockdiag-{}", std::process::id()));
        std::fs::create_dir(&cgroup).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let remote = listener.local_addr().unwrap();
        // A process in the cgroup holding a connection, as a pool would.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import socket, sys, time; s = socket.create_connection(('127.0.0.1', {})); print(flush=True); time.sleep(30)",
                remote.port()
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(cgroup.join("cgroup.procs"), holder.id().to_string()).unwrap();
        let mut ready = [0u8; 1];
        holder
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut ready)
            .unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        // Another connection to the same place, of a process outside it.
        let _outside = TcpStream::connect(remote).unwrap();
        assert_eq!(destroy_pooled(&cgroup, remote), 1);
        // The pool's peer sees the reset.
        let mut buffer = [0u8; 1];
        assert!(matches!(accepted.read(&mut buffer), Ok(0) | Err(_)));
        assert_eq!(destroy_pooled(&cgroup, remote), 0);
        holder.kill().unwrap();
        holder.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::remove_dir(&cgroup).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
