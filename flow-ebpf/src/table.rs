//! The socket table, read out by userspace through the `iter/tcp` program (socket-local
//! storage rungs): for each TCP socket, what `/proc/net/tcp` and sock_diag would say, plus its
//! entry. Not a hot path: it runs once per socket per poll.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_socket_cookie, bpf_seq_write},
};
use flow_common::{SockKey, SockOffsets, SockSeen};

use crate::{counting::read_tuple, local};

/// Set by the loader from the kernel's BTF.
#[unsafe(no_mangle)]
static FLOW_SOCK_OFFSETS: SockOffsets = SockOffsets {
    sk_socket: 0,
    sk_ack_backlog: 0,
    socket_to_ino: 0,
    rcv_nxt: 0,
    copied_seq: 0,
    write_seq: 0,
    snd_una: 0,
    segs_in: 0,
    segs_out: 0,
};

/// `skc_state` in `struct sock_common` (as stable as the tuple offsets in `counting`).
const SKC_STATE: usize = 18;
const TCP_TIME_WAIT: u32 = 6;
const TCP_LISTEN: u32 = 10;
const TCP_NEW_SYN_RECV: u32 = 12;

#[inline(always)]
fn offsets() -> SockOffsets {
    // SAFETY: a plain read of a global the loader patched before load.
    unsafe { core::ptr::read_volatile(&FLOW_SOCK_OFFSETS) }
}

#[inline(always)]
fn read<T: Copy + Default>(base: u64, offset: i64) -> T {
    // SAFETY: a checked kernel read; a failure reads as zero.
    unsafe { bpf_probe_read_kernel((base as i64 + offset) as *const T) }.unwrap_or_default()
}

/// Called by the iterator for each socket: writes its [`SockSeen`] to `seq`.
#[inline(always)]
pub fn write_socket(seq: *mut c_void, sk: SockKey, uid: u32) {
    let mut seen = SockSeen {
        sock: sk,
        uid,
        ..SockSeen::default()
    };
    seen.state = u32::from(read::<u8>(sk, SKC_STATE as i64));
    // SAFETY: `sk` is the iterator's socket.
    unsafe { read_tuple(sk, &mut seen.tuple) };
    // SAFETY: the helper takes the typed socket and gives a cookie to one that has none.
    seen.cookie = unsafe { bpf_get_socket_cookie(sk as *mut c_void) };
    // TIME_WAIT and request sockets are a `sock_common` only: no file, queues or counters.
    if seen.state != TCP_TIME_WAIT && seen.state != TCP_NEW_SYN_RECV {
        full_socket(sk, &mut seen);
    }
    // SAFETY: `seq` is the iterator's seq_file; the record is on the stack.
    unsafe {
        bpf_seq_write(
            seq.cast(),
            core::ptr::from_ref(&seen).cast(),
            core::mem::size_of::<SockSeen>() as u32,
        )
    };
}

#[inline(always)]
fn full_socket(sk: SockKey, seen: &mut SockSeen) {
    let o = offsets();
    let socket: u64 = read(sk, i64::from(o.sk_socket));
    if socket != 0 {
        seen.inode = read::<u64>(socket, i64::from(o.socket_to_ino));
    }
    let field = |offset: u32| read::<u32>(sk, i64::from(offset));
    // As /proc/net/tcp computes them: a listener's receive queue is its accept backlog, and a
    // negative unread count (a reader ahead of rcv_nxt) shows as 0.
    seen.rx_queue = if seen.state == TCP_LISTEN {
        field(o.sk_ack_backlog)
    } else {
        (field(o.rcv_nxt).wrapping_sub(field(o.copied_seq)) as i32).max(0) as u32
    };
    seen.tx_queue = field(o.write_seq).wrapping_sub(field(o.snd_una));
    seen.segs_in = field(o.segs_in);
    seen.segs_out = field(o.segs_out);
    let counters = local::entry(sk);
    if !counters.is_null() {
        // SAFETY: non-null storage of this socket.
        seen.counters = unsafe { *counters };
        seen.has_counters = 1;
    }
}
