//! `flow record`: the flight recorder. Measures every interval and writes what moved into the
//! store, one transaction per interval; SIGINT/SIGTERM write the last partial interval and exit 0.
//! A store that cannot be opened or written is one line and a non-zero exit.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use anyhow::{Context, Result};

use super::{
    args::{RecordArgs, StoreArgs},
    interrupt::{Interrupt, Interrupted},
    output,
    session::{open_monitor, short_history},
};
use crate::{
    attribution::Attribution,
    model::{ConnectionBandwidth, NetConnection, Protocol, ProtocolSource, TcpState, Transport},
    monitor::MonitorOptions,
    record::{self, parse_tiers, RecordConfig, Recorder},
    ConnectionId,
};

impl StoreArgs {
    /// The writer's configuration for recording every `interval`.
    pub fn config(&self, interval: std::time::Duration) -> Result<RecordConfig> {
        let tiers = parse_tiers(&self.retention, interval)
            .map_err(|e| anyhow::anyhow!("--retention: {e}"))?;
        Ok(RecordConfig {
            interval,
            tiers,
            max_size: self.max_size,
        })
    }
}

pub fn run(args: &RecordArgs, mut options: MonitorOptions, interrupt: &Interrupt) -> Result<()> {
    let config = args.store.config(args.interval)?;
    // The store first: one that cannot be opened fails before the kernel program is loaded.
    let mut recorder = Recorder::open(&args.db, config)?;
    if let Some(duration) = args.synthetic {
        return synthetic(&mut recorder, args, duration);
    }
    options.history = short_history(1, args.interval);
    let mut monitor = open_monitor(&options, interrupt)?;
    monitor.step()?;
    recorder.start_at(record::now_ms());
    eprintln!(
        "flow: recording into {} every {} (tiers {}; size cap {})",
        args.db.display(),
        humantime::format_duration(args.interval),
        recorder.config().tiers,
        output::bytes(recorder.config().max_size),
    );
    let mut next = Instant::now() + args.interval;
    let mut failing = false;
    loop {
        let stopping = match interrupt.sleep(next.saturating_duration_since(Instant::now())) {
            Ok(()) => false,
            Err(err) if err.is::<Interrupted>() => true,
            Err(err) => return Err(err),
        };
        match monitor.step() {
            Ok(mut rows) => {
                rows.retain(|bw| args.filters.matches(&bw.connection));
                recorder.record(&rows)?;
                failing = false;
            }
            Err(err) => {
                if !failing {
                    log::warn!("measurement failed: {err:#}");
                }
                failing = true;
            }
        }
        if stopping {
            return Ok(());
        }
        next = (next + args.interval).max(Instant::now() + args.interval / 2);
    }
}

/// `--synthetic DURATION` (benchmarks): DURATION of traffic ending now, written through the same
/// writer with its clock stepped one interval at a time: `--synthetic-connections` connections of
/// which `--synthetic-active` move bytes each interval (the active set moves on every 5
/// minutes). Prints one JSON line: intervals, rows, CPU seconds, the store's size.
fn synthetic(
    recorder: &mut Recorder,
    args: &RecordArgs,
    duration: std::time::Duration,
) -> Result<()> {
    let interval = args.interval.as_millis().max(1) as i64;
    let total = args.synthetic_connections.max(1);
    let active = args.synthetic_active.min(total);
    let end = record::now_ms();
    let intervals = (duration.as_millis() as i64 / interval).max(1);
    let mut t = end - intervals * interval;
    recorder.start_at(t);
    let processes: Vec<Arc<str>> = (0..50).map(|i| Arc::from(format!("worker{i}"))).collect();
    let connection = |n: u64| -> NetConnection {
        let port = 10_000 + (n % 50_000) as u16;
        NetConnection {
            id: ConnectionId(0x5eed_0000_0000_0000 | n),
            local: SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], port)),
            remote: SocketAddr::from(([192, 0, 2, (n % 200) as u8], 443)),
            transport: Transport::Tcp,
            state: TcpState::Established,
            inode: n,
            uid: Some(0),
            pid: Some(1000 + (n % 50) as u32),
            process: Some(processes[(n % 50) as usize].to_string()),
            cookie: Some(n),
            protocol: Protocol::Https,
            protocol_source: ProtocolSource::Port,
            active: true,
            netns: None,
            attribution: Attribution::none(),
            remote_name: None,
            tls_server_name: None,
            generation: 0,
        }
    };
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    let mut rows_written = 0u64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rows = Vec::with_capacity(active as usize);
    for i in 0..intervals {
        t += interval;
        let shift = (i * interval / 300_000) as u64 * active;
        rows.clear();
        for k in 0..active {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let tx = seed % 200_000;
            let rx = (seed >> 20) % 50_000;
            rows.push(ConnectionBandwidth {
                connection: connection((shift + k) % total),
                tx_bytes: tx,
                rx_bytes: rx,
                tx_packets: tx / 1448 + 1,
                rx_packets: rx / 1448 + 1,
                tx_bytes_per_second: 0,
                rx_bytes_per_second: 0,
                bytes_per_second: 0,
                packets_per_second: 0,
                sample_window: args.interval,
            });
        }
        recorder
            .record_at(t, &rows)
            .with_context(|| format!("synthetic interval {i}"))?;
        rows_written += rows.len() as u64;
    }
    let cpu = cpu_seconds() - cpu_before;
    let file = std::fs::metadata(&args.db).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "intervals": intervals,
            "rows": rows_written,
            "cpu_seconds": cpu,
            "wall_seconds": wall.elapsed().as_secs_f64(),
            "cpu_per_interval_us": cpu * 1e6 / intervals as f64,
            "file_bytes": file,
            "used_bytes": recorder.used_bytes()?,
            "stats": {
                "rows_rolled_up": recorder.stats().rows_rolled_up,
                "rows_expired": recorder.stats().rows_expired,
                "rows_dropped": recorder.stats().rows_dropped,
            },
        })
    );
    Ok(())
}

/// User plus system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
