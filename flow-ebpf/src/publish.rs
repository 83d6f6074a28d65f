//! What reaches userspace besides the entries themselves: close events through the ring
//! buffer, and the event counters (`flow_common::stat`).

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    maps::RingBuf,
};
use flow_common::{stat, SockClosed, SockCounters, SockKey, CLOSED_RING_BYTES};

use crate::maps::{CLOSED, STATS};

/// Hands a destroyed socket's final counters to userspace. The caller has already removed the
/// entry: userspace takes close events before it reads live entries, so a socket is never seen
/// both live and closed.
#[inline(always)]
pub fn publish_closed(sk: SockKey, counters: &SockCounters) {
    bump(stat::CLOSES);
    if !send_closed(sk, counters) {
        bump(stat::CLOSE_DROPS);
    }
}

/// Typed rungs: hands the counters of a socket that just entered `TCP_CLOSE` to userspace
/// while its entry stays (the final event follows at destroy). A first close event that does
/// not fit is no loss while the final one does, so it is not counted as a drop.
#[inline(always)]
pub fn publish_state_closed(sk: SockKey, counters: &SockCounters) {
    bump(stat::STATE_CLOSES);
    send_closed(sk, counters);
}

/// Typed rungs: the counters of a socket its application just released (final for reads and
/// writes) while its entry stays; like the first close event, a drop is no loss while the
/// final one goes through.
#[inline(always)]
pub fn publish_released(sk: SockKey, counters: &SockCounters) -> bool {
    bump(stat::RELEASE_CLOSES);
    send_closed(sk, counters)
}

#[inline(always)]
fn send_closed(sk: SockKey, counters: &SockCounters) -> bool {
    match CLOSED.reserve::<SockClosed>(0) {
        Some(mut slot) => {
            slot.write(SockClosed {
                sock: sk,
                counters: *counters,
            });
            slot.submit(wakeup_flags(&CLOSED, CLOSED_RING_BYTES));
            true
        }
        None => false,
    }
}

/// Waking the reader on every event costs microseconds (an irq_work per submit); the reader
/// drains every 50 ms anyway, so wake it only when a quarter of the ring is in use.
#[inline(always)]
pub fn wakeup_flags(ring: &RingBuf, capacity: u32) -> u64 {
    let used = ring.query(BPF_RB_AVAIL_DATA as u64);
    if used > u64::from(capacity) / 4 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        atomic_add(unsafe { &mut *slot }, 1);
    }
}

/// `lock xadd`: counters are shared by every CPU, and a read-add-write would lose updates.
#[inline(always)]
pub fn atomic_add(target: &mut u64, value: u64) {
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            target, value,
        )
    };
}
