//! UDP sockets for `flow stats` ([`crate::Monitor::read_socket_stats`]): every namespace's
//! `/proc/net/udp{,6}` rows, each with its owner, queues and inode like a TCP row, and the
//! counters of its flows where the mode counts UDP (eBPF: the flows of its cookie, summed).
//!
//! One row per socket, not per flow: an unconnected socket is one row here and one row per
//! remote in the flow views (`bandwidth`, `top`, `connections`). A socket's id is built as a
//! flow's is (its addresses and its cookie), so a connected socket has its one flow's id.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{ConnectionParts, ObservedSocket};
use crate::{
    attribution::Attribution,
    model::{Counters, Protocol, ProtocolSource, Transport},
    procfs::{OwnerCache, UdpNamespaceRead},
    protocol::protocol_by_udp_ports,
};

/// The UDP sockets of every namespace read.
#[derive(Clone, Debug, Default)]
pub struct UdpSockets {
    pub sockets: Vec<ObservedSocket>,
    /// Lines of `/proc/net/udp{,6}` that could not be parsed.
    pub malformed_lines: u64,
}

/// What the flows of one socket (one cookie) add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTotals {
    pub counters: Counters,
    /// The protocol the payload of its flows showed, when they all agree.
    pub protocol: Option<Protocol>,
}

/// The rows of `reads` as observed sockets. `attribution` gives an owner's cgroup and container;
/// `totals` the summed flows of a cookie, where the mode counts UDP.
pub fn observed(
    reads: &[UdpNamespaceRead],
    owners: &mut OwnerCache,
    mut attribution: impl FnMut(Option<u32>) -> Arc<Attribution>,
    totals: impl Fn(u64) -> Option<FlowTotals>,
) -> UdpSockets {
    owners.refresh(
        reads
            .iter()
            .flat_map(|read| read.tables.rows.iter().map(|row| row.inode)),
    );
    let mut udp = UdpSockets::default();
    for read in reads {
        udp.malformed_lines += read.tables.malformed.len() as u64;
        let cookies: FxHashMap<_, u64> = read
            .diag
            .iter()
            .flatten()
            .map(|row| (row.key(), row.cookie))
            .collect();
        for row in &read.tables.rows {
            let cookie = cookies
                .get(&(row.local, row.remote, row.inode as u32))
                .copied();
            let owner = owners.get(row.inode).cloned();
            let pid = owner.as_ref().map(|o| o.pid);
            let mut connection = ConnectionParts {
                local: row.local,
                remote: row.remote,
                state: row.state,
                inode: row.inode,
                uid: Some(row.uid),
                pid,
                process: owner.map(|o| o.process),
                // Null as on flow rows: the id is made from the addresses and the cookie.
                cookie: None,
                generation: cookie.unwrap_or(row.inode),
                active: true,
            }
            .build();
            let totals = cookie.and_then(&totals).unwrap_or_default();
            connection.transport = Transport::Udp;
            (connection.protocol, connection.protocol_source) = match totals.protocol {
                Some(protocol) => (protocol, ProtocolSource::Payload),
                None => (
                    protocol_by_udp_ports(row.remote.port(), row.local.port()),
                    ProtocolSource::Port,
                ),
            };
            connection.netns = read.netns;
            connection.attribution = attribution(pid);
            udp.sockets.push(ObservedSocket {
                connection,
                counters: totals.counters,
                rx_queue: row.rx_queue,
                tx_queue: row.tx_queue,
                http: None,
            });
        }
    }
    udp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::TcpState,
        procfs::{UdpDiagRow, UdpRow, UdpTables},
    };

    fn read(netns: u64, rows: Vec<UdpRow>, diag: Option<Vec<UdpDiagRow>>) -> UdpNamespaceRead {
        UdpNamespaceRead {
            netns: Some(netns),
            tables: UdpTables {
                rows,
                malformed: Vec::new(),
            },
            diag,
        }
    }

    fn row(local: &str, remote: &str, inode: u64) -> UdpRow {
        UdpRow {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state: TcpState::Close,
            tx_queue: 0,
            rx_queue: 768,
            uid: 1000,
            inode,
        }
    }

    fn diag(of: &UdpRow, cookie: u64) -> UdpDiagRow {
        UdpDiagRow {
            local: of.local,
            remote: of.remote,
            inode: of.inode & 0xffff_ffff,
            cookie,
        }
    }

    #[test]
    fn each_socket_gets_its_own_cookie_s_flows_by_namespace_and_inode() {
        // Two sockets sharing a port (SO_REUSEPORT) and the same pair in another namespace.
        let (a, b) = (
            row("0.0.0.0:53", "0.0.0.0:0", 0x1_0000_0011),
            row("0.0.0.0:53", "0.0.0.0:0", 12),
        );
        let c = row("0.0.0.0:53", "0.0.0.0:0", 0x1_0000_0011);
        let reads = [
            read(
                1,
                vec![a.clone(), b.clone()],
                Some(vec![diag(&b, 0xb), diag(&a, 0xa)]),
            ),
            read(2, vec![c.clone()], None),
        ];
        let mut owners = OwnerCache::new("/nonexistent".into());
        let totals = |cookie| {
            (cookie == 0xa).then_some(FlowTotals {
                counters: Counters {
                    tx_bytes: 100,
                    rx_bytes: 200,
                    tx_packets: 1,
                    rx_packets: 2,
                },
                protocol: Some(Protocol::Quic),
            })
        };
        let udp = observed(&reads, &mut owners, |_| Attribution::none(), totals);
        let [a, b, c] = &udp.sockets[..] else {
            panic!("{udp:#?}");
        };
        assert_eq!(a.counters.tx_bytes, 100);
        assert_eq!(a.connection.protocol, Protocol::Quic);
        assert_eq!(a.connection.protocol_source, ProtocolSource::Payload);
        assert_eq!(b.counters, Counters::default());
        assert_eq!(b.connection.protocol, Protocol::Dns, "by port");
        for s in [a, b, c] {
            assert_eq!(s.connection.transport, Transport::Udp);
            assert_eq!(s.connection.cookie, None);
            assert_eq!(s.rx_queue, 768);
            assert_eq!(s.connection.uid, Some(1000));
        }
        assert_eq!((a.connection.netns, c.connection.netns), (Some(1), Some(2)));
        // Ids: from each socket's cookie, else its inode; never shared.
        assert_ne!(a.connection.id, b.connection.id);
        assert_ne!(a.connection.id, c.connection.id);
        assert_eq!(
            a.connection.id,
            crate::ConnectionId::of(None, a.connection.local, a.connection.remote, 0xa)
        );
        assert_eq!(
            c.connection.id,
            crate::ConnectionId::of(None, c.connection.local, c.connection.remote, 0x1_0000_0011)
        );
    }

    #[test]
    fn malformed_lines_of_every_namespace_are_counted() {
        let mut reads = [read(1, vec![], None), read(2, vec![], None)];
        for (read, n) in reads.iter_mut().zip([2, 3]) {
            read.tables.malformed = (0..n)
                .map(|i| crate::procfs::MalformedLine {
                    line_number: i + 2,
                    reason: "missing state".into(),
                })
                .collect();
        }
        let mut owners = OwnerCache::new("/nonexistent".into());
        let udp = observed(&reads, &mut owners, |_| Attribution::none(), |_| None);
        assert_eq!(udp.malformed_lines, 5);
        assert!(udp.sockets.is_empty());
    }
}
