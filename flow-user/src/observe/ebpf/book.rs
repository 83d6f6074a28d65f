//! What both stores' paths share: payload facts per socket, close events taken once per socket
//! (the kernel may publish a socket's final counters twice), and the small conversions from
//! kernel records.

use rustc_hash::FxHashMap as HashMap;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use flow_common::{SockClosed, SockCounters, SockKey};

use super::super::facts::ConnectionFacts;
use crate::{
    attribution::{Attribution, Attributor},
    ebpf::PayloadSeen,
    model::Counters,
    procfs::Owner,
};

/// How long what was learned about a socket outlives its last sighting or its close event:
/// a late (second) close event must find it.
pub const IDENTITY_GRACE: Duration = Duration::from_secs(10);

/// A kernel entry is one socket generation: its address plus its first-activity time.
pub type KernelIdentity = (SockKey, u64);

/// What payload prefixes showed, per socket generation.
#[derive(Default)]
pub struct FactsBook {
    facts: HashMap<KernelIdentity, ConnectionFacts>,
    /// A/AAAA answers of the DNS responses seen since they were last taken.
    dns_answers: Vec<crate::protocol::dns::DnsAnswer>,
}

impl FactsBook {
    pub fn learn(&mut self, seen: Vec<PayloadSeen>, at: Instant) {
        for mut seen in seen {
            self.dns_answers.append(&mut seen.facts.dns_answers);
            self.facts
                .entry((seen.sock, seen.first_ns))
                .or_insert_with(|| ConnectionFacts::new(at))
                .learn(&seen.facts, at);
        }
    }

    /// The DNS answers learned since the previous call.
    pub fn take_dns_answers(&mut self) -> Vec<crate::protocol::dns::DnsAnswer> {
        std::mem::take(&mut self.dns_answers)
    }

    pub fn get(&self, identity: &KernelIdentity) -> Option<&ConnectionFacts> {
        self.facts.get(identity)
    }

    /// Forgets facts not updated for a while whose socket `alive` does not vouch for.
    pub fn expire(&mut self, at: Instant, alive: impl Fn(&KernelIdentity) -> bool) {
        self.facts
            .retain(|id, f| alive(id) || at.duration_since(f.updated) < IDENTITY_GRACE);
        crate::memory::shrink_if_sparse(&mut self.facts);
    }
}

/// Final counters already reported, per socket (by cookie on the typed rungs, by kernel
/// identity on the others), so that a second publication adds only what is new.
#[derive(Default)]
pub struct Closes<K: std::hash::Hash + Eq> {
    reported: HashMap<K, (u64, u64, Instant)>,
}

impl<K: std::hash::Hash + Eq + Copy> Closes<K> {
    /// The events of one poll, one per socket with its largest counters, minus those already
    /// reported with counters as large.
    pub fn take(
        &mut self,
        events: Vec<SockClosed>,
        key: impl Fn(&SockClosed) -> K,
        at: Instant,
    ) -> Vec<SockClosed> {
        let mut newest: HashMap<K, SockClosed> = HashMap::default();
        for event in events {
            let slot = newest.entry(key(&event)).or_insert(event);
            if total(&event.counters) > total(&slot.counters) {
                *slot = event;
            }
        }
        newest
            .into_iter()
            .filter_map(|(k, event)| {
                let counters = (event.counters.tx_bytes, event.counters.rx_bytes);
                match self.reported.get(&k) {
                    Some(&(tx, rx, _)) if (tx, rx) >= counters => None,
                    _ => {
                        self.reported.insert(k, (counters.0, counters.1, at));
                        Some(event)
                    }
                }
            })
            .collect()
    }

    /// Whether this socket's close was reported (its live rows are stale).
    pub fn contains(&self, key: &K) -> bool {
        self.reported.contains_key(key)
    }

    pub fn expire(&mut self, at: Instant) {
        self.reported
            .retain(|_, (_, _, when)| at.duration_since(*when) < IDENTITY_GRACE);
        crate::memory::shrink_if_sparse(&mut self.reported);
    }
}

fn total(c: &SockCounters) -> u64 {
    c.tx_bytes.saturating_add(c.rx_bytes)
}

/// The socket's owner from `/proc/<pid>/fd`, else the task the kernel saw moving its data.
pub fn owner_or_mover(
    owner: Option<&Owner>,
    counters: &SockCounters,
) -> (Option<u32>, Option<String>) {
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

pub fn kernel_counters(counters: &SockCounters, (tx_packets, rx_packets): (u64, u64)) -> Counters {
    Counters {
        tx_bytes: counters.tx_bytes,
        rx_bytes: counters.rx_bytes,
        tx_packets,
        rx_packets,
    }
}

/// What the cgroup the kernel saw moving data says (`cgroup_id`: `bpf_get_current_cgroup_id()`,
/// 0 when no task was seen); no attribution when the id is unknown (or no longer a cgroup).
pub fn attribution_of(attributor: &mut Attributor, cgroup_id: u64) -> Arc<Attribution> {
    (cgroup_id != 0)
        .then(|| attributor.attribute_id(cgroup_id))
        .flatten()
        .unwrap_or_else(Attribution::none)
}

/// A namespace inode the kernel recorded, `None` when it could not read one.
pub fn netns_of(inode: u32) -> Option<u64> {
    (inode != 0).then_some(u64::from(inode))
}
