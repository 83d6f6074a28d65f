//! Tracking state over observations: the seed's `previousSnapshots`, `lastSnapshotTime` and
//! `initialized`, owned by a [`Tracker`] instead of process globals. Pure: no I/O, no clock.

use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::{
    model::{
        BandwidthSample, ConnectionBandwidth, ConnectionHistory, ConnectionStateSnapshot, Counters,
        NetConnection,
    },
    observe::{Observation, ObservedSocket},
};

/// Bounds on the kept history: what does not fit is dropped and counted.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    /// Samples kept per connection (the oldest go first).
    pub per_connection: usize,
    /// Samples kept over all connections.
    pub total: usize,
    /// Samples (and closed connections) older than this are forgotten.
    pub retention: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            per_connection: 600,
            total: 1_000_000,
            retention: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Debug)]
struct Previous {
    counters: Counters,
    active: bool,
    /// When the connection was last in an observation.
    seen: Instant,
}

/// How long the counters of a connection that vanished without a close event are kept.
const VANISHED_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
struct History {
    connection: NetConnection,
    samples: VecDeque<BandwidthSample>,
}

/// Per-connection counters between observations, turned into rates and history.
#[derive(Clone, Debug)]
pub struct Tracker {
    start: Option<Instant>,
    /// The seed's `previousSnapshots`: counters of every connection at the last observation.
    previous_snapshots: HashMap<String, Previous>,
    /// The seed's `lastSnapshotTime`.
    last_snapshot_time: Option<Instant>,
    /// The seed's `initialized`: a baseline observation exists.
    initialized: bool,
    histories: HashMap<String, History>,
    samples_kept: usize,
    dropped_samples: u64,
    limits: HistoryLimits,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(HistoryLimits::default())
    }
}

impl Tracker {
    pub fn new(limits: HistoryLimits) -> Tracker {
        Tracker {
            start: None,
            previous_snapshots: HashMap::default(),
            last_snapshot_time: None,
            initialized: false,
            histories: HashMap::default(),
            samples_kept: 0,
            dropped_samples: 0,
            limits,
        }
    }

    /// True once an observation has been recorded (rates need two).
    pub fn initialized(&self) -> bool {
        self.initialized
    }

    pub fn last_snapshot_time(&self) -> Option<Instant> {
        self.last_snapshot_time
    }

    /// Samples dropped because a history bound was reached.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// The counters of every connection in `observation` (the seed's `takeSnapshot`).
    pub fn take_snapshot(observation: &Observation) -> Vec<ConnectionStateSnapshot> {
        all_sockets(observation)
            .map(|s| ConnectionStateSnapshot {
                connection_id: s.connection.id.clone(),
                timestamp: observation.at,
                active: s.connection.active,
                counters: s.counters,
            })
            .collect()
    }

    /// Records an observation and returns each connection's bandwidth since the previous one
    /// (empty for the first: it only sets the baseline).
    pub fn record(&mut self, observation: &Observation) -> Vec<ConnectionBandwidth> {
        let start = *self.start.get_or_insert(observation.at);
        let Some(since) = self.last_snapshot_time.filter(|_| self.initialized) else {
            self.set_baseline(observation);
            return Vec::new();
        };
        let window = observation.at.saturating_duration_since(since);
        let bandwidth: Vec<ConnectionBandwidth> = all_sockets(observation)
            .map(|socket| {
                let before = self
                    .previous_snapshots
                    .get(&socket.connection.id)
                    .map(|p| p.counters)
                    .unwrap_or_default();
                rates(socket, socket.counters.since(&before), window)
            })
            .collect();
        let at = observation.at.saturating_duration_since(start);
        for bw in &bandwidth {
            self.push_sample(bw, at);
        }
        // A connection that vanished without a close event (procfs mode) is no longer active.
        for history in self.histories.values_mut() {
            if history.samples.back().is_some_and(|s| s.at < at) {
                history.connection.active = false;
            }
        }
        self.expire(at);
        self.set_baseline(observation);
        bandwidth
    }

    /// Samples of each connection within `window` before the last observation, oldest first.
    /// A zero window means everything kept.
    pub fn history(&self, window: Duration) -> Vec<ConnectionHistory> {
        let (Some(start), Some(last)) = (self.start, self.last_snapshot_time) else {
            return Vec::new();
        };
        let now = last.saturating_duration_since(start);
        let from = if window.is_zero() {
            Duration::ZERO
        } else {
            now.saturating_sub(window)
        };
        let mut histories: Vec<ConnectionHistory> = self
            .histories
            .iter()
            .filter_map(|(id, h)| {
                let samples: Vec<BandwidthSample> =
                    h.samples.iter().filter(|s| s.at > from).copied().collect();
                (!samples.is_empty()).then(|| ConnectionHistory {
                    connection_id: id.clone(),
                    tracking_window: if window.is_zero() { now } else { window },
                    samples,
                })
            })
            .collect();
        histories.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        histories
    }

    /// The connection a history belongs to, as last seen.
    pub fn connection(&self, id: &str) -> Option<&NetConnection> {
        self.histories.get(id).map(|h| &h.connection)
    }

    /// Forgets the previous snapshots only, so the next [`Tracker::record`] starts a new
    /// measurement; history stays.
    pub fn reset_baseline(&mut self) {
        self.previous_snapshots.clear();
        self.initialized = false;
    }

    /// Forgets every snapshot and all history (the seed's `resetConnectionTracking`).
    pub fn reset(&mut self) {
        *self = Tracker::new(self.limits);
    }

    fn set_baseline(&mut self, observation: &Observation) {
        let at = observation.at;
        // Updated in place: a new map (and an id string per connection) every poll costs.
        for s in all_sockets(observation) {
            let previous = Previous {
                counters: s.counters,
                active: s.connection.active,
                seen: at,
            };
            match self.previous_snapshots.get_mut(s.connection.id.as_str()) {
                Some(slot) => *slot = previous,
                None => {
                    self.previous_snapshots
                        .insert(s.connection.id.clone(), previous);
                }
            }
        }
        // A connection missing from this observation may still have its close event on the way
        // (the kernel deleted its entry, the event is not read yet): keep its counters a while,
        // or its final counters would later be counted again from zero.
        self.previous_snapshots
            .retain(|_, p| p.active && at.saturating_duration_since(p.seen) < VANISHED_GRACE);
        self.last_snapshot_time = Some(at);
        self.initialized = true;
    }

    fn push_sample(&mut self, bw: &ConnectionBandwidth, at: Duration) {
        let sample = BandwidthSample {
            at,
            tx_bytes_per_second: bw.tx_bytes_per_second,
            rx_bytes_per_second: bw.rx_bytes_per_second,
            packets_per_second: bw.packets_per_second,
        };
        let is_new = !self.histories.contains_key(&bw.connection.id);
        if is_new && self.samples_kept >= self.limits.total {
            self.dropped_samples += 1;
            return;
        }
        let history = self
            .histories
            .entry(bw.connection.id.clone())
            .or_insert_with(|| History {
                connection: bw.connection.clone(),
                samples: VecDeque::new(),
            });
        if history.connection != bw.connection {
            history.connection.clone_from(&bw.connection);
        }
        let full = history.samples.len() >= self.limits.per_connection
            || self.samples_kept >= self.limits.total;
        if full && history.samples.pop_front().is_some() {
            self.samples_kept -= 1;
            self.dropped_samples += 1;
        }
        if history.samples.len() < self.limits.per_connection {
            history.samples.push_back(sample);
            self.samples_kept += 1;
        }
    }

    /// Drops samples older than the retention; a connection with none left is forgotten.
    fn expire(&mut self, now: Duration) {
        let oldest = now.saturating_sub(self.limits.retention);
        let mut removed = 0;
        self.histories.retain(|_, h| {
            while h.samples.front().is_some_and(|s| s.at < oldest) {
                h.samples.pop_front();
                removed += 1;
            }
            !h.samples.is_empty()
        });
        self.samples_kept -= removed;
    }
}

/// Sockets closed since the previous observation, then live ones; each id once (a socket listed
/// twice counts once, as closed when it is among the closed).
fn all_sockets(observation: &Observation) -> impl Iterator<Item = &ObservedSocket> {
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    observation
        .closed
        .iter()
        .chain(observation.sockets.iter())
        .filter(move |s| seen.insert(s.connection.id.as_str()))
}

fn rates(socket: &ObservedSocket, moved: Counters, window: Duration) -> ConnectionBandwidth {
    let per_second = |n: u64| -> u64 {
        (u128::from(n) * 1_000_000_000)
            .checked_div(window.as_nanos())
            .map_or(0, |rate| rate as u64)
    };
    let tx = per_second(moved.tx_bytes);
    let rx = per_second(moved.rx_bytes);
    ConnectionBandwidth {
        connection: socket.connection.clone(),
        tx_bytes: moved.tx_bytes,
        rx_bytes: moved.rx_bytes,
        tx_bytes_per_second: tx,
        rx_bytes_per_second: rx,
        bytes_per_second: per_second(moved.tx_bytes + moved.rx_bytes),
        packets_per_second: per_second(moved.tx_packets + moved.rx_packets),
        sample_window: window,
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
