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
//!
//! # Needs: the load a request waits for, awaited where it is answered
//!
//! Most requests that cannot be answered inline wait for one thing: a node to be
//! read, a directory to be listed, the kinds of its children to be learnt (`view.rs`).
//! Such a wait says so with [`need`]: the future of that load, made where the request
//! found it missing. The adapter then awaits it as a task on the client's runtime and
//! runs the request inline again right there, answering from that task once what it
//! needs is in the view (fuser's replies can be sent from any thread). A cold `LOOKUP`
//! thus costs its round trip and two thread wake-ups — the runtime's worker woken by
//! fuser's thread, then by the answer — instead of a thread of the waiting pool
//! blocked on a future that a worker completes. A request that needs something else
//! (a change, any other wait) or fails to get it runs on the waiting pool as before.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, Result};

/// A load an inline request found missing ([`need`]).
pub type Need = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// What an inline run of a request came to.
pub enum Attempt<T> {
    /// Its answer.
    Done(Result<T>),
    /// It needs this load first; then it is to be run inline again.
    Need(Need),
    /// It must wait for something else: run it where waiting is allowed.
    Wait,
}

thread_local! {
    /// Set while a request runs inline on one of fuser's threads.
    static INLINE: Cell<bool> = const { Cell::new(false) };
    /// The first load the inline request said it needs.
    static NEEDED: RefCell<Option<Need>> = const { RefCell::new(None) };
}

/// Runs `f` with waiting forbidden, and says what it needs if it would have waited.
pub fn attempt<T>(f: impl FnOnce() -> Result<T>) -> Attempt<T> {
    let before = INLINE.with(|i| i.replace(true));
    let outer = NEEDED.with(|n| n.borrow_mut().take());
    let result = f();
    let needed = NEEDED.with(|n| std::mem::replace(&mut *n.borrow_mut(), outer));
    INLINE.with(|i| i.set(before));
    match (result, needed) {
        (Err(Error::WouldWait), Some(need)) => Attempt::Need(need),
        (Err(Error::WouldWait), None) => Attempt::Wait,
        // A need the request got past (it answered without it) is dropped unstarted.
        (other, _) => Attempt::Done(other),
    }
}

/// On a thread that must not wait: records `load` (a future not polled yet, so
/// nothing is sent) as what the request needs — the first such need counts — and
/// fails with [`Error::WouldWait`]. Elsewhere: gives `load` back for the caller to
/// wait for.
pub fn need<F>(load: F) -> Result<F>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    if !INLINE.with(Cell::get) {
        return Ok(load);
    }
    NEEDED.with(|n| {
        let mut n = n.borrow_mut();
        if n.is_none() {
            *n = Some(Box::pin(load));
        }
    });
    Err(Error::WouldWait)
}

/// Runs `f` with waiting forbidden. `None` if it would have had to wait: run it again
/// where waiting is allowed.
pub fn inline<T>(f: impl FnOnce() -> Result<T>) -> Option<Result<T>> {
    match attempt(f) {
        Attempt::Done(result) => Some(result),
        Attempt::Need(_) | Attempt::Wait => None,
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

    #[test]
    fn a_need_is_handed_back_only_when_the_request_would_wait() {
        let load = || async { Ok(()) };
        assert!(need(load()).is_ok(), "outside an inline run the caller waits itself");
        assert!(matches!(attempt(|| need(load()).map(|_| 1)), Attempt::Need(_)));
        // Another wait: no need to hand back.
        assert!(matches!(attempt(|| may_wait().map(|()| 1)), Attempt::Wait));
        // A need got past (the request answered anyway) is dropped with the answer.
        let answered = attempt(|| {
            let _ = need(load());
            Ok(3)
        });
        assert!(matches!(answered, Attempt::Done(Ok(3))));
        assert!(matches!(attempt(|| may_wait().map(|()| 1)), Attempt::Wait), "no need left behind");
    }
}
