//! Each UDP socket's cookie: a sock_diag dump of UDP (`udp_diag`, what `ss -u` reads). The
//! cookie is what the kernel program keys UDP flows by, and `/proc/net/udp{,6}` does not print
//! it: joined to the table's rows by addresses and inode, it gives each socket its flows.
//! Unprivileged, for every UDP socket of the network namespace.

use std::{io, net::SocketAddr};

use netlink_packet_sock_diag::{constants::IPPROTO_UDP, inet::StateFlags};

use super::sock_diag::{dump, identity, Dump};

/// One UDP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpDiagRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `idiag_inode`: truncated to 32 bits by the kernel, unlike `/proc/net/udp`.
    pub inode: u64,
    /// The kernel's socket cookie (`idiag_cookie`).
    pub cookie: u64,
}

impl UdpDiagRow {
    /// Where a `/proc/net/udp{,6}` row meets this one: addresses and the inode's low 32 bits
    /// (sockets sharing a port through `SO_REUSEPORT` differ by inode only).
    pub fn key(&self) -> (SocketAddr, SocketAddr, u32) {
        (self.local, self.remote, self.inode as u32)
    }
}

/// Every UDP socket, connected (ESTABLISHED) or not (CLOSE).
const UDP_SOCKETS: Dump<UdpDiagRow> = Dump {
    protocol: IPPROTO_UDP,
    extensions: 0,
    states: StateFlags::all().bits(),
    parse: parse_response,
};

fn parse_response(payload: &[u8]) -> Option<UdpDiagRow> {
    let id = identity(payload)?;
    Some(UdpDiagRow {
        local: id.local,
        remote: id.remote,
        inode: id.inode,
        cookie: id.cookie,
    })
}

/// Dumps every IPv4 and IPv6 UDP socket of this thread's network namespace, any owner. An
/// error where the kernel has no `udp_diag` (a module not loaded, or not built).
pub fn dump_udp_sockets() -> io::Result<Vec<UdpDiagRow>> {
    dump(&UDP_SOCKETS)
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::unix::io::AsRawFd};

    use super::*;

    fn cookie_of(socket: &UdpSocket) -> u64 {
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                std::ptr::from_mut(&mut cookie).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        cookie
    }

    #[test]
    fn dumps_connected_and_unconnected_sockets_with_their_cookies() {
        for ip in ["127.0.0.1", "::1"] {
            let server = UdpSocket::bind((ip, 0)).unwrap();
            let client = UdpSocket::bind((ip, 0)).unwrap();
            client.connect(server.local_addr().unwrap()).unwrap();
            let rows = dump_udp_sockets().unwrap();
            for (socket, remote) in [
                (&server, None),
                (&client, Some(server.local_addr().unwrap())),
            ] {
                let local = socket.local_addr().unwrap();
                let row = rows
                    .iter()
                    .find(|r| r.local == local)
                    .unwrap_or_else(|| panic!("no row for {local} in {rows:#?}"));
                assert_eq!(row.cookie, cookie_of(socket));
                if let Some(remote) = remote {
                    assert_eq!(row.remote, remote);
                } else {
                    assert!(row.remote.ip().is_unspecified() && row.remote.port() == 0);
                }
            }
        }
    }
}
