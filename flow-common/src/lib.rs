//! Types shared by the `flow` kernel program and its userspace.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into BPF maps and the ring
//! buffer, userspace reads it back byte for byte. Field order keeps every `u64` 8-byte aligned so
//! the layout is the same on `bpfel` and `x86_64` without hidden padding.
#![no_std]

pub mod udp;

/// Key of the per-socket map: the kernel address of the `struct sock`.
///
/// A freed socket's address can be reused by a new one; the kernel program deletes the entry
/// when the socket is destroyed, and userspace tells generations apart by `first_ns`.
pub type SockKey = u64;

/// Address family values as the kernel spells them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The connection's addresses, as seen from the socket's own (local) end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockTuple {
    /// `AF_INET` or `AF_INET6`; 0 when the kernel could not read it.
    pub family: u16,
    /// Host byte order.
    pub local_port: u16,
    /// Host byte order.
    pub remote_port: u16,
    pub _pad: u16,
    /// IPv4 addresses use the first 4 bytes (network order); IPv6 all 16.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// Per-socket counters kept by the kernel program.
///
/// What the delta walk reads of an idle socket's entry (`state_jiffies`, `walk_marks`,
/// `last_jiffies`) lies in its first 56 bytes: in socket-local storage the entry follows the
/// kernel's 8-byte map pointer at the start of a cache-aligned line, which the storage lookup
/// has just read, so those reads cost no cache miss of their own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockCounters {
    /// Bytes the application queued for sending since the entry was created: on the typed
    /// rungs with sequence counting, from the socket's sequence numbers (see `tx_seq_base`);
    /// otherwise what `tcp_sendmsg` returned, summed.
    pub tx_bytes: u64,
    /// Bytes the application read from the socket since the entry was created (`MSG_PEEK`
    /// reads excluded), counted the same way as `tx_bytes`.
    pub rx_bytes: u64,
    /// `jiffies64` of the socket's last TCP state change while it had an entry (typed rungs;
    /// 0 until one happens). With `last_jiffies`, what the incremental read compares.
    pub state_jiffies: u64,
    /// Sequence counting: `write_seq << 32 | copied_seq` as the `iter/tcp` delta walk last read
    /// them in full (0: not yet). Only those two move the counters (acks and arriving data
    /// move their other inputs in step), so a walk that finds them unchanged skips the socket's
    /// other reads; see `walk_locked` in the kernel crate for when it may.
    pub walk_marks: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the first byte moved (with the socket's address, its
    /// identity: precise enough to tell apart sockets that reuse one address quickly).
    pub first_ns: u64,
    /// The kernel's tick counter (`jiffies64`) at the first and last byte moved. A tick is 1 to
    /// 10 ms; a precise clock read per event would cost a third of the counting program.
    pub first_jiffies: u64,
    pub last_jiffies: u64,
    /// Number of send calls that moved at least one byte.
    pub tx_calls: u64,
    /// Number of receive calls that moved at least one byte.
    pub rx_calls: u64,
    /// `tgid << 32 | tid` of the last task that moved data.
    pub pid_tgid: u64,
    /// Command name of that task's thread (NUL padded).
    pub comm: [u8; 16],
    pub tuple: SockTuple,
    /// Payload capture state (`capture::*` bits), kept by the kernel program.
    pub capture: u32,
    /// [`entry_flags`] bits (typed rungs).
    pub flags: u32,
    /// The kernel's socket cookie, unique per socket for the boot: what tells this socket from
    /// a later one on the same 4-tuple. Set by the typed rungs; 0 on the others.
    pub cookie: u64,
    /// `bpf_get_current_cgroup_id()` of the last task that moved data (the cgroup v2
    /// directory's inode), read only when the owning process changes, as `comm` is; 0 before
    /// the first byte (or without cgroup v2).
    pub cgroup_id: u64,
    /// Inode number of the socket's network namespace (as [`SockSeen::netns`]), read when the
    /// entry is created; 0 if it could not be read (no BTF offsets).
    pub netns: u32,
    /// Sequence counting: `write_seq` when the socket started closing its sending side
    /// (entered `FIN_WAIT1` or `LAST_ACK`, [`entry_flags::FIN_SENT`]): the FIN's own sequence
    /// number. Once `write_seq` has moved past it the FIN is queued and is not an app byte.
    pub fin_seq: u32,
    /// Sequence counting: the socket's bytes written (`bytes_acked + write_seq - snd_una`,
    /// less a queued FIN) when the entry was created; `tx_bytes` is the current value less this.
    pub tx_seq_base: u64,
    /// Sequence counting: the socket's bytes read (`bytes_received - (rcv_nxt - copied_seq)`,
    /// less a consumed FIN) when the entry was created; `rx_bytes` is the current value less
    /// this.
    pub rx_seq_base: u64,
}

/// Bits of [`SockCounters::flags`].
pub mod entry_flags {
    /// The socket entered `TCP_CLOSE` and its counters were published then (a first close
    /// event); the final one follows when the socket is destroyed.
    pub const CLOSE_PUBLISHED: u32 = 1;
    /// Sequence counting: the socket began sending its FIN, whose sequence number is
    /// `fin_seq`.
    pub const FIN_SENT: u32 = 2;
    /// The counters were published when the application released the socket (and the event
    /// fit in the ring): the later publish points send theirs only if the counters moved since.
    pub const RELEASE_PUBLISHED: u32 = 4;
}

/// Values of the [`globals::COUNTING`] global: where the typed rungs take `tx_bytes`/`rx_bytes`
/// from.
pub mod counting {
    /// Every send and receive adds its byte count (the per-event programs).
    pub const PER_EVENT: u32 = 0;
    /// The socket's own sequence numbers, read by the socket walks and at close: nothing runs
    /// per send or receive for counting.
    pub const SEQUENCE: u32 = 1;
}

/// Bits of [`SockCounters::capture`].
pub mod capture {
    /// The first message sent was captured.
    pub const TX_SEEN: u32 = 1;
    /// The first message received was captured.
    pub const RX_SEEN: u32 = 2;
    /// HTTP was seen: every message that starts a request or response is captured.
    pub const HTTP: u32 = 4;
}

/// Largest payload prefix the kernel copies per message (the load-time setting is capped here).
pub const PAYLOAD_MAX: usize = 512;
/// Default prefix length.
pub const PAYLOAD_DEFAULT: u32 = 256;

/// `Direction` values in events.
pub const DIRECTION_TX: u32 = 0;
pub const DIRECTION_RX: u32 = 1;

/// The first bytes of a message, copied from the syscall's user buffer by the counting hook.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadEvent {
    pub sock: SockKey,
    /// The socket entry's `first_ns`: with `sock`, the socket's identity.
    pub first_ns: u64,
    pub direction: u32,
    /// Bytes valid in `data`.
    pub len: u32,
    pub data: [u8; PAYLOAD_MAX],
}

/// Largest TLS ClientHello record copied whole (header included), whatever `--payload-bytes`
/// says: Chrome's, with post-quantum key shares and its extensions in random order, is ~1.8 KB,
/// and its server_name may sit anywhere in it.
pub const HELLO_MAX: usize = 2048;

/// The TLS handshake record that starts a socket's first message in a direction, when it holds a
/// ClientHello: copied up to [`HELLO_MAX`] bytes so the server name is read wherever it sits.
/// Same header as [`PayloadEvent`], shared with it in the payload ring; userspace tells the two
/// apart by the record's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloEvent {
    pub sock: SockKey,
    pub first_ns: u64,
    pub direction: u32,
    /// Bytes valid in `data`.
    pub len: u32,
    pub data: [u8; HELLO_MAX],
}

/// Sent through the ring buffer when a socket closes: its counters, cumulative since the entry
/// was created.
///
/// On the typed rungs a socket normally yields TWO close events: one when it enters
/// `TCP_CLOSE` (`inet_sock_set_state`; the entry stays and gets
/// [`entry_flags::CLOSE_PUBLISHED`]) and the final one when it is destroyed
/// (`tcp_destroy_sock`; the entry is deleted). Bytes can still be read after `TCP_CLOSE` (e.g.
/// after a half-close), so the later event's counters are ≥ the earlier's: keep the larger per
/// socket `cookie`. Two publish points exist because a raw tracepoint program is skipped when it
/// would nest on its own CPU (`recursion_misses`), and the two misses turned out to come
/// together (churn runs lost a server end now and then with both skipped). So a third, of
/// another program type that the kernel never skips, publishes when the application releases
/// the socket (`cgroup/sock_release`): its counters are final then, as no read or write can
/// follow; it comes first, and the other two only confirm it. The untyped rungs send one
/// event, at destroy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockClosed {
    pub sock: SockKey,
    pub counters: SockCounters,
}

/// One TCP socket as the socket iterator sees it (socket-local storage rungs): what
/// `/proc/net/tcp` and sock_diag would say of it. When `has_counters` is 1 its entry (a
/// [`SockCounters`]) follows it in the iterator's output. One read of the iterator replaces both
/// tables and the map drain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockSeen {
    pub sock: SockKey,
    /// The socket's inode (0: no file refers to it, as for TIME_WAIT and request sockets).
    pub inode: u64,
    /// The kernel's socket cookie (unique per socket for the boot).
    pub cookie: u64,
    pub uid: u32,
    /// The kernel's TCP state (`TCP_ESTABLISHED` = 1 … `TCP_NEW_SYN_RECV` = 12).
    pub state: u32,
    /// As `/proc/net/tcp` computes them: unacknowledged and unread bytes (a listener's unread
    /// count is its accept backlog).
    pub tx_queue: u32,
    pub rx_queue: u32,
    /// Segments sent and received (`tcp_sock.segs_out` / `segs_in`).
    pub segs_out: u32,
    pub segs_in: u32,
    /// 1 when the socket's entry follows this record.
    pub has_counters: u32,
    /// Inode number of the socket's network namespace (what `stat -L -c %i
    /// /proc/<pid>/ns/net` prints); 0 if it could not be read.
    pub netns: u32,
    pub tuple: SockTuple,
}

/// Written by the socket-local storage iterator (`iter/bpf_sk_storage_map`) around its rows;
/// told apart from a row because a row starts with a kernel address, never 1 or 2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadMark {
    /// [`read_mark::START`] or [`read_mark::END`].
    pub kind: u64,
    /// START: `jiffies64` when the read started (the next read's `since`); END: the number of
    /// entries the program visited.
    pub value: u64,
}

/// Kinds of [`ReadMark`].
pub mod read_mark {
    pub const START: u64 = 1;
    pub const END: u64 = 2;
}

/// Byte offsets into this kernel's structures, from its BTF, for the socket iterator (Rust
/// eBPF programs have no CO-RE relocations). Set by the loader as a read-only global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    /// `struct sock`
    pub sk_socket: u32,
    pub sk_ack_backlog: u32,
    /// From a `struct socket` to its inode's `i_ino`: through `struct socket_alloc`, which
    /// holds the socket and its `vfs_inode` side by side. May be negative.
    pub socket_to_ino: i32,
    /// `struct tcp_sock`
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    pub write_seq: u32,
    pub snd_una: u32,
    pub segs_in: u32,
    pub segs_out: u32,
    /// `struct sock`: `sk_uid` (a `kuid_t`), for the storage iterator, whose context has none.
    pub sk_uid: u32,
    /// `struct sock` → `__sk_common.skc_net.net` (a `struct net *`).
    pub sk_net: u32,
    /// `struct net` → `ns.inum`.
    pub net_inum: u32,
    /// `struct tcp_sock`: the 64-bit counters sequence counting reads (no 32-bit wrap).
    pub bytes_acked: u32,
    pub bytes_received: u32,
    /// `struct sock` → `sk_flags` (`SOCK_DONE`: the peer's FIN was received).
    pub sk_flags: u32,
    /// `struct sock` → `sk_bpf_storage`: null on a socket without socket-local storage, so
    /// without an entry (the delta walk skips it without a lookup).
    pub sk_bpf_storage: u32,
}

/// Indexes into the kernel program's statistics array (`FLOW_STATS`).
pub mod stat {
    /// Entries the kernel program created in the socket map.
    pub const INSERTS: u32 = 0;
    /// Entries deleted because their socket was destroyed.
    pub const CLOSES: u32 = 1;
    /// Close events that did not fit in the ring buffer (their final counters are lost).
    pub const CLOSE_DROPS: u32 = 2;
    /// Entries that could not be created (map update failed).
    pub const INSERT_FAILURES: u32 = 3;
    /// Kprobe rung: entry probes whose in-flight slot could not be stored.
    pub const INFLIGHT_DROPS: u32 = 4;
    /// Payload prefixes (and whole ClientHellos) lost because the ring buffer was full.
    pub const PAYLOAD_DROPS: u32 = 5;
    /// Typed rungs: close events published when a socket entered `TCP_CLOSE` (the first of its
    /// two; not counted in `CLOSES`, and a drop of one is not counted in `CLOSE_DROPS`).
    pub const STATE_CLOSES: u32 = 6;
    /// Typed rungs: a connection reached `TCP_CLOSE` with no entry (the run that creates it
    /// when the connection is established was skipped, or no storage could be allocated): it
    /// was not counted.
    pub const UNTRACKED: u32 = 7;
    /// Typed rungs: entries the destroy program could not delete (the final counters are
    /// published all the same).
    pub const DELETE_FAILURES: u32 = 8;
    /// Typed rungs: close events published when the application released the socket
    /// (`cgroup/sock_release`, a third publish point, see [`super::SockClosed`]).
    pub const RELEASE_CLOSES: u32 = 9;
    /// Typed rungs: connected TCP sockets released by their application without an entry
    /// (their close then rests on the two tracepoint points).
    pub const RELEASE_UNTRACKED: u32 = 10;
    pub const COUNT: u32 = 11;
}

/// Names of maps in the object file (also what `bpftool map show` prints).
pub mod maps {
    pub const SOCKETS: &str = "FLOW_SOCKS";
    pub const CLOSED: &str = "FLOW_CLOSED";
    pub const STATS: &str = "FLOW_STATS";
    pub const INFLIGHT: &str = "FLOW_INFLIGHT";
    pub const PAYLOADS: &str = "FLOW_PAYLOADS";
    /// Socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`) of the fentry and tp_btf rungs.
    pub const SOCKET_STORE: &str = "FLOW_SK_STORE";
    /// One `u64`: the `jiffies64` tick since which the storage iterator writes entries (the
    /// previous read's start; 0: all).
    pub const READ_SINCE: &str = "FLOW_READ_SINCE";
}

/// Names of programs userspace refers to outside the attach ladder.
pub mod programs {
    /// `iter/tcp`: writes a [`super::SockSeen`] for every TCP socket.
    pub const SOCKET_ITER: &str = "flow_socket_iter";
    /// `iter/bpf_sk_storage_map`: writes a [`super::SockSeen`] and the entry of every socket in
    /// socket-local storage (every network namespace) changed since `READ_SINCE`, between a
    /// START and an END [`super::ReadMark`].
    pub const STORE_ITER: &str = "flow_store_iter";
    /// `iter/tcp`: the incremental read where the kernel refuses `STORE_ITER` (the reader's
    /// network namespace only).
    pub const TCP_DELTA_ITER: &str = "flow_tcp_delta";
    /// tp_btf `inet_sock_set_state`: stamps `state_jiffies`, publishes at `TCP_CLOSE`.
    pub const STATE: &str = "flow_state_btf";
    /// tp_btf `tcp_destroy_sock` (typed rungs): deletes the entry, publishes the final counters.
    pub const DESTROY: &str = "flow_destroy_btf";
    /// `iter/tcp`, run once per network namespace at load with sequence counting: gives each
    /// connection established before `flow` started its entry (bases as of now).
    pub const ADOPT: &str = "flow_tcp_adopt";
    /// `cgroup/sock_release` (typed rungs): publishes a TCP socket's counters when its
    /// application releases it; they are final then (no more reads or writes can come).
    pub const TCP_RELEASE: &str = "flow_tcp_release";
}

/// Read-only globals the loader sets.
pub mod globals {
    /// Bytes of payload to copy per captured message (0: capture off).
    pub const CAPTURE_BYTES: &str = "FLOW_CAPTURE_BYTES";
    /// Byte offset of `sk_protocol` in this kernel's `struct sock` (from its BTF), for the
    /// tp_btf rung, which gets the socket but not its protocol.
    pub const SK_PROTOCOL_OFFSET: &str = "FLOW_SK_PROTOCOL_OFFSET";
    /// [`super::SockOffsets`] for the socket iterator.
    pub const SOCK_OFFSETS: &str = "FLOW_SOCK_OFFSETS";
    /// [`super::counting`]: how the typed rungs count bytes.
    pub const COUNTING: &str = "FLOW_COUNTING";
    /// [`super::sock_reads`] bits: how the typed programs may read socket fields.
    pub const SOCK_READS: &str = "FLOW_SOCK_READS";
}

/// Bits of the [`globals::SOCK_READS`] global, which the loader sets from the kernel's BTF.
pub mod sock_reads {
    /// The kernel has `bpf_skc_to_tcp_sock`: typed programs read TCP socket fields by direct
    /// loads through the `struct tcp_sock *` it returns (checked against BTF at load) instead
    /// of a `bpf_probe_read_kernel` call per field.
    pub const TYPED: u32 = 1;
    /// `iter/tcp` runs its program under each socket's lock (the batching iterator, Linux
    /// 5.15+): a walk reads each socket as one consistent snapshot, so the delta walk may keep
    /// [`super::SockCounters::walk_marks`] and skip sockets whose marks did not move.
    pub const LOCKED_WALK: u32 = 2;
}

/// Default capacity of the socket map; the loader may change it.
pub const DEFAULT_MAP_ENTRIES: u32 = 65_536;
/// Ring buffer for close events: 4 MiB holds about 21,000 events (192 bytes each with the
/// ring's header), two seconds of 5,000 connections/s closing both ends while the reader is
/// starved; kernel memory, not flow's RSS.
pub const CLOSED_RING_BYTES: u32 = 4 << 20;
/// Ring buffer for payload prefixes: 1 MiB holds about 1,900 events between two drains (or 500
/// ClientHellos).
pub const PAYLOAD_RING_BYTES: u32 = 1 << 20;
/// Kprobe rung: concurrent in-flight `tcp_sendmsg`/`tcp_recvmsg` calls tracked per thread.
pub const INFLIGHT_ENTRIES: u32 = 16_384;
/// `MSG_PEEK`: such reads leave the data in the queue and must not count.
pub const MSG_PEEK: i32 = 2;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data without padding holes or pointers; any bit pattern is valid.
    unsafe impl aya::Pod for super::SockCounters {}
    unsafe impl aya::Pod for super::SockClosed {}
    unsafe impl aya::Pod for super::SockTuple {}
    unsafe impl aya::Pod for super::PayloadEvent {}
    unsafe impl aya::Pod for super::HelloEvent {}
    unsafe impl aya::Pod for super::SockSeen {}
    unsafe impl aya::Pod for super::SockOffsets {}
    unsafe impl aya::Pod for super::ReadMark {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<SockTuple>(), 40);
        assert_eq!(
            size_of::<SockCounters>(),
            8 * 8 + 16 + 40 + 8 + 8 + 8 + 8 + 8 + 16 + 8
        );
        assert_eq!(core::mem::offset_of!(SockCounters, fin_seq), 164);
        assert_eq!(core::mem::offset_of!(SockCounters, tx_seq_base), 168);
        assert_eq!(core::mem::offset_of!(SockCounters, flags), 140);
        assert_eq!(core::mem::offset_of!(SockCounters, cgroup_id), 152);
        assert_eq!(core::mem::offset_of!(SockCounters, netns), 160);
        // The idle walk's reads: within the first 56 bytes (see the type's doc).
        assert_eq!(core::mem::offset_of!(SockCounters, state_jiffies), 16);
        assert_eq!(core::mem::offset_of!(SockCounters, walk_marks), 24);
        assert_eq!(core::mem::offset_of!(SockCounters, last_jiffies), 48);
        assert_eq!(size_of::<PayloadEvent>(), 24 + PAYLOAD_MAX);
        assert_eq!(size_of::<HelloEvent>(), 24 + HELLO_MAX);
        // The payload ring's two record kinds are told apart by their length.
        assert!(size_of::<HelloEvent>() > size_of::<PayloadEvent>());
        assert_eq!(size_of::<SockClosed>(), 8 + size_of::<SockCounters>());
        assert_eq!(size_of::<SockSeen>(), 56 + 40);
        assert_eq!(core::mem::offset_of!(SockSeen, netns), 52);
        assert_eq!(size_of::<SockOffsets>(), 64);
        assert_eq!(size_of::<ReadMark>(), 16);
    }
}
