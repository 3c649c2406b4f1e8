//! Connections whose callers have said nothing yet, held open with their
//! callee's connection (see [`super::tcp::first_to_speak`]): two
//! descriptors each, and no call on them. When the proxy runs out of
//! descriptors it closes the oldest of them, as a server's idle timeout
//! would (pooling clients reconnect), so that connections carrying calls
//! go on being accepted.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

/// One proxy thread's idle connections, oldest first.
#[derive(Clone, Default)]
pub(super) struct Idle(Arc<Mutex<Waiting>>);

#[derive(Default)]
struct Waiting {
    next: u64,
    /// By age: each one's way of being told to close.
    connections: BTreeMap<u64, oneshot::Sender<()>>,
}

/// An idle connection's registration, undone when dropped; `evicted`
/// completes when the proxy needs its descriptors back.
pub(super) struct IdleGuard {
    idle: Idle,
    age: u64,
    pub(super) evicted: oneshot::Receiver<()>,
}

impl Idle {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn enter(&self) -> IdleGuard {
        let (evict, evicted) = oneshot::channel();
        let mut waiting = self.waiting();
        let age = waiting.next;
        waiting.next += 1;
        waiting.connections.insert(age, evict);
        IdleGuard {
            idle: self.clone(),
            age,
            evicted,
        }
    }

    /// Closes the older half of the idle connections (at least one).
    pub(super) fn evict_oldest(&self) {
        let mut waiting = self.waiting();
        let count = waiting.connections.len().div_ceil(2);
        for _ in 0..count {
            if let Some((_, evict)) = waiting.connections.pop_first() {
                let _ = evict.send(());
            }
        }
    }

    /// Closes them all: the proxy is stopping, and they carry no call to
    /// wait for.
    pub(super) fn evict_all(&self) {
        for (_, evict) in std::mem::take(&mut self.waiting().connections) {
            let _ = evict.send(());
        }
    }
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        self.idle.waiting().connections.remove(&self.age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connections_are_closed_first() {
        let idle = Idle::default();
        let mut guards: Vec<IdleGuard> = (0..5).map(|_| idle.enter()).collect();
        drop(guards.remove(1));
        idle.evict_oldest();
        let evicted: Vec<bool> = guards
            .iter_mut()
            .map(|g| g.evicted.try_recv().is_ok())
            .collect();
        // Four left (ages 0, 2, 3, 4): the older two go.
        assert_eq!(evicted, [true, true, false, false]);
        idle.evict_all();
        assert!(guards[2..].iter_mut().all(|g| g.evicted.try_recv().is_ok()));
    }
}
