//! procfs mode (no privileges): sockets from `/proc/net/tcp{,6}`, counters from sock_diag
//! `tcp_info`, joined by namespace and address pair; every network namespace read once
//! ([`NamespaceReader`]). Connections that open and close between two observations are not seen
//! here; the eBPF mode sees them.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use rustc_hash::FxHashMap;

use super::{
    udp_sockets, ConnectionParts, Health, Mode, Observation, ObservedSocket, Observer, Scope,
    UdpSockets,
};
use crate::{
    attribution::{Attribution, Attributor},
    model::TcpState,
    procfs::{join, NamespaceReader, OwnerCache, TcpInfoRow},
};

/// How long an owner's attribution (its `/proc/<pid>/cgroup`) is reused before it is read again.
const ATTRIBUTION_INTERVAL: Duration = Duration::from_secs(5);

pub struct ProcfsObserver {
    owners: OwnerCache,
    namespaces: NamespaceReader,
    attributor: Attributor,
    /// Owner pid → attribution, emptied every [`ATTRIBUTION_INTERVAL`].
    by_pid: FxHashMap<u32, Arc<Attribution>>,
    by_pid_since: Instant,
    why: String,
    /// What could not be read, said once in [`Observer::describe`].
    notice: Option<String>,
}

impl ProcfsObserver {
    /// `why` says why this mode was chosen; it is part of [`Observer::describe`], and so is what
    /// will not be readable (other namespaces without `CAP_SYS_ADMIN`).
    pub fn new(why: impl Into<String>) -> ProcfsObserver {
        let proc_root = PathBuf::from("/proc");
        let namespaces = NamespaceReader::new(proc_root.clone(), PathBuf::from("/run/netns"));
        let notice = namespaces.expected().notice();
        ProcfsObserver {
            owners: OwnerCache::new(proc_root),
            namespaces,
            attributor: Attributor::host(),
            by_pid: FxHashMap::default(),
            by_pid_since: Instant::now(),
            why: why.into(),
            notice,
        }
    }

    fn attribution(&mut self, pid: Option<u32>) -> Arc<Attribution> {
        cached_attribution(&mut self.attributor, &mut self.by_pid, pid)
    }
}

/// An owner's attribution, read once per pid (until `by_pid` is emptied).
fn cached_attribution(
    attributor: &mut Attributor,
    by_pid: &mut FxHashMap<u32, Arc<Attribution>>,
    pid: Option<u32>,
) -> Arc<Attribution> {
    let Some(pid) = pid else {
        return Attribution::none();
    };
    if let Some(known) = by_pid.get(&pid) {
        return known.clone();
    }
    let attribution = attributor
        .attribute_pid(pid)
        .unwrap_or_else(Attribution::none);
    by_pid.insert(pid, attribution.clone());
    attribution
}

impl Observer for ProcfsObserver {
    fn observe(&mut self) -> Result<Observation> {
        let read = self.namespaces.read()?;
        let at = Instant::now();
        if self.by_pid_since.elapsed() >= ATTRIBUTION_INTERVAL {
            self.by_pid.clear();
            self.by_pid_since = at;
        }
        let live: Vec<_> = join(&read.namespaces)
            .into_iter()
            .filter(|j| j.row.inode != 0 && j.row.state != TcpState::Listen)
            .collect();
        // Socket inodes are unique host-wide: one owner scan serves every namespace.
        self.owners.refresh(live.iter().map(|j| j.row.inode));
        let mut sockets = Vec::with_capacity(live.len());
        for joined in live {
            let (row, info) = (joined.row, joined.info);
            let owner = self.owners.get(row.inode).cloned();
            let pid = owner.as_ref().map(|o| o.pid);
            let mut connection = ConnectionParts {
                local: row.local,
                remote: row.remote,
                state: row.state,
                inode: row.inode,
                uid: Some(row.uid),
                pid,
                process: owner.map(|o| o.process),
                cookie: info.map(|i| i.cookie),
                generation: row.inode,
                active: true,
            }
            .build();
            connection.netns = joined.netns;
            connection.attribution = self.attribution(pid);
            sockets.push(ObservedSocket {
                connection,
                counters: info.map(TcpInfoRow::counters).unwrap_or_default(),
                rx_queue: row.rx_queue,
                tx_queue: row.tx_queue,
                http: None,
            });
        }
        let live_connections = sockets.len() as u64;
        let malformed_lines = read
            .namespaces
            .iter()
            .map(|ns| ns.tables.malformed.len() as u64)
            .sum();
        Ok(Observation {
            at,
            sockets,
            closed: Vec::new(),
            scope: Scope::Complete,
            health: Health {
                mode: Some(Mode::Procfs),
                live_connections,
                malformed_lines,
                unreadable_processes: self.owners.unreadable_processes() as u64,
                namespaces_unreadable: read.unreadable.namespaces() as u64,
                ..Health::default()
            },
        })
    }

    fn mode(&self) -> Mode {
        Mode::Procfs
    }

    /// The UDP tables of the namespaces [`Observer::observe`] reads, read the same way; no
    /// counters (procfs mode counts no UDP).
    fn udp_sockets(&mut self) -> Result<UdpSockets> {
        let read = self.namespaces.read_udp()?;
        let (attributor, by_pid) = (&mut self.attributor, &mut self.by_pid);
        Ok(udp_sockets::observed(
            &read.namespaces,
            &mut self.owners,
            |pid| cached_attribution(attributor, by_pid, pid),
            |_| None,
        ))
    }

    fn describe(&self) -> String {
        match &self.notice {
            Some(notice) => format!("mode procfs: {}; {notice}", self.why),
            None => format!("mode procfs: {}", self.why),
        }
    }
}
