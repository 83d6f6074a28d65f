//! The OS-facing readers that need no eBPF: `/proc/net/{tcp,udp}{,6}`, socket owners,
//! sock_diag, and all of them once per network namespace.

pub mod namespaces;
pub mod owners;
pub mod sock_diag;
mod socket_line;
pub mod tcp_table;
pub mod udp_diag;
pub mod udp_table;

pub use namespaces::{
    join, JoinKey, Joined, NamespaceRead, NamespaceReader, UdpNamespaceRead, UdpNamespacesRead,
    Unreadable,
};
pub use owners::{Owner, OwnerCache};
pub use sock_diag::{dump_tcp_info, TcpInfoRow};
pub use socket_line::MalformedLine;
pub use tcp_table::{parse_tcp_table, read_tcp_tables, TcpRow, TcpTables};
pub use udp_diag::{dump_udp_sockets, UdpDiagRow};
pub use udp_table::{parse_udp_table, read_udp_tables, UdpRow, UdpTables};
