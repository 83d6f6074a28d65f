//! Per-socket byte and segment counters without eBPF: a NETLINK_SOCK_DIAG `inet_diag` dump with
//! the `INET_DIAG_INFO` extension (`struct tcp_info`), what `ss -ti` reads. Works unprivileged,
//! for every TCP socket of the network namespace.
//!
//! netlink-packet-sock-diag 0.4 is built on netlink-packet-core 0.7 while this crate uses 0.8, so
//! its message types do not plug into our netlink framing; we use its constants and field
//! buffers, frame messages with netlink-packet-core 0.8, and read `tcp_info` by offset (the
//! crate's typed `TcpInfo` is behind a feature and requires the full 4.19+ length).

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use netlink_packet_core::{
    NetlinkBuffer, NlasIterator, NLA_HEADER_SIZE, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, INET_DIAG_INFO, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY},
    inet::{
        ExtensionFlags, InetRequestBuffer, InetResponseBuffer, SocketIdBuffer, StateFlags,
        REQUEST_LEN, RESPONSE_LEN,
    },
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

use crate::model::{Counters, TcpState};

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpInfoRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `idiag_inode`. The kernel truncates it to 32 bits here, unlike `/proc/net/tcp`.
    pub inode: u64,
    pub uid: u32,
    /// The kernel's socket cookie (`idiag_cookie`): unique per socket for the boot.
    pub cookie: u64,
    pub state: TcpState,
    /// `tcpi_bytes_acked`: sequence space the peer acknowledged: the payload, plus one for our
    /// SYN if this end connected (not if it accepted), plus one for our FIN once acknowledged.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`: payload bytes received in order.
    pub bytes_received: u64,
    /// `tcpi_bytes_sent`: payload bytes transmitted, retransmissions included (Linux 4.19+).
    pub bytes_sent: u64,
    /// `tcpi_bytes_retrans`: payload bytes retransmitted (Linux 4.19+).
    pub bytes_retrans: u64,
    /// `tcpi_segs_in`: segments received, pure ACKs included.
    pub segs_in: u64,
    /// `tcpi_segs_out`: segments sent, pure ACKs and retransmissions included.
    pub segs_out: u64,
}

impl TcpInfoRow {
    /// The row as the monitor's counters.
    pub fn counters(&self) -> Counters {
        Counters {
            tx_bytes: self.tx_payload(),
            rx_bytes: self.bytes_received,
            tx_packets: self.segs_out,
            rx_packets: self.segs_in,
        }
    }

    /// Payload bytes transmitted at least once. bytes_sent counts retransmissions again, so they
    /// are taken off. bytes_acked is no substitute: it counts the SYN on connecting sockets only
    /// (an accepted socket's sequence space starts after its SYN-ACK) and the FIN once acked, so
    /// it is off by one or two depending on who connected; it is the fallback only for kernels
    /// before 4.19, which lack bytes_sent (there, minus one for the SYN: off by one for accepted
    /// sockets).
    fn tx_payload(&self) -> u64 {
        if self.bytes_sent > 0 {
            self.bytes_sent.saturating_sub(self.bytes_retrans)
        } else {
            self.bytes_acked.saturating_sub(1)
        }
    }
}

/// Dumps every IPv4 and IPv6 TCP socket of this network namespace, any owner, in every state but
/// TIME_WAIT (its mini-socket has no counters). Half-open connections (request sockets, reported
/// as SYN_RECV) carry no `tcp_info` either: their counters read 0.
pub fn dump_tcp_info() -> io::Result<Vec<TcpInfoRow>> {
    dump(&TCP_INFO)
}

/// What one dump asks the kernel for, and how each answer becomes a row.
pub(super) struct Dump<T> {
    pub protocol: u8,
    /// `INET_DIAG_*` extensions, as the request's bit mask.
    pub extensions: u8,
    /// TCP state numbers matched, as a bit mask.
    pub states: u32,
    /// One `struct inet_diag_msg` and its attributes; `None` if malformed (skipped).
    pub parse: fn(&[u8]) -> Option<T>,
}

/// TCP with `tcp_info`, every state but TIME_WAIT.
const TCP_INFO: Dump<TcpInfoRow> = Dump {
    protocol: IPPROTO_TCP,
    extensions: ExtensionFlags::INFO.bits(),
    states: StateFlags::all().difference(StateFlags::TIME_WAIT).bits(),
    parse: parse_response,
};

/// Runs `what` over IPv4 then IPv6 from a fresh netlink socket (so in this thread's network
/// namespace); a kernel without IPv6 has nothing to report for it.
pub(super) fn dump<T>(what: &Dump<T>) -> io::Result<Vec<T>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut rows = Vec::new();
    for (sequence, family) in [(1, AF_INET), (2, AF_INET6)] {
        match dump_family(&socket, what, family, sequence, &mut rows) {
            Ok(()) => {}
            Err(e) if family == AF_INET6 && is_family_unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

fn is_family_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::EAFNOSUPPORT | libc::EINVAL)
    )
}

fn dump_family<T>(
    socket: &Socket,
    what: &Dump<T>,
    family: u8,
    sequence: u32,
    rows: &mut Vec<T>,
) -> io::Result<()> {
    socket.send(&request(what, family, sequence), 0)?;
    // The kernel fills dump datagrams up to 32 KiB; a larger buffer is never short.
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let mut free = &mut buffer[..];
        let received = match socket.recv(&mut free, 0) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(received) => received.min(buffer.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if read_datagram(&buffer[..received], sequence, what.parse, rows)? {
            return Ok(());
        }
    }
}

/// Appends the rows of one datagram of the dump; `Ok(true)` once the dump is done.
fn read_datagram<T>(
    mut datagram: &[u8],
    sequence: u32,
    parse: fn(&[u8]) -> Option<T>,
    rows: &mut Vec<T>,
) -> io::Result<bool> {
    while !datagram.is_empty() {
        let message = NetlinkBuffer::new_checked(datagram).map_err(invalid)?;
        let length = message.length() as usize;
        if message.sequence_number() == sequence {
            match message.message_type() {
                NLMSG_DONE => return status(message.payload()).map(|()| true),
                NLMSG_ERROR => status(message.payload())?,
                SOCK_DIAG_BY_FAMILY => match parse(message.payload()) {
                    Some(row) => rows.push(row),
                    None => log::debug!("skipping a malformed sock_diag message"),
                },
                _ => {}
            }
        }
        // Messages are 4-byte aligned within a datagram; new_checked made length >= 16.
        datagram = datagram
            .get(length.next_multiple_of(4)..)
            .unwrap_or_default();
    }
    Ok(false)
}

/// `NLMSG_DONE` / `NLMSG_ERROR` payload: a negative errno, or 0 (success, or an ACK).
fn status(payload: &[u8]) -> io::Result<()> {
    match read_u32(payload, 0).map(|code| code as i32) {
        Some(code) if code < 0 => Err(io::Error::from_raw_os_error(-code)),
        _ => Ok(()),
    }
}

/// A `SOCK_DIAG_BY_FAMILY` dump request (`struct inet_diag_req_v2`) behind a netlink header.
fn request<T>(what: &Dump<T>, family: u8, sequence: u32) -> Vec<u8> {
    const HEADER_LEN: usize = 16;
    let mut bytes = vec![0u8; HEADER_LEN + REQUEST_LEN];
    let mut message = NetlinkBuffer::new(&mut bytes[..]);
    message.set_length((HEADER_LEN + REQUEST_LEN) as u32);
    message.set_message_type(SOCK_DIAG_BY_FAMILY);
    message.set_flags(NLM_F_REQUEST | NLM_F_DUMP);
    message.set_sequence_number(sequence);
    let mut request = InetRequestBuffer::new(message.payload_mut());
    request.set_family(family);
    request.set_protocol(what.protocol);
    request.set_extensions(what.extensions);
    request.set_states(what.states);
    // socket_id stays zero: a dump matches every socket.
    bytes
}

/// What every `struct inet_diag_msg` says of its socket, whatever the protocol.
pub(super) struct Identity {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `idiag_inode`, truncated to 32 bits by the kernel.
    pub inode: u64,
    pub uid: u32,
    /// `idiag_cookie`: unique per socket for the boot.
    pub cookie: u64,
    pub state: u8,
}

/// The identity of one `struct inet_diag_msg`; `None` if it is too short or of another family.
pub(super) fn identity(payload: &[u8]) -> Option<Identity> {
    let message = InetResponseBuffer::new_checked(payload).ok()?;
    let id = SocketIdBuffer::new_checked(message.socket_id()).ok()?;
    let family = message.family();
    let address = |bytes: &[u8], port: &[u8]| -> Option<SocketAddr> {
        let ip = match family {
            AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes.get(..4)?).ok()?)),
            AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
            _ => return None,
        };
        Some(SocketAddr::new(
            ip,
            u16::from_be_bytes(port.try_into().ok()?),
        ))
    };
    let local = address(id.source_address(), id.source_port())?;
    let remote = address(id.destination_address(), id.destination_port())?;
    // Two native-endian u32s, low word first (sock_diag_save_cookie).
    let cookie = id.cookie();
    let cookie = u64::from(read_u32(cookie, 0)?) | u64::from(read_u32(cookie, 4)?) << 32;
    Some(Identity {
        local,
        remote,
        inode: u64::from(message.inode()),
        uid: message.uid(),
        cookie,
        state: message.state(),
    })
}

/// One TCP message: its identity and its `tcp_info` (zeros where missing).
fn parse_response(payload: &[u8]) -> Option<TcpInfoRow> {
    let id = identity(payload)?;
    let info = NlasIterator::new(payload.get(RESPONSE_LEN..)?)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == INET_DIAG_INFO)
        .and_then(|nla| {
            let end = usize::from(nla.length());
            nla.into_inner().get(NLA_HEADER_SIZE..end)
        })
        .unwrap_or_default();
    Some(TcpInfoRow {
        local: id.local,
        remote: id.remote,
        inode: id.inode,
        uid: id.uid,
        cookie: id.cookie,
        state: TcpState::from_kernel(id.state),
        bytes_acked: tcp_info::read_u64(info, tcp_info::BYTES_ACKED),
        bytes_received: tcp_info::read_u64(info, tcp_info::BYTES_RECEIVED),
        bytes_sent: tcp_info::read_u64(info, tcp_info::BYTES_SENT),
        bytes_retrans: tcp_info::read_u64(info, tcp_info::BYTES_RETRANS),
        segs_in: tcp_info::read_u32(info, tcp_info::SEGS_IN),
        segs_out: tcp_info::read_u32(info, tcp_info::SEGS_OUT),
    })
}

/// Offsets in `struct tcp_info` (`include/uapi/linux/tcp.h`). Older kernels send a shorter
/// struct: a field past its end reads 0.
mod tcp_info {
    pub const BYTES_ACKED: usize = 120; // 4.1
    pub const BYTES_RECEIVED: usize = 128; // 4.1
    pub const SEGS_OUT: usize = 136; // 4.2
    pub const SEGS_IN: usize = 140; // 4.2
    pub const BYTES_SENT: usize = 200; // 4.19
    pub const BYTES_RETRANS: usize = 208; // 4.19

    pub fn read_u64(info: &[u8], at: usize) -> u64 {
        info.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    }

    pub fn read_u32(info: &[u8], at: usize) -> u64 {
        super::read_u32(info, at).map_or(0, u64::from)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {e}"))
}

#[cfg(test)]
#[path = "sock_diag_tests.rs"]
mod tests;
