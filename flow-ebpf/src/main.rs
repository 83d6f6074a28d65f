//! flow's kernel programs: one short program per hook, all feeding `counting::count`.
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
mod hashed;
mod local;
mod maps;
mod table;

use core::ffi::c_void;

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, fexit, kprobe, kretprobe, tracepoint},
    programs::{
        BtfTracePointContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext,
    },
    EbpfContext,
};
use counting::Direction;
use flow_common::{stat, SockKey, IPPROTO_TCP, MSG_PEEK};
use maps::INFLIGHT;

// --- rung 1: fexit (socket-local storage) ------------------------------------------------------------------------------

/// `int tcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)`: the return value is what
/// was queued, so failed and partial sends count what really moved.
#[fexit(function = "tcp_sendmsg")]
pub fn flow_tx_fexit(ctx: FExitContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    let ret: i32 = ctx.arg(3);
    if ret > 0 {
        local::count(sk, ret as u64, Direction::Tx);
    }
    0
}

/// `int tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len)`.
#[fexit(function = "tcp_recvmsg")]
pub fn flow_rx_fexit(ctx: FExitContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    let flags: i32 = ctx.arg(3);
    let ret: i32 = ctx.arg(5);
    if ret > 0 && flags & MSG_PEEK == 0 {
        local::count(sk, ret as u64, Direction::Rx);
    }
    0
}

// --- rung 2: tp_btf on the sock length tracepoints (Linux 6.3+; socket-local storage) -------

/// Byte offset of `sk_protocol` in `struct sock`, from the running kernel's BTF (set by the
/// loader; read-only data, so the verifier sees a constant and allows the direct load).
#[unsafe(no_mangle)]
static FLOW_SK_PROTOCOL_OFFSET: u32 = 0;

/// The raw tracepoint gets `(struct sock *sk, int ret, int flags)`: the protocol the classic
/// tracepoint records is read from the socket here.
#[inline(always)]
fn is_tcp(sk: SockKey) -> bool {
    // SAFETY: a plain read of a global the loader patched before load.
    let offset = unsafe { core::ptr::read_volatile(&FLOW_SK_PROTOCOL_OFFSET) } as usize;
    // SAFETY: `sk` is a typed socket pointer; the verifier checks the field access against BTF.
    offset != 0 && unsafe { *((sk as *const u8).add(offset) as *const u16) } == IPPROTO_TCP
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn flow_tx_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    if ret > 0 && is_tcp(sk) {
        local::count(sk, ret as u64, Direction::Tx);
    }
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn flow_rx_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if ret > 0 && flags & MSG_PEEK == 0 && is_tcp(sk) {
        local::count(sk, ret as u64, Direction::Rx);
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
    if flags & MSG_PEEK == 0 {
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
    if INFLIGHT.insert(&bpf_get_current_pid_tgid(), &sk, 0).is_err() {
        counting::bump(stat::INFLIGHT_DROPS);
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
    if ret > 0 {
        hashed::count(sk, ret as u64, direction);
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
    if let Some((sk, bytes, _)) = read_length_event(&ctx) {
        hashed::count(sk, bytes, Direction::Tx);
    }
    0
}

#[tracepoint(category = "sock", name = "sock_recv_length")]
pub fn flow_rx_tp(ctx: TracePointContext) -> u32 {
    if let Some((sk, bytes, flags)) = read_length_event(&ctx) {
        if flags & MSG_PEEK == 0 {
            hashed::count(sk, bytes, Direction::Rx);
        }
    }
    0
}

/// `(sk, bytes, flags)` of a TCP event that moved bytes; `None` for anything else.
#[inline(always)]
fn read_length_event(ctx: &TracePointContext) -> Option<(SockKey, u64, i32)> {
    let protocol: u16 = field(ctx, sock_length::PROTOCOL);
    let ret: i32 = field(ctx, sock_length::RET);
    if protocol != IPPROTO_TCP || ret <= 0 {
        return None;
    }
    Some((
        field(ctx, sock_length::SK),
        ret as u64,
        field(ctx, sock_length::FLAGS),
    ))
}

/// Reads a (naturally aligned) field of the tracepoint record directly: the verifier checks the offset against the
/// record's size, and a direct load costs far less than a `bpf_probe_read` helper call.
#[inline(always)]
pub fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: `offset` comes from the tracepoint's format file; the record is kernel memory the
    // program may read.
    unsafe { (ctx.as_ptr() as *const u8).add(offset).cast::<T>().read() }
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
