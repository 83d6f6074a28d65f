//! The documented types (the seed's `flow` module), in Rust. Pure data: no I/O here.

use std::{fmt, net::SocketAddr, time::Duration};

use serde::{Serialize, Serializer};

pub use crate::id::ConnectionId;

/// TCP state as the kernel numbers it (`include/net/tcp_states.h`, `/proc/net/tcp`'s `st`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    /// A number this build does not know.
    Unknown(u8),
}

impl TcpState {
    pub fn from_kernel(code: u8) -> Self {
        use TcpState::*;
        match code {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            other => Unknown(other),
        }
    }

    /// The name `ss` and the kernel use (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
            Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TcpState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Application protocol of a connection (the seed's `Protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "SSH")]
    Ssh,
    #[serde(rename = "FTP")]
    Ftp,
    #[serde(rename = "SMTP")]
    Smtp,
    #[serde(rename = "DNS")]
    Dns,
    /// QUIC (v1/v2), seen by its long-header packets; beyond the seed.
    #[serde(rename = "QUIC")]
    Quic,
    #[default]
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Protocol::Http,
        Protocol::Https,
        Protocol::Ssh,
        Protocol::Ftp,
        Protocol::Smtp,
        Protocol::Dns,
        Protocol::Quic,
        Protocol::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Ssh => "SSH",
            Protocol::Ftp => "FTP",
            Protocol::Smtp => "SMTP",
            Protocol::Dns => "DNS",
            Protocol::Quic => "QUIC",
            Protocol::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Protocol::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown protocol `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// The transport a connection (or flow) runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Where a connection's protocol came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSource {
    /// The first bytes of a message (eBPF mode with payload capture).
    Payload,
    /// The well-known port of either end.
    #[default]
    Port,
}

impl fmt::Display for ProtocolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolSource::Payload => "payload",
            ProtocolSource::Port => "port",
        })
    }
}

/// The latest HTTP exchange seen on a connection: the request's method and host, and the status
/// of its response once seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpExchange {
    pub method: Option<String>,
    pub host: Option<String>,
    pub status_code: Option<u16>,
    /// When the last message of the exchange was seen.
    pub seen: Option<std::time::Instant>,
}

/// One TCP connection as seen from its local end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetConnection {
    /// Stable for the life of this connection, different for a later one on the same 4-tuple
    /// (see [`crate::generate_connection_id`]).
    pub id: ConnectionId,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `tcp`, or `udp` for a UDP flow (eBPF mode: a socket and one remote endpoint).
    pub transport: Transport,
    pub state: TcpState,
    /// Socket inode (`/proc/net/tcp`, `fstat`); 0 when unknown (e.g. closed before it was seen).
    pub inode: u64,
    /// Owner's uid from `/proc/net/tcp`; `None` when unknown.
    pub uid: Option<u32>,
    /// Process that owns the socket (or, from the kernel program, last moved data on it).
    pub pid: Option<u32>,
    pub process: Option<String>,
    /// The kernel's socket cookie (sock_diag), where known.
    pub cookie: Option<u64>,
    pub protocol: Protocol,
    /// Whether `protocol` came from the bytes the connection carried or from its ports.
    pub protocol_source: ProtocolSource,
    /// False once the connection is closed (it stays listed until it leaves the window).
    pub active: bool,
    /// The network namespace's inode number (`stat -L /proc/<pid>/ns/net`), where known.
    pub netns: Option<u64>,
    /// The cgroup, container (and pod) and systemd service of the task that last moved data on
    /// it (JSON: `cgroup`, `container`, `service`). Shared by every connection of one cgroup.
    #[serde(flatten)]
    pub attribution: std::sync::Arc<crate::attribution::Attribution>,
    /// The name this host most recently resolved to the remote address (from the A/AAAA
    /// answers of DNS responses `flow` saw), where known.
    pub remote_name: Option<std::sync::Arc<str>>,
    /// The server name (SNI) of the connection's TLS ClientHello, where seen.
    pub tls_server_name: Option<std::sync::Arc<str>>,
    /// Tells apart connections that reuse one 4-tuple: the socket cookie, the inode, or a hash of
    /// the kernel's socket address and first-activity time. Input of the id; not printed.
    #[serde(skip)]
    pub generation: u64,
}

/// Bandwidth of one connection over a sample window (the seed's `ConnectionBandwidth`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionBandwidth {
    pub connection: NetConnection,
    /// Bytes moved inside the window, seen from the local end.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// Segments (TCP) sent and received inside the window (the kernel's own counts).
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub tx_bytes_per_second: u64,
    pub rx_bytes_per_second: u64,
    /// `tx + rx` bytes per second.
    pub bytes_per_second: u64,
    /// Segments in plus out per second (the kernel's own segment counters), 0 when unknown.
    pub packets_per_second: u64,
    #[serde(rename = "sample_window_ms", serialize_with = "millis")]
    pub sample_window: Duration,
}

/// Socket statistics (the seed's `SocketStats`): queues and inode from `/proc/net/tcp{,6}`,
/// byte and segment counters from the kernel program or sock_diag `tcp_info`. UDP sockets (one
/// row per socket, `connection.transport` `udp`): queues and inode from `/proc/net/udp{,6}`,
/// counters (payload bytes and datagrams) the sum of the socket's flows in eBPF mode, 0 in
/// procfs mode (which counts no UDP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SocketStats {
    pub connection: NetConnection,
    /// Bytes received but not yet read by the application. UDP: the memory the unread
    /// datagrams take (each its whole buffer, not only its payload), as `ss -u`'s Recv-Q.
    pub rx_queue: u64,
    /// Bytes sent but not yet acknowledged by the peer. UDP: the memory of datagrams not yet
    /// sent.
    pub tx_queue: u64,
    pub inode: u64,
    /// eBPF mode: bytes the application read (since the monitor started); procfs mode: bytes
    /// the kernel received (`tcp_info.bytes_received`, since the socket opened). They differ by
    /// what is still queued (`rx_queue`).
    pub rx_bytes: u64,
    /// eBPF mode: bytes the application queued for sending (since the monitor started); procfs
    /// mode: payload bytes sent at least once (`bytes_sent - bytes_retrans`).
    pub tx_bytes: u64,
    /// Segments received and sent (sock_diag `segs_in`/`segs_out`, the kernel's own counts).
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Byte and segment counters of one socket at one instant, since the socket (or the monitor)
/// started counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
}

impl Counters {
    /// What moved between `earlier` and `self` (saturating: counters never run backwards, but a
    /// socket's counting may restart after an eviction).
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
        }
    }
}

/// A connection's counters at one instant (the seed's `ConnectionStateSnapshot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionStateSnapshot {
    pub connection_id: ConnectionId,
    /// Monotonic time of the observation.
    #[serde(skip)]
    pub timestamp: std::time::Instant,
    pub active: bool,
    #[serde(flatten)]
    pub counters: Counters,
}

/// One point of a connection's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BandwidthSample {
    /// When the sample ended, measured from the tracker's start.
    #[serde(rename = "at_ms", serialize_with = "millis")]
    pub at: Duration,
    pub tx_bytes_per_second: u64,
    pub rx_bytes_per_second: u64,
    pub packets_per_second: u64,
}

/// Bandwidth samples of one connection inside a window (the seed's `ConnectionHistory`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionHistory {
    pub connection_id: ConnectionId,
    #[serde(rename = "tracking_window_ms", serialize_with = "millis")]
    pub tracking_window: Duration,
    /// Oldest first.
    pub samples: Vec<BandwidthSample>,
}

/// HTTP seen on a connection (the seed's `HttpConnection`); each field only when it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpConnection {
    pub connection: NetConnection,
    pub method: Option<String>,
    pub host: Option<String>,
    pub status_code: Option<u16>,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}
