//! Filibuster's kernel programs, attached to every managed cgroup.
//!
//! - `connect4`/`connect6`: count each TCP connect per (caller cgroup,
//!   destination), refuse it with ECONNREFUSED when the agent armed that
//!   attempt, otherwise redirect it to the agent's transparent listener in
//!   the caller's network namespace, remembering the original destination
//!   under the socket cookie. A destination the agent marked opaque (a
//!   protocol its proxy only passes through: a database, a cache, TLS) is
//!   connected to directly instead, and the connect reported as the call,
//!   unless the agent wants this caller's connects there proxied in the
//!   current execution (a fault is planned on one). A destination the
//!   agent learned speaks HTTP/1.1 is connected to directly too, its
//!   caller's socket then observed.
//!   Likewise for HTTP/2 by prior knowledge (h2c, gRPC's cleartext).
//! - `heads_out`/`heads_in` (cgroup_skb, both ways): on an observed HTTP/1.1
//!   socket, report the first KiB of each segment that could open a
//!   request or response, so the agent reads calls off the connection
//!   without carrying its bytes (measured: +4 µs p50 per request against
//!   the proxy's +38 µs). On an observed HTTP/2 socket, walk the frames
//!   across segments, one walk per direction kept in `WALKS`, and report
//!   the payloads of the frames that carry header blocks and stream and
//!   connection ends (`FrameEvent`), never DATA. A walk that
//!   loses its place (a gap in the sequence, more frames in a segment than
//!   it walks, a header block frame larger than it reports) stops
//!   observing the socket and says so; the agent then destroys the
//!   connection, so that its caller reconnects through the proxy.
//! - `established` (sock_ops): once the redirected connection is up, file
//!   the original destination under the client's port and namespace, where
//!   the agent finds it from its accepted socket's peer address; report
//!   whether each direct connect was answered or failed, and when an
//!   observed socket closes.
//! - `getpeername4`/`getpeername6`: show the caller its original peer.
//! - `sends` (raw tracepoint `sock_send_length`, which fires in the sending
//!   thread after every `sendmsg`; services' cgroups only): records the thread
//!   that last sent on each connection, by its two ports, so the agent
//!   knows which thread made a call. A tracepoint rather than an `sk_msg`
//!   program: sk_msg moves every socket it watches onto the kernel's slower
//!   `tcp_bpf` send path (measured: 10-15% of HTTP throughput at 64
//!   connections).
//! - `reads` (raw tracepoint `tcp_rcv_space_adjust`, which fires in the
//!   reading thread each time `tcp_recvmsg` copies data; services' cgroups
//!   only): records, per thread and local port, the peer port of the socket
//!   the thread last read; for a service's listening port, that names the
//!   inbound connection (the agent's upstream one) whose request the thread
//!   is serving. A tracepoint, not a kprobe: kernels built without
//!   CONFIG_KPROBES (this project's CI among them) still have it.
//!
//! Dual-stack sockets connecting to IPv4-mapped addresses count as the
//! IPv4 connects they are.
//!
//! Loopback destinations with no listener are left alone, so a connect
//! fails as it would without Filibuster (`localhost` resolving to `::1`
//! first, while the service only listens on IPv4, keeps working).
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        __sk_buff, BPF_F_CURRENT_NETNS, BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        bpf_sock_tuple,
    },
    helpers::bpf_probe_read_kernel,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
        bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_loop, bpf_set_retval,
        bpf_sk_lookup_tcp, bpf_sk_release, bpf_skb_load_bytes,
    },
    macros::{cgroup_skb, cgroup_sock_addr, map, raw_tracepoint, sock_ops},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, SkBuffContext, SockAddrContext, SockOpsContext},
};
use filibuster_common::{
    ACTION_CLOSED, ACTION_DIRECT, ACTION_ESTABLISHED, ACTION_HUNG_UP, ACTION_LOST, ACTION_OBSERVED,
    ACTION_OBSERVED_HTTP2, ACTION_REDIRECTED, ACTION_REFUSED, ACTION_UNREACHABLE, AF_INET,
    AF_INET6, CALLEE_HTTP1, CALLEE_HTTP2, Callee, ConnectAttempt, ConnectEvent, ConnectKey,
    ConnectionPorts, FRAME_BYTES, FrameEvent, H2_CONTINUATION, H2_GOAWAY, H2_HEADERS,
    H2_PUSH_PROMISE, H2_RST_STREAM, HEAD_BYTES, HeadEvent, Listeners, PeerKey, SERVES, Settings,
    SockAddr, ThreadPort,
};

const IPPROTO_TCP: u32 = 6;
const ECONNREFUSED: i32 = 111;
/// Return values of cgroup_sock_addr programs.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The agent's listeners, by network namespace cookie.
#[map]
static LISTENERS: HashMap<u64, Listeners> = HashMap::with_max_entries(256, 0);

/// Connects seen per (caller, destination) in the current execution.
#[map]
static CONNECT_COUNTS: HashMap<ConnectKey, u32> = HashMap::with_max_entries(16384, 0);

/// Connect attempts the agent wants refused in the current execution.
#[map]
static REFUSALS: HashMap<ConnectAttempt, u8> = HashMap::with_max_entries(4096, 0);

/// Destinations, per caller namespace, connected to directly: they speak
/// a protocol the proxy only passes through, or HTTP/1.1 (`CALLEE_*`).
#[map]
static OPAQUE: HashMap<Callee, u8> = HashMap::with_max_entries(4096, 0);

/// Sockets of direct HTTP connects whose calls are reported, by cookie;
/// the value (`CALLEE_HTTP1`, `CALLEE_HTTP2`) says how.
#[map]
static OBSERVED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65536, 0);

/// Where the walk of each direction of an observed HTTP/2 socket is.
/// Created with the socket's entry in `OBSERVED`: a walk missing later was
/// evicted, its place lost.
#[map]
static WALKS: LruHashMap<WalkKey, Walk> = LruHashMap::with_max_entries(2 * 16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct WalkKey {
    socket: u64,
    egress: u64,
}

/// One direction of an observed HTTP/2 connection, walked frame by frame.
#[repr(C)]
#[derive(Clone, Copy)]
struct Walk {
    /// The sequence number of the first byte not walked yet.
    next_seq: u32,
    /// Payload bytes of the current frame still to come.
    left: u32,
    frame_len: u32,
    stream: u32,
    kind: u8,
    flags: u8,
    /// The current frame's payload is reported.
    reporting: u8,
    /// `next_seq` is set (by the first segment with a payload).
    started: u8,
    /// How many bytes of `header` hold a frame header split across
    /// segments, awaiting the rest.
    held: u32,
    /// Room for a split header; larger than one so that the verifier sees
    /// every copy into it in bounds.
    header: [u8; 32],
}

impl Walk {
    /// A direction not walked yet: a client's opens with the preface.
    const fn new(egress: bool) -> Self {
        Self {
            next_seq: 0,
            left: if egress { PREFACE_LEN } else { 0 },
            frame_len: 0,
            stream: 0,
            kind: 0,
            flags: 0,
            reporting: 0,
            started: 0,
            held: 0,
            header: [0; 32],
        }
    }
}

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, before a client's first frame.
const PREFACE_LEN: u32 = 24;
const FRAME_HEADER_LEN: u32 = 9;
/// Steps (a frame header, or a frame payload's part in a segment) walked
/// per segment at most: a 64 KiB segment of frames of 16 bytes or more.
const MAX_STEPS: u32 = 8192;
/// The largest reported frame: HTTP/2's default maximum frame size, which
/// header blocks stay far below.
const MAX_REPORTED_FRAME: u32 = 16384;

/// (Caller, destination) pairs whose connects go through the proxy in the
/// current execution even though the destination is opaque.
#[map]
static PROXIED: HashMap<ConnectKey, u8> = HashMap::with_max_entries(4096, 0);

/// Direct connects not yet answered, by socket cookie.
#[map]
static DIRECT_BY_COOKIE: LruHashMap<u64, ConnectAttempt> = LruHashMap::with_max_entries(16384, 0);

/// Original destination of a redirected socket, by socket cookie.
#[map]
static REDIRECTS_BY_COOKIE: LruHashMap<u64, ConnectAttempt> =
    LruHashMap::with_max_entries(65536, 0);

/// Original destination of an established redirected connection, by client port.
#[map]
static REDIRECTS_BY_PORT: LruHashMap<PeerKey, ConnectAttempt> =
    LruHashMap::with_max_entries(65536, 0);

/// Connect events and heads, in the order they happened. Sized for the
/// agent's periodic drain to keep up with ~100k heads a second.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Events `EVENTS` had no room for (the agent did not drain in time), per
/// CPU: the agent marks the executions that ran meanwhile as missing some.
#[map]
static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

fn count_dropped() {
    if let Some(count) = DROPPED.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot; programs do not migrate mid-run.
        unsafe { *count += 1 };
    }
}

/// The managed cgroups: `SERVES` for the services, whose threads' sends
/// and reads `sends` and `reads` record, `CALLS_ONLY` for the test.
#[map]
static MANAGED: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// The thread that last sent on a connection of a managed process, by its
/// ports.
#[map]
static SENDERS: LruHashMap<ConnectionPorts, u32> = LruHashMap::with_max_entries(65536, 0);

/// The peer port of the socket a thread last read, per local port.
#[map]
static READS: LruHashMap<ThreadPort, u16> = LruHashMap::with_max_entries(65536, 0);

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.protocol != IPPROTO_TCP {
        return ALLOW;
    }
    let Some((settings, listeners)) = settings(&ctx) else {
        return ALLOW;
    };
    match decide_v4(&ctx, settings, listeners, sa.user_ip4, sa.user_port as u16) {
        None | Some(Decision::Direct) => ALLOW,
        Some(Decision::Refuse) => DENY,
        Some(Decision::Redirect) => {
            sa.user_ip4 = LOOPBACK_V4;
            sa.user_port = u32::from(listeners.port_v4.to_be());
            ALLOW
        }
    }
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.protocol != IPPROTO_TCP {
        return ALLOW;
    }
    let Some((settings, listeners)) = settings(&ctx) else {
        return ALLOW;
    };
    let ip6 = read_ip6(&sa.user_ip6);
    // A dual-stack socket connecting to an IPv4 address (`::ffff:a.b.c.d`,
    // as gRPC's C core does) takes the IPv4 path of the stack without
    // passing through connect4: it is the IPv4 connect it names, redirected
    // to the IPv4 listener through its mapped address.
    if is_v4_mapped(ip6) {
        return match decide_v4(&ctx, settings, listeners, ip6[3], sa.user_port as u16) {
            None | Some(Decision::Direct) => ALLOW,
            Some(Decision::Refuse) => DENY,
            Some(Decision::Redirect) => {
                write_ip6(&mut sa.user_ip6, [0, 0, 0xffff_u32.to_be(), LOOPBACK_V4]);
                sa.user_port = u32::from(listeners.port_v4.to_be());
                ALLOW
            }
        };
    }
    let destination = SockAddr {
        addr: ip6,
        family: AF_INET6,
        port: u16::from_be(sa.user_port as u16),
    };
    // `::1`, or `::`, which the stack routes to `::1`.
    let local =
        ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0 && (ip6[3] == 0 || ip6[3] == 1_u32.to_be());
    if local && destination.port == settings.control_port {
        return ALLOW;
    }
    let loopback6 = [0, 0, 0, 1_u32.to_be()];
    if local && !has_listener_v6(&ctx, loopback6, sa.user_port as u16) {
        return ALLOW;
    }
    match decide(&ctx, destination) {
        Decision::Direct => ALLOW,
        Decision::Refuse => DENY,
        Decision::Redirect => {
            if listeners.port_v6 == 0 {
                return ALLOW;
            }
            write_ip6(&mut sa.user_ip6, [0, 0, 0, 1_u32.to_be()]);
            sa.user_port = u32::from(listeners.port_v6.to_be());
            ALLOW
        }
    }
}

/// 127.0.0.1, as the kernel stores it.
const LOOPBACK_V4: u32 = u32::from_be_bytes([127, 0, 0, 1]).to_be();

/// What to do with a TCP connect to `ip4`:`port_be` (both in network
/// order): `None` leaves it alone (the control port, a loopback address
/// nobody listens on, or no listener of ours yet).
fn decide_v4(
    ctx: &SockAddrContext,
    settings: Settings,
    listeners: Listeners,
    ip4: u32,
    port_be: u16,
) -> Option<Decision> {
    let destination = SockAddr {
        addr: [ip4, 0, 0, 0],
        family: AF_INET,
        port: u16::from_be(port_be),
    };
    // 127.0.0.0/8, or 0.0.0.0, which the stack routes to 127.0.0.1 (people
    // call their peers there: Flask prints it at start).
    let unspecified = ip4 == 0;
    let local = unspecified || (ip4 & 0xff) == 127;
    if local && destination.port == settings.control_port {
        return None;
    }
    let listening_at = if unspecified { LOOPBACK_V4 } else { ip4 };
    if local && !has_listener_v4(ctx, listening_at, port_be) {
        return None;
    }
    match decide(ctx, destination) {
        Decision::Redirect if listeners.port_v4 == 0 => None,
        decision => Some(decision),
    }
}

/// The family of a redirected socket's peer as the agent's listener sees
/// it: a v4-mapped connection reaches the IPv4 listener.
fn listener_family(family: u32, remote_ip6: [u32; 4]) -> u16 {
    if family == u32::from(AF_INET6) && !is_v4_mapped(remote_ip6) {
        AF_INET6
    } else {
        AF_INET
    }
}

fn is_v4_mapped(ip6: [u32; 4]) -> bool {
    ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0xffff_u32.to_be()
}

/// `tcp_states.h`: a connect in flight, and a socket that is done.
const TCP_SYN_SENT: u32 = 2;
const TCP_FIN_WAIT1: u32 = 4;
const TCP_CLOSE: u32 = 7;

#[sock_ops]
pub fn established(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
        && op != BPF_SOCK_OPS_TCP_CONNECT_CB
        && op != BPF_SOCK_OPS_STATE_CB
    {
        return 1;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if unsafe { OBSERVED.get(cookie) }.is_some() {
        observed_progress(&ctx, op, cookie);
        return 1;
    }
    if let Some(&attempt) = unsafe { DIRECT_BY_COOKIE.get(cookie) } {
        direct_connect_progress(&ctx, op, cookie, attempt);
        return 1;
    }
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        return 1;
    }
    if let Some(attempt) = unsafe { REDIRECTS_BY_COOKIE.get(cookie) } {
        let key = PeerKey {
            netns: unsafe { bpf_get_netns_cookie(ctx.as_ptr()) },
            port: ctx.local_port() as u16,
            family: listener_family(ctx.family(), ctx.remote_ip6()),
            _pad: 0,
        };
        let _ = REDIRECTS_BY_PORT.insert(key, *attempt, 0);
    }
    1
}

/// A direct connect's SYN went out, was answered, or failed: state
/// changes are asked for only while one is in flight.
fn direct_connect_progress(ctx: &SockOpsContext, op: u32, cookie: u64, attempt: ConnectAttempt) {
    let end = match op {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
            return;
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => ACTION_ESTABLISHED,
        _ if ctx.arg(0) == TCP_SYN_SENT && ctx.arg(1) == TCP_CLOSE => ACTION_UNREACHABLE,
        _ => return,
    };
    let _ = ctx.set_cb_flags((ctx.cb_flags() & !BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    let _ = DIRECT_BY_COOKIE.remove(&cookie);
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    report(attempt, end, netns, cookie, 0);
}

/// An observed socket's state changes are asked for from its connect on,
/// so its close (or failed connect) is reported.
fn observed_progress(ctx: &SockOpsContext, op: u32, cookie: u64) {
    match op {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
        }
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == TCP_CLOSE => {
            forget(cookie);
            let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
            report(ConnectAttempt::default(), ACTION_CLOSED, netns, cookie, 0);
        }
        // The caller closed first: whatever answer still comes is too late.
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == TCP_FIN_WAIT1 => {
            let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
            report(ConnectAttempt::default(), ACTION_HUNG_UP, netns, cookie, 0);
        }
        _ => {}
    }
}

/// The managed cgroup the current task is in, or under: a service may make
/// cgroups of its own under the one it was given (the programs run there
/// too), and its connects are still its own. Its id and `MANAGED` value.
fn managed_cgroup() -> Option<(u64, u8)> {
    let current = unsafe { bpf_get_current_cgroup_id() };
    if let Some(&kind) = unsafe { MANAGED.get(&current) } {
        return Some((current, kind));
    }
    let [shallowest, deepest] = SETTINGS.get(0)?.managed_levels;
    // Bounded for the verifier: cgroup trees are shallow.
    for level in 0..MAX_LEVEL {
        let level = level + shallowest;
        if level > deepest {
            break;
        }
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(i32::from(level)) };
        if let Some(&kind) = unsafe { MANAGED.get(&ancestor) } {
            return Some((ancestor, kind));
        }
    }
    None
}

/// Levels of managed cgroups `managed_cgroup` looks at, at most.
const MAX_LEVEL: u8 = 16;

/// Offsets in `struct sock_common` (stable since Linux 2.6): the peer port
/// (network order) and the local port (host order).
const SKC_DPORT: usize = 12;
const SKC_NUM: usize = 14;

#[raw_tracepoint(tracepoint = "tcp_rcv_space_adjust")]
pub fn reads(ctx: RawTracePointContext) -> i32 {
    if !matches!(managed_cgroup(), Some((_, SERVES))) {
        return 0;
    }
    let sock: *const u8 = ctx.arg(0);
    let Some((peer_port, local_port)) = ports(sock) else {
        return 0;
    };
    let key = ThreadPort {
        tid: bpf_get_current_pid_tgid() as u32,
        port: local_port,
        _pad: 0,
    };
    remember(&READS, key, peer_port);
    0
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sends(ctx: RawTracePointContext) -> i32 {
    if !matches!(managed_cgroup(), Some((_, SERVES))) {
        return 0;
    }
    let sock: *const u8 = ctx.arg(0);
    let Some((peer_port, local_port)) = ports(sock) else {
        return 0;
    };
    let key = ConnectionPorts {
        local: local_port,
        remote: peer_port,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    remember(&SENDERS, key, tid);
    0
}

/// Sets `key` to `value`, in place when the key has an entry: an LRU map's
/// insert takes a free element and gives the old one back, which cost more
/// than the rest of `reads` and `sends` together. Most of the time the
/// value is the same as before and nothing is written at all.
fn remember<K, V: PartialEq>(map: &LruHashMap<K, V>, key: K, value: V) {
    match map.get_ptr_mut(&key) {
        Some(last) => unsafe {
            if *last != value {
                *last = value;
            }
        },
        None => {
            let _ = map.insert(&key, &value, 0);
        }
    }
}

/// A socket's peer and local ports, in host order.
fn ports(sock: *const u8) -> Option<(u16, u16)> {
    let (Ok(peer_port), Ok(local_port)) = (unsafe {
        (
            bpf_probe_read_kernel(sock.add(SKC_DPORT).cast::<u16>()),
            bpf_probe_read_kernel(sock.add(SKC_NUM).cast::<u16>()),
        )
    }) else {
        return None;
    };
    Some((u16::from_be(peer_port), local_port))
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(attempt) = unsafe { REDIRECTS_BY_COOKIE.get(cookie) } {
        let sa = unsafe { &mut *ctx.sock_addr };
        sa.user_ip4 = attempt.key.destination.addr[0];
        sa.user_port = u32::from(attempt.key.destination.port.to_be());
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(attempt) = unsafe { REDIRECTS_BY_COOKIE.get(cookie) } {
        let sa = unsafe { &mut *ctx.sock_addr };
        let destination = attempt.key.destination;
        let ip6 = if destination.family == AF_INET {
            [0, 0, 0xffff_u32.to_be(), destination.addr[0]]
        } else {
            destination.addr
        };
        write_ip6(&mut sa.user_ip6, ip6);
        sa.user_port = u32::from(attempt.key.destination.port.to_be());
    }
    ALLOW
}

// The verifier only allows context accesses at a constant offset from the
// context pointer: a plain array copy would go through a derived pointer.
fn read_ip6(field: &[u32; 4]) -> [u32; 4] {
    let mut words = [0; 4];
    for (i, word) in words.iter_mut().enumerate() {
        *word = unsafe { core::ptr::read_volatile(&field[i]) };
    }
    words
}

fn write_ip6(field: &mut [u32; 4], words: [u32; 4]) {
    for (i, word) in words.into_iter().enumerate() {
        unsafe { core::ptr::write_volatile(&mut field[i], word) };
    }
}

enum Decision {
    Redirect,
    Refuse,
    /// Let through untouched: the destination is opaque.
    Direct,
}

/// The agent's settings and its listeners in the caller's network
/// namespace; `None` leaves the connect alone (no listener there).
fn settings(ctx: &SockAddrContext) -> Option<(Settings, Listeners)> {
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let listeners = unsafe { LISTENERS.get(netns) }.copied()?;
    Some((SETTINGS.get(0).copied()?, listeners))
}

/// Counts this connect, then refuses it if the agent armed this attempt,
/// lets it through if its destination is opaque (and not proxied in this
/// execution), otherwise records its original destination for the agent.
fn decide(ctx: &SockAddrContext, destination: SockAddr) -> Decision {
    let key = ConnectKey {
        cgroup_id: managed_cgroup().map_or(0, |(id, _)| id),
        destination,
        _pad: 0,
    };
    // Not atomic: two threads of one caller connecting to the same
    // destination at the same instant may share an ordinal. Such calls have
    // no stable order anyway, so the search cannot target either of them.
    let ordinal = match CONNECT_COUNTS.get_ptr_mut(key) {
        Some(count) => unsafe {
            *count += 1;
            *count
        },
        None => {
            let _ = CONNECT_COUNTS.insert(key, 1, u64::from(BPF_NOEXIST));
            1
        }
    };
    let attempt = ConnectAttempt {
        key,
        ordinal,
        _pad: 0,
    };
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let pid_tgid = bpf_get_current_pid_tgid();
    let callee = Callee {
        netns,
        destination,
        _pad: 0,
    };
    let (decision, action) = if unsafe { REFUSALS.get(attempt) }.is_some() {
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        (Decision::Refuse, ACTION_REFUSED)
    } else if let Some(&kind) = unsafe { OPAQUE.get(callee) }
        && unsafe { PROXIED.get(key) }.is_none()
    {
        if kind == CALLEE_HTTP1 {
            let _ = OBSERVED.insert(cookie, CALLEE_HTTP1, 0);
            (Decision::Direct, ACTION_OBSERVED)
        } else if kind == CALLEE_HTTP2 {
            let _ = WALKS.insert(&walk_key(cookie, true), &Walk::new(true), 0);
            let _ = WALKS.insert(&walk_key(cookie, false), &Walk::new(false), 0);
            let _ = OBSERVED.insert(cookie, CALLEE_HTTP2, 0);
            (Decision::Direct, ACTION_OBSERVED_HTTP2)
        } else {
            let _ = DIRECT_BY_COOKIE.insert(cookie, attempt, 0);
            (Decision::Direct, ACTION_DIRECT)
        }
    } else {
        let _ = REDIRECTS_BY_COOKIE.insert(cookie, attempt, 0);
        (Decision::Redirect, ACTION_REDIRECTED)
    };
    report(attempt, action, netns, cookie, pid_tgid);
    decision
}

fn report(attempt: ConnectAttempt, action: u32, netns: u64, socket: u64, pid_tgid: u64) {
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_dropped();
        return;
    };
    entry.write(ConnectEvent {
        attempt,
        netns,
        socket,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        action,
        _pad: 0,
        at_ns: unsafe { bpf_ktime_get_ns() },
    });
    entry.submit(0);
}

fn has_listener_v4(ctx: &SockAddrContext, daddr: u32, dport_be: u16) -> bool {
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    tuple.__bindgen_anon_1.ipv4.daddr = daddr;
    tuple.__bindgen_anon_1.ipv4.dport = dport_be;
    lookup(ctx, &mut tuple, 12)
}

fn has_listener_v6(ctx: &SockAddrContext, daddr: [u32; 4], dport_be: u16) -> bool {
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    tuple.__bindgen_anon_1.ipv6.daddr = daddr;
    tuple.__bindgen_anon_1.ipv6.dport = dport_be;
    lookup(ctx, &mut tuple, 36)
}

fn lookup(ctx: &SockAddrContext, tuple: &mut bpf_sock_tuple, size: u32) -> bool {
    let sk = unsafe { bpf_sk_lookup_tcp(ctx.as_ptr(), tuple, size, BPF_F_CURRENT_NETNS as u64, 0) };
    if sk.is_null() {
        return false;
    }
    unsafe { bpf_sk_release(sk.cast()) };
    true
}

#[cgroup_skb]
pub fn heads_out(ctx: SkBuffContext) -> i32 {
    observe(&ctx, true);
    1
}

#[cgroup_skb]
pub fn heads_in(ctx: SkBuffContext) -> i32 {
    observe(&ctx, false);
    1
}

/// A TCP segment's payload on an observed socket.
#[derive(Clone, Copy)]
struct Segment {
    socket: u64,
    egress: bool,
    /// Where the payload starts in the packet, and its length.
    payload: u32,
    len: u32,
    seq: u32,
    /// The socket's own address.
    local: SockAddr,
}

fn observe(ctx: &SkBuffContext, egress: bool) {
    let socket = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let Some(&kind) = (unsafe { OBSERVED.get(socket) }) else {
        return;
    };
    let Some(segment) = segment(ctx, socket, egress) else {
        return;
    };
    if kind == CALLEE_HTTP2 {
        if walk(ctx, &segment).is_none() {
            forget(socket);
            report(ConnectAttempt::default(), ACTION_LOST, 0, socket, 0);
        }
    } else {
        let _ = head(ctx, &segment);
    }
}

/// Stops observing a socket.
fn forget(socket: u64) {
    let _ = OBSERVED.remove(&socket);
    let _ = WALKS.remove(&walk_key(socket, true));
    let _ = WALKS.remove(&walk_key(socket, false));
}

fn walk_key(socket: u64, egress: bool) -> WalkKey {
    WalkKey {
        socket,
        egress: u64::from(egress),
    }
}

/// The TCP segment in `ctx`, if it carries a payload.
fn segment(ctx: &SkBuffContext, socket: u64, egress: bool) -> Option<Segment> {
    let version: u8 = ctx.load(0).ok()?;
    // Where the IP header holds the socket's own address, and its length.
    let (ip_len, protocol, local, family) = match version >> 4 {
        4 => {
            let local = if egress { 12 } else { 16 };
            let local = [ctx.load::<u32>(local).ok()?, 0, 0, 0];
            (
                usize::from(version & 0xf) * 4,
                ctx.load::<u8>(9).ok()?,
                local,
                AF_INET,
            )
        }
        6 => {
            let at = if egress { 8 } else { 24 };
            let mut local = [0u32; 4];
            for (i, word) in local.iter_mut().enumerate() {
                *word = ctx.load::<u32>(at + 4 * i).ok()?;
            }
            (40, ctx.load::<u8>(6).ok()?, local, AF_INET6)
        }
        _ => return None,
    };
    if u32::from(protocol) != IPPROTO_TCP {
        return None;
    }
    let seq: u32 = ctx.load(ip_len + 4).ok()?;
    let sport: u16 = ctx.load(ip_len).ok()?;
    let dport: u16 = ctx.load(ip_len + 2).ok()?;
    let offset: u8 = ctx.load(ip_len + 12).ok()?;
    let payload = ip_len + usize::from(offset >> 4) * 4;
    let len = (ctx.len() as usize).checked_sub(payload)?;
    if len == 0 {
        return None;
    }
    Some(Segment {
        socket,
        egress,
        payload: payload as u32,
        len: len as u32,
        seq: u32::from_be(seq),
        local: SockAddr {
            addr: local,
            family,
            port: u16::from_be(if egress { sport } else { dport }),
        },
    })
}

/// Reports the segment if its payload starts with an uppercase letter (a
/// method, or `HTTP/`).
fn head(ctx: &SkBuffContext, segment: &Segment) -> Option<()> {
    let first: u8 = ctx.load(segment.payload as usize).ok()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<HeadEvent>(0) else {
        count_dropped();
        return None;
    };
    let event = entry.as_mut_ptr();
    // In 1..=HEAD_BYTES, as the verifier can see: the helper takes no
    // zero-length read.
    let copied = segment.len.min(HEAD_BYTES as u32);
    // Read back so LLVM cannot fold the bounds check into the min above.
    let copied = unsafe { core::ptr::read_volatile(&copied) };
    if copied == 0 || copied > HEAD_BYTES as u32 {
        entry.discard(0);
        return None;
    }
    if !copy_packet(
        ctx,
        segment.payload,
        unsafe { (*event).head.as_mut_ptr() },
        copied,
    ) {
        entry.discard(0);
        return None;
    }
    unsafe {
        (*event).socket = segment.socket;
        (*event).local = segment.local;
        (*event).seq = segment.seq;
        (*event).len = segment.len;
        (*event).tid = bpf_get_current_pid_tgid() as u32;
        (*event).head_len = copied as u16;
        (*event).egress = u16::from(segment.egress);
        (*event)._pad = 0;
    }
    // The agent drains on a timer and before every decision: waking it for
    // each head would cost more than the observation itself.
    entry.submit(aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64);
    Some(())
}

/// Copies `len` bytes of the packet, from `offset`, to `to`; `len` is
/// bounded by the caller where the verifier sees it (inlined for that).
#[inline(always)]
fn copy_packet(ctx: &SkBuffContext, offset: u32, to: *mut u8, len: u32) -> bool {
    unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), offset, to.cast(), len) == 0 }
}

/// Walks the HTTP/2 frames in `segment`, in step with the segments before
/// it one way, reporting what the agent needs; `None` when the walk lost
/// its place.
fn walk(ctx: &SkBuffContext, segment: &Segment) -> Option<()> {
    let walk = WALKS.get_ptr_mut(&walk_key(segment.socket, segment.egress))?;
    // SAFETY: a map value, valid for the program's run; one socket's
    // segments one way are not processed on two CPUs at once.
    let state = unsafe { &mut *walk };
    let len = segment.len;
    if state.started == 0 {
        // A client of a destination learned as h2c that speaks something
        // else (HTTP/1.1 to a server that speaks both) is not walked.
        if segment.egress && ctx.load::<[u8; 4]>(segment.payload as usize).ok()? != *b"PRI " {
            return None;
        }
        state.started = 1;
        state.next_seq = segment.seq;
    }
    // Bytes of this segment walked already: a retransmission's, in whole
    // or in part. Fewer than none is a gap.
    let behind = state.next_seq.wrapping_sub(segment.seq) as i32;
    if behind < 0 {
        return None;
    }
    if behind as u32 >= len {
        return Some(());
    }
    state.next_seq = segment.seq.wrapping_add(len);
    let mut walking = Walking {
        skb: ctx.skb.skb,
        walk,
        segment: *segment,
        at: behind as u32,
        lost: 0,
    };
    // A helper loop, not a bounded one: the verifier checks its body once
    // instead of once per step (a bounded loop of 64 steps already passed
    // its million-instruction limit).
    unsafe {
        bpf_loop(
            MAX_STEPS,
            walk_step as *mut c_void,
            (&raw mut walking).cast(),
            0,
        )
    };
    (walking.lost == 0 && walking.at >= len).then_some(())
}

/// What `walk_step` works on: the segment, and where the walk is in it.
struct Walking {
    skb: *mut __sk_buff,
    walk: *mut Walk,
    segment: Segment,
    /// Where in the segment's payload the walk is.
    at: u32,
    /// Set when the walk lost its place.
    lost: u32,
}

/// One step of a walk: a frame header, or the part of a frame's payload in
/// this segment (a part of at most `FRAME_BYTES` of a reported one).
/// Returns 1 to stop the loop: at the segment's end, or lost.
extern "C" fn walk_step(_index: u64, data: *mut c_void) -> i64 {
    // SAFETY: `walk` passes its own `Walking`, and the map value it holds.
    let walking = unsafe { &mut *data.cast::<Walking>() };
    let walk = unsafe { &mut *walking.walk };
    match step(walking, walk) {
        Some(true) => 0,
        Some(false) => 1,
        None => {
            walking.lost = 1;
            1
        }
    }
}

/// `Some(true)` to go on, `Some(false)` at the segment's end.
fn step(walking: &mut Walking, walk: &mut Walk) -> Option<bool> {
    let ctx = SkBuffContext::new(walking.skb);
    let segment = &walking.segment;
    let len = segment.len;
    let at = walking.at;
    if at >= len {
        return Some(false);
    }
    let available = len - at;
    if walk.left > 0 {
        let mut part = walk.left.min(available);
        if walk.reporting != 0 {
            part = part.min(FRAME_BYTES as u32);
            report_frame(&ctx, segment, walk, segment.payload + at, part)?;
        }
        walk.left -= part;
        walking.at = at + part;
        return Some(true);
    }
    if walk.held == 0 && available >= FRAME_HEADER_LEN {
        let header: [u8; 9] = ctx.load((segment.payload + at) as usize).ok()?;
        walking.at = at + FRAME_HEADER_LEN;
        start_frame(&ctx, segment, walk, &header)?;
        return Some(true);
    }
    // A header split across segments: held until its rest comes.
    let held = walk.held;
    if held >= FRAME_HEADER_LEN {
        return None;
    }
    let part = (FRAME_HEADER_LEN - held).min(available);
    let part = unsafe { core::ptr::read_volatile(&part) };
    if part == 0 || part > FRAME_HEADER_LEN {
        return None;
    }
    let room = unsafe { walk.header.as_mut_ptr().add((held & 15) as usize) };
    if !copy_packet(&ctx, segment.payload + at, room, part) {
        return None;
    }
    walking.at = at + part;
    walk.held = held + part;
    if walk.held < FRAME_HEADER_LEN {
        return Some(true);
    }
    walk.held = 0;
    let mut header = [0u8; 9];
    header.copy_from_slice(&walk.header[..9]);
    start_frame(&ctx, segment, walk, &header)?;
    Some(true)
}

/// A frame starts with `header`: its payload is walked over, or reported.
fn start_frame(
    ctx: &SkBuffContext,
    segment: &Segment,
    walk: &mut Walk,
    header: &[u8; 9],
) -> Option<()> {
    let frame_len = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    walk.frame_len = frame_len;
    walk.left = frame_len;
    walk.kind = header[3];
    walk.flags = header[4];
    walk.stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let reported = match walk.kind {
        H2_HEADERS | H2_CONTINUATION | H2_PUSH_PROMISE | H2_RST_STREAM | H2_GOAWAY => true,
        _ => false,
    };
    walk.reporting = u8::from(reported);
    if !reported {
        return Some(());
    }
    if frame_len > MAX_REPORTED_FRAME {
        return None;
    }
    // An empty frame can still end a header block.
    if frame_len == 0 {
        return report_frame(ctx, segment, walk, 0, 0);
    }
    Some(())
}

/// Reports `len` (at most `FRAME_BYTES`) bytes of the current frame's
/// payload, which start at `offset` in the packet.
fn report_frame(
    ctx: &SkBuffContext,
    segment: &Segment,
    walk: &Walk,
    offset: u32,
    len: u32,
) -> Option<()> {
    let Some(mut entry) = EVENTS.reserve::<FrameEvent>(0) else {
        // The agent cannot follow the header blocks without it.
        count_dropped();
        return None;
    };
    let event = entry.as_mut_ptr();
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len > FRAME_BYTES as u32 {
        entry.discard(0);
        return None;
    }
    if len > 0 && !copy_packet(ctx, offset, unsafe { (*event).payload.as_mut_ptr() }, len) {
        entry.discard(0);
        return None;
    }
    unsafe {
        (*event).socket = segment.socket;
        (*event).local = segment.local;
        (*event).tid = bpf_get_current_pid_tgid() as u32;
        (*event).stream = walk.stream;
        (*event).frame_len = walk.frame_len;
        (*event).offset = walk.frame_len - walk.left;
        (*event).chunk_len = len as u16;
        (*event).kind = walk.kind;
        (*event).flags = walk.flags;
        (*event).egress = u32::from(segment.egress);
        (*event)._pad = 0;
    }
    entry.submit(aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64);
    Some(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
