//! The table of a view's watches: which nodes are watched, and the task forwarding
//! each one's events (the rules are in `watches.rs`).

use std::collections::HashMap;
use std::time::Instant;

use tokio::task::JoinHandle;

/// The watches of a view.
#[derive(Default)]
pub(crate) struct Watches {
    pub(crate) map: HashMap<String, Entry>,
    /// Numbers the entries, so that a failed watch removes itself and not a newer one.
    pub(crate) next: u64,
    /// Directories whose watch is to become recursive (see `View::upgrade`): their
    /// registrations need no watch of their own meanwhile; those read meanwhile are
    /// read again once it is set.
    pub(crate) upgrading: HashMap<String, Vec<String>>,
}

/// One watched node.
pub(crate) struct Entry {
    /// Its number (see `Watches::next`).
    pub(crate) id: u64,
    /// The task forwarding its events; dropping the watcher (aborting the task)
    /// removes the watch from the server.
    pub(crate) task: Option<JoinHandle<()>>,
    /// Last asked for (read, or looked up).
    pub(crate) since: Instant,
    /// Being removed by a sweep.
    pub(crate) removing: bool,
    /// Asked for again while being removed: set again once removed.
    pub(crate) again: bool,
}

impl Watches {
    /// How many nodes are watched.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
