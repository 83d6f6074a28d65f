//! Payload prefix capture. Syscall entry tracepoints note where a read/write's user buffer is;
//! the counting hook (any rung) marks which TCP socket that syscall moved bytes on; the syscall
//! exit copies a bounded prefix — only for a socket's first message in each direction, and on
//! HTTP connections for each message that starts a request or response. Nothing else is copied.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_probe_read_user as read_user_raw},
    macros::{map, tracepoint},
    maps::{LruHashMap, RingBuf},
    programs::TracePointContext,
};
use flow_common::{
    capture, stat, PayloadEvent, PendingIo, SockKey, DIRECTION_TX, PAYLOAD_MAX,
    PAYLOAD_RING_BYTES, PENDING_ENTRIES,
};

use crate::{
    counting::{bump, wakeup_flags},
    field,
    maps::SOCKETS,
};

/// Bytes to copy per captured message; 0 turns capture off. Set by the loader (read-only data,
/// so the verifier prunes the capture path from the counting hooks when it is 0).
#[unsafe(no_mangle)]
static FLOW_CAPTURE_BYTES: u32 = 0;

#[inline(always)]
fn capture_bytes() -> u32 {
    // SAFETY: a plain read of a global the loader patched before load.
    unsafe { core::ptr::read_volatile(&FLOW_CAPTURE_BYTES) }
}

/// The read/write syscall each thread is in. LRU: a thread that exits mid-syscall is forgotten.
#[map(name = "FLOW_PENDING")]
static PENDING: LruHashMap<u64, PendingIo> = LruHashMap::with_max_entries(PENDING_ENTRIES, 0);

#[map(name = "FLOW_PAYLOADS")]
static PAYLOADS: RingBuf = RingBuf::with_byte_size(PAYLOAD_RING_BYTES, 0);

/// Called by the counting hook: the current thread's syscall moved `bytes` on TCP socket `sk`.
#[inline(always)]
pub fn note_socket(sk: SockKey, bytes: u64, direction: u32) {
    if capture_bytes() == 0 {
        return;
    }
    let tid = bpf_get_current_pid_tgid();
    if let Some(pending) = PENDING.get_ptr_mut(&tid) {
        // SAFETY: pointer from a successful lookup; only this thread writes its entry.
        let pending = unsafe { &mut *pending };
        if pending.sock == 0 && pending.buf != 0 {
            pending.sock = sk;
            pending.bytes = bytes;
            pending.direction = direction;
        }
    }
}

/// Offsets of the syscall tracepoints' arguments (`syscalls:sys_enter_*` formats).
mod args {
    /// `buf`, `ubuf`, `msg` or `vec`: the second argument of every hooked syscall.
    pub const SECOND: usize = 24;
    /// `count`, `size`, `len` or `vlen`.
    pub const THIRD: usize = 32;
    /// `ret` in `syscalls:sys_exit_*`.
    pub const RET: usize = 16;
}

/// `write`, `read`, `sendto`, `recvfrom`: the buffer is the second argument.
#[tracepoint]
pub fn flow_enter_buf(ctx: TracePointContext) -> u32 {
    begin(field(&ctx, args::SECOND), field(&ctx, args::THIRD));
    0
}

/// `sendmsg`, `recvmsg`: the first iovec of `struct user_msghdr` (`msg_iov` at offset 16).
#[tracepoint]
pub fn flow_enter_msg(ctx: TracePointContext) -> u32 {
    let msg: u64 = field(&ctx, args::SECOND);
    if let Ok(iov) = unsafe { bpf_probe_read_user((msg + 16) as *const u64) } {
        begin_iovec(iov);
    }
    0
}

/// `writev`, `readv`: the first iovec.
#[tracepoint]
pub fn flow_enter_iov(ctx: TracePointContext) -> u32 {
    begin_iovec(field(&ctx, args::SECOND));
    0
}

#[inline(always)]
fn begin_iovec(iov: u64) {
    // SAFETY: user memory read through the checked helper.
    let base = unsafe { bpf_probe_read_user(iov as *const u64) };
    let len = unsafe { bpf_probe_read_user((iov + 8) as *const u64) };
    if let (Ok(base), Ok(len)) = (base, len) {
        begin(base, len);
    }
}

/// Notes the syscall's buffer in the thread's slot. The slot is reused in place: a map update
/// per syscall would cost several times a lookup.
#[inline(always)]
fn begin(buf: u64, buf_len: u64) {
    let tid = bpf_get_current_pid_tgid();
    if let Some(slot) = PENDING.get_ptr_mut(&tid) {
        // SAFETY: pointer from a successful lookup; only this thread writes its slot.
        let slot = unsafe { &mut *slot };
        slot.buf = buf;
        slot.buf_len = buf_len;
        slot.sock = 0;
        return;
    }
    let pending = PendingIo {
        buf,
        buf_len,
        ..PendingIo::default()
    };
    let _ = PENDING.insert(&tid, &pending, 0);
}

/// Every hooked syscall's exit: copy a prefix if the socket wants one, then empty the slot so
/// no later event can use a stale buffer.
#[tracepoint]
pub fn flow_exit_io(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    let Some(slot) = PENDING.get_ptr_mut(&tid) else {
        return 0;
    };
    // SAFETY: pointer from a successful lookup; only this thread writes its slot.
    let slot = unsafe { &mut *slot };
    let pending = *slot;
    slot.buf = 0;
    slot.sock = 0;
    let ret: i64 = field(&ctx, args::RET);
    if pending.sock != 0 && pending.buf != 0 && ret > 0 {
        capture_prefix(&pending);
    }
    0
}

#[inline(always)]
fn capture_prefix(pending: &PendingIo) {
    let Some(entry) = SOCKETS.get_ptr_mut(&pending.sock) else {
        return;
    };
    // SAFETY: pointer from a successful lookup.
    let entry = unsafe { &mut *entry };
    let seen = if pending.direction == DIRECTION_TX {
        capture::TX_SEEN
    } else {
        capture::RX_SEEN
    };
    let flags = entry.capture;
    let first = flags & seen == 0;
    if !first && flags & capture::HTTP == 0 {
        return;
    }
    let http = starts_http(pending.buf);
    if !first && !http {
        return;
    }
    entry.capture = flags | seen | if http { capture::HTTP } else { 0 };

    let mut len = pending.bytes.min(pending.buf_len).min(capture_bytes() as u64);
    if len > PAYLOAD_MAX as u64 {
        len = PAYLOAD_MAX as u64;
    }
    let Some(mut slot) = PAYLOADS.reserve::<PayloadEvent>(0) else {
        bump(stat::PAYLOAD_DROPS);
        return;
    };
    let event = slot.as_mut_ptr();
    // SAFETY: `event` points at a reserved `PayloadEvent`; `len` is at most PAYLOAD_MAX.
    unsafe {
        (*event).sock = pending.sock;
        (*event).first_ns = entry.first_ns;
        (*event).direction = pending.direction;
        let copied = read_user_raw(
            (*event).data.as_mut_ptr().cast(),
            len as u32,
            pending.buf as *const core::ffi::c_void,
        );
        (*event).len = if copied == 0 { len as u32 } else { 0 };
    }
    slot.submit(wakeup_flags(&PAYLOADS, PAYLOAD_RING_BYTES));
}

/// The cheap first-bytes check: does the buffer start an HTTP/1.x request or response?
#[inline(always)]
fn starts_http(buf: u64) -> bool {
    // SAFETY: user memory read through the checked helper.
    let Ok(head) = (unsafe { bpf_probe_read_user(buf as *const [u8; 4]) }) else {
        return false;
    };
    matches!(
        &head,
        b"GET " | b"POST" | b"PUT " | b"HEAD" | b"DELE" | b"OPTI" | b"PATC" | b"CONN" | b"TRAC"
            | b"HTTP"
    )
}
