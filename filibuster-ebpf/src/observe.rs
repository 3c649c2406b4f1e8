//! `heads_out`/`heads_in` (cgroup_skb): the segments of observed sockets,
//! HTTP/1.1 heads reported as they are, HTTP/2 walked (`http2`).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_socket_cookie, bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use filibuster_common::{
    ACTION_LOST, AF_INET, AF_INET6, CALLEE_HTTP2, ConnectAttempt, HEAD_BYTES, HeadEvent, SockAddr,
};

use crate::{
    connect::IPPROTO_TCP,
    http2::{walk, walk_key},
    maps::{EVENTS, OBSERVED, WALKS, count_dropped, report},
};

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
pub(crate) struct Segment {
    pub(crate) socket: u64,
    pub(crate) egress: bool,
    /// Where the payload starts in the packet, and its length.
    pub(crate) payload: u32,
    pub(crate) len: u32,
    pub(crate) seq: u32,
    /// The socket's own address.
    pub(crate) local: SockAddr,
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
pub(crate) fn forget(socket: u64) {
    let _ = OBSERVED.remove(&socket);
    let _ = WALKS.remove(&walk_key(socket, true));
    let _ = WALKS.remove(&walk_key(socket, false));
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
pub(crate) fn copy_packet(ctx: &SkBuffContext, offset: u32, to: *mut u8, len: u32) -> bool {
    unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), offset, to.cast(), len) == 0 }
}
