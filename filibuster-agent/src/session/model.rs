//! A model of the kernel's maps and events, standing where the programs
//! would be, for the session's and the proxy's tests without root.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use filibuster_common::{ConnectAttempt, ConnectEvent, ConnectKey};
use foldhash::HashMap;

use crate::{
    ebpf::{EventSource, Frame, Head, KernelEvent, KernelMaps, Speaks},
    observe::http2::FramePart,
};

/// The maps as the session left them, and what the tests put in for the
/// programs.
#[derive(Default)]
pub(crate) struct Maps {
    /// Per `begin_execution`: its cgroups, refusals and proxied pairs.
    pub(crate) begun: Vec<(Vec<u64>, Vec<ConnectAttempt>, Vec<ConnectKey>)>,
    pub(crate) disarmed: Vec<ConnectAttempt>,
    pub(crate) redirects: HashMap<(u64, u16), ConnectAttempt>,
    pub(crate) senders: HashMap<(u16, u16), u32>,
    pub(crate) reads: HashMap<(u32, u16), u16>,
    pub(crate) dropped: u64,
}

#[derive(Clone, Default)]
pub(crate) struct ModelKernel(Arc<Mutex<Maps>>);

impl ModelKernel {
    pub(crate) fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().unwrap()
    }
}

impl KernelMaps for ModelKernel {
    fn begin_execution(
        &mut self,
        cgroups: &[u64],
        refusals: &[ConnectAttempt],
        proxied: &[ConnectKey],
    ) -> Result<()> {
        let begun = (cgroups.to_vec(), refusals.to_vec(), proxied.to_vec());
        self.maps().begun.push(begun);
        Ok(())
    }

    fn connect_directly(&mut self, _: u64, _: SocketAddr, _: Speaks) -> Result<()> {
        Ok(())
    }

    fn detach_connects(&mut self) {}

    fn disarm(&mut self, attempt: &ConnectAttempt) {
        self.maps().disarmed.push(*attempt);
    }

    fn take_redirect(&mut self, netns: u64, peer: SocketAddr) -> Option<ConnectAttempt> {
        self.maps().redirects.remove(&(netns, peer.port()))
    }

    fn sender(&self, local_port: u16, remote_port: u16) -> Option<u32> {
        self.maps().senders.get(&(local_port, remote_port)).copied()
    }

    fn last_read_peer(&self, tid: u32, port: u16) -> Option<u16> {
        self.maps().reads.get(&(tid, port)).copied()
    }

    fn dropped_events(&self) -> u64 {
        self.maps().dropped
    }
}

/// An event as the test writes it (a head owns its bytes here).
pub(crate) enum Event {
    Connect(ConnectEvent),
    Head {
        socket: u64,
        local: SocketAddr,
        seq: u32,
        egress: bool,
        bytes: Vec<u8>,
    },
    /// A whole HTTP/2 frame, reported in one part.
    Frame {
        socket: u64,
        local: SocketAddr,
        egress: bool,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Default)]
pub(crate) struct ModelEvents(pub(crate) Arc<Mutex<VecDeque<Event>>>);

impl EventSource for ModelEvents {
    fn drain(&mut self, each: &mut dyn FnMut(KernelEvent<'_>)) {
        let events: Vec<Event> = self.0.lock().unwrap().drain(..).collect();
        for event in &events {
            each(match event {
                Event::Connect(connect) => KernelEvent::Connect(*connect),
                Event::Head {
                    socket,
                    local,
                    seq,
                    egress,
                    bytes,
                } => KernelEvent::Head(Head {
                    socket: *socket,
                    local: *local,
                    seq: *seq,
                    tid: 1,
                    egress: *egress,
                    bytes,
                }),
                Event::Frame {
                    socket,
                    local,
                    egress,
                    kind,
                    flags,
                    stream,
                    payload,
                } => KernelEvent::Frame(Frame {
                    socket: *socket,
                    local: *local,
                    tid: 1,
                    egress: *egress,
                    part: FramePart {
                        kind: *kind,
                        flags: *flags,
                        stream: *stream,
                        frame_len: payload.len() as u32,
                        offset: 0,
                        bytes: payload,
                    },
                }),
            });
        }
    }
}
