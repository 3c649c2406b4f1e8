//! Destroying a TCP socket of another process (`SOCK_DESTROY` over
//! NETLINK_SOCK_DIAG, what `ss -K` does): its owner's next use of it fails
//! with ECONNABORTED and the peer gets a reset, as when a server drops an
//! idle keep-alive connection. Written by hand: the request is one fixed
//! 72-byte message, and the rust-netlink crates build only the dump
//! request's message type.
//!
//! The socket is looked up in the calling thread's network namespace.

use std::{io, mem::size_of, net::SocketAddr, os::fd::AsRawFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
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

/// Destroys the TCP socket whose local address is `local`, connected to
/// `remote`, with socket cookie `cookie` (so a socket that reused the
/// ports since is left alone).
pub fn destroy(local: SocketAddr, remote: SocketAddr, cookie: u64) -> io::Result<()> {
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
            kind: SOCK_DESTROY,
            flags: NLM_F_REQUEST | NLM_F_ACK,
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
    let mut answer = [0u8; 256];
    let n = recv(netlink.as_raw_fd(), &mut answer, MsgFlags::empty())?;
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
}
