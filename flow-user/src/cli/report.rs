//! `flow report`: the top talkers of a recorded range or instant, as a table, JSON, or a plot.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::{args::ReportArgs, output};
use crate::record::{
    self, open_read_only, plot,
    query::{self, Report, ReportRow},
    time::{local, local_zone, parse_time, rfc3339},
    GroupBy, Span,
};

pub fn run(args: &ReportArgs) -> Result<()> {
    let zone = local_zone();
    let now = record::now_ms();
    let time = |flag: &str, text: &str| -> Result<i64> {
        parse_time(text, now, &zone).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let span = match (&args.at, &args.since) {
        (Some(at), None) => {
            let at = time("at", at)?;
            if at > now {
                bail!("--at: {} is in the future", local(at, &zone));
            }
            Span::At(at)
        }
        (None, Some(since)) => {
            let since = time("since", since)?;
            let until = match &args.until {
                Some(until) => time("until", until)?,
                None => now,
            };
            if since > now {
                bail!("--since: {} is in the future", local(since, &zone));
            }
            if until <= since {
                bail!("--until must be later than --since");
            }
            Span::Range { since, until }
        }
        _ => bail!("give --at TIME or --since TIME"),
    };
    // Checked before the store is read: a plot that cannot be written fails first.
    if let Some(path) = &args.plot {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !ext.eq_ignore_ascii_case("png") && !ext.eq_ignore_ascii_case("svg") {
            bail!(
                "--plot: {}: the file name must end in .png or .svg",
                path.display()
            );
        }
    }
    let conn = open_read_only(&args.db)?;
    let report =
        query::report(&conn, span, args.by, args.top).map_err(|e| describe(&args.db, e))?;
    if let (Some(path), Span::Range { since, until }) = (&args.plot, span) {
        let keys: Vec<String> = report.rows.iter().map(|r| r.key.clone()).collect();
        let series = query::series(&conn, since, until, args.by, &keys, plot::BINS)
            .map_err(|e| describe(&args.db, e))?;
        let lines: Vec<plot::Line> = series
            .into_iter()
            .zip(&report.rows)
            .map(|((_, rates), row)| plot::Line {
                label: label(row, args.by),
                rates,
            })
            .collect();
        let title = format!(
            "flow: top {} by {}, {} to {}",
            lines.len(),
            args.by,
            local(since, &zone),
            local(until, &zone)
        );
        plot::write(path, &title, since, until, &lines, &zone)?;
        eprintln!("flow: wrote {}", path.display());
    }
    if args.json {
        output::json(&document(&report))
    } else {
        table(&report, &zone);
        Ok(())
    }
}

/// SQLite errors while reading (a corrupt store shows here) as one line naming the store.
fn describe(path: &std::path::Path, err: anyhow::Error) -> anyhow::Error {
    match err.downcast::<rusqlite::Error>() {
        Ok(sqlite) => anyhow::anyhow!("{:#}", crate::record::describe_error(path, sqlite)),
        Err(other) => other,
    }
}

/// A row's name in a legend: the key, and for a connection its process and addresses.
fn label(row: &ReportRow, by: GroupBy) -> String {
    match (&row.connection, by) {
        (Some(c), GroupBy::Connection) => format!(
            "{} {} → {}",
            c.process.as_deref().unwrap_or("?"),
            c.local,
            c.remote
        ),
        _ => row.key.clone(),
    }
}

fn document(report: &Report) -> Value {
    let (at, since, until) = match report.span {
        Span::At(at) => (Some(rfc3339(at)), None, None),
        Span::Range { since, until } => (None, Some(rfc3339(since)), Some(rfc3339(until))),
    };
    let rows: Vec<Value> = report.rows.iter().map(|r| row(r, report.by)).collect();
    let c = &report.counters;
    json!({
        "at": at,
        "since": since,
        "until": until,
        "by": report.by.name(),
        "rows": rows,
        "total_rows": report.total_rows,
        "store": {
            "rows_written": c.rows_written,
            "rows_rolled_up": c.rows_rolled_up,
            "rows_expired": c.rows_expired,
            "rows_dropped": c.rows_dropped,
            "bytes_dropped": c.bytes_dropped,
            "oldest": c.oldest.map(rfc3339),
            "newest": c.newest.map(rfc3339),
            "used_bytes": c.used_bytes,
            "tiers": c.tiers,
        },
    })
}

fn row(r: &ReportRow, by: GroupBy) -> Value {
    let mut m = Map::new();
    m.insert(by.name().into(), Value::String(r.key.clone()));
    if let Some(c) = &r.connection {
        m.insert("local".into(), json!(c.local));
        m.insert("remote".into(), json!(c.remote));
        m.insert("transport".into(), json!(c.transport));
        m.insert("protocol".into(), json!(c.protocol));
        m.insert("pid".into(), json!(c.pid));
        m.insert("process".into(), json!(c.process));
        m.insert("netns".into(), json!(c.netns));
        m.insert("cgroup".into(), json!(c.cgroup));
        m.insert("container".into(), json!(c.container));
        m.insert("service".into(), json!(c.service));
        m.insert("remote_name".into(), json!(c.remote_name));
        m.insert("closed".into(), json!(c.closed.map(rfc3339)));
    } else {
        m.insert("connections".into(), json!(r.connections));
    }
    m.insert("tx_bytes".into(), json!(r.tx_bytes));
    m.insert("rx_bytes".into(), json!(r.rx_bytes));
    m.insert("tx_packets".into(), json!(r.tx_packets));
    m.insert("rx_packets".into(), json!(r.rx_packets));
    m.insert(
        "peak_bytes_per_second".into(),
        json!(r.peak_bytes_per_second),
    );
    m.insert("first_seen".into(), json!(rfc3339(r.first_seen)));
    m.insert("last_seen".into(), json!(rfc3339(r.last_seen)));
    m.insert("first_seen_ms".into(), json!(r.first_seen));
    m.insert("last_seen_ms".into(), json!(r.last_seen));
    Value::Object(m)
}

fn table(report: &Report, zone: &jiff::tz::TimeZone) {
    let when = match report.span {
        Span::At(at) => format!("at {}", local(at, zone)),
        Span::Range { since, until } => format!("{} to {}", local(since, zone), local(until, zone)),
    };
    println!(
        "flow report  {when}  by {}  {} of {}",
        report.by,
        report.rows.len(),
        report.total_rows
    );
    let rate_title = if matches!(report.span, Span::At(_)) {
        "RATE"
    } else {
        "PEAK"
    };
    let mut columns: Vec<(&'static str, bool)> = Vec::new();
    if report.by == GroupBy::Connection {
        columns.extend([
            ("ID", false),
            ("PROCESS/PID", false),
            ("LOCAL", false),
            ("REMOTE", false),
            ("PROTOCOL", false),
        ]);
    } else {
        columns.extend([(key_title(report.by), false), ("CONNS", true)]);
    }
    columns.extend([
        ("SENT", true),
        ("RECEIVED", true),
        (rate_title, true),
        ("FIRST SEEN", false),
        ("LAST SEEN", false),
    ]);
    let mut t = output::Table::new(&columns);
    for r in &report.rows {
        let mut cells = Vec::new();
        match &r.connection {
            Some(c) => cells.extend([
                r.key.clone(),
                format!(
                    "{}/{}",
                    c.process.as_deref().unwrap_or("?"),
                    c.pid.map_or("?".into(), |p| p.to_string())
                ),
                c.local.clone(),
                c.remote.clone(),
                c.protocol.clone(),
            ]),
            None if report.by == GroupBy::Connection => cells.extend([
                r.key.clone(),
                "?".into(),
                "?".into(),
                "?".into(),
                "?".into(),
            ]),
            None => cells.extend([r.key.clone(), r.connections.to_string()]),
        }
        cells.extend([
            output::bytes(r.tx_bytes),
            output::bytes(r.rx_bytes),
            output::rate(r.peak_bytes_per_second),
            local(r.first_seen, zone),
            local(r.last_seen, zone),
        ]);
        t.row(cells);
    }
    let _ = t.print();
    let c = &report.counters;
    let held = match (c.oldest, c.newest) {
        (Some(a), Some(b)) => format!("holds {} to {}", local(a, zone), local(b, zone)),
        _ => "holds no samples".into(),
    };
    println!(
        "store: {} samples written; {} rolled up, {} expired, {} dropped by the size cap ({}); {held}; {} used",
        c.rows_written,
        c.rows_rolled_up,
        c.rows_expired,
        c.rows_dropped,
        output::bytes(c.bytes_dropped),
        output::bytes(c.used_bytes),
    );
}

fn key_title(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Connection => "ID",
        GroupBy::Process => "PROCESS",
        GroupBy::Container => "CONTAINER",
        GroupBy::Remote => "REMOTE",
        GroupBy::Protocol => "PROTOCOL",
    }
}
