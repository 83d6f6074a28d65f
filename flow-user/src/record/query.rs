//! What `flow report` asks the store: the top talkers of a range or an instant, the series for a
//! plot, and the store's own counters.

use std::{collections::HashMap, fmt, str::FromStr};

use anyhow::Result;
use rusqlite::{params_from_iter, types::Value, Connection, OptionalExtension};

use super::writer::{used_bytes, OLDEST_SAMPLE};

/// What rows are grouped by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupBy {
    #[default]
    Connection,
    Process,
    Container,
    Remote,
    Protocol,
}

impl GroupBy {
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Connection,
        GroupBy::Process,
        GroupBy::Container,
        GroupBy::Remote,
        GroupBy::Protocol,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Connection => "connection",
            GroupBy::Process => "process",
            GroupBy::Container => "container",
            GroupBy::Remote => "remote",
            GroupBy::Protocol => "protocol",
        }
    }

    /// The key as an SQL expression over `connections c`.
    fn key(self) -> &'static str {
        match self {
            GroupBy::Connection => "c.id",
            GroupBy::Process => "c.process",
            GroupBy::Container => "c.container",
            GroupBy::Remote => "COALESCE(c.remote_name, c.remote_host)",
            GroupBy::Protocol => "c.protocol",
        }
    }

    /// The key as text (connection ids as 16 hex digits; unknown values as `?`, no container as
    /// `host`).
    fn text(self, value: Value) -> String {
        match (self, value) {
            (GroupBy::Connection, Value::Integer(id)) => format!("{:016x}", id as u64),
            (_, Value::Text(text)) => text,
            (_, Value::Integer(n)) => n.to_string(),
            (GroupBy::Container, Value::Null) => "host".into(),
            _ => "?".into(),
        }
    }

    /// The key back as an SQL value (for `IN (…)`).
    fn value(self, key: &str) -> Value {
        match self {
            GroupBy::Connection => {
                u64::from_str_radix(key, 16).map_or(Value::Null, |id| Value::Integer(id as i64))
            }
            _ => Value::Text(key.to_string()),
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown grouping `{s}` (expected connection, process, container, remote or protocol)")
            })
    }
}

/// The time a report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// One instant: what was live and what it moved in the sample holding it.
    At(i64),
    /// `[since, until)`.
    Range { since: i64, until: i64 },
}

/// A recorded connection as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub local: String,
    pub remote: String,
    pub transport: String,
    pub protocol: String,
    pub pid: Option<i64>,
    pub process: Option<String>,
    pub netns: Option<i64>,
    pub cgroup: Option<String>,
    pub container: Option<String>,
    pub service: Option<String>,
    pub remote_name: Option<String>,
    pub closed: Option<i64>,
}

/// One row of a report: a connection or a group of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub key: String,
    /// With `--by connection`: the connection's details.
    pub connection: Option<ConnectionInfo>,
    /// Connections in the group that were live in the range.
    pub connections: u64,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// Highest rate (bytes/s, both ways) of the finest samples in the range; for `--at`, the
    /// rate of the sample holding the instant.
    pub peak_bytes_per_second: u64,
    /// First and last seen (unix ms) of the connection, or of the group's connections.
    pub first_seen: i64,
    pub last_seen: i64,
}

impl ReportRow {
    pub fn bytes(&self) -> u64 {
        self.tx_bytes + self.rx_bytes
    }
}

/// The store's own counters: what was written, rolled up, expired, dropped; what time it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreCounters {
    pub rows_written: u64,
    pub rows_rolled_up: u64,
    pub rows_expired: u64,
    pub rows_dropped: u64,
    pub bytes_dropped: u64,
    /// Oldest sample's start and newest sample's end (unix ms), if any.
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
    pub used_bytes: u64,
    pub tiers: Option<String>,
}

/// A report: rows busiest first, at most `top`, and how many there were in all.
#[derive(Clone, Debug)]
pub struct Report {
    pub span: Span,
    pub by: GroupBy,
    pub rows: Vec<ReportRow>,
    pub total_rows: usize,
    pub counters: StoreCounters,
}

/// The tiers' resolutions the recorder stored (how far back a sample covering a time can start).
fn lookbacks(conn: &Connection) -> Result<Vec<i64>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'tier_resolutions_ms'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let mut resolutions: Vec<i64> = text
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    if resolutions.is_empty() {
        resolutions = vec![1000, 60_000, 600_000];
    }
    // Raw samples span the time since the previous write: allow late ones.
    resolutions[0] = (resolutions[0] * 10).max(60_000);
    // Tiers a later configuration may have dropped still hold data: look at eight.
    let longest = *resolutions.iter().max().unwrap_or(&3_600_000);
    resolutions.resize(8, longest);
    Ok(resolutions)
}

pub fn counters(conn: &Connection) -> Result<StoreCounters> {
    let mut counters = StoreCounters::default();
    let mut stmt = conn.prepare("SELECT name, value FROM counters")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (name, value) = row?;
        let value = value.max(0) as u64;
        match name.as_str() {
            "rows_written" => counters.rows_written = value,
            "rows_rolled_up" => counters.rows_rolled_up = value,
            "rows_expired" => counters.rows_expired = value,
            "rows_dropped" => counters.rows_dropped = value,
            "bytes_dropped" => counters.bytes_dropped = value,
            _ => {}
        }
    }
    counters.oldest = conn.query_row(OLDEST_SAMPLE, [], |r| r.get(0))?;
    counters.newest = conn.query_row(
        "SELECT MAX(e) FROM (SELECT MAX(start + span) AS e FROM samples WHERE tier = 0 UNION ALL
           SELECT MAX(start + span) FROM samples WHERE tier = 1 UNION ALL
           SELECT MAX(start + span) FROM samples WHERE tier = 2)",
        [],
        |r| r.get(0),
    )?;
    counters.used_bytes = used_bytes(conn)?;
    counters.tiers = conn
        .query_row("SELECT value FROM meta WHERE key = 'tiers'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(counters)
}

#[derive(Default)]
struct Agg {
    tx: u64,
    rx: u64,
    txp: u64,
    rxp: u64,
    peak: u64,
}

fn get_u64(row: &rusqlite::Row, i: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
}

/// The top `top` rows (0: all) of `span`, grouped `by`.
pub fn report(conn: &Connection, span: Span, by: GroupBy, top: usize) -> Result<Report> {
    let lookbacks = lookbacks(conn)?;
    let key = by.key();
    let mut totals: HashMap<String, Agg> = HashMap::new();
    // Members, first and last seen of each key among the connections live in the span.
    let mut seen: HashMap<String, (u64, i64, i64)> = HashMap::new();
    let (since, until) = match span {
        Span::At(t) => (t, t + 1),
        Span::Range { since, until } => (since, until),
    };
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT {key}, COUNT(*), MIN(c.first_seen), MAX(c.last_seen) FROM connections c
             WHERE c.last_seen >= ?1 AND c.first_seen < ?2 GROUP BY 1"
        ))?;
        let mut rows = stmt.query([since, until])?;
        while let Some(row) = rows.next()? {
            let k = by.text(row.get(0)?);
            let entry = seen.entry(k).or_insert((0, i64::MAX, i64::MIN));
            entry.0 += get_u64(row, 1)?;
            entry.1 = entry.1.min(row.get(2)?);
            entry.2 = entry.2.max(row.get(3)?);
        }
    }
    for (tier, lookback) in lookbacks.iter().enumerate() {
        let sql = format!(
            "SELECT k, SUM(tx), SUM(rx), SUM(txp), SUM(rxp), MAX(rate) FROM (
               SELECT {key} AS k, SUM(s.tx_bytes) AS tx, SUM(s.rx_bytes) AS rx,
                      SUM(s.tx_packets) AS txp, SUM(s.rx_packets) AS rxp,
                      max(MAX(s.peak), SUM(s.tx_bytes + s.rx_bytes) * 1000 / MAX(s.span, 1)) AS rate
               FROM samples s JOIN connections c ON c.id = s.connection
               WHERE s.tier = ?1 AND s.start > ?2 AND s.start < ?3 AND s.start + s.span > ?4
               GROUP BY k, s.start)
             GROUP BY k"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params![
            tier as i64,
            since - lookback,
            until,
            since
        ])?;
        while let Some(row) = rows.next()? {
            let k = by.text(row.get(0)?);
            let agg = totals.entry(k).or_default();
            agg.tx += get_u64(row, 1)?;
            agg.rx += get_u64(row, 2)?;
            agg.txp += get_u64(row, 3)?;
            agg.rxp += get_u64(row, 4)?;
            agg.peak = agg.peak.max(get_u64(row, 5)?);
        }
    }
    let at = matches!(span, Span::At(_));
    let mut rows: Vec<ReportRow> = Vec::new();
    let keys: Vec<String> = if at {
        // Everything live at the instant, busy or not.
        seen.keys().cloned().collect()
    } else {
        totals.keys().cloned().collect()
    };
    for k in keys {
        let agg = totals.remove(&k).unwrap_or_default();
        let (members, first, last) = seen.get(&k).copied().unwrap_or((0, 0, 0));
        rows.push(ReportRow {
            key: k,
            connection: None,
            connections: members,
            tx_bytes: agg.tx,
            rx_bytes: agg.rx,
            tx_packets: agg.txp,
            rx_packets: agg.rxp,
            peak_bytes_per_second: agg.peak,
            first_seen: first,
            last_seen: last,
        });
    }
    rows.sort_by(|a, b| {
        b.bytes()
            .cmp(&a.bytes())
            .then(b.peak_bytes_per_second.cmp(&a.peak_bytes_per_second))
            .then_with(|| a.key.cmp(&b.key))
    });
    let total_rows = rows.len();
    if top > 0 {
        rows.truncate(top);
    }
    if by == GroupBy::Connection {
        let mut stmt = conn.prepare(
            "SELECT local, remote, transport, protocol, pid, process, netns, cgroup, container,
                    service, remote_name, closed FROM connections WHERE id = ?1",
        )?;
        for row in &mut rows {
            let Value::Integer(id) = by.value(&row.key) else {
                continue;
            };
            row.connection = stmt
                .query_row([id], |r| {
                    Ok(ConnectionInfo {
                        local: r.get(0)?,
                        remote: r.get(1)?,
                        transport: r.get(2)?,
                        protocol: r.get(3)?,
                        pid: r.get(4)?,
                        process: r.get(5)?,
                        netns: r.get(6)?,
                        cgroup: r.get(7)?,
                        container: r.get(8)?,
                        service: r.get(9)?,
                        remote_name: r.get(10)?,
                        closed: r.get(11)?,
                    })
                })
                .optional()?;
        }
    }
    Ok(Report {
        span,
        by,
        rows,
        total_rows,
        counters: counters(conn)?,
    })
}

/// Each key's rate (bytes/s both ways) over `[since, until)` in `bins` equal bins: a sample's
/// bytes are spread over the bins it overlaps, in proportion.
pub fn series(
    conn: &Connection,
    since: i64,
    until: i64,
    by: GroupBy,
    keys: &[String],
    bins: usize,
) -> Result<Vec<(String, Vec<f64>)>> {
    let bins = bins.max(1);
    let width = ((until - since) as f64 / bins as f64).max(1.0);
    let mut out: HashMap<String, Vec<f64>> =
        keys.iter().map(|k| (k.clone(), vec![0.0; bins])).collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let lookbacks = lookbacks(conn)?;
    let key = by.key();
    let marks: Vec<String> = (0..keys.len()).map(|i| format!("?{}", i + 5)).collect();
    let sql = format!(
        "SELECT {key} AS k, s.start, MAX(s.span), SUM(s.tx_bytes + s.rx_bytes)
         FROM samples s JOIN connections c ON c.id = s.connection
         WHERE s.tier = ?1 AND s.start > ?2 AND s.start < ?3 AND s.start + s.span > ?4
           AND {key} IN ({})
         GROUP BY k, s.start",
        marks.join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    for (tier, lookback) in lookbacks.iter().enumerate() {
        let mut values: Vec<Value> = vec![
            Value::Integer(tier as i64),
            Value::Integer(since - lookback),
            Value::Integer(until),
            Value::Integer(since),
        ];
        values.extend(keys.iter().map(|k| by.value(k)));
        let mut rows = stmt.query(params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            let k = by.text(row.get(0)?);
            let Some(series) = out.get_mut(&k) else {
                continue;
            };
            let start: i64 = row.get(1)?;
            let span: i64 = row.get::<_, i64>(2)?.max(1);
            let bytes = get_u64(row, 3)? as f64;
            let (a, b) = (start.max(since), (start + span).min(until));
            if b <= a {
                continue;
            }
            let first = (((a - since) as f64) / width) as usize;
            let last = ((((b - since) as f64) / width).ceil() as usize).min(bins);
            for (i, slot) in series.iter_mut().enumerate().take(last).skip(first) {
                let lo = since as f64 + i as f64 * width;
                let hi = lo + width;
                let overlap = (b as f64).min(hi) - (a as f64).max(lo);
                if overlap > 0.0 {
                    // The share of the sample's bytes inside this bin, as a rate over the bin.
                    *slot += bytes * overlap / span as f64 / (width / 1000.0);
                }
            }
        }
    }
    Ok(keys
        .iter()
        .map(|k| (k.clone(), out.remove(k).unwrap_or_default()))
        .collect())
}
