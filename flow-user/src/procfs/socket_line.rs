//! The columns `/proc/net/tcp{,6}` and `/proc/net/udp{,6}` share: `sl local rem st tx:rx
//! tr:when retrnsmt uid timeout inode …` (the kernel prints UDP sockets in TCP's layout, with
//! `ref pointer drops` after the inode). One line parser and one table reader for both.
//!
//! A hand parser, because `procfs::net::TcpNetEntry` fails a whole table on one bad line.

use std::{
    fmt, fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

/// The shared columns of one line, as the kernel wrote them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SocketLine {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Column `st`: a TCP state number (UDP borrows them).
    pub state: u8,
    pub tx_queue: u64,
    pub rx_queue: u64,
    pub uid: u32,
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

/// Parses the lines of a table (the address length tells IPv4 from IPv6): the header and blank
/// lines are skipped; every other line becomes `row(line)` or a [`MalformedLine`].
pub(super) fn parse_lines<T>(
    text: &str,
    mut row: impl FnMut(SocketLine) -> T,
) -> (Vec<T>, Vec<MalformedLine>) {
    // Lines are ~150 bytes; reserving up front avoids regrowing for 100,000 sockets.
    let mut rows = Vec::with_capacity(text.len() / 128);
    let mut malformed = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if is_header_or_blank(line) {
            continue;
        }
        match parse_fields(line.split_ascii_whitespace().skip(1)) {
            Ok(line) => rows.push(row(line)),
            Err(reason) => malformed.push(MalformedLine {
                line_number: index + 1,
                reason,
            }),
        }
    }
    (rows, malformed)
}

/// Whether a line carries no socket: blank, or the header (`sl local_address …`).
pub(super) fn is_header_or_blank(line: &str) -> bool {
    matches!(line.split_ascii_whitespace().next(), None | Some("sl"))
}

/// Reads and parses `<proc_root>/net/<v4>` and `<proc_root>/net/<v6>` with `parse`. A missing
/// v6 table (IPv6 disabled) is an empty table, not an error; a malformed line's reason names its
/// file.
pub(super) fn read_tables<T>(
    proc_root: &Path,
    [v4, v6]: [&str; 2],
    parse: impl Fn(&str) -> (Vec<T>, Vec<MalformedLine>),
) -> io::Result<(Vec<T>, Vec<MalformedLine>)> {
    let (mut all_rows, mut all_malformed) = (Vec::new(), Vec::new());
    for (name, required) in [(v4, true), (v6, false)] {
        let path = proc_root.join("net").join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        // The kernel writes ASCII; anything else only spoils the lines it is on.
        let text = String::from_utf8_lossy(&bytes);
        let (rows, malformed) = parse(&text);
        if all_rows.is_empty() {
            all_rows = rows;
        } else {
            all_rows.extend(rows);
        }
        all_malformed.extend(malformed.into_iter().map(|m| MalformedLine {
            reason: format!("{}: {}", path.display(), m.reason),
            ..m
        }));
    }
    Ok((all_rows, all_malformed))
}

/// The fields after `sl`: local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode, ...
fn parse_fields<'a>(mut fields: impl Iterator<Item = &'a str>) -> Result<SocketLine, String> {
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

    Ok(SocketLine {
        local,
        remote,
        state,
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
