//! Connection identity: [`ConnectionId`] and the seed's `generateConnectionId`.

use std::{fmt, hash::Hasher, net::SocketAddr, str::FromStr};

use serde::{Serialize, Serializer};

use crate::model::NetConnection;

/// One connection's identity, the one key of observer, tracker, monitor, views and exporter.
///
/// The kernel's socket cookie where it is known (typed rungs, sock_diag): unique per socket for
/// the boot, the same in every command and across restarts of `flow`. Otherwise a hash of the
/// addresses and a generation (the socket's kernel address and creation time, or its inode).
/// Printed and serialised as 16 hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl ConnectionId {
    /// The id of the socket with this cookie (`Some(0)` is no cookie), else of these addresses
    /// and generation.
    pub fn of(cookie: Option<u64>, local: SocketAddr, remote: SocketAddr, generation: u64) -> Self {
        match cookie {
            Some(cookie) if cookie != 0 => ConnectionId(cookie),
            _ => ConnectionId(hash_of(local, remote, generation)),
        }
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for ConnectionId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.len() != 16 {
            return Err(format!("`{text}` is not a connection id (16 hex digits)"));
        }
        u64::from_str_radix(text, 16)
            .map(ConnectionId)
            .map_err(|_| format!("`{text}` is not a connection id (16 hex digits)"))
    }
}

/// A stable id for one connection: the same for every observation of it, different for a later
/// connection that reuses its 4-tuple (a new cookie, or a new generation). Pure.
pub fn generate_connection_id(connection: &NetConnection) -> ConnectionId {
    ConnectionId::of(
        connection.cookie,
        connection.local,
        connection.remote,
        connection.generation,
    )
}

/// Fixed-key FNV-1a over the addresses' text and the generation (ids must not change between
/// runs or versions). Runs once per connection, not per poll.
fn hash_of(local: SocketAddr, remote: SocketAddr, generation: u64) -> u64 {
    use fmt::Write as _;
    let mut hasher = Fnv1a::default();
    let _ = write!(hasher, "{local}");
    hasher.write_u8(b'>');
    let _ = write!(hasher, "{remote}");
    hasher.write_u64(generation);
    hasher.finish()
}

/// A generation for a socket known only to the kernel program: its address and birth time.
pub fn kernel_generation(sock: u64, first_ns: u64) -> u64 {
    let mut hasher = Fnv1a::default();
    hasher.write_u64(sock);
    hasher.write_u64(first_ns);
    // Inodes are small numbers; keep this out of their range.
    hasher.finish() | 1 << 63
}

/// FNV-1a: tiny, fixed, and good enough for ids.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl fmt::Write for Fnv1a {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        Hasher::write(self, text.as_bytes());
        Ok(())
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_id_and_reuse_differs() {
        let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let id = |generation| ConnectionId::of(None, a, b, generation);
        assert_eq!(id(7), id(7));
        assert_ne!(id(7), id(8));
        assert_ne!(id(7), ConnectionId::of(None, b, a, 7));
        // The value itself is part of the contract: ids stay the same across versions.
        assert_eq!(id(7).to_string(), "8effaee0535384c8");
        assert_eq!(ConnectionId::of(Some(0), a, b, 7), id(7));
    }

    #[test]
    fn the_cookie_is_the_id_and_prints_as_16_hex_digits() {
        let a: SocketAddr = "[::1]:40000".parse().unwrap();
        let id = ConnectionId::of(Some(0x2a), a, a, 7);
        assert_eq!(id, ConnectionId(0x2a));
        assert_eq!(id.to_string(), "000000000000002a");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"000000000000002a\"");
        assert_eq!("000000000000002a".parse::<ConnectionId>(), Ok(id));
        assert!("2a".parse::<ConnectionId>().is_err());
        assert!("zz0000000000002a".parse::<ConnectionId>().is_err());
    }
}
