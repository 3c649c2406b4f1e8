//! One run's live state, shared by the proxy, the control API and the
//! runner. [`State`] holds what is the host's (the kernel's maps, the
//! callers, the services, what was learned about destinations and
//! connects); each [`CellState`] one cell's execution (its calls, who is
//! serving which, its armed refusals, its holds). A cell's boundary is a
//! message: `begin(cell, execution)` in, `end(cell)` out.

mod call;
mod calls;
mod carrying;
mod enact;
mod events;
#[cfg(test)]
pub(crate) mod model;
mod naming;
mod observed;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use filibuster_common::{ConnectAttempt, ConnectKey};
// The per-call lookups (sockets, callers, in-flight requests) need speed,
// not SipHash's resistance to chosen keys.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use call::Call;
use calls::{CallConnection, applicable_faults, mark_setup};
pub use carrying::Carried;
use carrying::Carrying;
pub use enact::Enactment;
pub use naming::{ServiceAddress, check_unique_ports};
use naming::{callee, is_local};
use observed::Observed;

use crate::{
    ebpf::{Destination, EventSource, KernelMaps, Speaks},
    explore::{CallId, CallSite, Execution, ExecutionIndex, FaultSpace, PlannedFault, Protocol},
    netns::NetNs,
};

/// How long a caller whose connection an execution ended takes to see it
/// go, at most: a call it made sooner could go out on the dead connection
/// and fail, instead of reconnecting into the fault planned on it
/// (measured with `cargo xtask bench --only reconnect`: @grpc/grpc-js
/// failed 3 of 29 calls made 1 ms after, none made 3 ms after; grpcio and
/// tonic none after 1 ms). The execution's test starts that much later.
pub const SETTLE: Duration = Duration::from_millis(5);

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

/// Where a call goes, and for one that opened its connection which
/// connect a refusal targets (`ordinal`, counted from 1; 0 for a call
/// only seen on a connection already open), in terms that survive a
/// restart (service names, not cgroup ids): written into counterexamples.
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
    /// The agent's port on the upstream connection that carries it.
    pub upstream_port: UpstreamPort,
    /// What the first request on a proxied connection showed its
    /// destination speaks, when the kernel can take over from here: later
    /// connects there go directly.
    pub learned: Option<Speaks>,
}

/// The agent's port on the connection that carries a call to its callee:
/// how the callee's threads are matched to the calls they serve.
#[derive(Clone, Debug)]
pub enum UpstreamPort {
    /// Known when the call is read (an observed call: its caller's own
    /// socket), or none.
    Fixed(Option<u16>),
    /// A proxied caller connection's upstream port (0 until it opens),
    /// shared with the calls in flight on it: opening it after a call was
    /// admitted costs no trip to the session.
    Shared(Arc<AtomicU16>),
}

impl UpstreamPort {
    fn get(&self) -> Option<u16> {
        match self {
            Self::Fixed(port) => *port,
            Self::Shared(port) => match port.load(Ordering::Relaxed) {
                0 => None,
                port => Some(port),
            },
        }
    }
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
    pub enactment: Enactment,
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
    /// The kernel's count of lost events when the execution began.
    dropped_at_begin: u64,
    /// Whether it ran an execution yet: calls before the first are the
    /// services starting up, not what they do on their own.
    ran: bool,
    /// `[test] reset` runs: calls now are its, not what the services do
    /// on their own.
    resetting: bool,
    /// The test said it is setting up (`filibuster.setup()`): its calls
    /// now, and what is done serving them, are not under test.
    test_in_setup: bool,
}

struct State {
    kernel: Box<dyn KernelMaps>,
    /// The kernel's events; out of the state while they are taken in.
    events: Option<Box<dyn EventSource>>,
    cells: Vec<CellState>,
    /// Managed cgroup id → caller name and cell.
    callers: HashMap<u64, (String, usize)>,
    /// Managed cgroup id → its path: where a caller's pooled connections
    /// are looked for.
    cgroup_paths: HashMap<u64, PathBuf>,
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
    /// Open observed HTTP connections, by caller socket cookie.
    observed: HashMap<u64, Observed>,
    /// The callers' network namespaces, by cookie.
    namespaces: HashMap<u64, Arc<NetNs>>,
    connections: u32,
    observed_calls: u64,
    /// What services call on their own (a health check, a cache refresh,
    /// a poller): sites called between executions, or while their caller
    /// served no request. A call of such a site belongs to a request only
    /// on evidence (its trace, its thread); one that belongs to none is
    /// watched, never failed: how often it happens depends on the clock.
    background: HashSet<CallSite>,
    carrying: Carrying,
}

impl State {
    /// Numbers a new connection (proxied, direct or observed).
    fn next_connection(&mut self) -> u32 {
        self.connections += 1;
        self.connections
    }

    /// The caller with managed cgroup `cgroup_id` (the kernel reports a
    /// process in a cgroup a service made under its own by the managed
    /// ancestor): its name and cell.
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

/// A call a service is serving.
struct InFlight {
    id: CallId,
    /// Its W3C trace id, if it carried one.
    trace: Option<String>,
    /// The agent's port on the connection that carries it to the service:
    /// what the service's thread serving it last read from.
    upstream_port: UpstreamPort,
}

pub struct Session {
    state: Mutex<State>,
    /// The numbers of the executions the cells are running. A held call
    /// waits until its own is no longer among them.
    running: watch::Sender<Vec<usize>>,
    /// How often `state` was locked: every trip a call makes to the
    /// session waits on the other connections' calls, so the proxy's tests
    /// count them.
    #[cfg(test)]
    locks: std::sync::atomic::AtomicUsize,
}

impl Session {
    pub fn new(
        kernel: impl KernelMaps + 'static,
        events: impl EventSource + 'static,
        services: Vec<ServiceAddress>,
        faults: FaultSpace,
        namespaces: &[Arc<NetNs>],
        cell_namespaces: Vec<u64>,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                kernel: Box::new(kernel),
                events: Some(Box::new(events)),
                cells: cell_namespaces
                    .iter()
                    .map(|_| CellState::default())
                    .collect(),
                callers: HashMap::new(),
                cgroup_paths: HashMap::new(),
                cell_namespaces,
                services,
                faults,
                connect_targets: HashMap::new(),
                direct: HashMap::new(),
                observed: HashMap::new(),
                namespaces: namespaces.iter().map(|n| (n.cookie(), n.clone())).collect(),
                connections: 0,
                observed_calls: 0,
                background: HashSet::new(),
                carrying: Carrying::default(),
            }),
            running: watch::channel(Vec::new()).0,
            #[cfg(test)]
            locks: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        #[cfg(test)]
        self.locks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The end of the run: connects go where they were meant to again (see
    /// [`KernelMaps::detach_connects`]).
    pub fn detach_connects(&self) {
        self.lock().kernel.detach_connects();
    }

    /// `name`, in `cell`, runs in the managed cgroup `cgroup_id` at
    /// `path` (and in any it makes).
    pub fn add_caller(&self, cell: usize, cgroup_id: u64, path: &Path, name: &str) {
        let mut state = self.lock();
        state.callers.insert(cgroup_id, (name.to_string(), cell));
        state.cgroup_paths.insert(cgroup_id, path.to_path_buf());
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

    /// How often the session's state was locked so far.
    #[cfg(test)]
    pub(crate) fn locks(&self) -> usize {
        self.locks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes `execution` current and arms the kernel for it: its refusals,
    /// and the proxy for every connection a planned fault needs (one that
    /// would otherwise go directly). Open connections of those callers to
    /// those destinations (observed, or a pool's) are destroyed, so that
    /// a pooled one cannot carry a call the fault must reach; their
    /// callers reconnect.
    /// Returns how long the execution's test should wait before it starts:
    /// [`SETTLE`] when connections were ended, else nothing.
    /// Whether cgroup `id` is one of the run's: a test's, a service's, or
    /// one below them (a service's workers).
    pub fn is_ours(&self, id: u64) -> bool {
        use std::os::unix::fs::MetadataExt;
        // The walk below reads the file system: not under the lock the
        // proxy's calls take.
        let paths: Vec<PathBuf> = {
            let state = self.lock();
            if state.callers.contains_key(&id) {
                return true;
            }
            state.cgroup_paths.values().cloned().collect()
        };
        paths.iter().any(|path| {
            walkdir::WalkDir::new(path)
                .into_iter()
                .flatten()
                .any(|entry| {
                    entry.file_type().is_dir() && entry.metadata().is_ok_and(|m| m.ino() == id)
                })
        })
    }

    /// The test in `cell` begins (`true`) or ends its setup.
    pub fn test_in_setup(&self, cell: usize, setup: bool) {
        self.lock().cells[cell].test_in_setup = setup;
    }

    /// `[test] reset` starts (`true`) or ends running in `cell`.
    pub fn resetting(&self, cell: usize, resetting: bool) {
        self.lock().cells[cell].resetting = resetting;
    }

    pub fn begin(&self, cell: usize, execution: Execution) -> Result<Duration> {
        let number = execution.number;
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        let state = &mut *state;
        let own = &mut state.cells[cell];
        own.armed.clear();
        own.serving.clear();
        own.test_in_setup = false;
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
            if enact::refused_in_kernel(&planned.fault) {
                let attempt = ConnectAttempt {
                    key,
                    ordinal: execution
                        .planned_connect_ordinal(&planned.index)
                        .unwrap_or(target.ordinal),
                    _pad: 0,
                };
                own.armed.insert(attempt, planned.clone());
            }
        }
        let armed: Vec<ConnectAttempt> = own.armed.keys().copied().collect();
        let cgroups: Vec<u64> = own.caller_cgroups.values().copied().collect();
        state.kernel.begin_execution(&cgroups, &armed, &proxied)?;
        let ended = Self::destroy_open(state, &proxied) + state.carrying.end(&proxied, &cgroups);
        let own = &mut state.cells[cell];
        own.dropped_at_begin = state.kernel.dropped_events();
        own.execution = Some(execution);
        own.ran = true;
        self.running.send_modify(|running| running.push(number));
        Ok(if ended > 0 { SETTLE } else { Duration::ZERO })
    }

    /// Ends `cell`'s execution, releasing every call held in it.
    pub fn end(&self, cell: usize) -> Option<Execution> {
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        let lost = state
            .kernel
            .dropped_events()
            .saturating_sub(state.cells[cell].dropped_at_begin);
        let mut execution = state.cells[cell].execution.take();
        if let Some(execution) = &mut execution {
            // Host-wide: whichever execution was running lost them.
            if lost > 0 {
                execution.lost_events(lost);
            }
            self.running
                .send_modify(|running| running.retain(|&n| n != execution.number));
        }
        execution
    }

    /// Calls read off observed connections so far.
    pub fn observed_calls(&self) -> u64 {
        self.lock().observed_calls
    }

    /// Whether a fault was injected so far in `cell`'s execution (on a
    /// call to `callee`, if given).
    pub fn fault_injected(&self, cell: usize, callee: Option<&str>) -> bool {
        let mut state = self.lock();
        Self::absorb_events(&mut state);
        state.cells[cell]
            .execution
            .as_ref()
            .is_some_and(|execution| execution.fault_injected(callee))
    }
}
