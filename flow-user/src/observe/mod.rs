//! The seam between the OS and the pipeline: an [`Observer`] turns kernel maps, procfs and
//! netlink into plain [`Observation`]s; everything downstream (tracker, views, output) is pure
//! and tested with recorded observations.

mod ebpf;
mod facts;
mod procfs;
mod replay;
mod udp_sockets;

use std::{net::SocketAddr, time::Instant};

use serde::Serialize;

pub use self::ebpf::EbpfObserver;
pub use self::procfs::ProcfsObserver;
use crate::{
    ebpf::Rung,
    id::ConnectionId,
    model::{Counters, HttpExchange, NetConnection, ProtocolSource, TcpState},
    protocol::protocol_by_ports,
};
pub use replay::Replay;
pub use udp_sockets::UdpSockets;

/// Where the counters come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The kernel program counts every byte as it moves.
    Ebpf,
    /// `/proc/net/tcp` and sock_diag `tcp_info`: no privileges needed.
    Procfs,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Procfs => "procfs",
        }
    }
}

/// One socket at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedSocket {
    pub connection: NetConnection,
    pub counters: Counters,
    pub rx_queue: u64,
    pub tx_queue: u64,
    /// The latest HTTP exchange seen on it (eBPF mode with payload capture).
    pub http: Option<HttpExchange>,
}

/// Which live sockets an observation lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every live socket: one that is missing has vanished.
    #[default]
    Complete,
    /// Only sockets that changed (moved bytes, changed state) since the observer's previous
    /// observation: one that is missing is alive and idle until its close event.
    Changes,
}

/// Everything an observer saw at one instant.
#[derive(Clone, Debug)]
pub struct Observation {
    pub at: Instant,
    /// Sockets alive now (listening sockets excluded): all, or those that changed (`scope`).
    pub sockets: Vec<ObservedSocket>,
    /// Sockets destroyed since the previous observation, with their final counters.
    pub closed: Vec<ObservedSocket>,
    pub scope: Scope,
    pub health: Health,
}

/// The monitor's own state: what it runs on and what it lost. Nothing is dropped silently.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    pub mode: Option<Mode>,
    pub rung: Option<Rung>,
    /// Live connections the observer knows of now (idle ones included).
    pub live_connections: u64,
    /// Entries in the kernel's socket map now, and its capacity (0: socket-local storage,
    /// which has none).
    pub map_entries: u64,
    pub map_capacity: u64,
    /// Sockets the LRU map evicted to make room (their counting restarted); only maps that can
    /// evict report any (socket-local storage cannot).
    pub evictions: u64,
    /// Runs of the kernel's hooks skipped because they would have nested on a CPU (each may
    /// be a lost close or lost bytes), summed over its programs.
    pub missed_runs: u64,
    /// Close events lost (ring buffer full, or not read in time).
    pub close_drops: u64,
    /// Payload prefixes lost (ring buffer full); their connections fall back to ports.
    pub payload_drops: u64,
    /// Sockets the kernel program could not track at all.
    pub insert_failures: u64,
    /// Lines of `/proc/net/tcp{,6}` (and, after a read of UDP sockets, `/proc/net/udp{,6}`)
    /// that could not be parsed.
    pub malformed_lines: u64,
    /// Processes whose sockets could not be attributed (their `/proc/<pid>/fd` is unreadable).
    pub unreadable_processes: u64,
    /// Network namespaces seen but not (fully) read by the latest poll (no `CAP_SYS_ADMIN` to
    /// enter them, or gone since they were found): their counters are unknown, and their sockets
    /// too where procfs mode has no process of ours in them to read the tables through.
    pub namespaces_unreadable: u64,
}

/// A source of observations.
pub trait Observer: Send {
    /// What changed since the previous observation, where the source can tell (else all).
    fn observe(&mut self) -> anyhow::Result<Observation>;
    /// Every live socket, idle ones included (for listings of all sockets).
    fn observe_all(&mut self) -> anyhow::Result<Observation> {
        self.observe()
    }
    /// The next [`Observer::observe`] lists every socket again (after the tracking was reset).
    fn resync(&mut self) {}
    fn mode(&self) -> Mode;
    /// One line: which mode, which rung, and why.
    fn describe(&self) -> String;
    /// Whether observations carry what payload prefixes showed (protocols, HTTP).
    fn captures_payload(&self) -> bool {
        false
    }
    /// A/AAAA answers of the DNS responses seen since the previous call (names of remotes).
    fn take_dns_answers(&mut self) -> Vec<crate::protocol::dns::DnsAnswer> {
        Vec::new()
    }
    /// Every UDP socket of the network namespaces this observer reads (`/proc/net/udp{,6}`),
    /// one row per socket with its queues, inode and owner, and its flows' counters where the
    /// mode counts UDP (`flow stats`). The counters are those of the latest observation.
    fn udp_sockets(&mut self) -> anyhow::Result<UdpSockets> {
        Ok(UdpSockets::default())
    }
}

/// The fields of a connection that observers fill in; the id and protocol follow from them.
pub(crate) struct ConnectionParts {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub inode: u64,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub cookie: Option<u64>,
    pub generation: u64,
    pub active: bool,
}

impl ConnectionParts {
    /// The connection, its protocol by port.
    pub fn build(self) -> NetConnection {
        self.build_with(None)
    }

    /// The connection; what the payload showed wins over the ports.
    pub fn build_with(self, payload: Option<&facts::ConnectionFacts>) -> NetConnection {
        let by_port = protocol_by_ports(self.remote.port(), self.local.port());
        let from_payload = payload.and_then(|f| f.protocol(by_port));
        NetConnection {
            id: ConnectionId::of(self.cookie, self.local, self.remote, self.generation),
            protocol: from_payload.unwrap_or(by_port),
            protocol_source: if from_payload.is_some() {
                ProtocolSource::Payload
            } else {
                ProtocolSource::Port
            },
            local: self.local,
            remote: self.remote,
            transport: crate::model::Transport::Tcp,
            state: self.state,
            inode: self.inode,
            uid: self.uid,
            pid: self.pid,
            process: self.process,
            cookie: self.cookie,
            active: self.active,
            netns: None,
            attribution: crate::attribution::Attribution::none(),
            remote_name: None,
            tls_server_name: payload.and_then(|f| f.tls_server_name()),
            generation: self.generation,
        }
    }
}
