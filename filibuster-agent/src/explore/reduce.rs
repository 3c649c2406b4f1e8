//! Dynamic reduction, as Filibuster defines it.
//!
//! Group the calls of a scheduled execution's prefix by parent (the calls
//! one request made, or the test's own calls). The execution is redundant
//! when, for every group, one earlier execution already had all of that
//! group's calls with the outcomes this one would give them: each call to
//! be faulted failed the same way there (injected, or on its own, as when
//! a service answers 503 because its dependency failed), and each call not
//! to be faulted was not faulted there.

use std::collections::BTreeMap;

use super::{ExecutionIndex, Finished, Plan};

pub(super) fn should_prune(plan: &Plan, ran: &[Finished]) -> bool {
    let mut groups: BTreeMap<Option<ExecutionIndex>, Vec<&ExecutionIndex>> = BTreeMap::new();
    groups.entry(None).or_default();
    for index in &plan.prefix {
        groups.entry(index.parent()).or_default().push(index);
    }
    groups.values().all(|children| {
        ran.iter()
            .any(|earlier| already_seen(plan, children, earlier))
    })
}

fn already_seen(plan: &Plan, children: &[&ExecutionIndex], earlier: &Finished) -> bool {
    children.iter().all(|index| {
        earlier.calls.iter().any(|call| {
            &call.index == *index
                && match plan.faults.get(*index) {
                    Some(planned) => match &call.injected {
                        Some(injected) => *injected == planned.fault,
                        None => planned.fault.matches_organic(&call.outcome),
                    },
                    None => call.injected.is_none(),
                }
        })
    })
}
