//! The logic every rung shares, whichever map holds the socket's entry: add a byte count to it,
//! fill a new one, publish a closed one.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated,
};
use aya_ebpf::maps::RingBuf;
use flow_common::{
    stat, SockClosed, SockCounters, SockKey, SockTuple, AF_INET, AF_INET6, CLOSED_RING_BYTES,
    DIRECTION_RX, DIRECTION_TX,
};

use crate::maps::{CLOSED, STATS};

/// Offsets inside `struct sock_common` (its first member of `struct sock`). These have not moved
/// since Linux 4.x on 64-bit; the exactness tests check the resulting tuples on every kernel.
mod sock_common {
    pub const DADDR: usize = 0;
    pub const RCV_SADDR: usize = 4;
    pub const DPORT: usize = 12; // network order
    pub const NUM: usize = 14; // local port, host order
    pub const FAMILY: usize = 16;
    pub const V6_DADDR: usize = 56;
    pub const V6_RCV_SADDR: usize = 72;
}

#[derive(Clone, Copy)]
pub enum Direction {
    Tx,
    Rx,
}

/// Adds `bytes` moved by the current task to the socket's entry, wherever the entry lives.
#[inline(always)]
pub fn add(sk: SockKey, counters: &mut SockCounters, bytes: u64, direction: Direction) {
    let (bytes_field, calls_field, code) = match direction {
        Direction::Tx => (&mut counters.tx_bytes, &mut counters.tx_calls, DIRECTION_TX),
        Direction::Rx => (&mut counters.rx_bytes, &mut counters.rx_calls, DIRECTION_RX),
    };
    atomic_add(bytes_field, bytes);
    atomic_add(calls_field, 1);
    // Plain stores: the last writer wins, which is what "last activity" means. The tick counter
    // is a memory load; `bpf_ktime_get_ns` cost 21 of 70 ns per event here (a VM's clock).
    counters.last_jiffies = unsafe { generated::bpf_jiffies64() };
    let pid_tgid = bpf_get_current_pid_tgid();
    if counters.pid_tgid >> 32 != pid_tgid >> 32 {
        // Only when the owning process changes: copying comm on every event costs.
        counters.comm = bpf_get_current_comm().unwrap_or_default();
    }
    counters.pid_tgid = pid_tgid;
    crate::capture::maybe_capture(sk, bytes, code, counters);
}

/// A new entry: its identity time and ticks; the tuple comes later ([`read_tuple`]), into the
/// entry itself, once the map holds it.
#[inline(always)]
pub fn fresh() -> SockCounters {
    let tick = unsafe { generated::bpf_jiffies64() };
    SockCounters {
        // Precise: with the socket's address it tells apart sockets that reuse one address.
        first_ns: unsafe { bpf_ktime_get_ns() },
        first_jiffies: tick,
        last_jiffies: tick,
        ..SockCounters::default()
    }
}

/// Reads the 4-tuple from `struct sock_common` into a zeroed `tuple`; a failed read leaves
/// family 0. Read straight into the map value: built on the stack (16-byte arrays copied byte by
/// byte) it took the frame to 456+ bytes, past the 512-byte combined stack limit of kernels
/// without BPF private stacks (6.1, 6.12).
#[inline(always)]
pub unsafe fn read_tuple(sk: SockKey, tuple: &mut SockTuple) {
    let mut family = 0u16;
    read_kernel(&mut family, sk, sock_common::FAMILY);
    // IPv4 fills the first 4 bytes; the rest stays zero from the fresh entry.
    let (local, remote, len) = match family {
        AF_INET => (sock_common::RCV_SADDR, sock_common::DADDR, 4),
        AF_INET6 => (sock_common::V6_RCV_SADDR, sock_common::V6_DADDR, 16),
        _ => return,
    };
    read_kernel_bytes(&mut tuple.local_addr, len, sk, local);
    read_kernel_bytes(&mut tuple.remote_addr, len, sk, remote);
    let mut dport = 0u16;
    read_kernel(&mut dport, sk, sock_common::DPORT);
    read_kernel(&mut tuple.local_port, sk, sock_common::NUM);
    tuple.remote_port = u16::from_be(dport);
    tuple.family = family;
}

/// Zeroes a plain-data `T` (a multiple of 8 bytes) in place, word by word: LLVM turns a zeroing
/// initialiser (or a copy of one) into a call to a byte-wise `memset` subprogram, which cost the
/// socket iterator more than everything else it does.
#[inline(always)]
pub fn zero_in_place<T: Copy>(value: &mut core::mem::MaybeUninit<T>) -> &mut T {
    const { assert!(core::mem::size_of::<T>() % 8 == 0) };
    let words = value.as_mut_ptr().cast::<u64>();
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: within `value`; volatile so LLVM keeps the stores instead of a memset.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte was written; `T` is plain data, valid when zeroed.
    unsafe { value.assume_init_mut() }
}

/// A checked kernel read of `*to` from `base + offset`. The result is not looked at: the helper
/// zeroes `to` when the read fails, and a branch per read multiplies the paths the verifier
/// walks (the socket iterator took 150 ms to load with them).
#[inline(always)]
pub fn read_kernel<T>(to: &mut T, base: u64, offset: usize) {
    read_kernel_bytes(to, core::mem::size_of::<T>(), base, offset);
}

/// As [`read_kernel`], for the first `len` bytes of `to` (at most its size).
#[inline(always)]
pub fn read_kernel_bytes<T>(to: &mut T, len: usize, base: u64, offset: usize) {
    let len = len.min(core::mem::size_of::<T>());
    // SAFETY: `to` is valid for `len` bytes; the helper checks the source.
    unsafe {
        generated::bpf_probe_read_kernel(
            core::ptr::from_mut(to).cast(),
            len as u32,
            (base + offset as u64) as *const core::ffi::c_void,
        )
    };
}

/// Hands a destroyed socket's final counters to userspace. The caller has already removed the
/// entry: userspace takes close events before it reads live entries, so a socket is never seen
/// both live and closed.
#[inline(always)]
pub fn publish_closed(sk: SockKey, counters: &SockCounters) {
    bump(stat::CLOSES);
    match CLOSED.reserve::<SockClosed>(0) {
        Some(mut slot) => {
            slot.write(SockClosed {
                sock: sk,
                counters: *counters,
            });
            slot.submit(wakeup_flags(&CLOSED, CLOSED_RING_BYTES));
        }
        None => bump(stat::CLOSE_DROPS),
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
