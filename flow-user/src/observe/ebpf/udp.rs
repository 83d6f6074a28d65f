//! UDP flows as observed sockets. One row per (socket, remote endpoint): a connected socket has
//! one, an unconnected one one per remote it talked to. Each poll lists every flow in the
//! kernel's map; flows of sockets released before the read are reported closed, with their
//! final counters, and deleted from the map (so nothing leaks and nothing is lost between polls).
//!
//! UDP has no state: a live flow shows `ESTABLISHED`, one whose socket was released `CLOSE`.
//! A flow's id is a hash of its addresses and its socket's cookie (the `generation`); `cookie`
//! itself stays null, since one socket carries several flows.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use anyhow::Result;
use flow_common::{
    udp::{UdpFlow, UdpFlowKey},
    AF_INET,
};

use super::super::{udp_sockets::FlowTotals, ConnectionParts, ObservedSocket};
use crate::{
    ebpf::KernelProgram,
    model::{Counters, Protocol, ProtocolSource, TcpState, Transport},
    protocol::{dns::DnsAnswer, protocol_by_udp_ports},
};

/// What the payload showed of one flow.
#[derive(Clone, Debug, Default)]
struct FlowFacts {
    protocol: Option<Protocol>,
    tls_server_name: Option<Arc<str>>,
}

#[derive(Default)]
pub struct UdpBook {
    facts: HashMap<UdpFlowKey, FlowFacts>,
    /// Per socket cookie: the last sender's pid and its command name, read from `/proc` once
    /// per pid (a released socket's process may be gone by the time its flows are reported).
    owners: HashMap<u64, (u32, Option<String>)>,
    dns_answers: Vec<DnsAnswer>,
    /// Per socket cookie, its live flows of the latest poll added up (`flow stats`' rows).
    totals: HashMap<u64, FlowTotals>,
    /// Flows userspace deleted (with the kernel's inserts and the entries present: evictions).
    deleted: u64,
    evictions: u64,
    pub entries: u64,
    pub release_drops: u64,
    pub payload_drops: u64,
}

/// One poll's flows.
pub struct UdpPoll {
    pub live: Vec<ObservedSocket>,
    pub closed: Vec<ObservedSocket>,
}

impl UdpBook {
    pub fn poll(&mut self, program: &mut KernelProgram) -> Result<UdpPoll> {
        let read = program.read_udp()?;
        for (key, facts) in read.payloads {
            self.dns_answers.extend(facts.dns_answers.iter().cloned());
            let kept = self.facts.entry(key).or_default();
            kept.protocol = kept.protocol.or(facts.protocol);
            if kept.tls_server_name.is_none() {
                kept.tls_server_name = facts.tls_server_name.as_deref().map(Arc::from);
            }
        }
        let mut poll = UdpPoll {
            live: Vec::new(),
            closed: Vec::new(),
        };
        let mut ended = Vec::new();
        for (key, flow) in &read.flows {
            let released = read.released.contains(&key.cookie);
            let socket = self.observed(key, flow, !released);
            if released {
                ended.push(*key);
                poll.closed.push(socket);
            } else {
                poll.live.push(socket);
            }
        }
        let present = read.flows.len() as u64;
        self.entries = present;
        self.evictions = self.evictions.max(
            read.inserts
                .saturating_sub(self.deleted)
                .saturating_sub(present),
        );
        self.deleted += program.delete_udp_flows(&ended)?;
        // Whatever belongs to no flow in the map (ended, or evicted) is forgotten.
        let ended: std::collections::HashSet<UdpFlowKey> = ended.into_iter().collect();
        let present: std::collections::HashSet<UdpFlowKey> = read
            .flows
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !ended.contains(key))
            .collect();
        self.facts.retain(|key, _| present.contains(key));
        let cookies: std::collections::HashSet<u64> = present.iter().map(|k| k.cookie).collect();
        self.owners.retain(|cookie, _| cookies.contains(cookie));
        self.totals = self.add_up(&read.flows, &present);
        self.release_drops = read.release_drops;
        self.payload_drops = read.payload_drops;
        Ok(poll)
    }

    /// The live flows of the socket with this cookie, as of the latest poll, added up; `None`
    /// when it has none in the map.
    pub fn totals(&self, cookie: u64) -> Option<FlowTotals> {
        self.totals.get(&cookie).copied()
    }

    /// Per socket: the counters of its flows in `present`, and the protocol their payload
    /// showed when no two of them disagree.
    fn add_up(
        &self,
        flows: &[(UdpFlowKey, UdpFlow)],
        present: &std::collections::HashSet<UdpFlowKey>,
    ) -> HashMap<u64, FlowTotals> {
        let mut totals: HashMap<u64, (FlowTotals, bool)> = HashMap::new();
        for (key, flow) in flows.iter().filter(|(key, _)| present.contains(key)) {
            let (sum, disagree) = totals.entry(key.cookie).or_default();
            let c = &mut sum.counters;
            c.tx_bytes += flow.tx_bytes;
            c.rx_bytes += flow.rx_bytes;
            c.tx_packets += flow.tx_packets;
            c.rx_packets += flow.rx_packets;
            let seen = self.facts.get(key).and_then(|f| f.protocol);
            match (sum.protocol, seen) {
                (_, None) => {}
                (None, Some(p)) if !*disagree => sum.protocol = Some(p),
                (Some(q), Some(p)) if q != p => (sum.protocol, *disagree) = (None, true),
                _ => {}
            }
        }
        totals
            .into_iter()
            .map(|(cookie, (sum, _))| (cookie, sum))
            .collect()
    }

    /// Flows the LRU map evicted to make room (a lower bound).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn take_dns_answers(&mut self) -> Vec<DnsAnswer> {
        std::mem::take(&mut self.dns_answers)
    }

    fn observed(&mut self, key: &UdpFlowKey, flow: &UdpFlow, active: bool) -> ObservedSocket {
        let remote = SocketAddr::new(ip(key.family, &key.remote_addr), key.remote_port);
        let local = SocketAddr::new(ip(key.family, &flow.local_addr), flow.local_port);
        let (pid, process) = self.owner(key.cookie, (flow.pid_tgid >> 32) as u32);
        let mut connection = ConnectionParts {
            local,
            remote,
            state: if active {
                TcpState::Established
            } else {
                TcpState::Close
            },
            inode: 0,
            uid: Some(flow.uid),
            pid,
            process,
            cookie: None,
            generation: key.cookie,
            active,
        }
        .build();
        let facts = self.facts.get(key).cloned().unwrap_or_default();
        connection.transport = Transport::Udp;
        (connection.protocol, connection.protocol_source) = match facts.protocol {
            Some(protocol) => (protocol, ProtocolSource::Payload),
            None => (
                protocol_by_udp_ports(remote.port(), local.port()),
                ProtocolSource::Port,
            ),
        };
        connection.tls_server_name = facts.tls_server_name;
        ObservedSocket {
            connection,
            counters: Counters {
                tx_bytes: flow.tx_bytes,
                rx_bytes: flow.rx_bytes,
                tx_packets: flow.tx_packets,
                rx_packets: flow.rx_packets,
            },
            rx_queue: 0,
            tx_queue: 0,
            http: None,
        }
    }

    /// The pid that last sent on the socket (0: none yet) and its command name.
    fn owner(&mut self, cookie: u64, pid: u32) -> (Option<u32>, Option<String>) {
        if pid == 0 {
            return (None, None);
        }
        let known = self.owners.entry(cookie).or_insert((0, None));
        if known.0 != pid {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
            *known = (pid, comm.map(|c| c.trim_end().to_string()));
        }
        (Some(pid), known.1.clone())
    }
}

fn ip(family: u16, addr: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}
