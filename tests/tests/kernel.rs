//! The kernel programs, loaded and attached for real: a process in a
//! managed cgroup is redirected to the agent (which learns the original
//! destination, while the process still sees it as its peer), an armed
//! refusal gives it ECONNREFUSED, the thread that sent on a redirected
//! connection is known, a process outside is untouched, and nothing is
//! left once the agent lets go. A destination marked opaque is connected
//! to directly, each connect and its end reported, unless the agent routes
//! that caller's connects there through the proxy. HTTP/1.1 connections are
//! observed by their heads, h2c ones by a walk of their frames, given up
//! (and said so) where it cannot follow.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use filibuster::{
    cgroups::{Limits, RunCgroups, cgroup2_mount},
    ebpf::{Destination, EventSource, Events, Kernel, KernelEvent, KernelMaps, Speaks},
    netns::NetNs,
    observe::http2::{Seen, Tracker},
};
use filibuster_common::{
    ACTION_CLOSED, ACTION_DIRECT, ACTION_ESTABLISHED, ACTION_HUNG_UP, ACTION_LOST, ACTION_OBSERVED,
    ACTION_OBSERVED_HTTP2, ACTION_REDIRECTED, ACTION_REFUSED, ACTION_UNREACHABLE, ConnectAttempt,
    ConnectEvent, ConnectKey, Listeners, Settings,
};

/// Connects twice to the given address and says what happened.
const CLIENT: &str = r#"
import socket, sys
address = (sys.argv[1], int(sys.argv[2]))
s = socket.create_connection(address, timeout=5)
print("peer", s.getpeername()[1], flush=True)
s.sendall(b"hello")
s.close()
try:
    socket.create_connection(address, timeout=5).close()
    print("second connected")
except ConnectionRefusedError:
    print("second refused")
"#;

/// Connects to each address in turn, keeping the connections open until
/// stdin closes, and says how each went.
const CONNECTS: &str = r#"
import socket, sys
kept = []
for address in sys.argv[1:]:
    host, port = address.rsplit(":", 1)
    try:
        kept.append(socket.create_connection((host, int(port)), timeout=5))
        print("connected", flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
sys.stdin.read()
"#;

/// The programs loaded, redirecting namespace `netns` to `agent`, and
/// attached to a fresh cgroup named `client`.
fn attached_client(netns: u64, agent: &TcpListener) -> (Kernel, Events, RunCgroups) {
    let (mut kernel, events) = Kernel::load(false).expect("programs load (run as root)");
    kernel.configure(Settings::default()).unwrap();
    kernel
        .add_listeners(
            netns,
            Listeners {
                port_v4: agent.local_addr().unwrap().port(),
                ..Listeners::default()
            },
        )
        .unwrap();
    let limits = Limits {
        pids: 4096,
        memory: 1 << 30,
    };
    let mut cgroups = RunCgroups::create(&cgroup2_mount().unwrap(), limits).unwrap();
    // A service: its threads' sends are recorded.
    kernel.attach(cgroups.add("client").unwrap(), true).unwrap();
    (kernel, events, cgroups)
}

fn accept_within(listener: &TcpListener, limit: Duration) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false).unwrap();
                return (stream, peer);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("nothing arrived at {:?}: {e}", listener.local_addr()),
        }
    }
}

fn client(cgroup: &filibuster::cgroups::Cgroup, upstream: SocketAddr) -> std::process::Child {
    python_in(cgroup, CLIENT, &["127.0.0.1", &upstream.port().to_string()])
}

/// Runs Python `script` with `args` inside `cgroup`, its output piped.
fn python_in(
    cgroup: &filibuster::cgroups::Cgroup,
    script: &str,
    args: &[&str],
) -> std::process::Child {
    let mut command = Command::new("python3");
    command
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped());
    cgroup.start_inside(&mut command).unwrap();
    command.spawn().expect("python3 starts")
}

#[test]
fn redirects_refuses_leaves_outsiders_alone_and_detaches() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();

    let netns = NetNs::own().unwrap().cookie();
    let (mut kernel, mut ring, cgroups) = attached_client(netns, &agent);
    let cgroup = cgroups.get("client").unwrap();
    let cgroup_path = cgroup.path().to_path_buf();
    let key = ConnectKey {
        cgroup_id: cgroup.id(),
        destination: Destination(upstream_addr).to_kernel(),
        _pad: 0,
    };
    // Refuse the client's second connect to upstream, not its first.
    kernel
        .begin_execution(
            &[cgroup.id()],
            &[ConnectAttempt {
                key,
                ordinal: 2,
                _pad: 0,
            }],
            &[],
        )
        .unwrap();

    let child = client(cgroup, upstream_addr);
    let (mut redirected, peer) = accept_within(&agent, Duration::from_secs(10));
    let attempt = kernel
        .take_redirect(netns, peer)
        .expect("the kernel recorded the redirect");
    assert_eq!(
        Destination::from_kernel(&attempt.key.destination).0,
        upstream_addr
    );
    assert_eq!((attempt.key.cgroup_id, attempt.ordinal), (cgroup.id(), 1));
    let mut greeting = String::new();
    redirected.read_to_string(&mut greeting).unwrap();
    assert_eq!(greeting, "hello");
    // The send tracepoint saw who sent it: the client's one thread.
    let agent_port = agent.local_addr().unwrap().port();
    assert_eq!(kernel.sender(peer.port(), agent_port), Some(child.id()));

    // A process outside the managed cgroup, meanwhile, connects directly.
    let outsider = TcpStream::connect(upstream_addr).unwrap();
    let (_, outsider_peer) = accept_within(&upstream, Duration::from_secs(5));
    assert_eq!(outsider_peer, outsider.local_addr().unwrap());

    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("peer {}", upstream_addr.port())),
        "getpeername shows the original peer: {stdout}"
    );
    assert!(stdout.contains("second refused"), "{stdout}");

    let events = connect_events(&mut ring);
    let actions: Vec<(u32, u32)> = events
        .iter()
        .filter(|e| e.attempt.key == key)
        .map(|e| (e.attempt.ordinal, e.action))
        .collect();
    assert_eq!(actions, [(1, ACTION_REDIRECTED), (2, ACTION_REFUSED)]);
    assert!(events.iter().all(|e| e.pid != 0 && e.tid != 0));

    // Once the agent lets go, the same cgroup connects directly again.
    drop(kernel);
    let child = client(cgroup, upstream_addr);
    let (_, _) = accept_within(&upstream, Duration::from_secs(10));
    let output = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("second connected"));

    drop(cgroups);
    assert!(!cgroup_path.exists(), "the cgroup was removed");
}

#[test]
fn the_tests_own_threads_are_not_tracked() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let netns = NetNs::own().unwrap().cookie();
    let (mut kernel, _ring, mut cgroups) = attached_client(netns, &agent);
    // The test serves no request, so which thread sent what is of no use.
    let test = cgroups.add("test").unwrap();
    kernel.attach(test, false).unwrap();
    kernel.begin_execution(&[], &[], &[]).unwrap();

    let child = client(test, upstream.local_addr().unwrap());
    let (mut redirected, peer) = accept_within(&agent, Duration::from_secs(10));
    let mut greeting = String::new();
    redirected.read_to_string(&mut greeting).unwrap();
    assert_eq!(greeting, "hello", "still redirected");
    let agent_port = agent.local_addr().unwrap().port();
    assert_eq!(kernel.sender(peer.port(), agent_port), None);
    child.wait_with_output().unwrap();
}

#[test]
fn connects_directly_to_opaque_destinations_unless_proxied() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let own = NetNs::own().unwrap();
    let netns = own.cookie();
    // A port of this host's own non-loopback address that nobody listens
    // on: the stack refuses it (loopback ones are not counted at all).
    let host_ip = own
        .addresses()
        .unwrap()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("this host has a non-loopback IPv4 address");
    let closed = SocketAddr::new(
        host_ip,
        TcpListener::bind((host_ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    );

    let (mut kernel, mut ring, cgroups) = attached_client(netns, &agent);
    let cgroup = cgroups.get("client").unwrap();
    kernel
        .connect_directly(netns, upstream_addr, Speaks::Opaque)
        .unwrap();
    kernel
        .connect_directly(netns, closed, Speaks::Opaque)
        .unwrap();
    let key = |destination| ConnectKey {
        cgroup_id: cgroup.id(),
        destination: Destination(destination).to_kernel(),
        _pad: 0,
    };

    let connect = |addresses: &[SocketAddr]| {
        let mut command = Command::new("python3");
        command
            .arg("-c")
            .arg(CONNECTS)
            .args(addresses.iter().map(SocketAddr::to_string))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        cgroup.start_inside(&mut command).unwrap();
        command.spawn().expect("python3 starts")
    };
    let finish = |child: std::process::Child| {
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    kernel.begin_execution(&[], &[], &[]).unwrap();
    let child = connect(&[upstream_addr, closed]);
    let (_, peer) = accept_within(&upstream, Duration::from_secs(10));
    assert_eq!(peer.ip(), upstream_addr.ip(), "straight to upstream");
    assert_eq!(finish(child), "connected\nrefused\n");
    let events = connect_events(&mut ring);
    let seen: Vec<(SocketAddr, u32, u32)> = events
        .iter()
        .map(|e| {
            let destination = Destination::from_kernel(&e.attempt.key.destination).0;
            (destination, e.attempt.ordinal, e.action)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (upstream_addr, 1, ACTION_DIRECT),
            (upstream_addr, 1, ACTION_ESTABLISHED),
            (closed, 1, ACTION_DIRECT),
            (closed, 1, ACTION_UNREACHABLE),
        ]
    );
    // Each connect's end names its socket; the connect names its thread.
    assert_eq!(events[0].socket, events[1].socket);
    assert_eq!(events[2].socket, events[3].socket);
    assert_ne!(events[0].socket, events[2].socket);
    assert!(events[0].tid != 0 && events[0].netns == netns);

    // Proxied this execution: the same connect is redirected to the agent.
    kernel
        .begin_execution(&[cgroup.id()], &[], &[key(upstream_addr)])
        .unwrap();
    let child = connect(&[upstream_addr]);
    let (_, peer) = accept_within(&agent, Duration::from_secs(10));
    let attempt = kernel.take_redirect(netns, peer).expect("redirected");
    assert_eq!(attempt.key, key(upstream_addr));
    assert_eq!(finish(child), "connected\n");
    assert!(
        connect_events(&mut ring)
            .iter()
            .all(|e| e.action == ACTION_REDIRECTED)
    );
}

/// The connect events the kernel reported since the last drain.
fn connect_events(ring: &mut Events) -> Vec<ConnectEvent> {
    let mut connects = Vec::new();
    ring.drain(&mut |event| {
        if let KernelEvent::Connect(event) = event {
            connects.push(event);
        }
    });
    connects
}

/// Makes two HTTP/1.1 requests on one connection, then closes it; prints
/// its local address.
/// An upstream on loopback that the programs, attached to a fresh client
/// cgroup, take for HTTP/1.1 (connected to directly, its heads reported),
/// an execution begun.
fn observed_upstream() -> (TcpListener, Kernel, Events, RunCgroups) {
    observed_upstream_speaking(Speaks::Http1)
}

fn observed_upstream_speaking(speaks: Speaks) -> (TcpListener, Kernel, Events, RunCgroups) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let netns = NetNs::own().unwrap().cookie();
    let (mut kernel, ring, cgroups) = attached_client(netns, &agent);
    kernel
        .connect_directly(netns, upstream.local_addr().unwrap(), speaks)
        .unwrap();
    kernel.begin_execution(&[], &[], &[]).unwrap();
    (upstream, kernel, ring, cgroups)
}

const HTTP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
print("%s:%d" % s.getsockname(), flush=True)
for path in ("/a", "/b"):
    s.sendall(("GET %s HTTP/1.1\r\nHost: upstream\r\n\r\n" % path).encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        answer += s.recv(1024)
s.close()
"#;

#[test]
fn observes_the_heads_of_direct_http1_connections() {
    let (upstream, _kernel, mut ring, cgroups) = observed_upstream();
    let upstream_addr = upstream.local_addr().unwrap();
    // The server runs here, outside the managed cgroup: its own socket is
    // not observed, only the client's.
    let server = std::thread::spawn(move || {
        let (mut stream, _) = accept_within(&upstream, Duration::from_secs(10));
        let mut buf = [0u8; 1024];
        for _ in 0..2 {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the client hung up early");
                request.extend_from_slice(&buf[..n]);
            }
            std::io::Write::write_all(&mut stream, b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        }
    });
    let port = upstream_addr.port().to_string();
    let client = python_in(cgroups.get("client").unwrap(), HTTP_CLIENT, &[&port]);
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success());
    server.join().unwrap();
    let local: SocketAddr = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();

    // The close is reported once the client's socket leaves the stack.
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = format!("connect event {ACTION_CLOSED}");
    let mut socket = None;
    let mut seen: Vec<String> = Vec::new();
    while !seen.contains(&closed) {
        assert!(Instant::now() < deadline, "no close reported");
        std::thread::sleep(Duration::from_millis(10));
        ring.drain(&mut |event| {
            seen.push(match event {
                KernelEvent::Connect(connect) => {
                    assert_eq!(*socket.get_or_insert(connect.socket), connect.socket);
                    format!("connect event {}", connect.action)
                }
                KernelEvent::Head(head) => {
                    assert_eq!(Some(head.socket), socket, "a head before its connect");
                    assert_eq!(head.local, local);
                    let text = String::from_utf8_lossy(head.bytes);
                    let line = text.lines().next().unwrap_or_default().to_string();
                    format!("{} {line}", if head.egress { "out" } else { "in" })
                }
                KernelEvent::Frame(_) => "an HTTP/2 frame".into(),
            })
        });
    }
    // Whether the client closes first (and says so) races the server.
    seen.retain(|event| *event != format!("connect event {ACTION_HUNG_UP}"));
    assert_eq!(
        seen,
        [
            &format!("connect event {ACTION_OBSERVED}"),
            "out GET /a HTTP/1.1",
            "in HTTP/1.1 204 No Content",
            "out GET /b HTTP/1.1",
            "in HTTP/1.1 204 No Content",
            &closed,
        ]
    );
}

/// Speaks HTTP/2 by prior knowledge, one write per segment (no delay, a
/// pause between writes): the preface and SETTINGS, then a request's
/// HEADERS split inside its frame header, a DATA frame, the answer read,
/// then a second stream's HEADERS whose payload spans two segments and is
/// longer than the kernel reports at once (its path carries a long
/// query), and its reset.
const H2_CLIENT: &str = r#"
import socket, struct, sys, time
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
# :method POST, :scheme http, then :path and content-type as literals
# without indexing (HPACK, RFC 7541 appendix A's static table).
def integer(value, prefix):
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])
def block(path):
    ct = b"application/grpc"
    return b"\x83\x86\x04" + integer(len(path), 7) + path + b"\x0f\x10" + bytes([len(ct)]) + ct
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def send(data):
    s.sendall(data)
    time.sleep(0.05)
send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
first = frame(1, 4, 1, block(b"/shop.Cart/Add"))
send(first[:5])
send(first[5:] + frame(0, 1, 1, b"\x00\x00\x00\x00\x02hi"))
answer = b""
while b"grpc-status" not in answer:
    answer += s.recv(4096)
second = frame(1, 4, 3, block(b"/shop.Cart/Empty?" + b"x" * 1200))
send(second[:14])
send(second[14:])
send(frame(3, 0, 3, b"\x00\x00\x00\x08"))
s.close()
"#;

/// A server's answer to stream 1: SETTINGS, then HEADERS (`:status`
/// 200), DATA and trailers (`grpc-status: 0`, a literal with a new name).
fn h2_answer() -> Vec<u8> {
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    };
    let mut answer = frame(4, 0, 0, b"");
    answer.extend(frame(1, 4, 1, b"\x88"));
    answer.extend(frame(0, 0, 1, b"\x00\x00\x00\x00\x02ok"));
    answer.extend(frame(1, 5, 1, b"\x00\x0bgrpc-status\x010"));
    answer
}

#[test]
fn walks_the_frames_of_direct_http2_connections() {
    let (upstream, _kernel, mut ring, cgroups) = observed_upstream_speaking(Speaks::Http2);
    let upstream_addr = upstream.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = accept_within(&upstream, Duration::from_secs(10));
        let mut buf = [0u8; 4096];
        let mut received = Vec::new();
        // The first request's DATA ends with "hi".
        while !received.ends_with(b"hi") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the client hung up early");
            received.extend_from_slice(&buf[..n]);
        }
        std::io::Write::write_all(&mut stream, &h2_answer()).unwrap();
        while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let port = upstream_addr.port().to_string();
    let client = python_in(cgroups.get("client").unwrap(), H2_CLIENT, &[&port]);
    let output = client.wait_with_output().unwrap();
    assert!(output.status.success());
    server.join().unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tracker = Tracker::default();
    let mut seen: Vec<String> = Vec::new();
    while !seen.contains(&format!("connect event {ACTION_CLOSED}")) {
        assert!(Instant::now() < deadline, "no close reported: {seen:?}");
        std::thread::sleep(Duration::from_millis(10));
        ring.drain(&mut |event| match event {
            KernelEvent::Connect(connect) => seen.push(format!("connect event {}", connect.action)),
            KernelEvent::Frame(frame) => {
                let told = tracker.frame(frame.egress, &frame.part);
                if let Some(call) = told.expect("frames follow") {
                    seen.push(format!("{call:?}"));
                }
            }
            KernelEvent::Head(_) => seen.push("a head".into()),
        });
    }
    seen.retain(|event| *event != format!("connect event {ACTION_HUNG_UP}"));
    let request = |stream, path: &str| {
        format!(
            "{:?}",
            Seen::Request {
                stream,
                method: "POST".into(),
                path: path.into(),
                grpc: true,
                trace: None
            }
        )
    };
    assert_eq!(
        seen,
        [
            format!("connect event {ACTION_OBSERVED_HTTP2}"),
            request(1, "/shop.Cart/Add"),
            format!(
                "{:?}",
                Seen::Response {
                    stream: 1,
                    status: 200,
                    grpc_status: None
                }
            ),
            format!(
                "{:?}",
                Seen::Trailers {
                    stream: 1,
                    grpc_status: Some(0)
                }
            ),
            request(3, "/shop.Cart/Empty"),
            format!(
                "{:?}",
                Seen::Reset {
                    stream: 3,
                    sent: true
                }
            ),
            format!("connect event {ACTION_CLOSED}"),
        ]
    );
}

/// Two connections that the walk cannot follow: one speaking HTTP/1.1,
/// one opening with a HEADERS frame larger than the walk reports.
const UNWALKABLE: &str = r#"
import socket, sys, time
for data in (b"GET / HTTP/1.1\r\nHost: upstream\r\n\r\n",
             b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x80\x00\x01\x04\x00\x00\x00\x01" + b"\x00" * 64):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall(data)
    time.sleep(0.1)
    s.close()
"#;

#[test]
fn a_walk_that_cannot_follow_gives_up_and_says_so() {
    let (upstream, _kernel, mut ring, cgroups) = observed_upstream_speaking(Speaks::Http2);
    let upstream_addr = upstream.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = accept_within(&upstream, Duration::from_secs(10));
            let mut buf = [0u8; 4096];
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
        }
    });
    let port = upstream_addr.port().to_string();
    let client = python_in(cgroups.get("client").unwrap(), UNWALKABLE, &[&port]);
    assert!(client.wait_with_output().unwrap().status.success());
    server.join().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut seen = Vec::new();
    ring.drain(&mut |event| match event {
        KernelEvent::Connect(connect) => seen.push(connect.action),
        _ => panic!("nothing reported off a connection the walk gave up on"),
    });
    // Given up on, a connection is no longer observed: its close is not
    // reported either.
    assert_eq!(
        seen,
        [
            ACTION_OBSERVED_HTTP2,
            ACTION_LOST,
            ACTION_OBSERVED_HTTP2,
            ACTION_LOST
        ]
    );
}

/// Opens 12,000 connections, one after the other, each sending a request
/// head: each head is a segment of its own (on one connection, TCP may
/// merge small writes into fewer segments when the machine is busy).
const FLOOD: &str = r#"
import socket, sys
for _ in range(12000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: upstream\r\n\r\n")
    s.close()
"#;

#[test]
fn a_full_ring_buffer_is_counted_not_silent() {
    let (upstream, kernel, mut ring, cgroups) = observed_upstream();
    let upstream_addr = upstream.local_addr().unwrap();
    assert_eq!(kernel.dropped_events(), 0);
    let server = std::thread::spawn(move || {
        upstream.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 1024];
        for _ in 0..12_000 {
            let (mut stream, _) = upstream.accept().unwrap();
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
        }
    });
    // Nobody drains the ring meanwhile: 12,000 heads of 1 KiB overflow
    // its 8 MiB.
    let port = upstream_addr.port().to_string();
    let client = python_in(cgroups.get("client").unwrap(), FLOOD, &[&port]);
    assert!(client.wait_with_output().unwrap().status.success());
    server.join().unwrap();
    let dropped = kernel.dropped_events();
    assert!(dropped > 0, "no event counted as lost");
    let mut heads = 0u64;
    ring.drain(&mut |event| heads += u64::from(matches!(event, KernelEvent::Head(_))));
    // The ring held what fitted.
    assert!(heads > 1000, "{heads} reported, {dropped} lost");
}
