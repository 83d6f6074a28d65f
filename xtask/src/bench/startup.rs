//! Start-up: from spawning `flow bandwidth --window 100ms` to its "attached" line, to its
//! first sample (the table on stdout, which comes one 100 ms window after the baseline), and
//! to its exit (detaching included).

use super::{results::Startup, Ctx};
use anyhow::{Context, Result};
use std::time::Duration;

pub const WINDOW_MS: f64 = 100.0;

pub fn measure(ctx: &mut Ctx, runs: usize) -> Startup {
    let mut startup = Startup::default();
    for run in 0..runs {
        match once(ctx, run) {
            Ok([attached, sample, exited]) => {
                startup.attached_ms.push(attached.as_secs_f64() * 1e3);
                startup.sample_ms.push(sample.as_secs_f64() * 1e3);
                startup.exit_ms.push(exited.as_secs_f64() * 1e3);
            }
            Err(err) => {
                startup.error = Some(format!("{err:#}"));
                break;
            }
        }
    }
    startup
}

/// Spawn → attached, spawn → first stdout line, spawn → exit.
fn once(ctx: &mut Ctx, run: usize) -> Result<[Duration; 3]> {
    let log = ctx.raw(&format!("startup-{run}.log"));
    let args = ["bandwidth", "--window", "100ms"].map(String::from);
    // stdout stays a pipe (the table is small) so its first line is timed.
    let running = ctx.flow.start(&[], &args, None, Some(&log))?;
    ctx.rung.get_or_insert_with(|| running.rung.clone());
    let attached = running.attached;
    let started = running.proc.started;
    let finished = running.finish(Duration::from_secs(60))?;
    let sample = finished
        .lines
        .iter()
        .find(|l| !l.stderr)
        .context("flow printed no table")?
        .at
        .duration_since(started);
    // `finish` polls in 20 ms steps: the exit time is that precise.
    Ok([attached, sample, finished.ran])
}
