//! What each fault did, learned from the executions that ran: the guided
//! search's evidence for trying one fault of a class instead of all.
//!
//! A fault's *effect*, in an execution, is everything the rest of the
//! application did: how every call outside the faulted one's subtree ended
//! (the caller's own answer among them, and which calls it made after),
//! and whether the test passed. Two faults tried on the same call with the
//! same other faults (the *context*) and the same effect are equivalent
//! there; a fault whose effect is that of the execution without it had no
//! impact (its caller absorbed it). A later combination that holds a fault
//! on that call, with at least that context, gets the cheapest equivalent
//! instead (or none). Where the combination fails other calls the same
//! caller makes for the same request, the evidence must have failed them
//! too, the same kind of way; and only statuses stand for statuses without
//! evidence that saw them all (a caller may act on how its calls failed
//! together: a timeout spends the time a retry needed).
//!
//! A call that failed because of faults below it (a service answering 503
//! because its dependency failed) is evidence too: where that failure had
//! the effect a fault tried on the call itself had, in the same context,
//! the faults below stand as that fault on the call (Filibuster's reading
//! of a service's error as its callee's failure, with evidence), and a
//! combination holding them gets the call's own fault instead. A timeout
//! below stands only for a timeout on the call: it spent the caller's time.
//!
//! Bodies are not part of an effect: most calls are read in the kernel,
//! which sees a response's status, not its body. A fault that only changes
//! a body (a default value in place of the callee's) counts as no impact.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use foldhash::HashMap;

use super::{CallSite, ExecutionIndex, Fault, FaultKind, Finished, Outcome, Plan};

/// Why a fault of a plan can be swapped for a cheaper one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rule {
    /// A cheaper fault had the same effect.
    EquivalentFault,
    /// Without the fault, the same effect.
    NoImpact,
}

/// One fault of a plan that evidence says can be cheaper.
#[derive(Debug)]
pub(super) struct Cheaper {
    pub index: ExecutionIndex,
    /// The call's site, where `index` was not faulted in the plan: the
    /// plan's faults below it are replaced by `instead` on it.
    pub below: Option<Arc<CallSite>>,
    /// `None`: drop the fault.
    pub instead: Option<Fault>,
    pub rule: Rule,
    /// How long the replaced fault held its call when it was tried.
    pub held: Duration,
}

/// The faults tried on one call with the same other faults.
#[derive(Debug)]
struct Context {
    /// The executions' other faults.
    faults: Vec<(ExecutionIndex, Fault)>,
    tried: Vec<Trial>,
}

/// A fault tried on a call: its effect, and how long it held the call.
#[derive(Debug)]
struct Trial {
    fault: Fault,
    effect: u64,
    held: Duration,
}

impl Trial {
    fn cost(&self) -> (u8, Duration, &Fault) {
        cost(&self.fault, self.held)
    }
}

/// Evidence per call, and the effect of each fault-free call in each
/// context, as finished executions show them.
#[derive(Debug, Default)]
pub(super) struct Effects {
    contexts: HashMap<ExecutionIndex, Vec<Context>>,
    /// Executions by their faults (numbers): the baselines of trials.
    runs: HashMap<Vec<(ExecutionIndex, Fault)>, usize>,
    /// Per call not faulted itself, what faults below it did.
    below: HashMap<ExecutionIndex, Vec<BelowTrial>>,
}

/// Faults tried below a call not faulted itself, in a context (the
/// execution's faults outside the call): what the rest of the application
/// did.
#[derive(Debug)]
struct BelowTrial {
    site: Arc<CallSite>,
    context: Vec<(ExecutionIndex, Fault)>,
    faults: Vec<(ExecutionIndex, Fault)>,
    effect: u64,
    held: Duration,
    /// The call answered (a status), rather than failing another way.
    answered: bool,
}

impl BelowTrial {
    /// Whether every fault below was over at once (no timeout).
    fn fast(&self) -> bool {
        self.faults.iter().all(|(_, fault)| fault.is_fast())
    }
}

/// `faults` split into those within the call at `index` and the rest, in
/// order.
type Split = (Vec<(ExecutionIndex, Fault)>, Vec<(ExecutionIndex, Fault)>);

fn split_at(faults: &[(ExecutionIndex, Fault)], index: &ExecutionIndex) -> Split {
    faults
        .iter()
        .cloned()
        .partition(|(at, _)| at != index && at.within(index))
}

/// The calls above the faults of `faults` (their ancestors, deepest first),
/// not faulted themselves.
fn above(faults: &[(ExecutionIndex, Fault)]) -> Vec<ExecutionIndex> {
    let mut calls: Vec<ExecutionIndex> = faults
        .iter()
        .flat_map(|(index, _)| std::iter::successors(index.parent(), ExecutionIndex::parent))
        .filter(|call| faults.iter().all(|(at, _)| at != call))
        .collect();
    calls.sort();
    calls.dedup();
    calls.reverse();
    calls
}

impl Effects {
    pub fn learn(&mut self, finished: &Finished) {
        let key: Vec<(ExecutionIndex, Fault)> = finished
            .faults
            .iter()
            .map(|f| (f.index.clone(), f.fault.clone()))
            .collect();
        for (position, (index, fault)) in key.iter().enumerate() {
            let Some(call) = finished.calls.iter().find(|c| &c.index == index) else {
                continue; // planned, never made: no evidence
            };
            let held = match (fault, call.ended) {
                (Fault::Timeout, Some(ended)) => ended - call.began,
                _ => Duration::ZERO,
            };
            let mut faults = key.clone();
            faults.remove(position);
            let trial = Trial {
                fault: fault.clone(),
                effect: effect(finished, index),
                held,
            };
            let contexts = self.contexts.entry(index.clone()).or_default();
            match contexts.iter_mut().find(|c| c.faults == faults) {
                Some(context) => context.tried.push(trial),
                None => contexts.push(Context {
                    faults,
                    tried: vec![trial],
                }),
            }
        }
        for call_index in above(&key) {
            let Some(call) = finished.calls.iter().find(|c| c.index == call_index) else {
                continue;
            };
            let (faults, context) = split_at(&key, &call_index);
            let held = finished
                .calls
                .iter()
                .filter(|c| faults.iter().any(|(at, f)| at == &c.index && !f.is_fast()))
                .filter_map(|c| Some(c.ended? - c.began))
                .sum();
            self.below
                .entry(call_index.clone())
                .or_default()
                .push(BelowTrial {
                    site: Arc::clone(&call.site),
                    context,
                    faults,
                    effect: effect(finished, &call_index),
                    held,
                    answered: matches!(call.outcome, Outcome::Status(_) | Outcome::Grpc(_)),
                });
        }
        self.runs.insert(key, finished.number);
    }

    /// A fault of `plan` that what ran says can be replaced by a cheaper
    /// one, or dropped: the cheapest such replacement of the first such
    /// fault. `ran` gives a finished execution by number.
    pub fn cheaper<'a>(
        &self,
        plan: &Plan,
        ran: impl Fn(usize) -> Option<&'a Finished>,
    ) -> Option<Cheaper> {
        self.cheaper_fault(plan, ran)
            .or_else(|| self.cheaper_than_below(plan))
    }

    /// Faults below a call the plan does not fault that, in a context the
    /// plan holds, had the effect of a fault tried on the call itself.
    fn cheaper_than_below(&self, plan: &Plan) -> Option<Cheaper> {
        let key = plan.key();
        above(&key).into_iter().find_map(|call| {
            let (faults, _) = split_at(&key, &call);
            let trials = self.below.get(&call)?;
            let same = |t: &&BelowTrial| t.faults == faults;
            // Evidence from a context the plan holds; failing that, where
            // the call answered a status and a status tried on it had the
            // same effect, from any context: statuses a caller treats
            // alike, it treats alike with others failing too.
            let (trial, statuses_only) = trials
                .iter()
                .filter(same)
                .find(|t| t.context.iter().all(|c| key.contains(c)))
                .map(|t| (t, false))
                .or_else(|| {
                    trials
                        .iter()
                        .filter(same)
                        .find(|t| t.answered && t.fast())
                        .map(|t| (t, true))
                })?;
            let context = self
                .contexts
                .get(&call)?
                .iter()
                .find(|c| c.faults == trial.context)?;
            context
                .tried
                .iter()
                .filter(|t| t.effect == trial.effect && t.fault.is_fast() == trial.fast())
                .filter(|t| !statuses_only || t.fault.kind() == FaultKind::Status)
                .min_by_key(|t| t.cost())
                .map(|t| Cheaper {
                    index: call.clone(),
                    below: Some(Arc::clone(&trial.site)),
                    instead: Some(t.fault.clone()),
                    rule: Rule::EquivalentFault,
                    held: trial.held.saturating_sub(t.held),
                })
        })
    }

    /// A fault of the plan that a cheaper one, or none, stands for.
    fn cheaper_fault<'a>(
        &self,
        plan: &Plan,
        ran: impl Fn(usize) -> Option<&'a Finished>,
    ) -> Option<Cheaper> {
        plan.faults.values().find_map(|planned| {
            let request = planned.index.parent();
            // The plan's other faults that the caller meets while serving
            // the same request (a retry's, a fallback's, a sibling's).
            let met = |index: &ExecutionIndex| {
                index != &planned.index
                    && request.as_ref().is_none_or(|request| index.within(request))
            };
            // Evidence from a context the plan holds: each of its faults
            // planned, as the same fault or, for faults the caller meets,
            // as one of the same kind.
            let holds = |context: &Context| {
                context.faults.iter().all(|(index, fault)| {
                    plan.faults.get(index).is_some_and(|p| {
                        &p.fault == fault || (met(index) && p.fault.kind() == fault.kind())
                    })
                })
            };
            // A caller may act on how faults it meets failed together (any
            // one of three replicas will do; a timeout spent the time
            // budget the retry needed): a fault of another kind, or none,
            // stands for this one only where evidence saw them all.
            let saw_all_met = |context: &Context| {
                plan.faults
                    .keys()
                    .filter(|index| met(index))
                    .all(|other| context.faults.iter().any(|(index, _)| index == other))
            };
            self.contexts
                .get(&planned.index)?
                .iter()
                .filter(|context| holds(context))
                .find_map(|context| {
                    let tried = context.tried.iter().find(|t| t.fault == planned.fault)?;
                    let across_kinds = saw_all_met(context);
                    let absorbed = across_kinds
                        && self
                            .runs
                            .get(&context.faults)
                            .and_then(|&n| ran(n))
                            .is_some_and(|baseline| {
                                baseline.calls.iter().any(|c| c.index == planned.index)
                                    && effect(baseline, &planned.index) == tried.effect
                            });
                    if absorbed {
                        return Some(Cheaper {
                            index: planned.index.clone(),
                            below: None,
                            instead: None,
                            rule: Rule::NoImpact,
                            held: tried.held,
                        });
                    }
                    // Statuses a caller treats alike alone, it treats alike
                    // with others failing too.
                    context
                        .tried
                        .iter()
                        .filter(|t| t.effect == tried.effect && t.cost() < tried.cost())
                        .filter(|t| across_kinds || t.fault.is_fast() == tried.fault.is_fast())
                        .min_by_key(|t| t.cost())
                        .map(|t| Cheaper {
                            index: planned.index.clone(),
                            below: None,
                            instead: Some(t.fault.clone()),
                            rule: Rule::EquivalentFault,
                            held: tried.held.saturating_sub(t.held),
                        })
                })
        })
    }
}

/// What a fault costs to try, cheapest first: a refused connect is over at
/// once, a status needs the request sent, a reset a connection set up and
/// torn down, a delay spends its time, a timeout waits for the caller to
/// give up; time measured holding the call, then the fault itself, break
/// ties.
fn cost(fault: &Fault, held: Duration) -> (u8, Duration, &Fault) {
    let rank = match fault {
        Fault::ConnectionRefused => 0,
        Fault::HttpStatus(_) | Fault::GrpcStatus(_) => 1,
        Fault::ConnectionReset | Fault::StreamReset | Fault::Truncated => 2,
        Fault::Delay(_) => 3,
        Fault::Timeout => 4,
    };
    (rank, held, fault)
}

/// The effect on everything but the call at `of` and what it led to: how
/// each other call ended, in index order (concurrent calls come in any
/// order), and the test's verdict.
fn effect(run: &Finished, of: &ExecutionIndex) -> u64 {
    let mut rest: Vec<(&ExecutionIndex, &Outcome)> = run
        .calls
        .iter()
        .filter(|c| !c.index.within(of))
        .map(|c| (&c.index, &c.outcome))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    // Compared within one run only: the standard hasher, unkeyed, will do.
    let mut hasher = DefaultHasher::new();
    run.passed.hash(&mut hasher);
    rest.hash(&mut hasher);
    hasher.finish()
}
