//! SIGINT/SIGTERM as a flag every command checks, so that it returns normally and the kernel
//! program is detached by `Drop` rather than left behind by a killed process.

use std::{
    io::{ErrorKind, Read},
    os::{fd::IntoRawFd, unix::net::UnixStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// Set by SIGINT/SIGTERM: waits end early and the command exits after detaching.
#[derive(Clone)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    /// Receives a byte per signal, so a wait sleeps in one `read` instead of polling the flag:
    /// an idle exporter wakes once per interval, not twenty times.
    wake: Arc<UnixStream>,
}

impl Interrupt {
    pub fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        let (wake, notify) = UnixStream::pair()?;
        // Lives as long as the process: the handlers write to it.
        let notify = notify.into_raw_fd();
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register_raw(signal, notify)?;
        }
        Ok(Interrupt {
            flag,
            wake: Arc::new(wake),
        })
    }

    pub fn raised(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Sleeps up to `duration`; an error if a signal arrives meanwhile.
    pub fn sleep(&self, duration: Duration) -> Result<()> {
        let end = Instant::now() + duration;
        let mut byte = [0u8; 16];
        loop {
            if self.raised() {
                bail!(Interrupted);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.wake.set_read_timeout(Some(left))?;
            match (&*self.wake).read(&mut byte) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The error a signal turns a wait into; `main` exits quietly on it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;
