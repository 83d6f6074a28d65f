//! Bounded waits: by a deadline ([`wait_for`]) or by a number of tries ([`retry`]).

use std::{
    thread,
    time::{Duration, Instant},
};

/// Polls `check` every 100 ms until it returns `Some`, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `f` until it returns `Some`, at most `tries` times `pause` apart.
pub fn retry<T>(tries: usize, pause: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for i in 0..tries {
        if let Some(value) = f() {
            return Some(value);
        }
        if i + 1 < tries {
            thread::sleep(pause);
        }
    }
    None
}
