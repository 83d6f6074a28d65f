//! The socket table, read out by userspace through the `iter/tcp` program (socket-local
//! storage rungs): for each TCP socket, what `/proc/net/tcp` and sock_diag would say, plus its
//! entry. Not a hot path: it runs once per socket per poll. The same rows, for entries changed
//! since the previous read only, come from the `iter/bpf_sk_storage_map` program
//! ([`write_stored`]), which walks the storage itself: every namespace, no entry-less socket.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_get_socket_cookie, bpf_jiffies64, bpf_seq_write};
use flow_common::{read_mark, ReadMark, SockCounters, SockKey, SockOffsets, SockSeen};

use crate::{
    fields::{typed_state, Fields},
    local,
    maps::READ_SINCE,
    read::{read_kernel, read_tuple, zero_in_place},
    sequence::{self, Stamp},
};

/// Set by the loader from the kernel's BTF.
#[unsafe(no_mangle)]
pub(crate) static FLOW_SOCK_OFFSETS: SockOffsets = SockOffsets {
    sk_socket: 0,
    sk_ack_backlog: 0,
    socket_to_ino: 0,
    rcv_nxt: 0,
    copied_seq: 0,
    write_seq: 0,
    snd_una: 0,
    segs_in: 0,
    segs_out: 0,
    sk_uid: 0,
    sk_net: 0,
    net_inum: 0,
    bytes_acked: 0,
    bytes_received: 0,
    sk_flags: 0,
    sk_bpf_storage: 0,
};

const TCP_TIME_WAIT: u32 = 6;
const TCP_LISTEN: u32 = 10;
const TCP_NEW_SYN_RECV: u32 = 12;

/// One offset, read on its own: a copy of the whole struct compiled to a memset and a copy.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a plain read of a global the loader patched before load.
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!($crate::table::FLOW_SOCK_OFFSETS.$field))
        }
    };
}
pub(crate) use offset;

/// Called by the `iter/tcp` program for each socket: writes its [`SockSeen`] to `seq`, followed
/// by its entry when it has one (`has_counters`), copied by the helper straight from the storage.
#[inline(always)]
pub fn write_socket(seq: *mut c_void, sk: SockKey, uid: u32) {
    let mut record = core::mem::MaybeUninit::<SockSeen>::uninit();
    let seen = zero_in_place(&mut record);
    seen.uid = uid;
    fill(sk, typed_state(sk), seen);
    // TIME_WAIT and request sockets are a `sock_common` only: no file, queues or counters.
    let mut counters: *mut SockCounters = core::ptr::null_mut();
    if seen.state != TCP_TIME_WAIT && seen.state != TCP_NEW_SYN_RECV {
        let fields = Fields::of(sk);
        full_socket(sk, fields, seen);
        counters = local::entry(sk);
        if !counters.is_null() {
            // SAFETY: non-null storage of this socket, valid for this program run.
            sequence::refresh(fields, unsafe { &mut *counters }, seen.state, Stamp::Now);
        }
        seen.has_counters = u32::from(!counters.is_null());
    }
    write_row(seq, seen, counters);
}

/// Called by the `iter/bpf_sk_storage_map` program for each entry of the socket storage (`sk`
/// and `entry` non-null), and once more at the end with both null. `seq_num` is the number of
/// entries visited before this call in this read: 0 opens the read with a START mark carrying
/// the tick it started at; the end call closes it with an END mark carrying the count. Only
/// entries whose last byte or state change is at or after `READ_SINCE` (the previous read's
/// START tick) are written: "at", because an update in that very tick may have come after the
/// previous read visited the entry (it then comes twice, which cumulative counters allow).
#[inline(always)]
pub fn write_stored(seq: *mut c_void, seq_num: u64, sk: SockKey, entry: *const SockCounters) {
    if seq_num == 0 {
        // SAFETY: reads the tick counter.
        mark(seq, read_mark::START, unsafe { bpf_jiffies64() });
    }
    if sk == 0 {
        mark(seq, read_mark::END, seq_num);
        return;
    }
    if entry.is_null() {
        return;
    }
    let since = READ_SINCE.get(0).copied().unwrap_or(0);
    // Storage hangs only off full sockets.
    let fields = Fields::of(sk);
    let state = fields.state();
    // SAFETY: the entry is the iterator's map value, readable and writable for its whole size.
    let moved = sequence::refresh(
        fields,
        unsafe { &mut *entry.cast_mut() },
        state,
        Stamp::At(since),
    );
    // SAFETY: the entry is the iterator's map value, readable for its whole size.
    let (last, changed) = unsafe { ((*entry).last_jiffies, (*entry).state_jiffies) };
    if !moved && last < since && changed < since {
        return;
    }
    let mut record = core::mem::MaybeUninit::<SockSeen>::uninit();
    let seen = zero_in_place(&mut record);
    read_kernel(&mut seen.uid, sk, offset!(sk_uid) as usize);
    fill(sk, state, seen);
    full_socket(sk, fields, seen);
    seen.has_counters = 1;
    write_row(seq, seen, entry);
}

/// The same read as [`write_stored`] for kernels that refuse map-element iterators (this
/// project's hosts answer EPERM): called by an `iter/tcp` program for each TCP socket of the
/// reader's network namespace (only), and once more at the end with `sk` null. Writes the same
/// marks, and the same rows for the sockets whose entry changed since `READ_SINCE`.
#[inline(always)]
pub fn write_changed_tcp(seq: *mut c_void, seq_num: u64, sk: SockKey, uid: u32) {
    if seq_num == 0 {
        // SAFETY: reads the tick counter.
        mark(seq, read_mark::START, unsafe { bpf_jiffies64() });
    }
    if sk == 0 {
        mark(seq, read_mark::END, seq_num);
        return;
    }
    // An idle socket costs this path only: its state, its entry, its two sequence marks and
    // the entry's two ticks (`sequence::refresh_walked`), all direct loads but two helper
    // calls. Most of it is cache misses (the walk's working set is every socket), so the loads
    // that do not depend on each other come before the entry's lookup, which chases three
    // pointers in turn: their misses overlap with it.
    let state = typed_state(sk);
    if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        return;
    }
    let fields = Fields::of(sk);
    if !local::may_have_entry(fields) {
        return;
    }
    let marks = sequence::marks(fields);
    let entry = local::entry(sk);
    if entry.is_null() {
        return;
    }
    let since = READ_SINCE.get(0).copied().unwrap_or(0);
    // SAFETY: non-null storage of this socket, valid for this program run.
    let entry_ref = unsafe { &mut *entry };
    let moved = sequence::refresh_walked(fields, entry_ref, state, marks, Stamp::At(since));
    // SAFETY: non-null storage of this socket.
    let (last, changed) = unsafe { ((*entry).last_jiffies, (*entry).state_jiffies) };
    if !moved && last < since && changed < since {
        return;
    }
    let mut record = core::mem::MaybeUninit::<SockSeen>::uninit();
    let seen = zero_in_place(&mut record);
    seen.uid = uid;
    fill(sk, state, seen);
    full_socket(sk, fields, seen);
    seen.has_counters = 1;
    write_row(seq, seen, entry);
}

#[inline(always)]
fn mark(seq: *mut c_void, kind: u64, value: u64) {
    let record = ReadMark { kind, value };
    // SAFETY: `seq` is the iterator's seq_file; the record is on the stack.
    unsafe {
        bpf_seq_write(
            seq.cast(),
            core::ptr::from_ref(&record).cast(),
            core::mem::size_of::<ReadMark>() as u32,
        )
    };
}

/// What every socket has, full or not: address, state (read by the caller), tuple, cookie,
/// network namespace.
#[inline(always)]
fn fill(sk: SockKey, state: u32, seen: &mut SockSeen) {
    seen.sock = sk;
    seen.state = state;
    // SAFETY: `sk` is the iterator's socket.
    unsafe { read_tuple(sk, &mut seen.tuple) };
    // SAFETY: the helper takes the typed socket and gives a cookie to one that has none.
    seen.cookie = unsafe { bpf_get_socket_cookie(sk as *mut c_void) };
    seen.netns = netns_of(sk);
}

/// Inode number of the socket's network namespace (`sk->__sk_common.skc_net.net->ns.inum`),
/// through checked reads at the BTF offsets; 0 when the loader had none. Works on any socket
/// pointer (typed or not): the entry makers of every rung call it once per entry.
#[inline(always)]
pub fn netns_of(sk: SockKey) -> u32 {
    let sk_net = offset!(sk_net);
    if sk_net == 0 {
        return 0;
    }
    let mut net = 0u64;
    read_kernel(&mut net, sk, sk_net as usize);
    let mut inum = 0u32;
    read_kernel(&mut inum, net, offset!(net_inum) as usize);
    inum
}

/// One object per socket: if the second write overflows the seq_file buffer, the kernel drops
/// both and runs this socket again into the next buffer.
#[inline(always)]
fn write_row(seq: *mut c_void, seen: &SockSeen, counters: *const SockCounters) {
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

/// A full socket's inode, queues and segment counts (`fields` reads `sk`).
#[inline(always)]
fn full_socket(sk: SockKey, fields: Fields, seen: &mut SockSeen) {
    // Through the untyped address: the inode lies past `struct socket`, in the
    // `struct socket_alloc` around it, where a typed load may not go.
    let mut socket = 0u64;
    read_kernel(&mut socket, sk, offset!(sk_socket) as usize);
    if socket != 0 {
        let ino = socket.wrapping_add_signed(i64::from(offset!(socket_to_ino)));
        read_kernel(&mut seen.inode, ino, 0);
    }
    // As /proc/net/tcp computes them: a listener's receive queue is its accept backlog, and a
    // negative unread count (a reader ahead of rcv_nxt) shows as 0.
    seen.rx_queue = if seen.state == TCP_LISTEN {
        fields.u32(offset!(sk_ack_backlog))
    } else {
        (fields
            .u32(offset!(rcv_nxt))
            .wrapping_sub(fields.u32(offset!(copied_seq))) as i32)
            .max(0) as u32
    };
    seen.tx_queue = sequence::write_seq(fields).wrapping_sub(fields.u32(offset!(snd_una)));
    seen.segs_in = fields.u32(offset!(segs_in));
    seen.segs_out = fields.u32(offset!(segs_out));
}

/// Called by the one-time `iter/tcp` walk at load (sequence counting): gives every connection
/// that has not got one an entry, with its sequence bases as of now. Listeners, sockets still
/// connecting, closed ones, TIME_WAIT and request sockets get none.
#[inline(always)]
pub fn adopt(sk: SockKey) {
    if sequence::is_connected(typed_state(sk)) && local::entry(sk).is_null() {
        local::create(sk);
    }
}
