//! Calls: admitted from the proxy and the kernel's observations, tied to
//! their parents (attribution), finished with their outcomes, in the cell
//! whose execution they belong to.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use filibuster_common::ConnectAttempt;
// The per-call lookups (sockets, callers, in-flight requests) need speed,
// not SipHash's resistance to chosen keys.
use foldhash::{HashMap, HashSet};
use tracing::debug;

use super::{
    Admission, CallHandle, CallRequest, ConnectTarget, Connection, Enactment, InFlight,
    ServiceAddress, Session, State, callee, enact,
};
use crate::{
    config::TEST_CALLER,
    ebpf::{Destination, KernelMaps},
    explore::{CallId, CallSite, Execution, Fault, FaultSpace, Outcome},
    netns::NetNs,
};

/// The faults `site` could be failed with. The test's own calls are
/// watched, not failed: the test is what judges; so are calls made for
/// the test's setup (`under_test` false: a request outside `[test]
/// scope`, or made inside `filibuster.setup()`); and, unless asked for,
/// the calls a service makes outside every request of the test
/// (`under_test` `None`): when those happen depends on the clock.
pub(super) fn applicable_faults(
    faults: &FaultSpace,
    site: &CallSite,
    first_on_connection: bool,
    under_test: Option<bool>,
) -> Vec<Fault> {
    let failed = match under_test {
        _ if site.caller == TEST_CALLER => false,
        Some(under_test) => under_test,
        None => faults.fails_outside_requests(),
    };
    if failed {
        faults.faults_for(site, first_on_connection)
    } else {
        Vec::new()
    }
}

/// Marks call `id` as setup, not under test: the test's own call when
/// `[test] scope` leaves it out or the test said it is setting up
/// (`test_in_setup`), any other call when the test's request it serves is
/// setup.
pub(super) fn mark_setup(
    execution: &mut Execution,
    faults: &FaultSpace,
    id: CallId,
    under_test: Option<bool>,
    test_in_setup: bool,
) {
    let site = &execution.call(id).site;
    let setup = if site.caller == TEST_CALLER {
        test_in_setup || !faults.under_test(site)
    } else {
        under_test == Some(false)
    };
    if setup {
        execution.set_setup(id);
    }
}

/// The connection a call was made on, as admitting it needs it.
pub(super) struct CallConnection<'a> {
    pub(super) cell: usize,
    pub(super) caller: &'a str,
    pub(super) callee: &'a str,
    pub(super) destination: SocketAddr,
    pub(super) attempt: &'a ConnectAttempt,
    pub(super) number: u32,
}

impl<'a> From<&'a Connection> for CallConnection<'a> {
    fn from(connection: &'a Connection) -> Self {
        Self {
            cell: connection.cell,
            caller: &connection.caller,
            callee: &connection.callee,
            destination: connection.destination,
            attempt: &connection.attempt,
            number: connection.number,
        }
    }
}

impl Session {
    /// A connection arrived at the proxy's listener on `listener_port` in
    /// `netns` from `peer`: who made it, to where.
    pub fn accept(
        &self,
        netns: &Arc<NetNs>,
        listener_port: u16,
        peer: SocketAddr,
    ) -> Option<Connection> {
        let mut state = self.lock();
        // Refusals reported before this connect belong before its calls.
        Self::absorb_events(&mut state);
        let attempt = state.kernel.take_redirect(netns.cookie(), peer)?;
        let (caller, cell) = state.caller(attempt.key.cgroup_id)?;
        let destination = Destination::from_kernel(&attempt.key.destination).0;
        let callee = callee(&state.services, destination, netns.cookie());
        Some(Connection {
            cell,
            caller,
            callee,
            destination,
            peer,
            listener_port,
            netns: netns.clone(),
            attempt,
            number: state.next_connection(),
        })
    }

    /// The request `caller` is serving that a call it makes belongs to:
    /// the one of the same trace, when the call carries a trace id its
    /// caller propagated; else the one the calling thread is serving, when
    /// the kernel saw that thread read it (`upstream_port`); otherwise the
    /// most recent still in flight, unless the call is of a site the
    /// service also calls on its own (`background`): that one is a
    /// request's only on evidence.
    pub(super) fn parent(
        serving: &HashMap<String, Vec<InFlight>>,
        caller: &str,
        trace: Option<&str>,
        background: bool,
        upstream_port: impl FnOnce() -> Option<u16>,
    ) -> Option<CallId> {
        let in_flight = serving.get(caller)?;
        let same_trace = trace.and_then(|trace| {
            in_flight
                .iter()
                .rev()
                .find(|call| call.trace.as_deref() == Some(trace))
        });
        // Asking the kernel only pays when there is a choice to make.
        let same_thread = || {
            let port = upstream_port()?;
            in_flight
                .iter()
                .rev()
                .find(|call| call.upstream_port.get() == Some(port))
        };
        let evidence = same_trace.or_else(|| {
            (background || in_flight.len() > 1)
                .then(same_thread)
                .flatten()
        });
        if background {
            evidence
        } else {
            evidence.or(in_flight.last())
        }
        .map(|call| call.id)
    }

    /// A service called `site` outside every request of the test (while
    /// its cell ran no execution, or serving nothing): on its own, as it
    /// may again while it serves one.
    pub(super) fn called_on_its_own(background: &mut HashSet<CallSite>, site: &CallSite) {
        if site.caller != TEST_CALLER && !background.contains(site) {
            debug!(%site, "a call a service makes on its own");
            background.insert(site.clone());
        }
    }

    /// The agent's port on the inbound connection whose request thread
    /// `tid` of service `caller` last read (on the service's port).
    pub(super) fn served_by_thread(
        services: &[ServiceAddress],
        kernel: &dyn KernelMaps,
        caller: &str,
        tid: Option<u32>,
    ) -> Option<u16> {
        let port = services.iter().find(|s| s.name == caller)?.port;
        kernel.last_read_peer(tid?, port)
    }

    /// A request on `connection`: records the call and says which fault,
    /// if any, to inject. One trip to the session, as is the call's end
    /// (see [`Session::carry`]).
    pub fn admit(&self, connection: &Connection, request: &CallRequest) -> Admission {
        let mut state = self.lock();
        if let Some(speaks) = request.learned {
            Self::connect_directly(&mut state, connection, speaks);
        }
        Self::absorb_events(&mut state);
        Self::admit_call(&mut state, &connection.into(), request, |kernel| {
            kernel.sender(connection.peer.port(), connection.listener_port)
        })
    }

    /// Records a request on connection `on` as a call; `sender` names the
    /// thread that sent it, asked only when the parent is in doubt.
    pub(super) fn admit_call(
        state: &mut State,
        on: &CallConnection,
        request: &CallRequest,
        sender: impl FnOnce(&dyn KernelMaps) -> Option<u32>,
    ) -> Admission {
        let State {
            cells,
            services,
            kernel,
            faults,
            connect_targets,
            background,
            ..
        } = state;
        let cell = &mut cells[on.cell];
        let site = CallSite {
            caller: on.caller.to_string(),
            callee: on.callee.to_string(),
            protocol: request.protocol,
            method: request.method.into(),
            target: request.target.into(),
        };
        let Some(execution) = cell.execution.as_mut() else {
            if cell.ran && !cell.resetting {
                Self::called_on_its_own(background, &site);
            }
            return Admission {
                call: None,
                enactment: Enactment::Forward,
            };
        };
        let on_its_own = background.contains(&site);
        let parent = Self::parent(&cell.serving, on.caller, request.trace, on_its_own, || {
            Self::served_by_thread(services, &**kernel, on.caller, sender(&**kernel))
        });
        if parent.is_none() {
            Self::called_on_its_own(background, &site);
        }
        let under_test = execution.under_test(parent);
        let (id, fault) = execution.begin_call(parent, site, |site| {
            applicable_faults(faults, site, request.first_on_connection, under_test)
        });
        mark_setup(execution, faults, id, under_test, cell.test_in_setup);
        execution.set_connection(id, on.number);
        let fault = fault.map(|planned| {
            let enacted = enact::enacted(planned.clone(), request.protocol);
            if enacted != planned {
                // The kernel did not refuse this call's connect (it came
                // on a pooled connection): disarm the refusal so that the
                // caller's reconnect goes through.
                let index = &execution.call(id).index;
                let armed = cell.armed.iter().find(|(_, p)| p.index == *index);
                if let Some((&attempt, _)) = armed {
                    cell.armed.remove(&attempt);
                    kernel.disarm(&attempt);
                }
                execution.enacted_as(id, enacted.clone());
            }
            enacted
        });
        // Where the call goes, for an execution that plans a fault on it
        // to send its caller's connects there through the proxy (and end
        // the connections that would carry it past the fault); for a call
        // that opened its connection, which connect a refusal targets.
        // Ordinal 0 (none) until the call is seen opening one.
        let ordinal = if request.first_on_connection {
            execution.set_connect_ordinal(id, on.attempt.ordinal);
            on.attempt.ordinal
        } else {
            0
        };
        let index = &execution.call(id).index;
        match connect_targets.get_mut(index) {
            Some(target) if target.ordinal == 0 => target.ordinal = ordinal,
            Some(_) => {}
            None => {
                connect_targets.insert(
                    index.clone(),
                    ConnectTarget {
                        caller: on.caller.to_string(),
                        destination: on.destination,
                        ordinal,
                    },
                );
            }
        }
        if fault.as_ref().is_none_or(Fault::reaches_callee) {
            let in_flight = InFlight {
                id,
                trace: request.trace.map(str::to_string),
                upstream_port: request.upstream_port.clone(),
            };
            // Looked up before inserting: the callee's name is allocated
            // once, not per call.
            match cell.serving.get_mut(on.callee) {
                Some(serving) => serving.push(in_flight),
                None => {
                    cell.serving.insert(on.callee.to_string(), vec![in_flight]);
                }
            }
        }
        Admission {
            call: Some(CallHandle {
                cell: on.cell,
                execution: execution.number,
                id,
            }),
            enactment: Enactment::of(fault.as_ref()),
        }
    }

    /// Records how `call` ended; its callee no longer serves it.
    pub(super) fn finish(state: &mut State, call: CallHandle, outcome: Outcome) {
        Self::finish_at(state, call, outcome, Instant::now());
    }

    /// As [`Session::finish`], at `at`.
    pub(super) fn finish_at(state: &mut State, call: CallHandle, outcome: Outcome, at: Instant) {
        let Some(site) = Self::record_outcome(state, call, outcome, at) else {
            return;
        };
        if let Some(serving) = state
            .cell_running(call)
            .and_then(|cell| cell.serving.get_mut(site.callee.as_str()))
        {
            serving.retain(|in_flight| in_flight.id != call.id);
        }
    }

    /// Records `outcome` for `call`, ended at `at`, if its cell still runs
    /// its execution; returns its callee if it did.
    pub(super) fn record_outcome(
        state: &mut State,
        call: CallHandle,
        outcome: Outcome,
        at: Instant,
    ) -> Option<Arc<CallSite>> {
        let cell = state.cells.get_mut(call.cell)?;
        let execution = cell
            .execution
            .as_mut()
            .filter(|e| e.number == call.execution)?;
        let site = execution.call(call.id).site.clone();
        state.faults.observe(&site.callee, &outcome);
        execution.end_call_at(call.id, outcome, at);
        Some(site)
    }
}
