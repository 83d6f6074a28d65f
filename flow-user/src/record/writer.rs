//! The writer: one transaction per interval, then (once per finest rollup period) rollups,
//! expiry and the size cap.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Result;
use rusqlite::{params, Connection};

use super::{
    config::{RecordConfig, Tiers},
    schema,
};
use crate::model::ConnectionBandwidth;

/// What the writer did since it was opened (the exporter's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Sample rows written (one per connection that moved bytes, per interval).
    pub rows_written: u64,
    /// Connection rows inserted or updated.
    pub connections_written: u64,
    /// Fine samples replaced by coarser ones.
    pub rows_rolled_up: u64,
    /// Samples past the last tier's retention, deleted.
    pub rows_expired: u64,
    /// Samples deleted by the size cap (oldest first), and the bytes they carried.
    pub rows_dropped: u64,
    pub bytes_dropped: u64,
    /// Intervals that could not be written (kept and retried with the next one).
    pub write_errors: u64,
}

/// What one connection moved while writes failed, waiting for the next successful one.
#[derive(Clone)]
struct Pending {
    row: ConnectionBandwidth,
    /// Time of the row's last failed interval.
    at: i64,
}

/// Most connections kept in memory while writes fail; the rest are counted as lost.
const PENDING_LIMIT: usize = 200_000;

/// Records [`ConnectionBandwidth`] rows into a store.
pub struct Recorder {
    conn: Connection,
    path: PathBuf,
    config: RecordConfig,
    /// End of the last recorded interval.
    last_at: Option<i64>,
    /// The rollup period (finest rollup resolution) the last maintenance ran in.
    last_maintenance: Option<i64>,
    pending: HashMap<u64, Pending>,
    stats: WriteStats,
}

impl Recorder {
    /// Opens or creates the store at `path` (its directory must exist).
    pub fn open(path: &Path, config: RecordConfig) -> Result<Recorder> {
        let conn = schema::open_for_writing(path)?;
        let recorder = Recorder {
            conn,
            path: path.to_path_buf(),
            config,
            last_at: None,
            last_maintenance: None,
            pending: HashMap::new(),
            stats: WriteStats::default(),
        };
        recorder.write_meta()?;
        Ok(recorder)
    }

    fn write_meta(&self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?;
        stmt.execute(params!["tiers", self.config.tiers.to_string()])?;
        stmt.execute(params![
            "interval_ms",
            self.config.interval.as_millis().to_string()
        ])?;
        stmt.execute(params!["max_size", self.config.max_size.to_string()])?;
        stmt.execute(params![
            "tier_resolutions_ms",
            self.config
                .tiers
                .0
                .iter()
                .map(|t| t.resolution_ms.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ])?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    pub fn config(&self) -> &RecordConfig {
        &self.config
    }

    /// Marks `now` as the start of the first interval (after the monitor's baseline step).
    pub fn start_at(&mut self, now_ms: i64) {
        self.last_at = Some(now_ms);
    }

    /// Records one interval ending now (wall clock).
    pub fn record(&mut self, rows: &[ConnectionBandwidth]) -> Result<()> {
        self.record_at(super::now_ms(), rows)
    }

    /// Records one interval ending at `now_ms` (from the previous one's end, or one interval
    /// long for the first), then runs the maintenance that is due. On an error the interval's
    /// rows are kept and written with the next interval; the error is returned.
    pub fn record_at(&mut self, now_ms: i64, rows: &[ConnectionBandwidth]) -> Result<()> {
        let interval_ms = self.config.interval.as_millis().max(1) as i64;
        let start = match self.last_at {
            Some(last) if last < now_ms => last,
            _ => now_ms - interval_ms,
        };
        let result = self.write_interval(start, now_ms, rows);
        match result {
            Ok(()) => {
                self.last_at = Some(now_ms);
                self.maintain_if_due(now_ms)
                    .map_err(|e| self.describe(e, "maintaining"))?;
                Ok(())
            }
            Err(err) => {
                self.stats.write_errors += 1;
                self.keep_pending(now_ms, rows);
                Err(self.describe(err, "writing"))
            }
        }
    }

    fn describe(&self, err: anyhow::Error, what: &str) -> anyhow::Error {
        match err.downcast::<rusqlite::Error>() {
            Ok(sqlite) => {
                schema::describe(&self.path, sqlite).context(format!("{what} the recording"))
            }
            Err(other) => other.context(format!("{}: {what} the recording", self.path.display())),
        }
    }

    fn keep_pending(&mut self, now_ms: i64, rows: &[ConnectionBandwidth]) {
        for row in rows {
            let id = row.connection.id.0;
            if let Some(pending) = self.pending.get_mut(&id) {
                let p = &mut pending.row;
                p.tx_bytes += row.tx_bytes;
                p.rx_bytes += row.rx_bytes;
                p.tx_packets += row.tx_packets;
                p.rx_packets += row.rx_packets;
                p.connection = row.connection.clone();
                pending.at = now_ms;
            } else if self.pending.len() < PENDING_LIMIT {
                self.pending.insert(
                    id,
                    Pending {
                        row: row.clone(),
                        at: now_ms,
                    },
                );
            }
        }
    }

    fn write_interval(&mut self, start: i64, end: i64, rows: &[ConnectionBandwidth]) -> Result<()> {
        let span = (end - start).max(1);
        // Rows that failed to be written before are merged into this interval: their bytes are
        // not lost, only their time is shifted to the interval that wrote them.
        let mut merged: Vec<ConnectionBandwidth>;
        let rows: &[ConnectionBandwidth] = if self.pending.is_empty() {
            rows
        } else {
            let mut all: HashMap<u64, ConnectionBandwidth> = self
                .pending
                .values()
                .map(|p| (p.row.connection.id.0, p.row.clone()))
                .collect();
            for row in rows {
                match all.get_mut(&row.connection.id.0) {
                    Some(p) => {
                        p.tx_bytes += row.tx_bytes;
                        p.rx_bytes += row.rx_bytes;
                        p.tx_packets += row.tx_packets;
                        p.rx_packets += row.rx_packets;
                        p.connection = row.connection.clone();
                    }
                    None => {
                        all.insert(row.connection.id.0, row.clone());
                    }
                }
            }
            merged = all.into_values().collect();
            merged.sort_by_key(|r| r.connection.id.0);
            &merged
        };
        let tx = self.conn.transaction()?;
        let mut written = 0u64;
        let mut connections = 0u64;
        {
            let mut upsert = tx.prepare_cached(UPSERT_CONNECTION)?;
            let mut sample = tx.prepare_cached(INSERT_SAMPLE)?;
            for row in rows {
                let c = &row.connection;
                let moved = row.tx_bytes | row.rx_bytes | row.tx_packets | row.rx_packets != 0;
                let attribution = &c.attribution;
                let container = attribution.container.as_ref().map(|k| {
                    k.name
                        .as_deref()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{}:{}", k.runtime, short(&k.id)))
                });
                upsert.execute(params![
                    c.id.0 as i64,
                    c.local.to_string(),
                    c.remote.to_string(),
                    remote_host(&c.remote),
                    c.transport.name(),
                    c.protocol.name(),
                    c.pid,
                    c.process.as_deref(),
                    c.netns.map(|n| n as i64),
                    attribution.cgroup.as_deref(),
                    container,
                    attribution.service.as_deref(),
                    c.remote_name.as_deref(),
                    start,
                    end,
                    (!c.active).then_some(end),
                ])?;
                connections += 1;
                if moved {
                    let bytes = row.tx_bytes.saturating_add(row.rx_bytes);
                    let peak = (bytes as u128 * 1000 / span as u128).min(i64::MAX as u128) as i64;
                    sample.execute(params![
                        start,
                        span,
                        c.id.0 as i64,
                        clamp(row.tx_bytes),
                        clamp(row.rx_bytes),
                        clamp(row.tx_packets),
                        clamp(row.rx_packets),
                        peak,
                    ])?;
                    written += 1;
                }
            }
            if written > 0 {
                tx.prepare_cached(ADD_COUNTER)?
                    .execute(params!["rows_written", written as i64])?;
            }
        }
        tx.commit()?;
        self.pending.clear();
        self.stats.rows_written += written;
        self.stats.connections_written += connections;
        Ok(())
    }

    /// Runs rollups, expiry and the size cap once per finest rollup period (or every interval
    /// with a single tier).
    fn maintain_if_due(&mut self, now_ms: i64) -> Result<()> {
        let period = self
            .config
            .tiers
            .0
            .get(1)
            .map_or(self.config.interval.as_millis().max(1) as i64, |t| {
                t.resolution_ms
            })
            .min(60_000);
        let slot = now_ms.div_euclid(period);
        if self.last_maintenance == Some(slot) {
            return Ok(());
        }
        self.last_maintenance = Some(slot);
        self.maintain(now_ms)
    }

    /// Rolls up what has outlived its tier, expires what has outlived the last, and enforces
    /// the size cap. Each step is its own transaction.
    pub fn maintain(&mut self, now_ms: i64) -> Result<()> {
        let tiers: Tiers = self.config.tiers.clone();
        for i in 1..tiers.0.len() {
            let fine = tiers.0[i - 1];
            let coarse = tiers.0[i];
            let cutoff = (now_ms - fine.retention_ms).div_euclid(coarse.resolution_ms)
                * coarse.resolution_ms;
            let tx = self.conn.transaction()?;
            tx.execute(
                "INSERT INTO samples(tier, start, span, connection, tx_bytes, rx_bytes, tx_packets, rx_packets, peak)
                 SELECT ?1, (start / ?2) * ?2, ?2, connection, SUM(tx_bytes), SUM(rx_bytes),
                        SUM(tx_packets), SUM(rx_packets), MAX(peak)
                 FROM samples WHERE tier = ?3 AND start < ?4
                 GROUP BY (start / ?2), connection
                 ON CONFLICT(tier, start, connection) DO UPDATE SET
                    tx_bytes = tx_bytes + excluded.tx_bytes, rx_bytes = rx_bytes + excluded.rx_bytes,
                    tx_packets = tx_packets + excluded.tx_packets, rx_packets = rx_packets + excluded.rx_packets,
                    peak = max(peak, excluded.peak)",
                params![i as i64, coarse.resolution_ms, (i - 1) as i64, cutoff],
            )?;
            let rolled = tx.execute(
                "DELETE FROM samples WHERE tier = ?1 AND start < ?2",
                params![(i - 1) as i64, cutoff],
            )? as u64;
            if rolled > 0 {
                tx.execute(ADD_COUNTER, params!["rows_rolled_up", rolled as i64])?;
            }
            tx.commit()?;
            self.stats.rows_rolled_up += rolled;
        }
        if let Some(last) = tiers.0.last() {
            let last_index = tiers.0.len() as i64 - 1;
            let cutoff = now_ms - last.retention_ms;
            let tx = self.conn.transaction()?;
            let expired = tx.execute(
                "DELETE FROM samples WHERE tier = ?1 AND start + span <= ?2 AND start < ?2",
                params![last_index, cutoff],
            )? as u64;
            if expired > 0 {
                tx.execute(ADD_COUNTER, params!["rows_expired", expired as i64])?;
            }
            forget_connections(&tx)?;
            tx.commit()?;
            self.stats.rows_expired += expired;
        }
        self.enforce_cap()?;
        Ok(())
    }

    /// Bytes the store's pages hold (free pages left out).
    pub fn used_bytes(&self) -> Result<u64> {
        used_bytes(&self.conn)
    }

    /// Deletes the oldest samples (whatever their tier) until the store fits its cap.
    fn enforce_cap(&mut self) -> Result<()> {
        let cap = self.config.max_size;
        if used_bytes(&self.conn)? <= cap {
            return Ok(());
        }
        let tiers = self.config.tiers.0.len() as i64;
        let mut chunk_rows: i64 = 256;
        loop {
            if used_bytes(&self.conn)? <= cap {
                break;
            }
            // The oldest sample of any tier.
            let mut oldest: Option<(i64, i64)> = None;
            for tier in 0..tiers.max(8) {
                let start: Option<i64> = self.conn.query_row(
                    "SELECT MIN(start) FROM samples WHERE tier = ?1",
                    [tier],
                    |r| r.get(0),
                )?;
                if let Some(start) = start {
                    if oldest.is_none_or(|(_, s)| start < s) {
                        oldest = Some((tier, start));
                    }
                }
            }
            let Some((tier, _)) = oldest else { break };
            // The oldest `chunk_rows` of that tier (in key order: oldest first), counted, then
            // deleted.
            let tx = self.conn.transaction()?;
            let (rows, bytes): (i64, i64) = tx.query_row(
                "SELECT COUNT(*), COALESCE(SUM(tx_bytes + rx_bytes), 0) FROM
                   (SELECT tx_bytes, rx_bytes FROM samples WHERE tier = ?1 ORDER BY start, connection LIMIT ?2)",
                params![tier, chunk_rows],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute(
                "DELETE FROM samples WHERE tier = ?1 AND (start, connection) IN
                   (SELECT start, connection FROM samples WHERE tier = ?1 ORDER BY start, connection LIMIT ?2)",
                params![tier, chunk_rows],
            )?;
            tx.execute(ADD_COUNTER, params!["rows_dropped", rows])?;
            tx.execute(ADD_COUNTER, params!["bytes_dropped", bytes])?;
            forget_connections(&tx)?;
            tx.commit()?;
            self.stats.rows_dropped += rows as u64;
            self.stats.bytes_dropped += bytes as u64;
            self.conn.execute_batch("PRAGMA incremental_vacuum")?;
            chunk_rows = (chunk_rows * 2).min(1 << 20);
        }
        self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        Ok(())
    }
}

/// Connections none of whose samples are left: last seen before the oldest sample.
fn forget_connections(conn: &Connection) -> Result<()> {
    let oldest: Option<i64> = conn.query_row(OLDEST_SAMPLE, [], |r| r.get(0))?;
    match oldest {
        Some(oldest) => conn.execute("DELETE FROM connections WHERE last_seen < ?1", [oldest])?,
        None => 0,
    };
    Ok(())
}

pub(super) fn used_bytes(conn: &Connection) -> Result<u64> {
    let (pages, free, size): (i64, i64, i64) = conn.query_row(
        "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(((pages - free).max(0) * size) as u64)
}

fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The remote end without its port (what `--by remote` groups by when no name is known).
fn remote_host(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

const UPSERT_CONNECTION: &str = "
INSERT INTO connections(id, local, remote, remote_host, transport, protocol, pid, process, netns,
                        cgroup, container, service, remote_name, first_seen, last_seen, closed)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
ON CONFLICT(id) DO UPDATE SET
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen),
    protocol = CASE WHEN excluded.protocol <> 'UNKNOWN' THEN excluded.protocol ELSE protocol END,
    pid = coalesce(excluded.pid, pid),
    process = coalesce(excluded.process, process),
    netns = coalesce(excluded.netns, netns),
    cgroup = coalesce(excluded.cgroup, cgroup),
    container = coalesce(excluded.container, container),
    service = coalesce(excluded.service, service),
    remote_name = coalesce(excluded.remote_name, remote_name),
    closed = coalesce(excluded.closed, closed)
";

const INSERT_SAMPLE: &str = "
INSERT INTO samples(tier, start, span, connection, tx_bytes, rx_bytes, tx_packets, rx_packets, peak)
VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT(tier, start, connection) DO UPDATE SET
    tx_bytes = tx_bytes + excluded.tx_bytes, rx_bytes = rx_bytes + excluded.rx_bytes,
    tx_packets = tx_packets + excluded.tx_packets, rx_packets = rx_packets + excluded.rx_packets,
    peak = max(peak, excluded.peak)
";

/// The oldest sample's start, one index probe per tier (tiers 0 to 7).
pub(super) const OLDEST_SAMPLE: &str = "SELECT MIN(m) FROM (
    SELECT MIN(start) AS m FROM samples WHERE tier = 0 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 1 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 2 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 3 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 4 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 5 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 6 UNION ALL
    SELECT MIN(start) FROM samples WHERE tier = 7)";

const ADD_COUNTER: &str = "UPDATE counters SET value = value + ?2 WHERE name = ?1";
