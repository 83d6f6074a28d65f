//! `/proc/net/tcp` and `/proc/net/tcp6`: every TCP socket of the network namespace, with its
//! state, queues, owner uid and inode (columns parsed by [`super::socket_line`]).

use std::{io, net::SocketAddr, path::Path};

use super::socket_line::{parse_lines, read_tables, MalformedLine, SocketLine};
use crate::model::TcpState;

/// One line of `/proc/net/tcp{,6}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Column `st`.
    pub state: TcpState,
    /// Bytes sent but not yet acknowledged (listeners: 0).
    pub tx_queue: u64,
    /// Bytes received but not yet read by the application (listeners: accept backlog).
    pub rx_queue: u64,
    /// Uid of the socket's creator.
    pub uid: u32,
    /// Socket inode; 0 for sockets no file refers to any more (TIME_WAIT, orphans).
    pub inode: u64,
}

impl From<SocketLine> for TcpRow {
    fn from(line: SocketLine) -> TcpRow {
        TcpRow {
            local: line.local,
            remote: line.remote,
            state: TcpState::from_kernel(line.state),
            tx_queue: line.tx_queue,
            rx_queue: line.rx_queue,
            uid: line.uid,
            inode: line.inode,
        }
    }
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6` (the address length tells which).
/// The header and blank lines are skipped; every other line is a row or a [`MalformedLine`].
pub fn parse_tcp_table(text: &str) -> (Vec<TcpRow>, Vec<MalformedLine>) {
    parse_lines(text, TcpRow::from)
}

/// Both tables of one network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpTables {
    pub rows: Vec<TcpRow>,
    /// Lines of either file that did not parse; `reason` names the file.
    pub malformed: Vec<MalformedLine>,
}

/// Reads and parses `<proc_root>/net/tcp` and `<proc_root>/net/tcp6`. A missing `tcp6` (IPv6
/// disabled) is an empty table, not an error.
pub fn read_tcp_tables(proc_root: &Path) -> io::Result<TcpTables> {
    let (mut rows, malformed) = read_tables(proc_root, ["tcp", "tcp6"], parse_tcp_table)?;
    dedup_rows(&mut rows);
    Ok(TcpTables { rows, malformed })
}

/// The kernel writes a table in chunks and resumes each chunk by position in a hash bucket, so
/// a socket can come twice when its bucket changed in between: keep one row per socket.
fn dedup_rows(rows: &mut Vec<TcpRow>) {
    let mut seen = rustc_hash::FxHashSet::default();
    rows.retain(|r| seen.insert((r.local, r.remote, r.inode, r.state)));
}

#[cfg(test)]
#[path = "tcp_table_tests.rs"]
mod tests;
