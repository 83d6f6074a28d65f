//! Tracking state over observations: the seed's `previousSnapshots`, `lastSnapshotTime` and
//! `initialized`, owned by a [`Tracker`] instead of process globals. Pure: no I/O, no clock.
//!
//! One entry per [`ConnectionId`] holds the connection as last seen, its counters at the last
//! observation that listed it, and its compact history. Observations may list every live socket
//! ([`Scope::Complete`]: a socket missing from one has vanished) or only the ones that changed
//! ([`Scope::Changes`]: a missing socket is alive and idle until its close event); either way a
//! poll costs in proportion to what it lists, not to what is tracked.

mod history;

use rustc_hash::{FxHashMap as HashMap, FxHashSet};
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use self::history::History;
use crate::{
    id::ConnectionId,
    model::{
        BandwidthSample, ConnectionBandwidth, ConnectionHistory, ConnectionStateSnapshot, Counters,
        NetConnection,
    },
    observe::{Observation, ObservedSocket, Scope},
};

/// Bounds on the kept history: what does not fit is dropped and counted.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    /// Samples kept per connection (the oldest go first).
    pub per_connection: usize,
    /// Samples (that moved something) kept over all connections.
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

/// How long the counters of a connection that closed or vanished are kept: a second close
/// event (the kernel may publish a socket's final counters twice) or a late one must add only
/// what is new.
const ENDED_GRACE: Duration = Duration::from_secs(10);

/// Everything tracked about one connection. Small for the many that never move: the
/// connection itself is kept only with a history (an idle one of 100,000 costs its counters).
#[derive(Clone, Debug)]
struct Tracked {
    /// Counters at the last observation that listed it (the seed's previous snapshot).
    counters: Counters,
    /// When an observation last listed it.
    seen: Instant,
    active: bool,
    /// The connection as last seen and its history, once it has been part of a measurement.
    kept: Option<Box<Kept>>,
}

#[derive(Clone, Debug)]
struct Kept {
    connection: NetConnection,
    history: History,
}

/// Per-connection counters between observations, turned into rates and history.
#[derive(Clone, Debug)]
pub struct Tracker {
    start: Option<Instant>,
    /// Every tracked connection; `previousSnapshots` are their `counters`.
    tracked: HashMap<ConnectionId, Tracked>,
    /// The seed's `lastSnapshotTime`.
    last_snapshot_time: Option<Instant>,
    /// The seed's `initialized`: a baseline observation exists.
    initialized: bool,
    /// When each measured poll ended (from the start), oldest first: the times of the samples.
    polls: VecDeque<Duration>,
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
            tracked: HashMap::default(),
            last_snapshot_time: None,
            initialized: false,
            polls: VecDeque::new(),
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

    /// Connections tracked now (live, idle, or recently ended with history left).
    pub fn tracked_connections(&self) -> usize {
        self.tracked.len()
    }

    /// The counters of every connection in `observation` (the seed's `takeSnapshot`).
    pub fn take_snapshot(observation: &Observation) -> Vec<ConnectionStateSnapshot> {
        all_sockets(observation)
            .map(|s| ConnectionStateSnapshot {
                connection_id: s.connection.id,
                timestamp: observation.at,
                active: s.connection.active,
                counters: s.counters,
            })
            .collect()
    }

    /// Records an observation and returns the bandwidth since the previous one of each
    /// connection it lists (empty for the first: it only sets the baseline).
    pub fn record(&mut self, observation: &Observation) -> Vec<ConnectionBandwidth> {
        let start = *self.start.get_or_insert(observation.at);
        let at = observation.at.saturating_duration_since(start);
        let measuring = self.last_snapshot_time.filter(|_| self.initialized);
        let mut rows = Vec::new();
        if let Some(since) = measuring {
            let window = observation.at.saturating_duration_since(since);
            self.polls.push_back(at);
            rows.reserve(observation.sockets.len() + observation.closed.len());
            for socket in all_sockets(observation) {
                let before = self
                    .tracked
                    .get(&socket.connection.id)
                    .map(|t| t.counters)
                    .unwrap_or_default();
                rows.push(rates(socket, socket.counters.since(&before), window));
            }
        }
        self.update(observation, at, &rows);
        if observation.scope == Scope::Complete {
            self.end_vanished(observation.at, start);
        }
        self.expire(observation.at, at);
        self.last_snapshot_time = Some(observation.at);
        self.initialized = true;
        rows
    }

    /// Samples of each connection within `window` before the last observation, oldest first
    /// (zeros for the polls it was alive and idle). A zero window means everything kept.
    pub fn history(&self, window: Duration) -> Vec<ConnectionHistory> {
        let mut histories: Vec<ConnectionHistory> = self
            .tracked
            .keys()
            .filter_map(|id| self.history_of(*id, window))
            .collect();
        histories.sort_by_key(|h| h.connection_id);
        histories
    }

    /// [`Tracker::history`] of one connection: for views that show a few of many.
    pub fn history_of(&self, id: ConnectionId, window: Duration) -> Option<ConnectionHistory> {
        let (Some(start), Some(last)) = (self.start, self.last_snapshot_time) else {
            return None;
        };
        let now = last.saturating_duration_since(start);
        let from = if window.is_zero() {
            Duration::ZERO
        } else {
            now.saturating_sub(window)
        };
        let history = &self.tracked.get(&id)?.kept.as_ref()?.history;
        let samples = history.expand(&self.polls, from, self.limits.per_connection);
        (!samples.is_empty()).then(|| ConnectionHistory {
            connection_id: id,
            tracking_window: if window.is_zero() { now } else { window },
            samples,
        })
    }

    /// The connection as last seen.
    pub fn connection(&self, id: ConnectionId) -> Option<&NetConnection> {
        self.tracked
            .get(&id)
            .and_then(|t| t.kept.as_ref())
            .map(|k| &k.connection)
    }

    /// Starts a new measurement: the next [`Tracker::record`] is a baseline again. The counters
    /// stay (a socket an incremental observation does not list has not changed since), and so
    /// does history.
    pub fn reset_baseline(&mut self) {
        self.initialized = false;
    }

    /// Forgets every snapshot and all history (the seed's `resetConnectionTracking`).
    pub fn reset(&mut self) {
        *self = Tracker::new(self.limits);
    }

    /// Counters, connection and history of every socket the observation lists.
    fn update(&mut self, observation: &Observation, at: Duration, rows: &[ConnectionBandwidth]) {
        let now = observation.at;
        for socket in all_sockets(observation) {
            let id = socket.connection.id;
            let tracked = self.tracked.entry(id).or_insert_with(|| Tracked {
                counters: socket.counters,
                seen: now,
                active: socket.connection.active,
                kept: None,
            });
            tracked.counters = socket.counters;
            tracked.seen = now;
            tracked.active = socket.connection.active;
            if let Some(kept) = &mut tracked.kept {
                // Compared before cloning: most polls change nothing in a connection.
                if kept.connection != socket.connection {
                    kept.connection.clone_from(&socket.connection);
                }
                if socket.connection.active {
                    kept.history.ended_at = None;
                } else {
                    kept.history.ended_at.get_or_insert(at);
                }
            }
        }
        for bw in rows {
            self.push_sample(bw, at);
        }
    }

    /// Complete observations list every live socket: one missing has vanished (procfs mode
    /// has no close events).
    fn end_vanished(&mut self, now: Instant, start: Instant) {
        for tracked in self.tracked.values_mut() {
            if tracked.seen < now && tracked.active {
                tracked.active = false;
                if let Some(kept) = &mut tracked.kept {
                    kept.connection.active = false;
                    kept.history.ended_at = Some(tracked.seen.saturating_duration_since(start));
                }
            }
        }
    }

    fn push_sample(&mut self, bw: &ConnectionBandwidth, at: Duration) {
        let Some(tracked) = self.tracked.get_mut(&bw.connection.id) else {
            return;
        };
        let moved = bw.tx_bytes_per_second | bw.rx_bytes_per_second | bw.packets_per_second;
        let history = match &mut tracked.kept {
            Some(kept) => &mut kept.history,
            None if moved != 0 && self.samples_kept >= self.limits.total => {
                // A new connection that finds the total full is dropped and counted, not kept
                // half-way.
                self.dropped_samples += 1;
                return;
            }
            None => {
                let kept = Kept {
                    connection: bw.connection.clone(),
                    history: History::new(at),
                };
                &mut tracked.kept.insert(Box::new(kept)).history
            }
        };
        if !bw.connection.active {
            history.ended_at.get_or_insert(at);
        }
        if moved == 0 {
            return;
        }
        let full = history.stored() >= self.limits.per_connection
            || self.samples_kept >= self.limits.total;
        if full && history.pop_oldest() {
            self.samples_kept -= 1;
            self.dropped_samples += 1;
        }
        if history.stored() < self.limits.per_connection {
            history.push(BandwidthSample {
                at,
                tx_bytes_per_second: bw.tx_bytes_per_second,
                rx_bytes_per_second: bw.rx_bytes_per_second,
                packets_per_second: bw.packets_per_second,
            });
            self.samples_kept += 1;
        }
    }

    /// Forgets samples older than the retention, and connections with nothing left: ended
    /// ones past their grace and their history. Idle live ones stay (their counters are the
    /// baseline of their next change).
    fn expire(&mut self, now: Instant, at: Duration) {
        let oldest = at.saturating_sub(self.limits.retention);
        while self.polls.front().is_some_and(|p| *p < oldest) {
            self.polls.pop_front();
        }
        // Older polls than a connection may show are cut by `expand`'s limit; keep the ring
        // within what any connection can show.
        while self.polls.len() > self.limits.per_connection.max(1) {
            self.polls.pop_front();
        }
        let mut removed = 0;
        self.tracked.retain(|_, t| {
            if let Some(kept) = &mut t.kept {
                removed += kept.history.forget_before(oldest);
                if kept.history.is_over(oldest) {
                    t.kept = None;
                }
            }
            let in_grace = now.saturating_duration_since(t.seen) < ENDED_GRACE;
            t.active || in_grace || t.kept.is_some()
        });
        self.samples_kept -= removed;
        // A burst of connections (a churn) grew the table; once they are gone, give the
        // memory back rather than hold the burst's peak for the life of a long-running command.
        crate::memory::shrink_if_sparse(&mut self.tracked);
    }
}

/// Sockets closed since the previous observation, then live ones; each id once (a socket listed
/// twice counts once, as closed when it is among the closed).
fn all_sockets(observation: &Observation) -> impl Iterator<Item = &ObservedSocket> {
    let mut seen: FxHashSet<ConnectionId> = FxHashSet::default();
    observation
        .closed
        .iter()
        .chain(observation.sockets.iter())
        .filter(move |s| seen.insert(s.connection.id))
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
        tx_packets: moved.tx_packets,
        rx_packets: moved.rx_packets,
        tx_bytes_per_second: tx,
        rx_bytes_per_second: rx,
        bytes_per_second: per_second(moved.tx_bytes + moved.rx_bytes),
        packets_per_second: per_second(moved.tx_packets + moved.rx_packets),
        sample_window: window,
    }
}

#[cfg(test)]
mod tests;
