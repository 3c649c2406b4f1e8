//! The proxy's hold on a call it carries, from its admission to its
//! outcome. However the call ends (answered, failed upstream, held for a
//! timeout fault until its execution ends, or abandoned by a caller that
//! hung up), ending it is one trip to the session, made when the hold is
//! dropped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{CallHandle, Session};
use crate::explore::Outcome;

/// A call the proxy forwards or holds. Dropped before it was answered, it
/// ends as abandoned: its caller hung up while it waited.
pub struct Call {
    session: Arc<Session>,
    handle: CallHandle,
    /// How the call ended, and when, once its answer is seen.
    answer: Option<(Outcome, Instant)>,
    /// Since when it is held for a timeout fault.
    held_since: Option<Instant>,
}

impl Session {
    /// The proxy's hold on `handle`, admitted to be forwarded or held (an
    /// answer injected in the callee's place is the call's outcome
    /// already).
    pub fn carry(self: &Arc<Self>, handle: CallHandle) -> Call {
        Call {
            session: self.clone(),
            handle,
            answer: None,
            held_since: None,
        }
    }

    /// The time `cell` spent holding calls so far.
    pub fn held(&self, cell: usize) -> Duration {
        self.lock().cells[cell].held
    }
}

impl Call {
    /// The callee answered `outcome`, now; recorded when the call is
    /// dropped. A later answer replaces it: a gRPC call's status comes in
    /// the trailers after its headers.
    pub fn answered(&mut self, outcome: Outcome) {
        self.answer = Some((outcome, Instant::now()));
    }

    /// The call ended with `outcome`.
    pub fn finish(mut self, outcome: Outcome) {
        self.answered(outcome);
    }

    /// Holds the call until the execution it belongs to ends, or until its
    /// caller hangs up, which drops this future and ends the call then.
    pub async fn hold(mut self) {
        self.held_since = Some(Instant::now());
        let execution = self.handle.execution;
        let mut running = self.session.running.subscribe();
        let _ = running
            .wait_for(|running| !running.contains(&execution))
            .await;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let (outcome, at) = self
            .answer
            .take()
            .unwrap_or_else(|| (Outcome::Abandoned, Instant::now()));
        let mut state = self.session.lock();
        if let Some(since) = self.held_since {
            state.cells[self.handle.cell].held += since.elapsed();
        }
        // A refusal the callee met while serving this call was reported
        // before the callee could answer: record it while its parent is
        // still being served. (After the execution ended, nothing is
        // recorded: a call held to the end was never given up on.)
        Session::absorb_events(&mut state);
        Session::finish_at(&mut state, self.handle, outcome, at);
    }
}
