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
    /// Typed rungs: close events published when the application released its socket.
    pub release_closes: u64,
    /// Typed rungs: connected sockets released without an entry.
    pub release_untracked: u64,
    /// Typed rungs: connections that reached `TCP_CLOSE` without an entry (not counted).
    pub untracked: u64,
    /// Typed rungs: entries the destroy program could not delete (published all the same).
    pub delete_failures: u64,
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
    /// program per network namespace (the program walks the namespace of the thread that
    /// starts it; each run starts on a thread inside its namespace), the rows concatenated.
    /// Socket-local storage rungs only. Namespaces that cannot be entered are skipped
    /// ([`Self::namespaces_unreadable`]).
    pub fn socket_table(&mut self) -> Result<Vec<TableRow>> {
        if self.rung().store() != Store::Local {
            return Err(anyhow!(
                "the {} rung keeps no socket-local storage to iterate",
                self.rung()
            ));
        }
        let files = self.start_in_namespaces(programs::SOCKET_ITER)?;
        let mut rows = Vec::new();
        for (_, file) in files {
            rows.extend(
                read_rows(file, &mut self.iter_buffer)
                    .context("reading the socket iterator")?
                    .finish(),
            );
        }
        Ok(rows)
    }

    /// Starts a run of the `iter/tcp` program `name` in every network namespace: one link, and
    /// an iterator created on it by a thread inside each namespace (the kernel takes the
    /// creating thread's namespace). Returns each run's file with its namespace's inode.
    pub(super) fn start_in_namespaces(&mut self, name: &str) -> Result<Vec<(u64, std::fs::File)>> {
        let program: &mut Iter = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        let link = sys::iter_link(program.fd()?.as_fd())
            .with_context(|| format!("attaching the iterator {name}"))?;
        let own = self.namespaces.own();
        let namespaces = self.namespaces.current().namespaces.clone();
        let link_fd = link.as_fd();
        let (files, skipped) = crate::netns::read_each(&namespaces, own, |_| {
            Ok(std::fs::File::from(
                sys::iter_create(link_fd).context("starting a socket iterator")?,
            ))
        })?;
        self.note_skipped(&skipped);
        Ok(files)
    }

    /// Records the namespaces a read could not enter: their count for health, one log line
    /// when the set changes, and a fresh discovery next time when one vanished.
    pub fn note_skipped(&mut self, skipped: &crate::netns::Skipped) {
        self.namespaces_unreadable = skipped.count() as u64;
        if !skipped.vanished.is_empty() {
            self.namespaces.forget();
        }
        let refused: Vec<u64> = skipped.refused.iter().map(|(inode, _)| *inode).collect();
        match skipped.describe() {
            Some(line) if refused != self.namespaces_refused => log::warn!("{line}"),
            Some(line) => log::debug!("{line}"),
            None => {}
        }
        self.namespaces_refused = refused;
    }

    /// Network namespaces the latest read skipped (gone since discovery, or not enterable:
    /// entering another namespace needs `CAP_SYS_ADMIN`).
    pub fn namespaces_unreadable(&self) -> u64 {
        self.namespaces_unreadable
    }

    /// Every network namespace of the host (at most a few seconds old), this process's first,
    /// with this process's namespace inode: where the untyped rungs read their tables.
    pub fn namespaces(&mut self) -> (Vec<crate::netns::Netns>, u64) {
        let own = self.namespaces.own();
        (self.namespaces.current().namespaces.clone(), own)
    }

    /// The entries of socket-local storage that changed (moved a byte or changed TCP state)
    /// since the previous call, as the same rows as [`Self::socket_table`] gives (each with its
    /// counters; sockets without an entry are not listed). The first call returns every entry.
    /// An entry updated while a read runs may come in two reads: its counters are cumulative.
    ///
    /// One run of the `iter/bpf_sk_storage_map` program, which walks the storage itself, in
    /// every network namespace (`all_namespaces`); where the kernel refused that program at
    /// load, one run of an `iter/tcp` program per network namespace, each on a thread inside
    /// it. Each namespace's run reports what changed since that namespace's previous run
    /// started (a namespace read for the first time, or skipped since, reads from tick 0), so
    /// nothing that changed while the others were read is missed. Socket-local storage rungs
    /// only.
    pub fn changed_sockets(&mut self) -> Result<ChangedRead> {
        if self.rung().store() != Store::Local {
            return Err(anyhow!(
                "the {} rung keeps no socket-local storage to read incrementally",
                self.rung()
            ));
        }
        if self.store_iter_link.is_none() {
            return self.changed_per_namespace();
        }
        // Since tick 0, every entry is new: a full read.
        let full = self.read_since()? == 0;
        let link = self.store_iter_link.as_ref().expect("checked");
        let file = std::fs::File::from(
            sys::iter_create(link.as_fd()).context("starting the storage iterator")?,
        );
        let parser = read_rows(file, &mut self.iter_buffer)
            .context("reading the changed-socket iterator")?;
        let (start, walked) = marks(&parser)?;
        // The next read reports what changed from this read's start on.
        self.since_map()?
            .set(0, start, 0)
            .context("storing the read tick")?;
        self.namespaces_unreadable = 0;
        Ok(ChangedRead {
            rows: parser.finish(),
            walked,
            all_namespaces: true,
            full,
            namespaces: 0,
            namespaces_unreadable: 0,
        })
    }

    /// [`Self::changed_sockets`] through the `iter/tcp` fallback, once per namespace.
    fn changed_per_namespace(&mut self) -> Result<ChangedRead> {
        let full = self.namespace_ticks.is_empty();
        let files = self.start_in_namespaces(programs::TCP_DELTA_ITER)?;
        let mut read = ChangedRead {
            full,
            namespaces: files.len() as u64,
            namespaces_unreadable: self.namespaces_unreadable,
            ..ChangedRead::default()
        };
        for (inode, file) in files {
            // The program reads the tick when it runs, i.e. while this file is read.
            let since = self.namespace_ticks.since(inode);
            self.since_map()?
                .set(0, since, 0)
                .context("storing the read tick")?;
            let parser = read_rows(file, &mut self.iter_buffer)
                .context("reading the changed-socket iterator")?;
            let (start, walked) = marks(&parser)?;
            self.namespace_ticks.record(inode, start);
            read.walked += walked;
            read.rows.extend(parser.finish());
        }
        let discovered = &self.namespaces.current().namespaces;
        self.namespace_ticks
            .retain(|inode| discovered.iter().any(|n| n.inode == inode));
        Ok(read)
    }

    /// The next [`Self::changed_sockets`] returns every entry again (a reader that lost its
    /// baselines).
    pub fn reset_changes(&mut self) -> Result<()> {
        self.namespace_ticks.clear();
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
            untracked: read(stat::UNTRACKED),
            release_closes: read(stat::RELEASE_CLOSES),
            release_untracked: read(stat::RELEASE_UNTRACKED),
            delete_failures: read(stat::DELETE_FAILURES),
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
    /// True when the read walked the storage itself, so every network namespace in one walk;
    /// false when the kernel refused that iterator and the read ran the `iter/tcp` fallback
    /// once per namespace (`namespaces`).
    pub all_namespaces: bool,
    /// True when the read returned every entry (the first, or the first after a reset).
    pub full: bool,
    /// `iter/tcp` fallback: the network namespaces read, and those skipped (gone since
    /// discovery, or not enterable). 0 and 0 on the storage walk.
    pub namespaces: u64,
    pub namespaces_unreadable: u64,
}

/// Per network namespace, the tick the previous `iter/tcp` read of it started at: the next
/// read of that namespace reports what changed from then on. A namespace never read (new, or
/// skipped so far) reads from tick 0, everything.
#[derive(Clone, Debug, Default)]
pub(super) struct NamespaceTicks(rustc_hash::FxHashMap<u64, u64>);

impl NamespaceTicks {
    pub fn since(&self, netns: u64) -> u64 {
        self.0.get(&netns).copied().unwrap_or(0)
    }

    /// A read of `netns` that started at `start` went through.
    pub fn record(&mut self, netns: u64, start: u64) {
        self.0.insert(netns, start);
    }

    /// Forgets namespaces that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(u64) -> bool) {
        self.0.retain(|inode, _| exists(*inode));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The START mark's tick and the END mark's count of a changed-socket read.
fn marks(parser: &TableParser) -> Result<(u64, u64)> {
    match (parser.start, parser.end) {
        (Some(start), Some(walked)) => Ok((start, walked)),
        _ => Err(anyhow!(
            "the changed-socket iterator's output lacks its start or end mark"
        )),
    }
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

    #[test]
    fn each_namespace_reads_from_its_own_previous_start() {
        let mut ticks = NamespaceTicks::default();
        assert!(ticks.is_empty());
        // First poll: both namespaces from 0; their reads start one tick apart.
        assert_eq!((ticks.since(10), ticks.since(20)), (0, 0));
        ticks.record(10, 1_000);
        ticks.record(20, 1_001);
        // A namespace that appears (or could not be entered before) reads everything; the
        // others read from their own previous start, never from a later namespace's.
        assert_eq!(
            (ticks.since(10), ticks.since(20), ticks.since(30)),
            (1_000, 1_001, 0)
        );
        ticks.retain(|inode| inode != 20);
        assert_eq!(ticks.since(20), 0);
        ticks.clear();
        assert!(ticks.is_empty());
        assert_eq!(ticks.since(10), 0);
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
