//! Thread tracking: `sends` and `reads` (raw tracepoints) record which
//! thread of a service last sent or read on each connection, so the agent
//! knows which request a call is made for.

use aya_ebpf::{
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
        bpf_probe_read_kernel,
    },
    macros::raw_tracepoint,
    maps::LruHashMap,
    programs::RawTracePointContext,
};
use filibuster_common::{ConnectionPorts, SERVES, ThreadPort};

use crate::maps::{MANAGED, READS, SENDERS, SETTINGS};

/// The managed cgroup the current task is in, or under: a service may make
/// cgroups of its own under the one it was given (the programs run there
/// too), and its connects are still its own. Its id and `MANAGED` value.
pub(crate) fn managed_cgroup() -> Option<(u64, u8)> {
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
