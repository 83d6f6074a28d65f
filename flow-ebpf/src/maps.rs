//! The maps shared by every hook. Sizes here are defaults; the loader overrides the socket map's.

use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, RingBuf},
};
use flow_common::{
    stat, SockCounters, SockKey, CLOSED_RING_BYTES, DEFAULT_MAP_ENTRIES, INFLIGHT_ENTRIES,
};

/// Counters per live socket. LRU so a host with more sockets than entries degrades by evicting
/// the coldest socket instead of failing to count new ones; userspace derives the eviction count.
#[map(name = "FLOW_SOCKS")]
pub static SOCKETS: LruHashMap<SockKey, SockCounters> =
    LruHashMap::with_max_entries(DEFAULT_MAP_ENTRIES, 0);

/// Counters per live socket, kept on the socket itself (fentry and tp_btf rungs). A BTF map:
/// the kernel needs the key and value types of socket storage.
#[btf_map(name = "FLOW_SK_STORE")]
pub static SOCKET_STORE: SkStorage<SockCounters> = SkStorage::new();

/// The tick since which the storage iterator writes entries: the previous read's START tick,
/// written by userspace before each read (0: every entry).
#[map(name = "FLOW_READ_SINCE")]
pub static READ_SINCE: Array<u64> = Array::with_max_entries(1, 0);

/// Final counters of destroyed sockets, so a connection that lives between two polls still counts.
#[map(name = "FLOW_CLOSED")]
pub static CLOSED: RingBuf = RingBuf::with_byte_size(CLOSED_RING_BYTES, 0);

/// Event counters (`flow_common::stat`), updated with atomic adds.
#[map(name = "FLOW_STATS")]
pub static STATS: Array<u64> = Array::with_max_entries(stat::COUNT, 0);

/// Kprobe rung only: the socket a thread passed to `tcp_sendmsg`/`tcp_recvmsg`, keyed by
/// `pid_tgid`, until the matching return probe reads the byte count.
#[map(name = "FLOW_INFLIGHT")]
pub static INFLIGHT: HashMap<u64, SockKey> = HashMap::with_max_entries(INFLIGHT_ENTRIES, 0);
