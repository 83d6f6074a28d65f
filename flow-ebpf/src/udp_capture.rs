//! What the UDP programs copy of a flow's datagrams for userspace: a bounded prefix of the first
//! datagram in each direction (DNS, QUIC long headers), or, when a datagram starts with a QUIC
//! v1/v2 Initial, the whole datagram — its ClientHello is encrypted (with keys anyone can derive
//! from the connection id, RFC 9001 §5.2), so userspace needs every byte to read the server
//! name — and then the next datagram too if it is another Initial (a ClientHello with
//! post-quantum key shares spans two). Reached only for a flow's first datagram in a direction,
//! or the one after an Initial ([`crate::udp`] decides): nothing here runs for other datagrams.

use aya_ebpf::{
    helpers::generated::bpf_skb_load_bytes, macros::map, maps::RingBuf, programs::SkBuffContext,
    EbpfContext,
};
use flow_common::udp::{
    udp_stat, UdpFlowKey, UdpInitialEvent, UdpPayloadEvent, UDP_INITIAL_MAX, UDP_PAYLOAD_MAX,
    UDP_PAYLOAD_RING_BYTES,
};

use crate::{capture::capture_bytes, publish::wakeup_flags, udp::bump};

#[map(name = "FLOW_UDP_PAYLOADS")]
static PAYLOADS: RingBuf = RingBuf::with_byte_size(UDP_PAYLOAD_RING_BYTES, 0);

/// QUIC versions whose Initial userspace can open (RFC 9000; RFC 9369).
const QUIC_V1: u32 = 0x0000_0001;
const QUIC_V2: u32 = 0x6b33_43cf;

/// One datagram of a flow that wants a copy: `index` 0 is the flow's first in `direction`, 1
/// the one after an Initial. Returns whether it was a QUIC Initial (copied whole).
#[inline(always)]
pub fn capture(
    ctx: &SkBuffContext,
    key: &UdpFlowKey,
    direction: u32,
    headers: u32,
    len: u32,
    index: u32,
) -> bool {
    let payload = len.saturating_sub(headers);
    if starts_quic_initial(ctx, headers) {
        capture_initial(ctx, key, direction, headers, payload, index);
        return true;
    }
    if index == 0 {
        capture_prefix(ctx, key, direction, headers, payload);
    }
    false
}

/// Long header with the fixed bit, the Initial packet type of its version (v1: 0b00; v2 permutes
/// the types and gives Initial 0b01), and version 1 or 2.
#[inline(always)]
fn starts_quic_initial(ctx: &SkBuffContext, headers: u32) -> bool {
    let Ok(head) = ctx.load::<[u8; 5]>(headers as usize) else {
        return false;
    };
    let version = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    match head[0] & 0xf0 {
        0xc0 => version == QUIC_V1,
        0xd0 => version == QUIC_V2,
        _ => false,
    }
}

/// Copies the whole datagram payload (at most `UDP_INITIAL_MAX` bytes).
#[inline(always)]
fn capture_initial(
    ctx: &SkBuffContext,
    key: &UdpFlowKey,
    direction: u32,
    headers: u32,
    payload: u32,
    index: u32,
) {
    let want = payload.min(UDP_INITIAL_MAX as u32);
    if want == 0 {
        return;
    }
    let Some(mut slot) = PAYLOADS.reserve::<UdpInitialEvent>(0) else {
        bump(udp_stat::PAYLOAD_DROPS);
        return;
    };
    // As in `capture_prefix`: the length masked on the register passed to the helper.
    let want = unsafe { core::ptr::read_volatile(&want) };
    let want = (want.wrapping_sub(1) & (UDP_INITIAL_MAX as u32 - 1)) + 1;
    let event = slot.as_mut_ptr();
    // SAFETY: `event` is a reserved `UdpInitialEvent`; `want` is in 1..=UDP_INITIAL_MAX.
    unsafe {
        (*event).key = *key;
        (*event).direction = direction;
        (*event).index = index;
        (*event)._pad = 0;
        let rc = bpf_skb_load_bytes(
            ctx.as_ptr(),
            headers,
            (*event).data.as_mut_ptr().cast(),
            want,
        );
        (*event).len = if rc == 0 { want } else { 0 };
    }
    slot.submit(wakeup_flags(&PAYLOADS, UDP_PAYLOAD_RING_BYTES));
}

/// Copies a bounded prefix (`--payload-bytes`) of the datagram's payload.
#[inline(always)]
fn capture_prefix(
    ctx: &SkBuffContext,
    key: &UdpFlowKey,
    direction: u32,
    headers: u32,
    payload: u32,
) {
    let mut want = payload.min(capture_bytes());
    if want > UDP_PAYLOAD_MAX as u32 {
        want = UDP_PAYLOAD_MAX as u32;
    }
    if want == 0 {
        return;
    }
    let Some(mut slot) = PAYLOADS.reserve::<UdpPayloadEvent>(0) else {
        bump(udp_stat::PAYLOAD_DROPS);
        return;
    };
    // Hidden from the optimizer, then masked: the verifier sees the length in 1..=512 on the
    // very register passed to the helper.
    let want = unsafe { core::ptr::read_volatile(&want) };
    let want = ((want.wrapping_sub(1)) & (UDP_PAYLOAD_MAX as u32 - 1)) + 1;
    let event = slot.as_mut_ptr();
    // SAFETY: `event` is a reserved `UdpPayloadEvent`; `want` is in 1..=UDP_PAYLOAD_MAX.
    unsafe {
        (*event).key = *key;
        (*event).direction = direction;
        let rc = bpf_skb_load_bytes(
            ctx.as_ptr(),
            headers,
            (*event).data.as_mut_ptr().cast(),
            want,
        );
        (*event).len = if rc == 0 { want } else { 0 };
    }
    slot.submit(wakeup_flags(&PAYLOADS, UDP_PAYLOAD_RING_BYTES));
}
