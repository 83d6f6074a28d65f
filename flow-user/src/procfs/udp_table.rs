//! `/proc/net/udp` and `/proc/net/udp6`: every UDP socket of the network namespace, bound or
//! connected, with its queues, owner uid and inode (columns parsed by [`super::socket_line`]).

use std::{io, net::SocketAddr, path::Path};

use super::socket_line::{is_header_or_blank, parse_lines, read_tables, MalformedLine, SocketLine};
use crate::model::TcpState;

/// One line of `/proc/net/udp{,6}`: one socket (an unconnected one talks to many remotes; its
/// flows are counted apart, see `observe::ebpf::udp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpRow {
    pub local: SocketAddr,
    /// The connected peer; `0.0.0.0:0` / `[::]:0` while unconnected.
    pub remote: SocketAddr,
    /// Column `st`. UDP has no states of its own and borrows TCP's numbers: `Established` once
    /// connected, `Close` otherwise (`ss -u` prints them as `ESTAB` and `UNCONN`).
    pub state: TcpState,
    /// Memory of the datagrams queued to send (`sk_wmem_alloc`), in bytes.
    pub tx_queue: u64,
    /// Memory of the datagrams received and not yet read (`sk_rmem_alloc`), in bytes: each
    /// datagram counts its whole buffer (truesize), not only its payload, as in `ss -u`'s Recv-Q.
    pub rx_queue: u64,
    /// Uid of the socket's creator.
    pub uid: u32,
    /// Socket inode; 0 for sockets no file refers to (the kernel's own, e.g. tunnel endpoints).
    pub inode: u64,
}

impl From<SocketLine> for UdpRow {
    fn from(line: SocketLine) -> UdpRow {
        UdpRow {
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

/// Parses the text of `/proc/net/udp` or `/proc/net/udp6` as read from the file, where every
/// line ends in a newline: a last line without one was cut short (a torn read) and is a
/// [`MalformedLine`] whatever it looks like, since a cut inside its inode would still parse.
/// The header and blank lines are skipped; every other line is a row or a [`MalformedLine`].
pub fn parse_udp_table(text: &str) -> (Vec<UdpRow>, Vec<MalformedLine>) {
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    let (body, tail) = text.split_at(complete);
    let (rows, mut malformed) = parse_lines(body, UdpRow::from);
    if !is_header_or_blank(tail) {
        malformed.push(MalformedLine {
            line_number: body.lines().count() + 1,
            reason: "torn line (no newline at its end)".into(),
        });
    }
    (rows, malformed)
}

/// Both tables of one network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpTables {
    pub rows: Vec<UdpRow>,
    /// Lines of either file that did not parse; `reason` names the file.
    pub malformed: Vec<MalformedLine>,
}

/// Reads and parses `<proc_root>/net/udp` and `<proc_root>/net/udp6`. A missing `udp6` (IPv6
/// disabled) is an empty table, not an error.
pub fn read_udp_tables(proc_root: &Path) -> io::Result<UdpTables> {
    let (mut rows, malformed) = read_tables(proc_root, ["udp", "udp6"], parse_udp_table)?;
    // Each chunk of the file resumes by position in the hash table: a socket can come twice.
    let mut seen = rustc_hash::FxHashSet::default();
    rows.retain(|r| seen.insert((r.local, r.remote, r.inode)));
    Ok(UdpTables { rows, malformed })
}

#[cfg(test)]
#[path = "udp_table_tests.rs"]
mod tests;
