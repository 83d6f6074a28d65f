//! UDP flows: `cgroup_skb` egress and ingress on the cgroup v2 root see every datagram of every
//! socket (any network namespace) with its socket cookie and both addresses, including the
//! remote of an unconnected socket, which the `sock_*_length` hooks lack. Each datagram is
//! counted under (cookie, remote); `cgroup/sock_release` tells userspace a UDP socket ended, so
//! its flows are reported with their final counters and deleted there. Both programs always
//! return 1: they observe, never filter.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_socket_cookie, bpf_ktime_get_ns},
    macros::{cgroup_skb, cgroup_sock, map},
    maps::{Array, LruHashMap, RingBuf},
    programs::{SkBuffContext, SockContext},
    EbpfContext,
};
use flow_common::{
    udp::{
        udp_stat, UdpFlow, UdpFlowKey, DEFAULT_UDP_FLOWS, UDP_RELEASED_RING_BYTES,
        UDP_RX_INITIAL_MORE, UDP_RX_SEEN, UDP_TX_INITIAL_MORE, UDP_TX_SEEN,
    },
    AF_INET, AF_INET6, DIRECTION_RX, DIRECTION_TX,
};

use crate::{
    capture::capture_bytes,
    publish::{atomic_add, wakeup_flags},
    udp_capture,
};

#[map(name = "FLOW_UDP_FLOWS")]
static FLOWS: LruHashMap<UdpFlowKey, UdpFlow> = LruHashMap::with_max_entries(DEFAULT_UDP_FLOWS, 0);

#[map(name = "FLOW_UDP_RELEASED")]
static RELEASED: RingBuf = RingBuf::with_byte_size(UDP_RELEASED_RING_BYTES, 0);

#[map(name = "FLOW_UDP_STATS")]
static STATS: Array<u64> = Array::with_max_entries(udp_stat::COUNT, 0);

const IPPROTO_UDP: u8 = 17;
/// `skb->protocol` (network byte order, as the kernel stores it, read as a little-endian u32).
const ETH_P_IP_BE: u32 = 0x0008;
const ETH_P_IPV6_BE: u32 = 0xdd86;
const UDP_HEADER: u32 = 8;

#[cgroup_skb]
pub fn flow_udp_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, DIRECTION_TX, true);
    1
}

/// `flow_udp_egress` without the sender's pid, for kernels whose `cgroup_skb` programs may not
/// call `bpf_get_current_pid_tgid` (Debian 12's 6.1 refuses it; 6.12 allows it): the loader
/// falls back to it, so UDP is counted there all the same.
#[cgroup_skb]
pub fn flow_udp_egress_nopid(ctx: SkBuffContext) -> i32 {
    count(&ctx, DIRECTION_TX, false);
    1
}

#[cgroup_skb]
pub fn flow_udp_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, DIRECTION_RX, false);
    1
}

/// `cgroup/sock_release`: a socket of any kind is being released; UDP ones are published.
#[cgroup_sock(sock_release)]
pub fn flow_udp_release(ctx: SockContext) -> i32 {
    // SAFETY: the context is a `struct bpf_sock`.
    let protocol = unsafe { (*ctx.sock).protocol };
    if protocol == IPPROTO_UDP as u32 {
        // SAFETY: the helper takes this program type's context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        match RELEASED.reserve::<u64>(0) {
            Some(mut slot) => {
                slot.write(cookie);
                slot.submit(wakeup_flags(&RELEASED, UDP_RELEASED_RING_BYTES));
            }
            None => bump(udp_stat::RELEASE_DROPS),
        }
    }
    1
}

/// Addresses of a datagram, as `(key without cookie, local addr, local port, header bytes)`.
struct Parsed {
    key: UdpFlowKey,
    local_addr: [u8; 16],
    local_port: u16,
    /// IP header(s) plus the UDP header.
    headers: u32,
}

/// `sender`: record the current task as the flow's sender (a constant after inlining, so the
/// helper call is not in the programs that pass false).
#[inline(always)]
fn count(ctx: &SkBuffContext, direction: u32, sender: bool) {
    let Some(parsed) = parse(ctx, direction) else {
        return;
    };
    let mut key = parsed.key;
    // SAFETY: the helper takes this program type's context.
    key.cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if key.cookie == 0 {
        return;
    }
    let skb = ctx.skb.skb;
    // SAFETY: reads of the context's fields.
    let (len, gso_segs) = unsafe { ((*skb).len, (*skb).gso_segs) };
    let bytes = u64::from(len.saturating_sub(parsed.headers));
    let datagrams = u64::from(gso_segs.max(1));
    let entry = match FLOWS.get_ptr_mut(&key) {
        Some(entry) => entry,
        None => {
            let fresh = UdpFlow {
                first_ns: unsafe { bpf_ktime_get_ns() },
                local_addr: parsed.local_addr,
                local_port: parsed.local_port,
                uid: ctx.get_socket_uid(),
                ..UdpFlow::default()
            };
            // BPF_NOEXIST: a concurrent first datagram on another CPU keeps its entry.
            if FLOWS.insert(&key, &fresh, 1).is_ok() {
                bump(udp_stat::INSERTS);
            }
            match FLOWS.get_ptr_mut(&key) {
                Some(entry) => entry,
                None => return,
            }
        }
    };
    // SAFETY: a map value pointer, valid for this run.
    let entry = unsafe { &mut *entry };
    if direction == DIRECTION_TX {
        atomic_add(&mut entry.tx_bytes, bytes);
        atomic_add(&mut entry.tx_packets, datagrams);
        if sender {
            entry.pid_tgid = bpf_get_current_pid_tgid();
        }
    } else {
        atomic_add(&mut entry.rx_bytes, bytes);
        atomic_add(&mut entry.rx_packets, datagrams);
    }
    let (seen, more) = if direction == DIRECTION_TX {
        (UDP_TX_SEEN, UDP_TX_INITIAL_MORE)
    } else {
        (UDP_RX_SEEN, UDP_RX_INITIAL_MORE)
    };
    // One test per datagram, as with the first datagram alone: a copy is wanted while the
    // direction is unseen, or once more after a QUIC Initial.
    let flags = entry.capture;
    if flags & (seen | more) != seen && capture_bytes() > 0 {
        // A race may capture a datagram twice: harmless (userspace keeps the first facts).
        let first = flags & seen == 0;
        entry.capture = (flags | seen) & !more;
        let index = if first { 0 } else { 1 };
        let initial = udp_capture::capture(ctx, &key, direction, parsed.headers, len, index);
        if initial && first {
            entry.capture |= more;
        }
    }
}

#[inline(always)]
fn parse(ctx: &SkBuffContext, direction: u32) -> Option<Parsed> {
    // SAFETY: a read of the context's field.
    let protocol = unsafe { (*ctx.skb.skb).protocol };
    let mut key = UdpFlowKey::default();
    let local_addr;
    let (ip_len, src, dst) = if protocol == ETH_P_IP_BE {
        let head: [u8; 20] = ctx.load(0).ok()?;
        if head[9] != IPPROTO_UDP || head[6] & 0x3f != 0 || head[7] != 0 {
            // Not UDP, or a fragment (only the first would have a header; counted nowhere).
            return None;
        }
        key.family = AF_INET;
        let ihl = u32::from(head[0] & 0x0f) * 4;
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&head[12..16]);
        dst[..4].copy_from_slice(&head[16..20]);
        (ihl, src, dst)
    } else if protocol == ETH_P_IPV6_BE {
        let head: [u8; 40] = ctx.load(0).ok()?;
        // Datagrams with extension headers are not counted.
        if head[6] != IPPROTO_UDP {
            return None;
        }
        key.family = AF_INET6;
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&head[8..24]);
        dst.copy_from_slice(&head[24..40]);
        (40, src, dst)
    } else {
        return None;
    };
    let ports: [u8; 4] = ctx.load(ip_len as usize).ok()?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    let local_port;
    if direction == DIRECTION_TX {
        key.remote_addr = dst;
        key.remote_port = dport;
        local_addr = src;
        local_port = sport;
    } else {
        key.remote_addr = src;
        key.remote_port = sport;
        local_addr = dst;
        local_port = dport;
    }
    Some(Parsed {
        key,
        local_addr,
        local_port,
        headers: ip_len + UDP_HEADER,
    })
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        atomic_add(unsafe { &mut *slot }, 1);
    }
}
