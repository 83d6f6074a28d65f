//! Reading the kernel program's maps: per-socket counters and its own event counters.

use std::{io::Read, mem::size_of, os::fd::AsFd};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap, MapData},
    programs::Iter,
};
use flow_common::{maps, programs, read_mark, stat, ReadMark, SockCounters, SockKey, SockSeen};

use super::{sys, KernelProgram, Store};

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
    /// Typed rungs: first close events, published when a socket entered `TCP_CLOSE` (each
    /// socket's final one follows at destroy and counts in `closes`).
    pub state_closes: u64,
    /// Runs of the kernel programs skipped because they would have nested on their own CPU
    /// (`recursion_misses`, summed over every program; see
    /// [`KernelProgram::recursion_misses`]). A skipped close program loses a close event unless
    /// the socket's other publish point ran.
    pub missed_runs: u64,
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
            Store::Local => {
                // A socket freed during the walk can have its address reused by a new one the
                // same walk visits: one live socket per address, the newer (its predecessor's
                // final counters come with its close event).
                let mut newest: std::collections::HashMap<SockKey, SockCounters> =
                    std::collections::HashMap::new();
                for row in self.socket_table()? {
                    let Some(counters) = row.counters else {
                        continue;
                    };
                    let slot = newest.entry(row.socket.sock).or_insert(counters);
                    if counters.first_ns > slot.first_ns {
                        *slot = counters;
                    }
                }
                Ok(newest.into_iter().collect())
            }
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
        let file = program.take_link(link)?.into_file()?;
        Ok(read_rows(file, &mut self.iter_buffer)
            .context("reading the socket iterator")?
            .finish())
    }

    /// The entries of socket-local storage that changed (moved a byte or changed TCP state)
    /// since the previous call, as the same rows as [`Self::socket_table`] gives (each with its
    /// counters; sockets without an entry are not listed). The first call returns every entry.
    /// An entry updated while a read runs may come in two reads: its counters are cumulative.
    ///
    /// One run of the `iter/bpf_sk_storage_map` program, which walks the storage itself, in
    /// every network namespace; where the kernel refused that program at load, one run of an
    /// `iter/tcp` program that reads the same rows for the reader's network namespace only
    /// (`all_namespaces` says which). Socket-local storage rungs only.
    pub fn changed_sockets(&mut self) -> Result<ChangedRead> {
        if self.rung().store() != Store::Local {
            return Err(anyhow!(
                "the {} rung keeps no socket-local storage to read incrementally",
                self.rung()
            ));
        }
        let all_namespaces = self.store_iter_link.is_some();
        // Since tick 0, every entry is new: a full read.
        let full = self.read_since()? == 0;
        let file = match &self.store_iter_link {
            Some(link) => std::fs::File::from(
                sys::iter_create(link.as_fd()).context("starting the storage iterator")?,
            ),
            None => {
                let program: &mut Iter = self
                    .ebpf
                    .program_mut(programs::TCP_DELTA_ITER)
                    .ok_or_else(|| anyhow!("program {} missing", programs::TCP_DELTA_ITER))?
                    .try_into()?;
                let link = program
                    .attach()
                    .context("attaching the changed-socket iterator")?;
                program.take_link(link)?.into_file()?
            }
        };
        let parser = read_rows(file, &mut self.iter_buffer)
            .context("reading the changed-socket iterator")?;
        let (Some(start), Some(walked)) = (parser.start, parser.end) else {
            return Err(anyhow!(
                "the changed-socket iterator's output lacks its start or end mark"
            ));
        };
        // The next read reports what changed from this read's start on.
        self.since_map()?
            .set(0, start, 0)
            .context("storing the read tick")?;
        Ok(ChangedRead {
            rows: parser.finish(),
            walked,
            all_namespaces,
            full,
        })
    }

    /// The next [`Self::changed_sockets`] returns every entry again (a reader that lost its
    /// baselines).
    pub fn reset_changes(&mut self) -> Result<()> {
        self.since_map()?
            .set(0, 0, 0)
            .context("resetting the read tick")
    }

    fn read_since(&mut self) -> Result<u64> {
        Ok(self.since_map()?.get(&0, 0).unwrap_or(0))
    }

    fn since_map(&mut self) -> Result<Array<&mut MapData, u64>> {
        Ok(Array::try_from(
            self.ebpf
                .map_mut(maps::READ_SINCE)
                .ok_or_else(|| anyhow!("map {} missing", maps::READ_SINCE))?,
        )?)
    }

    /// Why incremental reads cover only the reader's network namespace: the kernel's refusal
    /// of the storage iterator; `None` when it runs.
    pub fn store_iter_refused(&self) -> Option<&str> {
        self.store_iter_refused.as_deref()
    }

    /// Runs the kernel skipped, per loaded program of this rung: a raw (tp_btf) tracepoint or
    /// trampoline program is skipped, not queued, when it would nest on a CPU where it is
    /// already running (`bpf_prog_info.recursion_misses`, Linux 5.12+; 0 before).
    pub fn recursion_misses(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for hook in self.rung().hooks() {
            let name = hook.program();
            let Some(fd) = self.ebpf.program(name).and_then(|p| p.fd().ok()) else {
                continue;
            };
            let misses = sys::recursion_misses(fd.as_fd())
                .with_context(|| format!("reading {name}'s program info"))?;
            out.push((name, misses));
        }
        Ok(out)
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
            state_closes: read(stat::STATE_CLOSES),
            missed_runs: self
                .recursion_misses()
                .map(|all| all.iter().map(|(_, n)| n).sum())
                .unwrap_or_else(|err| {
                    log::debug!("recursion misses unavailable: {err:#}");
                    0
                }),
        })
    }
}

/// One incremental read of socket-local storage ([`KernelProgram::changed_sockets`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedRead {
    /// The entries that changed since the previous read, each with its socket's row.
    pub rows: Vec<TableRow>,
    /// Entries (storage iterator) or TCP sockets (`iter/tcp` fallback) the program visited,
    /// changed or not.
    pub walked: u64,
    /// True when the read walked the storage itself, so every network namespace; false when
    /// the kernel refused that iterator and the read covered the reader's namespace only.
    pub all_namespaces: bool,
    /// True when the read returned every entry (the first, or the first after a reset).
    pub full: bool,
}

/// Reads an iterator's output to its end, parsing as it goes, a buffer at a time: the whole
/// output is ~0.3 KiB per socket (60 MiB at 200,000 sockets), which would otherwise sit in
/// memory twice.
fn read_rows(mut file: impl Read, buffer: &mut Vec<u8>) -> std::io::Result<TableParser> {
    buffer.resize(READ_CHUNK, 0);
    let mut parser = TableParser::default();
    loop {
        let n = file.read(buffer)?;
        if n == 0 {
            return Ok(parser);
        }
        parser.feed(&buffer[..n]);
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

/// An iterator's output, parsed as it arrives: each socket is a [`SockSeen`], followed by a
/// [`SockCounters`] when `has_counters` says so (the kernel writes both or neither). The
/// storage iterator also writes a [`ReadMark`] first and last (a row starts with a kernel
/// address, a mark with 1 or 2). The TCP iterator resumes bucket by bucket, so a socket can
/// come twice when its bucket changed in between: one row per socket (address and cookie) is
/// kept, the later (newer) one.
#[derive(Default)]
struct TableParser {
    /// The start of a row whose end has not been read yet.
    pending: Vec<u8>,
    rows: Vec<TableRow>,
    /// The START mark's tick and the END mark's count, once read.
    start: Option<u64>,
    end: Option<u64>,
}

impl TableParser {
    fn feed(&mut self, mut bytes: &[u8]) {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(bytes);
            let pending = std::mem::take(&mut self.pending);
            self.feed(&pending);
            return;
        }
        loop {
            match next_item(&mut bytes) {
                Some(Item::Row(row)) => self.rows.push(row),
                Some(Item::Mark(mark)) if mark.kind == read_mark::START => {
                    self.start = Some(mark.value)
                }
                Some(Item::Mark(mark)) => self.end = Some(mark.value),
                None => break,
            }
        }
        self.pending.extend_from_slice(bytes);
    }

    fn finish(mut self) -> Vec<TableRow> {
        let mut seen =
            rustc_hash::FxHashSet::with_capacity_and_hasher(self.rows.len(), Default::default());
        self.rows.reverse();
        self.rows
            .retain(|row| seen.insert((row.socket.sock, row.socket.cookie)));
        self.rows
    }
}

/// Short-lived: one per parsed row, never stored.
#[allow(clippy::large_enum_variant)]
enum Item {
    Row(TableRow),
    Mark(ReadMark),
}

/// The next whole row or mark of `bytes`, which then starts after it; `None` (and `bytes`
/// untouched) when only part of one is there.
fn next_item(bytes: &mut &[u8]) -> Option<Item> {
    let mut rest = *bytes;
    let first = take::<u64>(&mut rest)?;
    if first == read_mark::START || first == read_mark::END {
        return take::<ReadMark>(bytes).map(Item::Mark);
    }
    next_row(bytes).map(Item::Row)
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
            record(11, Some(10)),
            record(12, None),
            record(13, Some(30)),
            record(11, Some(11)),
        ]
        .concat();
        bytes.extend_from_slice(&record(14, Some(40))[..size_of::<SockSeen>() + 7]);
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
        assert_eq!(parsed, vec![(11, Some(11)), (12, None), (13, Some(30))]);
    }

    fn mark(kind: u64, value: u64) -> Vec<u8> {
        bytes_of(&ReadMark { kind, value })
    }

    #[test]
    fn parser_reads_the_storage_iterators_marks_around_its_rows() {
        let sock = 0xffff_8880_0000_1000;
        let bytes = [
            mark(read_mark::START, 4_295_000_123),
            record(sock, Some(5)),
            record(sock + 0x800, Some(6)),
            mark(read_mark::END, 2_010),
        ]
        .concat();
        for chunk in [1, 7, 16, 100, bytes.len()] {
            let mut parser = TableParser::default();
            for piece in bytes.chunks(chunk) {
                parser.feed(piece);
            }
            assert_eq!(
                (parser.start, parser.end),
                (Some(4_295_000_123), Some(2_010))
            );
            assert_eq!(parser.finish().len(), 2, "chunks of {chunk}");
        }
        // An empty storage: both marks and nothing between.
        let mut parser = TableParser::default();
        parser.feed(&[mark(read_mark::START, 9), mark(read_mark::END, 0)].concat());
        assert_eq!((parser.start, parser.end), (Some(9), Some(0)));
        assert!(parser.finish().is_empty());
    }
}
