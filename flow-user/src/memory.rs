//! Giving memory back after a burst. A churn of short connections grows the per-connection
//! tables of a long-running command (`serve`, `top`, `record`) to its peak; hash maps keep
//! their capacity and glibc keeps freed chunks, so without this the peak stays for good.

use std::{collections::HashMap, hash::BuildHasher, hash::Hash};

/// Shrinks a map that is at most a quarter full (and not small) to twice its length.
/// Returns whether it shrank.
pub fn shrink_if_sparse<K: Hash + Eq, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) -> bool {
    let len = map.len();
    if map.capacity() > 4 * len + 4096 {
        map.shrink_to(2 * len);
        true
    } else {
        false
    }
}

/// Hands the allocator's free pages back to the kernel (glibc's `malloc_trim`: a few
/// milliseconds on a heap of a hundred MiB, so callers do it now and then, not per poll).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory to the kernel; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_map_shrinks_and_a_full_one_does_not() {
        let mut map: HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
        assert!(!shrink_if_sparse(&mut map));
        map.retain(|k, _| *k < 10);
        assert!(shrink_if_sparse(&mut map));
        assert!(map.capacity() < 4096 + 40);
        assert_eq!(map.len(), 10);
    }
}
