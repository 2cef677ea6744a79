//! The one way this crate takes a std mutex.

use std::sync::{Mutex, MutexGuard};

/// A panic while a guard was held must not take every later request down with it: the data
/// behind these mutexes stays consistent between statements, so the poison flag is ignored.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
