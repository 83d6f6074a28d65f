//! Reading the kernel program's maps: per-socket counters and its own event counters.

use std::{io::Read, mem::size_of};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap, MapData},
    programs::Iter,
};
use flow_common::{maps, programs, stat, SockCounters, SockKey, SockSeen};

use super::{KernelProgram, Store};

/// The kernel program's own health counters, since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelStats {
    /// Entries created in the socket map.
    pub inserts: u64,
    /// Entries deleted because their socket was destroyed (final counters sent to userspace).
    pub closes: u64,
    /// Close events lost because the ring buffer was full.
    pub close_drops: u64,
    /// Sockets that could not get an entry (their bytes were not counted).
    pub insert_failures: u64,
    /// Kprobe rung: calls whose socket could not be remembered until the return probe.
    pub inflight_drops: u64,
    /// Payload prefixes lost because their ring buffer was full.
    pub payload_drops: u64,
}

impl KernelStats {
    /// Entries the LRU map dropped to make room: created, not closed, not live any more.
    ///
    /// Reading the stats and walking the map are not one atomic step. Pass the stats read
    /// `before` the walk (for inserts) and `self` read after it (for closes): sockets created or
    /// closed during the walk then make this a lower bound, never a false eviction.
    pub fn evictions(&self, before: &KernelStats, live_entries: u64) -> u64 {
        before
            .inserts
            .saturating_sub(self.closes)
            .saturating_sub(live_entries)
    }
}

impl KernelProgram {
    /// Every live socket's entry, wherever the rung keeps them.
    pub fn sockets(&mut self) -> Result<Vec<(SockKey, SockCounters)>> {
        match self.rung().store() {
            Store::Local => Ok(self
                .socket_table()?
                .into_iter()
                .filter_map(|row| Some((row.socket.sock, row.counters?)))
                .collect()),
            Store::Hashed => self.hashed_sockets(),
        }
    }

    /// Every TCP socket of the host, with its entry where it has one: one run of the `iter/tcp`
    /// program (socket-local storage rungs only).
    pub fn socket_table(&mut self) -> Result<Vec<TableRow>> {
        if self.rung().store() != Store::Local {
            return Err(anyhow!(
                "the {} rung keeps no socket-local storage to iterate",
                self.rung()
            ));
        }
        let program: &mut Iter = self
            .ebpf
            .program_mut(programs::SOCKET_ITER)
            .ok_or_else(|| anyhow!("program {} missing", programs::SOCKET_ITER))?
            .try_into()?;
        // A link per read-out: the iterator's file keeps what it needs, the link can go.
        let link = program.attach().context("attaching the socket iterator")?;
        let mut file = program.take_link(link)?.into_file()?;
        // Parsed as it is read, a buffer at a time: the whole output is ~0.3 KiB per socket
        // (60 MiB at 200,000 sockets), which would otherwise sit in memory twice.
        let buffer = &mut self.iter_buffer;
        buffer.resize(READ_CHUNK, 0);
        let mut parser = TableParser::default();
        loop {
            let n = file.read(buffer).context("reading the socket iterator")?;
            if n == 0 {
                return Ok(parser.finish());
            }
            parser.feed(&buffer[..n]);
        }
    }

    /// Every entry of the LRU hash.
    fn hashed_sockets(&self) -> Result<Vec<(SockKey, SockCounters)>> {
        let map = self
            .ebpf
            .map(maps::SOCKETS)
            .ok_or_else(|| anyhow!("map {} missing", maps::SOCKETS))?;
        let capacity = self.map_capacity() as usize;
        if let Ok(fd) = map_fd(map) {
            match super::batch::lookup_all(fd, capacity) {
                Ok(entries) => return Ok(entries),
                Err(err) => log::debug!("batch lookup unavailable ({err}); walking keys"),
            }
        }
        let map: HashMap<&MapData, SockKey, SockCounters> = HashMap::try_from(map)?;
        // Walking by "next key" restarts from the first key when the current one is deleted
        // meanwhile, so entries can come twice: keep one per key, and bound the walk.
        let bound = 2 * self.map_capacity() as usize + 1024;
        let mut seen: std::collections::HashMap<SockKey, SockCounters> =
            std::collections::HashMap::new();
        for (key, counters) in map.iter().take(bound).filter_map(Result::ok) {
            seen.insert(key, counters);
        }
        Ok(seen.into_iter().collect())
    }

    /// The kernel program's event counters.
    pub fn stats(&self) -> Result<KernelStats> {
        let map = self
            .ebpf
            .map(maps::STATS)
            .ok_or_else(|| anyhow!("map {} missing", maps::STATS))?;
        let array: Array<&MapData, u64> = Array::try_from(map)?;
        let read = |index: u32| array.get(&index, 0).unwrap_or(0);
        Ok(KernelStats {
            inserts: read(stat::INSERTS),
            closes: read(stat::CLOSES),
            close_drops: read(stat::CLOSE_DROPS),
            insert_failures: read(stat::INSERT_FAILURES),
            inflight_drops: read(stat::INFLIGHT_DROPS),
            payload_drops: read(stat::PAYLOAD_DROPS),
        })
    }
}

/// One socket of the socket iterator's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRow {
    pub socket: SockSeen,
    /// Its entry, for a socket that moved bytes since the program was loaded.
    pub counters: Option<SockCounters>,
}

/// Bytes asked for per read of the socket iterator (the kernel fills 32 KiB at a time).
const READ_CHUNK: usize = 256 << 10;

/// The socket iterator's output, parsed as it arrives: each socket is a [`SockSeen`], followed
/// by a [`SockCounters`] when `has_counters` says so (the kernel writes both or neither). The
/// TCP iterator resumes bucket by bucket, so a socket can come twice when its bucket changed in
/// between: one row per socket is kept, the later (newer) one.
#[derive(Default)]
struct TableParser {
    /// The start of a row whose end has not been read yet.
    pending: Vec<u8>,
    rows: Vec<TableRow>,
}

impl TableParser {
    fn feed(&mut self, mut bytes: &[u8]) {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(bytes);
            let pending = std::mem::take(&mut self.pending);
            self.feed(&pending);
            return;
        }
        while let Some(row) = next_row(&mut bytes) {
            self.rows.push(row);
        }
        self.pending.extend_from_slice(bytes);
    }

    fn finish(mut self) -> Vec<TableRow> {
        let mut seen =
            rustc_hash::FxHashSet::with_capacity_and_hasher(self.rows.len(), Default::default());
        self.rows.reverse();
        self.rows.retain(|row| seen.insert(row.socket.sock));
        self.rows
    }
}

/// The next whole row of `bytes`, which then starts after it; `None` (and `bytes` untouched)
/// when only part of one is there.
fn next_row(bytes: &mut &[u8]) -> Option<TableRow> {
    let mut rest = *bytes;
    let socket = take::<SockSeen>(&mut rest)?;
    let counters = if socket.has_counters != 0 {
        Some(take::<SockCounters>(&mut rest)?)
    } else {
        None
    };
    *bytes = rest;
    Some(TableRow { socket, counters })
}

/// The next `T` of `bytes`, if a whole one is there.
fn take<T: aya::Pod>(bytes: &mut &[u8]) -> Option<T> {
    let (head, tail) = bytes.split_at_checked(size_of::<T>())?;
    *bytes = tail;
    // SAFETY: `head` holds exactly one `T`; `T` is plain data (any bit pattern is valid) and
    // the read is unaligned-safe.
    Some(unsafe { head.as_ptr().cast::<T>().read_unaligned() })
}

fn map_fd(map: &aya::maps::Map) -> Result<std::os::fd::RawFd> {
    use std::os::fd::{AsFd, AsRawFd};
    match map {
        aya::maps::Map::LruHashMap(data) | aya::maps::Map::HashMap(data) => {
            Ok(data.fd().as_fd().as_raw_fd())
        }
        _ => Err(anyhow!("not a hash map")),
    }
}

/// The kernel's tuple as `(local, remote)` socket addresses; `None` if it could not be read.
pub fn tuple_addrs(
    tuple: &flow_common::SockTuple,
) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = |bytes: &[u8; 16]| -> Option<IpAddr> {
        match tuple.family {
            flow_common::AF_INET => {
                Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into())
            }
            flow_common::AF_INET6 => Some(Ipv6Addr::from(*bytes).into()),
            _ => None,
        }
    };
    Some((
        SocketAddr::new(ip(&tuple.local_addr)?, tuple.local_port),
        SocketAddr::new(ip(&tuple.remote_addr)?, tuple.remote_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
        // SAFETY: plain `repr(C)` data without padding holes.
        unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>())
        }
        .to_vec()
    }

    fn record(sock: SockKey, tx_bytes: Option<u64>) -> Vec<u8> {
        let seen = SockSeen {
            sock,
            has_counters: u32::from(tx_bytes.is_some()),
            ..SockSeen::default()
        };
        let mut bytes = bytes_of(&seen);
        if let Some(tx_bytes) = tx_bytes {
            bytes.extend(bytes_of(&SockCounters {
                tx_bytes,
                ..SockCounters::default()
            }));
        }
        bytes
    }

    #[test]
    fn parser_keeps_the_newest_row_of_each_socket_and_drops_a_torn_tail() {
        let mut bytes = [
            record(1, Some(10)),
            record(2, None),
            record(3, Some(30)),
            record(1, Some(11)),
        ]
        .concat();
        bytes.extend_from_slice(&record(4, Some(40))[..size_of::<SockSeen>() + 7]);
        // Fed in uneven pieces, as reads may split rows.
        let mut parser = TableParser::default();
        for piece in bytes.chunks(100) {
            parser.feed(piece);
        }
        let mut parsed: Vec<(SockKey, Option<u64>)> = parser
            .finish()
            .into_iter()
            .map(|row| (row.socket.sock, row.counters.map(|c| c.tx_bytes)))
            .collect();
        parsed.sort();
        assert_eq!(parsed, vec![(1, Some(11)), (2, None), (3, Some(30))]);
    }
}
