//! The executions waiting to run, and which of them runs next.

use std::cmp::Reverse;

use foldhash::{HashMap, HashSet};

use super::{FaultKind, Plan};

/// The kinds of fault executions that passed had injected, by the caller
/// that met them: what each caller was seen to survive (one status handled
/// says the caller checks statuses).
pub(super) type Survived = HashMap<String, HashSet<FaultKind>>;

/// Which scheduled execution runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Order {
    /// Filibuster's: the one scheduled last.
    DepthFirst,
    /// The one likeliest to fail: fewest faults of a kind (connection
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

    /// The next plan to run.
    pub fn pop(&mut self, survived: &Survived) -> Option<Plan> {
        let at = match self.order {
            Order::DepthFirst => self.plans.len().checked_sub(1)?,
            // A scan per dispatch: pending plans number in the thousands
            // at most, an execution takes milliseconds at least, and what
            // was survived changes the order as results come in.
            Order::BugsFirst => {
                let key = |(scheduled, plan): &(u64, Plan)| {
                    let faults = || plan.faults();
                    let survived = faults()
                        .filter(|f| {
                            survived
                                .get(&f.site.caller)
                                .is_some_and(|kinds| kinds.contains(&f.fault.kind()))
                        })
                        .count();
                    let kinds: u32 = faults().map(|f| f.fault.kind() as u32).sum();
                    (survived, plan.faults.len(), kinds, Reverse(*scheduled))
                };
                self.plans
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, entry)| key(entry))?
                    .0
            }
        };
        Some(self.plans.swap_remove(at).1)
    }
}
