//! States a load generator's tasks keep across runs: [`drive_run_with`](crate::drive_run_with)
//! makes one state per task for every run, and a state that is costly to make (copies of the
//! sample messages) would otherwise be made again, inside the measured time, for each round or
//! benchmark iteration.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};

/// A shared store of states; cheap to clone.
pub struct Stash<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Stash<T> {
    fn clone(&self) -> Self {
        Stash(Arc::clone(&self.0))
    }
}

impl<T> Default for Stash<T> {
    fn default() -> Self {
        Stash(Arc::default())
    }
}

impl<T> Stash<T> {
    /// An empty stash.
    pub fn new() -> Self {
        Self::default()
    }

    /// A state from the stash, or a new one from `make` when none is left. It goes back to the
    /// stash when dropped.
    pub fn take_or(&self, make: impl FnOnce() -> T) -> Kept<T> {
        let kept = self.lock().pop();
        Kept {
            value: Some(kept.unwrap_or_else(make)),
            home: self.clone(),
        }
    }

    /// States in the stash now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the stash holds no state now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A panic while a state was pushed or popped leaves the list itself intact.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A state taken from a [`Stash`], returned to it on drop.
pub struct Kept<T> {
    value: Option<T>,
    home: Stash<T>,
}

impl<T> Deref for Kept<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("only drop takes the state out")
    }
}

impl<T> DerefMut for Kept<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("only drop takes the state out")
    }
}

impl<T> Drop for Kept<T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            self.home.lock().push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_made_once_and_reused_after_it_is_dropped() {
        let stash = Stash::new();
        let mut made = 0;
        {
            let mut a = stash.take_or(|| {
                made += 1;
                vec![1]
            });
            a.push(2);
        }
        assert_eq!(stash.len(), 1);
        let b = stash.take_or(|| {
            made += 1;
            Vec::new()
        });
        assert_eq!(*b, vec![1, 2], "the kept state comes back as it was left");
        assert_eq!(made, 1);
        assert!(stash.is_empty(), "taken out while in use");
    }
}
