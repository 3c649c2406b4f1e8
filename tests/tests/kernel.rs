//! The kernel programs, loaded and attached for real: a process in a
//! managed cgroup is redirected to the agent (which learns the original
//! destination, while the process still sees it as its peer), an armed
//! refusal gives it ECONNREFUSED, the thread that sent on a redirected
//! connection is known, a process outside is untouched, and nothing is
//! left once the agent lets go.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use filibuster::{
    cgroups::{RunCgroups, cgroup2_mount},
    ebpf::{Destination, Kernel},
    netns::NetNs,
};
use filibuster_common::{
    ACTION_REDIRECTED, ACTION_REFUSED, ConnectAttempt, ConnectKey, Listeners, Settings,
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
    let mut command = Command::new("python3");
    command
        .args(["-c", CLIENT, "127.0.0.1", &upstream.port().to_string()])
        .stdout(Stdio::piped());
    cgroup.start_inside(&mut command).unwrap();
    command.spawn().expect("python3 starts")
}

#[test]
fn redirects_refuses_leaves_outsiders_alone_and_detaches() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();

    let mut kernel = Kernel::load().expect("programs load (run as root)");
    kernel.configure(Settings::default()).unwrap();
    let netns = NetNs::own().unwrap().cookie();
    kernel
        .add_listeners(
            netns,
            Listeners {
                port_v4: agent.local_addr().unwrap().port(),
                ..Listeners::default()
            },
        )
        .unwrap();
    let mut cgroups = RunCgroups::create(&cgroup2_mount().unwrap()).unwrap();
    let cgroup = cgroups.add("client").unwrap();
    let cgroup_path = cgroup.path().to_path_buf();
    kernel.attach(cgroup).unwrap();
    let key = ConnectKey {
        cgroup_id: cgroup.id(),
        destination: Destination(upstream_addr).to_kernel(),
        _pad: 0,
    };
    // Refuse the client's second connect to upstream, not its first.
    kernel
        .begin_execution(&[ConnectAttempt {
            key,
            ordinal: 2,
            _pad: 0,
        }])
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
    // sk_msg saw who sent it: the client's one thread.
    assert_eq!(kernel.sender(netns, peer), Some(child.id()));

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

    let events = kernel.drain_events();
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
