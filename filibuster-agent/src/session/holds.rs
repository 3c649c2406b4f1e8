//! Calls held for timeout faults, until their callers give up or their
//! execution ends; forwarded calls whose callers hang up.

use std::time::{Duration, Instant};

use super::{CallHandle, Session};
use crate::explore::Outcome;

/// See [`Session::forwarding`].
pub struct Forwarding<'a> {
    session: &'a Session,
    call: Option<CallHandle>,
}

impl Forwarding<'_> {
    /// The forwarded call came back (its outcome is recorded elsewhere).
    pub fn done(mut self) {
        self.call = None;
    }
}

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call {
            let mut state = self.session.lock();
            Session::finish(&mut state, call, Outcome::Abandoned);
        }
    }
}

impl Session {
    /// Holds `call` until the execution it belongs to ends, or until its
    /// caller hangs up, which drops this future and ends the call then.
    pub async fn hold(&self, call: CallHandle) {
        struct Accounting<'a> {
            session: &'a Session,
            since: Instant,
            call: CallHandle,
        }
        impl Drop for Accounting<'_> {
            fn drop(&mut self) {
                let mut state = self.session.lock();
                state.cells[self.call.cell].held += self.since.elapsed();
                // After the execution ended, this records nothing: the
                // call was held to the end, never given up on.
                let outcome = Outcome::Abandoned;
                Session::record_outcome(&mut state, self.call, outcome, Instant::now());
            }
        }
        let _accounting = Accounting {
            session: self,
            since: Instant::now(),
            call,
        };
        let mut running = self.running.subscribe();
        let _ = running
            .wait_for(|running| !running.contains(&call.execution))
            .await;
    }

    /// A call forwarded to its callee, ended as abandoned if it is dropped
    /// before [`Forwarding::done`]: its caller hung up while it waited.
    pub fn forwarding(&self, call: CallHandle) -> Forwarding<'_> {
        Forwarding {
            session: self,
            call: Some(call),
        }
    }

    /// The time `cell` spent holding calls so far.
    pub fn held(&self, cell: usize) -> Duration {
        self.lock().cells[cell].held
    }
}
