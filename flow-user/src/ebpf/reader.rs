//! Reading the kernel program's maps: per-socket counters and its own event counters.

use anyhow::{anyhow, Result};
use aya::maps::{Array, HashMap, MapData};
use flow_common::{maps, stat, SockCounters, SockKey};

use super::KernelProgram;

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
    /// Every socket entry now in the map.
    pub fn sockets(&self) -> Result<Vec<(SockKey, SockCounters)>> {
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
