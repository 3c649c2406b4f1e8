//! One run's live state, shared by the proxy, the control API and the
//! runner: the kernel's maps, the execution in progress, who is serving
//! which request. Everything per run lives in this one value (no globals),
//! so several runs can one day share a host as cells.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::Result;
use filibuster_common::{
    ACTION_CLOSED, ACTION_DIRECT, ACTION_ESTABLISHED, ACTION_HUNG_UP, ACTION_OBSERVED,
    ACTION_REFUSED, ACTION_UNREACHABLE, ConnectAttempt, ConnectEvent, ConnectKey,
};
// The per-call lookups (sockets, callers, in-flight requests) need speed,
// not SipHash's resistance to chosen keys.
use foldhash::{HashMap, HashMapExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{
    config::TEST_CALLER,
    ebpf::{Destination, Events, Head, Kernel, KernelEvent, Speaks, kernel_instant},
    explore::{
        CallId, CallSite, Execution, ExecutionIndex, Fault, FaultSpace, Outcome, PlannedFault,
        Protocol,
    },
    netns::NetNs,
    observe::{Seen, Tracker},
    sockdiag,
};

/// A connection the kernel redirected to the agent.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The cell of the caller.
    pub cell: usize,
    pub caller: String,
    pub callee: String,
    pub destination: SocketAddr,
    /// The caller's socket, as the agent's listener sees it.
    pub peer: SocketAddr,
    /// The port of the agent's listener it arrived at.
    pub listener_port: u16,
    /// The caller's network namespace, where its upstream connection is
    /// made.
    pub netns: Arc<NetNs>,
    pub attempt: ConnectAttempt,
    /// Numbers the run's connections from 1: calls with the same number
    /// shared a connection.
    pub number: u32,
}

/// Where a service listens: how the callee of a connect is named.
#[derive(Clone, Debug)]
pub struct ServiceAddress {
    pub name: String,
    pub port: u16,
    /// Cookie of its network namespace.
    pub netns: u64,
    /// Its namespace's interface addresses.
    pub addresses: Vec<IpAddr>,
}

/// Fails if two services claim one port in one network namespace: calls to
/// it could not be told apart.
pub fn check_unique_ports(services: &[ServiceAddress]) -> Result<()> {
    for (i, service) in services.iter().enumerate() {
        if let Some(other) = services[..i]
            .iter()
            .find(|s| s.port == service.port && s.netns == service.netns)
        {
            anyhow::bail!(
                "[services.{}] and [services.{}] both claim port {} in one network namespace: fix one of their ports",
                other.name,
                service.name,
                service.port
            );
        }
    }
    Ok(())
}

/// Whether a connect to `ip` stays in the caller's own network namespace
/// whatever its interfaces: loopback (all of 127.0.0.0/8, `::1`) and the
/// unspecified address (`0.0.0.0`, `::`, which Linux routes to the local
/// host; Flask prints it at start, so people call their peers there), in
/// IPv4-mapped form too.
fn is_local(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// The service a caller in namespace `caller_netns` reaches at
/// `destination`: a local address (`is_local`) reaches the caller's own
/// namespace; any other address the namespace that has it, the caller's
/// own first (isolated namespaces may reuse addresses). Calls elsewhere
/// are named by address.
fn callee_name(
    services: &[ServiceAddress],
    destination: SocketAddr,
    caller_netns: u64,
) -> Option<&str> {
    let ip = destination.ip().to_canonical();
    services
        .iter()
        .filter(|s| s.port == destination.port())
        .filter(|s| {
            if is_local(ip) {
                s.netns == caller_netns
            } else {
                s.addresses.contains(&ip)
            }
        })
        .min_by_key(|s| s.netns != caller_netns)
        .map(|s| s.name.as_str())
}

/// How a call to `destination` from namespace `caller_netns` names its
/// callee: the service's name, else the address.
fn callee(services: &[ServiceAddress], destination: SocketAddr, caller_netns: u64) -> String {
    callee_name(services, destination, caller_netns)
        .map_or_else(|| destination.to_string(), str::to_string)
}

/// The faults `site` could be failed with. The test's own calls are
/// watched, not failed: the test is what judges.
fn applicable_faults(
    faults: &FaultSpace,
    site: &CallSite,
    first_on_connection: bool,
) -> Vec<Fault> {
    if site.caller == TEST_CALLER {
        Vec::new()
    } else {
        faults.faults_for(site, first_on_connection)
    }
}

/// Which connect a refusal targets, in terms that survive a restart
/// (service names, not cgroup ids): written into counterexamples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectTarget {
    pub caller: String,
    pub destination: SocketAddr,
    pub ordinal: u32,
}

/// What the proxy read of a request before admitting it as a call.
#[derive(Debug)]
pub struct CallRequest<'a> {
    pub protocol: Protocol,
    pub method: &'a str,
    pub target: &'a str,
    /// The W3C trace id of its `traceparent` header, if it has one.
    pub trace: Option<&'a str>,
    pub first_on_connection: bool,
    /// The agent's port on the upstream connection that will carry it, if
    /// that connection is already open.
    pub upstream_port: Option<u16>,
}

/// The connection a call was made on, as admitting it needs it.
struct CallConnection<'a> {
    cell: usize,
    caller: &'a str,
    callee: &'a str,
    destination: SocketAddr,
    attempt: &'a ConnectAttempt,
    number: u32,
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

/// A direct HTTP/1.1 connection whose caller socket the kernel observes.
struct Observed {
    caller: String,
    callee: String,
    destination: SocketAddr,
    /// Cookie of the caller's network namespace.
    netns: u64,
    attempt: ConnectAttempt,
    number: u32,
    /// The caller socket's own address, once a head showed it.
    local: Option<SocketAddr>,
    tracker: Tracker,
    used: bool,
    /// The call awaiting its response.
    pending: Option<CallHandle>,
    cell: usize,
}

/// A call admitted in a cell's execution: how the proxy names it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallHandle {
    pub cell: usize,
    pub execution: usize,
    pub id: CallId,
}

/// A request the proxy is about to handle, and what to do with it.
#[derive(Debug)]
pub struct Admission {
    /// `None` when no execution is running in the caller's cell.
    pub call: Option<CallHandle>,
    pub fault: Option<Fault>,
}

/// What one cell owns while it runs an execution: the execution's calls,
/// who is serving which of them, the refusals armed for it, its holds.
/// Everything else in [`State`] is the host's, shared by the cells.
#[derive(Default)]
struct CellState {
    execution: Option<Execution>,
    /// Calls being served, per service: the parents of its outgoing calls.
    serving: HashMap<String, Vec<InFlight>>,
    /// Refusals armed in the kernel for the current execution.
    armed: HashMap<ConnectAttempt, PlannedFault>,
    /// This cell's cgroup of each caller, by name.
    caller_cgroups: HashMap<String, u64>,
    held: Duration,
    holding: usize,
}

struct State {
    kernel: Kernel,
    /// The kernel's events; out of the state while they are taken in.
    events: Option<Events>,
    cells: Vec<CellState>,
    /// Managed cgroup id → caller name and cell.
    callers: HashMap<u64, (String, usize)>,
    /// The namespaces of the cells' copies of the launched services: a
    /// local destination learned in one is the same service in each.
    cell_namespaces: Vec<u64>,
    services: Vec<ServiceAddress>,
    faults: FaultSpace,
    /// Where each call that opened a connection did so, learned when the
    /// call was first seen: what a refusal of that call must target.
    connect_targets: HashMap<ExecutionIndex, ConnectTarget>,
    /// Calls made by direct connects not yet answered, by socket cookie.
    direct: HashMap<u64, CallHandle>,
    /// Open observed HTTP/1.1 connections, by caller socket cookie.
    observed: HashMap<u64, Observed>,
    /// The callers' network namespaces, by cookie.
    namespaces: HashMap<u64, Arc<NetNs>>,
    connections: u32,
    observed_calls: u64,
}

impl State {
    /// Numbers a new connection (proxied, direct or observed).
    fn next_connection(&mut self) -> u32 {
        self.connections += 1;
        self.connections
    }

    /// The caller with managed cgroup `cgroup_id`: its name and cell.
    fn caller(&self, cgroup_id: u64) -> Option<(String, usize)> {
        self.callers.get(&cgroup_id).cloned()
    }

    /// The cell of `call`, if it is still running `call`'s execution.
    fn cell_running(&mut self, call: CallHandle) -> Option<&mut CellState> {
        self.cells.get_mut(call.cell).filter(|cell| {
            cell.execution
                .as_ref()
                .is_some_and(|e| e.number == call.execution)
        })
    }
}

/// See [`Session::forwarding`].
pub struct Forwarding<'a> {
    session: &'a Session,
    call: Option<CallHandle>,
}

impl Forwarding<'_> {
    /// The forwarded call came back (its outcome is recorded elsewhere).
    pub fn done(mut self) {
        self.call = None;
    }
}

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call {
            let mut state = self.session.lock();
            Session::finish(&mut state, call, Outcome::Abandoned);
        }
    }
}

/// A call a service is serving.
struct InFlight {
    id: CallId,
    /// Its W3C trace id, if it carried one.
    trace: Option<String>,
    /// The agent's port on the connection that carries it to the service:
    /// what the service's thread serving it last read from.
    upstream_port: Option<u16>,
}

pub struct Session {
    state: Mutex<State>,
    /// The numbers of the executions the cells are running. A held call
    /// waits until its own is no longer among them.
    running: watch::Sender<Vec<usize>>,
}

impl Session {
    pub fn new(
        kernel: Kernel,
        events: Events,
        services: Vec<ServiceAddress>,
        faults: FaultSpace,
        namespaces: &[Arc<NetNs>],
        cell_namespaces: Vec<u64>,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                kernel,
                events: Some(events),
                cells: cell_namespaces
                    .iter()
                    .map(|_| CellState::default())
                    .collect(),
                callers: HashMap::new(),
                cell_namespaces,
                services,
                faults,
                connect_targets: HashMap::new(),
                direct: HashMap::new(),
                observed: HashMap::new(),
                namespaces: namespaces.iter().map(|n| (n.cookie(), n.clone())).collect(),
                connections: 0,
                observed_calls: 0,
            }),
            running: watch::channel(Vec::new()).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `name`, in `cell`, runs in managed cgroup `cgroup_id`.
    pub fn add_caller(&self, cell: usize, cgroup_id: u64, name: &str) {
        let mut state = self.lock();
        state.callers.insert(cgroup_id, (name.to_string(), cell));
        state.cells[cell]
            .caller_cgroups
            .insert(name.to_string(), cgroup_id);
    }

    pub fn learn_connect_targets(
        &self,
        targets: impl IntoIterator<Item = (ExecutionIndex, ConnectTarget)>,
    ) {
        self.lock().connect_targets.extend(targets);
    }

    pub fn connect_target(&self, index: &ExecutionIndex) -> Option<ConnectTarget> {
        self.lock().connect_targets.get(index).cloned()
    }

    /// Makes `execution` current and arms the kernel for it: its refusals,
    /// and the proxy for every connection a planned fault needs (one that
    /// would otherwise go directly). Open observed connections of those
    /// callers to those destinations are destroyed, so that a pooled one
    /// cannot carry a call the fault must reach; their callers reconnect.
    pub fn begin(&self, cell: usize, execution: Execution) -> Result<()> {
        let number = execution.number;
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        let state = &mut *state;
        let own = &mut state.cells[cell];
        own.armed.clear();
        own.serving.clear();
        let mut proxied = Vec::new();
        for planned in execution.plan().faults() {
            let Some(target) = state.connect_targets.get(&planned.index) else {
                continue;
            };
            let Some(&cgroup_id) = own.caller_cgroups.get(&target.caller) else {
                continue;
            };
            let key = ConnectKey {
                cgroup_id,
                destination: Destination(target.destination).to_kernel(),
                _pad: 0,
            };
            proxied.push(key);
            if planned.fault == Fault::ConnectionRefused {
                let attempt = ConnectAttempt {
                    key,
                    ordinal: target.ordinal,
                    _pad: 0,
                };
                own.armed.insert(attempt, planned.clone());
            }
        }
        let armed: Vec<ConnectAttempt> = own.armed.keys().copied().collect();
        let cgroups: Vec<u64> = own.caller_cgroups.values().copied().collect();
        state.kernel.begin_execution(&cgroups, &armed, &proxied)?;
        Self::destroy_observed(state, &proxied);
        state.cells[cell].execution = Some(execution);
        self.running.send_modify(|running| running.push(number));
        Ok(())
    }

    /// Ends `cell`'s execution, releasing every call held in it.
    pub fn end(&self, cell: usize) -> Option<Execution> {
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        let execution = state.cells[cell].execution.take();
        if let Some(execution) = &execution {
            self.running
                .send_modify(|running| running.retain(|&n| n != execution.number));
        }
        execution
    }

    /// Records what the kernel did on its own: the connects it refused
    /// (each the planned call), and the direct connects (each a call) and
    /// how they ended.
    fn absorb_events(state: &mut State) {
        let Some(mut events) = state.events.take() else {
            return;
        };
        events.drain(|event| match event {
            KernelEvent::Connect(event) => Self::absorb_connect(state, &event),
            KernelEvent::Head(head) => Self::absorb_head(state, &head),
        });
        state.events = Some(events);
    }

    /// A connect the kernel refused or let through, or how a direct one
    /// ended.
    fn absorb_connect(state: &mut State, event: &ConnectEvent) {
        match event.action {
            ACTION_REFUSED => Self::absorb_refusal(state, event),
            ACTION_DIRECT => Self::absorb_direct_connect(state, event),
            ACTION_OBSERVED => Self::absorb_observed_connect(state, event),
            // Closed with a request unanswered: by the caller first (it
            // gave up: a late answer is not its outcome), or by the callee
            // or the network.
            ACTION_HUNG_UP | ACTION_CLOSED => {
                if let Some(observed) = state.observed.remove(&event.socket)
                    && let Some(call) = observed.pending
                {
                    let outcome = if event.action == ACTION_HUNG_UP {
                        Outcome::Abandoned
                    } else {
                        Outcome::ConnectionError
                    };
                    let at = kernel_instant(event.at_ns);
                    Self::finish_at(state, call, outcome, at);
                }
            }
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
    fn parent_of_connect(state: &State, cell: usize, caller: &str, tid: u32) -> Option<CallId> {
        Self::parent(&state.cells[cell].serving, caller, None, || {
            Self::served_by_thread(&state.services, &state.kernel, caller, Some(tid))
        })
    }

    fn absorb_refusal(state: &mut State, event: &ConnectEvent) {
        let Some((_, cell)) = state.caller(event.attempt.key.cgroup_id) else {
            return;
        };
        let Some(planned) = state.cells[cell].armed.get(&event.attempt).cloned() else {
            return;
        };
        let parent = Self::parent_of_connect(state, cell, &planned.site.caller, event.tid);
        if let Some(execution) = state.cells[cell].execution.as_mut() {
            execution.begin_call(parent, planned.site, |_| Vec::new());
        }
    }

    fn absorb_direct_connect(state: &mut State, event: &ConnectEvent) {
        let Some((caller, cell)) = state.caller(event.attempt.key.cgroup_id) else {
            return;
        };
        let destination = Destination::from_kernel(&event.attempt.key.destination).0;
        let callee = callee(&state.services, destination, event.netns);
        let parent = Self::parent_of_connect(state, cell, &caller, event.tid);
        debug!(%caller, %callee, "a direct connect");
        let number = state.next_connection();
        let Some(execution) = state.cells[cell].execution.as_mut() else {
            return;
        };
        let site = CallSite {
            caller: caller.clone(),
            callee: callee.clone(),
            protocol: Protocol::Tcp,
            method: String::new(),
            target: String::new(),
        };
        // A fault planned on this call made the kernel send its caller's
        // connects there through the proxy, so none comes back here.
        let (id, _) = execution.begin_call(parent, site, |site| {
            applicable_faults(&state.faults, site, true)
        });
        execution.set_connection(id, number);
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

    /// A connect the kernel let through to a destination that speaks
    /// HTTP/1.1: a connection, whose requests are the calls.
    fn absorb_observed_connect(state: &mut State, event: &ConnectEvent) {
        let Some((caller, cell)) = state.caller(event.attempt.key.cgroup_id) else {
            return;
        };
        let destination = Destination::from_kernel(&event.attempt.key.destination).0;
        let observed = Observed {
            callee: callee(&state.services, destination, event.netns),
            caller,
            destination,
            netns: event.netns,
            attempt: event.attempt,
            number: state.next_connection(),
            local: None,
            tracker: Tracker::default(),
            used: false,
            pending: None,
            cell,
        };
        state.observed.insert(event.socket, observed);
    }

    /// The head of a segment on an observed connection: a request is
    /// admitted as a proxied one would be; a response ends its call.
    fn absorb_head(state: &mut State, head: &Head<'_>) {
        // Out of the map while its call is admitted, which needs the state.
        let Some(mut observed) = state.observed.remove(&head.socket) else {
            return;
        };
        observed.local.get_or_insert(head.local);
        match observed.tracker.segment(head.egress, head.seq, head.bytes) {
            Some(Seen::Request {
                method,
                target,
                trace,
            }) => {
                let request = CallRequest {
                    protocol: Protocol::Http,
                    method,
                    target,
                    trace,
                    first_on_connection: !std::mem::replace(&mut observed.used, true),
                    // The callee's thread serving it reads from the
                    // caller's own socket.
                    upstream_port: Some(head.local.port()),
                };
                let admission =
                    Self::admit_call(state, &(&observed).into(), &request, |_| Some(head.tid));
                state.observed_calls += u64::from(admission.call.is_some());
                if admission.fault.is_some() {
                    let (caller, callee) = (&observed.caller, &observed.callee);
                    warn!(%caller, %callee, %method, %target, "a call planned to fail went directly and was not failed");
                }
                observed.pending = admission.call;
            }
            Some(Seen::Response(status)) => {
                if let Some(call) = observed.pending.take() {
                    Self::finish(state, call, Outcome::Status(status));
                }
            }
            None => {}
        }
        state.observed.insert(head.socket, observed);
    }

    /// Destroys the open observed connections of these callers to these
    /// destinations (each from inside its caller's namespace, as sock_diag
    /// only reaches its own).
    fn destroy_observed(state: &mut State, pairs: &[ConnectKey]) {
        let doomed: Vec<u64> = state
            .observed
            .iter()
            .filter(|(_, observed)| pairs.contains(&observed.attempt.key))
            .map(|(&cookie, _)| cookie)
            .collect();
        for cookie in doomed {
            let Some(observed) = state.observed.remove(&cookie) else {
                continue;
            };
            let (Some(local), Some(netns)) =
                (observed.local, state.namespaces.get(&observed.netns))
            else {
                continue;
            };
            let remote = observed.destination;
            match netns.enter(|| sockdiag::destroy(local, remote, cookie)) {
                Ok(()) => debug!(%local, %remote, "destroyed an observed connection a fault needs"),
                // Closed since: its close event is on its way.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(%local, %remote, "cannot destroy an observed connection a planned fault needs: {e}")
                }
            }
        }
    }

    /// Connects from `connection`'s namespace to its destination, which
    /// speaks `speaks`, go there directly from now on; from every cell's
    /// namespace, for a local destination in one (the same service there).
    pub fn connect_directly(&self, connection: &Connection, speaks: Speaks) {
        let mut state = self.lock();
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
    /// most recent still in flight.
    fn parent(
        serving: &HashMap<String, Vec<InFlight>>,
        caller: &str,
        trace: Option<&str>,
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
                .find(|call| call.upstream_port == Some(port))
        };
        same_trace
            .or_else(|| (in_flight.len() > 1).then(same_thread).flatten())
            .or(in_flight.last())
            .map(|call| call.id)
    }

    /// The agent's port on the inbound connection whose request thread
    /// `tid` of service `caller` last read (on the service's port).
    fn served_by_thread(
        services: &[ServiceAddress],
        kernel: &Kernel,
        caller: &str,
        tid: Option<u32>,
    ) -> Option<u16> {
        let port = services.iter().find(|s| s.name == caller)?.port;
        kernel.last_read_peer(tid?, port)
    }

    /// The call `call` is carried to its callee on the agent's connection
    /// from local `port`, opened after the call was admitted.
    pub fn set_upstream_port(&self, call: CallHandle, port: u16) {
        let mut state = self.lock();
        let Some(cell) = state.cell_running(call) else {
            return;
        };
        let CellState {
            execution, serving, ..
        } = cell;
        let callee = &execution
            .as_ref()
            .expect("running")
            .call(call.id)
            .site
            .callee;
        if let Some(in_flight) = serving
            .get_mut(callee.as_str())
            .and_then(|calls| calls.iter_mut().find(|c| c.id == call.id))
        {
            in_flight.upstream_port = Some(port);
        }
    }

    /// A request on `connection`: records the call and says which fault,
    /// if any, to inject.
    pub fn admit(&self, connection: &Connection, request: &CallRequest) -> Admission {
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        Self::admit_call(&mut state, &connection.into(), request, |kernel| {
            kernel.sender(connection.peer.port(), connection.listener_port)
        })
    }

    /// Records a request on connection `on` as a call; `sender` names the
    /// thread that sent it, asked only when the parent is in doubt.
    fn admit_call(
        state: &mut State,
        on: &CallConnection,
        request: &CallRequest,
        sender: impl FnOnce(&Kernel) -> Option<u32>,
    ) -> Admission {
        let State {
            cells,
            services,
            kernel,
            faults,
            connect_targets,
            ..
        } = state;
        let cell = &mut cells[on.cell];
        let Some(execution) = cell.execution.as_mut() else {
            return Admission {
                call: None,
                fault: None,
            };
        };
        let site = CallSite {
            caller: on.caller.to_string(),
            callee: on.callee.to_string(),
            protocol: request.protocol,
            method: request.method.into(),
            target: request.target.into(),
        };
        let parent = Self::parent(&cell.serving, on.caller, request.trace, || {
            Self::served_by_thread(services, kernel, on.caller, sender(kernel))
        });
        let (id, fault) = execution.begin_call(parent, site, |site| {
            applicable_faults(faults, site, request.first_on_connection)
        });
        execution.set_connection(id, on.number);
        let fault = match fault {
            // Planned when the call opened its connection, but this time it
            // reused a pooled one: reset that instead, and disarm the
            // kernel so the caller's reconnect goes through.
            Some(Fault::ConnectionRefused) if !request.first_on_connection => {
                let index = &execution.call(id).index;
                let armed = cell.armed.iter().find(|(_, p)| p.index == *index);
                if let Some((&attempt, _)) = armed {
                    cell.armed.remove(&attempt);
                    kernel.disarm(&attempt);
                }
                let enacted = Fault::connection_error(request.protocol, false);
                execution.enacted_as(id, enacted.clone());
                Some(enacted)
            }
            fault => fault,
        };
        if request.first_on_connection {
            let index = execution.call(id).index.clone();
            connect_targets
                .entry(index)
                .or_insert_with(|| ConnectTarget {
                    caller: on.caller.to_string(),
                    destination: on.destination,
                    ordinal: on.attempt.ordinal,
                });
        }
        if fault.is_none() {
            let in_flight = InFlight {
                id,
                trace: request.trace.map(str::to_string),
                upstream_port: request.upstream_port,
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
            fault,
        }
    }

    /// The call admitted as `call` ended with `outcome`.
    pub fn finish_call(&self, call: CallHandle, outcome: Outcome) {
        let mut state = self.lock();
        // A refusal the callee met while serving this call was reported
        // before the callee could answer: record it while its parent is
        // still being served.
        Self::absorb_events(&mut state);
        Self::finish(&mut state, call, outcome);
    }

    /// Records how `call` ended; its callee no longer serves it.
    fn finish(state: &mut State, call: CallHandle, outcome: Outcome) {
        Self::finish_at(state, call, outcome, Instant::now());
    }

    /// As [`Session::finish`], at `at`.
    fn finish_at(state: &mut State, call: CallHandle, outcome: Outcome, at: Instant) {
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

    /// A call already finished ended differently than its caller first
    /// saw: a gRPC call's status comes in the trailers after its headers.
    pub fn amend_outcome(&self, call: CallHandle, outcome: Outcome) {
        Self::record_outcome(&mut self.lock(), call, outcome, Instant::now());
    }

    /// Records `outcome` for `call`, ended at `at`, if its cell still runs
    /// its execution; returns its callee if it did.
    fn record_outcome(
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

    /// Holds `call` until the execution it belongs to ends, or until its
    /// caller hangs up, which drops this future and ends the call then.
    pub async fn hold(&self, call: CallHandle) {
        struct Accounting<'a> {
            session: &'a Session,
            since: Instant,
            call: CallHandle,
        }
        impl Drop for Accounting<'_> {
            fn drop(&mut self) {
                let mut state = self.session.lock();
                let cell = &mut state.cells[self.call.cell];
                cell.holding -= 1;
                cell.held += self.since.elapsed();
                // After the execution ended, this records nothing: the
                // call was held to the end, never given up on.
                let outcome = Outcome::Abandoned;
                Session::record_outcome(&mut state, self.call, outcome, Instant::now());
            }
        }
        self.lock().cells[call.cell].holding += 1;
        let _accounting = Accounting {
            session: self,
            since: Instant::now(),
            call,
        };
        let mut running = self.running.subscribe();
        let _ = running
            .wait_for(|running| !running.contains(&call.execution))
            .await;
    }

    /// A call forwarded to its callee, ended as abandoned if it is dropped
    /// before [`Forwarding::done`]: its caller hung up while it waited.
    pub fn forwarding(&self, call: CallHandle) -> Forwarding<'_> {
        Forwarding {
            session: self,
            call: Some(call),
        }
    }

    /// Calls read off observed connections so far.
    pub fn observed_calls(&self) -> u64 {
        self.lock().observed_calls
    }

    /// Calls held right now in `cell`, and the time it spent holding
    /// calls so far.
    pub fn holds(&self, cell: usize) -> (usize, Duration) {
        let state = self.lock();
        (state.cells[cell].holding, state.cells[cell].held)
    }

    /// Whether a fault was injected so far in `cell`'s execution (on a
    /// call to `callee`, if given).
    pub fn fault_injected(&self, cell: usize, callee: Option<&str>) -> bool {
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        state.cells[cell]
            .execution
            .as_ref()
            .is_some_and(|execution| {
                execution.calls().iter().any(|c| {
                    c.injected.is_some() && callee.is_none_or(|name| c.site.callee == name)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callees_are_named_by_namespace_and_address() {
        let service = |name: &str, port, netns, addresses: &[&str]| ServiceAddress {
            name: name.into(),
            port,
            netns,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let services = [
            service("host-app", 5000, 1, &["127.0.0.1", "10.9.0.1"]),
            service("foo", 8080, 2, &["127.0.0.1", "10.9.0.2"]),
            service("bar", 8080, 3, &["127.0.0.1", "10.9.0.3"]),
        ];
        let name = |destination: &str, caller_netns| {
            callee_name(&services, destination.parse().unwrap(), caller_netns)
        };
        // Loopback stays in the caller's namespace.
        assert_eq!(name("127.0.0.1:5000", 1), Some("host-app"));
        // So do the rest of 127/8, the unspecified addresses and the
        // IPv4-mapped forms of all of them.
        for local in [
            "127.0.0.2:5000",
            "0.0.0.0:5000",
            "[::]:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
            "[::ffff:0.0.0.0]:5000",
        ] {
            assert_eq!(name(local, 1), Some("host-app"), "{local}");
            assert_eq!(name(local, 2), None, "{local}");
        }
        // The caller's own interface address, mapped or not.
        assert_eq!(name("[::ffff:10.9.0.1]:5000", 1), Some("host-app"));
        assert_eq!(name("127.0.0.1:8080", 3), Some("bar"));
        assert_eq!(name("127.0.0.1:5000", 2), None);
        // Other addresses belong to the namespace that has them.
        assert_eq!(name("10.9.0.3:8080", 2), Some("bar"));
        assert_eq!(name("10.9.0.1:5000", 3), Some("host-app"));
        assert_eq!(name("10.9.0.3:5000", 1), None);
        assert_eq!(name("192.0.2.7:8080", 1), None);
        // Namespaces that reuse an address: the caller's own comes first.
        let reused = [
            service("foo", 8080, 2, &["10.9.0.9"]),
            service("bar", 8080, 3, &["10.9.0.9"]),
        ];
        let destination = "10.9.0.9:8080".parse().unwrap();
        assert_eq!(callee_name(&reused, destination, 3), Some("bar"));
        assert_eq!(callee_name(&reused, destination, 2), Some("foo"));

        assert!(check_unique_ports(&services).is_ok());
        let clash = [services[1].clone(), service("baz", 8080, 2, &[])];
        let err = check_unique_ports(&clash).unwrap_err().to_string();
        assert!(
            err.contains("[services.foo] and [services.baz] both claim port 8080"),
            "{err}"
        );
    }
}
