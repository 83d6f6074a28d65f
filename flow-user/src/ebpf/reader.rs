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
        let mut bytes = std::mem::take(&mut self.iter_buffer);
        bytes.clear();
        file.read_to_end(&mut bytes)
            .context("reading the socket iterator")?;
        let table = parse_table(&bytes);
        self.iter_buffer = bytes;
        Ok(table)
    }

    /// Every entry of the LRU hash.
    fn hashed_sockets(&self) -> Result<Vec<(SockKey, SockCounters)>> {
        let map = self
            .ebpf
            .map(maps::SOCKETS)
            .ok_or_else(|| anyhow!("map {} missing", maps::SOCKETS))?;
        let capacity = self.map_entries() as usize;
        if let Ok(fd) = map_fd(map) {
            match super::batch::lookup_all(fd, capacity) {
                Ok(entries) => return Ok(entries),
                Err(err) => log::debug!("batch lookup unavailable ({err}); walking keys"),
            }
        }
        let map: HashMap<&MapData, SockKey, SockCounters> = HashMap::try_from(map)?;
        // Walking by "next key" restarts from the first key when the current one is deleted
        // meanwhile, so entries can come twice: keep one per key, and bound the walk.
        let bound = 2 * self.map_entries() as usize + 1024;
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

/// Whole records only: each socket is a [`SockSeen`], followed by a [`SockCounters`] when
/// `has_counters` says so (the kernel writes both or neither). The TCP iterator resumes bucket
/// by bucket, so a socket can come twice when its bucket changed in between: one row per
/// socket is kept, the later (newer) one.
fn parse_table(bytes: &[u8]) -> Vec<TableRow> {
    let mut rows: Vec<TableRow> = Vec::with_capacity(bytes.len() / size_of::<SockSeen>());
    let mut rest = bytes;
    while let Some(socket) = take::<SockSeen>(&mut rest) {
        let counters = if socket.has_counters != 0 {
            match take::<SockCounters>(&mut rest) {
                Some(counters) => Some(counters),
                None => break,
            }
        } else {
            None
        };
        rows.push(TableRow { socket, counters });
    }
    let mut seen = rustc_hash::FxHashSet::with_capacity_and_hasher(rows.len(), Default::default());
    rows.reverse();
    rows.retain(|row| seen.insert(row.socket.sock));
    rows
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
    fn parse_keeps_the_newest_row_of_each_socket_and_drops_a_torn_tail() {
        let mut bytes = [
            record(1, Some(10)),
            record(2, None),
            record(3, Some(30)),
            record(1, Some(11)),
        ]
        .concat();
        bytes.extend_from_slice(&record(4, Some(40))[..size_of::<SockSeen>() + 7]);
        let mut parsed: Vec<(SockKey, Option<u64>)> = parse_table(&bytes)
            .into_iter()
            .map(|row| (row.socket.sock, row.counters.map(|c| c.tx_bytes)))
            .collect();
        parsed.sort();
        assert_eq!(parsed, vec![(1, Some(11)), (2, None), (3, Some(30))]);
    }
}
