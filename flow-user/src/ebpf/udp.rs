//! UDP flows (kernel side: `flow-ebpf/src/udp.rs`): attaching the `cgroup_skb` egress/ingress
//! and `cgroup/sock_release` programs to the cgroup v2 root, and reading what they counted.
//! Independent of the attach ladder: every rung counts UDP the same way, where the kernel lets
//! `cgroup_skb` attach; where it does not, UDP is not counted and the ladder line says why.

use std::{
    collections::HashSet,
    fs::File,
    mem::size_of,
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap, Map, MapData, RingBuf},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock},
    Ebpf,
};
use flow_common::udp::{names, udp_stat, UdpFlow, UdpFlowKey, UdpInitialEvent, UdpPayloadEvent};

use super::{
    attach::Links,
    events::{record, valid},
    quic_initials::PendingInitials,
    KernelProgram,
};
use crate::protocol::payload::{classify_datagram, PayloadFacts};

/// The attached UDP programs and the rings userspace drains at each read.
pub struct UdpCounting {
    pub(super) links: Links,
    pub cgroup_root: PathBuf,
    /// Why flows carry no sender (the egress program without `bpf_get_current_pid_tgid` is
    /// attached), if they do not.
    pub senders_unknown: Option<&'static str>,
    released: RingBuf<MapData>,
    payloads: RingBuf<MapData>,
    /// QUIC flows whose first Initial came without the server name.
    initials: PendingInitials,
    capacity: u32,
}

/// One read of the UDP side: released sockets first, then every flow, then payload prefixes.
#[derive(Debug, Default)]
pub struct UdpRead {
    /// Cookies of UDP sockets released before the flows were read: their flows are final.
    pub released: HashSet<u64>,
    pub flows: Vec<(UdpFlowKey, UdpFlow)>,
    /// What the first datagram of a flow in one direction showed (and a QUIC flow's next
    /// Initial).
    pub payloads: Vec<(UdpFlowKey, PayloadFacts)>,
    /// Entries the kernel created so far, and events it could not publish.
    pub inserts: u64,
    pub release_drops: u64,
    pub payload_drops: u64,
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo`.
pub(super) fn cgroup2_root() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    info.lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or_else(|| anyhow!("no cgroup v2 mount"))
}

/// Attaches the three programs to the cgroup v2 root. aya makes BPF links there (Linux 5.7+),
/// which coexist with every other program attached to the root (`Single`, flags 0: a link refuses the
/// `ALLOW_MULTI` flag, which it implies).
pub(super) fn attach(ebpf: &mut Ebpf, capacity: u32) -> Result<UdpCounting> {
    let root = cgroup2_root()?;
    let cgroup = File::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let mut links: Links = Vec::new();
    let mut senders_unknown = None;
    for (name, kind) in [
        (names::EGRESS, CgroupSkbAttachType::Egress),
        (names::INGRESS, CgroupSkbAttachType::Ingress),
    ] {
        let mut name = name;
        if let Err(err) = load_skb(ebpf, name) {
            if name != names::EGRESS {
                return Err(err);
            }
            // Bytes and datagrams need no sender: count them without it.
            log::debug!("{err:#}");
            name = names::EGRESS_NOPID;
            load_skb(ebpf, name)?;
            senders_unknown = Some("the kernel refuses bpf_get_current_pid_tgid in cgroup_skb");
        }
        let program: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        let link = program
            .attach(cgroup.as_fd(), kind, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {name} to {}", root.display()))?;
        links.push(Box::new(program.take_link(link)?));
    }
    let program: &mut CgroupSock = ebpf
        .program_mut(names::RELEASE)
        .ok_or_else(|| anyhow!("program {} missing", names::RELEASE))?
        .try_into()?;
    program.load().context("loading the sock_release program")?;
    let link = program
        .attach(cgroup.as_fd(), CgroupAttachMode::Single)
        .context("attaching the sock_release program")?;
    links.push(Box::new(program.take_link(link)?));
    let ring = |ebpf: &mut Ebpf, name: &str| -> Result<RingBuf<MapData>> {
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| anyhow!("map {name} missing"))?;
        Ok(RingBuf::try_from(map)?)
    };
    Ok(UdpCounting {
        released: ring(ebpf, names::RELEASED)?,
        payloads: ring(ebpf, names::PAYLOADS)?,
        initials: PendingInitials::default(),
        links,
        cgroup_root: root,
        senders_unknown,
        capacity,
    })
}

fn load_skb(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let program: &mut CgroupSkb = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?;
    program.load().with_context(|| format!("loading {name}"))
}

impl KernelProgram {
    /// UDP counting, or why it is off.
    pub fn udp(&self) -> Result<&UdpCounting, &str> {
        self.udp.as_ref().map_err(String::as_str)
    }

    /// Capacity of the UDP flow map (0 when UDP is not counted).
    pub fn udp_capacity(&self) -> u32 {
        self.udp.as_ref().map_or(0, |u| u.capacity)
    }

    /// Released sockets, every flow, then payload prefixes (see [`UdpRead`]). Empty when UDP is
    /// not counted.
    pub fn read_udp(&mut self) -> Result<UdpRead> {
        let Ok(udp) = self.udp.as_mut() else {
            return Ok(UdpRead::default());
        };
        let mut read = UdpRead::default();
        while let Some(item) = udp.released.next() {
            if item.len() >= size_of::<u64>() {
                read.released
                    .insert(u64::from_ne_bytes(item[..8].try_into().unwrap()));
            }
        }
        let capacity = udp.capacity as usize;
        let map = self
            .ebpf
            .map(names::FLOWS)
            .ok_or_else(|| anyhow!("map {} missing", names::FLOWS))?;
        read.flows = match map {
            Map::LruHashMap(data) => {
                super::batch::lookup_all(data.fd().as_fd().as_raw_fd(), capacity)
                    .context("reading the UDP flows")?
            }
            _ => return Err(anyhow!("{} is not an LRU hash", names::FLOWS)),
        };
        // Two record kinds, told apart by their length: a whole QUIC Initial, or a prefix.
        while let Some(item) = udp.payloads.next() {
            if let Some(event) = record::<UdpInitialEvent>(&item) {
                read.payloads.push((event.key, udp.initials.add(&event)));
            } else if let Some(event) = record::<UdpPayloadEvent>(&item) {
                let facts = classify_datagram(valid(&event.data, event.len));
                read.payloads.push((event.key, facts));
            }
        }
        udp.initials.tick();
        let stats: Array<&MapData, u64> = Array::try_from(
            self.ebpf
                .map(names::STATS)
                .ok_or_else(|| anyhow!("map {} missing", names::STATS))?,
        )?;
        let stat = |index: u32| stats.get(&index, 0).unwrap_or(0);
        read.inserts = stat(udp_stat::INSERTS);
        read.release_drops = stat(udp_stat::RELEASE_DROPS);
        read.payload_drops = stat(udp_stat::PAYLOAD_DROPS);
        Ok(read)
    }

    /// Deletes flows userspace has reported as ended. Returns how many were deleted.
    pub fn delete_udp_flows(&mut self, keys: &[UdpFlowKey]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let map = self
            .ebpf
            .map_mut(names::FLOWS)
            .ok_or_else(|| anyhow!("map {} missing", names::FLOWS))?;
        let mut flows: HashMap<&mut MapData, UdpFlowKey, UdpFlow> = HashMap::try_from(map)?;
        let mut deleted = 0;
        for key in keys {
            if flows.remove(key).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
