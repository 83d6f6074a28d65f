//! Connection identity: the seed's `generateConnectionId`.

use std::{fmt::Write as _, hash::Hasher, net::SocketAddr};

use crate::model::NetConnection;

/// A stable id for one connection: the same for every observation of it, different for a later
/// connection that reuses its 4-tuple (they differ in `generation`).
///
/// Pure: a fixed-key FNV-1a hash over the addresses and the generation, printed as 16 hex digits.
pub fn generate_connection_id(connection: &NetConnection) -> String {
    id_for(connection.local, connection.remote, connection.generation)
}

/// The id of the connection with these addresses and generation.
pub fn id_for(local: SocketAddr, remote: SocketAddr, generation: u64) -> String {
    let mut hasher = Fnv1a::default();
    // The addresses' text goes straight into the hash (no string per address): this runs for
    // every connection at every poll.
    let _ = write!(hasher, "{local}");
    hasher.write_u8(b'>');
    let _ = write!(hasher, "{remote}");
    hasher.write_u64(generation);
    format!("{:016x}", hasher.finish())
}

/// A generation for a socket known only to the kernel program: its address and birth time.
pub fn kernel_generation(sock: u64, first_ns: u64) -> u64 {
    let mut hasher = Fnv1a::default();
    hasher.write_u64(sock);
    hasher.write_u64(first_ns);
    // Inodes are small numbers; keep this out of their range.
    hasher.finish() | 1 << 63
}

/// FNV-1a: tiny, fixed (ids must not change between runs), and good enough for ids.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::fmt::Write for Fnv1a {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
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
        assert_eq!(id_for(a, b, 7), id_for(a, b, 7));
        assert_ne!(id_for(a, b, 7), id_for(a, b, 8));
        assert_ne!(id_for(a, b, 7), id_for(b, a, 7));
        assert_eq!(id_for(a, b, 7).len(), 16);
        // The value itself is part of the contract: ids stay the same across versions.
        assert_eq!(id_for(a, b, 7), "8effaee0535384c8");
    }
}
