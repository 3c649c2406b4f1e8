//! The walk of an observed HTTP/2 connection's frames, one direction at a
//! time across segments: the payloads of frames that carry header blocks
//! and stream and connection ends reported (`FrameEvent`), never DATA.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_get_current_pid_tgid, bpf_loop},
    programs::SkBuffContext,
};
use filibuster_common::{
    FRAME_BYTES, FrameEvent, H2_CONTINUATION, H2_GOAWAY, H2_HEADERS, H2_PUSH_PROMISE, H2_RST_STREAM,
};

use crate::{
    maps::{EVENTS, WALKS, count_dropped},
    observe::{Segment, copy_packet},
};

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct WalkKey {
    socket: u64,
    egress: u64,
}

/// One direction of an observed HTTP/2 connection, walked frame by frame.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Walk {
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
    pub(crate) const fn new(egress: bool) -> Self {
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

/// Walks the HTTP/2 frames in `segment`, in step with the segments before
/// it one way, reporting what the agent needs; `None` when the walk lost
/// its place.
pub(crate) fn walk(ctx: &SkBuffContext, segment: &Segment) -> Option<()> {
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

pub(crate) fn walk_key(socket: u64, egress: bool) -> WalkKey {
    WalkKey {
        socket,
        egress: u64::from(egress),
    }
}
