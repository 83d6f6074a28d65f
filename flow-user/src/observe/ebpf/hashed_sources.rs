//! Where one poll of the untyped (LRU hash) rungs reads the host's sockets from: the map (batch
//! lookup), `/proc/net/tcp{,6}` and a sock_diag dump, joined by 4-tuple.

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
    /// Every TCP socket, one per 4-tuple: a live socket wins over a TIME_WAIT remnant (inode 0)
    /// on the same addresses.
    pub listed: HashMap<Addrs, Listed>,
    /// `/proc` lines that did not parse.
    pub malformed: u64,
}

impl Sources {
    fn new(entries: Vec<(SockKey, SockCounters)>, sockets: usize, malformed: u64) -> Sources {
        Sources {
            entries,
            listed: HashMap::with_capacity_and_hasher(sockets, Default::default()),
            malformed,
        }
    }

    fn list(&mut self, row: TcpRow, extras: Option<Extras>) {
        let listed = Listed { row, extras };
        match self.listed.entry((listed.row.local, listed.row.remote)) {
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

/// The map, `/proc/net/tcp{,6}` and a sock_diag dump, joined by 4-tuple (untyped rungs only:
/// the typed rungs' read-out carries each socket's facts itself).
pub fn read_sources(program: &mut KernelProgram, proc_root: &Path) -> Result<Sources> {
    let entries = program.sockets()?;
    let tables = read_tcp_tables(proc_root)?;
    // Joined by address pair: sock_diag reports inodes truncated to 32 bits.
    let diag: HashMap<Addrs, Extras> = dump_tcp_info()
        .unwrap_or_else(|err| {
            log::warn!("sock_diag dump failed ({err}): segment counts unknown this poll");
            Vec::new()
        })
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
    let mut sources = Sources::new(entries, tables.rows.len(), tables.malformed.len() as u64);
    for row in tables.rows {
        let extras = diag.get(&(row.local, row.remote)).copied();
        sources.list(row, extras);
    }
    Ok(sources)
}
