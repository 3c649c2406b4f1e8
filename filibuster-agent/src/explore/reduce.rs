//! Dynamic reduction, as Filibuster defines it (an execution whose log
//! may miss calls, the kernel having lost events, shows nothing).
//!
//! Group the calls of a scheduled execution's prefix by parent (the calls
//! one request made, or the test's own calls). The execution is redundant
//! when, for every group, one earlier execution already had all of that
//! group's calls with the outcomes this one would give them: each call to
//! be faulted failed the same way there (injected, or on its own, as when
//! a service answers 503 because its dependency failed), and each call not
//! to be faulted was not faulted there.
//!
//! Strict (the guided search): in a group where more than one call fails
//! or has planned faults below it, a call not to be faulted that has
//! planned faults below it will answer however they make it answer, which
//! the plan cannot tell; the earlier execution must have had the same
//! faults below it, or have shown the calls below it failing as this
//! plan's faults would fail them (it then answers as it did). Filibuster's own rule takes any execution where it was
//! not faulted, and so skips, in a service that retries, a timeout on the
//! first attempt combined with a failure below the second, and failures in
//! two branches that meet at their caller.

use std::collections::BTreeMap;

use super::{ExecutionIndex, Fault, Finished, Plan, PlannedFault};

pub(super) fn should_prune(plan: &Plan, ran: &[Finished], strict: bool) -> bool {
    let mut groups: BTreeMap<Option<ExecutionIndex>, Vec<&ExecutionIndex>> = BTreeMap::new();
    groups.entry(None).or_default();
    for index in &plan.prefix {
        groups.entry(index.parent()).or_default().push(index);
    }
    groups.values().all(|children| {
        // Strict where the caller meets more than one failure: how each
        // of its calls answers may then matter in combination.
        let failing = children
            .iter()
            .filter(|child| plan.faults.keys().any(|at| at.within(child)))
            .count();
        let strict = strict && failing > 1;
        ran.iter()
            .filter(|earlier| earlier.lost_events == 0)
            .any(|earlier| already_seen(plan, children, earlier, strict))
    })
}

fn already_seen(
    plan: &Plan,
    children: &[&ExecutionIndex],
    earlier: &Finished,
    strict: bool,
) -> bool {
    children.iter().all(|index| {
        earlier.calls.iter().any(|call| {
            &call.index == *index
                && match plan.faults.get(*index) {
                    Some(planned) => match &call.injected {
                        Some(injected) => *injected == planned.fault,
                        None => planned.fault.matches_organic(&call.outcome),
                    },
                    None => {
                        call.injected.is_none()
                            && (!strict
                                || same_faults_below(plan, index, earlier)
                                || shows_below(plan, index, earlier))
                    }
                }
        })
    })
}

/// Whether `earlier` injected exactly the faults `plan` plans below the
/// call at `index`.
fn same_faults_below(plan: &Plan, index: &ExecutionIndex, earlier: &Finished) -> bool {
    faults_below(plan.faults.values(), index) == faults_below(earlier.faults.iter(), index)
}

/// Whether the calls made for the call at `index` met in `earlier` the
/// failures `plan`'s faults below it would give them (injected the same,
/// or the same on their own: a 503 its callee's failure caused), with no
/// other fault of `earlier` there but below those calls: the call then
/// saw what it will see, and answers as it did.
fn shows_below(plan: &Plan, index: &ExecutionIndex, earlier: &Finished) -> bool {
    let planned: Vec<&PlannedFault> = plan
        .faults
        .values()
        .filter(|p| p.index != *index && p.index.within(index))
        .collect();
    let failed_alike = |p: &&PlannedFault| {
        earlier.calls.iter().any(|call| {
            call.index == p.index
                && match &call.injected {
                    Some(injected) => *injected == p.fault,
                    None => p.fault.matches_organic(&call.outcome),
                }
        })
    };
    !planned.is_empty()
        && planned.iter().all(failed_alike)
        && earlier
            .faults
            .iter()
            .filter(|f| f.index != *index && f.index.within(index))
            .all(|f| planned.iter().any(|p| f.index.within(&p.index)))
}

/// The faults of `faults` on calls made, at any depth, for the call at
/// `index`, in order.
fn faults_below<'a>(
    faults: impl Iterator<Item = &'a PlannedFault>,
    index: &ExecutionIndex,
) -> Vec<(&'a ExecutionIndex, &'a Fault)> {
    let mut below: Vec<_> = faults
        .filter(|p| p.index != *index && p.index.within(index))
        .map(|p| (&p.index, &p.fault))
        .collect();
    below.sort();
    below
}
