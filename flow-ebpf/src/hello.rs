//! TLS ClientHello capture. A ClientHello's server_name extension may sit anywhere in it (Chrome
//! randomises the extension order, and its post-quantum key share alone is 1.2 KB), so when a
//! socket's first message in a direction starts a handshake record holding a ClientHello, the
//! record is copied whole up to `HELLO_MAX` bytes, whatever `--payload-bytes` says, into a
//! record of its own kind: ordinary prefixes keep their small ones. Only reached from a capture
//! already under way (the first message in a direction), so it adds nothing per event.

use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated::bpf_probe_read_user as read_user_raw},
    maps::RingBuf,
};
use flow_common::{stat, HelloEvent, SockKey, HELLO_MAX, PAYLOAD_RING_BYTES};

use crate::publish::{bump, wakeup_flags};

const RECORD_HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
/// Record header (type, version, length) and the handshake type that follows it.
const HEAD: u64 = 6;

/// The length of the TLS record (header included) that starts the user buffer `buf`, when it is
/// a handshake record of TLS/SSL 3.x whose message is a ClientHello; `available` bytes of the
/// buffer are the message's.
#[inline(always)]
pub fn client_hello_record(buf: u64, available: u64) -> Option<u64> {
    if available < HEAD {
        // A reader taking the record header alone (OpenSSL reads 5 bytes first): the byte after
        // it in the buffer is stale, and the prefix capture does as well.
        return None;
    }
    // SAFETY: user memory read through the checked helper.
    let head = unsafe { bpf_probe_read_user(buf as *const [u8; HEAD as usize]) }.ok()?;
    let is_hello =
        head[0] == RECORD_HANDSHAKE && head[1] == 3 && head[2] <= 4 && head[5] == CLIENT_HELLO;
    is_hello.then(|| u64::from(u16::from_be_bytes([head[3], head[4]])) + 5)
}

/// Copies `len` bytes of the ClientHello record at `buf` (at most `HELLO_MAX`) to the payload
/// ring as a [`HelloEvent`].
#[inline(always)]
pub fn capture_hello(
    ring: &RingBuf,
    sk: SockKey,
    first_ns: u64,
    direction: u32,
    buf: u64,
    len: u64,
) {
    let len = len.min(HELLO_MAX as u64) as u32;
    if len == 0 {
        return;
    }
    let Some(mut slot) = ring.reserve::<HelloEvent>(0) else {
        bump(stat::PAYLOAD_DROPS);
        return;
    };
    // Hidden from the optimizer, then masked: the verifier sees the length in 1..=HELLO_MAX on
    // the very register passed to the helper (HELLO_MAX is a power of two).
    let len = unsafe { core::ptr::read_volatile(&len) };
    let len = (len.wrapping_sub(1) & (HELLO_MAX as u32 - 1)) + 1;
    let event = slot.as_mut_ptr();
    // SAFETY: `event` points at a reserved `HelloEvent`; `len` is in 1..=HELLO_MAX.
    unsafe {
        (*event).sock = sk;
        (*event).first_ns = first_ns;
        (*event).direction = direction;
        let copied = read_user_raw(
            (*event).data.as_mut_ptr().cast(),
            len,
            buf as *const core::ffi::c_void,
        );
        (*event).len = if copied == 0 { len } else { 0 };
    }
    slot.submit(wakeup_flags(ring, PAYLOAD_RING_BYTES));
}
