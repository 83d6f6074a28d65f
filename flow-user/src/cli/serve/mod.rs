//! `flow serve`: a Prometheus/OpenMetrics exporter. The main thread measures every interval and
//! adds what moved to the counters; an HTTP thread encodes them at `/metrics` on demand.

mod format;
mod health;
mod http;
mod recording;
mod traffic;
mod web_config;

use std::{sync::Arc, time::Instant};

use anyhow::Result;
use prometheus_client::registry::Registry;

use self::{
    health::HealthMetrics, http::Server, recording::Recording, traffic::Traffic,
    web_config::WebConfig,
};
use super::{
    args::ServeArgs,
    interrupt::{Interrupt, Interrupted},
    session::{open_monitor, short_history},
};
use crate::monitor::{Monitor, MonitorOptions};

pub fn run(args: &ServeArgs, mut options: MonitorOptions, interrupt: &Interrupt) -> Result<()> {
    // Checked and bound first: a bad web config or a taken port fails before the kernel
    // program is loaded.
    let web = match &args.web_config {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::none(),
    };
    let scheme = web.scheme();
    let record = match &args.db {
        Some(path) => Some((path.clone(), args.store.config(args.interval)?)),
        None => None,
    };
    http::raise_descriptor_limit();
    let listener = http::bind(&args.listen)?;
    let address = http::local_addr(&listener);
    // The exporter keeps no history: one sample per connection is the least the tracker holds.
    options.history = short_history(1, args.interval);
    let mut monitor = open_monitor(&options, interrupt)?;
    monitor.step()?;

    let mut registry = Registry::with_prefix("flow");
    let max_connections = args
        .per_connection
        .then(|| usize::try_from(args.max_series).unwrap_or(usize::MAX));
    let max_containers = usize::try_from(args.max_containers).unwrap_or(usize::MAX);
    let mut traffic = Traffic::register(
        &mut registry,
        max_connections,
        max_containers,
        args.expire_after,
    );
    let mut health = HealthMetrics::register(&mut registry, monitor.health());
    let mut recording = record.map(|(path, config)| Recording::start(&mut registry, path, config));
    let server = Server::start(listener, Arc::new(registry), web)?;
    if let Some(address) = address {
        eprintln!("flow: serving {scheme}://{address}/metrics");
    }

    let result = measure(
        &mut monitor,
        args,
        interrupt,
        &mut traffic,
        &mut health,
        &mut recording,
    );
    server.stop();
    match result {
        // SIGINT/SIGTERM is how a service manager stops the exporter: a clean exit.
        Err(err) if err.is::<Interrupted>() => Ok(()),
        other => other,
    }
}

/// Steps the monitor every interval until a signal and adds each step to the metrics. A failed
/// step is logged once (until one succeeds again) and counted; the exporter keeps going.
fn measure(
    monitor: &mut Monitor,
    args: &ServeArgs,
    interrupt: &Interrupt,
    traffic: &mut Traffic,
    health: &mut HealthMetrics,
    recording: &mut Option<Recording>,
) -> Result<()> {
    let mut next = Instant::now() + args.interval;
    let mut failing = false;
    loop {
        interrupt.sleep(next.saturating_duration_since(Instant::now()))?;
        let started = Instant::now();
        match monitor.step() {
            Ok(mut rows) => {
                let took = started.elapsed();
                rows.retain(|bw| args.filters.matches(&bw.connection));
                traffic.record(&rows, Instant::now());
                health.record(&rows, monitor.health(), took);
                if let Some(recording) = recording {
                    recording.record(&rows);
                }
                failing = false;
            }
            Err(err) => {
                health.failed(started.elapsed());
                if !failing {
                    log::warn!("measurement failed: {err:#}");
                }
                failing = true;
            }
        }
        // A late step is not made up for: the next one is a whole interval away.
        next = (next + args.interval).max(Instant::now() + args.interval / 2);
    }
}
