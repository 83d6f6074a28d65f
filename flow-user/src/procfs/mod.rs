//! The OS-facing readers that need no eBPF: `/proc/net/tcp{,6}`, socket owners, sock_diag, and
//! all of them once per network namespace.

pub mod namespaces;
pub mod owners;
pub mod sock_diag;
pub mod tcp_table;

pub use namespaces::{join, JoinKey, Joined, NamespaceRead, NamespaceReader, Unreadable};
pub use owners::{Owner, OwnerCache};
pub use sock_diag::{dump_tcp_info, TcpInfoRow};
pub use tcp_table::{parse_tcp_table, read_tcp_tables, MalformedLine, TcpRow, TcpTables};
