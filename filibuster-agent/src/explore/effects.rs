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
//! Bodies are not part of an effect: most calls are read in the kernel,
//! which sees a response's status, not its body. A fault that only changes
//! a body (a default value in place of the callee's) counts as no impact.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use foldhash::HashMap;

use super::{ExecutionIndex, Fault, Finished, Outcome, Plan};

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
                        .filter(|t| across_kinds || t.fault.kind() == tried.fault.kind())
                        .min_by_key(|t| t.cost())
                        .map(|t| Cheaper {
                            index: planned.index.clone(),
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
/// torn down, a timeout waits for the caller to give up; time measured
/// holding the call, then the fault itself, break ties.
fn cost(fault: &Fault, held: Duration) -> (u8, Duration, &Fault) {
    let rank = match fault {
        Fault::ConnectionRefused => 0,
        Fault::HttpStatus(_) | Fault::GrpcStatus(_) => 1,
        Fault::ConnectionReset | Fault::StreamReset => 2,
        Fault::Timeout => 3,
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
