//! The monitor's own health as metrics: what it runs on, how much of the kernel map it uses,
//! what it lost, and how long a measurement takes — so an exporter that is quietly losing data
//! shows it on the same dashboard as the data.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

use crate::{model::ConnectionBandwidth, observe::Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Attached {
    mode: &'static str,
    /// The attach rung (empty in procfs mode).
    rung: &'static str,
}

type Gauge64 = Gauge<u64, std::sync::atomic::AtomicU64>;

pub struct HealthMetrics {
    connections: Gauge64,
    closed: Counter,
    map_entries: Gauge64,
    map_capacity: Gauge64,
    evictions: Total,
    missed_runs: Total,
    close_drops: Total,
    payload_drops: Total,
    untracked: Total,
    malformed_lines: Gauge64,
    unreadable_processes: Gauge64,
    poll_errors: Counter,
    poll_duration: Histogram,
}

/// A counter fed from a running total the library keeps. Only increases are added: the library's
/// eviction count is a lower bound recomputed each poll, so the highest seen is still one.
struct Total {
    counter: Counter,
    last: u64,
}

impl Total {
    fn set(&mut self, total: u64) {
        self.counter.inc_by(total.saturating_sub(self.last));
        self.last = self.last.max(total);
    }
}

impl HealthMetrics {
    /// Registers the health series; `health` is the first observation's, for the mode and rung.
    pub fn register(registry: &mut Registry, health: &Health) -> HealthMetrics {
        let attached = Attached {
            mode: health.mode.map_or("", |m| m.name()),
            rung: health.rung.map_or("", |r| r.name()),
        };
        // An `_info` gauge rather than OpenMetrics' info type: Prometheus' text parser (and
        // promtool) reject the latter.
        let monitor = Family::<Attached, Gauge>::default();
        monitor.get_or_create(&attached).set(1);
        registry.register(
            "monitor_info",
            "Where the counters come from: mode (ebpf, procfs) and attach rung",
            monitor,
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge64::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let total = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            Total { counter, last: 0 }
        };
        let closed = Counter::default();
        registry.register(
            "connections_closed",
            "Connections seen closing (close events in ebpf mode)",
            closed.clone(),
        );
        let poll_errors = Counter::default();
        registry.register(
            "poll_errors",
            "Measurements that failed (each is also logged)",
            poll_errors.clone(),
        );
        let poll_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "poll_duration",
            "Time to take one measurement of every socket",
            Unit::Seconds,
            poll_duration.clone(),
        );
        HealthMetrics {
            connections: gauge(registry, "connections", "Live connections at the last step (idle ones included)"),
            closed,
            map_entries: gauge(
                registry,
                "map_entries",
                "Entries in the kernel's socket map",
            ),
            map_capacity: gauge(
                registry,
                "map_capacity",
                "Capacity of the kernel's socket map (0: socket-local storage, unbounded)",
            ),
            evictions: total(
                registry,
                "map_evictions",
                "Sockets evicted from the full kernel map (their counting restarted)",
            ),
            missed_runs: total(
                registry,
                "kernel_missed_runs",
                "Runs of the kernel hooks skipped because they would have nested on a CPU (each may be a lost close)",
            ),
            close_drops: total(
                registry,
                "close_events_dropped",
                "Close events lost (ring buffer full or not read in time)",
            ),
            payload_drops: total(
                registry,
                "payload_events_dropped",
                "Payload prefixes lost (ring buffer full); their protocol falls back to ports",
            ),
            untracked: total(
                registry,
                "sockets_untracked",
                "Sockets the kernel program could not track",
            ),
            malformed_lines: gauge(
                registry,
                "procfs_malformed_lines",
                "Lines of /proc/net/tcp{,6} skipped at the last step",
            ),
            unreadable_processes: gauge(
                registry,
                "unreadable_processes",
                "Processes whose sockets could not be attributed at the last step",
            ),
            poll_errors,
            poll_duration,
        }
    }

    pub fn record(&mut self, rows: &[ConnectionBandwidth], health: &Health, took: Duration) {
        let closed = rows.iter().filter(|bw| !bw.connection.active).count() as u64;
        self.connections.set(health.live_connections);
        self.closed.inc_by(closed);
        self.map_entries.set(health.map_entries);
        self.map_capacity.set(health.map_capacity);
        self.evictions.set(health.evictions);
        self.missed_runs.set(health.missed_runs);
        self.close_drops.set(health.close_drops);
        self.payload_drops.set(health.payload_drops);
        self.untracked.set(health.insert_failures);
        self.malformed_lines.set(health.malformed_lines);
        self.unreadable_processes.set(health.unreadable_processes);
        self.poll_duration.observe(took.as_secs_f64());
    }

    pub fn failed(&self, took: Duration) {
        self.poll_errors.inc();
        self.poll_duration.observe(took.as_secs_f64());
    }
}
