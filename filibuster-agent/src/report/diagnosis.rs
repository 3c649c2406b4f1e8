//! Why a failing execution failed, where the calls the agent saw say more
//! than the test's verdict: a timeout budget that leaves a service no room
//! to handle its dependency's timeout, or a hang (what the services kept
//! doing while the test never finished). Pure: read off an execution's
//! call log and its timings.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    time::Instant,
};

use serde::{Deserialize, Serialize};

use crate::explore::{CallRecord, CallSite, Fault, Outcome};

/// What a failure's calls show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Diagnosis {
    /// `caller` gave up on its call to `callee` while `callee` still waited
    /// on its own call to `waited_on`, which a timeout fault held: the
    /// caller's timeout is no longer than the callee's, so the callee never
    /// gets to answer gracefully. Only real timeouts show this: a tool that
    /// raises a timeout at once in the callee leaves it all the time it
    /// needs.
    TimeoutBudget {
        caller: String,
        callee: String,
        waited_on: String,
        gave_up_after_seconds: f64,
        held_seconds: f64,
    },
    /// The test did not finish within the execution timeout; what the
    /// services did meanwhile, the busiest call sites first.
    Hang {
        seconds: f64,
        activity: Vec<Activity>,
    },
}

/// Calls of one site during a hang.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub caller: String,
    pub callee: String,
    /// "GET /exports/alice", or "" for a TCP connection.
    pub call: String,
    pub count: usize,
    /// How they ended ("200", "injected timeout", "unfinished"), with counts.
    pub outcomes: BTreeMap<String, usize>,
    /// Calls held by a timeout fault that their caller never gave up on.
    pub held_to_the_end: usize,
}

/// The call sites shown for a hang.
const BUSIEST: usize = 3;

/// The diagnosis of a failed execution whose test ran from `began` to
/// `ended` (`timed_out`: it was stopped at the execution timeout), if its
/// calls show one.
pub fn diagnose(
    calls: &[CallRecord],
    timed_out: bool,
    (began, ended): (Instant, Instant),
) -> Option<Diagnosis> {
    timeout_budget(calls, ended).or_else(|| timed_out.then(|| hang(calls, began, ended)))
}

/// A call held by a timeout fault while its parent's caller gave up on the
/// parent without an answer: the callee was still waiting on the held call,
/// or had not had the time to answer after giving up on it. (Which of the
/// two is a matter of milliseconds when the timeouts are equal, finer than
/// the moments the agent sees can be ordered: both mean the parent's caller
/// left the callee no time.)
fn timeout_budget(calls: &[CallRecord], ended: Instant) -> Option<Diagnosis> {
    calls.iter().find_map(|held| {
        if held.injected != Some(Fault::Timeout) {
            return None;
        }
        let parent = &calls[held.parent?.position()];
        let gave_up = parent
            .ended
            .filter(|_| parent.outcome == Outcome::Abandoned)?;
        let released = held.ended.unwrap_or(ended);
        (held.began <= gave_up).then(|| Diagnosis::TimeoutBudget {
            caller: parent.site.caller.clone(),
            callee: parent.site.callee.clone(),
            waited_on: held.site.callee.clone(),
            gave_up_after_seconds: gave_up
                .saturating_duration_since(parent.began)
                .as_secs_f64(),
            held_seconds: released.saturating_duration_since(held.began).as_secs_f64(),
        })
    })
}

fn hang(calls: &[CallRecord], began: Instant, ended: Instant) -> Diagnosis {
    let mut sites: Vec<Activity> = Vec::new();
    let mut position: HashMap<&CallSite, usize> = HashMap::new();
    for call in calls {
        let at = *position.entry(&call.site).or_insert_with(|| {
            let what = format!("{} {}", call.site.method, call.site.target);
            sites.push(Activity {
                caller: call.site.caller.clone(),
                callee: call.site.callee.clone(),
                call: what.trim().to_string(),
                count: 0,
                outcomes: BTreeMap::new(),
                held_to_the_end: 0,
            });
            sites.len() - 1
        });
        let site = &mut sites[at];
        site.count += 1;
        *site.outcomes.entry(call.outcome.to_string()).or_default() += 1;
        if call.injected == Some(Fault::Timeout) && call.ended.is_none() {
            site.held_to_the_end += 1;
        }
    }
    // Held calls first (the likeliest cause), then by how busy.
    sites.sort_by_key(|a| (a.held_to_the_end == 0, std::cmp::Reverse(a.count)));
    sites.truncate(BUSIEST);
    Diagnosis::Hang {
        seconds: ended.saturating_duration_since(began).as_secs_f64(),
        activity: sites,
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnosis::TimeoutBudget {
                caller,
                callee,
                waited_on,
                gave_up_after_seconds,
                held_seconds,
            } => write!(
                f,
                "timeout budget: {caller} gave up on {callee} after {gave_up_after_seconds:.1} s while {callee} still waited on {waited_on} (held {held_seconds:.1} s); {} timeout leaves {callee} no time to handle {} timeout",
                possessive(caller),
                possessive(waited_on),
            ),
            Diagnosis::Hang { seconds, activity } => {
                write!(
                    f,
                    "hang: the test did not finish in {seconds:.1} s; meanwhile"
                )?;
                if activity.is_empty() {
                    f.write_str(" no service made a call")?;
                }
                for site in activity {
                    let call = if site.call.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", site.call)
                    };
                    let outcomes: Vec<String> = site
                        .outcomes
                        .iter()
                        .map(|(outcome, n)| format!("{outcome} ×{}", thousands(*n)))
                        .collect();
                    write!(
                        f,
                        "\n  {} called {}{call} {} time{} ({})",
                        site.caller,
                        site.callee,
                        thousands(site.count),
                        if site.count == 1 { "" } else { "s" },
                        outcomes.join(", ")
                    )?;
                    if site.held_to_the_end > 0 {
                        write!(
                            f,
                            ": held by a timeout fault and never given up on, {} sets no timeout on it",
                            site.caller
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// "users" → "users'", "foo" → "foo's".
fn possessive(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}'")
    } else {
        format!("{name}'s")
    }
}

/// 2431 → "2,431".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::explore::{CallId, ExecutionIndex, Protocol};

    fn call(
        caller: &str,
        callee: &str,
        parent: Option<usize>,
        (began, ended): (u64, Option<u64>),
        outcome: Outcome,
        t0: Instant,
    ) -> CallRecord {
        let at = |ms| t0 + Duration::from_millis(ms);
        let injected = match &outcome {
            Outcome::Injected(fault) => Some(fault.clone()),
            _ => None,
        };
        CallRecord {
            index: ExecutionIndex::default(),
            parent: parent.map(CallId::at),
            site: Arc::new(CallSite {
                caller: caller.into(),
                callee: callee.into(),
                protocol: Protocol::Http,
                method: "GET".into(),
                target: format!("/{callee}"),
            }),
            injected,
            outcome,
            connection: None,
            connect_ordinal: None,
            began: at(began),
            ended: ended.map(at),
            setup: false,
        }
    }

    /// test → users → bookings → movies, movies held by a timeout fault
    /// for 1 s; users' call to bookings ends at `middle_end` ms as
    /// `middle`.
    fn chain(t0: Instant, middle_end: u64, middle: Outcome) -> [CallRecord; 3] {
        let held = Outcome::Injected(Fault::Timeout);
        [
            call(
                "test",
                "users",
                None,
                (0, Some(middle_end)),
                Outcome::Status(500),
                t0,
            ),
            call(
                "users",
                "bookings",
                Some(0),
                (5, Some(middle_end)),
                middle,
                t0,
            ),
            call("bookings", "movies", Some(1), (8, Some(1008)), held, t0),
        ]
    }

    #[test]
    fn equal_timeouts_at_two_hops_leave_the_middle_no_room() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_millis(1100);
        let calls = chain(t0, 1005, Outcome::Abandoned);
        let diagnosis = diagnose(&calls, false, (t0, end)).expect("a diagnosis");
        assert_eq!(
            diagnosis.to_string(),
            "timeout budget: users gave up on bookings after 1.0 s while bookings still waited on movies (held 1.0 s); users' timeout leaves bookings no time to handle movies' timeout"
        );
        // bookings' own timeout fired first and it answered: no budget
        // problem, and a plain failure has no diagnosis.
        let roomy = chain(t0, 1050, Outcome::Status(503));
        assert_eq!(diagnose(&roomy, false, (t0, end)), None);
    }

    #[test]
    fn a_hang_says_what_the_services_kept_doing() {
        let t0 = Instant::now();
        let mut calls = vec![
            call("test", "front", None, (0, None), Outcome::Unfinished, t0),
            call(
                "front",
                "back",
                Some(0),
                (1, Some(2)),
                Outcome::Status(202),
                t0,
            ),
        ];
        for i in 0..2431 {
            calls.push(call(
                "front",
                "back",
                Some(0),
                (3 + i, Some(4 + i)),
                Outcome::Status(200),
                t0,
            ));
            calls.last_mut().unwrap().site = Arc::new(CallSite {
                target: "/exports/alice".into(),
                ..(*calls[1].site).clone()
            });
        }
        let end = t0 + Duration::from_secs(30);
        let text = diagnose(&calls, true, (t0, end)).unwrap().to_string();
        assert!(
            text.starts_with("hang: the test did not finish in 30.0 s"),
            "{text}"
        );
        assert!(
            text.contains("front called back GET /exports/alice 2,431 times (200 ×2,431)"),
            "{text}"
        );

        // A call held to the end comes first, named as the likely cause.
        let calls = [
            call("test", "foo", None, (0, None), Outcome::Unfinished, t0),
            call(
                "foo",
                "bar",
                Some(0),
                (1, None),
                Outcome::Injected(Fault::Timeout),
                t0,
            ),
        ];
        let text = diagnose(&calls, true, (t0, end)).unwrap().to_string();
        assert!(
            text.contains("foo called bar GET /bar 1 time (injected timeout ×1): held by a timeout fault and never given up on, foo sets no timeout on it"),
            "{text}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(2431), "2,431");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
