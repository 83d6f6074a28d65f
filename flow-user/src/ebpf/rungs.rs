//! The rung catalogue: each set of hooks, the store it counts in, and its programs in order.

use std::{fmt, str::FromStr};

use flow_common::{maps, programs};

/// One set of hooks that counts bytes per socket. Best (cheapest) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// fexit `tcp_sendmsg` / `tcp_recvmsg` (BTF trampolines), socket-local storage.
    Fentry,
    /// `tp_btf` on the `sock_send_length` / `sock_recv_length` tracepoints (Linux 6.3+),
    /// socket-local storage.
    TpBtf,
    /// kprobe + kretprobe on `tcp_sendmsg` / `tcp_recvmsg`, LRU hash.
    Kprobe,
    /// `sock:sock_send_length` / `sock:sock_recv_length` (Linux 6.3+), LRU hash.
    Tracepoint,
}

/// Where the typed rungs take each socket's byte counts from (the untyped rungs count per
/// event whatever is asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// The socket's own sequence numbers, read by each poll's walk and at close: exact
    /// whatever path moved the bytes, and nothing runs per send or receive to count them.
    Sequence,
    /// Every send and receive adds its byte count (what `tcp_sendmsg`/`tcp_recvmsg` returned).
    PerEvent,
}

impl Counting {
    pub fn name(self) -> &'static str {
        match self {
            Counting::Sequence => "sequence numbers",
            Counting::PerEvent => "per event",
        }
    }
}

impl FromStr for Counting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sequence" => Ok(Counting::Sequence),
            "per_event" | "per-event" => Ok(Counting::PerEvent),
            _ => Err(format!(
                "unknown counting method `{s}` (expected sequence or per_event)"
            )),
        }
    }
}

/// Where a rung keeps each socket's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Socket-local storage, read out through the `iter/tcp` program.
    Local,
    /// The LRU hash keyed by socket address, read with batch lookups.
    Hashed,
}

impl Rung {
    pub const LADDER: [Rung; 4] = [Rung::Fentry, Rung::TpBtf, Rung::Kprobe, Rung::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Rung::Fentry => "fentry",
            Rung::TpBtf => "tp_btf",
            Rung::Kprobe => "kprobe",
            Rung::Tracepoint => "tracepoint",
        }
    }

    pub fn store(self) -> Store {
        match self {
            Rung::Fentry | Rung::TpBtf => Store::Local,
            Rung::Kprobe | Rung::Tracepoint => Store::Hashed,
        }
    }

    /// Programs of this rung, in the order they are attached: the hook that closes entries
    /// first (no entry is made that nothing would close), then the counting hooks (what a
    /// kernel refuses), then the socket iterators.
    pub(super) fn hooks(self) -> &'static [Hook] {
        const LOCAL_CLOSE: Hook = Hook::BtfTracePoint(programs::DESTROY, "tcp_destroy_sock");
        // Also publishes at TCP_CLOSE: a second chance when the destroy program misses a run.
        const LOCAL_STATE: Hook = Hook::BtfTracePoint(programs::STATE, "inet_sock_set_state");
        const HASHED_CLOSE: Hook = Hook::TracePoint("flow_destroy_tp", "tcp", "tcp_destroy_sock");
        const LOCAL_READ: Hook = Hook::Iter(programs::SOCKET_ITER, "tcp");
        const LOCAL_DELTA: Hook = Hook::Iter(programs::TCP_DELTA_ITER, "tcp");
        // Run once at load with sequence counting: entries for connections made before.
        const LOCAL_ADOPT: Hook = Hook::Iter(programs::ADOPT, "tcp");
        const LOCAL_CHANGED: Hook = Hook::MapIter(
            programs::STORE_ITER,
            "bpf_sk_storage_map",
            maps::SOCKET_STORE,
        );
        match self {
            Rung::Fentry => &[
                LOCAL_CLOSE,
                LOCAL_STATE,
                Hook::FExit("flow_tx_fexit", "tcp_sendmsg"),
                Hook::FExit("flow_rx_fexit", "tcp_recvmsg"),
                LOCAL_READ,
                LOCAL_DELTA,
                LOCAL_ADOPT,
                LOCAL_CHANGED,
            ],
            Rung::TpBtf => &[
                LOCAL_CLOSE,
                LOCAL_STATE,
                Hook::BtfTracePoint("flow_tx_btf", "sock_send_length"),
                Hook::BtfTracePoint("flow_rx_btf", "sock_recv_length"),
                LOCAL_READ,
                LOCAL_DELTA,
                LOCAL_ADOPT,
                LOCAL_CHANGED,
            ],
            Rung::Kprobe => &[
                HASHED_CLOSE,
                Hook::KProbe("flow_tx_kprobe", "tcp_sendmsg"),
                Hook::KProbe("flow_tx_kretprobe", "tcp_sendmsg"),
                Hook::KProbe("flow_rx_kprobe", "tcp_recvmsg"),
                Hook::KProbe("flow_rx_kretprobe", "tcp_recvmsg"),
            ],
            Rung::Tracepoint => &[
                HASHED_CLOSE,
                Hook::TracePoint("flow_tx_tp", "sock", "sock_send_length"),
                Hook::TracePoint("flow_rx_tp", "sock", "sock_recv_length"),
            ],
        }
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rung {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Rung::LADDER
            .into_iter()
            .find(|r| r.name() == s || (s == "fexit" && *r == Rung::Fentry))
            .ok_or_else(|| {
                format!("unknown rung `{s}` (expected fentry, tp_btf, kprobe or tracepoint)")
            })
    }
}

/// One program of a rung and where it attaches.
#[derive(Clone, Copy, Debug)]
pub(super) enum Hook {
    FExit(&'static str, &'static str),
    BtfTracePoint(&'static str, &'static str),
    KProbe(&'static str, &'static str),
    TracePoint(&'static str, &'static str, &'static str),
    /// Loaded only: userspace attaches it for each read-out.
    Iter(&'static str, &'static str),
    /// A map-element iterator (program, target, map): loaded and linked to the map once; each
    /// read-out creates an iterator on that link. Optional: a kernel that refuses it (EPERM on
    /// this project's hosts) does not refuse the rung.
    MapIter(&'static str, &'static str, &'static str),
}

impl Hook {
    /// A program that runs on every send or receive (the counting hooks of each rung).
    pub(super) fn per_event(self) -> bool {
        matches!(
            self.program(),
            "flow_tx_fexit" | "flow_rx_fexit" | "flow_tx_btf" | "flow_rx_btf"
        )
    }

    pub(super) fn program(self) -> &'static str {
        match self {
            Hook::FExit(p, _)
            | Hook::BtfTracePoint(p, _)
            | Hook::KProbe(p, _)
            | Hook::TracePoint(p, _, _)
            | Hook::Iter(p, _)
            | Hook::MapIter(p, _, _) => p,
        }
    }
}
