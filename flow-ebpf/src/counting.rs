//! The counting every store shares, whichever map holds the socket's entry: add a byte count
//! to it, or fill a new one.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated,
    generated::bpf_get_current_cgroup_id,
};
use flow_common::{SockCounters, DIRECTION_RX, DIRECTION_TX};

use crate::publish::atomic_add;

#[derive(Clone, Copy)]
pub enum Direction {
    Tx,
    Rx,
}

impl Direction {
    /// As `flow_common` numbers it in events for userspace.
    #[inline(always)]
    pub fn code(self) -> u32 {
        match self {
            Direction::Tx => DIRECTION_TX,
            Direction::Rx => DIRECTION_RX,
        }
    }
}

/// Adds `bytes` moved by the current task to the socket's entry, wherever the entry lives.
#[inline(always)]
pub fn add(counters: &mut SockCounters, bytes: u64, direction: Direction) {
    let (bytes_field, calls_field) = match direction {
        Direction::Tx => (&mut counters.tx_bytes, &mut counters.tx_calls),
        Direction::Rx => (&mut counters.rx_bytes, &mut counters.rx_calls),
    };
    atomic_add(bytes_field, bytes);
    atomic_add(calls_field, 1);
    note_mover(counters);
}

/// Records the current task as the last to move data on the socket (and its tick).
#[inline(always)]
pub fn note_mover(counters: &mut SockCounters) {
    // Plain stores: the last writer wins, which is what "last activity" means. The tick counter
    // is a memory load; `bpf_ktime_get_ns` cost 21 of 70 ns per event here (a VM's clock).
    counters.last_jiffies = unsafe { generated::bpf_jiffies64() };
    let pid_tgid = bpf_get_current_pid_tgid();
    if counters.pid_tgid >> 32 != pid_tgid >> 32 {
        // Only when the owning process changes: copying comm on every event costs. The cgroup
        // (for attribution) follows the process the same way: a process that moves to another
        // cgroup while it keeps the socket keeps the old id (the rare case, not worth a helper
        // call per event).
        counters.comm = bpf_get_current_comm().unwrap_or_default();
        // SAFETY: no arguments; allowed in every tracing program type.
        counters.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    }
    counters.pid_tgid = pid_tgid;
}

/// A new entry: its identity time and ticks; the tuple comes later ([`crate::read::read_tuple`]), into the
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
