//! What the kernel programs report, through their ring buffer.
// System calls and kernel memory no safe wrapper covers; each `unsafe`
// says why it holds.
#![allow(unsafe_code)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use filibuster_common::{ConnectEvent, FrameEvent, HeadEvent};

use super::Destination;
use crate::observe::http2::FramePart;

/// Where the kernel's events come from; apart from [`KernelMaps`] so that
/// they can be handled where they lie with the maps still at hand.
pub trait EventSource: Send {
    /// Hands `each` the events reported since the last call, in the order
    /// they happened.
    fn drain(&mut self, each: &mut dyn FnMut(KernelEvent<'_>));
}

/// The moment a kernel timestamp (`bpf_ktime_get_ns`, CLOCK_MONOTONIC,
/// which `Instant` reads too) names.
pub(crate) fn kernel_instant(at_ns: u64) -> Instant {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
    let taken = Instant::now();
    match now {
        Ok(now) => taken
            .checked_sub(Duration::from_nanos(now.saturating_sub(at_ns)))
            .unwrap_or(taken),
        Err(_) => taken,
    }
}

/// What the kernel programs reported.
pub enum KernelEvent<'a> {
    /// A connect decided, answered, failed or closed.
    Connect(ConnectEvent),
    /// An HTTP/1.1 head seen on an observed socket.
    Head(Head<'a>),
    /// Part of an HTTP/2 frame seen on an observed socket.
    Frame(Frame<'a>),
}

/// A [`FrameEvent`]: part of an HTTP/2 frame on an observed socket.
pub struct Frame<'a> {
    /// The socket's cookie.
    pub socket: u64,
    /// The socket's own address (the caller's side of the connection).
    pub local: SocketAddr,
    /// The thread the kernel sent or received it in.
    pub tid: u32,
    /// Sent on the socket (else received).
    pub egress: bool,
    /// The frame's type, flags, stream and the part of its payload copied.
    pub part: FramePart<'a>,
}

impl<'a> Frame<'a> {
    fn from_kernel(event: &'a FrameEvent) -> Self {
        let copied = usize::from(event.chunk_len).min(event.payload.len());
        Self {
            socket: event.socket,
            local: Destination::from_kernel(&event.local).0,
            tid: event.tid,
            egress: event.egress == 1,
            part: FramePart {
                kind: event.kind,
                flags: event.flags,
                stream: event.stream,
                frame_len: event.frame_len,
                offset: event.offset,
                bytes: &event.payload[..copied],
            },
        }
    }
}

/// A [`HeadEvent`], read where the kernel wrote it, with only the payload
/// bytes it copied: most heads are a few dozen bytes of the kilobyte the
/// kernel reserves.
pub struct Head<'a> {
    /// The socket's cookie.
    pub socket: u64,
    /// The socket's own address (the caller's side of the connection).
    pub local: SocketAddr,
    /// The TCP sequence number of the segment's first byte.
    pub seq: u32,
    /// The thread the kernel sent or received it in.
    pub tid: u32,
    /// Sent on the socket (else received).
    pub egress: bool,
    /// The segment's first bytes, as far as the kernel copied them.
    pub bytes: &'a [u8],
}

impl<'a> Head<'a> {
    fn from_kernel(event: &'a HeadEvent) -> Self {
        let copied = usize::from(event.head_len).min(event.head.len());
        Self {
            socket: event.socket,
            local: Destination::from_kernel(&event.local).0,
            seq: event.seq,
            tid: event.tid,
            egress: event.egress == 1,
            bytes: &event.head[..copied],
        }
    }
}

/// The ring buffer the kernel programs report through, apart from the
/// rest of [`Kernel`] so that its events can be handled where they lie
/// with the kernel's maps still at hand.
pub struct Events(RingBuf<MapData>);

impl Events {
    pub(super) fn new(ring: RingBuf<MapData>) -> Self {
        Self(ring)
    }
}

impl EventSource for Events {
    fn drain(&mut self, each: &mut dyn FnMut(KernelEvent<'_>)) {
        while let Some(item) = self.0.next() {
            // The kernel wrote the event its size names, at the 8-byte
            // alignment of every ring buffer record (which every event's
            // alignment divides). Heads and frames are read in place:
            // copying them out was the agent's largest cost under load.
            match item.len() {
                n if n == size_of::<ConnectEvent>() => {
                    // SAFETY: a whole ConnectEvent, as above.
                    let event = unsafe { item.as_ptr().cast::<ConnectEvent>().read_unaligned() };
                    each(KernelEvent::Connect(event));
                }
                n if n == size_of::<HeadEvent>() => {
                    let head = item.as_ptr().cast::<HeadEvent>();
                    debug_assert!(head.is_aligned());
                    // SAFETY: a whole, aligned HeadEvent, as above.
                    each(KernelEvent::Head(Head::from_kernel(unsafe { &*head })));
                }
                n if n == size_of::<FrameEvent>() => {
                    let frame = item.as_ptr().cast::<FrameEvent>();
                    debug_assert!(frame.is_aligned());
                    // SAFETY: a whole, aligned FrameEvent, as above.
                    each(KernelEvent::Frame(Frame::from_kernel(unsafe { &*frame })));
                }
                _ => {}
            }
        }
    }
}
