//! Whether the current thread may wait for ZooKeeper.
//!
//! fuser serves requests on a small fixed pool of threads. A request that waits for
//! ZooKeeper must not hold one of them, or whatever the mount could answer from what
//! it knows queues behind it (a `cat` of a cached file behind writes to a frozen
//! ensemble). So the FUSE adapter first runs every request *inline*, on fuser's
//! thread, with waiting forbidden: each place that would wait — a ZooKeeper call, a
//! cold read or listing, a re-read in progress — calls [`may_wait`] first, which fails
//! with [`Error::WouldWait`] inline. The adapter then hands the same request and its
//! reply to a pool that grows with the number of waiting requests (`fuse.rs`), where
//! waiting is allowed and each request is bounded by the session timeout from its
//! own start. A request that fails inline has changed nothing: every [`may_wait`]
//! comes before the request's first effect in ZooKeeper, and what it may have done
//! in the view before (an inode number handed out) is done again the same way.

use std::cell::Cell;

use crate::error::{Error, Result};

thread_local! {
    /// Set while a request runs inline on one of fuser's threads.
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with waiting forbidden. `None` if it would have had to wait: run it again
/// where waiting is allowed.
pub fn inline<T>(f: impl FnOnce() -> Result<T>) -> Option<Result<T>> {
    let before = INLINE.with(|i| i.replace(true));
    let result = f();
    INLINE.with(|i| i.set(before));
    match result {
        Err(Error::WouldWait) => None,
        other => Some(other),
    }
}

/// Fails with [`Error::WouldWait`] on a thread that must not wait.
pub fn may_wait() -> Result<()> {
    if INLINE.with(Cell::get) {
        Err(Error::WouldWait)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_is_refused_inline_and_allowed_elsewhere() {
        assert!(may_wait().is_ok());
        assert!(inline(|| may_wait().map(|()| 1)).is_none());
        assert_eq!(inline(|| Ok(2)).and_then(|r| r.ok()), Some(2));
        // An error other than WouldWait is the request's answer.
        assert!(matches!(inline(|| Err::<(), _>(Error::Stale)), Some(Err(Error::Stale))));
        assert!(may_wait().is_ok(), "the flag is cleared afterwards");
    }
}
