//! `connect4`/`connect6`: each TCP connect of a managed cgroup counted,
//! then refused, let through (opaque or observed destinations) or
//! redirected to the agent's listener; `getpeername4`/`getpeername6`: the
//! caller shown its original peer.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_CURRENT_NETNS, BPF_NOEXIST, bpf_sock_tuple},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval,
        bpf_sk_lookup_tcp, bpf_sk_release,
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use filibuster_common::{
    ACTION_DIRECT, ACTION_OBSERVED, ACTION_OBSERVED_HTTP2, ACTION_REDIRECTED, ACTION_REFUSED,
    AF_INET, AF_INET6, CALLEE_HTTP1, CALLEE_HTTP2, Callee, ConnectAttempt, ConnectKey, Listeners,
    Settings, SockAddr,
};

use crate::{
    http2::{Walk, walk_key},
    maps::{
        CONNECT_COUNTS, DIRECT_BY_COOKIE, LISTENERS, OBSERVED, OPAQUE, PROXIED,
        REDIRECTS_BY_COOKIE, REFUSALS, SETTINGS, WALKS, count_dropped, report,
    },
    threads::managed_cgroup,
};

pub(crate) const IPPROTO_TCP: u32 = 6;
const ECONNREFUSED: i32 = 111;
/// Return values of cgroup_sock_addr programs.
const ALLOW: i32 = 1;
const DENY: i32 = 0;

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
pub(crate) fn listener_family(family: u32, remote_ip6: [u32; 4]) -> u16 {
    if family == u32::from(AF_INET6) && !is_v4_mapped(remote_ip6) {
        AF_INET6
    } else {
        AF_INET
    }
}

fn is_v4_mapped(ip6: [u32; 4]) -> bool {
    ip6[0] == 0 && ip6[1] == 0 && ip6[2] == 0xffff_u32.to_be()
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
            // Full (16,384 callers × destinations since the execution
            // began): this connect's ordinal is a guess, so it counts as
            // an event lost, and the execution is not used to skip others.
            if CONNECT_COUNTS
                .insert(key, 1, u64::from(BPF_NOEXIST))
                .is_err()
            {
                count_dropped();
            }
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
    // Off unless the agent runs with --kernel-log (it sets the level).
    debug!(
        ctx,
        "connect from cgroup {} to port {}, attempt {}: action {}",
        key.cgroup_id,
        destination.port,
        ordinal,
        action
    );
    decision
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
