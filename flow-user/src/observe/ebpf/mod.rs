//! eBPF mode. A poll: take the close events, read what changed (typed rungs: the socket-local
//! storage walk, every network namespace; untyped rungs: the whole LRU map joined with `/proc`),
//! attribute it to connections kept by id, emit rows.

mod book;
mod hashed;
mod hashed_sources;
mod local;
mod udp;

use std::{path::PathBuf, time::Instant};

use anyhow::Result;

use self::{book::FactsBook, hashed::HashedBook, local::LocalBook, udp::UdpBook};
use super::{udp_sockets, Health, Mode, Observation, Observer, Scope, UdpSockets};
use crate::{
    attribution::{Attribution, Attributor},
    ebpf::{KernelEvents, KernelProgram, LoadOptions, Store},
    procfs::{dump_udp_sockets, read_udp_tables, OwnerCache, UdpNamespaceRead},
};

/// Per-store state: the typed rungs keep connections by cookie, the untyped ones by kernel
/// identity with a 4-tuple join.
enum Books {
    Local(LocalBook),
    Hashed(HashedBook),
}

pub struct EbpfObserver {
    program: KernelProgram,
    events: KernelEvents,
    owners: OwnerCache,
    proc_root: PathBuf,
    facts: FactsBook,
    books: Books,
    /// Highest eviction count derived so far (the derivation is a lower bound; it never drops).
    evictions: u64,
    /// Entries the destroy program could not delete, as last logged.
    delete_failures: u64,
    /// Cgroup ids (from the kernel entries) to cgroup paths, containers and services.
    attributor: Attributor,
    /// UDP flows (`cgroup_skb`), whatever the rung.
    udp: UdpBook,
}

impl EbpfObserver {
    /// Loads and attaches the kernel program. `kernel_log` forwards its log lines (`-v`).
    pub fn start(options: &LoadOptions, kernel_log: bool) -> Result<EbpfObserver> {
        let mut program = KernelProgram::load(options)?;
        let events = KernelEvents::start(&mut program, kernel_log)?;
        let proc_root = PathBuf::from("/proc");
        let books = match program.rung().store() {
            Store::Local => Books::Local(LocalBook::default()),
            Store::Hashed => Books::Hashed(HashedBook::default()),
        };
        Ok(EbpfObserver {
            program,
            events,
            owners: OwnerCache::new(proc_root.clone()),
            proc_root,
            facts: FactsBook::default(),
            books,
            evictions: 0,
            delete_failures: 0,
            attributor: Attributor::host(),
            udp: UdpBook::default(),
        })
    }

    pub fn program(&self) -> &KernelProgram {
        &self.program
    }

    /// Network namespaces the latest poll could not read (gone since discovery, or not
    /// enterable without `CAP_SYS_ADMIN`): for [`Health`].
    pub fn namespaces_unreadable(&self) -> u64 {
        self.program.namespaces_unreadable()
    }

    /// One poll; `all`: the full socket table (idle sockets included) instead of the changes.
    fn poll(&mut self, all: bool) -> Result<Observation> {
        // Close events first, then the read-out: the kernel deletes an entry before it
        // publishes its final counters, so no socket shows up both live and closed.
        let closed_events = self.events.take_closed();
        let stats_before = self.program.stats()?;
        let read_started = Instant::now();
        let (mut sockets, mut closed, scope, entries, live, malformed, at);
        match &mut self.books {
            Books::Local(book) => {
                let (rows, full) = if all {
                    (self.program.socket_table()?, true)
                } else {
                    let read = self.program.changed_sockets()?;
                    (read.rows, read.full)
                };
                at = Instant::now();
                self.facts.learn(self.events.take_payloads(), at);
                closed = book.closed(closed_events, &self.facts, &mut self.attributor, at);
                sockets = book.rows(
                    &rows,
                    &mut self.owners,
                    &self.facts,
                    &mut self.attributor,
                    at,
                    all,
                );
                book.expire(at);
                scope = if full {
                    Scope::Complete
                } else {
                    Scope::Changes
                };
                entries = book.live_connections() as u64;
                live = entries;
                malformed = 0;
                log::info!(
                    "poll: read {} rows in {:?} ({} sockets live)",
                    rows.len(),
                    read_started.elapsed(),
                    entries,
                );
                // Facts live 10 s past their last update; what they decided stays in the
                // connection (see `LocalBook::rows`).
                self.facts.expire(at, |_| false);
            }
            Books::Hashed(book) => {
                at = Instant::now();
                self.facts.learn(self.events.take_payloads(), at);
                let poll = book.poll(
                    &mut self.program,
                    &self.proc_root,
                    &mut self.owners,
                    &self.facts,
                    &mut self.attributor,
                    closed_events,
                    at,
                )?;
                log::info!(
                    "poll: read {} rows in {:?} ({} sockets live)",
                    poll.entries,
                    read_started.elapsed(),
                    poll.sockets.len(),
                );
                let book = &*book;
                self.facts.expire(at, |identity| book.is_live(identity));
                live = poll.sockets.len() as u64;
                (sockets, closed, entries, malformed) =
                    (poll.sockets, poll.closed, poll.entries, poll.malformed);
                scope = Scope::Complete;
            }
        }
        let udp = self.udp.poll(&mut self.program)?;
        let udp_live = udp.live.len() as u64;
        sockets.extend(udp.live);
        closed.extend(udp.closed);
        let stats = self.program.stats()?;
        log::info!(
            "kernel: {} entries created, close events sent: {} at release, {} at TCP_CLOSE, {} \
             final; {} read, {} connections untracked ({} at release), {} skipped runs",
            stats.inserts,
            stats.release_closes,
            stats.state_closes,
            stats.closes,
            self.events.closed_read(),
            stats.untracked,
            stats.release_untracked,
            stats.missed_runs,
        );
        if stats.delete_failures > self.delete_failures {
            // Not a loss (their final counters were published): worth a look, not a warning.
            log::info!(
                "kernel: {} entries not deleted at destroy so far (their counters were published)",
                stats.delete_failures
            );
            self.delete_failures = stats.delete_failures;
        }
        let can_evict = matches!(self.books, Books::Hashed(_));
        if can_evict {
            self.evictions = self.evictions.max(stats.evictions(&stats_before, entries));
        }
        Ok(Observation {
            at,
            sockets,
            closed,
            scope,
            health: Health {
                mode: Some(Mode::Ebpf),
                rung: Some(self.program.rung()),
                live_connections: live + udp_live,
                map_entries: entries,
                map_capacity: u64::from(self.program.map_capacity()),
                evictions: self.evictions + self.udp.evictions(),
                missed_runs: stats.missed_runs,
                close_drops: stats.close_drops + self.events.dropped() + self.udp.release_drops,
                payload_drops: stats.payload_drops + self.udp.payload_drops,
                insert_failures: stats.insert_failures + stats.inflight_drops + stats.untracked,
                malformed_lines: malformed,
                unreadable_processes: self.owners.unreadable_processes() as u64,
                namespaces_unreadable: self.program.namespaces_unreadable(),
            },
        })
    }
}

impl Observer for EbpfObserver {
    fn observe(&mut self) -> Result<Observation> {
        self.poll(false)
    }

    fn observe_all(&mut self) -> Result<Observation> {
        self.poll(true)
    }

    fn resync(&mut self) {
        if let Err(err) = self.program.reset_changes() {
            log::warn!("could not ask the kernel for a full read: {err:#}");
        }
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

    fn take_dns_answers(&mut self) -> Vec<crate::protocol::dns::DnsAnswer> {
        let mut answers = self.facts.take_dns_answers();
        answers.append(&mut self.udp.take_dns_answers());
        answers
    }

    /// `/proc/net/udp{,6}` and a `udp_diag` dump (the cookies) of every network namespace the
    /// TCP read-outs cover, each read by a thread inside it as the untyped rungs read their
    /// TCP tables; each socket's counters are its flows' of the latest poll.
    fn udp_sockets(&mut self) -> Result<UdpSockets> {
        let (namespaces, own) = self.program.namespaces();
        let tables_root = self.proc_root.join("thread-self");
        let (read, skipped) = crate::netns::read_each(&namespaces, own, |netns| {
            let tables = match read_udp_tables(&tables_root) {
                Ok(tables) => tables,
                // A namespace emptied while it was read.
                Err(err) if netns.inode != own => {
                    log::debug!("network namespace {}: {err}", netns.inode);
                    return Ok(None);
                }
                Err(err) => return Err(err.into()),
            };
            // Without `udp_diag` the cookies, and so the counters, stay unknown.
            let diag = dump_udp_sockets()
                .inspect_err(|err| {
                    log::debug!("udp_diag dump of network namespace {}: {err}", netns.inode)
                })
                .ok();
            Ok(Some(UdpNamespaceRead {
                netns: Some(netns.inode),
                tables,
                diag,
            }))
        })?;
        self.program.note_skipped(&skipped);
        let reads: Vec<UdpNamespaceRead> = read.into_iter().filter_map(|(_, read)| read).collect();
        let (attributor, udp) = (&mut self.attributor, &self.udp);
        Ok(udp_sockets::observed(
            &reads,
            &mut self.owners,
            |pid| {
                pid.and_then(|pid| attributor.attribute_pid(pid))
                    .unwrap_or_else(Attribution::none)
            },
            |cookie| udp.totals(cookie),
        ))
    }
}
