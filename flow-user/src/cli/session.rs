//! What every command shares below the dispatcher: monitor options from the global flags,
//! opening the monitor, history bounds, row order and the loss report.

use std::time::Duration;

use anyhow::Result;

use super::{args::Global, interrupt::Interrupt};
use crate::{
    ebpf::LoadOptions,
    model::ConnectionBandwidth,
    monitor::{Monitor, MonitorOptions},
    tracker::HistoryLimits,
};

pub(super) fn monitor_options(global: &Global) -> MonitorOptions {
    MonitorOptions {
        mode: global.mode,
        load: LoadOptions {
            map_entries: global.map_entries,
            rung: global.rung,
            payload_bytes: if global.no_payload {
                0
            } else {
                global.payload_bytes
            },
            udp_flows: global.udp_flows,
            probe_reads: false,
        },
        kernel_log: global.verbose > 0,
        ..MonitorOptions::default()
    }
}

/// Opens the monitor, says on stderr which mode it took, and makes its waits end on a signal.
pub(super) fn open_monitor(options: &MonitorOptions, interrupt: &Interrupt) -> Result<Monitor> {
    let mut monitor = Monitor::open(options)?;
    eprintln!("flow: {}", monitor.describe());
    let sleeper = interrupt.clone();
    monitor.set_sleeper(Box::new(move |d| sleeper.sleep(d)));
    Ok(monitor)
}

/// History bounds for a command that only needs the last `samples` samples at `interval`: the
/// tracker then holds a few samples per connection instead of ten minutes' worth.
pub(super) fn short_history(samples: usize, interval: Duration) -> HistoryLimits {
    HistoryLimits {
        per_connection: samples.max(1),
        retention: interval.saturating_mul(samples as u32 + 2),
        ..HistoryLimits::default()
    }
}

/// Busiest first; ties in address order so the table does not jitter.
pub(super) fn sort_by_rate(rows: &mut [ConnectionBandwidth]) {
    rows.sort_by(|a, b| {
        b.bytes_per_second
            .cmp(&a.bytes_per_second)
            .then_with(|| a.connection.local.cmp(&b.connection.local))
    });
}

/// Nothing is lost silently: what the kernel or the tracker dropped, in words (empty: nothing).
fn losses(monitor: &Monitor) -> Vec<String> {
    let health = monitor.health();
    let mut losses = Vec::new();
    if health.evictions > 0 && health.map_capacity > 0 {
        losses.push(format!(
            "{} sockets evicted from a full map of {} (raise --map-entries)",
            health.evictions, health.map_capacity
        ));
    }
    if health.close_drops > 0 {
        losses.push(format!("{} close events lost", health.close_drops));
    }
    if health.insert_failures > 0 {
        losses.push(format!("{} sockets not tracked", health.insert_failures));
    }
    if health.malformed_lines > 0 {
        losses.push(format!(
            "{} malformed /proc/net/{{tcp,udp}} lines skipped",
            health.malformed_lines
        ));
    }
    let dropped = monitor.tracker().dropped_samples();
    if dropped > 0 {
        losses.push(format!(
            "{dropped} history samples dropped (bounds reached)"
        ));
    }
    losses
}

/// Says on stderr what was lost, if anything.
pub(super) fn report_losses(monitor: &Monitor) {
    let losses = losses(monitor);
    if !losses.is_empty() {
        eprintln!("flow: warning: {}", losses.join("; "));
    }
    // Reported under its true name, but not a loss by itself: each socket's final counters are
    // published at release (a hook the kernel never skips), at TCP_CLOSE and at destroy.
    let missed = monitor.health().missed_runs;
    if missed > 0 {
        eprintln!(
            "flow: note: {missed} kernel hook runs skipped (nested on a CPU); a close is lost \
             only if it was missed at release, at TCP_CLOSE and at destroy alike"
        );
    }
}
