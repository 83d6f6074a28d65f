//! Drains the kernel's ring buffers on a background thread — close events, payload prefixes and
//! log lines — so a burst never waits for the next poll. Payload prefixes are classified right
//! here and their bytes dropped: only the facts (protocol, HTTP method/host/status, a
//! ClientHello's server name) are kept.

use std::{
    mem::size_of,
    os::fd::{AsRawFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use anyhow::{anyhow, Result};
use aya::maps::{MapData, RingBuf};
use flow_common::{maps, HelloEvent, PayloadEvent, SockClosed, SockKey};

use super::KernelProgram;
use crate::protocol::payload::{classify, PayloadFacts};

/// Events held between two reads at most; beyond it they are counted as dropped, not kept.
const BACKLOG_LIMIT: usize = 1 << 20;

/// What a payload prefix said about one socket (identified by its address and `first_ns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadSeen {
    pub sock: SockKey,
    pub first_ns: u64,
    pub direction: u32,
    pub facts: PayloadFacts,
}

#[derive(Default)]
struct Shared {
    closed: Mutex<Vec<SockClosed>>,
    payloads: Mutex<Vec<PayloadSeen>>,
    dropped: AtomicU64,
    /// Close events read from the ring so far (to compare with the kernel's count, `-v`).
    closed_read: AtomicU64,
    stop: AtomicBool,
}

/// Events read from the kernel, waiting to be taken by the next observation.
pub struct KernelEvents {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Rings {
    closed: RingBuf<MapData>,
    payloads: Option<RingBuf<MapData>>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl KernelEvents {
    /// Starts draining the program's ring buffers: close events, payload prefixes when capture
    /// is on, and log lines when `logs`.
    pub fn start(program: &mut KernelProgram, logs: bool) -> Result<KernelEvents> {
        let closed = take_ring(program, maps::CLOSED)?;
        let payloads = if program.payload_bytes() > 0 {
            Some(take_ring(program, maps::PAYLOADS)?)
        } else {
            None
        };
        let logger = if logs {
            match aya_log::EbpfLogger::init(&mut program.ebpf) {
                Ok(logger) => Some(logger),
                Err(err) => {
                    log::debug!("kernel log unavailable: {err}");
                    None
                }
            }
        } else {
            None
        };
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let rings = Rings {
            closed,
            payloads,
            logger,
        };
        let thread = std::thread::Builder::new()
            .name("flow-events".into())
            .spawn(move || drain(rings, &worker))?;
        Ok(KernelEvents {
            shared,
            thread: Some(thread),
        })
    }

    /// Every close event read since the last call.
    pub fn take_closed(&self) -> Vec<SockClosed> {
        std::mem::take(&mut *lock(&self.shared.closed))
    }

    /// Every classified payload prefix read since the last call.
    pub fn take_payloads(&self) -> Vec<PayloadSeen> {
        std::mem::take(&mut *lock(&self.shared.payloads))
    }

    /// Close events read from the kernel's ring so far.
    pub fn closed_read(&self) -> u64 {
        self.shared.closed_read.load(Ordering::Relaxed)
    }

    /// Events discarded because nobody took them in time.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for KernelEvents {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn take_ring(program: &mut KernelProgram, name: &str) -> Result<RingBuf<MapData>> {
    let map = program
        .ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing"))?;
    Ok(RingBuf::try_from(map)?)
}

fn drain(mut rings: Rings, shared: &Shared) {
    let mut fds = vec![poll_fd(rings.closed.as_raw_fd())];
    if let Some(payloads) = &rings.payloads {
        fds.push(poll_fd(payloads.as_raw_fd()));
    }
    if let Some(logger) = &rings.logger {
        fds.push(poll_fd(logger.as_raw_fd()));
    }
    while !shared.stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        let closed = read_all::<SockClosed, _>(&mut rings.closed, Some);
        shared
            .closed_read
            .fetch_add(closed.len() as u64, Ordering::Relaxed);
        append(&shared.closed, closed, &shared.dropped);
        if let Some(payloads) = &mut rings.payloads {
            let seen = read_records(payloads, payload_seen);
            append(&shared.payloads, seen, &shared.dropped);
        }
        if let Some(logger) = &mut rings.logger {
            logger.flush();
        }
    }
}

/// Classifies one record of the payload ring: a [`HelloEvent`] (a whole ClientHello record) or a
/// [`PayloadEvent`] (a prefix), told apart by its length.
fn payload_seen(item: &[u8]) -> Option<PayloadSeen> {
    let seen = |sock, first_ns, direction, data: &[u8]| PayloadSeen {
        sock,
        first_ns,
        direction,
        facts: classify(data),
    };
    match record::<HelloEvent>(item) {
        Some(e) => Some(seen(e.sock, e.first_ns, e.direction, valid(&e.data, e.len))),
        None => record::<PayloadEvent>(item)
            .map(|e| seen(e.sock, e.first_ns, e.direction, valid(&e.data, e.len))),
    }
}

/// The bytes the kernel said are valid in a record's data.
pub(super) fn valid(data: &[u8], len: u32) -> &[u8] {
    &data[..(len as usize).min(data.len())]
}

/// The record of type `T` a ring item holds, if it is long enough for one.
pub(super) fn record<T: Copy>(item: &[u8]) -> Option<T> {
    // SAFETY: the kernel wrote a `T` (plain `repr(C)` data); read unaligned.
    (item.len() >= size_of::<T>()).then(|| unsafe { (item.as_ptr() as *const T).read_unaligned() })
}

/// Reads every record of type `T` in the ring, mapped through `f`.
fn read_all<T: Copy, U>(ring: &mut RingBuf<MapData>, f: impl Fn(T) -> Option<U>) -> Vec<U> {
    read_records(ring, |item| record::<T>(item).and_then(&f))
}

/// Reads every item in the ring, mapped through `f`.
fn read_records<U>(ring: &mut RingBuf<MapData>, f: impl Fn(&[u8]) -> Option<U>) -> Vec<U> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.extend(f(&item));
    }
    out
}

fn append<T>(queue: &Mutex<Vec<T>>, mut batch: Vec<T>, dropped: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    let mut queue = lock(queue);
    let room = BACKLOG_LIMIT.saturating_sub(queue.len());
    if batch.len() > room {
        dropped.fetch_add((batch.len() - room) as u64, Ordering::Relaxed);
        batch.truncate(room);
    }
    queue.extend(batch);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn poll_fd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
