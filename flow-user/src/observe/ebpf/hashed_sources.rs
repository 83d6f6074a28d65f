//! Where one poll of the untyped (LRU hash) rungs reads the host's sockets from: the map (batch
//! lookup), and per network namespace `/proc/net/tcp{,6}` and a sock_diag dump (each read by a
//! thread inside the namespace), joined by namespace and 4-tuple: two namespaces carrying the
//! same 4-tuple are two sockets.

use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;
use std::{net::SocketAddr, path::Path};

use anyhow::Result;
use flow_common::{SockCounters, SockKey};

use crate::{
    ebpf::KernelProgram,
    procfs::{dump_tcp_info, read_tcp_tables, TcpRow},
};

pub type Addrs = (SocketAddr, SocketAddr);

/// Where a socket is: its network namespace's inode and its `(local, remote)` addresses.
pub type Place = (u64, SocketAddr, SocketAddr);

/// The place of a kernel entry: its own namespace (recorded by the kernel when the entry was
/// made), or `own` when the kernel could not read it (no BTF offsets).
pub fn place_of(counters: &SockCounters, addrs: Addrs, own: u64) -> Place {
    let netns = match counters.netns {
        0 => own,
        netns => u64::from(netns),
    };
    (netns, addrs.0, addrs.1)
}

/// What sock_diag (or the iterator) adds to a socket's row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub segs_out: u64,
    pub segs_in: u64,
    pub cookie: u64,
}

/// One listed socket: its `/proc/net/tcp` row and what sock_diag (or the iterator) adds.
#[derive(Clone, Debug)]
pub struct Listed {
    pub row: TcpRow,
    pub extras: Option<Extras>,
}

/// The sockets one poll saw.
pub struct Sources {
    /// Kernel entries: sockets that moved bytes since the program was loaded.
    pub entries: Vec<(SockKey, SockCounters)>,
    /// Every TCP socket, one per namespace and 4-tuple: a live socket wins over a TIME_WAIT
    /// remnant (inode 0) on the same addresses.
    pub listed: HashMap<Place, Listed>,
    /// `/proc` lines that did not parse.
    pub malformed: u64,
    /// This process's network namespace (where entries without one are placed).
    pub own_netns: u64,
}

impl Sources {
    fn new(entries: Vec<(SockKey, SockCounters)>, own_netns: u64) -> Sources {
        Sources {
            entries,
            listed: HashMap::default(),
            malformed: 0,
            own_netns,
        }
    }

    fn list(&mut self, netns: u64, row: TcpRow, extras: Option<Extras>) {
        let listed = Listed { row, extras };
        match self
            .listed
            .entry((netns, listed.row.local, listed.row.remote))
        {
            Entry::Vacant(slot) => {
                slot.insert(listed);
            }
            Entry::Occupied(mut slot) if slot.get().row.inode == 0 => {
                slot.insert(listed);
            }
            Entry::Occupied(_) => {}
        }
    }
}

/// The map, and `/proc/net/tcp{,6}` and a sock_diag dump of every network namespace, joined
/// by namespace and 4-tuple (untyped rungs only: the typed rungs' read-out carries each
/// socket's facts itself). Namespaces that cannot be entered or read are skipped and counted
/// ([`KernelProgram::namespaces_unreadable`]); this process's own must be readable.
pub fn read_sources(program: &mut KernelProgram, proc_root: &Path) -> Result<Sources> {
    let entries = program.sockets()?;
    let (namespaces, own) = program.namespaces();
    // `/proc/thread-self/net` is the reading thread's namespace (`/proc/self/net` would be the
    // main thread's).
    let tables_root = proc_root.join("thread-self");
    let (read, mut skipped) = crate::netns::read_each(&namespaces, own, |netns| {
        let tables = match read_tcp_tables(&tables_root) {
            Ok(tables) => tables,
            // A namespace emptied while it was read.
            Err(err) if netns.inode != own => {
                log::debug!("network namespace {}: {err}", netns.inode);
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let diag = dump_tcp_info().unwrap_or_else(|err| {
            log::warn!(
                "sock_diag dump of network namespace {} failed ({err}): segment counts unknown \
                 this poll",
                netns.inode
            );
            Vec::new()
        });
        Ok(Some((tables, diag)))
    })?;
    let mut sources = Sources::new(entries, own);
    for (netns, tables) in read {
        let Some((tables, diag)) = tables else {
            skipped.vanished.push(netns);
            continue;
        };
        // Joined by address pair: sock_diag reports inodes truncated to 32 bits.
        let diag: HashMap<Addrs, Extras> = diag
            .into_iter()
            .map(|d| {
                let extras = Extras {
                    segs_out: d.segs_out,
                    segs_in: d.segs_in,
                    cookie: d.cookie,
                };
                ((d.local, d.remote), extras)
            })
            .collect();
        sources.malformed += tables.malformed.len() as u64;
        sources.listed.reserve(tables.rows.len());
        for row in tables.rows {
            let extras = diag.get(&(row.local, row.remote)).copied();
            sources.list(netns, row, extras);
        }
    }
    program.note_skipped(&skipped);
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_four_tuple_in_two_namespaces_is_two_places() {
        let addrs: Addrs = (
            "127.0.0.1:40002".parse().unwrap(),
            "127.0.0.1:40001".parse().unwrap(),
        );
        let in_ns = |netns| SockCounters {
            netns,
            ..SockCounters::default()
        };
        let a = place_of(&in_ns(4_026_532_300), addrs, 4_026_531_840);
        let b = place_of(&in_ns(4_026_532_400), addrs, 4_026_531_840);
        assert_ne!(a, b);
        assert_eq!(a, (4_026_532_300, addrs.0, addrs.1));
        // An entry whose namespace the kernel could not read is placed in ours.
        assert_eq!(place_of(&in_ns(0), addrs, 7), (7, addrs.0, addrs.1));
    }

    #[test]
    fn a_live_row_wins_over_a_time_wait_remnant_in_its_namespace_only() {
        let row = |inode| TcpRow {
            local: "127.0.0.1:40002".parse().unwrap(),
            remote: "127.0.0.1:40001".parse().unwrap(),
            state: crate::model::TcpState::Established,
            inode,
            uid: 0,
            rx_queue: 0,
            tx_queue: 0,
        };
        let mut sources = Sources::new(Vec::new(), 1);
        sources.list(10, row(0), None);
        sources.list(10, row(55), None);
        sources.list(20, row(66), None);
        sources.list(20, row(0), None);
        let inode = |netns| {
            sources.listed[&(netns, row(0).local, row(0).remote)]
                .row
                .inode
        };
        assert_eq!((inode(10), inode(20)), (55, 66));
        assert_eq!(sources.listed.len(), 2);
    }
}
