//! The monitor: one observer plus one tracker, and the documented API on top of them.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    ebpf::LoadOptions,
    id::ConnectionId,
    model::{
        ConnectionBandwidth, ConnectionHistory, ConnectionStateSnapshot, HttpConnection,
        NetConnection, SocketStats, Transport,
    },
    observe::{EbpfObserver, Health, Mode, Observation, ObservedSocket, Observer, ProcfsObserver},
    tracker::{HistoryLimits, Tracker},
};

/// The window `connection_bandwidth(Duration::ZERO)` uses on its first call, when there is no
/// previous observation to measure from.
pub const FIRST_CALL_WINDOW: Duration = Duration::from_secs(1);

/// Which mode to run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModeChoice {
    /// eBPF when the kernel program loads, procfs otherwise.
    #[default]
    Auto,
    Ebpf,
    Procfs,
}

impl std::str::FromStr for ModeChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ModeChoice::Auto),
            "ebpf" => Ok(ModeChoice::Ebpf),
            "procfs" => Ok(ModeChoice::Procfs),
            _ => Err(format!(
                "unknown mode `{s}` (expected auto, ebpf or procfs)"
            )),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MonitorOptions {
    pub mode: ModeChoice,
    pub load: LoadOptions,
    /// Forward the kernel program's log lines to the `log` crate.
    pub kernel_log: bool,
    pub history: HistoryLimits,
}

/// Waits between two observations; an error (e.g. an interrupt) ends the measurement.
pub type Sleeper = Box<dyn FnMut(Duration) -> Result<()> + Send>;

/// Owns the OS-facing observer and the tracking state.
pub struct Monitor {
    observer: Box<dyn Observer>,
    tracker: Tracker,
    health: Health,
    sleep: Sleeper,
    /// The latest HTTP exchange per connection id, with its connection as last seen.
    http: HashMap<ConnectionId, HttpConnection>,
    http_seen: HashMap<ConnectionId, Instant>,
    last_observation: Option<Instant>,
    /// Names this host resolved, from the DNS answers the observer saw.
    names: crate::names::NameCache,
    /// When the free heap was last handed back ([`crate::memory::release_free_heap`]).
    last_trim: Instant,
}

/// How often a long-running monitor hands free heap back to the kernel.
const HEAP_TRIM_EVERY: Duration = Duration::from_secs(30);

/// How long HTTP exchanges are kept after they were last seen.
const HTTP_RETENTION: Duration = Duration::from_secs(600);

impl Monitor {
    /// Opens the monitor in the requested mode. In `Auto`, a kernel program that cannot load
    /// means procfs mode, and [`Monitor::describe`] says why.
    pub fn open(options: &MonitorOptions) -> Result<Monitor> {
        let observer: Box<dyn Observer> = match options.mode {
            ModeChoice::Ebpf => Box::new(
                EbpfObserver::start(&options.load, options.kernel_log).map_err(|err| {
                    anyhow::anyhow!("{err:#} (--mode procfs needs no privileges)")
                })?,
            ),
            ModeChoice::Procfs => Box::new(ProcfsObserver::new("requested with --mode procfs")),
            ModeChoice::Auto => match EbpfObserver::start(&options.load, options.kernel_log) {
                Ok(observer) => Box::new(observer),
                Err(err) => Box::new(ProcfsObserver::new(format!(
                    "the kernel program is unavailable ({err:#})"
                ))),
            },
        };
        Ok(Monitor::with_observer(observer, options.history))
    }

    /// A monitor over any observer (recordings in tests).
    pub fn with_observer(observer: Box<dyn Observer>, limits: HistoryLimits) -> Monitor {
        Monitor {
            observer,
            tracker: Tracker::new(limits),
            health: Health::default(),
            sleep: Box::new(|d| {
                std::thread::sleep(d);
                Ok(())
            }),
            http: HashMap::new(),
            http_seen: HashMap::new(),
            last_observation: None,
            names: crate::names::NameCache::new(Default::default()),
            last_trim: Instant::now(),
        }
    }

    /// Replaces how the monitor waits (the CLI makes waits interruptible; tests skip them).
    pub fn set_sleeper(&mut self, sleep: Sleeper) {
        self.sleep = sleep;
    }

    pub fn mode(&self) -> Mode {
        self.observer.mode()
    }

    /// One line: the mode, the rung, and why.
    pub fn describe(&self) -> String {
        self.observer.describe()
    }

    /// The monitor's health as of the last observation.
    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Observes now, without recording: what changed since the previous observation where
    /// the mode can tell (see [`crate::observe::Scope`]), else every live socket.
    pub fn observe(&mut self) -> Result<Observation> {
        let observation = self.observer.observe()?;
        self.took(observation)
    }

    /// Observes every live socket now, idle ones included, without recording.
    pub fn observe_all(&mut self) -> Result<Observation> {
        let observation = self.observer.observe_all()?;
        self.took(observation)
    }

    fn took(&mut self, mut observation: Observation) -> Result<Observation> {
        self.name_remotes(&mut observation);
        self.health = observation.health.clone();
        self.remember_http(&observation);
        Ok(observation)
    }

    /// Learns the DNS answers seen since the last observation, then gives each listed
    /// connection the name its remote address was last resolved from (a lookup per row).
    fn name_remotes(&mut self, observation: &mut Observation) {
        let now = std::time::Instant::now();
        let answers = self.observer.take_dns_answers();
        if !answers.is_empty() {
            self.names.learn(&answers, now);
        }
        self.name_sockets(
            observation
                .sockets
                .iter_mut()
                .chain(&mut observation.closed),
            now,
        );
    }

    /// Gives each socket the name its remote address was last resolved from.
    fn name_sockets<'a>(
        &self,
        sockets: impl IntoIterator<Item = &'a mut ObservedSocket>,
        now: Instant,
    ) {
        if self.names.is_empty() {
            return;
        }
        for socket in sockets {
            let name = self.names.name_of(socket.connection.remote.ip(), now);
            if socket.connection.remote_name != name {
                socket.connection.remote_name = name;
            }
        }
    }

    fn remember_http(&mut self, observation: &Observation) {
        let at = observation.at;
        self.last_observation = Some(at);
        for socket in observation.sockets.iter().chain(&observation.closed) {
            let Some(exchange) = &socket.http else {
                continue;
            };
            self.http.insert(
                socket.connection.id,
                HttpConnection {
                    connection: socket.connection.clone(),
                    method: exchange.method.clone(),
                    host: exchange.host.clone(),
                    status_code: exchange.status_code,
                },
            );
            self.http_seen
                .insert(socket.connection.id, exchange.seen.unwrap_or(at));
        }
        let seen = &self.http_seen;
        self.http.retain(|id, _| {
            seen.get(id)
                .is_some_and(|t| at.duration_since(*t) < HTTP_RETENTION)
        });
        let http = &self.http;
        self.http_seen.retain(|id, _| http.contains_key(id));
    }

    /// Connections on which HTTP was seen within `window` before the last observation (zero:
    /// all kept), with the latest exchange's method, host and status (the seed's
    /// `httpConnections`). Needs the eBPF mode with payload capture.
    pub fn http_connections(&self, window: Duration) -> Result<Vec<HttpConnection>> {
        if !self.observer.captures_payload() {
            anyhow::bail!(
                "HTTP views need the eBPF mode with payload capture ({})",
                self.observer.describe()
            );
        }
        let Some(last) = self.last_observation else {
            return Ok(Vec::new());
        };
        let mut found: Vec<HttpConnection> = self
            .http
            .iter()
            .filter(|(id, _)| {
                window.is_zero()
                    || self
                        .http_seen
                        .get(*id)
                        .is_some_and(|t| last.saturating_duration_since(*t) <= window)
            })
            .map(|(_, c)| c.clone())
            .collect();
        found.sort_by_key(|c| c.connection.id);
        Ok(found)
    }

    /// Watches for `window` (observing every `interval`), then returns the HTTP connections seen.
    pub fn collect_http(
        &mut self,
        window: Duration,
        interval: Duration,
    ) -> Result<Vec<HttpConnection>> {
        self.http_connections(Duration::ZERO)?;
        let start = Instant::now();
        self.observe()?;
        while start.elapsed() < window {
            (self.sleep)(interval.min(window.saturating_sub(start.elapsed())))?;
            self.observe()?;
        }
        self.http_connections(window)
    }

    /// Observes and records one step: the bandwidth since the previous step (empty on the first).
    pub fn step(&mut self) -> Result<Vec<ConnectionBandwidth>> {
        let observation = self.observe()?;
        let rows = self.tracker.record(&observation);
        if self.last_trim.elapsed() >= HEAP_TRIM_EVERY {
            crate::memory::release_free_heap();
            self.last_trim = Instant::now();
        }
        Ok(rows)
    }

    /// Bandwidth of every connection (the seed's `connectionBandwidth`). With a window: observe,
    /// wait `window`, observe. With `Duration::ZERO`: the rate since the previous call (the first
    /// call measures over [`FIRST_CALL_WINDOW`]).
    pub fn connection_bandwidth(&mut self, window: Duration) -> Result<Vec<ConnectionBandwidth>> {
        if !window.is_zero() || !self.tracker.initialized() {
            let wait = if window.is_zero() {
                FIRST_CALL_WINDOW
            } else {
                window
            };
            self.tracker.reset_baseline();
            self.step()?;
            (self.sleep)(wait)?;
        }
        self.step()
    }

    /// The counters of every connection now (the seed's `takeSnapshot`).
    pub fn take_snapshot(&mut self) -> Result<Vec<ConnectionStateSnapshot>> {
        let observation = self.observe()?;
        Ok(Tracker::take_snapshot(&observation))
    }

    /// Samples kept for each connection within `window` (zero: all kept), oldest first (the
    /// seed's `getConnectionHistory`). Samples come from [`Monitor::step`] and
    /// [`Monitor::connection_bandwidth`].
    pub fn connection_history(&self, window: Duration) -> Vec<ConnectionHistory> {
        self.tracker.history(window)
    }

    /// Collects history: one step every `interval` until `window` is covered.
    pub fn collect_history(
        &mut self,
        window: Duration,
        interval: Duration,
    ) -> Result<Vec<ConnectionHistory>> {
        let steps = (window.as_nanos() / interval.as_nanos().max(1)).max(1) as u32;
        self.tracker.reset_baseline();
        self.step()?;
        // A fixed schedule from the first observation: slow observations must not stretch it.
        let start = self.tracker.last_snapshot_time();
        for k in 1..=steps {
            let wait = match (start, self.tracker.last_snapshot_time()) {
                (Some(start), Some(last)) => (start + interval * k).saturating_duration_since(last),
                _ => interval,
            };
            (self.sleep)(wait)?;
            self.step()?;
        }
        Ok(self.connection_history(window))
    }

    /// Forgets all snapshots and history (the seed's `resetConnectionTracking`).
    pub fn reset_connection_tracking(&mut self) {
        self.tracker.reset();
        // The tracker lost every baseline: the next observation must list every socket.
        self.observer.resync();
    }

    /// Socket statistics of every TCP connection and every UDP socket, or of the one socket with
    /// this inode (the seed's `readSocketStatsLinux`; `None` or `Some(0)` mean all). UDP is
    /// listed per socket (`/proc/net/udp{,6}`), not per flow: an unconnected socket is one row,
    /// its counters those of all its flows where the mode counts UDP (eBPF).
    pub fn read_socket_stats(&mut self, inode: Option<u64>) -> Result<Vec<SocketStats>> {
        let observation = self.observe_all()?;
        let mut udp = self.observer.udp_sockets()?;
        self.health.malformed_lines += udp.malformed_lines;
        self.name_sockets(&mut udp.sockets, Instant::now());
        let wanted = inode.filter(|i| *i != 0);
        Ok(observation
            .sockets
            .into_iter()
            // The observation's UDP rows are flows; the sockets come from the UDP tables.
            .filter(|s| s.connection.transport == Transport::Tcp)
            .chain(udp.sockets)
            .filter(|s| wanted.is_none_or(|i| s.connection.inode == i))
            .map(|s| SocketStats {
                rx_queue: s.rx_queue,
                tx_queue: s.tx_queue,
                inode: s.connection.inode,
                rx_bytes: s.counters.rx_bytes,
                tx_bytes: s.counters.tx_bytes,
                rx_packets: s.counters.rx_packets,
                tx_packets: s.counters.tx_packets,
                connection: s.connection,
            })
            .collect())
    }

    /// Every live connection now.
    pub fn connections(&mut self) -> Result<Vec<NetConnection>> {
        let observation = self.observe_all()?;
        Ok(observation
            .sockets
            .into_iter()
            .map(|s| s.connection)
            .collect())
    }
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
