//! What the kernel reported on its own: refusals, direct connects and how
//! they ended (observed connections are [`super::observed`]'s); and what
//! the kernel is told to connect directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Result;
use filibuster_common::{
    ACTION_CLOSED, ACTION_DIRECT, ACTION_ESTABLISHED, ACTION_HUNG_UP, ACTION_LOST, ACTION_OBSERVED,
    ACTION_OBSERVED_HTTP2, ACTION_REFUSED, ACTION_UNREACHABLE, ConnectEvent, ConnectKey,
};
use tracing::debug;

use super::{
    CallHandle, ConnectTarget, Connection, Session, State, applicable_faults, callee, is_local,
    mark_setup,
};
use crate::{
    ebpf::{Destination, KernelEvent, Speaks, kernel_instant},
    explore::{CallId, CallSite, Outcome, Protocol},
    sockdiag,
};

impl Session {
    /// Records what the kernel did on its own: the connects it refused
    /// (each the planned call), and the direct connects (each a call) and
    /// how they ended.
    pub(super) fn absorb_events(state: &mut State) {
        let Some(mut events) = state.events.take() else {
            return;
        };
        events.drain(&mut |event| match event {
            KernelEvent::Connect(event) => Self::absorb_connect(state, &event),
            KernelEvent::Head(head) => Self::absorb_head(state, &head),
            KernelEvent::Frame(frame) => Self::absorb_frame(state, &frame),
        });
        state.events = Some(events);
    }

    /// A connect the kernel refused or let through, or how a direct one
    /// ended.
    pub(super) fn absorb_connect(state: &mut State, event: &ConnectEvent) {
        match event.action {
            ACTION_REFUSED => Self::absorb_refusal(state, event),
            ACTION_DIRECT => Self::absorb_direct_connect(state, event),
            ACTION_OBSERVED => Self::absorb_observed_connect(state, event, Speaks::Http1),
            ACTION_OBSERVED_HTTP2 => Self::absorb_observed_connect(state, event, Speaks::Http2),
            ACTION_HUNG_UP | ACTION_CLOSED => Self::absorb_observed_end(state, event),
            ACTION_LOST => Self::lose(state, event.socket),
            ACTION_ESTABLISHED | ACTION_UNREACHABLE => {
                if let Some(call) = state.direct.remove(&event.socket) {
                    let outcome = if event.action == ACTION_ESTABLISHED {
                        Outcome::Connected
                    } else {
                        Outcome::ConnectionError
                    };
                    Self::record_outcome(state, call, outcome, kernel_instant(event.at_ns));
                }
            }
            _ => {}
        }
    }

    /// The parent of a call the kernel saw thread `tid` of `caller`, in
    /// `cell`, make by connecting (no request to read a trace from).
    pub(super) fn parent_of_connect(
        state: &State,
        cell: usize,
        caller: &str,
        on_its_own: bool,
        tid: u32,
    ) -> Option<CallId> {
        Self::parent(&state.cells[cell].serving, caller, None, on_its_own, || {
            Self::served_by_thread(&state.services, &*state.kernel, caller, Some(tid))
        })
    }

    fn absorb_refusal(state: &mut State, event: &ConnectEvent) {
        let Some((_, cell)) = state.caller(event.attempt.key.cgroup_id) else {
            return;
        };
        let Some(planned) = state.cells[cell].armed.get(&event.attempt).cloned() else {
            return;
        };
        let parent = Self::parent_of_connect(state, cell, &planned.site.caller, false, event.tid);
        if let Some(execution) = state.cells[cell].execution.as_mut() {
            let (id, _) = execution.begin_call(parent, planned.site, |_| Vec::new());
            execution.set_connect_ordinal(id, event.attempt.ordinal);
        }
    }

    fn absorb_direct_connect(state: &mut State, event: &ConnectEvent) {
        let Some((caller, cell)) = state.caller(event.attempt.key.cgroup_id) else {
            return;
        };
        let destination = Destination::from_kernel(&event.attempt.key.destination).0;
        let callee = callee(&state.services, destination, event.netns);
        debug!(%caller, %callee, "a direct connect");
        let site = CallSite {
            caller: caller.clone(),
            callee,
            protocol: Protocol::Tcp,
            method: String::new(),
            target: String::new(),
        };
        let own = &state.cells[cell];
        if own.execution.is_none() {
            if own.ran && !own.resetting {
                Self::called_on_its_own(&mut state.background, &site);
            }
            return;
        }
        let on_its_own = state.background.contains(&site);
        let parent = Self::parent_of_connect(state, cell, &caller, on_its_own, event.tid);
        if parent.is_none() {
            Self::called_on_its_own(&mut state.background, &site);
        }
        let number = state.next_connection();
        let Some(execution) = state.cells[cell].execution.as_mut() else {
            return;
        };
        // A fault planned on this call made the kernel send its caller's
        // connects there through the proxy, so none comes back here.
        let under_test = execution.under_test(parent);
        let (id, _) = execution.begin_call(parent, site, |site| {
            applicable_faults(&state.faults, site, true, under_test)
        });
        let test_in_setup = state.cells[cell].test_in_setup;
        let execution = state.cells[cell].execution.as_mut().expect("running");
        mark_setup(execution, &state.faults, id, under_test, test_in_setup);
        execution.set_connection(id, number);
        execution.set_connect_ordinal(id, event.attempt.ordinal);
        let index = execution.call(id).index.clone();
        let call = CallHandle {
            cell,
            execution: execution.number,
            id,
        };
        state.direct.insert(event.socket, call);
        state
            .connect_targets
            .entry(index)
            .or_insert_with(|| ConnectTarget {
                caller,
                destination,
                ordinal: event.attempt.ordinal,
            });
    }

    /// Events the kernel reported so far are taken into account: called
    /// periodically, so that the ring buffer never fills under load.
    pub fn absorb(&self) {
        Self::absorb_events(&mut self.lock());
    }

    /// Destroys the open connections of these callers to these
    /// destinations: the observed ones, then any other their processes
    /// hold (a pool's, to a destination connected to directly), each from
    /// inside its caller's namespace, as sock_diag only reaches its own.
    /// Returns how many it destroyed.
    pub(super) fn destroy_open(state: &mut State, pairs: &[ConnectKey]) -> usize {
        let mut destroyed = Self::destroy_observed(state, pairs);
        for pair in pairs {
            let Some(cgroup) = state.cgroup_paths.get(&pair.cgroup_id) else {
                continue;
            };
            let destination = Destination::from_kernel(&pair.destination).0;
            let pooled = sockdiag::destroy_pooled(cgroup, destination);
            if pooled > 0 {
                debug!(%destination, pooled, "destroyed pooled connections a fault needs");
            }
            destroyed += pooled;
        }
        destroyed
    }

    /// Connects from `connection`'s namespace to its destination, which
    /// speaks `speaks`, go there directly from now on; from every cell's
    /// namespace, for a local destination in one (the same service there).
    pub(super) fn connect_directly(state: &mut State, connection: &Connection, speaks: Speaks) {
        let own = connection.netns.cookie();
        let namespaces =
            if is_local(connection.destination.ip()) && state.cell_namespaces.contains(&own) {
                state.cell_namespaces.clone()
            } else {
                vec![own]
            };
        for netns in namespaces {
            let result = state
                .kernel
                .connect_directly(netns, connection.destination, speaks);
            if let Err(e) = result {
                debug!("{} stays proxied: {e:#}", connection.destination);
            }
        }
    }

    /// Connects to service `name` from any of `namespaces` go there
    /// directly: it was declared to speak an opaque protocol.
    pub fn declare_opaque(&self, name: &str, namespaces: &[u64]) -> Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        // One entry per cell's copy of the service.
        let copies = state.services.iter().filter(|s| s.name == name);
        for (service, &netns) in copies.flat_map(|s| namespaces.iter().map(move |n| (s, n))) {
            // A service's own namespace reaches it at its local addresses
            // too (a connect names one, not a range: the usual ones).
            let local = [
                IpAddr::from(Ipv4Addr::LOCALHOST),
                Ipv6Addr::LOCALHOST.into(),
                Ipv4Addr::UNSPECIFIED.into(),
                Ipv6Addr::UNSPECIFIED.into(),
            ];
            let own = (netns == service.netns).then_some(local);
            let addresses = service.addresses.iter().filter(|&&ip| !is_local(ip));
            for ip in own.into_iter().flatten().chain(addresses.copied()) {
                let destination = SocketAddr::new(ip, service.port);
                state
                    .kernel
                    .connect_directly(netns, destination, Speaks::Opaque)?;
            }
        }
        Ok(())
    }
}
