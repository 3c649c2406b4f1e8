//! Direct HTTP connections whose caller socket the kernel observes: each
//! HTTP/1.1 request, or HTTP/2 stream, read off one is admitted as the
//! proxy admits a call, and its response ends it. A connection whose
//! frames can no longer be followed is destroyed, so that its caller
//! reconnects, and the kernel sends that connect through the proxy until
//! it is learned again.

use std::net::SocketAddr;

use filibuster_common::{ACTION_HUNG_UP, ConnectAttempt, ConnectEvent, ConnectKey};
use foldhash::HashMap;
use tracing::{debug, warn};

use super::{
    CallConnection, CallHandle, CallRequest, Enactment, Session, State, UpstreamPort, callee,
};
use crate::{
    ebpf::{Destination, Frame, Head, Speaks, kernel_instant},
    explore::{Outcome, Protocol},
    observe::{
        http1,
        http2::{self, Seen},
    },
    sockdiag,
};

/// A direct HTTP connection whose caller socket the kernel observes.
pub(super) struct Observed {
    caller: String,
    callee: String,
    destination: SocketAddr,
    /// Cookie of the caller's network namespace.
    netns: u64,
    attempt: ConnectAttempt,
    number: u32,
    /// The caller socket's own address, once a head or frame showed it.
    local: Option<SocketAddr>,
    used: bool,
    cell: usize,
    exchange: Exchange,
}

enum Exchange {
    Http1 {
        tracker: http1::Tracker,
        /// The call awaiting its response.
        pending: Option<CallHandle>,
    },
    Http2 {
        /// Boxed: two HPACK tables.
        tracker: Box<http2::Tracker>,
        /// The calls on open streams.
        streams: HashMap<u32, Stream>,
    },
    /// Its calls can no longer be read: destroyed at the next execution's
    /// start, a call on it being awaited when it was lost.
    Lost,
}

struct Stream {
    call: CallHandle,
    grpc: bool,
    /// Its response headers came: a gRPC call awaits its trailers.
    answered: bool,
}

impl<'a> From<&'a Observed> for CallConnection<'a> {
    fn from(observed: &'a Observed) -> Self {
        Self {
            cell: observed.cell,
            caller: &observed.caller,
            callee: &observed.callee,
            destination: observed.destination,
            attempt: &observed.attempt,
            number: observed.number,
        }
    }
}

impl Session {
    /// A connect the kernel let through to a destination that speaks
    /// HTTP: a connection, whose requests are the calls.
    pub(super) fn absorb_observed_connect(state: &mut State, event: &ConnectEvent, speaks: Speaks) {
        let Some((caller, cell)) = state.caller(event.attempt.key.cgroup_id) else {
            return;
        };
        let destination = Destination::from_kernel(&event.attempt.key.destination).0;
        let exchange = match speaks {
            Speaks::Http2 => Exchange::Http2 {
                tracker: Box::default(),
                streams: HashMap::default(),
            },
            _ => Exchange::Http1 {
                tracker: http1::Tracker::default(),
                pending: None,
            },
        };
        let observed = Observed {
            callee: callee(&state.services, destination, event.netns),
            caller,
            destination,
            netns: event.netns,
            attempt: event.attempt,
            number: state.next_connection(),
            local: None,
            used: false,
            cell,
            exchange,
        };
        state.observed.insert(event.socket, observed);
    }

    /// An observed connection closed, with calls unanswered: by the caller
    /// first (it gave up: a late answer is not its outcome), or by the
    /// callee or the network.
    pub(super) fn absorb_observed_end(state: &mut State, event: &ConnectEvent) {
        let Some(observed) = state.observed.remove(&event.socket) else {
            return;
        };
        let outcome = if event.action == ACTION_HUNG_UP {
            Outcome::Abandoned
        } else {
            Outcome::ConnectionError
        };
        let at = kernel_instant(event.at_ns);
        let unanswered: Vec<CallHandle> = match observed.exchange {
            Exchange::Http1 { pending, .. } => pending.into_iter().collect(),
            Exchange::Http2 { streams, .. } => streams
                .into_values()
                .filter(|stream| !stream.answered)
                .map(|stream| stream.call)
                .collect(),
            Exchange::Lost => Vec::new(),
        };
        for call in unanswered {
            Self::finish_at(state, call, outcome.clone(), at);
        }
    }

    /// The head of a segment on an observed HTTP/1.1 connection: a request
    /// is admitted as a proxied one would be; a response ends its call.
    pub(super) fn absorb_head(state: &mut State, head: &Head<'_>) {
        // Out of the map while its call is admitted, which needs the state.
        let Some(mut observed) = state.observed.remove(&head.socket) else {
            return;
        };
        observed.local.get_or_insert(head.local);
        if let Exchange::Http1 { tracker, .. } = &mut observed.exchange {
            match tracker.segment(head.egress, head.seq, head.bytes) {
                Some(http1::Seen::Request {
                    method,
                    target,
                    trace,
                }) => {
                    let request = observed.request(Protocol::Http, method, target, trace);
                    let call = Self::admit_observed(state, &observed, &request, head.tid);
                    if let Exchange::Http1 { pending, .. } = &mut observed.exchange {
                        *pending = call;
                    }
                }
                Some(http1::Seen::Response(status)) => {
                    if let Exchange::Http1 { pending, .. } = &mut observed.exchange
                        && let Some(call) = pending.take()
                    {
                        Self::finish(state, call, Outcome::Status(status));
                    }
                }
                None => {}
            }
        }
        state.observed.insert(head.socket, observed);
    }

    /// Part of a frame on an observed HTTP/2 connection: a request's
    /// headers are admitted as a proxied stream's would be; a response's
    /// headers, trailers or a reset end its call.
    pub(super) fn absorb_frame(state: &mut State, frame: &Frame<'_>) {
        // Out of the map while its call is admitted, which needs the state.
        let Some(mut observed) = state.observed.remove(&frame.socket) else {
            return;
        };
        observed.local.get_or_insert(frame.local);
        let read = Self::read_frame(state, &mut observed, frame);
        if read.is_err() {
            let (caller, callee) = (&observed.caller, &observed.callee);
            warn!(%caller, %callee, "lost the frames of an observed HTTP/2 connection (the kernel's events came too late, or a header block did not decode): it is destroyed so that its caller reconnects");
        }
        state.observed.insert(frame.socket, observed);
        if read.is_err() {
            Self::lose(state, frame.socket);
        }
    }

    fn read_frame(
        state: &mut State,
        observed: &mut Observed,
        frame: &Frame<'_>,
    ) -> Result<(), http2::Lost> {
        let Exchange::Http2 { tracker, .. } = &mut observed.exchange else {
            return Ok(());
        };
        let Some(seen) = tracker.frame(frame.egress, &frame.part)? else {
            return Ok(());
        };
        if let Seen::Request {
            stream,
            method,
            path,
            grpc,
            trace,
        } = seen
        {
            let protocol = if grpc {
                Protocol::Grpc
            } else {
                Protocol::Http2
            };
            let request = observed.request(protocol, &method, &path, trace.as_deref());
            let call = Self::admit_observed(state, observed, &request, frame.tid);
            if let (Some(call), Exchange::Http2 { streams, .. }) = (call, &mut observed.exchange) {
                let answered = false;
                streams.insert(
                    stream,
                    Stream {
                        call,
                        grpc,
                        answered,
                    },
                );
            }
        } else if let Exchange::Http2 { streams, .. } = &mut observed.exchange {
            Self::end_streams(state, streams, seen);
        }
        Ok(())
    }

    /// Records what `seen` tells of the calls on `streams`.
    fn end_streams(state: &mut State, streams: &mut HashMap<u32, Stream>, seen: Seen) {
        match seen {
            Seen::Response {
                stream,
                status,
                grpc_status,
            } => {
                let Some(open) = streams.get_mut(&stream) else {
                    return;
                };
                // As through the proxy: a gRPC call's status comes in the
                // headers of an answer without a body, else in trailers.
                let outcome = match grpc_status {
                    Some(code) => Outcome::Grpc(code),
                    None => Outcome::Status(status),
                };
                Self::finish(state, open.call, outcome);
                open.answered = true;
                if !open.grpc || grpc_status.is_some() {
                    streams.remove(&stream);
                }
            }
            Seen::Trailers {
                stream,
                grpc_status,
            } => {
                if let Some(open) = streams.remove(&stream)
                    && let Some(code) = grpc_status
                    && open.answered
                {
                    Self::record_outcome(
                        state,
                        open.call,
                        Outcome::Grpc(code),
                        std::time::Instant::now(),
                    );
                }
            }
            Seen::Reset { stream, sent } => {
                if let Some(open) = streams.remove(&stream)
                    && !open.answered
                {
                    Self::finish(state, open.call, Self::ended_early(sent));
                }
            }
            // Streams above the last one the callee processed (or the
            // caller will let it) get no answer.
            Seen::GoingAway { last_stream, sent } => {
                let doomed: Vec<u32> = streams
                    .iter()
                    .filter(|(id, open)| **id > last_stream && !open.answered)
                    .map(|(&id, _)| id)
                    .collect();
                for id in doomed {
                    if let Some(open) = streams.remove(&id) {
                        Self::finish(state, open.call, Self::ended_early(sent));
                    }
                }
            }
            Seen::Request { .. } => {}
        }
    }

    /// How a call ended before its answer: given up by its caller, or cut
    /// by the callee.
    fn ended_early(by_caller: bool) -> Outcome {
        if by_caller {
            Outcome::Abandoned
        } else {
            Outcome::ConnectionError
        }
    }

    /// Admits a request read off an observed connection, sent by thread
    /// `tid`; a fault planned on it cannot be enacted (the kernel sends
    /// the connects a fault needs through the proxy), so it goes on.
    fn admit_observed(
        state: &mut State,
        observed: &Observed,
        request: &CallRequest,
        tid: u32,
    ) -> Option<CallHandle> {
        let admission = Self::admit_call(state, &observed.into(), request, |_| Some(tid));
        state.observed_calls += u64::from(admission.call.is_some());
        if admission.enactment != Enactment::Forward {
            let (caller, callee) = (&observed.caller, &observed.callee);
            let (method, target) = (request.method, request.target);
            warn!(%caller, %callee, %method, %target, "a call planned to fail went directly and was not failed");
        }
        admission.call
    }

    /// The kernel, or the tracker, lost its place in an observed
    /// connection's frames: it is destroyed now if no call on it is
    /// awaited, else at the next execution's start (destroying it now
    /// would fail calls no fault was planned on).
    pub(super) fn lose(state: &mut State, socket: u64) {
        let Some(observed) = state.observed.get_mut(&socket) else {
            return;
        };
        let awaited = match &observed.exchange {
            Exchange::Http1 { pending, .. } => pending.is_some(),
            Exchange::Http2 { streams, .. } => streams.values().any(|s| !s.answered),
            Exchange::Lost => true,
        };
        observed.exchange = Exchange::Lost;
        if !awaited {
            Self::destroy_observed_connection(state, socket);
        }
    }

    /// Destroys the observed connections whose calls can no longer be
    /// read, and those of these callers to these destinations, which a
    /// planned fault needs.
    pub(super) fn destroy_observed(state: &mut State, pairs: &[ConnectKey]) -> usize {
        let doomed: Vec<u64> = state
            .observed
            .iter()
            .filter(|(_, observed)| {
                matches!(observed.exchange, Exchange::Lost) || pairs.contains(&observed.attempt.key)
            })
            .map(|(&cookie, _)| cookie)
            .collect();
        doomed
            .into_iter()
            .filter(|&cookie| Self::destroy_observed_connection(state, cookie))
            .count()
    }

    /// Destroys an observed connection; says whether it was still open.
    fn destroy_observed_connection(state: &mut State, cookie: u64) -> bool {
        let Some(observed) = state.observed.remove(&cookie) else {
            return false;
        };
        let remote = observed.destination;
        let Some(local) = observed.local else {
            // Lost before a head or frame showed its address: found among
            // the caller's sockets instead.
            return state
                .cgroup_paths
                .get(&observed.attempt.key.cgroup_id)
                .is_some_and(|cgroup| sockdiag::destroy_pooled(cgroup, remote) > 0);
        };
        let Some(netns) = state.namespaces.get(&observed.netns) else {
            return false;
        };
        match netns.enter(|| sockdiag::destroy(local, remote, cookie)) {
            Ok(()) => {
                debug!(%local, %remote, "destroyed an observed connection");
                true
            }
            // Closed since: its close event is on its way.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                warn!(%local, %remote, "cannot destroy an observed connection: {e}");
                false
            }
        }
    }
}

impl Observed {
    /// A request read off this connection, as the proxy would describe it.
    fn request<'a>(
        &mut self,
        protocol: Protocol,
        method: &'a str,
        target: &'a str,
        trace: Option<&'a str>,
    ) -> CallRequest<'a> {
        CallRequest {
            protocol,
            method,
            target,
            trace,
            first_on_connection: !std::mem::replace(&mut self.used, true),
            // The callee's thread serving it reads from the caller's own
            // socket.
            upstream_port: UpstreamPort::Fixed(self.local.map(|local| local.port())),
            learned: None,
        }
    }
}
