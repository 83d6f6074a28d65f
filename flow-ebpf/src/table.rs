//! The socket table, read out by userspace through the `iter/tcp` program (socket-local
//! storage rungs): for each TCP socket, what `/proc/net/tcp` and sock_diag would say, plus its
//! entry. Not a hot path: it runs once per socket per poll.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_get_socket_cookie, bpf_seq_write};
use flow_common::{SockCounters, SockKey, SockOffsets, SockSeen};

use crate::{
    local,
    read::{read_kernel, read_tuple, zero_in_place},
};

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

/// `skc_state` in `struct sock_common` (as stable as the tuple offsets in `read`).
const SKC_STATE: usize = 18;
const TCP_TIME_WAIT: u32 = 6;
const TCP_LISTEN: u32 = 10;
const TCP_NEW_SYN_RECV: u32 = 12;

/// One offset, read on its own: a copy of the whole struct compiled to a memset and a copy.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a plain read of a global the loader patched before load.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(FLOW_SOCK_OFFSETS.$field)) }
    };
}

/// Called by the iterator for each socket: writes its [`SockSeen`] to `seq`, followed by its
/// entry when it has one (`has_counters`), copied by the helper straight from the storage.
#[inline(always)]
pub fn write_socket(seq: *mut c_void, sk: SockKey, uid: u32) {
    let mut record = core::mem::MaybeUninit::<SockSeen>::uninit();
    let seen = zero_in_place(&mut record);
    seen.sock = sk;
    seen.uid = uid;
    let mut state = 0u8;
    read_kernel(&mut state, sk, SKC_STATE);
    seen.state = u32::from(state);
    // SAFETY: `sk` is the iterator's socket.
    unsafe { read_tuple(sk, &mut seen.tuple) };
    // SAFETY: the helper takes the typed socket and gives a cookie to one that has none.
    seen.cookie = unsafe { bpf_get_socket_cookie(sk as *mut c_void) };
    // TIME_WAIT and request sockets are a `sock_common` only: no file, queues or counters.
    let mut counters: *mut SockCounters = core::ptr::null_mut();
    if seen.state != TCP_TIME_WAIT && seen.state != TCP_NEW_SYN_RECV {
        full_socket(sk, seen);
        counters = local::entry(sk);
        seen.has_counters = u32::from(!counters.is_null());
    }
    // One object per socket: if the second write overflows the seq_file buffer, the kernel
    // drops both and runs this socket again into the next buffer.
    // SAFETY: `seq` is the iterator's seq_file; the header is on the stack, the counters are
    // this socket's storage.
    unsafe {
        bpf_seq_write(
            seq.cast(),
            core::ptr::from_ref(seen).cast(),
            core::mem::size_of::<SockSeen>() as u32,
        );
        if !counters.is_null() {
            bpf_seq_write(
                seq.cast(),
                counters.cast(),
                core::mem::size_of::<SockCounters>() as u32,
            );
        }
    }
}

#[inline(always)]
fn full_socket(sk: SockKey, seen: &mut SockSeen) {
    let mut socket = 0u64;
    read_kernel(&mut socket, sk, offset!(sk_socket) as usize);
    if socket != 0 {
        let ino = socket.wrapping_add_signed(i64::from(offset!(socket_to_ino)));
        read_kernel(&mut seen.inode, ino, 0);
    }
    let field = |offset: u32| {
        let mut value = 0u32;
        read_kernel(&mut value, sk, offset as usize);
        value
    };
    // As /proc/net/tcp computes them: a listener's receive queue is its accept backlog, and a
    // negative unread count (a reader ahead of rcv_nxt) shows as 0.
    seen.rx_queue = if seen.state == TCP_LISTEN {
        field(offset!(sk_ack_backlog))
    } else {
        (field(offset!(rcv_nxt)).wrapping_sub(field(offset!(copied_seq))) as i32).max(0) as u32
    };
    seen.tx_queue = field(offset!(write_seq)).wrapping_sub(field(offset!(snd_una)));
    read_kernel(&mut seen.segs_in, sk, offset!(segs_in) as usize);
    read_kernel(&mut seen.segs_out, sk, offset!(segs_out) as usize);
}
