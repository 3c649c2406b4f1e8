//! Types shared by the kernel programs (`filibuster-ebpf`) and the agent.
//!
//! Every type here is `#[repr(C)]`, has no implicit padding and is read and
//! written by both sides through BPF maps or the ring buffer, so a field
//! change on one side is a change on both.
#![no_std]

/// `AF_INET` and `AF_INET6`, as the kernel spells them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Names of the maps the agent opens by name.
pub mod maps {
    pub const SETTINGS: &str = "SETTINGS";
    pub const CONNECT_COUNTS: &str = "CONNECT_COUNTS";
    pub const REFUSALS: &str = "REFUSALS";
    pub const OPAQUE: &str = "OPAQUE";
    pub const PROXIED: &str = "PROXIED";
    pub const REDIRECTS_BY_PORT: &str = "REDIRECTS_BY_PORT";
    pub const LISTENERS: &str = "LISTENERS";
    pub const MANAGED: &str = "MANAGED";
    pub const SENDERS: &str = "SENDERS";
    pub const READS: &str = "READS";
    pub const EVENTS: &str = "EVENTS";
    pub const DROPPED: &str = "DROPPED";
}

/// Names of the kernel programs, as the agent loads and attaches them.
pub mod programs {
    pub const CONNECT4: &str = "connect4";
    pub const CONNECT6: &str = "connect6";
    pub const GETPEERNAME4: &str = "getpeername4";
    pub const GETPEERNAME6: &str = "getpeername6";
    pub const SOCK_OPS: &str = "established";
    pub const SENDS: &str = "sends";
    /// The tracepoint `SENDS` is attached to.
    pub const SENDS_TRACEPOINT: &str = "sock_send_length";
    pub const READS: &str = "reads";
    /// The tracepoint `READS` is attached to.
    pub const READS_TRACEPOINT: &str = "tcp_rcv_space_adjust";
    pub const HEADS_OUT: &str = "heads_out";
    pub const HEADS_IN: &str = "heads_in";
}

/// An IPv4 or IPv6 socket address.
///
/// `addr` holds the address in network byte order (IPv4 in `addr[0]`), as in
/// `struct bpf_sock_addr`; `port` is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockAddr {
    pub addr: [u32; 4],
    pub family: u16,
    pub port: u16,
}

/// The agent's settings, in slot 0 of the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// Loopback port of the agent's control API: never redirected, so a test
    /// can always ask the agent what it injected.
    pub control_port: u16,
    /// The levels in the cgroup v2 tree (the root is 0) of the shallowest
    /// and the deepest managed cgroup: where a process in a cgroup a
    /// service made under its own finds its managed ancestor.
    pub managed_levels: [u8; 2],
    pub _pad: [u16; 2],
}

/// The agent's transparent listeners in one network namespace (a value of
/// `LISTENERS`, keyed by the namespace's cookie): connects are redirected
/// to the listener of the caller's own namespace, the only one its
/// loopback reaches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listeners {
    /// Port on 127.0.0.1 (0: none).
    pub port_v4: u16,
    /// Port on [::1] (0: none, IPv6 being off there).
    pub port_v6: u16,
    pub _pad: u32,
}

/// One caller (a managed cgroup) connecting to one destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ConnectKey {
    pub cgroup_id: u64,
    pub destination: SockAddr,
    /// Explicit, so that map keys hash the same on both sides.
    pub _pad: u32,
}

/// The `ordinal`-th connect of a caller to a destination in the current
/// execution (counted from 1). The agent arms refusals with this key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ConnectAttempt {
    pub key: ConnectKey,
    pub ordinal: u32,
    pub _pad: u32,
}

/// A destination as seen from a network namespace (a key of `OPAQUE`):
/// connects there from that namespace go straight to it, the proxy having
/// nothing to read in a protocol it does not speak, or nothing to do on an
/// HTTP/1.1 connection the kernel can watch (the value, `CALLEE_*`, says
/// which).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Callee {
    pub netns: u64,
    pub destination: SockAddr,
    pub _pad: u32,
}

/// Key of `REDIRECTS_BY_PORT`: the local (client) port of a redirected
/// connection, its family and its network namespace's cookie, which the
/// agent reads as its peer's port and its listener's namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PeerKey {
    pub netns: u64,
    pub port: u16,
    pub family: u16,
    pub _pad: u32,
}

/// Key of `SENDERS`: a connection of a managed process, by its local and
/// remote ports. For a redirected connection, the agent sees them as its
/// peer's port and its listener's. (Without the kernel's BTF the tracepoint
/// cannot reach the socket's namespace; two namespaces would have to share
/// both ports for two connections to collide.)
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ConnectionPorts {
    pub local: u16,
    pub remote: u16,
}

/// Key of `READS`: a thread of a managed process and the local port of a
/// TCP socket it read from.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ThreadPort {
    pub tid: u32,
    pub port: u16,
    pub _pad: u16,
}

/// A connect from a managed cgroup, or how a direct one ended, reported
/// through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnectEvent {
    pub attempt: ConnectAttempt,
    /// Cookie of the caller's network namespace.
    pub netns: u64,
    /// Cookie of the caller's socket: ties a direct connect to its end.
    pub socket: u64,
    /// Thread group id (the process) and thread id of the caller (0 for
    /// the end of a direct connect, which the kernel sees in no thread).
    pub pid: u32,
    pub tid: u32,
    /// One of the `ACTION_*` constants.
    pub action: u32,
    pub _pad: u32,
    /// When it happened: the kernel's CLOCK_MONOTONIC, in nanoseconds
    /// (the agent reads events a few milliseconds late).
    pub at_ns: u64,
}

/// Values of `MANAGED`: a service's cgroup, whose threads serve requests,
/// and the test's, which only calls.
pub const SERVES: u8 = 1;
pub const CALLS_ONLY: u8 = 0;

/// Values of `OPAQUE`: what a destination connected to directly speaks.
pub const CALLEE_OPAQUE: u8 = 1;
/// HTTP/1.1: its requests and responses are read off the caller's socket
/// (`HeadEvent`s).
pub const CALLEE_HTTP1: u8 = 2;
/// HTTP/2 by prior knowledge (h2c, as gRPC speaks it): the frames of the
/// caller's socket are walked, and those that carry header blocks and
/// stream or connection ends reported (`FrameEvent`s).
pub const CALLEE_HTTP2: u8 = 3;

pub const ACTION_REDIRECTED: u32 = 1;
pub const ACTION_REFUSED: u32 = 2;
/// Let through to its destination, which speaks an opaque protocol.
pub const ACTION_DIRECT: u32 = 3;
/// A direct connect was answered (the connection is up).
pub const ACTION_ESTABLISHED: u32 = 4;
/// A direct connect failed (refused, unreachable, timed out).
pub const ACTION_UNREACHABLE: u32 = 5;
/// Let through to its destination, which speaks HTTP/1.1: the socket's
/// heads are reported until it closes.
pub const ACTION_OBSERVED: u32 = 6;
/// An observed socket closed.
pub const ACTION_CLOSED: u32 = 7;
/// An observed connection's caller closed its end first (FIN_WAIT1): a
/// request still unanswered was given up on.
pub const ACTION_HUNG_UP: u32 = 8;
/// Let through to its destination, which speaks HTTP/2: the socket's
/// frames are walked and reported until it closes.
pub const ACTION_OBSERVED_HTTP2: u32 = 9;
/// The kernel lost its place in an observed HTTP/2 connection's frames (a
/// gap in the TCP sequence, more frames in a segment than it walks, a
/// header block larger than it reports) and stopped observing it.
pub const ACTION_LOST: u32 = 10;

/// How many bytes of a segment's payload a `HeadEvent` carries.
pub const HEAD_BYTES: usize = 1024;

/// The start of a TCP segment on an observed socket whose payload could
/// open an HTTP/1.1 request or response (its first byte is an uppercase
/// letter), reported through `EVENTS` (told from a `ConnectEvent` by its
/// size).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HeadEvent {
    pub socket: u64,
    /// The socket's own address (the caller's side of the connection).
    pub local: SockAddr,
    pub seq: u32,
    /// Payload bytes in the segment.
    pub len: u32,
    /// The thread the kernel sent or received it in (not necessarily the
    /// socket's owner on receive).
    pub tid: u32,
    /// How many bytes of `head` hold payload.
    pub head_len: u16,
    /// 1 for a segment sent, 0 for one received.
    pub egress: u16,
    pub _pad: u32,
    pub head: [u8; HEAD_BYTES],
}

/// How many payload bytes a `FrameEvent` carries at most: a longer frame
/// is reported in several.
pub const FRAME_BYTES: usize = 512;

/// HTTP/2 frame types whose payloads the kernel reports: header blocks
/// (which the agent must decode in full to keep each direction's HPACK
/// table in step) and stream and connection ends. Not DATA, SETTINGS
/// (the decoder follows the table size updates each block carries; a
/// setting only bounds them), PING, PRIORITY or WINDOW_UPDATE.
pub const H2_HEADERS: u8 = 0x1;
pub const H2_RST_STREAM: u8 = 0x3;
pub const H2_PUSH_PROMISE: u8 = 0x5;
pub const H2_GOAWAY: u8 = 0x7;
pub const H2_CONTINUATION: u8 = 0x9;

/// Part of the payload of an HTTP/2 frame on an observed socket, reported
/// through `EVENTS` (told from the other events by its size). A frame's
/// chunks come in order, one event per segment it spans at least.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FrameEvent {
    pub socket: u64,
    /// The socket's own address (the caller's side of the connection).
    pub local: SockAddr,
    /// The thread the kernel sent or received it in.
    pub tid: u32,
    /// The frame's stream id.
    pub stream: u32,
    /// The frame's whole payload length.
    pub frame_len: u32,
    /// Where in the frame's payload `payload` starts.
    pub offset: u32,
    /// How many bytes of `payload` hold the frame's payload.
    pub chunk_len: u16,
    /// The frame's type (`H2_*`) and flags.
    pub kind: u8,
    pub flags: u8,
    /// 1 for a frame sent, 0 for one received.
    pub egress: u32,
    pub _pad: u32,
    pub payload: [u8; FRAME_BYTES],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, padding-free and valid for any bit pattern.
    unsafe impl aya::Pod for super::SockAddr {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Listeners {}
    unsafe impl aya::Pod for super::ConnectKey {}
    unsafe impl aya::Pod for super::ConnectAttempt {}
    unsafe impl aya::Pod for super::Callee {}
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::ConnectionPorts {}
    unsafe impl aya::Pod for super::ThreadPort {}
    unsafe impl aya::Pod for super::ConnectEvent {}
}
