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

use std::collections::{BTreeMap, BTreeSet};

use super::{ExecutionIndex, Fault, Finished, Plan, PlannedFault};

pub(super) fn should_prune(plan: &Plan, ran: &[Finished], strict: bool) -> bool {
    let mut groups: BTreeMap<Option<ExecutionIndex>, BTreeSet<&ExecutionIndex>> = BTreeMap::new();
    groups.entry(None).or_default();
    // The plan's faults too: a call made at once with another (threads,
    // async) may come after it in the execution that scheduled the plan,
    // so out of its prefix, and still be planned to fail.
    for index in plan.prefix.iter().chain(plan.faults.keys()) {
        groups.entry(index.parent()).or_default().insert(index);
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
    children: &BTreeSet<&ExecutionIndex>,
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

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use super::*;
    use crate::explore::{CallId, CallRecord, CallSite, Outcome, Protocol};

    fn site(callee: &str) -> CallSite {
        CallSite {
            caller: "shop".into(),
            callee: callee.into(),
            protocol: Protocol::Http,
            method: "GET".into(),
            target: format!("/{callee}"),
        }
    }

    #[test]
    fn a_planned_fault_made_at_once_with_another_call_counts_though_out_of_the_prefix() {
        let shop = ExecutionIndex::default().child(1, 1);
        let (stock, pricing) = (shop.child(2, 1), shop.child(3, 1));
        let delayed = |index: &ExecutionIndex, callee| PlannedFault {
            index: index.clone(),
            site: site(callee),
            fault: Fault::Delay(1600),
        };
        let call = |index: &ExecutionIndex, parent, injected| CallRecord {
            index: index.clone(),
            parent,
            site: Arc::new(site("any")),
            injected,
            outcome: Outcome::Status(200),
            connection: None,
            connect_ordinal: None,
            began: Instant::now(),
            ended: None,
            setup: false,
        };
        // Stock alone was delayed before.
        let earlier = Finished {
            number: 2,
            faults: vec![delayed(&stock, "stock")],
            calls: vec![
                call(&shop, None, None),
                call(&stock, Some(CallId(0)), Some(Fault::Delay(1600))),
                call(&pricing, Some(CallId(0)), None),
            ],
            passed: true,
            vanished: Vec::new(),
            lost_events: 0,
        };
        // Both delayed, scheduled where stock's call came before pricing's
        // (the two are made at once): pricing is out of the prefix.
        let plan = Plan {
            faults: [
                (stock.clone(), delayed(&stock, "stock")),
                (pricing.clone(), delayed(&pricing, "pricing")),
            ]
            .into_iter()
            .collect(),
            prefix: vec![shop.clone(), stock.clone()],
            origin: Some(3),
        };
        // Before: skipped, as if stock alone stood for both.
        assert!(!should_prune(&plan, std::slice::from_ref(&earlier), false));
        assert!(!should_prune(&plan, std::slice::from_ref(&earlier), true));
    }
}
