//! The recorder without a kernel: rows made by hand, a clock stepped by hand.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use jiff::tz::TimeZone;

use super::{
    config::parse_tiers, parse_size, query, time::parse_time, GroupBy, RecordConfig, Recorder, Span,
};
use crate::{
    attribution::Attribution,
    model::{ConnectionBandwidth, NetConnection, Protocol, ProtocolSource, TcpState, Transport},
    ConnectionId,
};

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flow-record-{}-{name}-{}",
        std::process::id(),
        super::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("flow.db")
}

fn row(id: u64, process: &str, tx: u64, rx: u64, active: bool) -> ConnectionBandwidth {
    ConnectionBandwidth {
        connection: NetConnection {
            id: ConnectionId(id),
            local: SocketAddr::from(([127, 0, 0, 1], 40_000 + id as u16)),
            remote: SocketAddr::from(([127, 0, 0, 2], 80)),
            transport: Transport::Tcp,
            state: TcpState::Established,
            inode: id,
            uid: None,
            pid: Some(100 + id as u32),
            process: Some(process.into()),
            cookie: Some(id),
            protocol: Protocol::Http,
            protocol_source: ProtocolSource::Port,
            active,
            netns: None,
            attribution: Attribution::none(),
            remote_name: None,
            tls_server_name: None,
            generation: 0,
        },
        tx_bytes: tx,
        rx_bytes: rx,
        tx_packets: tx / 100,
        rx_packets: rx / 100,
        tx_bytes_per_second: 0,
        rx_bytes_per_second: 0,
        bytes_per_second: 0,
        packets_per_second: 0,
        sample_window: Duration::from_secs(1),
    }
}

fn config(tiers: &str, max_size: u64) -> RecordConfig {
    let interval = Duration::from_secs(1);
    RecordConfig {
        interval,
        tiers: parse_tiers(tiers, interval).unwrap(),
        max_size,
    }
}

const T0: i64 = 1_700_000_000_000;

fn totals(path: &std::path::Path, since: i64, until: i64, by: GroupBy) -> Vec<query::ReportRow> {
    let conn = super::open_read_only(path).unwrap();
    query::report(&conn, Span::Range { since, until }, by, 0)
        .unwrap()
        .rows
}

#[test]
fn rolled_up_totals_equal_the_fine_samples_they_replaced() {
    let path = temp_db("rollup");
    // Raw for 10 s, 5 s rollups for 30 s, 15 s rollups for an hour.
    let mut rec = Recorder::open(&path, config("raw:10s,5s:30s,15s:1h", 1 << 30)).unwrap();
    rec.start_at(T0);
    let mut expected = std::collections::HashMap::<u64, (u64, u64)>::new();
    for i in 1..=120i64 {
        let rows: Vec<_> = (1..=3u64)
            .filter(|c| !(i as u64 + c).is_multiple_of(4))
            .map(|c| row(c, "p", c * 1000 + i as u64, c * 7 + i as u64, true))
            .collect();
        for r in &rows {
            let e = expected.entry(r.connection.id.0).or_default();
            e.0 += r.tx_bytes;
            e.1 += r.rx_bytes;
        }
        rec.record_at(T0 + i * 1000, &rows).unwrap();
    }
    rec.maintain(T0 + 120_000).unwrap();
    let stats = rec.stats();
    assert!(stats.rows_rolled_up > 200, "{stats:?}");
    let conn = super::open_read_only(&path).unwrap();
    let tiers: Vec<(i64, i64)> = conn
        .prepare("SELECT tier, COUNT(*) FROM samples GROUP BY tier")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        tiers.iter().any(|t| t.0 == 2),
        "rolled into the last tier: {tiers:?}"
    );
    let rows = totals(&path, T0 - 60_000, T0 + 200_000, GroupBy::Connection);
    assert_eq!(rows.len(), 3);
    for r in rows {
        let id = u64::from_str_radix(&r.key, 16).unwrap();
        assert_eq!((r.tx_bytes, r.rx_bytes), expected[&id], "connection {id}");
    }
    let counters = query::counters(&conn).unwrap();
    assert_eq!(counters.rows_rolled_up, stats.rows_rolled_up);
    // Grouped by process: the sum of all.
    let all: u64 = expected.values().map(|e| e.0 + e.1).sum();
    let by_process = totals(&path, T0 - 60_000, T0 + 200_000, GroupBy::Process);
    assert_eq!(by_process.len(), 1);
    assert_eq!(by_process[0].bytes(), all);
    assert_eq!(by_process[0].connections, 3);
}

#[test]
fn the_last_tier_expires_and_counts() {
    let path = temp_db("expire");
    let mut rec = Recorder::open(&path, config("raw:5s,5s:10s", 1 << 30)).unwrap();
    rec.start_at(T0);
    for i in 1..=60i64 {
        rec.record_at(T0 + i * 1000, &[row(1, "p", 10, 0, true)])
            .unwrap();
    }
    rec.maintain(T0 + 60_000).unwrap();
    assert!(rec.stats().rows_expired > 0);
    let rows = totals(&path, T0 - 10_000, T0 + 61_000, GroupBy::Connection);
    // Only the last ~15 s are left.
    assert!(rows[0].tx_bytes <= 200, "{:?}", rows[0]);
}

#[test]
fn the_size_cap_drops_the_oldest_first_and_counts_it() {
    let path = temp_db("cap");
    let cap = 1 << 20;
    let mut rec = Recorder::open(&path, config("raw:1d", cap)).unwrap();
    rec.start_at(T0);
    let mut written = 0u64;
    for i in 1..=1500i64 {
        let rows: Vec<_> = (1..=40u64)
            .map(|c| row(c, "p", 1000 + c, 1, true))
            .collect();
        written += rows.iter().map(|r| r.tx_bytes + r.rx_bytes).sum::<u64>();
        rec.record_at(T0 + i * 1000, &rows).unwrap();
    }
    rec.maintain(T0 + 1_500_000).unwrap();
    let stats = rec.stats();
    assert!(stats.rows_dropped > 0, "{stats:?}");
    assert!(
        rec.used_bytes().unwrap() <= cap,
        "{}",
        rec.used_bytes().unwrap()
    );
    let conn = super::open_read_only(&path).unwrap();
    let counters = query::counters(&conn).unwrap();
    assert_eq!(counters.rows_dropped, stats.rows_dropped);
    // What is left is the newest, contiguous up to the end; what is gone is counted exactly.
    let oldest = counters.oldest.unwrap();
    assert!(oldest > T0);
    assert_eq!(counters.newest, Some(T0 + 1_500_000));
    let left: u64 = totals(&path, T0 - 1000, T0 + 1_600_000, GroupBy::Process)
        .iter()
        .map(|r| r.bytes())
        .sum();
    assert_eq!(left + counters.bytes_dropped, written);
    let gaps: i64 = conn
        .query_row(
            "SELECT COUNT(DISTINCT start) FROM samples WHERE tier = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        gaps,
        (T0 + 1_500_000 - oldest) / 1000,
        "no hole before the newest"
    );
}

#[test]
fn failed_writes_are_kept_for_the_next_interval() {
    let path = temp_db("pending");
    let mut rec = Recorder::open(&path, config("raw:1h", 1 << 30)).unwrap();
    rec.start_at(T0);
    rec.record_at(T0 + 1000, &[row(1, "p", 100, 0, true)])
        .unwrap();
    // Another writer holds the store: this interval fails.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.busy_timeout(Duration::ZERO).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The write waits out its busy timeout, then fails.
    let err = rec.record_at(T0 + 2000, &[row(1, "p", 50, 0, false)]);
    assert!(err.is_err());
    other.execute_batch("ROLLBACK").unwrap();
    rec.record_at(T0 + 3000, &[row(2, "q", 7, 0, true)])
        .unwrap();
    let rows = totals(&path, T0, T0 + 4000, GroupBy::Connection);
    let by_id = |id: u64| {
        rows.iter()
            .find(|r| r.key == format!("{id:016x}"))
            .unwrap()
            .tx_bytes
    };
    assert_eq!(by_id(1), 150);
    assert_eq!(by_id(2), 7);
    assert_eq!(rec.stats().write_errors, 1);
}

#[test]
fn at_lists_what_was_live_then_and_not_later() {
    let path = temp_db("at");
    let mut rec = Recorder::open(&path, config("raw:1h", 1 << 30)).unwrap();
    rec.start_at(T0);
    for i in 1..=10i64 {
        let mut rows = vec![row(1, "early", 10, 0, i < 10)];
        if i > 6 {
            rows.push(row(2, "late", 20, 0, true));
        }
        rec.record_at(T0 + i * 1000, &rows).unwrap();
    }
    let conn = super::open_read_only(&path).unwrap();
    let at = |t: i64| {
        query::report(&conn, Span::At(t), GroupBy::Process, 0)
            .unwrap()
            .rows
    };
    let early = at(T0 + 3500);
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].key, "early");
    assert_eq!(early[0].tx_bytes, 10);
    assert_eq!(early[0].peak_bytes_per_second, 10);
    let both: Vec<String> = at(T0 + 8500).into_iter().map(|r| r.key).collect();
    assert_eq!(both, ["late", "early"]);
    assert!(at(T0 + 20_000).is_empty());
}

#[test]
fn a_restart_keeps_the_connection_and_goes_on_appending() {
    let path = temp_db("restart");
    {
        let mut rec = Recorder::open(&path, config("raw:1h", 1 << 30)).unwrap();
        rec.start_at(T0);
        rec.record_at(T0 + 1000, &[row(9, "p", 100, 1, true)])
            .unwrap();
    }
    let mut rec = Recorder::open(&path, config("raw:1h", 1 << 30)).unwrap();
    rec.start_at(T0 + 5000);
    rec.record_at(T0 + 6000, &[row(9, "p", 23, 2, true)])
        .unwrap();
    let rows = totals(&path, T0, T0 + 7000, GroupBy::Connection);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].tx_bytes, rows[0].rx_bytes), (123, 3));
    assert_eq!(rows[0].first_seen, T0);
    assert_eq!(rows[0].last_seen, T0 + 6000);
}

#[test]
fn a_corrupt_or_foreign_store_is_one_clear_error() {
    let path = temp_db("corrupt");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = Recorder::open(&path, config("raw:1h", 1 << 30))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("not a flow store"), "{err:#}");
    let err = super::open_read_only(&path).err().unwrap();
    assert!(format!("{err:#}").contains("not a flow store"), "{err:#}");
    assert!(!format!("{err:#}").contains('\n'));

    let foreign = temp_db("foreign");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let err = Recorder::open(&foreign, config("raw:1h", 1 << 30))
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("not a flow store"), "{err:#}");

    let missing = temp_db("missing").with_file_name("nothing-here.db");
    let err = super::open_read_only(&missing).err().unwrap();
    assert!(format!("{err:#}").contains("no such store"), "{err:#}");
}

#[test]
fn times_parse_in_every_documented_form() {
    let utc = TimeZone::UTC;
    // 2023-11-14T22:13:20Z
    let now = T0;
    assert_eq!(parse_time("now", now, &utc), Ok(now));
    assert_eq!(parse_time("10m", now, &utc), Ok(now - 600_000));
    assert_eq!(parse_time("1h 30m", now, &utc), Ok(now - 5_400_000));
    assert_eq!(
        parse_time("2023-11-14T22:00:00Z", now, &utc),
        Ok(now - 800_000)
    );
    assert_eq!(
        parse_time("2023-11-14T23:00:00+01:00", now, &utc),
        Ok(now - 800_000)
    );
    assert_eq!(parse_time("22:00", now, &utc), Ok(now - 800_000));
    assert_eq!(parse_time("22:00:10", now, &utc), Ok(now - 790_000));
    // Later today than now: yesterday's.
    assert_eq!(
        parse_time("23:00", now, &utc),
        Ok(now - 800_000 - 82_800_000)
    );
    assert_eq!(parse_time("2023-11-14 22:00", now, &utc), Ok(now - 800_000));
    let plus_two = TimeZone::fixed(jiff::tz::offset(2));
    assert_eq!(parse_time("00:00", now, &plus_two), Ok(now - 800_000));
    for bad in [
        "",
        "25:00",
        "12:61",
        "3:1:2:4",
        "yesterday",
        "12h:00",
        "2023-13-01",
        "10 parsecs",
    ] {
        let err = parse_time(bad, now, &utc).unwrap_err();
        assert!(err.contains("is not a time"), "{bad}: {err}");
    }
}

#[test]
fn tiers_and_sizes_parse_or_say_why() {
    let s = Duration::from_secs(1);
    let tiers = parse_tiers(super::DEFAULT_TIERS, s).unwrap();
    assert_eq!(
        tiers
            .0
            .iter()
            .map(|t| (t.resolution_ms, t.retention_ms))
            .collect::<Vec<_>>(),
        [
            (1000, 3_600_000),
            (60_000, 86_400_000),
            (600_000, 30 * 86_400_000)
        ]
    );
    assert!(parse_tiers("1s:1h,1m:1d", s).is_ok());
    assert!(parse_tiers("2s:1h", s).is_err());
    assert!(parse_tiers("raw:1h,1m:1d,90s:30d", s).is_err());
    assert!(parse_tiers("raw:1h,1m", s).is_err());
    assert!(parse_tiers("raw:1h,1h:1m", s).is_err());
    assert_eq!(parse_size("512MiB"), Ok(512 << 20));
    assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
    assert_eq!(parse_size("100M"), Ok(100 << 20));
    assert!(parse_size("12 parsecs").is_err());
    assert!(parse_size("10").is_err());
}
