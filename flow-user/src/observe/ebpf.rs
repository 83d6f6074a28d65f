//! eBPF mode: byte counts from the kernel program, joined by 4-tuple with each socket's row
//! (state, inode, uid, queues, segments: see `ebpf_sources`) and its owner.

use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use flow_common::{SockCounters, SockKey};

use super::{
    ebpf_sources::{read_sources, Addrs, Extras, Listed, Sources},
    facts::ConnectionFacts,
    ConnectionParts, Health, Mode, Observation, ObservedSocket, Observer,
};
use crate::{
    ebpf::{tuple_addrs, KernelEvents, KernelProgram, LoadOptions},
    id::kernel_generation,
    model::{Counters, TcpState},
    procfs::{Owner, OwnerCache, TcpRow},
};

/// How long the identity learned for a socket outlives its last sighting, waiting for its close
/// event (which the drain thread normally delivers within one poll).
const IDENTITY_GRACE: Duration = Duration::from_secs(10);

/// A kernel map entry is one socket generation: its address plus its first-activity time.
type KernelIdentity = (SockKey, u64);

/// The inode and uid a 4-tuple's socket was listed with, and its cookie when known (which tells
/// it apart from a later socket on the same 4-tuple).
#[derive(Clone, Copy)]
struct LastRow {
    inode: u64,
    uid: u32,
    cookie: Option<u64>,
    seen: Instant,
}

/// What was learned about a socket while it was alive, so its close event keeps its id and owner.
struct Known {
    generation: u64,
    inode: u64,
    uid: Option<u32>,
    owner: Option<Owner>,
    cookie: Option<u64>,
    packets: (u64, u64),
    last_seen: Instant,
}

pub struct EbpfObserver {
    program: KernelProgram,
    events: KernelEvents,
    owners: OwnerCache,
    proc_root: PathBuf,
    known: HashMap<KernelIdentity, Known>,
    /// What payload prefixes showed, per socket generation.
    facts: HashMap<KernelIdentity, ConnectionFacts>,
    /// How each 4-tuple's socket was last listed (see [`EbpfObserver::remember_rows`]): a
    /// socket listed before it had an entry keeps its inode-based id through its close event.
    last_rows: HashMap<Addrs, LastRow>,
    /// When the previous observation was made.
    last_poll: Option<Instant>,
    /// Highest eviction count derived so far (the derivation is a lower bound; it never drops).
    evictions: u64,
}

impl EbpfObserver {
    /// Loads and attaches the kernel program. `kernel_log` forwards its log lines (`-v`).
    pub fn start(options: &LoadOptions, kernel_log: bool) -> Result<EbpfObserver> {
        let mut program = KernelProgram::load(options)?;
        let events = KernelEvents::start(&mut program, kernel_log)?;
        let proc_root = PathBuf::from("/proc");
        Ok(EbpfObserver {
            program,
            events,
            owners: OwnerCache::new(proc_root.clone()),
            proc_root,
            known: HashMap::default(),
            facts: HashMap::default(),
            last_rows: HashMap::default(),
            last_poll: None,
            evictions: 0,
        })
    }

    pub fn program(&self) -> &KernelProgram {
        &self.program
    }
}

impl Observer for EbpfObserver {
    fn observe(&mut self) -> Result<Observation> {
        // Close events first, then the map: the kernel deletes an entry before it publishes the
        // close event, so no socket can show up both live and closed.
        let closed_events = self.events.take_closed();
        let stats_before = self.program.stats()?;
        let drain_started = Instant::now();
        let sources = read_sources(&mut self.program, &self.proc_root)?;
        let drained_in = drain_started.elapsed();
        let Sources {
            entries,
            listed,
            malformed,
        } = &sources;
        let at = Instant::now();
        for seen in self.events.take_payloads() {
            self.facts
                .entry((seen.sock, seen.first_ns))
                .or_insert_with(|| ConnectionFacts::new(at))
                .learn(&seen.facts, at);
        }
        let owners_started = Instant::now();
        self.owners
            .refresh(listed.values().map(|l| l.row.inode).filter(|i| *i != 0));
        log::info!(
            "poll: drained {} entries ({} sockets) in {:?}, owners resolved in {:?}",
            entries.len(),
            listed.len(),
            drained_in,
            owners_started.elapsed()
        );

        let mut sockets = Vec::with_capacity(listed.len());
        let mut counted: FxHashSet<Addrs> = Default::default();
        for (sock, counters) in entries {
            // Family 0: an entry created an instant ago whose tuple is still being written; its
            // bytes stay in the map and show at the next poll.
            let Some(addrs) = tuple_addrs(&counters.tuple) else {
                continue;
            };
            counted.insert(addrs);
            let (row, extra) = listed
                .get(&addrs)
                .map_or((None, None), |l| (Some(&l.row), l.extras.as_ref()));
            let identity = (*sock, counters.first_ns);
            // Its inode now, or (closed by its process since: orphaned sockets have none) the
            // one it had at the previous poll, if that row was this very socket.
            let listed_inode = row
                .map(|r| r.inode)
                .filter(|i| *i != 0)
                .or_else(|| Some(self.listed(&addrs, counters.cookie)?.inode));
            let known = remember(
                &mut self.known,
                identity,
                listed_inode,
                row,
                &self.owners,
                extra,
                at,
            );
            sockets.push(live_socket(
                addrs,
                counters,
                row,
                known,
                self.facts.get(&identity),
            ));
        }
        // Sockets that have not moved a byte since the program was loaded.
        for (addrs, Listed { row, extras }) in listed {
            if row.inode == 0 || row.state == TcpState::Listen || counted.contains(addrs) {
                continue;
            }
            let extra = extras.as_ref();
            let owner = self.owners.get(row.inode);
            sockets.push(ObservedSocket {
                connection: ConnectionParts {
                    local: addrs.0,
                    remote: addrs.1,
                    state: row.state,
                    inode: row.inode,
                    uid: Some(row.uid),
                    pid: owner.map(|o| o.pid),
                    process: owner.map(|o| o.process.clone()),
                    cookie: extra.map(|e| e.cookie),
                    generation: row.inode,
                    active: true,
                }
                .build(),
                counters: Counters {
                    tx_packets: extra.map_or(0, |e| e.segs_out),
                    rx_packets: extra.map_or(0, |e| e.segs_in),
                    ..Counters::default()
                },
                rx_queue: row.rx_queue,
                tx_queue: row.tx_queue,
                http: None,
            });
        }

        let closed = closed_events
            .iter()
            .filter_map(|event| {
                let addrs = tuple_addrs(&event.counters.tuple)?;
                let identity = (event.sock, event.counters.first_ns);
                let known = self.known.remove(&identity).or_else(|| {
                    let last = self.listed(&addrs, event.counters.cookie)?;
                    Some(Known::from_row(last.inode, last.uid, at))
                });
                let facts = self.facts.remove(&identity);
                Some(closed_socket(
                    event.sock,
                    addrs,
                    &event.counters,
                    known,
                    facts.as_ref(),
                ))
            })
            .collect();
        self.known
            .retain(|_, k| at.duration_since(k.last_seen) < IDENTITY_GRACE);
        let known = &self.known;
        self.facts.retain(|identity, f| {
            known.contains_key(identity) || at.duration_since(f.updated) < IDENTITY_GRACE
        });

        self.remember_rows(listed, at);

        let stats = self.program.stats()?;
        let live = entries.len() as u64;
        self.evictions = self.evictions.max(stats.evictions(&stats_before, live));
        Ok(Observation {
            at,
            sockets,
            closed,
            health: Health {
                mode: Some(Mode::Ebpf),
                rung: Some(self.program.rung()),
                map_entries: live,
                map_capacity: u64::from(self.program.map_capacity()),
                evictions: self.evictions,
                close_drops: stats.close_drops + self.events.dropped(),
                payload_drops: stats.payload_drops,
                insert_failures: stats.insert_failures + stats.inflight_drops,
                malformed_lines: *malformed,
                unreadable_processes: self.owners.unreadable_processes() as u64,
            },
        })
    }

    fn mode(&self) -> Mode {
        Mode::Ebpf
    }

    fn describe(&self) -> String {
        format!("mode ebpf: {}", self.program.describe())
    }

    fn captures_payload(&self) -> bool {
        self.program.payload_bytes() > 0
    }
}

impl EbpfObserver {
    /// How `addrs`' socket was listed, if that listing was the socket with this `cookie`. Without
    /// a cookie (untyped rungs) only the previous poll's listing counts: an older one may be a
    /// previous socket on the same 4-tuple.
    fn listed(&self, addrs: &Addrs, cookie: u64) -> Option<&LastRow> {
        let last = self.last_rows.get(addrs)?;
        let same = match cookie {
            0 => Some(last.seen) == self.last_poll,
            cookie => last.cookie == Some(cookie),
        };
        same.then_some(last)
    }

    /// Keeps each listed socket's inode and uid for its close event (which may come polls
    /// later, when its row is gone or shows no inode: orphaned by its process, or TIME_WAIT).
    fn remember_rows(&mut self, listed: &HashMap<Addrs, Listed>, at: Instant) {
        for (addrs, Listed { row, extras }) in listed {
            let cookie = extras.map(|e| e.cookie);
            if row.inode != 0 {
                let last = LastRow {
                    inode: row.inode,
                    uid: row.uid,
                    cookie,
                    seen: at,
                };
                self.last_rows.insert(*addrs, last);
            } else if let Some(last) = self.last_rows.get_mut(addrs) {
                if cookie.is_some() && last.cookie == cookie {
                    last.seen = at;
                }
            }
        }
        self.last_rows
            .retain(|_, last| at.duration_since(last.seen) < IDENTITY_GRACE);
        self.last_poll = Some(at);
    }
}

impl Known {
    /// A socket known only from its `/proc` row.
    fn from_row(inode: u64, uid: u32, now: Instant) -> Known {
        Known {
            generation: inode,
            inode,
            uid: Some(uid),
            owner: None,
            cookie: None,
            packets: (0, 0),
            last_seen: now,
        }
    }
}

/// Updates and returns what is known about a live kernel entry.
fn remember<'a>(
    known: &'a mut HashMap<KernelIdentity, Known>,
    identity: KernelIdentity,
    listed_inode: Option<u64>,
    row: Option<&TcpRow>,
    owners: &OwnerCache,
    extra: Option<&Extras>,
    now: Instant,
) -> &'a Known {
    let known = known.entry(identity).or_insert_with(|| Known {
        generation: listed_inode.unwrap_or_else(|| kernel_generation(identity.0, identity.1)),
        inode: 0,
        uid: None,
        owner: None,
        cookie: None,
        packets: (0, 0),
        last_seen: now,
    });
    known.last_seen = now;
    if let Some(row) = row.filter(|r| r.inode != 0) {
        known.inode = row.inode;
        known.uid = Some(row.uid);
        if let Some(owner) = owners.get(row.inode) {
            if known.owner.as_ref() != Some(owner) {
                known.owner = Some(owner.clone());
            }
        }
    }
    if let Some(e) = extra {
        known.packets = (e.segs_out, e.segs_in);
        known.cookie = Some(e.cookie);
    }
    known
}

fn live_socket(
    addrs: Addrs,
    counters: &SockCounters,
    row: Option<&TcpRow>,
    known: &Known,
    facts: Option<&ConnectionFacts>,
) -> ObservedSocket {
    let (pid, process) = owner_or_mover(known.owner.as_ref(), counters);
    ObservedSocket {
        connection: ConnectionParts {
            local: addrs.0,
            remote: addrs.1,
            state: row.map_or(TcpState::Established, |r| r.state),
            inode: known.inode,
            uid: known.uid,
            pid,
            process,
            cookie: known.cookie,
            generation: known.generation,
            active: true,
        }
        .build_with(facts),
        counters: kernel_counters(counters, known.packets),
        rx_queue: row.map_or(0, |r| r.rx_queue),
        tx_queue: row.map_or(0, |r| r.tx_queue),
        http: facts.and_then(|f| f.http().cloned()),
    }
}

fn closed_socket(
    sock: SockKey,
    addrs: Addrs,
    counters: &SockCounters,
    known: Option<Known>,
    facts: Option<&ConnectionFacts>,
) -> ObservedSocket {
    let generation = known.as_ref().map_or_else(
        || kernel_generation(sock, counters.first_ns),
        |k| k.generation,
    );
    let (pid, process) = owner_or_mover(known.as_ref().and_then(|k| k.owner.as_ref()), counters);
    ObservedSocket {
        connection: ConnectionParts {
            local: addrs.0,
            remote: addrs.1,
            state: TcpState::Close,
            inode: known.as_ref().map_or(0, |k| k.inode),
            uid: known.as_ref().and_then(|k| k.uid),
            pid,
            process,
            cookie: known.as_ref().and_then(|k| k.cookie),
            generation,
            active: false,
        }
        .build_with(facts),
        counters: kernel_counters(counters, known.map_or((0, 0), |k| k.packets)),
        rx_queue: 0,
        tx_queue: 0,
        http: facts.and_then(|f| f.http().cloned()),
    }
}

/// The socket's owner from `/proc/<pid>/fd`, else the task the kernel saw moving its data.
fn owner_or_mover(owner: Option<&Owner>, counters: &SockCounters) -> (Option<u32>, Option<String>) {
    if let Some(owner) = owner {
        return (Some(owner.pid), Some(owner.process.clone()));
    }
    if counters.pid_tgid == 0 {
        return (None, None);
    }
    let comm = &counters.comm;
    let len = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    (
        Some((counters.pid_tgid >> 32) as u32),
        Some(String::from_utf8_lossy(&comm[..len]).into_owned()),
    )
}

fn kernel_counters(counters: &SockCounters, (tx_packets, rx_packets): (u64, u64)) -> Counters {
    Counters {
        tx_bytes: counters.tx_bytes,
        rx_bytes: counters.rx_bytes,
        tx_packets,
        rx_packets,
    }
}
