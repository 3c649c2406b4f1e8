//! The search: which combinations of faults to run, in which order, and
//! which to skip. Pure logic, no I/O: the runner feeds it calls as the proxy
//! sees them, and the model tests feed it calls from models of topologies.
//!
//! The rules are Filibuster's:
//! - Run the test once with no fault. Every call that is not part of the
//!   prefix an execution was scheduled with is *new*: for each fault that
//!   applies to it, schedule the current execution's faults plus that one.
//! - Depth first: the execution scheduled last runs next.
//! - Deduplicated: a set of faults is scheduled at most once.
//! - Dynamic reduction ([`reduce`]): skip a scheduled execution when earlier
//!   executions already showed every outcome it would produce.
//! - Unstable indices: an execution whose prefix calls did not all happen
//!   again (a path with an id or a timestamp in it) schedules nothing, and
//!   says which calls vanished, so such an application cannot make the
//!   search run forever.

mod fault;
mod index;
#[cfg(test)]
mod models;
mod reduce;
mod space;

use std::{collections::BTreeMap, sync::Arc, time::Instant};

// Hashed per call: fast, as keys come from the run, not an adversary.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

pub use fault::{Fault, GRPC_CODES, GRPC_DEADLINE_EXCEEDED, Outcome, grpc_code};
pub use index::{CallSite, ExecutionIndex, Protocol};
use serde::{Deserialize, Serialize};
pub use space::{CallPattern, FaultRule, FaultSpace, FaultSpec};

/// How the search runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub dynamic_reduction: bool,
    /// At most this many faults in one execution.
    pub max_faults: Option<usize>,
}

/// A fault planned for one call of an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    pub index: ExecutionIndex,
    pub site: CallSite,
    pub fault: Fault,
}

/// An execution waiting to run: the faults it injects and the calls that
/// led to it (seen in the execution that scheduled it, up to and including
/// the call it adds a fault to).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    faults: BTreeMap<ExecutionIndex, PlannedFault>,
    prefix: Vec<ExecutionIndex>,
    /// The execution that scheduled this one.
    origin: Option<usize>,
}

impl Plan {
    /// An execution that injects exactly `faults`, for replaying a
    /// counterexample: it schedules nothing new.
    pub fn replay(faults: Vec<PlannedFault>) -> Self {
        let prefix = faults.iter().map(|f| f.index.clone()).collect();
        let faults = faults.into_iter().map(|f| (f.index.clone(), f)).collect();
        Self {
            faults,
            prefix,
            origin: None,
        }
    }

    pub fn faults(&self) -> impl Iterator<Item = &PlannedFault> {
        self.faults.values()
    }

    fn key(&self) -> Vec<(ExecutionIndex, Fault)> {
        self.faults
            .values()
            .map(|f| (f.index.clone(), f.fault.clone()))
            .collect()
    }
}

/// Identifies a call within one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallId(usize);

impl CallId {
    /// Where the call stands in its execution's log.
    pub fn position(self) -> usize {
        self.0
    }

    /// The call at `position` of a log made by hand.
    #[cfg(test)]
    pub fn at(position: usize) -> Self {
        Self(position)
    }
}

/// One call of an execution, as it happened.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub index: ExecutionIndex,
    pub parent: Option<CallId>,
    /// Shared by every call of the same site in the execution.
    pub site: Arc<CallSite>,
    /// The fault injected on this call, if any.
    pub injected: Option<Fault>,
    pub outcome: Outcome,
    /// The number of the connection that carried it, where known: calls
    /// with the same number shared one (whether a connection outlived a
    /// failed call, a reset from a refusal).
    pub connection: Option<u32>,
    /// When the agent saw it begin, and end (its answer, its caller
    /// giving up, or the end of a hold): how long calls waited on each
    /// other, which the diagnoses read. `None`: it had not ended when the
    /// execution did.
    pub began: Instant,
    pub ended: Option<Instant>,
}

/// An execution in progress: the proxy reports calls to it and it answers
/// which fault, if any, to inject.
#[derive(Debug)]
pub struct Execution {
    pub number: usize,
    plan: Plan,
    prefix: HashSet<ExecutionIndex>,
    log: Vec<CallRecord>,
    counters: HashMap<(Option<CallId>, u64), u32>,
    /// Every call site seen, with its stable hash: sites repeat, so each
    /// is stored and hashed (SHA-256, a tenth of the agent's time under
    /// load when done per call) once.
    sites: HashMap<Arc<CallSite>, u64>,
    scheduled: Vec<Plan>,
    max_faults: Option<usize>,
    replay: bool,
    /// Handed out while others were still out.
    overlapped: bool,
    /// The callees a fault was injected on so far: what a test asks the
    /// control API, answered without going through the log.
    injected_on: HashSet<String>,
}

impl Execution {
    fn new(number: usize, plan: Plan, options: &Options, replay: bool) -> Self {
        let prefix = plan.prefix.iter().cloned().collect();
        Self {
            number,
            plan,
            prefix,
            log: Vec::new(),
            counters: HashMap::new(),
            sites: HashMap::new(),
            scheduled: Vec::new(),
            max_faults: options.max_faults,
            replay,
            overlapped: false,
            injected_on: HashSet::new(),
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn calls(&self) -> &[CallRecord] {
        &self.log
    }

    /// Whether a fault was injected so far (on a call to `callee`, if
    /// given).
    pub fn fault_injected(&self, callee: Option<&str>) -> bool {
        match callee {
            Some(callee) => self.injected_on.contains(callee),
            None => !self.injected_on.is_empty(),
        }
    }

    pub fn call(&self, id: CallId) -> &CallRecord {
        &self.log[id.0]
    }

    /// Records a call; returns its id and the fault to inject, if any.
    /// `applicable` gives the faults this call could be failed with; it is
    /// asked only for a call the search has not seen yet.
    pub fn begin_call(
        &mut self,
        parent: Option<CallId>,
        site: CallSite,
        applicable: impl FnOnce(&CallSite) -> Vec<Fault>,
    ) -> (CallId, Option<Fault>) {
        let (site, hash) = match self.sites.get_key_value(&site) {
            Some((known, &hash)) => (known.clone(), hash),
            None => {
                let hash = site.hash();
                let site = Arc::new(site);
                self.sites.insert(site.clone(), hash);
                (site, hash)
            }
        };
        let n = self.counters.entry((parent, hash)).or_default();
        *n += 1;
        let index = match parent {
            Some(p) => self.log[p.0].index.child(hash, *n),
            None => ExecutionIndex::default().child(hash, *n),
        };
        let injected = self.plan.faults.get(&index).map(|f| f.fault.clone());
        if injected.is_some() && !self.injected_on.contains(&site.callee) {
            self.injected_on.insert(site.callee.clone());
        }
        if !self.replay && injected.is_none() && !self.prefix.contains(&index) {
            let applicable = applicable(&site);
            self.schedule_faults_on(&index, &site, &applicable);
        }
        let id = CallId(self.log.len());
        self.log.push(CallRecord {
            index,
            parent,
            site,
            outcome: match &injected {
                Some(fault) => Outcome::Injected(fault.clone()),
                None => Outcome::Unfinished,
            },
            injected,
            connection: None,
            began: Instant::now(),
            ended: None,
        });
        (id, self.log[id.0].injected.clone())
    }

    pub fn set_connection(&mut self, id: CallId, connection: u32) {
        self.log[id.0].connection = Some(connection);
    }

    /// The fault planned for this call was enacted as `fault` (a refusal
    /// planned on a connect that did not happen this time).
    pub fn enacted_as(&mut self, id: CallId, fault: Fault) {
        self.log[id.0].outcome = Outcome::Injected(fault);
    }

    /// Records how a call ended, now (for an injected fault, only when).
    pub fn end_call(&mut self, id: CallId, outcome: Outcome) {
        self.end_call_at(id, outcome, Instant::now());
    }

    /// Records how a call ended, at `at` (for an injected fault, only
    /// when: a held call's end is when its caller gave up).
    pub fn end_call_at(&mut self, id: CallId, outcome: Outcome, at: Instant) {
        let record = &mut self.log[id.0];
        if record.injected.is_none() {
            record.outcome = outcome;
        }
        record.ended = Some(at);
    }

    fn schedule_faults_on(
        &mut self,
        index: &ExecutionIndex,
        site: &CallSite,
        applicable: &[Fault],
    ) {
        if applicable.is_empty()
            || self
                .max_faults
                .is_some_and(|max| self.plan.faults.len() >= max)
        {
            return;
        }
        // The calls so far, this one (not yet logged) included.
        let prefix: Vec<ExecutionIndex> = self
            .log
            .iter()
            .map(|r| r.index.clone())
            .chain([index.clone()])
            .collect();
        for fault in applicable {
            let mut faults = self.plan.faults.clone();
            faults.insert(
                index.clone(),
                PlannedFault {
                    index: index.clone(),
                    site: site.clone(),
                    fault: fault.clone(),
                },
            );
            self.scheduled.push(Plan {
                faults,
                prefix: prefix.clone(),
                origin: Some(self.number),
            });
        }
    }
}

/// What an execution ended with.
#[derive(Clone, Debug)]
pub struct Finished {
    pub number: usize,
    pub faults: Vec<PlannedFault>,
    pub calls: Vec<CallRecord>,
    pub passed: bool,
    /// Calls the execution was planned on that did not happen again: the
    /// application is not deterministic there (empty when all is well).
    pub vanished: Vec<CallSite>,
}

/// Counters a user watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub executions: usize,
    pub pruned: usize,
    pub scheduled: usize,
    /// Executions that ran side by side with others (cells) and that,
    /// once they finished, what was known by then would have pruned: the
    /// price of dispatching before every earlier result is in.
    pub beyond_sequential: usize,
}

/// The depth-first search over fault combinations. Several executions may
/// be out at once (cells): each is numbered when handed out, reduction
/// decides with what has finished by then, and results may come back in
/// any order.
#[derive(Debug)]
pub struct Explorer {
    options: Options,
    stack: Vec<Plan>,
    known: HashSet<Vec<(ExecutionIndex, Fault)>>,
    /// Finished executions, by number.
    ran: Vec<Finished>,
    /// Executions handed out so far.
    dispatched: usize,
    pruned: usize,
    beyond_sequential: usize,
    replay: bool,
}

impl Explorer {
    /// A search that starts with the fault-free execution.
    pub fn new(options: Options) -> Self {
        let initial = Plan::default();
        Self {
            options,
            known: [initial.key()].into_iter().collect(),
            stack: vec![initial],
            ran: Vec::new(),
            dispatched: 0,
            pruned: 0,
            beyond_sequential: 0,
            replay: false,
        }
    }

    /// A search of exactly one execution: the replay of `plan`.
    pub fn replay(plan: Plan) -> Self {
        Self {
            options: Options::default(),
            known: HashSet::new(),
            stack: vec![plan],
            ran: Vec::new(),
            dispatched: 0,
            pruned: 0,
            beyond_sequential: 0,
            replay: true,
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            executions: self.ran.len(),
            pruned: self.pruned,
            scheduled: self.stack.len(),
            beyond_sequential: self.beyond_sequential,
        }
    }

    /// The finished executions, in the order they were handed out.
    pub fn executions(&self) -> &[Finished] {
        &self.ran
    }

    /// Finished execution `number`.
    pub fn execution(&self, number: usize) -> Option<&Finished> {
        self.position(number).ok().map(|at| &self.ran[at])
    }

    fn position(&self, number: usize) -> Result<usize, usize> {
        self.ran.binary_search_by_key(&number, |f| f.number)
    }

    /// The calls of `plan`'s prefix missing from `log`, named as they were
    /// when the plan was made.
    fn vanished(&self, plan: &Plan, log: &[CallRecord]) -> Vec<CallSite> {
        let seen: HashSet<&ExecutionIndex> = log.iter().map(|c| &c.index).collect();
        let origin = plan
            .origin
            .and_then(|n| self.execution(n))
            .map(|f| &f.calls);
        plan.prefix
            .iter()
            .filter(|index| !seen.contains(index))
            .filter_map(|index| match origin {
                Some(calls) => calls.iter().find(|c| &c.index == index).map(|c| &*c.site),
                None => plan.faults.get(index).map(|f| &f.site),
            })
            .cloned()
            .collect()
    }

    /// The next execution to run, or `None` when nothing is scheduled
    /// (the search is complete once no execution is out either).
    pub fn next_execution(&mut self) -> Option<Execution> {
        while let Some(plan) = self.stack.pop() {
            if self.options.dynamic_reduction && reduce::should_prune(&plan, &self.ran) {
                self.pruned += 1;
                continue;
            }
            let overlapped = self.ran.len() < self.dispatched;
            self.dispatched += 1;
            let mut execution = Execution::new(self.dispatched, plan, &self.options, self.replay);
            execution.overlapped = overlapped;
            return Some(execution);
        }
        None
    }

    /// Takes a finished execution's log and schedules what it discovered.
    pub fn finish(&mut self, execution: Execution, passed: bool) -> &Finished {
        let Execution {
            number,
            plan,
            log,
            scheduled,
            overlapped,
            ..
        } = execution;
        let vanished = self.vanished(&plan, &log);
        if vanished.is_empty() {
            for plan in scheduled {
                if self.known.insert(plan.key()) {
                    self.stack.push(plan);
                }
            }
        }
        // Handed out before an earlier one finished, it may have run where
        // a search one at a time would have pruned it.
        if self.options.dynamic_reduction && overlapped && reduce::should_prune(&plan, &self.ran) {
            self.beyond_sequential += 1;
        }
        let at = self.position(number).unwrap_or_else(|at| at);
        self.ran.insert(
            at,
            Finished {
                number,
                faults: plan.faults.into_values().collect(),
                calls: log,
                passed,
                vanished,
            },
        );
        &self.ran[at]
    }
}
