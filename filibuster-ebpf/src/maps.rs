//! The maps the programs share with each other and with the agent, and
//! the writers of the event ring buffer.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use filibuster_common::{
    Callee, ConnectAttempt, ConnectEvent, ConnectKey, ConnectionPorts, Listeners, PeerKey,
    Settings, ThreadPort,
};

use crate::http2::{Walk, WalkKey};

#[map]
pub(crate) static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The agent's listeners, by network namespace cookie.
#[map]
pub(crate) static LISTENERS: HashMap<u64, Listeners> = HashMap::with_max_entries(256, 0);

/// Connects seen per (caller, destination) in the current execution.
#[map]
pub(crate) static CONNECT_COUNTS: HashMap<ConnectKey, u32> = HashMap::with_max_entries(16384, 0);

/// Connect attempts the agent wants refused in the current execution.
#[map]
pub(crate) static REFUSALS: HashMap<ConnectAttempt, u8> = HashMap::with_max_entries(4096, 0);

/// Destinations, per caller namespace, connected to directly: they speak
/// a protocol the proxy only passes through, or HTTP/1.1 (`CALLEE_*`).
#[map]
pub(crate) static OPAQUE: HashMap<Callee, u8> = HashMap::with_max_entries(4096, 0);

/// Sockets of direct HTTP connects whose calls are reported, by cookie;
/// the value (`CALLEE_HTTP1`, `CALLEE_HTTP2`) says how.
#[map]
pub(crate) static OBSERVED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65536, 0);

/// Where the walk of each direction of an observed HTTP/2 socket is.
/// Created with the socket's entry in `OBSERVED`: a walk missing later was
/// evicted, its place lost.
#[map]
pub(crate) static WALKS: LruHashMap<WalkKey, Walk> = LruHashMap::with_max_entries(2 * 16384, 0);

/// (Caller, destination) pairs whose connects go through the proxy in the
/// current execution even though the destination is opaque.
#[map]
pub(crate) static PROXIED: HashMap<ConnectKey, u8> = HashMap::with_max_entries(4096, 0);

/// Direct connects not yet answered, by socket cookie.
#[map]
pub(crate) static DIRECT_BY_COOKIE: LruHashMap<u64, ConnectAttempt> =
    LruHashMap::with_max_entries(16384, 0);

/// Original destination of a redirected socket, by socket cookie.
#[map]
pub(crate) static REDIRECTS_BY_COOKIE: LruHashMap<u64, ConnectAttempt> =
    LruHashMap::with_max_entries(65536, 0);

/// Original destination of an established redirected connection, by client port.
#[map]
pub(crate) static REDIRECTS_BY_PORT: LruHashMap<PeerKey, ConnectAttempt> =
    LruHashMap::with_max_entries(65536, 0);

/// Connect events and heads, in the order they happened. Sized for the
/// agent's periodic drain to keep up with ~100k heads a second.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Events `EVENTS` had no room for (the agent did not drain in time), per
/// CPU: the agent marks the executions that ran meanwhile as missing some.
#[map]
pub(crate) static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

pub(crate) fn count_dropped() {
    if let Some(count) = DROPPED.get_ptr_mut(0) {
        // SAFETY: this CPU's own slot; programs do not migrate mid-run.
        unsafe { *count += 1 };
    }
}

/// The managed cgroups: `SERVES` for the services, whose threads' sends
/// and reads `sends` and `reads` record, `CALLS_ONLY` for the test.
#[map]
pub(crate) static MANAGED: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// The thread that last sent on a connection of a managed process, by its
/// ports.
#[map]
pub(crate) static SENDERS: LruHashMap<ConnectionPorts, u32> =
    LruHashMap::with_max_entries(65536, 0);

/// The peer port of the socket a thread last read, per local port.
#[map]
pub(crate) static READS: LruHashMap<ThreadPort, u16> = LruHashMap::with_max_entries(65536, 0);

pub(crate) fn report(attempt: ConnectAttempt, action: u32, netns: u64, socket: u64, pid_tgid: u64) {
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
