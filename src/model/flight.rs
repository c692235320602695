//! Single-flight loads: one ZooKeeper read per node (or listing per directory) at a
//! time, however many requests want it, and a mark when a change is heard meanwhile.
//!
//! The view has no global lock across round trips (see `view.rs`): cold reads of
//! different nodes go side by side, and the event task applies events while reads
//! are in flight. What a lock used to guarantee — an event is never lost to a read
//! that it follows — comes from the mark instead: the event task marks the flight of
//! every path an event touches, under the tree's lock; the leader stores its result
//! under the same lock and, if the flight was marked, has the node re-read (or the
//! directory re-listed) by the event task, in order with the events. A read whose
//! answer the event task has not seen yet needs no mark: ZooKeeper answers a read only
//! after delivering the events before it, so such a read already shows the change, or
//! the change's event comes after the node is cached and is applied as usual.

use std::collections::HashMap;

use tokio::sync::watch;

use crate::error::Result;

/// What a flight ended with: `None` while it is in the air.
pub(crate) type Outcome = Option<Result<()>>;

/// What a request that wants a load does.
pub(crate) enum Join {
    /// Load it, then publish the outcome through this sender.
    Lead(watch::Sender<Outcome>),
    /// Wait for the leader's outcome.
    Follow(watch::Receiver<Outcome>),
}

struct Flight {
    /// A change to the path was heard while the load was in flight.
    dirty: bool,
    done: watch::Receiver<Outcome>,
}

/// The loads in flight, by path. Lives in the view's tree, behind its lock.
#[derive(Default)]
pub(crate) struct Flights {
    map: HashMap<String, Flight>,
}

impl Flights {
    /// Joins the load of `path`, leading it if none is in flight (or its leader is
    /// gone without an outcome).
    pub(crate) fn join(&mut self, path: &str) -> Join {
        if let Some(f) = self.map.get(path) {
            if f.done.has_changed().is_ok() {
                return Join::Follow(f.done.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        self.map.insert(path.to_string(), Flight { dirty: false, done: rx });
        Join::Lead(tx)
    }

    /// True if a load of `path` is in flight.
    pub(crate) fn flying(&self, path: &str) -> bool {
        self.map.get(path).is_some_and(|f| f.done.has_changed().is_ok())
    }

    /// A change to `path` was heard: a load in flight may not show it.
    pub(crate) fn mark(&mut self, path: &str) {
        if let Some(f) = self.map.get_mut(path) {
            f.dirty = true;
        }
    }

    /// Ends the flight of `path`; true if a change was heard while it flew.
    pub(crate) fn finish(&mut self, path: &str) -> bool {
        self.map.remove(path).is_some_and(|f| f.dirty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_per_path_and_followers_see_its_outcome() {
        let mut f = Flights::default();
        let Join::Lead(tx) = f.join("/a") else { panic!("the first request leads") };
        let Join::Follow(rx) = f.join("/a") else { panic!("the second follows") };
        assert!(matches!(f.join("/b"), Join::Lead(_)), "another path flies on its own");
        assert!(!f.finish("/a"), "no change heard");
        tx.send_replace(Some(Ok(())));
        assert!(matches!(*rx.borrow(), Some(Ok(()))));
    }

    #[test]
    fn a_change_heard_in_flight_is_reported_at_the_end() {
        let mut f = Flights::default();
        let _tx = f.join("/a");
        f.mark("/a");
        f.mark("/elsewhere");
        assert!(f.finish("/a"));
        assert!(!f.flying("/a"));
    }

    #[test]
    fn a_leader_gone_without_an_outcome_is_replaced() {
        let mut f = Flights::default();
        drop(f.join("/a"));
        assert!(!f.flying("/a"));
        assert!(matches!(f.join("/a"), Join::Lead(_)));
    }
}
