//! The store's schema and its migrations (`PRAGMA user_version`), and opening a store.
//!
//! ```sql
//! connections(id, local, remote, remote_host, transport, protocol, pid, process, netns,
//!             cgroup, container, service, remote_name, first_seen, last_seen, closed)
//! samples(tier, start, span, connection, tx_bytes, rx_bytes, tx_packets, rx_packets, peak)
//! counters(name, value)   -- rows_written, rows_rolled_up, rows_expired, rows_dropped, bytes_dropped
//! meta(key, value)        -- tiers, interval_ms, max_size
//! ```
//!
//! `connections.id` is the connection id (the socket cookie on the typed rungs) as a signed
//! 64-bit integer; times are UTC unix milliseconds; `samples.start`/`span` say which span of time
//! a sample covers, `peak` is the highest rate (bytes/s both ways) of the finest samples it holds.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE connections (
    id          INTEGER PRIMARY KEY,
    local       TEXT NOT NULL,
    remote      TEXT NOT NULL,
    remote_host TEXT NOT NULL,
    transport   TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    pid         INTEGER,
    process     TEXT,
    netns       INTEGER,
    cgroup      TEXT,
    container   TEXT,
    service     TEXT,
    remote_name TEXT,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    closed      INTEGER
);
CREATE INDEX connections_last_seen ON connections(last_seen);
CREATE TABLE samples (
    tier       INTEGER NOT NULL,
    start      INTEGER NOT NULL,
    span       INTEGER NOT NULL,
    connection INTEGER NOT NULL,
    tx_bytes   INTEGER NOT NULL,
    rx_bytes   INTEGER NOT NULL,
    tx_packets INTEGER NOT NULL,
    rx_packets INTEGER NOT NULL,
    peak       INTEGER NOT NULL,
    PRIMARY KEY (tier, start, connection)
) WITHOUT ROWID;
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters(name, value) VALUES
    ('rows_written', 0), ('rows_rolled_up', 0), ('rows_expired', 0),
    ('rows_dropped', 0), ('bytes_dropped', 0);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
";

/// Opens (creating if needed) a store for writing: WAL, `synchronous=NORMAL` (a crash of the
/// process loses nothing committed; power loss at most the last transactions), schema migrated.
pub fn open_for_writing(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!("{}: no such directory", dir.display());
        }
    }
    let conn = Connection::open(path).map_err(|e| describe(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Incremental auto-vacuum must be chosen before the first table exists: it lets the size cap
    // give freed pages back to the file system.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(|e| describe(path, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| describe(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!(
            "{}: cannot use write-ahead logging (journal mode {mode})",
            path.display()
        );
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The WAL is truncated back to this after a checkpoint.
    conn.pragma_update(None, "journal_size_limit", 16i64 << 20)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens an existing store for reading only.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.exists() {
        bail!(
            "{}: no such store (record one with `flow record --db {}`)",
            path.display(),
            path.display()
        );
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| describe(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| describe(path, e))?;
    check_version(path, version, &conn)?;
    if version == 0 {
        bail!("{}: not a flow store (no recording in it)", path.display());
    }
    Ok(conn)
}

fn check_version(path: &Path, version: i64, conn: &Connection) -> Result<()> {
    if version > SCHEMA_VERSION {
        bail!(
            "{}: written by a newer flow (schema {version}; this one reads up to {SCHEMA_VERSION})",
            path.display()
        );
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| describe(path, e))?;
        if tables > 0 {
            bail!(
                "{}: not a flow store (an SQLite file with other tables)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`], one version per transaction.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| describe(path, e))?;
    check_version(path, version, conn)?;
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
        ))
        .map_err(|e| describe(path, e))
        .context("creating the schema")?;
    }
    Ok(())
}

/// One line for an SQLite error on `path`.
pub fn describe(path: &Path, err: rusqlite::Error) -> anyhow::Error {
    let what = match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "not a flow store (not an SQLite database)".to_string()
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => "the store is corrupt".to_string(),
        Some(rusqlite::ErrorCode::DiskFull) => "the disk is full".to_string(),
        Some(rusqlite::ErrorCode::CannotOpen) => "cannot open the store".to_string(),
        Some(rusqlite::ErrorCode::ReadOnly) => "the store is read-only".to_string(),
        Some(rusqlite::ErrorCode::PermissionDenied) => "permission denied".to_string(),
        _ => err.to_string(),
    };
    anyhow::anyhow!("{}: {what}", path.display())
}
