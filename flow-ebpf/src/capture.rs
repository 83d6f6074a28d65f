//! Payload prefix capture, from inside the counting hook (any rung). When a socket wants a
//! prefix — its first message in each direction, and on HTTP connections each message — the
//! hook reads the current syscall's registers (`bpf_task_pt_regs`) to find the user buffer,
//! which holds the message at that moment (sent data is still there; received data was just
//! copied there), and copies a bounded prefix — or, for a first message that starts a TLS
//! ClientHello, the whole record ([`crate::hello`]). Sockets that want nothing cost one branch,
//! and no other syscall is hooked at all.
//!
//! x86_64 only: syscall numbers and `struct pt_regs` offsets below are that architecture's.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_probe_read_user as read_user_raw, bpf_task_pt_regs,
        },
    },
    macros::map,
    maps::RingBuf,
};
use flow_common::{
    capture, stat, PayloadEvent, SockCounters, SockKey, DIRECTION_TX, PAYLOAD_MAX,
    PAYLOAD_RING_BYTES,
};

use crate::{
    hello::{capture_hello, client_hello_record},
    publish::{bump, wakeup_flags},
};

/// Bytes to copy per captured message; 0 turns capture off. Set by the loader (read-only data,
/// so the verifier prunes the capture path from the counting hooks when it is 0).
#[unsafe(no_mangle)]
static FLOW_CAPTURE_BYTES: u32 = 0;

#[inline(always)]
pub fn capture_bytes() -> u32 {
    // SAFETY: a plain read of a global the loader patched before load.
    unsafe { core::ptr::read_volatile(&FLOW_CAPTURE_BYTES) }
}

#[map(name = "FLOW_PAYLOADS")]
static PAYLOADS: RingBuf = RingBuf::with_byte_size(PAYLOAD_RING_BYTES, 0);

/// Called by each store's `count` for every event, with the socket's entry: copies a prefix of
/// the message when the socket wants one.
#[inline(always)]
pub fn maybe_capture(sk: SockKey, bytes: u64, direction: u32, entry: &mut SockCounters) {
    if capture_bytes() == 0 {
        return;
    }
    if !wants(entry, direction) {
        return;
    }
    // SAFETY: helpers on the current task; the result is a kernel pointer read with checks.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    if let Some((buf, len)) = user_buffer(regs) {
        capture_prefix(sk, bytes, direction, entry, buf, len);
    }
}

/// Whether the socket wants a prefix of its next message in `direction`: capture is on, and it
/// is the first in that direction or the connection is HTTP.
#[inline(always)]
pub fn wants(entry: &SockCounters, direction: u32) -> bool {
    let flags = entry.capture;
    capture_bytes() != 0 && (flags & seen_bit(direction) == 0 || flags & capture::HTTP != 0)
}

#[inline(always)]
fn seen_bit(direction: u32) -> u32 {
    if direction == DIRECTION_TX {
        capture::TX_SEEN
    } else {
        capture::RX_SEEN
    }
}

/// x86_64 `struct pt_regs` offsets and syscall numbers.
mod x86_64 {
    pub const DX: usize = 96;
    pub const SI: usize = 104;
    pub const ORIG_AX: usize = 120;
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const SENDTO: u64 = 44;
    pub const RECVFROM: u64 = 45;
    pub const SENDMSG: u64 = 46;
    pub const RECVMSG: u64 = 47;
}

/// The first user buffer of the syscall whose registers are at `regs`, and its length.
#[inline(always)]
fn user_buffer(regs: u64) -> Option<(u64, u64)> {
    let reg =
        |offset: usize| unsafe { bpf_probe_read_kernel((regs + offset as u64) as *const u64) };
    let second = reg(x86_64::SI).ok()?;
    match reg(x86_64::ORIG_AX).ok()? {
        x86_64::READ | x86_64::WRITE | x86_64::SENDTO | x86_64::RECVFROM => {
            Some((second, reg(x86_64::DX).ok()?))
        }
        // `struct user_msghdr`: `msg_iov` at offset 16.
        x86_64::SENDMSG | x86_64::RECVMSG => {
            let iov = unsafe { bpf_probe_read_user((second + 16) as *const u64) }.ok()?;
            first_iovec(iov)
        }
        x86_64::READV | x86_64::WRITEV => first_iovec(second),
        _ => None,
    }
}

#[inline(always)]
fn first_iovec(iov: u64) -> Option<(u64, u64)> {
    // SAFETY: user memory read through the checked helper.
    let base = unsafe { bpf_probe_read_user(iov as *const u64) }.ok()?;
    let len = unsafe { bpf_probe_read_user((iov + 8) as *const u64) }.ok()?;
    Some((base, len))
}

#[inline(always)]
fn capture_prefix(
    sk: SockKey,
    bytes: u64,
    direction: u32,
    entry: &mut SockCounters,
    buf: u64,
    buf_len: u64,
) {
    let seen = seen_bit(direction);
    let flags = entry.capture;
    let first = flags & seen == 0;
    let http = starts_http(buf);
    if !first && !http {
        return;
    }
    entry.capture = flags | seen | if http { capture::HTTP } else { 0 };

    if first && !http {
        let available = bytes.min(buf_len);
        if let Some(record) = client_hello_record(buf, available) {
            capture_hello(
                &PAYLOADS,
                sk,
                entry.first_ns,
                direction,
                buf,
                record.min(available),
            );
            return;
        }
    }
    let mut len = bytes.min(buf_len).min(capture_bytes() as u64);
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
        (*event).sock = sk;
        (*event).first_ns = entry.first_ns;
        (*event).direction = direction;
        let copied = read_user_raw(
            (*event).data.as_mut_ptr().cast(),
            len as u32,
            buf as *const core::ffi::c_void,
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
        b"GET "
            | b"POST"
            | b"PUT "
            | b"HEAD"
            | b"DELE"
            | b"OPTI"
            | b"PATC"
            | b"CONN"
            | b"TRAC"
            | b"HTTP"
    )
}
