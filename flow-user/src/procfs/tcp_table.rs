//! `/proc/net/tcp` and `/proc/net/tcp6`: every TCP socket of the network namespace, with its
//! state, queues, owner uid and inode.
//!
//! A hand parser, because `procfs::net::TcpNetEntry` fails a whole table on one bad line.

use std::{
    fmt, fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

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

/// A line that could not be parsed; the other lines of the table still are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based, counting the header.
    pub line_number: usize,
    pub reason: String,
}

impl fmt::Display for MalformedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line_number, self.reason)
    }
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6` (the address length tells which).
/// The header and blank lines are skipped; every other line is a row or a [`MalformedLine`].
pub fn parse_tcp_table(text: &str) -> (Vec<TcpRow>, Vec<MalformedLine>) {
    // Lines are ~150 bytes; reserving up front avoids regrowing for 100,000 sockets.
    let mut rows = Vec::with_capacity(text.len() / 128);
    let mut malformed = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            None | Some("sl") => continue,
            Some(_) => {}
        }
        match parse_fields(fields) {
            Ok(row) => rows.push(row),
            Err(reason) => malformed.push(MalformedLine {
                line_number: index + 1,
                reason,
            }),
        }
    }
    (rows, malformed)
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
    let mut tables = TcpTables::default();
    for (name, required) in [("tcp", true), ("tcp6", false)] {
        let path = proc_root.join("net").join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        // The kernel writes ASCII; anything else only spoils the lines it is on.
        let text = String::from_utf8_lossy(&bytes);
        let (rows, malformed) = parse_tcp_table(&text);
        if tables.rows.is_empty() {
            tables.rows = rows;
        } else {
            tables.rows.extend(rows);
        }
        tables
            .malformed
            .extend(malformed.into_iter().map(|m| MalformedLine {
                reason: format!("{}: {}", path.display(), m.reason),
                ..m
            }));
    }
    dedup_rows(&mut tables.rows);
    Ok(tables)
}

/// The kernel writes a table in chunks and resumes each chunk by position in a hash bucket, so
/// a socket can come twice when its bucket changed in between: keep one row per socket.
fn dedup_rows(rows: &mut Vec<TcpRow>) {
    let mut seen = rustc_hash::FxHashSet::default();
    rows.retain(|r| seen.insert((r.local, r.remote, r.inode, r.state)));
}

/// The fields after `sl`: local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode, ...
fn parse_fields<'a>(mut fields: impl Iterator<Item = &'a str>) -> Result<TcpRow, String> {
    let mut next = |name: &str| fields.next().ok_or_else(|| format!("missing {name}"));
    let local = next("local address")?;
    let remote = next("remote address")?;
    let state = next("state")?;
    let queues = next("queues")?;
    let _timer = next("timer")?;
    let _retransmits = next("retransmits")?;
    let uid = next("uid")?;
    let _timeout = next("timeout")?;
    let inode = next("inode")?;

    let local = parse_addr(local).ok_or_else(|| bad("local address", local))?;
    let remote = parse_addr(remote).ok_or_else(|| bad("remote address", remote))?;
    if local.is_ipv4() != remote.is_ipv4() {
        return Err("local and remote addresses are of different families".into());
    }
    let state = hex(state, 2)
        .and_then(|s| u8::try_from(s).ok())
        .ok_or_else(|| bad("state", state))?;
    let (tx_queue, rx_queue) = queues
        .split_once(':')
        .and_then(|(tx, rx)| Some((hex(tx, 16)?, hex(rx, 16)?)))
        .ok_or_else(|| bad("queues", queues))?;
    let uid = decimal(uid)
        .and_then(|u| u32::try_from(u).ok())
        .ok_or_else(|| bad("uid", uid))?;
    let inode = decimal(inode).ok_or_else(|| bad("inode", inode))?;

    Ok(TcpRow {
        local,
        remote,
        state: TcpState::from_kernel(state),
        tx_queue,
        rx_queue,
        uid,
        inode,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each 32-bit word
/// of the network-order address as a host-endian number, so the word's native bytes are the
/// address bytes. v4-mapped IPv6 addresses stay IPv6, as the kernel reports them.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::try_from(hex(port, 4)?).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?.to_ne_bytes())),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn word(digits: &str) -> Option<u32> {
    u32::try_from(hex(digits, 8)?).ok()
}

/// Hex digits only (from_str_radix alone would also take a sign), at most `max_digits` of them.
fn hex(digits: &str, max_digits: usize) -> Option<u64> {
    if digits.is_empty()
        || digits.len() > max_digits
        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Decimal digits only; `None` on overflow.
fn decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn bad(what: &str, field: &str) -> String {
    // Bound the echo: a junk line may be arbitrarily long.
    let shown: String = field.chars().take(48).collect();
    let more = if shown.len() < field.len() { "…" } else { "" };
    format!("bad {what} `{shown}{more}`")
}

#[cfg(test)]
#[path = "tcp_table_tests.rs"]
mod tests;
