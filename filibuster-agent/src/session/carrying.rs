//! Connections the proxy carries that an execution may need ended, by
//! caller and destination:
//! - pass-through connections (a protocol the proxy does not speak): each
//!   was one call when it opened, and a pool may keep it for every later
//!   one. When an execution plans a fault on its caller and destination,
//!   it is reset, so that the caller reconnects and the planned call
//!   happens (as for a destroyed observed connection);
//! - HTTP/2 connections to a destination the kernel can observe: a gRPC
//!   channel keeps its first connection for as long as it lives, so the
//!   one that taught the agent what the destination speaks would carry
//!   every later call through the proxy. When an execution plans no fault
//!   on its caller and destination, it is closed gracefully (GOAWAY; the
//!   streams under way finish), and the caller reconnects directly.

use filibuster_common::ConnectKey;
use foldhash::HashMap;
use tokio::sync::oneshot;

use super::Session;

/// Which connections a registration is among.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Carried {
    /// Passed through: ended when a fault is planned on its pair.
    PassedThrough,
    /// HTTP/2 to an observable destination: ended when none is.
    Observable,
}

/// The open connections of each kind, by caller and destination.
#[derive(Default)]
pub(super) struct Carrying {
    next: u64,
    open: HashMap<(Carried, ConnectKey), HashMap<u64, oneshot::Sender<()>>>,
}

impl Carrying {
    /// Ends the pass-through connections of these callers to these
    /// destinations (`faulted`), and the observable ones of `callers` to
    /// any other; returns how many pass-through ones it reset.
    pub(super) fn end(&mut self, faulted: &[ConnectKey], callers: &[u64]) -> usize {
        let ending: Vec<(Carried, ConnectKey)> = self
            .open
            .keys()
            .filter(|(carried, pair)| match carried {
                Carried::PassedThrough => faulted.contains(pair),
                Carried::Observable => callers.contains(&pair.cgroup_id) && !faulted.contains(pair),
            })
            .copied()
            .collect();
        let mut reset = 0;
        for key in ending {
            for (_, end) in self.open.remove(&key).into_iter().flatten() {
                let sent = end.send(()).is_ok();
                reset += usize::from(sent && key.0 == Carried::PassedThrough);
            }
        }
        reset
    }
}

/// A carried connection's registration, undone when dropped; `end`
/// completes when an execution needs it gone.
pub struct CarryingGuard<'a> {
    session: &'a Session,
    key: (Carried, ConnectKey),
    id: u64,
    pub end: oneshot::Receiver<()>,
}

impl Session {
    /// Registers a connection of `pair`'s caller to its destination that
    /// the proxy carries.
    pub fn carrying(&self, carried: Carried, pair: ConnectKey) -> CarryingGuard<'_> {
        let (end, ending) = oneshot::channel();
        let mut state = self.lock();
        let carrying = &mut state.carrying;
        let id = carrying.next;
        carrying.next += 1;
        let key = (carried, pair);
        carrying.open.entry(key).or_default().insert(id, end);
        CarryingGuard {
            session: self,
            key,
            id,
            end: ending,
        }
    }
}

impl Drop for CarryingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.session.lock();
        if let Some(open) = state.carrying.open.get_mut(&self.key) {
            open.remove(&self.id);
            if open.is_empty() {
                state.carrying.open.remove(&self.key);
            }
        }
    }
}
