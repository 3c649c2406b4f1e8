//! The executions waiting to run, and which of them runs next.

use std::cmp::Reverse;

use foldhash::{HashMap, HashSet};

use super::{ExecutionIndex, Fault, FaultKind, Finished, Outcome, Plan};

/// What finished executions say about the order of the rest.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The kinds of fault executions that passed had injected, by the
    /// caller that met them: what each caller was seen to survive (one
    /// status handled says the caller checks statuses).
    survived: HashMap<String, HashSet<FaultKind>>,
    /// Error statuses services answered on their own (a callee failed):
    /// the answers a call's own failure below it may show.
    organic: HashSet<Fault>,
}

impl Seen {
    pub fn record(&mut self, finished: &Finished) {
        for call in &finished.calls {
            match &call.injected {
                Some(fault) if finished.passed => {
                    self.survived
                        .entry(call.site.caller.clone())
                        .or_default()
                        .insert(fault.kind());
                }
                Some(_) => {}
                None => {
                    let fault = match call.outcome {
                        Outcome::Status(code) if code >= 500 => Fault::HttpStatus(code),
                        Outcome::Grpc(code) if code != 0 => Fault::GrpcStatus(code),
                        _ => continue,
                    };
                    self.organic.insert(fault);
                }
            }
        }
    }
}

/// Which scheduled execution runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Order {
    /// Filibuster's: the one scheduled last.
    DepthFirst,
    /// The one likeliest to fail, once the calls below its faulted ones
    /// had their faults tried (with no more faults at once) where it
    /// plans a status services were seen to answer on their own: a
    /// callee's failure may show the call answering it, making the
    /// plan's fault redundant. Then fewest faults of a kind (connection
    /// error, status, timeout) its caller was already seen to survive, then
    /// fewest faults, then connection errors before statuses before
    /// timeouts (cheapest first too), then the one
    /// scheduled last (as depth first: a deeper call's faults first, whose
    /// outcomes let reduction skip its caller's).
    BugsFirst,
}

#[derive(Debug)]
pub(super) struct Pending {
    order: Order,
    /// With the number each was scheduled as.
    plans: Vec<(u64, Plan)>,
    scheduled: u64,
}

impl Pending {
    pub fn new(order: Order, first: Plan) -> Self {
        Self {
            order,
            plans: vec![(0, first)],
            scheduled: 1,
        }
    }

    pub fn push(&mut self, plan: Plan) {
        self.plans.push((self.scheduled, plan));
        self.scheduled += 1;
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    /// The plans waiting, in no particular order.
    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        self.plans.iter().map(|(_, plan)| plan)
    }

    /// The calls with faults planned below them by waiting plans, each with
    /// the fewest faults such a plan has.
    fn waiting_below(&self) -> HashMap<ExecutionIndex, usize> {
        let mut waiting: HashMap<ExecutionIndex, usize> = HashMap::default();
        for (_, plan) in &self.plans {
            for fault in plan.faults() {
                for call in std::iter::successors(fault.index.parent(), ExecutionIndex::parent) {
                    let fewest = waiting.entry(call).or_insert(usize::MAX);
                    *fewest = (*fewest).min(plan.faults.len());
                }
            }
        }
        waiting
    }

    /// The next plan to run of those not `held_back` (waiting on a result
    /// not in yet).
    pub fn pop(&mut self, seen: &Seen, held_back: impl Fn(&Plan) -> bool) -> Option<Plan> {
        let at = match self.order {
            Order::DepthFirst => self.plans.iter().rposition(|(_, plan)| !held_back(plan))?,
            // A scan per dispatch: pending plans number in the thousands
            // at most, an execution takes milliseconds at least, and what
            // was survived changes the order as results come in.
            Order::BugsFirst => {
                let waiting = self.waiting_below();
                let key = |(scheduled, plan): &(u64, Plan)| {
                    let faults = || plan.faults();
                    let blocked = faults().any(|f| {
                        seen.organic.contains(&f.fault)
                            && waiting
                                .get(&f.index)
                                .is_some_and(|&fewest| fewest <= plan.faults.len())
                    });
                    let survived = faults()
                        .filter(|f| {
                            seen.survived
                                .get(&f.site.caller)
                                .is_some_and(|kinds| kinds.contains(&f.fault.kind()))
                        })
                        .count();
                    let kinds: u32 = faults().map(|f| f.fault.kind() as u32).sum();
                    (
                        blocked,
                        survived,
                        plan.faults.len(),
                        kinds,
                        Reverse(*scheduled),
                    )
                };
                self.plans
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, plan))| !held_back(plan))
                    .min_by_key(|(_, entry)| key(entry))?
                    .0
            }
        };
        Some(self.plans.swap_remove(at).1)
    }
}
