//! `flow serve --db PATH`: the exporter records too, into the same store `flow record` writes.
//! A store that cannot be opened or written never stops the exporter: it is a log line (once,
//! until it works again), `flow_record_up 0` and a count in `flow_record_write_errors_total`,
//! and opening is retried every minute. Rows of an interval that could not be written are kept
//! and written with the next one that can.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::{
    model::ConnectionBandwidth,
    record::{RecordConfig, Recorder, WriteStats},
};

type Gauge64 = Gauge<u64, std::sync::atomic::AtomicU64>;

/// How long after a failed open the store is tried again.
const REOPEN_AFTER: Duration = Duration::from_secs(60);

pub struct Recording {
    path: PathBuf,
    config: RecordConfig,
    recorder: Option<Recorder>,
    last_open_attempt: Instant,
    /// The last error logged (the same one is not logged again until writes work).
    failing: bool,
    /// What the exporter has already added from the recorder's totals.
    added: WriteStats,
    up: Gauge64,
    rows_written: Counter,
    rows_rolled_up: Counter,
    rows_expired: Counter,
    rows_dropped: Counter,
    bytes_dropped: Counter,
    write_errors: Counter,
    store_bytes: Gauge64,
}

impl Recording {
    /// Registers the `flow_record_*` series and opens the store (a failure is logged and
    /// counted, not returned).
    pub fn start(registry: &mut Registry, path: PathBuf, config: RecordConfig) -> Recording {
        let up = Gauge64::default();
        registry.register(
            "record_up",
            "1 while the flight recorder writes its store (flow serve --db), 0 while it cannot",
            up.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let rows_written = counter(
            registry,
            "record_rows_written",
            "Samples written to the store (one per connection that moved bytes, per interval)",
        );
        let rows_rolled_up = counter(
            registry,
            "record_rows_rolled_up",
            "Fine samples replaced by coarser rollups",
        );
        let rows_expired = counter(
            registry,
            "record_rows_expired",
            "Samples deleted past the last tier's retention",
        );
        let rows_dropped = counter(
            registry,
            "record_rows_dropped",
            "Samples deleted by the size cap, oldest first",
        );
        let bytes_dropped = counter(
            registry,
            "record_dropped_traffic_bytes",
            "Traffic (bytes both ways) the samples deleted by the size cap carried",
        );
        let write_errors = counter(
            registry,
            "record_write_errors",
            "Intervals the store could not be opened or written (their rows are retried)",
        );
        let store_bytes = Gauge64::default();
        registry.register(
            "record_store_bytes",
            "Bytes the store's pages hold",
            store_bytes.clone(),
        );
        let mut recording = Recording {
            path,
            config,
            recorder: None,
            last_open_attempt: Instant::now(),
            failing: false,
            added: WriteStats::default(),
            up,
            rows_written,
            rows_rolled_up,
            rows_expired,
            rows_dropped,
            bytes_dropped,
            write_errors,
            store_bytes,
        };
        recording.open();
        recording
    }

    fn open(&mut self) {
        self.last_open_attempt = Instant::now();
        match Recorder::open(&self.path, self.config.clone()) {
            Ok(mut recorder) => {
                recorder.start_at(crate::record::now_ms());
                eprintln!(
                    "flow: recording into {} (tiers {})",
                    self.path.display(),
                    self.config.tiers
                );
                self.recorder = Some(recorder);
                self.added = WriteStats::default();
                self.up.set(1);
                self.failing = false;
            }
            Err(err) => {
                self.fail(&err);
            }
        }
    }

    fn fail(&mut self, err: &anyhow::Error) {
        self.up.set(0);
        self.write_errors.inc();
        if !self.failing {
            log::error!("flight recorder: {err:#} (the exporter goes on; retrying)");
        }
        self.failing = true;
    }

    /// Writes one interval's rows.
    pub fn record(&mut self, rows: &[ConnectionBandwidth]) {
        if self.recorder.is_none() {
            if self.last_open_attempt.elapsed() < REOPEN_AFTER {
                self.write_errors.inc();
                return;
            }
            self.open();
        }
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        let result = recorder.record(rows);
        let stats = recorder.stats();
        let used = recorder.used_bytes().ok();
        // write_errors is counted by fail() below, not from the recorder's own count.
        let add = |counter: &Counter, now: u64, before: u64| {
            counter.inc_by(now.saturating_sub(before));
        };
        add(
            &self.rows_written,
            stats.rows_written,
            self.added.rows_written,
        );
        add(
            &self.rows_rolled_up,
            stats.rows_rolled_up,
            self.added.rows_rolled_up,
        );
        add(
            &self.rows_expired,
            stats.rows_expired,
            self.added.rows_expired,
        );
        add(
            &self.rows_dropped,
            stats.rows_dropped,
            self.added.rows_dropped,
        );
        add(
            &self.bytes_dropped,
            stats.bytes_dropped,
            self.added.bytes_dropped,
        );
        self.added = stats;
        if let Some(used) = used {
            self.store_bytes.set(used);
        }
        match result {
            Ok(()) => {
                if self.failing {
                    eprintln!("flow: recording into {} again", self.path.display());
                }
                self.failing = false;
                self.up.set(1);
            }
            Err(err) => self.fail(&err),
        }
    }
}
