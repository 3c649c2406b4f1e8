//! Connections the proxy passes through byte for byte (a protocol it does
//! not speak): each was one call when it opened, and a pool may keep it
//! for every later one. When an execution plans a fault on its caller and
//! destination, it is reset, so that the caller reconnects and the
//! planned call happens (as for a destroyed observed connection).

use filibuster_common::ConnectKey;
use foldhash::HashMap;
use tokio::sync::oneshot;

use super::Session;

/// The open pass-through connections, by caller and destination.
#[derive(Default)]
pub(super) struct Passing {
    next: u64,
    open: HashMap<ConnectKey, HashMap<u64, oneshot::Sender<()>>>,
}

impl Passing {
    /// Resets the connections of these callers to these destinations.
    pub(super) fn reset(&mut self, pairs: &[ConnectKey]) {
        for pair in pairs {
            for (_, reset) in self.open.remove(pair).into_iter().flatten() {
                let _ = reset.send(());
            }
        }
    }
}

/// A pass-through connection's registration, undone when dropped;
/// `reset` completes when an execution needs it gone.
pub struct PassingGuard<'a> {
    session: &'a Session,
    key: ConnectKey,
    id: u64,
    pub reset: oneshot::Receiver<()>,
}

impl Session {
    /// Registers a connection of `key`'s caller to its destination that
    /// the proxy passes through.
    pub fn passing(&self, key: ConnectKey) -> PassingGuard<'_> {
        let (reset, resetting) = oneshot::channel();
        let mut state = self.lock();
        let passing = &mut state.passing;
        let id = passing.next;
        passing.next += 1;
        passing.open.entry(key).or_default().insert(id, reset);
        PassingGuard {
            session: self,
            key,
            id,
            reset: resetting,
        }
    }
}

impl Drop for PassingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.session.lock();
        if let Some(open) = state.passing.open.get_mut(&self.key) {
            open.remove(&self.id);
            if open.is_empty() {
                state.passing.open.remove(&self.key);
            }
        }
    }
}
