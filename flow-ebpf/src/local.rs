//! Entries in socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`): the socket itself points at its
//! entry, so finding it is a short cached walk instead of a hash lookup. Only typed contexts
//! (fentry/fexit, tp_btf, iterators) may pass a socket to these helpers. The storage lives and
//! dies with the socket: nothing to evict, nothing to leak.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    helpers::generated::{
        bpf_get_socket_cookie, bpf_jiffies64, bpf_ktime_get_ns, bpf_sk_storage_delete,
        bpf_sk_storage_get,
    },
};
use flow_common::{entry_flags, stat, SockCounters, SockKey};

use crate::maps::SOCKET_STORE;
use crate::{
    capture::{maybe_capture, wants},
    counting::{add, note_mover, Direction},
    fields::Fields,
    publish::{bump, publish_closed, publish_released, publish_state_closed},
    read::read_tuple,
    sequence::{self, Stamp},
    table::{netns_of, offset},
};

#[inline(always)]
fn store() -> *mut c_void {
    ptr::from_ref(&SOCKET_STORE).cast_mut().cast()
}

/// False when the socket has no socket-local storage at all (`sk_bpf_storage` null), so no
/// entry: a load where [`entry`] would be a helper call.
#[inline(always)]
pub fn may_have_entry(sk: Fields) -> bool {
    sk.u64(offset!(sk_bpf_storage)) != 0
}

/// The socket's entry, or null when it has none.
#[inline(always)]
pub fn entry(sk: SockKey) -> *mut SockCounters {
    // SAFETY: `sk` is a typed socket pointer from the program's context; the helper checks it.
    unsafe { bpf_sk_storage_get(store(), sk as *mut c_void, ptr::null_mut(), 0) }.cast()
}

#[inline(always)]
pub fn count(sk: SockKey, bytes: u64, direction: Direction) {
    let mut counters = entry(sk);
    if counters.is_null() {
        counters = create(sk);
        if counters.is_null() {
            return;
        }
    }
    // SAFETY: non-null storage of this socket, valid for this program run.
    let counters = unsafe { &mut *counters };
    if sequence::by_sequence() {
        // The sequence numbers count the bytes: this program runs for payload capture only,
        // and leaves at once when the connection wants no more prefixes.
        if !wants(counters, direction.code()) {
            return;
        }
        note_mover(counters);
    } else {
        add(counters, bytes, direction);
    }
    maybe_capture(sk, bytes, direction.code(), counters);
}

/// Creates the socket's entry (or finds the one another CPU just created) and returns it.
/// The kernel zero-fills a new entry (no initial value on the stack: with the sequence
/// bases, the state program's frames passed the 512-byte combined stack limit of kernels
/// without private BPF stacks), so a zero `first_ns` means nobody has set it up yet.
#[cold]
pub fn create(sk: SockKey) -> *mut SockCounters {
    // SAFETY: as in `entry`; a null value asks the kernel for a zeroed entry.
    let counters: *mut SockCounters = unsafe {
        bpf_sk_storage_get(
            store(),
            sk as *mut c_void,
            ptr::null_mut(),
            BPF_SK_STORAGE_GET_F_CREATE as u64,
        )
    }
    .cast();
    if counters.is_null() {
        // Not a full socket, or no memory for the storage.
        bump(stat::INSERT_FAILURES);
        return counters;
    }
    // SAFETY: non-null storage of this socket.
    unsafe {
        if (*counters).first_ns == 0 {
            let tick = bpf_jiffies64();
            (*counters).first_ns = bpf_ktime_get_ns();
            (*counters).first_jiffies = tick;
            (*counters).last_jiffies = tick;
            bump(stat::INSERTS);
            read_tuple(sk, &mut (*counters).tuple);
            (*counters).cookie = bpf_get_socket_cookie(sk as *mut c_void);
            (*counters).netns = netns_of(sk);
            let fields = Fields::of(sk);
            sequence::start(fields, &mut *counters, fields.state());
        }
    }
    counters
}

/// The socket is being destroyed: take its entry off it and hand the final counters on.
#[inline(always)]
pub fn close(sk: SockKey) {
    let counters = entry(sk);
    if counters.is_null() {
        return;
    }
    let fields = Fields::of(sk);
    // SAFETY: non-null storage of this socket: brought up to date, then copied before it is
    // deleted.
    let (last, moved) = unsafe {
        let moved = sequence::refresh(fields, &mut *counters, fields.state(), Stamp::Now);
        (*counters, moved)
    };
    // SAFETY: as in `entry`.
    if unsafe { bpf_sk_storage_delete(store(), sk as *mut c_void) } != 0 {
        // The storage goes with the socket anyway; the counters must not.
        bump(stat::DELETE_FAILURES);
    }
    if unpublished(&last, moved) {
        publish_closed(sk, &last);
    }
}

/// The application released the socket (`cgroup/sock_release`, before `tcp_close`): what it
/// wrote and read is final, so publish it now, keeping the entry. `ctx` is the program's
/// context, which for this program type is the `struct sock` itself.
#[inline(always)]
pub fn released(ctx: *mut c_void, state: u32) {
    // SAFETY: this program type's storage helper takes its context as the socket.
    let counters: *mut SockCounters =
        unsafe { bpf_sk_storage_get(store(), ctx, ptr::null_mut(), 0) }.cast();
    if counters.is_null() {
        if sequence::is_connected(state) {
            bump(stat::RELEASE_UNTRACKED);
        }
        return;
    }
    let sk = ctx as SockKey;
    // SAFETY: non-null storage of this socket, valid for this program run.
    let counters = unsafe { &mut *counters };
    // Not a BTF-typed pointer: no direct loads, no `bpf_skc_to_tcp_sock` here.
    let fields = Fields::probed(sk);
    sequence::refresh(fields, counters, fields.state(), Stamp::Now);
    if publish_released(sk, counters) {
        // A plain store: a state change racing on another CPU can lose this bit, and then
        // the later points publish again, which userspace folds (largest per cookie).
        counters.flags |= entry_flags::RELEASE_PUBLISHED;
    }
}

/// Whether a later publish point has news: nothing was published at release, or the
/// counters moved since (they should not: a released socket reads and writes no more).
#[inline(always)]
fn unpublished(counters: &SockCounters, moved: bool) -> bool {
    moved || counters.flags & entry_flags::RELEASE_PUBLISHED == 0
}

/// `TCP_CLOSE` in `enum tcp_state`.
const TCP_CLOSE: i32 = 7;
/// `TCP_ESTABLISHED`, `TCP_FIN_WAIT1` and `TCP_LAST_ACK` in `enum tcp_state`.
const TCP_ESTABLISHED: i32 = 1;
const TCP_FIN_WAIT1: i32 = 4;
const TCP_LAST_ACK: i32 = 9;

/// The socket changed TCP state: stamp its entry (the incremental read reports it), and on
/// `TCP_CLOSE` publish its counters now, keeping the entry. This first close event survives a
/// recursion miss of the destroy program, which still deletes the entry and publishes the final
/// counters (bytes can be read after `TCP_CLOSE`, e.g. after a half-close).
#[inline(always)]
pub fn state_changed(sk: SockKey, old_state: i32, new_state: i32) {
    let mut counters = entry(sk);
    if counters.is_null() {
        // An established connection gets its entry now, before it moves a byte: it is listed
        // (and keeps one id) from its first poll on. Other sockets wait for their first byte.
        if new_state != TCP_ESTABLISHED {
            if new_state == TCP_CLOSE && sequence::is_connected(old_state as u32) {
                // A connection ends that has no entry (its creation at `ESTABLISHED` was
                // skipped, or no storage): a lost connection, said so once.
                bump(stat::UNTRACKED);
            }
            return;
        }
        counters = create(sk);
        if counters.is_null() {
            return;
        }
    }
    // SAFETY: non-null storage of this socket, valid for this program run.
    let counters = unsafe { &mut *counters };
    let fields = Fields::of(sk);
    // SAFETY: reads the tick counter.
    counters.state_jiffies = unsafe { bpf_jiffies64() };
    // `tcp_close` after `shutdown(SHUT_WR)` sets the same state again, after the FIN: only the
    // first entry into it is followed by `tcp_send_fin`.
    if (new_state == TCP_FIN_WAIT1 || new_state == TCP_LAST_ACK)
        && counters.flags & entry_flags::FIN_SENT == 0
    {
        // `tcp_send_fin` follows: the FIN takes the sequence number `write_seq` has now.
        counters.flags |= entry_flags::FIN_SENT;
        counters.fin_seq = sequence::write_seq(fields);
    }
    if new_state == TCP_CLOSE {
        // The old state is still the socket's own here (the tracepoint precedes the store).
        let moved = sequence::refresh(fields, counters, old_state as u32, Stamp::Now);
        counters.flags |= entry_flags::CLOSE_PUBLISHED;
        if unpublished(counters, moved) {
            publish_state_closed(sk, counters);
        }
    }
}
