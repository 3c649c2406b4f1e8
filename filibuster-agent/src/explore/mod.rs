//! The search: which combinations of faults to run, in which order, and
//! which to skip. Pure logic, no I/O: the session feeds each running
//! execution the calls the proxy and the kernel see, the runner hands out
//! executions and finishes them, and the model tests feed it calls from
//! models of topologies.
//!
//! Both searches schedule as Filibuster does:
//! - Run the test once with no fault. Every call that is not part of the
//!   prefix an execution was scheduled with is *new*: for each fault that
//!   applies to it, schedule the current execution's faults plus that one.
//!   A fault is only ever planned where its call was seen to happen, so a
//!   retry or a fallback is faulted only together with the failure that
//!   made it happen.
//! - Deduplicated: a set of faults is scheduled at most once.
//! - Dynamic reduction ([`reduce`]): skip a scheduled execution when earlier
//!   executions already showed every outcome it would produce.
//! - Unstable indices: an execution whose prefix calls did not all happen
//!   again (a path with an id or a timestamp in it) schedules nothing, and
//!   says which calls vanished, so such an application cannot make the
//!   search run forever.
//!
//! [`Search::Filibuster`] runs the execution scheduled last first (depth
//! first), exactly as the original tool. [`Search::Guided`] adds:
//! - Bugs first ([`pending`]): fewer faults a caller already survived,
//!   fewer faults, connection errors first, timeouts last; a status on a
//!   call after its callees' faults, which may show it answered anyway.
//! - Cheapest equivalent fault ([`effects`]): a fault that, tried with the
//!   same other faults, did exactly what a cheaper one did (or what no
//!   fault did) is swapped for it in later combinations; connection
//!   errors and statuses stand for each other where they did the same,
//!   timeouts only for timeouts; faults below a call that made it fail
//!   the way one of its own faults did stand as that fault.
//! - Retry and poll groups: faults are combined freely over the first
//!   `retry_depth` attempts of a call repeated under one parent (a retry,
//!   a poll); a later attempt is faulted only to continue a persistent
//!   failure (every attempt before it failed the same way), so that a
//!   retry or polling loop costs an execution per attempt and kind of
//!   failure, not a power of the attempts.

mod effects;
mod fault;
mod index;
#[cfg(test)]
mod models;
mod pending;
mod reduce;
mod space;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Instant,
};

// Hashed per call: fast, as keys come from the run, not an adversary.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use effects::{Effects, Rule};
pub use fault::{Fault, FaultKind, GRPC_CODES, GRPC_DEADLINE_EXCEEDED, Outcome, grpc_code};
pub use index::{CallSite, ExecutionIndex, Protocol};
use pending::{Order, Pending, Seen};
use serde::{Deserialize, Serialize};
pub use space::{CallPattern, FaultRule, FaultSpace, FaultSpec};

/// Which search runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Search {
    /// Bugs first, cheapest equivalent faults, bounded retry groups.
    #[default]
    Guided,
    /// The original tool's depth-first search, exactly.
    Filibuster,
}

/// How the search runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub search: Search,
    pub dynamic_reduction: bool,
    /// At most this many faults in one execution.
    pub max_faults: Option<usize>,
    /// Guided search: over how many attempts of a repeated call (a retry,
    /// a poll) faults are combined freely; a later attempt fails only when
    /// every attempt before it failed the same way.
    pub retry_depth: u32,
}

impl Search {
    /// How the command line and reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guided => "guided",
            Self::Filibuster => "filibuster",
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            search: Search::default(),
            dynamic_reduction: true,
            max_faults: None,
            retry_depth: 2,
        }
    }
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
    /// Whether `plan` differs from `other` only in the fault on one call,
    /// both fast (connection errors, statuses): once `other`'s result is
    /// in, the two may prove to stand for each other (the caller answers
    /// them alike), and this one need not run.
    fn may_stand_for(&self, other: &Plan) -> bool {
        let mut differing = 0;
        self.faults.len() == other.faults.len()
            && self.faults.iter().all(|(index, planned)| {
                other.faults.get(index).is_some_and(|theirs| {
                    if theirs.fault == planned.fault {
                        return true;
                    }
                    differing += 1;
                    planned.fault.is_fast() && theirs.fault.is_fast()
                })
            })
            && differing == 1
    }

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
    /// Where the call opened its connection: which of its caller's connect
    /// attempts to the callee's address in this execution it was (from
    /// 1): what a refusal planned on it in a later execution must refuse.
    pub connect_ordinal: Option<u32>,
    /// When the agent saw it begin, and end (its answer, its caller
    /// giving up, or the end of a hold): how long calls waited on each
    /// other, which the diagnoses read. `None`: it had not ended when the
    /// execution did.
    pub began: Instant,
    pub ended: Option<Instant>,
    /// Made while serving a request of the test's that is not under test
    /// (`[test] scope`): shown, never failed.
    pub setup: bool,
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
    /// Attempts of a repeated call whose faults combine freely (`None`:
    /// all).
    retry_depth: Option<u32>,
    /// Repeated calls beyond `retry_depth` not faulted, with their attempt.
    cut: Vec<(Arc<CallSite>, u32)>,
    replay: bool,
    /// Handed out while others were still out.
    overlapped: bool,
    /// The callees a fault was injected on so far: what a test asks the
    /// control API, answered without going through the log.
    injected_on: HashSet<String>,
    /// Connect ordinals of the planned faults' calls, as the execution
    /// that scheduled this one saw them.
    planned_ordinals: HashMap<ExecutionIndex, u32>,
    /// Kernel events lost while it ran (the ring buffer was full).
    lost_events: u64,
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
            retry_depth: (options.search == Search::Guided).then_some(options.retry_depth),
            cut: Vec::new(),
            replay,
            overlapped: false,
            injected_on: HashSet::new(),
            planned_ordinals: HashMap::new(),
            lost_events: 0,
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
            self.schedule_faults_on(&index, &site, applicable);
        }
        let id = CallId(self.log.len());
        self.log.push(CallRecord {
            index,
            parent,
            site,
            outcome: match &injected {
                Some(fault) if !fault.answered_by_callee() => Outcome::Injected(fault.clone()),
                _ => Outcome::Unfinished,
            },
            injected,
            connection: None,
            connect_ordinal: None,
            began: Instant::now(),
            ended: None,
            setup: false,
        });
        (id, self.log[id.0].injected.clone())
    }

    /// Whether a call made while serving `parent` is under test: whether
    /// the test's request at the top of its chain is not setup. `None`:
    /// it serves no request of the test's.
    pub fn under_test(&self, parent: Option<CallId>) -> Option<bool> {
        let mut call = &self.log[parent?.0];
        while let Some(up) = call.parent {
            call = &self.log[up.0];
        }
        Some(!call.setup)
    }

    /// The call is setup, not under test (`[test] scope`).
    pub fn set_setup(&mut self, id: CallId) {
        self.log[id.0].setup = true;
    }

    pub fn set_connection(&mut self, id: CallId, connection: u32) {
        self.log[id.0].connection = Some(connection);
    }

    /// The call opened its connection with its caller's `ordinal`-th
    /// connect attempt to the callee's address.
    pub fn set_connect_ordinal(&mut self, id: CallId, ordinal: u32) {
        self.log[id.0].connect_ordinal = Some(ordinal);
    }

    /// The kernel lost `count` events while this execution ran: some of
    /// its calls may be missing from its log.
    pub fn lost_events(&mut self, count: u64) {
        self.lost_events += count;
    }

    /// Which connect attempt a refusal planned on the call at `index` must
    /// refuse: the one it was in the execution this one was scheduled by,
    /// which ran with the same faults before it (a refused attempt and the
    /// retry it causes shift the count for every later connect).
    pub fn planned_connect_ordinal(&self, index: &ExecutionIndex) -> Option<u32> {
        self.planned_ordinals.get(index).copied()
    }

    /// The fault planned for this call was enacted as `fault` (a refusal
    /// planned on a connect that did not happen this time).
    pub fn enacted_as(&mut self, id: CallId, fault: Fault) {
        self.log[id.0].outcome = Outcome::Injected(fault);
    }

    /// Records how a call ended, now (for an injected fault, only when).
    #[cfg(test)]
    pub fn end_call(&mut self, id: CallId, outcome: Outcome) {
        self.end_call_at(id, outcome, Instant::now());
    }

    /// Records how a call ended, at `at` (for an injected fault, only
    /// when: a held call's end is when its caller gave up).
    pub fn end_call_at(&mut self, id: CallId, outcome: Outcome, at: Instant) {
        let record = &mut self.log[id.0];
        if record
            .injected
            .as_ref()
            .is_none_or(Fault::answered_by_callee)
        {
            record.outcome = outcome;
        }
        record.ended = Some(at);
    }

    fn schedule_faults_on(
        &mut self,
        index: &ExecutionIndex,
        site: &Arc<CallSite>,
        mut applicable: Vec<Fault>,
    ) {
        if applicable.is_empty()
            || self
                .max_faults
                .is_some_and(|max| self.plan.faults.len() >= max)
        {
            return;
        }
        if self
            .retry_depth
            .is_some_and(|depth| index.attempt() > depth)
        {
            match self.every_attempt_failed(index, &applicable) {
                Some(fault) => applicable = vec![fault],
                None => {
                    self.cut.push((site.clone(), index.attempt()));
                    return;
                }
            }
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
                    site: CallSite::clone(site),
                    fault,
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

impl Execution {
    /// When this execution fails every earlier attempt of `index`'s site
    /// under its parent the same way (a persistent failure), the fault
    /// that continues it on `index`: the same, or the connection error
    /// this call can get if it was one.
    fn every_attempt_failed(&self, index: &ExecutionIndex, applicable: &[Fault]) -> Option<Fault> {
        let mut earlier = (1..index.attempt()).map(|attempt| {
            self.plan
                .faults
                .get(&index.attempt_of(attempt))
                .map(|p| &p.fault)
        });
        let first = earlier.next()??;
        let alike = |fault: &Fault| {
            fault == first || (fault.is_connection_error() && first.is_connection_error())
        };
        if !earlier.all(|fault| fault.is_some_and(alike)) {
            return None;
        }
        applicable.iter().find(|f| alike(f)).cloned()
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
    /// Kernel events lost while it ran: its log may miss calls, so it
    /// shows no other execution's outcomes (never used to skip one).
    pub lost_events: u64,
}

/// Counters a user watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub executions: usize,
    /// Scheduled executions not run, all rules together.
    pub pruned: usize,
    pub pruned_by: Pruned,
    pub scheduled: usize,
    /// Executions that ran side by side with others (cells) and that,
    /// once they finished, what was known by then would have pruned: the
    /// price of dispatching before every earlier result is in.
    pub beyond_sequential: usize,
    /// Time a timeout would have held calls, had the faults that cheaper
    /// equivalents replaced been tried (as long as they held when tried
    /// alone).
    pub held_saved: std::time::Duration,
}

/// Executions not run, by the rule that skipped them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Every outcome already shown by executions that ran.
    pub dynamic_reduction: usize,
    /// The same faults with a cheaper equivalent in place of one already
    /// ran or is scheduled.
    pub equivalent_faults: usize,
    /// The same faults without one that had no effect already ran or is
    /// scheduled.
    pub no_impact: usize,
}

/// A call repeated under one parent (a retry, a poll) more often than the
/// guided search faults attempts alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryGroup {
    pub site: CallSite,
    /// The most attempts seen in one execution.
    pub attempts: u32,
}

/// The search over fault combinations. Several executions may be out at
/// once (cells): each is numbered when handed out, reduction decides with
/// what has finished by then, and results may come back in any order.
#[derive(Debug)]
pub struct Explorer {
    options: Options,
    pending: Pending,
    known: HashSet<Vec<(ExecutionIndex, Fault)>>,
    /// Finished executions, by number.
    ran: Vec<Finished>,
    /// Executions handed out so far.
    dispatched: usize,
    /// The plans of the executions handed out and not finished yet.
    in_flight: HashMap<usize, Plan>,
    pruned: Pruned,
    beyond_sequential: usize,
    held_saved: std::time::Duration,
    replay: bool,
    /// Guided search: what faults did, and what the order learns.
    effects: Effects,
    seen: Seen,
    /// Attempts beyond the retry depth, by site.
    cut: BTreeMap<String, RetryGroup>,
}

impl Explorer {
    /// A search that starts with the fault-free execution.
    pub fn new(options: Options) -> Self {
        let initial = Plan::default();
        let order = match options.search {
            Search::Guided => Order::BugsFirst,
            Search::Filibuster => Order::DepthFirst,
        };
        Self {
            options,
            known: [initial.key()].into_iter().collect(),
            pending: Pending::new(order, initial),
            ran: Vec::new(),
            dispatched: 0,
            in_flight: HashMap::new(),
            pruned: Pruned::default(),
            beyond_sequential: 0,
            held_saved: std::time::Duration::ZERO,
            replay: false,
            effects: Effects::default(),
            seen: Seen::default(),
            cut: BTreeMap::new(),
        }
    }

    /// A search of exactly one execution: the replay of `plan`.
    pub fn replay(plan: Plan) -> Self {
        let mut explorer = Self::new(Options {
            search: Search::Filibuster,
            dynamic_reduction: false,
            ..Options::default()
        });
        explorer.known.clear();
        explorer.pending = Pending::new(Order::DepthFirst, plan);
        explorer.replay = true;
        explorer
    }

    pub fn progress(&self) -> Progress {
        let Pruned {
            dynamic_reduction,
            equivalent_faults,
            no_impact,
        } = self.pruned;
        Progress {
            executions: self.ran.len(),
            pruned: dynamic_reduction + equivalent_faults + no_impact,
            pruned_by: self.pruned,
            scheduled: self.pending.len(),
            beyond_sequential: self.beyond_sequential,
            held_saved: self.held_saved,
        }
    }

    /// What the executions still scheduled would try that none run has:
    /// each site with the faults left for it (a budget ended the search).
    pub fn left_untried(&self) -> BTreeMap<String, BTreeSet<String>> {
        let tried: HashSet<(&ExecutionIndex, &Fault)> = self
            .ran
            .iter()
            .flat_map(|f| f.faults.iter().map(|p| (&p.index, &p.fault)))
            .collect();
        let mut left: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for planned in self.pending.plans().flat_map(Plan::faults) {
            if !tried.contains(&(&planned.index, &planned.fault)) {
                left.entry(planned.site.to_string())
                    .or_default()
                    .insert(planned.fault.to_string());
            }
        }
        left
    }

    /// Repeated calls whose later attempts were not faulted alone.
    pub fn retry_groups(&self) -> impl Iterator<Item = &RetryGroup> {
        self.cut.values()
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
    /// With executions side by side, the guided search holds back a plan
    /// that one out may make redundant (see [`Plan::may_stand_for`]) while
    /// others can run, as a search one at a time would have its result
    /// first: `None` then, until an execution finishes.
    pub fn next_execution(&mut self) -> Option<Execution> {
        let guided = self.options.search == Search::Guided;
        while let Some(plan) = self.pending.pop(&self.seen, |plan| {
            guided && self.in_flight.values().any(|out| plan.may_stand_for(out))
        }) {
            let Some(plan) = self.cheapest(plan) else {
                continue;
            };
            if self.options.dynamic_reduction
                && reduce::should_prune(&plan, &self.ran, self.options.search == Search::Guided)
            {
                self.pruned.dynamic_reduction += 1;
                continue;
            }
            let overlapped = !self.in_flight.is_empty();
            self.dispatched += 1;
            let planned_ordinals = self.connect_ordinals(&plan);
            self.in_flight.insert(self.dispatched, plan.clone());
            let mut execution = Execution::new(self.dispatched, plan, &self.options, self.replay);
            execution.overlapped = overlapped;
            execution.planned_ordinals = planned_ordinals;
            return Some(execution);
        }
        None
    }

    /// The connect ordinals of `plan`'s faulted calls in the execution that
    /// scheduled it.
    fn connect_ordinals(&self, plan: &Plan) -> HashMap<ExecutionIndex, u32> {
        let Some(origin) = plan.origin.and_then(|n| self.execution(n)) else {
            return HashMap::new();
        };
        origin
            .calls
            .iter()
            .filter(|call| plan.faults.contains_key(&call.index))
            .filter_map(|call| Some((call.index.clone(), call.connect_ordinal?)))
            .collect()
    }

    /// Guided search: `plan` with each fault that a cheaper one is known
    /// to stand for replaced (or dropped); `None` when that plan already
    /// ran or waits to.
    fn cheapest(&mut self, mut plan: Plan) -> Option<Plan> {
        if self.options.search != Search::Guided {
            return Some(plan);
        }
        while let Some(cheaper) = self.effects.cheaper(&plan, |n| self.execution(n)) {
            match (&cheaper.below, &cheaper.instead) {
                // The faults below the call become its own.
                (Some(site), Some(fault)) => {
                    plan.faults.retain(|index, _| !index.within(&cheaper.index));
                    plan.faults.insert(
                        cheaper.index.clone(),
                        PlannedFault {
                            index: cheaper.index.clone(),
                            site: CallSite::clone(site),
                            fault: fault.clone(),
                        },
                    );
                }
                _ => replace_run(&mut plan, &cheaper),
            }
            self.held_saved += cheaper.held;
            if !self.known.insert(plan.key()) {
                match cheaper.rule {
                    Rule::EquivalentFault => self.pruned.equivalent_faults += 1,
                    Rule::NoImpact => self.pruned.no_impact += 1,
                }
                return None;
            }
        }
        Some(plan)
    }

    /// Takes a finished execution's log and schedules what it discovered.
    pub fn finish(&mut self, execution: Execution, passed: bool) -> &Finished {
        let Execution {
            number,
            plan,
            log,
            scheduled,
            overlapped,
            cut,
            lost_events,
            ..
        } = execution;
        self.in_flight.remove(&number);
        let vanished = self.vanished(&plan, &log);
        if vanished.is_empty() {
            for plan in scheduled {
                if self.known.insert(plan.key()) {
                    self.pending.push(plan);
                }
            }
        }
        for (site, attempts) in cut {
            let group = self
                .cut
                .entry(site.to_string())
                .or_insert_with(|| RetryGroup {
                    site: CallSite::clone(&site),
                    attempts,
                });
            group.attempts = group.attempts.max(attempts);
        }
        // Handed out before an earlier one finished, it may have run where
        // a search one at a time would have pruned it.
        if self.options.dynamic_reduction
            && overlapped
            && reduce::should_prune(&plan, &self.ran, self.options.search == Search::Guided)
        {
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
                lost_events,
            },
        );
        let finished = &self.ran[at];
        if self.options.search == Search::Guided && !self.replay && lost_events == 0 {
            self.effects.learn(finished);
            self.seen.record(finished);
        }
        finished
    }
}

/// Puts `cheaper`'s fault (or none) in place of the one at its call in
/// `plan`, and of the same fault on the attempts after it: a run of failed
/// attempts of a repeated call continues the fault of the attempt before,
/// and changes with it.
fn replace_run(plan: &mut Plan, cheaper: &effects::Cheaper) {
    let replaced = plan.faults[&cheaper.index].fault.clone();
    let run = (cheaper.index.attempt()..)
        .map(|attempt| cheaper.index.attempt_of(attempt))
        .take_while(|index| plan.faults.get(index).is_some_and(|p| p.fault == replaced))
        .collect::<Vec<_>>();
    for index in run {
        match &cheaper.instead {
            Some(fault) => {
                if let Some(planned) = plan.faults.get_mut(&index) {
                    planned.fault = fault.clone();
                }
            }
            None => {
                plan.faults.remove(&index);
            }
        }
    }
}
