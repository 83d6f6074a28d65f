//! Start-up: from spawning `flow bandwidth --window 100ms` to its "attached" line, to its
//! first sample (the table on stdout, which comes one 100 ms window after the baseline), and
//! to its exit (detaching included); and the start-up peak: `flow serve`'s peak RSS with
//! nothing to watch.

use super::{
    proc::status_kib,
    results::{Idle, Startup},
    verbose, Ctx,
};
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

/// `flow serve -v` with nothing of ours to watch: VmHWM a few seconds after it attached (the
/// start-up peak; scale's memory per connection is counted above it).
pub fn idle(ctx: &mut Ctx) -> Idle {
    let mut idle = Idle {
        after_s: if ctx.plan.quick { 2.0 } else { 5.0 },
        ..Idle::default()
    };
    if let Err(err) = idle_once(ctx, &mut idle) {
        idle.error = Some(format!("{err:#}"));
    }
    idle
}

fn idle_once(ctx: &mut Ctx, idle: &mut Idle) -> Result<()> {
    let port = super::scale::free_port()?;
    let args = [
        "serve".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--interval".into(),
        "1s".into(),
    ];
    let log = ctx.raw("idle-serve.log");
    let running = ctx
        .flow
        .start(&["-v".to_string()], &args, None, Some(&log))?;
    std::thread::sleep(Duration::from_secs_f64(idle.after_s));
    idle.peak_rss_kib = status_kib(running.proc.pid(), "VmHWM");
    let finished = running.interrupt(Duration::from_secs(30))?;
    idle.live = verbose::polls(finished.lines.iter().map(|l| l.text.as_str()))
        .iter()
        .map(|p| p.live)
        .max();
    if idle.peak_rss_kib.is_none() {
        anyhow::bail!("could not read flow serve's VmHWM");
    }
    Ok(())
}
