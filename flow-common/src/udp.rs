//! UDP flows, counted per socket and remote endpoint by the `cgroup_skb` programs on the cgroup
//! v2 root (see the README's "UDP"). Plain `repr(C)` data, shared with userspace byte for byte.

/// One flow: a socket (its cookie) and one remote endpoint. A connected socket has one; an
/// unconnected one (`sendto`/`recvfrom`) has one per remote it talked to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    /// `bpf_get_socket_cookie`: unique per socket for the boot.
    pub cookie: u64,
    /// IPv4 uses the first 4 bytes (network order); IPv6 all 16.
    pub remote_addr: [u8; 16],
    /// Host byte order.
    pub remote_port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    pub _pad: u32,
}

/// Counters of one flow since its entry was created.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpFlow {
    /// UDP payload bytes (IP length minus the IP and UDP headers).
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// Datagrams (a GSO send of n segments counts n).
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// `bpf_ktime_get_ns` of the entry's creation: with the key, the flow's identity.
    pub first_ns: u64,
    /// `tgid << 32 | tid` of the task that last sent on it (0 before its first send, and
    /// always where the kernel refuses `bpf_get_current_pid_tgid` in `cgroup_skb`).
    pub pid_tgid: u64,
    /// The socket's end of the flow (as the key's remote).
    pub local_addr: [u8; 16],
    pub local_port: u16,
    pub _pad: u16,
    /// `bpf_get_socket_uid`.
    pub uid: u32,
    /// `UDP_TX_SEEN` / `UDP_RX_SEEN`: first datagram of a direction captured;
    /// `UDP_TX_INITIAL_MORE` / `UDP_RX_INITIAL_MORE`: it was a QUIC Initial, so the next datagram
    /// in that direction is looked at too.
    pub capture: u32,
    pub _reserved: u32,
}

pub const UDP_TX_SEEN: u32 = 1;
pub const UDP_RX_SEEN: u32 = 2;
/// The first datagram sent was a QUIC Initial: the next one sent is captured whole too if it is
/// one (a ClientHello with post-quantum key shares spans two Initials, RFC 9001 §4.3).
pub const UDP_TX_INITIAL_MORE: u32 = 4;
/// As [`UDP_TX_INITIAL_MORE`], for datagrams received.
pub const UDP_RX_INITIAL_MORE: u32 = 8;

/// Largest prefix of a datagram copied to userspace (DNS answers, QUIC long headers).
pub const UDP_PAYLOAD_MAX: usize = 512;

/// Largest QUIC Initial datagram copied whole: its payload is encrypted (with keys derived from
/// its connection id, RFC 9001 §5.2), so userspace needs all of it, tag included, to read the
/// ClientHello. Clients send 1,200 to ~1,500 bytes.
pub const UDP_INITIAL_MAX: usize = 2048;
/// Initial datagrams captured per flow and direction: the first two.
pub const UDP_INITIALS_PER_DIRECTION: u32 = 2;

/// One of the first [`UDP_INITIALS_PER_DIRECTION`] datagrams of a flow in one direction, when it
/// starts with a QUIC v1/v2 Initial: the whole datagram. Shares the payload ring with
/// [`UdpPayloadEvent`]; userspace tells the two apart by the record's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpInitialEvent {
    pub key: UdpFlowKey,
    pub direction: u32,
    /// Bytes valid in `data`.
    pub len: u32,
    /// 0 for the flow's first datagram in this direction, 1 for the next: the last, after which
    /// userspace need not wait for more of this ClientHello.
    pub index: u32,
    pub _pad: u32,
    pub data: [u8; UDP_INITIAL_MAX],
}

/// The first datagram of a flow in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPayloadEvent {
    pub key: UdpFlowKey,
    pub direction: u32,
    /// Bytes valid in `data`.
    pub len: u32,
    pub data: [u8; UDP_PAYLOAD_MAX],
}

/// Map and program names.
pub mod names {
    /// LRU hash `UdpFlowKey → UdpFlow`, capacity set by the loader (`--udp-flows`).
    pub const FLOWS: &str = "FLOW_UDP_FLOWS";
    /// Ring of `u64` cookies of released UDP sockets.
    pub const RELEASED: &str = "FLOW_UDP_RELEASED";
    /// Ring of [`super::UdpPayloadEvent`] and [`super::UdpInitialEvent`].
    pub const PAYLOADS: &str = "FLOW_UDP_PAYLOADS";
    /// Array of `u64` counters, indexed by [`super::udp_stat`].
    pub const STATS: &str = "FLOW_UDP_STATS";
    pub const EGRESS: &str = "flow_udp_egress";
    /// `EGRESS` without the sender's pid, where the kernel refuses that helper there.
    pub const EGRESS_NOPID: &str = "flow_udp_egress_nopid";
    pub const INGRESS: &str = "flow_udp_ingress";
    pub const RELEASE: &str = "flow_udp_release";
}

/// Indexes into `FLOW_UDP_STATS`.
pub mod udp_stat {
    /// Flow entries created (with userspace's deletes and the entries present: evictions).
    pub const INSERTS: u32 = 0;
    /// Released-socket events that did not fit in the ring (their flows end by LRU eviction).
    pub const RELEASE_DROPS: u32 = 1;
    /// Payload prefixes (and whole QUIC Initials) that did not fit in the ring.
    pub const PAYLOAD_DROPS: u32 = 2;
    pub const COUNT: u32 = 3;
}

pub const DEFAULT_UDP_FLOWS: u32 = 65_536;
pub const UDP_RELEASED_RING_BYTES: u32 = 1 << 18;
/// Holds ~500 Initials (a QUIC connection's two ends make up to 2 each) or ~1,900 prefixes
/// between two polls.
pub const UDP_PAYLOAD_RING_BYTES: u32 = 1 << 20;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data without padding holes; any bit pattern is valid.
    unsafe impl aya::Pod for super::UdpFlowKey {}
    unsafe impl aya::Pod for super::UdpFlow {}
    unsafe impl aya::Pod for super::UdpPayloadEvent {}
    unsafe impl aya::Pod for super::UdpInitialEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<UdpFlowKey>(), 32);
        assert_eq!(size_of::<UdpFlow>(), 6 * 8 + 16 + 4 + 4 + 4 + 4);
        assert_eq!(size_of::<UdpPayloadEvent>(), 32 + 8 + UDP_PAYLOAD_MAX);
        assert_eq!(size_of::<UdpInitialEvent>(), 32 + 16 + UDP_INITIAL_MAX);
        // The payload ring's two record kinds are told apart by their length.
        assert!(size_of::<UdpInitialEvent>() > size_of::<UdpPayloadEvent>());
    }
}
