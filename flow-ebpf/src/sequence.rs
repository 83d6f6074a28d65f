//! Sequence counting (typed rungs): a TCP socket's own sequence numbers say exactly how many
//! bytes its application wrote and read, whatever path moved them (write, sendmsg, sendfile,
//! splice, MSG_ZEROCOPY, io_uring, `tcp_read_sock` users); `MSG_PEEK` moves none of them. The
//! socket walks (each poll) and the close paths read them; nothing runs per send or receive.
//!
//! The 64-bit counters keep 32-bit wraps between two reads harmless:
//!
//! - written = `bytes_acked + (write_seq - snd_una)`: `bytes_acked` grows exactly as `snd_una`
//!   does (`tcp_snd_una_update`), so this is `write_seq` on a 64-bit scale;
//! - read = `bytes_received - (rcv_nxt - copied_seq)`: likewise `bytes_received` follows
//!   `rcv_nxt` (`tcp_rcv_nxt_update`), and `copied_seq` is where the reader is.
//!
//! A FIN takes a sequence number. Sent: `tcp_set_state` to `FIN_WAIT1`/`LAST_ACK` comes just
//! before `tcp_send_fin` moves `write_seq` by one, so the state hook records `write_seq` then
//! ([`entry_flags::FIN_SENT`], `fin_seq`): once `write_seq` has moved past `fin_seq`, the FIN is
//! queued and one is subtracted (nothing can be written after it). Received: the peer's FIN moves
//! `rcv_nxt`/`bytes_received` by one and sets `SOCK_DONE` (`tcp_fin`; a reset does not), and a
//! reader that reads EOF moves `copied_seq` by one (`tcp_recvmsg_locked`'s `found_fin_ok`,
//! `tcp_read_sock`): so with `SOCK_DONE` set and nothing left unread (`copied_seq == rcv_nxt`,
//! which a FIN not yet read keeps one apart), the FIN was consumed and one is subtracted.
//!
//! The entry keeps both values as of its creation (`tx_seq_base`, `rx_seq_base`); `tx_bytes`
//! and `rx_bytes` are the current values less those, as with per-event counting: app bytes
//! since the entry was created.
//!
//! So only two of these fields move the counters: `write_seq` (an ack moves `bytes_acked` and
//! `snd_una` together) and `copied_seq` (arriving data moves `bytes_received` and `rcv_nxt`
//! together; the FIN's byte is taken back only once `copied_seq` moves past it). The delta walk
//! reads those two first and skips the rest of a socket whose two did not move
//! ([`refresh_walked`]): most sockets of a poll.

use aya_ebpf::helpers::generated::bpf_jiffies64;
use flow_common::{counting, entry_flags, SockCounters};

use crate::{
    fields::{walk_locked, Fields},
    table::offset,
};

/// [`counting`]: set by the loader (read-only data, so the verifier drops what the mode does
/// not use).
#[unsafe(no_mangle)]
static FLOW_COUNTING: u32 = counting::PER_EVENT;

#[inline(always)]
pub fn by_sequence() -> bool {
    // SAFETY: a plain read of a global the loader patched before load.
    unsafe { core::ptr::read_volatile(&FLOW_COUNTING) == counting::SEQUENCE }
}

/// `SOCK_DONE` in `enum sock_flags` (bit 1 of `sk_flags`): the peer's FIN arrived.
const SOCK_DONE: u64 = 1 << 1;

/// `enum tcp_state` values.
pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_FIN_WAIT1: u32 = 4;
pub const TCP_FIN_WAIT2: u32 = 5;
pub const TCP_CLOSE_WAIT: u32 = 8;
pub const TCP_LAST_ACK: u32 = 9;
pub const TCP_CLOSING: u32 = 11;

/// A connection that has been established and is not closed yet.
#[inline(always)]
pub fn is_connected(state: u32) -> bool {
    matches!(
        state,
        TCP_ESTABLISHED
            | TCP_FIN_WAIT1
            | TCP_FIN_WAIT2
            | TCP_CLOSE_WAIT
            | TCP_LAST_ACK
            | TCP_CLOSING
    )
}

/// A state in which the socket's FIN has been queued (its sending side is closed).
#[inline(always)]
pub fn fin_queued_in(state: u32) -> bool {
    matches!(
        state,
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_LAST_ACK | TCP_CLOSING
    )
}

/// `write_seq` now.
#[inline(always)]
pub fn write_seq(sk: Fields) -> u32 {
    sk.u32(offset!(write_seq))
}

/// The socket's app bytes written and read so far (module doc), FINs excluded.
#[inline(always)]
pub fn now(sk: Fields, entry: &SockCounters) -> (u64, u64) {
    let write_seq = write_seq(sk);
    let snd_una = sk.u32(offset!(snd_una));
    let mut written = sk
        .u64(offset!(bytes_acked))
        .wrapping_add(u64::from(write_seq.wrapping_sub(snd_una)));
    if entry.flags & entry_flags::FIN_SENT != 0 && write_seq != entry.fin_seq {
        written = written.wrapping_sub(1);
    }
    let unread = sk
        .u32(offset!(rcv_nxt))
        .wrapping_sub(sk.u32(offset!(copied_seq)));
    // A reader ahead of `rcv_nxt` (never in practice) counts as nothing unread.
    let unread = if (unread as i32) < 0 {
        0
    } else {
        u64::from(unread)
    };
    let mut read = sk.u64(offset!(bytes_received)).wrapping_sub(unread);
    if unread == 0 && sk.u64(offset!(sk_flags)) & SOCK_DONE != 0 {
        read = read.wrapping_sub(1);
    }
    (written, read)
}

/// A new entry (sequence counting): notes a FIN already queued, and takes the bases.
#[inline(always)]
pub fn start(sk: Fields, entry: &mut SockCounters, state: u32) {
    if !by_sequence() {
        return;
    }
    note_fin(sk, entry, state);
    let (written, read) = now(sk, entry);
    entry.tx_seq_base = written;
    entry.rx_seq_base = read;
}

/// A socket seen in `state` after its FIN was queued, whose entry missed the state change
/// that queued it (created later, or a skipped run of the state program): its FIN is the
/// sequence number before `write_seq`.
#[inline(always)]
pub fn note_fin(sk: Fields, entry: &mut SockCounters, state: u32) {
    if entry.flags & entry_flags::FIN_SENT == 0 && fin_queued_in(state) {
        entry.flags |= entry_flags::FIN_SENT;
        entry.fin_seq = write_seq(sk).wrapping_sub(1);
    }
}

/// Brings the entry's `tx_bytes`/`rx_bytes` up to the socket's sequence numbers (sequence
/// counting; nothing otherwise), stamping `last_jiffies` when they moved. `state` is the
/// socket's TCP state, which every caller has already read. Never lowers the counters: a walk
/// that reads a socket mid-change (the storage walk does not lock it) is put right by the next.
#[inline(always)]
pub fn refresh(sk: Fields, entry: &mut SockCounters, state: u32, stamp: Stamp) -> bool {
    if !by_sequence() {
        return false;
    }
    note_fin(sk, entry, state);
    let (written, read) = now(sk, entry);
    let tx = written.saturating_sub(entry.tx_seq_base);
    let rx = read.saturating_sub(entry.rx_seq_base);
    if tx <= entry.tx_bytes && rx <= entry.rx_bytes {
        return false;
    }
    entry.tx_bytes = entry.tx_bytes.max(tx);
    entry.rx_bytes = entry.rx_bytes.max(rx);
    entry.last_jiffies = match stamp {
        // SAFETY: reads the tick counter.
        Stamp::Now => unsafe { bpf_jiffies64() },
        Stamp::At(tick) => tick,
    };
    true
}

/// The two fields that move the counters (module doc), as `walk_marks` keeps them.
#[inline(always)]
pub fn marks(sk: Fields) -> u64 {
    (u64::from(write_seq(sk)) << 32) | u64::from(sk.u32(offset!(copied_seq)))
}

/// [`refresh`] for the `iter/tcp` delta walk, which visits every socket each poll: when the
/// socket's [`marks`] (read by the caller) are as this walk last read them in full
/// (`walk_marks`), the counters cannot have moved and nothing else is read. Then a full
/// refresh would change nothing either: the counters were brought up to those values, and
/// since then acks and arriving data moved only fields that cancel out, a reset's `SOCK_DONE`
/// only lowers what is read, and a FIN queued meanwhile moved `write_seq`. Only a walk that
/// reads each socket under its lock keeps marks ([`walk_locked`]): a torn read must not be
/// trusted until the socket moves again.
#[inline(always)]
pub fn refresh_walked(
    sk: Fields,
    entry: &mut SockCounters,
    state: u32,
    marks: u64,
    stamp: Stamp,
) -> bool {
    if !by_sequence() {
        return false;
    }
    if !walk_locked() {
        return refresh(sk, entry, state, stamp);
    }
    // 0 means "not read yet": a socket whose two values are both 0 is simply read in full.
    if marks != 0 && marks == entry.walk_marks {
        return false;
    }
    let moved = refresh(sk, entry, state, stamp);
    entry.walk_marks = marks;
    moved
}

/// The `last_jiffies` a refresh that moved the counters gives the entry.
#[derive(Clone, Copy)]
pub enum Stamp {
    /// Now: the close paths and the full table.
    Now,
    /// An incremental walk's `since`: the walk writes the row itself, and the next walk (which
    /// reads from this one's start) does not report it again unless it moves again.
    At(u64),
}
