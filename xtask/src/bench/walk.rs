//! What the incremental read's kernel program costs per socket in a scale run: its own run
//! time (`kernel.bpf_stats_enabled`) over a few seconds right after the measured ones, kept out
//! of them because the stats add two clock reads to every run. Against the read time per poll
//! it splits a poll into the program and the iterator around it (bucket locks, socket locks and
//! references, the seq_file).

use super::{
    bpf::{self, StatsGuard},
    results::WalkCost,
};
use anyhow::Result;
use std::{
    thread,
    time::{Duration, Instant},
};

/// The programs an incremental read runs, once per socket (`iter/tcp`) or entry (storage).
const WALK_PROGRAMS: [&str; 2] = ["flow_tcp_delta", "flow_store_iter"];

/// Seconds of the stats window.
pub fn seconds(quick: bool) -> u64 {
    if quick {
        2
    } else {
        3
    }
}

/// The walk program of `pid` that ran most over `seconds` with stats on; `None` when none ran.
pub fn measure(pid: u32, seconds: u64) -> Result<Option<WalkCost>> {
    let _stats = StatsGuard::enable()?;
    let started = Instant::now();
    let before = bpf::programs_of(pid)?;
    thread::sleep(Duration::from_secs(seconds));
    let after = bpf::programs_of(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(after
        .iter()
        .filter(|p| WALK_PROGRAMS.contains(&p.name.as_str()))
        .map(|p| {
            let old = before.iter().find(|b| b.id == p.id);
            WalkCost {
                program: p.name.clone(),
                seconds: elapsed,
                runs: p.run_cnt - old.map_or(0, |b| b.run_cnt),
                run_time_ns: p.run_time_ns - old.map_or(0, |b| b.run_time_ns),
            }
        })
        .filter(|w| w.runs > 0)
        .max_by_key(|w| w.runs))
}
