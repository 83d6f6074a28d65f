//! SIGINT/SIGTERM as a flag every command checks, so that it returns normally and the kernel
//! program is detached by `Drop` rather than left behind by a killed process.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

/// Set by SIGINT/SIGTERM: waits end early and the command exits after detaching.
#[derive(Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
        }
        Ok(Interrupt(flag))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sleeps up to `duration`; an error if a signal arrives meanwhile.
    pub fn sleep(&self, duration: Duration) -> Result<()> {
        let end = Instant::now() + duration;
        loop {
            if self.raised() {
                bail!(Interrupted);
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// The error a signal turns a wait into; `main` exits quietly on it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;
