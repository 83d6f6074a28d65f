//! The traffic series: bytes and segments as counters, summed by process name, container and
//! protocol (a bounded set: no pids, no addresses; at most `--max-containers` container names,
//! the rest summed under `other`), and on request one set per connection, capped. Counters only
//! grow: each step adds what moved since the previous one, closed connections included.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::{
    cli::group::container_label,
    model::{ConnectionBandwidth, ConnectionId},
};

const RX: &str = "rx";
const TX: &str = "tx";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessBytes {
    process: String,
    container: String,
    protocol: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessSegments {
    process: String,
    container: String,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionSegments {
    id: String,
    pid: String,
    process: String,
    protocol: &'static str,
    local: String,
    remote: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionBytes {
    #[prometheus(flatten)]
    connection: ConnectionSegments,
    direction: &'static str,
}

/// A process series: its name (empty when unknown), container (empty on the host) and protocol.
type ProcessKey = (String, String, &'static str);

/// The `container` label of the traffic of containers beyond `--max-containers`.
pub const OTHER: &str = "other";

/// Most containers remembered as folded into [`OTHER`] (what the gauge can count up to).
const MAX_FOLDED: usize = 65_536;

/// Which containers have a label of their own: the first `max` seen, each until it has had no
/// traffic for `expire_after`; the others are summed under [`OTHER`] and counted.
struct Containers {
    labelled: HashMap<String, Instant>,
    folded: HashMap<String, Instant>,
    max: usize,
    over_cap: Gauge,
}

impl Containers {
    /// The `container` label for a container named `name` (`None`: a host process, `""`).
    fn label(&mut self, name: Option<String>, now: Instant) -> String {
        let Some(name) = name else {
            return String::new();
        };
        if let Some(seen) = self.labelled.get_mut(&name) {
            *seen = now;
            return name;
        }
        if self.labelled.len() < self.max {
            self.labelled.insert(name.clone(), now);
            return name;
        }
        if self.folded.len() < MAX_FOLDED || self.folded.contains_key(&name) {
            self.folded.insert(name, now);
        }
        OTHER.into()
    }

    fn expire(&mut self, now: Instant, expire_after: Duration) {
        let fresh = |seen: &mut Instant| now.saturating_duration_since(*seen) < expire_after;
        self.labelled.retain(|_, seen| fresh(seen));
        self.folded.retain(|_, seen| fresh(seen));
    }
}

/// What moved for one key in one step.
#[derive(Default)]
struct Moved {
    rx: u64,
    tx: u64,
    segments: u64,
}

pub struct Traffic {
    process_bytes: Family<ProcessBytes, Counter>,
    process_segments: Family<ProcessSegments, Counter>,
    /// When each process series last had a connection (live or just closed).
    process_seen: HashMap<ProcessKey, Instant>,
    containers: Containers,
    expire_after: Duration,
    per_connection: Option<PerConnection>,
}

/// A connection's series: its labels, the step it last had a row in, whether it closed.
struct Series {
    labels: ConnectionSegments,
    listed: u64,
    closed: bool,
}

/// Steps without a row after which a connection's series go (it vanished without a close
/// event); idle connections of the eBPF mode get no rows either, so this is generous.
const UNLISTED_STEPS: u64 = 3_600;

/// The optional per-connection series, at most `max` connections at a time.
struct PerConnection {
    bytes: Family<ConnectionBytes, Counter>,
    segments: Family<ConnectionSegments, Counter>,
    /// Connections that have series now, by id.
    series: HashMap<ConnectionId, Series>,
    /// Steps recorded so far.
    step: u64,
    max: usize,
    /// Connections of the last step left without a series by the cap.
    refused: Gauge,
}

impl Traffic {
    /// Registers the traffic series; `max_connections` is `Some` with `--per-connection`;
    /// `max_containers` containers at most get a `container` label of their own.
    pub fn register(
        registry: &mut Registry,
        max_connections: Option<usize>,
        max_containers: usize,
        expire_after: Duration,
    ) -> Traffic {
        let process_bytes = Family::default();
        registry.register_with_unit(
            "process",
            "Bytes moved by the connections of each process name, container and protocol",
            Unit::Bytes,
            process_bytes.clone(),
        );
        let process_segments = Family::default();
        registry.register(
            "process_segments",
            "TCP segments in plus out on the connections of each process name, container and protocol",
            process_segments.clone(),
        );
        let containers = Containers {
            labelled: HashMap::new(),
            folded: HashMap::new(),
            max: max_containers.max(1),
            over_cap: Gauge::default(),
        };
        registry.register(
            "containers_over_cap",
            "Containers with traffic within --expire-after beyond --max-containers, summed under container=\"other\"",
            containers.over_cap.clone(),
        );
        let per_connection = max_connections.map(|max| {
            let per = PerConnection {
                bytes: Family::default(),
                segments: Family::default(),
                series: HashMap::new(),
                step: 0,
                max,
                refused: Gauge::default(),
            };
            registry.register_with_unit(
                "connection",
                "Bytes moved by one connection (--per-connection)",
                Unit::Bytes,
                per.bytes.clone(),
            );
            registry.register(
                "connection_segments",
                "TCP segments in plus out on one connection (--per-connection)",
                per.segments.clone(),
            );
            registry.register(
                "connections_without_series",
                "Connections of the last step left without per-connection series by --max-series",
                per.refused.clone(),
            );
            per
        });
        Traffic {
            process_bytes,
            process_segments,
            process_seen: HashMap::new(),
            containers,
            expire_after,
            per_connection,
        }
    }

    /// Adds one step's movement and expires the series of what is gone.
    pub fn record(&mut self, rows: &[ConnectionBandwidth], now: Instant) {
        // Summed per key first: a few counter updates per step, not one per connection.
        // Containers idle for `expire_after` give their label's place up before this step's
        // containers are labelled.
        self.containers.expire(now, self.expire_after);
        // Connections of one container share their attribution: its label is worked out once
        // per attribution, not per connection.
        let mut labels: HashMap<*const crate::attribution::Attribution, String> = HashMap::new();
        let mut moved: HashMap<(Option<&str>, String, &'static str), Moved> = HashMap::new();
        for bw in rows {
            let c = &bw.connection;
            let container = labels
                .entry(std::sync::Arc::as_ptr(&c.attribution))
                .or_insert_with(|| self.containers.label(container_label(&c.attribution), now))
                .clone();
            let sum = moved
                .entry((c.process.as_deref(), container, c.protocol.name()))
                .or_default();
            sum.rx += bw.rx_bytes;
            sum.tx += bw.tx_bytes;
            sum.segments += segments(bw);
        }
        for ((process, container, protocol), sum) in moved {
            let process = process.unwrap_or_default().to_string();
            for (direction, n) in [(RX, sum.rx), (TX, sum.tx)] {
                let labels = ProcessBytes {
                    process: process.clone(),
                    container: container.clone(),
                    protocol,
                    direction,
                };
                self.process_bytes.get_or_create(&labels).inc_by(n);
            }
            let labels = ProcessSegments {
                process: process.clone(),
                container: container.clone(),
                protocol,
            };
            self.process_segments
                .get_or_create(&labels)
                .inc_by(sum.segments);
            self.process_seen
                .insert((process, container, protocol), now);
        }
        self.expire_processes(now);
        self.containers
            .over_cap
            .set(self.containers.folded.len() as i64);
        if let Some(per) = &mut self.per_connection {
            per.record(rows);
        }
    }

    /// Series of a process name with no connection for `expire_after` go: the process exited
    /// (or stopped using the network), and its name must not hold a series forever.
    fn expire_processes(&mut self, now: Instant) {
        let expire_after = self.expire_after;
        let (bytes, segments) = (&self.process_bytes, &self.process_segments);
        self.process_seen
            .retain(|(process, container, protocol), seen| {
                let keep = now.saturating_duration_since(*seen) < expire_after;
                if !keep {
                    for direction in [RX, TX] {
                        bytes.remove(&ProcessBytes {
                            process: process.clone(),
                            container: container.clone(),
                            protocol,
                            direction,
                        });
                    }
                    segments.remove(&ProcessSegments {
                        process: process.clone(),
                        container: container.clone(),
                        protocol,
                    });
                }
                keep
            });
    }
}

impl PerConnection {
    /// A connection keeps its series until it closes (rows list only connections that moved
    /// or changed: an idle one is not listed, yet alive): a closed one is listed once more (with
    /// its last bytes), and its series go at the next step. One that vanishes without a close
    /// event (procfs mode) goes after [`UNLISTED_STEPS`] steps without a row.
    fn record(&mut self, rows: &[ConnectionBandwidth]) {
        self.step += 1;
        let step = self.step;
        let gone: Vec<ConnectionId> = self
            .series
            .iter()
            .filter(|(_, s)| s.closed || step - s.listed > UNLISTED_STEPS)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(series) = self.series.remove(&id) {
                self.remove(series.labels);
            }
        }
        let mut refused = 0;
        for bw in rows {
            let c = &bw.connection;
            if !self.series.contains_key(&c.id) {
                if self.series.len() >= self.max {
                    refused += 1;
                    continue;
                }
                let labels = ConnectionSegments {
                    id: c.id.to_string(),
                    pid: c.pid.map_or(String::new(), |p| p.to_string()),
                    process: c.process.clone().unwrap_or_default(),
                    protocol: c.protocol.name(),
                    local: c.local.to_string(),
                    remote: c.remote.to_string(),
                };
                let series = Series {
                    labels,
                    listed: step,
                    closed: false,
                };
                self.series.insert(c.id, series);
            }
            let Some(series) = self.series.get_mut(&c.id) else {
                continue;
            };
            series.listed = step;
            series.closed = !c.active;
            let labels = &series.labels;
            for (direction, n) in [(RX, bw.rx_bytes), (TX, bw.tx_bytes)] {
                let key = ConnectionBytes {
                    connection: labels.clone(),
                    direction,
                };
                self.bytes.get_or_create(&key).inc_by(n);
            }
            self.segments.get_or_create(labels).inc_by(segments(bw));
        }
        self.refused.set(refused);
    }

    fn remove(&self, labels: ConnectionSegments) {
        for direction in [RX, TX] {
            self.bytes.remove(&ConnectionBytes {
                connection: labels.clone(),
                direction,
            });
        }
        self.segments.remove(&labels);
    }
}

/// Segments moved in the step.
fn segments(bw: &ConnectionBandwidth) -> u64 {
    // The window's own totals (the kernel's segment counts), not a rate times a window.
    bw.tx_packets + bw.rx_packets
}

#[cfg(test)]
#[path = "traffic_tests.rs"]
mod tests;
