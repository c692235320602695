//! One policy for a poisoned lock, everywhere in zkfs: carry on with the data.
//!
//! A lock is poisoned when a thread panics while holding it. zkfs has no panicking
//! path by design, so that can only be a bug; every lock here guards plain data (a
//! table, a counter, the current client) whose each update is a single step, so
//! the data stays usable. Refusing it instead would turn one bug into a mount that
//! fails every later request (ESTALE) or silently forgets registrations — worse for
//! the user than the bug itself. (`parking_lot` would give the same without
//! poisoning; the std locks are kept so that no type changes across modules.)

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locking that recovers from poisoning; see the module docs.
pub trait Recover<T: ?Sized> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Recover<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`Recover`] for `RwLock`.
pub trait RecoverRw<T: ?Sized> {
    /// The read guard, poisoned or not.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// The write guard, poisoned or not.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RecoverRw<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(vec![1]));
        let m2 = std::sync::Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("a bug");
        })
        .join();
        assert!(m.is_poisoned());
        m.locked().push(2);
        assert_eq!(*m.locked(), [1, 2]);
    }
}
