//! procfs mode (no privileges): sockets from `/proc/net/tcp{,6}`, counters from sock_diag
//! `tcp_info`, joined by address pair. Connections that open and close between two observations are
//! not seen here; the eBPF mode sees them.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Instant};

use anyhow::Result;

use super::{ConnectionParts, Health, Mode, Observation, ObservedSocket, Observer, Scope};
use crate::{
    model::TcpState,
    procfs::{dump_tcp_info, read_tcp_tables, OwnerCache, TcpInfoRow},
};

pub struct ProcfsObserver {
    owners: OwnerCache,
    proc_root: PathBuf,
    why: String,
}

impl ProcfsObserver {
    /// `why` says why this mode was chosen; it is part of [`Observer::describe`].
    pub fn new(why: impl Into<String>) -> ProcfsObserver {
        let proc_root = PathBuf::from("/proc");
        ProcfsObserver {
            owners: OwnerCache::new(proc_root.clone()),
            proc_root,
            why: why.into(),
        }
    }
}

impl Observer for ProcfsObserver {
    fn observe(&mut self) -> Result<Observation> {
        let tables = read_tcp_tables(&self.proc_root)?;
        // Joined by address pair: sock_diag reports inodes truncated to 32 bits.
        let diag: HashMap<(SocketAddr, SocketAddr), TcpInfoRow> = dump_tcp_info()?
            .into_iter()
            .map(|row| ((row.local, row.remote), row))
            .collect();
        let at = Instant::now();
        let live = tables
            .rows
            .iter()
            .filter(|r| r.inode != 0 && r.state != TcpState::Listen);
        let owners = self.owners.resolve(live.clone().map(|r| r.inode));
        let sockets = live
            .map(|row| {
                let owner = owners.get(&row.inode);
                let info = diag.get(&(row.local, row.remote));
                ObservedSocket {
                    connection: ConnectionParts {
                        local: row.local,
                        remote: row.remote,
                        state: row.state,
                        inode: row.inode,
                        uid: Some(row.uid),
                        pid: owner.map(|o| o.pid),
                        process: owner.map(|o| o.process.clone()),
                        cookie: info.map(|i| i.cookie),
                        generation: row.inode,
                        active: true,
                    }
                    .build(),
                    counters: info.map(TcpInfoRow::counters).unwrap_or_default(),
                    rx_queue: row.rx_queue,
                    tx_queue: row.tx_queue,
                    http: None,
                }
            })
            .collect::<Vec<_>>();
        let live_connections = sockets.len() as u64;
        Ok(Observation {
            at,
            sockets,
            closed: Vec::new(),
            scope: Scope::Complete,
            health: Health {
                mode: Some(Mode::Procfs),
                live_connections,
                malformed_lines: tables.malformed.len() as u64,
                unreadable_processes: self.owners.unreadable_processes() as u64,
                ..Health::default()
            },
        })
    }

    fn mode(&self) -> Mode {
        Mode::Procfs
    }

    fn describe(&self) -> String {
        format!("mode procfs: {}", self.why)
    }
}
