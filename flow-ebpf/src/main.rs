//! flow's kernel programs: one short program per hook, each asking [`counted`] whether its event
//! counts and feeding the bytes to its store's `count` (`local` or `hashed`).
//!
//! Four rungs of hooks count the same thing; the loader attaches exactly one of them. The two
//! typed ones keep each socket's counters in socket-local storage (no hash lookup per event):
//! fexit on `tcp_sendmsg`/`tcp_recvmsg`, and `tp_btf` on the `sock_{send,recv}_length`
//! tracepoints. The two untyped ones use the LRU hash keyed by socket: kprobe/kretprobe on the
//! same functions, and the classic `sock:sock_{send,recv}_length` tracepoints.
//! `tcp_destroy_sock` closes entries on all of them (typed or classic, to match the store), and
//! the `iter/tcp` program reads socket-local storage out for userspace.
//! Receive is counted from `tcp_recvmsg`'s return value, never by summing
//! `tcp_cleanup_rbuf(copied)`, which is called with a running total and over-counts.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod capture;
mod counting;
mod fields;
mod hashed;
mod hello;
mod local;
mod maps;
mod publish;
mod read;
mod sequence;
mod table;
mod udp;
mod udp_capture;

use core::ffi::c_void;

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, cgroup_sock, fexit, kprobe, kretprobe, tracepoint},
    programs::{
        BtfTracePointContext, FExitContext, ProbeContext, RetProbeContext, SockContext,
        TracePointContext,
    },
};
use counting::Direction;
use flow_common::{stat, SockKey, IPPROTO_TCP, MSG_PEEK};
use maps::INFLIGHT;
use read::{field, is_tcp};

/// The one decision every counting hook makes: the bytes to count, or `None` for an event that
/// moved none (`ret <= 0`), a `MSG_PEEK` read (its bytes count when really read), or a socket
/// that is not TCP.
#[inline(always)]
fn counted(tcp: bool, ret: i32, flags: i32) -> Option<u64> {
    (tcp && ret > 0 && !is_peek(flags)).then_some(ret as u64)
}

/// Sends pass no flags: `MSG_PEEK` means nothing to them.
const SEND: i32 = 0;

#[inline(always)]
fn is_peek(flags: i32) -> bool {
    flags & MSG_PEEK != 0
}

// --- rung 1: fexit (socket-local storage) ------------------------------------------------------------------------------

/// `int tcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)`: the return value is what
/// was queued, so failed and partial sends count what really moved.
#[fexit(function = "tcp_sendmsg")]
pub fn flow_tx_fexit(ctx: FExitContext) -> i32 {
    if let Some(bytes) = counted(true, ctx.arg(3), SEND) {
        local::count(ctx.arg(0), bytes, Direction::Tx);
    }
    0
}

/// `int tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len)`.
#[fexit(function = "tcp_recvmsg")]
pub fn flow_rx_fexit(ctx: FExitContext) -> i32 {
    if let Some(bytes) = counted(true, ctx.arg(5), ctx.arg(3)) {
        local::count(ctx.arg(0), bytes, Direction::Rx);
    }
    0
}

// --- rung 2: tp_btf on the sock length tracepoints (Linux 6.3+; socket-local storage) -------

/// The raw tracepoint gets `(struct sock *sk, int ret, int flags)`: the protocol the classic
/// tracepoint records is read from the socket.
#[btf_tracepoint(function = "sock_send_length")]
pub fn flow_tx_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    if let Some(bytes) = counted(is_tcp(sk), ctx.arg(1), SEND) {
        local::count(sk, bytes, Direction::Tx);
    }
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn flow_rx_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    if let Some(bytes) = counted(is_tcp(sk), ctx.arg(1), ctx.arg(2)) {
        local::count(sk, bytes, Direction::Rx);
    }
    0
}

// --- rung 3: kprobe / kretprobe -----------------------------------------------------------------

#[kprobe]
pub fn flow_tx_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<SockKey>(0) {
        remember(sk);
    }
    0
}

#[kretprobe]
pub fn flow_tx_kretprobe(ctx: RetProbeContext) -> u32 {
    finish(ctx.ret::<i32>(), Direction::Tx);
    0
}

#[kprobe]
pub fn flow_rx_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(sk), Some(flags)) = (ctx.arg::<SockKey>(0), ctx.arg::<i32>(3)) else {
        return 0;
    };
    // The return probe cannot see the flags: a peek is never remembered, so never counted.
    if !is_peek(flags) {
        remember(sk);
    }
    0
}

#[kretprobe]
pub fn flow_rx_kretprobe(ctx: RetProbeContext) -> u32 {
    finish(ctx.ret::<i32>(), Direction::Rx);
    0
}

/// A thread is inside at most one of `tcp_sendmsg`/`tcp_recvmsg` at a time, so its id is the key.
#[inline(always)]
fn remember(sk: SockKey) {
    if INFLIGHT
        .insert(&bpf_get_current_pid_tgid(), &sk, 0)
        .is_err()
    {
        publish::bump(stat::INFLIGHT_DROPS);
    }
}

#[inline(always)]
fn finish(ret: i32, direction: Direction) {
    let tid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(sk) = (unsafe { INFLIGHT.get(&tid) }).copied() else {
        return;
    };
    let _ = INFLIGHT.remove(&tid);
    // Peeks were filtered at entry (`flow_rx_kprobe`).
    if let Some(bytes) = counted(true, ret, SEND) {
        hashed::count(sk, bytes, direction);
    }
}

// --- rung 4: sock tracepoints (Linux 6.3+) ------------------------------------------------------

/// Layout of `sock:sock_send_length` and `sock:sock_recv_length` (see their `format` files).
mod sock_length {
    pub const SK: usize = 8;
    pub const PROTOCOL: usize = 18;
    pub const RET: usize = 20;
    pub const FLAGS: usize = 24;
}

#[tracepoint(category = "sock", name = "sock_send_length")]
pub fn flow_tx_tp(ctx: TracePointContext) -> u32 {
    if let Some((sk, bytes)) = read_length_event(&ctx, Direction::Tx) {
        hashed::count(sk, bytes, Direction::Tx);
    }
    0
}

#[tracepoint(category = "sock", name = "sock_recv_length")]
pub fn flow_rx_tp(ctx: TracePointContext) -> u32 {
    if let Some((sk, bytes)) = read_length_event(&ctx, Direction::Rx) {
        hashed::count(sk, bytes, Direction::Rx);
    }
    0
}

/// `(sk, bytes)` of an event that counts ([`counted`]); `None` for anything else.
#[inline(always)]
fn read_length_event(ctx: &TracePointContext, direction: Direction) -> Option<(SockKey, u64)> {
    let flags = match direction {
        Direction::Tx => SEND,
        Direction::Rx => field(ctx, sock_length::FLAGS),
    };
    let protocol: u16 = field(ctx, sock_length::PROTOCOL);
    let bytes = counted(protocol == IPPROTO_TCP, field(ctx, sock_length::RET), flags)?;
    Some((field(ctx, sock_length::SK), bytes))
}

// --- lifecycle and read-out ----------------------------------------------------------------------

/// `tcp:tcp_destroy_sock` (5.13+): the socket is gone; nothing can move on it any more.
/// Closes entries of the LRU hash (kprobe and tracepoint rungs).
#[tracepoint(category = "tcp", name = "tcp_destroy_sock")]
pub fn flow_destroy_tp(ctx: TracePointContext) -> u32 {
    // `skaddr` is the first field after the common header.
    hashed::close(field(&ctx, 8));
    0
}

/// The same tracepoint, typed: closes socket-local entries (fentry and tp_btf rungs).
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn flow_destroy_btf(ctx: BtfTracePointContext) -> i32 {
    local::close(ctx.arg(0));
    0
}

/// tp_btf `inet_sock_set_state` (`const struct sock *sk, const int oldstate, const int
/// newstate`), typed rungs: stamps the entry's `state_jiffies`, and publishes its counters at
/// `TCP_CLOSE` (a second publish point beside `flow_destroy_btf`). The tracepoint fires for TCP,
/// DCCP and SCTP: others are skipped as the counting hooks skip them. Not a hot path: a few
/// state changes per connection.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn flow_state_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    if is_tcp(sk) {
        local::state_changed(sk, ctx.arg(1), ctx.arg(2));
    }
    0
}

/// `cgroup/sock_release` on the cgroup v2 root (typed rungs): a TCP socket's application
/// released it; its entry's counters are final for reads and writes, so they are published
/// (a publish point the kernel never skips: cgroup programs have no recursion guard).
#[cgroup_sock(sock_release)]
pub fn flow_tcp_release(ctx: SockContext) -> i32 {
    // SAFETY: the context is a `struct bpf_sock`.
    // SAFETY: as above.
    let (protocol, state) = unsafe { ((*ctx.sock).protocol, (*ctx.sock).state) };
    if protocol == u32::from(IPPROTO_TCP) {
        local::released(ctx.sock.cast(), state);
    }
    1
}

/// `iter/tcp` (5.9+): runs once per TCP socket when userspace reads the iterator. The context is
/// `struct bpf_iter__tcp`: `{ struct bpf_iter_meta *meta; struct sock_common *sk_common;
/// uid_t uid; }`, and `meta` starts with the `struct seq_file *` to write to.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn flow_socket_iter(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const u64;
    // SAFETY: typed context loads; the verifier checks them against `bpf_iter__tcp`'s BTF.
    let (meta, sk, uid) = unsafe { (*ctx as *const u64, *ctx.add(1), *ctx.add(2) as u32) };
    if sk != 0 {
        // SAFETY: `meta` is the iterator's metadata; its first field is the seq_file.
        table::write_socket(unsafe { *meta } as *mut c_void, sk, uid);
    }
    0
}

/// `iter/bpf_sk_storage_map` (5.9+): runs once per entry of the socket storage it is linked to
/// (`FLOW_SK_STORE`), whatever the socket's network namespace, then once more with `sk` and
/// `value` null at the end. The context is `struct bpf_iter__bpf_sk_storage_map`: `{ struct
/// bpf_iter_meta *meta; struct bpf_map *map; struct sock *sk; void *value; }`, and `meta` is
/// `{ struct seq_file *seq; u64 session_id; u64 seq_num; }`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_sk_storage_map")]
pub fn flow_store_iter(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const u64;
    // SAFETY: typed context loads; the verifier checks them against the context's BTF.
    let (meta, sk, value) = unsafe { (*ctx as *const u64, *ctx.add(2), *ctx.add(3)) };
    // SAFETY: `meta` is the iterator's metadata: the seq_file, then the session id and seq_num.
    let (seq, seq_num) = unsafe { (*meta as *mut c_void, *meta.add(2)) };
    table::write_stored(seq, seq_num, sk, value as *const flow_common::SockCounters);
    0
}

/// `iter/tcp` again, for the incremental read where the kernel refuses the storage iterator
/// (EPERM on this project's hosts): the same marks and rows as `flow_store_iter`, for the
/// reader's network namespace only. The context is `struct bpf_iter__tcp` (see
/// `flow_socket_iter`).
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn flow_tcp_delta(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const u64;
    // SAFETY: typed context loads; the verifier checks them against `bpf_iter__tcp`'s BTF.
    let (meta, sk, uid) = unsafe { (*ctx as *const u64, *ctx.add(1), *ctx.add(2) as u32) };
    // SAFETY: `meta` is the iterator's metadata: the seq_file, then the session id and seq_num.
    let (seq, seq_num) = unsafe { (*meta as *mut c_void, *meta.add(2)) };
    table::write_changed_tcp(seq, seq_num, sk, uid);
    0
}

/// `iter/tcp`, run once per network namespace at load with sequence counting: every connection
/// established before `flow` started gets its entry, its sequence bases as of now (the context
/// is `struct bpf_iter__tcp`, see `flow_socket_iter`).
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn flow_tcp_adopt(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const u64;
    // SAFETY: a typed context load; the verifier checks it against `bpf_iter__tcp`'s BTF.
    let sk = unsafe { *ctx.add(1) };
    if sk != 0 {
        table::adopt(sk);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
