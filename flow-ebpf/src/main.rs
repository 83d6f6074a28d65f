//! flow's kernel programs: one short program per hook, all feeding `counting::count`.
//!
//! Three rungs of hooks count the same thing; the loader attaches exactly one of them:
//! fexit on `tcp_sendmsg`/`tcp_recvmsg` (cheapest), kprobe/kretprobe on the same functions, or
//! the `sock:sock_{send,recv}_length` tracepoints. `tcp:tcp_destroy_sock` closes entries on all.
//! Receive is counted from `tcp_recvmsg`'s return value, never by summing
//! `tcp_cleanup_rbuf(copied)`, which is called with a running total and over-counts.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod capture;
mod counting;
mod maps;

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, tracepoint},
    programs::{FExitContext, ProbeContext, RetProbeContext, TracePointContext},
    EbpfContext,
};
use counting::{count, Direction};
use flow_common::{stat, SockKey, IPPROTO_TCP, MSG_PEEK};
use maps::INFLIGHT;

// --- rung 1: fexit ------------------------------------------------------------------------------

/// `int tcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)`: the return value is what
/// was queued, so failed and partial sends count what really moved.
#[fexit(function = "tcp_sendmsg")]
pub fn flow_tx_fexit(ctx: FExitContext) -> i32 {
    let sk: SockKey = ctx.arg(0);
    let ret: i32 = ctx.arg(3);
    if ret > 0 {
        count(sk, ret as u64, Direction::Tx);
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
        count(sk, ret as u64, Direction::Rx);
    }
    0
}

// --- rung 2: kprobe / kretprobe -----------------------------------------------------------------

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
        count(sk, ret as u64, direction);
    }
}

// --- rung 3: sock tracepoints (Linux 6.3+) ------------------------------------------------------

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
        count(sk, bytes, Direction::Tx);
    }
    0
}

#[tracepoint(category = "sock", name = "sock_recv_length")]
pub fn flow_rx_tp(ctx: TracePointContext) -> u32 {
    if let Some((sk, bytes, flags)) = read_length_event(&ctx) {
        if flags & MSG_PEEK == 0 {
            count(sk, bytes, Direction::Rx);
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

// --- lifecycle (every rung) ---------------------------------------------------------------------

/// `tcp:tcp_destroy_sock` (5.13+): the socket is gone; nothing can move on it any more.
#[tracepoint(category = "tcp", name = "tcp_destroy_sock")]
pub fn flow_destroy_tp(ctx: TracePointContext) -> u32 {
    // `skaddr` is the first field after the common header.
    counting::close(field(&ctx, 8));
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
