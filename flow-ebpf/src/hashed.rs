//! Entries in the LRU hash keyed by socket address: the portable store, for rungs whose context
//! is untyped (kprobe, tracepoint) and may not use socket-local storage. One hash lookup per
//! event.

use aya_ebpf::bindings::BPF_NOEXIST;
use flow_common::{stat, SockCounters, SockKey};

use crate::maps::SOCKETS;
use crate::{
    capture::maybe_capture,
    counting::{add, fresh, Direction},
    publish::{bump, publish_closed},
    read::read_tuple,
    table::netns_of,
};

#[inline(always)]
pub fn count(sk: SockKey, bytes: u64, direction: Direction) {
    let entry = match SOCKETS.get_ptr_mut(&sk) {
        Some(entry) => entry,
        None => match create(sk) {
            Some(entry) => entry,
            None => return,
        },
    };
    // SAFETY: the pointer comes from a successful map lookup and stays valid for this run.
    let entry = unsafe { &mut *entry };
    add(entry, bytes, direction);
    maybe_capture(sk, bytes, direction.code(), entry);
}

/// Creates the entry for a socket seen for the first time and returns it.
#[cold]
fn create(sk: SockKey) -> Option<*mut SockCounters> {
    // NOEXIST: another CPU may have created it meanwhile; then its entry is the one to use.
    match SOCKETS.insert(&sk, &fresh(), BPF_NOEXIST as u64) {
        Ok(()) => {
            bump(stat::INSERTS);
            if let Some(entry) = SOCKETS.get_ptr_mut(&sk) {
                // SAFETY: `entry` comes from a successful lookup.
                unsafe {
                    read_tuple(sk, &mut (*entry).tuple);
                    (*entry).netns = netns_of(sk);
                }
            }
        }
        Err(_) => {
            if SOCKETS.get_ptr_mut(&sk).is_none() {
                bump(stat::INSERT_FAILURES);
                return None;
            }
        }
    }
    SOCKETS.get_ptr_mut(&sk)
}

/// The socket is gone: forget it and hand its final counters to userspace.
#[inline(always)]
pub fn close(sk: SockKey) {
    let Some(entry) = SOCKETS.get_ptr(&sk) else {
        return;
    };
    // SAFETY: `entry` comes from a successful lookup.
    let counters = unsafe { *entry };
    if SOCKETS.remove(&sk).is_ok() {
        publish_closed(sk, &counters);
    }
}
