//! Drains close events (and kernel log lines) from the ring buffers on a background thread, so
//! a burst of closing connections never waits for the next poll to be read.

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
use flow_common::{maps, SockClosed};

use super::KernelProgram;

/// Events held between two reads at most; beyond it they are counted as dropped, not kept.
const BACKLOG_LIMIT: usize = 1 << 20;

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<SockClosed>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// Close events read from the kernel, waiting to be taken by the next observation.
pub struct ClosedEvents {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ClosedEvents {
    /// Starts draining the program's close-event ring buffer, and its log buffer when `logs`.
    pub fn start(program: &mut KernelProgram, logs: bool) -> Result<ClosedEvents> {
        let map = program
            .ebpf
            .take_map(maps::CLOSED)
            .ok_or_else(|| anyhow!("map {} missing", maps::CLOSED))?;
        let ring: RingBuf<MapData> = RingBuf::try_from(map)?;
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
        let thread = std::thread::Builder::new()
            .name("flow-closed".into())
            .spawn(move || drain(ring, logger, &worker))?;
        Ok(ClosedEvents {
            shared,
            thread: Some(thread),
        })
    }

    /// Every event read since the last call.
    pub fn take(&self) -> Vec<SockClosed> {
        std::mem::take(&mut *self.shared.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Events discarded because nobody took them in time.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for ClosedEvents {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn drain(
    mut ring: RingBuf<MapData>,
    mut logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    shared: &Shared,
) {
    let mut fds = vec![poll_fd(ring.as_raw_fd())];
    if let Some(logger) = &logger {
        fds.push(poll_fd(logger.as_raw_fd()));
    }
    while !shared.stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<SockClosed>() {
                // SAFETY: the kernel wrote a `SockClosed` (plain data); read unaligned.
                batch.push(unsafe { (item.as_ptr() as *const SockClosed).read_unaligned() });
            }
        }
        if !batch.is_empty() {
            let mut events = shared.events.lock().unwrap_or_else(|e| e.into_inner());
            let room = BACKLOG_LIMIT.saturating_sub(events.len());
            if batch.len() > room {
                let lost = (batch.len() - room) as u64;
                shared.dropped.fetch_add(lost, Ordering::Relaxed);
                batch.truncate(room);
            }
            events.extend(batch);
        }
        if let Some(logger) = &mut logger {
            logger.flush();
        }
    }
}

fn poll_fd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
