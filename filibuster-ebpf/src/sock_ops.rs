//! `established` (sock_ops): a redirected connection filed under its
//! client's port once up; direct connects' answers and observed sockets'
//! closes reported.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB,
    },
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::sock_ops,
    programs::SockOpsContext,
};
use filibuster_common::{
    ACTION_CLOSED, ACTION_ESTABLISHED, ACTION_HUNG_UP, ACTION_UNREACHABLE, ConnectAttempt, PeerKey,
};

use crate::{
    connect::listener_family,
    maps::{DIRECT_BY_COOKIE, OBSERVED, REDIRECTS_BY_COOKIE, REDIRECTS_BY_PORT, report},
    observe::forget,
};

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
