//! Untyped rungs (LRU hash): entries carry no cookie and no socket facts, so each is joined by
//! network namespace and 4-tuple with its `/proc/net/tcp` row and sock_diag's extras
//! (`hashed_sources`). Ids are
//! fixed at a socket's first sighting and kept through its close event.

use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::{path::Path, sync::Arc, time::Instant};

use anyhow::Result;
use flow_common::{SockClosed, SockCounters, SockKey};

use super::{
    super::{facts::ConnectionFacts, ConnectionParts, ObservedSocket},
    book::{
        attribution_of, kernel_counters, owner_or_mover, Closes, FactsBook, KernelIdentity,
        IDENTITY_GRACE,
    },
    hashed_sources::{place_of, read_sources, Extras, Listed, Place, Sources},
};
use crate::{
    attribution::{Attribution, Attributor},
    ebpf::{tuple_addrs, KernelProgram},
    id::kernel_generation,
    model::{Counters, TcpState},
    procfs::{Owner, OwnerCache, TcpRow},
};

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
    /// The cookie, when it was known at the first sighting (then it is the id).
    cookie: Option<u64>,
    packets: (u64, u64),
    /// The cgroup id the kernel saw last and its attribution (resolved when the id changes).
    cgroup: Option<(u64, Arc<Attribution>)>,
    last_seen: Instant,
}

/// One poll of the untyped rungs.
pub struct HashedPoll {
    pub sockets: Vec<ObservedSocket>,
    pub closed: Vec<ObservedSocket>,
    pub entries: u64,
    pub malformed: u64,
}

#[derive(Default)]
pub struct HashedBook {
    known: HashMap<KernelIdentity, Known>,
    closes: Closes<KernelIdentity>,
    /// How each namespace and 4-tuple's socket was last listed (see
    /// [`HashedBook::remember_rows`]): a socket listed before it had an entry keeps its
    /// inode-based id through its close event.
    last_rows: HashMap<Place, LastRow>,
    /// When the previous observation was made.
    last_poll: Option<Instant>,
}

impl HashedBook {
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        program: &mut KernelProgram,
        proc_root: &Path,
        owners: &mut OwnerCache,
        facts: &FactsBook,
        attributor: &mut Attributor,
        closed_events: Vec<SockClosed>,
        at: Instant,
    ) -> Result<HashedPoll> {
        let sources = read_sources(program, proc_root)?;
        let Sources {
            entries,
            listed,
            malformed,
            own_netns,
        } = &sources;
        owners.refresh(listed.values().map(|l| l.row.inode).filter(|i| *i != 0));

        let mut sockets = Vec::with_capacity(listed.len());
        let mut counted: FxHashSet<Place> = Default::default();
        for (sock, counters) in entries {
            // Family 0: an entry created an instant ago whose tuple is still being written; its
            // bytes stay in the map and show at the next poll.
            let Some(addrs) = tuple_addrs(&counters.tuple) else {
                continue;
            };
            let place = place_of(counters, addrs, *own_netns);
            counted.insert(place);
            let (row, extra) = listed
                .get(&place)
                .map_or((None, None), |l| (Some(&l.row), l.extras.as_ref()));
            let identity = (*sock, counters.first_ns);
            // Its inode now, or (closed by its process since: orphaned sockets have none) the
            // one it had at the previous poll, if that row was this very socket.
            let listed_inode = row
                .map(|r| r.inode)
                .filter(|i| *i != 0)
                .or_else(|| Some(self.listed(&place, counters.cookie)?.inode));
            let known = remember(
                &mut self.known,
                identity,
                listed_inode,
                row,
                owners,
                extra,
                (counters.cgroup_id, &mut *attributor),
                at,
            );
            sockets.push(live_socket(
                place,
                counters,
                row,
                known,
                facts.get(&identity),
            ));
        }
        // Sockets that have not moved a byte since the program was loaded.
        for (place, Listed { row, extras }) in listed {
            if row.inode == 0 || row.state == TcpState::Listen || counted.contains(place) {
                continue;
            }
            let extra = extras.as_ref();
            let owner = owners.get(row.inode);
            let mut connection = ConnectionParts {
                local: place.1,
                remote: place.2,
                state: row.state,
                inode: row.inode,
                uid: Some(row.uid),
                pid: owner.map(|o| o.pid),
                process: owner.map(|o| o.process.clone()),
                cookie: extra.map(|e| e.cookie),
                generation: row.inode,
                active: true,
            }
            .build();
            connection.netns = Some(place.0);
            sockets.push(ObservedSocket {
                connection,
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

        let events = self
            .closes
            .take(closed_events, |e| (e.sock, e.counters.first_ns), at);
        let closed = events
            .iter()
            .filter_map(|event| {
                let addrs = tuple_addrs(&event.counters.tuple)?;
                let place = place_of(&event.counters, addrs, *own_netns);
                let identity = (event.sock, event.counters.first_ns);
                let known = self.known.remove(&identity).or_else(|| {
                    let last = self.listed(&place, event.counters.cookie)?;
                    Some(Known::from_row(last.inode, last.uid, at))
                });
                Some(closed_socket(
                    event.sock,
                    place,
                    &event.counters,
                    known,
                    facts.get(&identity),
                    attributor,
                ))
            })
            .collect();
        self.known
            .retain(|_, k| at.duration_since(k.last_seen) < IDENTITY_GRACE);
        self.closes.expire(at);
        self.remember_rows(listed, at);
        Ok(HashedPoll {
            sockets,
            closed,
            entries: entries.len() as u64,
            malformed: *malformed,
        })
    }

    /// Whether a socket generation is live here (its payload facts are still needed).
    pub fn is_live(&self, identity: &KernelIdentity) -> bool {
        self.known.contains_key(identity)
    }
}

impl HashedBook {
    /// How `addrs`' socket was listed, if that listing was the socket with this `cookie`. Without
    /// a cookie (untyped rungs) only the previous poll's listing counts: an older one may be a
    /// previous socket on the same 4-tuple.
    fn listed(&self, place: &Place, cookie: u64) -> Option<&LastRow> {
        let last = self.last_rows.get(place)?;
        let same = match cookie {
            0 => Some(last.seen) == self.last_poll,
            cookie => last.cookie == Some(cookie),
        };
        same.then_some(last)
    }

    /// Keeps each listed socket's inode and uid for its close event (which may come polls
    /// later, when its row is gone or shows no inode: orphaned by its process, or TIME_WAIT).
    fn remember_rows(&mut self, listed: &HashMap<Place, Listed>, at: Instant) {
        for (place, Listed { row, extras }) in listed {
            let cookie = extras.map(|e| e.cookie);
            if row.inode != 0 {
                let last = LastRow {
                    inode: row.inode,
                    uid: row.uid,
                    cookie,
                    seen: at,
                };
                self.last_rows.insert(*place, last);
            } else if let Some(last) = self.last_rows.get_mut(place) {
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
            cgroup: None,
            last_seen: now,
        }
    }
}

/// Updates and returns what is known about a live kernel entry.
#[allow(clippy::too_many_arguments)]
fn remember<'a>(
    known: &'a mut HashMap<KernelIdentity, Known>,
    identity: KernelIdentity,
    listed_inode: Option<u64>,
    row: Option<&TcpRow>,
    owners: &OwnerCache,
    extra: Option<&Extras>,
    (cgroup_id, attributor): (u64, &mut Attributor),
    now: Instant,
) -> &'a Known {
    let known = known.entry(identity).or_insert_with(|| Known {
        generation: listed_inode.unwrap_or_else(|| kernel_generation(identity.0, identity.1)),
        inode: 0,
        uid: None,
        owner: None,
        // Known now: the id is the cookie for the socket's whole life.
        cookie: extra.map(|e| e.cookie).filter(|c| *c != 0),
        packets: (0, 0),
        cgroup: None,
        last_seen: now,
    });
    known.last_seen = now;
    if cgroup_id != 0 && known.cgroup.as_ref().is_none_or(|(id, _)| *id != cgroup_id) {
        // attribution: resolved once per cgroup id change (ids come from the kernel entry).
        known.cgroup = Some((cgroup_id, attribution_of(attributor, cgroup_id)));
    }
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
    }
    known
}

fn live_socket(
    place: Place,
    counters: &SockCounters,
    row: Option<&TcpRow>,
    known: &Known,
    facts: Option<&ConnectionFacts>,
) -> ObservedSocket {
    let (pid, process) = owner_or_mover(known.owner.as_ref(), counters);
    let mut connection = ConnectionParts {
        local: place.1,
        remote: place.2,
        state: row.map_or(TcpState::Established, |r| r.state),
        inode: known.inode,
        uid: known.uid,
        pid,
        process,
        cookie: known.cookie,
        generation: known.generation,
        active: true,
    }
    .build_with(facts);
    connection.netns = Some(place.0);
    if let Some((_, attribution)) = &known.cgroup {
        connection.attribution = attribution.clone();
    }
    ObservedSocket {
        connection,
        counters: kernel_counters(counters, known.packets),
        rx_queue: row.map_or(0, |r| r.rx_queue),
        tx_queue: row.map_or(0, |r| r.tx_queue),
        http: facts.and_then(|f| f.http().cloned()),
    }
}

fn closed_socket(
    sock: SockKey,
    place: Place,
    counters: &SockCounters,
    known: Option<Known>,
    facts: Option<&ConnectionFacts>,
    attributor: &mut Attributor,
) -> ObservedSocket {
    let generation = known.as_ref().map_or_else(
        || kernel_generation(sock, counters.first_ns),
        |k| k.generation,
    );
    let (pid, process) = owner_or_mover(known.as_ref().and_then(|k| k.owner.as_ref()), counters);
    let mut connection = ConnectionParts {
        local: place.1,
        remote: place.2,
        state: TcpState::Close,
        inode: known.as_ref().map_or(0, |k| k.inode),
        uid: known.as_ref().and_then(|k| k.uid),
        pid,
        process,
        cookie: known.as_ref().and_then(|k| k.cookie),
        generation,
        active: false,
    }
    .build_with(facts);
    connection.netns = Some(place.0);
    // attribution: the cgroup the kernel saw last (the known one when the id did not change).
    connection.attribution = match known.as_ref().and_then(|k| k.cgroup.as_ref()) {
        Some((id, attribution)) if *id == counters.cgroup_id => attribution.clone(),
        _ => attribution_of(attributor, counters.cgroup_id),
    };
    ObservedSocket {
        connection,
        counters: kernel_counters(counters, known.map_or((0, 0), |k| k.packets)),
        rx_queue: 0,
        tx_queue: 0,
        http: facts.and_then(|f| f.http().cloned()),
    }
}
