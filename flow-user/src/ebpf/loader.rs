//! Loads the embedded kernel object and attaches the best rung of hooks this kernel allows.

use std::os::fd::OwnedFd;

use anyhow::{anyhow, Result};
use aya::{Btf, Ebpf, EbpfLoader};
use flow_common::{
    counting, globals, maps, programs, sock_reads, SockOffsets, DEFAULT_MAP_ENTRIES,
    PAYLOAD_DEFAULT, PAYLOAD_MAX,
};

use super::{
    attach::{attach_rung, detach, Links},
    host::{ensure_tracefs, raise_memlock_limit},
    load_errors::{load_failed, no_rung, Refusal},
    rungs::{Counting, Rung, Store},
};

/// The object `cargo xtask build-ebpf` produced, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow.bpf.o"));

/// How to load the kernel program.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Capacity of the per-socket map (LRU: the coldest sockets are evicted beyond it).
    pub map_entries: u32,
    /// Use this rung or fail, instead of walking the ladder.
    pub rung: Option<Rung>,
    /// Payload prefix copied per captured message, in bytes (at most `PAYLOAD_MAX`); 0 turns
    /// payload capture off (the verifier then drops the capture code from the counting hooks).
    pub payload_bytes: u32,
    /// Capacity of the UDP flow map (LRU: the least recently used flows are evicted beyond).
    pub udp_flows: u32,
    /// Read socket fields through a helper call each, as on a kernel without
    /// `bpf_skc_to_tcp_sock`, even where direct loads are allowed: for tests of that path.
    pub probe_reads: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            map_entries: DEFAULT_MAP_ENTRIES,
            rung: None,
            payload_bytes: PAYLOAD_DEFAULT,
            udp_flows: flow_common::udp::DEFAULT_UDP_FLOWS,
            probe_reads: false,
        }
    }
}

/// Overrides the default counting method (`sequence` or `per_event`): for tests.
const COUNTING_ENV: &str = "FLOW_COUNTING";

impl Counting {
    /// [`Counting::Sequence`], unless the environment variable `FLOW_COUNTING` says
    /// `per_event` (for tests that compare both methods).
    pub fn from_env() -> Counting {
        std::env::var(COUNTING_ENV)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(Counting::Sequence)
    }
}

/// The loaded, attached kernel program. Dropping it detaches every hook and frees every map.
pub struct KernelProgram {
    /// Declared before `ebpf`: links are detached (in `Drop`) before programs are unloaded.
    links: Links,
    /// The storage iterator's link (typed rungs): each incremental read starts a run on it.
    pub(super) store_iter_link: Option<OwnedFd>,
    /// Why it is missing, when the kernel refused it.
    pub(super) store_iter_refused: Option<String>,
    pub(super) ebpf: Ebpf,
    rung: Rung,
    refused: Vec<Refusal>,
    map_entries: u32,
    payload_bytes: u32,
    /// How bytes are counted, and why not by sequence numbers when they are not.
    counting: Counting,
    counting_reason: Option<String>,
    /// The read buffer of the socket iterator, kept between polls.
    pub(super) iter_buffer: Vec<u8>,
    /// The host's network namespaces, where each `iter/tcp` read runs once.
    pub(super) namespaces: crate::netns::NamespaceCache,
    /// Per namespace, where its next incremental read starts (`iter/tcp` fallback).
    pub(super) namespace_ticks: super::reader::NamespaceTicks,
    /// Namespaces the latest read skipped, and those it could not enter (logged on change).
    pub(super) namespaces_unreadable: u64,
    pub(super) namespaces_refused: Vec<u64>,
    /// UDP counting (`cgroup_skb` on the cgroup v2 root), or why the kernel refused it.
    pub(super) udp: Result<super::udp::UdpCounting, String>,
    /// Typed rungs: why the release publish point is missing, when the kernel refused it.
    pub(super) release_refused: Option<String>,
    /// [`sock_reads`] bits the programs were loaded with.
    sock_reads: u32,
}

impl KernelProgram {
    /// Loads the object and attaches the first rung that works (or the forced one), counting
    /// as [`Counting::from_env`] says (sequence numbers unless told otherwise).
    pub fn load(options: &LoadOptions) -> Result<KernelProgram> {
        Self::load_counting(options, Counting::from_env())
    }

    /// [`Self::load`] with the typed rungs counting as `counting` says (the untyped rungs count
    /// per event whatever is asked).
    pub fn load_counting(options: &LoadOptions, counting: Counting) -> Result<KernelProgram> {
        raise_memlock_limit();
        ensure_tracefs();
        let payload_bytes = options.payload_bytes.min(PAYLOAD_MAX as u32);
        // Read by the typed rungs' programs only: the untyped ones count per event anyway.
        let counting_global = match counting {
            Counting::Sequence => counting::SEQUENCE,
            Counting::PerEvent => counting::PER_EVENT,
        };
        let offsets = super::kernel_btf::kernel_offsets();
        let (sk_protocol, sock_offsets) = offsets
            .as_ref()
            .map_or((0, SockOffsets::default()), |o| (o.sk_protocol, o.sock));
        let mut reads = offsets.as_ref().map_or(0, |o| o.sock_reads);
        if options.probe_reads {
            reads &= !sock_reads::TYPED;
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::SOCKETS, options.map_entries.max(1))
            .map_max_entries(flow_common::udp::names::FLOWS, options.udp_flows.max(1))
            .override_global(globals::CAPTURE_BYTES, &payload_bytes, true)
            .override_global(globals::SK_PROTOCOL_OFFSET, &sk_protocol, true)
            .override_global(globals::SOCK_OFFSETS, &sock_offsets, true)
            .override_global(globals::COUNTING, &counting_global, true)
            .override_global(globals::SOCK_READS, &reads, true)
            .load(OBJECT)
            .map_err(load_failed)?;
        let btf = Btf::from_sys_fs().ok();
        let candidates: Vec<Rung> = match options.rung {
            Some(rung) => vec![rung],
            None => Rung::LADDER.to_vec(),
        };
        let mut refused = Vec::new();
        for rung in candidates {
            let (counting, counting_reason) = match (rung.store(), counting) {
                (Store::Local, Counting::Sequence) => (Counting::Sequence, None),
                (Store::Local, Counting::PerEvent) => (
                    Counting::PerEvent,
                    Some(format!("asked for: {COUNTING_ENV} or load_counting")),
                ),
                (Store::Hashed, _) => (
                    Counting::PerEvent,
                    Some(format!(
                        "the {rung} rung keeps no socket-local storage for a walk to read \
                         sequence numbers into"
                    )),
                ),
            };
            // Per-event programs run only to count, or to capture payload prefixes.
            let per_event = counting == Counting::PerEvent || payload_bytes > 0;
            let attached = match (rung.store(), &offsets) {
                // Without the offsets the tp_btf hooks cannot tell TCP from other sockets, and
                // the socket iterator cannot read queues, inodes and segments.
                (Store::Local, Err(err)) => Err(anyhow!("{err:#}")),
                _ => attach_rung(&mut ebpf, rung, btf.as_ref(), per_event),
            };
            match attached {
                Ok(mut attached) => {
                    let udp = super::udp::attach(&mut ebpf, options.udp_flows.max(1))
                        .map(|mut udp| {
                            attached.links.append(&mut udp.links);
                            udp
                        })
                        .map_err(|err| format!("{err:#}"));
                    let mut release_refused = None;
                    if rung.store() == Store::Local {
                        match super::attach::attach_tcp_release(&mut ebpf) {
                            Ok(mut links) => attached.links.append(&mut links),
                            Err(err) => release_refused = Some(format!("{err:#}")),
                        }
                    }
                    let mut program = KernelProgram {
                        sock_reads: reads,
                        udp,
                        release_refused,
                        links: attached.links,
                        store_iter_link: attached.store_iter,
                        store_iter_refused: attached.store_iter_refused,
                        ebpf,
                        rung,
                        refused,
                        map_entries: options.map_entries.max(1),
                        payload_bytes,
                        counting,
                        counting_reason,
                        iter_buffer: Vec::new(),
                        namespaces: crate::netns::NamespaceCache::host(),
                        namespace_ticks: Default::default(),
                        namespaces_unreadable: 0,
                        namespaces_refused: Vec::new(),
                    };
                    if counting == Counting::Sequence {
                        // Connections made before now get their entries (bases as of now); a
                        // namespace that cannot be read is counted from its first byte instead.
                        if let Err(err) = program.adopt_existing() {
                            log::warn!("connections open before start: not adopted: {err:#}");
                        }
                    }
                    return Ok(program);
                }
                Err(err) => refused.push(Refusal {
                    rung,
                    reason: format!("{err:#}"),
                }),
            }
        }
        Err(no_rung(&refused))
    }

    /// The rung that is counting.
    pub fn rung(&self) -> Rung {
        self.rung
    }

    /// Better rungs that were tried and refused, with the kernel's reason.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// Capacity of the LRU hash the untyped rungs count in; 0 on the typed rungs, whose
    /// socket-local storage has no capacity (an entry per socket, however many).
    pub fn map_capacity(&self) -> u32 {
        match self.rung.store() {
            Store::Local => 0,
            Store::Hashed => self.map_entries,
        }
    }

    /// Names of the programs loaded into the kernel (attached or not yet released).
    pub fn loaded_programs(&self) -> Vec<&str> {
        self.ebpf
            .programs()
            .filter(|(_, program)| program.fd().is_ok())
            .map(|(name, _)| name)
            .collect()
    }

    /// Bytes of payload captured per message (0: capture off).
    pub fn payload_bytes(&self) -> u32 {
        self.payload_bytes
    }

    /// Whether the typed programs read socket fields by direct loads (checked against BTF at
    /// load) rather than a helper call each.
    pub fn typed_reads(&self) -> bool {
        self.sock_reads & sock_reads::TYPED != 0
    }

    /// How the bytes are counted.
    pub fn counting(&self) -> Counting {
        self.counting
    }

    /// Why the bytes are counted per event rather than from sequence numbers (`None` when
    /// they are counted from sequence numbers).
    pub fn counting_reason(&self) -> Option<&str> {
        self.counting_reason.as_deref()
    }

    /// One run of the adoption walk (`iter/tcp`) in each network namespace: every connection
    /// without an entry gets one, with its sequence bases as of now.
    fn adopt_existing(&mut self) -> Result<()> {
        for (_, file) in self.start_in_namespaces(programs::ADOPT)? {
            // The program writes nothing: reading to the end is what walks the sockets.
            std::io::copy(&mut { file }, &mut std::io::sink())?;
        }
        // One walk only: the program is not kept loaded.
        if let Some(program) = self.ebpf.program_mut(programs::ADOPT) {
            let iter: &mut aya::programs::Iter = program.try_into()?;
            iter.unload()?;
        }
        Ok(())
    }

    /// One line for users: which rung runs and why the better ones did not, and how bytes are
    /// counted (and why not from sequence numbers, when they are not).
    pub fn describe(&self) -> String {
        let mut line = format!("attached the {} rung", self.rung);
        if self.payload_bytes == 0 {
            line.push_str(" (payload capture off)");
        }
        match &self.counting_reason {
            None => line.push_str(&format!("; counting: {}", self.counting.name())),
            Some(why) => line.push_str(&format!("; counting: {} ({why})", self.counting.name())),
        }
        for refusal in &self.refused {
            line.push_str(&format!("; {} refused: {}", refusal.rung, refusal.reason));
        }
        match &self.udp {
            Ok(udp) => {
                line.push_str(&format!(
                    "; udp flows counted by cgroup_skb on {}",
                    udp.cgroup_root.display()
                ));
                if let Some(why) = udp.senders_unknown {
                    line.push_str(&format!(" (senders unknown: {why})"));
                }
            }
            Err(reason) => line.push_str(&format!("; udp not counted: {reason}")),
        }
        if let Some(reason) = &self.release_refused {
            // Two publish points remain: a close is lost only if both are skipped.
            line.push_str(&format!("; no close event at release: {reason}"));
        }
        line
    }
}

impl Drop for KernelProgram {
    fn drop(&mut self) {
        detach(std::mem::take(&mut self.links));
    }
}
