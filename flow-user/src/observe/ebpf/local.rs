//! Typed rungs (socket-local storage): each row of the kernel's read-out carries its socket's
//! cookie, state, inode, uid, queues, segments and counters, so nothing is joined by 4-tuple.
//! Connections are kept by id (the cookie): built when first seen, rebuilt only when their
//! state, inode, owner or protocol changes.

use rustc_hash::FxHashMap as HashMap;
use std::time::Instant;

use flow_common::{SockClosed, SockCounters};

use super::{
    super::{ConnectionParts, ObservedSocket},
    book::{attribution_of, kernel_counters, netns_of, owner_or_mover, Closes, FactsBook},
};
use crate::{
    attribution::Attributor,
    ebpf::{tuple_addrs, TableRow},
    id::ConnectionId,
    model::{NetConnection, ProtocolSource, TcpState},
    procfs::OwnerCache,
};

/// One live socket as last built.
struct Known {
    connection: NetConnection,
    /// The inode its owner was looked up for (0: none yet).
    owner_inode: u64,
    /// Segments out and in at its last row (close events carry none).
    packets: (u64, u64),
    /// The cgroup id it was attributed with (0: none yet).
    cgroup_id: u64,
    last_seen: Instant,
}

/// A live socket not listed for this long is forgotten here (rebuilt if it shows again): only
/// a socket whose close event was lost stays unlisted that long without a reason.
const UNLISTED_EXPIRY: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Default)]
pub struct LocalBook {
    live: HashMap<ConnectionId, Known>,
    closes: Closes<ConnectionId>,
}

impl LocalBook {
    pub fn live_connections(&self) -> usize {
        self.live.len()
    }

    /// Rows of the read-out as observed sockets. Sockets whose close was reported are skipped
    /// (their storage can outlive the close by a moment). `with_idle` keeps sockets that have
    /// no counters (the full socket table); listeners never show.
    pub fn rows(
        &mut self,
        rows: &[TableRow],
        owners: &mut OwnerCache,
        facts: &FactsBook,
        attributor: &mut Attributor,
        at: Instant,
        with_idle: bool,
    ) -> Vec<ObservedSocket> {
        // Owners are looked up only for inodes not seen before.
        let new_inodes: Vec<u64> = rows
            .iter()
            .filter(|r| r.socket.inode != 0)
            .filter(|r| {
                self.live
                    .get(&ConnectionId(r.socket.cookie))
                    .is_none_or(|k| k.owner_inode != r.socket.inode)
            })
            .map(|r| r.socket.inode)
            .collect();
        if !new_inodes.is_empty() {
            owners.refresh(new_inodes);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seen = &row.socket;
            let state = TcpState::from_kernel(seen.state as u8);
            if state == TcpState::Listen || (row.counters.is_none() && !with_idle) {
                continue;
            }
            let id = ConnectionId(seen.cookie);
            if seen.cookie == 0 || self.closes.contains(&id) {
                continue;
            }
            let Some((local, remote)) = tuple_addrs(&seen.tuple) else {
                // An entry an instant old whose tuple is still being written: next poll.
                continue;
            };
            let counters = row.counters.unwrap_or_default();
            let packets = (u64::from(seen.segs_out), u64::from(seen.segs_in));
            if row.counters.is_none() {
                // An idle socket of the full table: shown, not kept (no close event will come).
                let inode = seen.inode;
                let owner = (inode != 0).then(|| owners.get(inode)).flatten();
                let place = Place {
                    netns: seen.netns,
                    attributor: &mut *attributor,
                };
                out.push(ObservedSocket {
                    connection: build(
                        local, remote, state, inode, seen.uid, id, &counters, owner, None, place,
                    ),
                    counters: kernel_counters(&counters, packets),
                    rx_queue: u64::from(seen.rx_queue),
                    tx_queue: u64::from(seen.tx_queue),
                    http: None,
                });
                continue;
            }
            let identity = (seen.sock, counters.first_ns);
            let facts = facts.get(&identity);
            let known = self.live.entry(id).or_insert_with(|| {
                let owner = (seen.inode != 0).then(|| owners.get(seen.inode)).flatten();
                let place = Place {
                    netns: seen.netns,
                    attributor: &mut *attributor,
                };
                Known {
                    connection: build(
                        local, remote, state, seen.inode, seen.uid, id, &counters, owner, facts,
                        place,
                    ),
                    owner_inode: seen.inode,
                    packets,
                    cgroup_id: counters.cgroup_id,
                    last_seen: at,
                }
            });
            known.last_seen = at;
            known.packets = packets;
            // Orphaned sockets (closed by their process) lose their inode: keep the known one.
            let inode = if seen.inode != 0 {
                seen.inode
            } else {
                known.connection.inode
            };
            let owner = (inode != 0).then(|| owners.get(inode)).flatten();
            let protocol_changed = facts.is_some_and(|f| {
                f.protocol(known.connection.protocol)
                    .is_some_and(|p| p != known.connection.protocol)
            });
            // Built before its owner or mover was known (an entry made when the connection was
            // established, in softirq, has no task).
            let owner_due = inode != 0 && known.owner_inode != inode;
            let mover_due = known.connection.pid.is_none() && counters.pid_tgid != 0;
            // Another process (in another cgroup) moved data on it.
            let cgroup_due = counters.cgroup_id != known.cgroup_id;
            if known.connection.state != state
                || known.connection.inode != inode
                || owner_due
                || mover_due
                || cgroup_due
                || protocol_changed
            {
                let place = Place {
                    netns: seen.netns,
                    attributor: &mut *attributor,
                };
                let mut rebuilt = build(
                    local, remote, state, inode, seen.uid, id, &counters, owner, facts, place,
                );
                if facts.is_none() && known.connection.protocol_source == ProtocolSource::Payload {
                    // What the payload showed outlives its facts (kept a limited time).
                    rebuilt.protocol = known.connection.protocol;
                    rebuilt.protocol_source = ProtocolSource::Payload;
                }
                known.connection = rebuilt;
                known.owner_inode = inode;
                known.cgroup_id = counters.cgroup_id;
            }
            out.push(ObservedSocket {
                connection: known.connection.clone(),
                counters: kernel_counters(&counters, packets),
                rx_queue: u64::from(seen.rx_queue),
                tx_queue: u64::from(seen.tx_queue),
                http: facts.and_then(|f| f.http().cloned()),
            });
        }
        out
    }

    /// Close events as closed sockets: the connection as last seen (or, for a socket that lived
    /// between two polls, built from the event), with its final counters.
    pub fn closed(
        &mut self,
        events: Vec<SockClosed>,
        facts: &FactsBook,
        attributor: &mut Attributor,
        at: Instant,
    ) -> Vec<ObservedSocket> {
        let events = self
            .closes
            .take(events, |e| ConnectionId(e.counters.cookie), at);
        events
            .into_iter()
            .filter_map(|event| {
                let counters = &event.counters;
                let id = ConnectionId(counters.cookie);
                let (local, remote) = tuple_addrs(&counters.tuple)?;
                let facts = facts.get(&(event.sock, counters.first_ns));
                let place = Place {
                    netns: counters.netns,
                    attributor: &mut *attributor,
                };
                let (mut connection, packets) = match self.live.remove(&id) {
                    Some(known) if known.cgroup_id == counters.cgroup_id => {
                        (known.connection, known.packets)
                    }
                    Some(mut known) => {
                        // attribution: the last mover's cgroup, as the final counters say.
                        known.connection.attribution =
                            attribution_of(place.attributor, counters.cgroup_id);
                        (known.connection, known.packets)
                    }
                    None => (
                        build(
                            local,
                            remote,
                            TcpState::Close,
                            0,
                            u32::MAX,
                            id,
                            counters,
                            None,
                            facts,
                            place,
                        ),
                        (0, 0),
                    ),
                };
                connection.state = TcpState::Close;
                connection.active = false;
                if let Some(p) = facts.and_then(|f| f.protocol(connection.protocol)) {
                    connection.protocol = p;
                }
                Some(ObservedSocket {
                    connection,
                    // Segments are not in the entry: the last count the read-out gave.
                    counters: kernel_counters(counters, packets),
                    rx_queue: 0,
                    tx_queue: 0,
                    http: facts.and_then(|f| f.http().cloned()),
                })
            })
            .collect()
    }

    /// Forgets reported closes past their grace, and live sockets long unlisted.
    pub fn expire(&mut self, at: Instant) {
        self.closes.expire(at);
        self.live
            .retain(|_, k| at.duration_since(k.last_seen) < UNLISTED_EXPIRY);
        crate::memory::shrink_if_sparse(&mut self.live);
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    state: TcpState,
    inode: u64,
    uid: u32,
    id: ConnectionId,
    counters: &SockCounters,
    owner: Option<&crate::procfs::Owner>,
    facts: Option<&super::super::facts::ConnectionFacts>,
    place: Place<'_>,
) -> NetConnection {
    let (pid, process) = owner_or_mover(owner, counters);
    let mut connection = ConnectionParts {
        local,
        remote,
        state,
        inode,
        uid: (uid != u32::MAX).then_some(uid),
        pid,
        process,
        cookie: Some(id.0),
        generation: id.0,
        active: true,
    }
    .build_with(facts);
    connection.netns = netns_of(place.netns);
    // attribution: the cgroup of the task that last moved data (the kernel reads its id when
    // the owning process changes), resolved to a path and what it names, cached per cgroup.
    connection.attribution = attribution_of(place.attributor, counters.cgroup_id);
    connection
}

/// What the socket's row or close event says beyond the parts: its network namespace (0:
/// unknown), and where cgroup ids are attributed.
struct Place<'a> {
    netns: u32,
    attributor: &'a mut Attributor,
}
