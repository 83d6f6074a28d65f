//! The flight recorder: per-connection byte and packet deltas in an embedded SQLite store
//! (`flow record`, `flow serve --db`), read back by `flow report`.
//!
//! The store is one SQLite file in WAL mode, written one transaction per interval, so a crash
//! (even `kill -9`) loses at most the interval being written and leaves a file that opens and
//! passes `PRAGMA integrity_check`. It is bounded twice: by [`Tiers`] (full resolution for a
//! recent span, coarser rollups for longer ones, nothing beyond the last) and by a size cap after
//! which the oldest data goes first. What is rolled up, expired or dropped is counted in the store
//! (`counters`) and shown by `flow report` and the exporter.
//!
//! Timestamps are UTC unix milliseconds; the writer's clock is injectable ([`Recorder::record_at`])
//! so that rollups and retention can be tested without waiting.

mod config;
pub mod plot;
pub mod query;
mod schema;
pub mod time;
mod writer;

#[cfg(test)]
mod tests;

pub use config::{
    parse_size, parse_tiers, RecordConfig, Tier, Tiers, DEFAULT_MAX_SIZE, DEFAULT_TIERS,
};
pub use query::{GroupBy, Report, ReportRow, Span, StoreCounters};
pub use schema::{describe as describe_error, open_read_only, SCHEMA_VERSION};
pub use writer::{Recorder, WriteStats};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
