//! Issue 16's bench lines: what the flight recorder costs. A day (quick: an hour) of 10,000
//! connections with 1 % (100) moving bytes every 1 s interval is written through flow's own
//! writer with a stepped clock (`flow record --synthetic`, no kernel program), with the default
//! tiers and cap; then `flow report --since <span> --by process` over it is timed.
//!
//! The CPU line is the writer's CPU time per 1-s interval (what `flow serve --db` adds to each
//! step, the measurement itself being the same), as a share of one core.

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use super::{
    report::{target, Target, Verdict},
    results::Results,
    Ctx,
};

#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Seconds of traffic simulated (86,400 for a full run).
    pub simulated_s: u64,
    pub rows: u64,
    /// Writer CPU per 1-s interval, µs.
    pub cpu_per_interval_us: f64,
    /// The store's size after the simulated span.
    pub store_bytes: u64,
    /// `flow report --since <span> --by process`, best of three, ms (process start included).
    pub query_ms: f64,
}

const CONNECTIONS: u64 = 10_000;
const ACTIVE: u64 = 100;

pub fn measure(ctx: &mut Ctx) -> Option<Record> {
    let span = if ctx.plan.quick { 3_600 } else { 86_400 };
    let dir = ctx.raw("record");
    let _ = fs::remove_dir_all(&dir);
    if let Err(err) = fs::create_dir_all(&dir) {
        ctx.notes.push(format!("record: {}: {err}", dir.display()));
        return None;
    }
    let db = dir.join("flow.db");
    println!("bench: flight recorder ({span} s of {CONNECTIONS} connections, {ACTIVE} active)");
    let out = Command::new(&ctx.flow.binary)
        .args(["record", "--db"])
        .arg(&db)
        .args(["--synthetic", &format!("{span}s")])
        .args(["--synthetic-connections", &CONNECTIONS.to_string()])
        .args(["--synthetic-active", &ACTIVE.to_string()])
        .output();
    let written: serde_json::Value = match out {
        Ok(out) if out.status.success() => match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(err) => {
                ctx.errors.push(format!(
                    "record: flow record --synthetic printed no JSON: {err}"
                ));
                return None;
            }
        },
        Ok(out) => {
            ctx.errors.push(format!(
                "record: flow record --synthetic failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Err(err) => {
            ctx.errors.push(format!("record: running flow: {err}"));
            return None;
        }
    };
    let _ = fs::write(ctx.raw("record.json"), written.to_string());
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let out = Command::new(&ctx.flow.binary)
            .args(["report", "--db"])
            .arg(&db)
            .args([
                "--since",
                &format!("{}s", span + 60),
                "--by",
                "process",
                "--json",
            ])
            .output();
        let took = started.elapsed();
        match out {
            Ok(out) if out.status.success() => best = best.min(took),
            Ok(out) => {
                ctx.errors.push(format!(
                    "record: flow report failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                return None;
            }
            Err(err) => {
                ctx.errors
                    .push(format!("record: running flow report: {err}"));
                return None;
            }
        }
    }
    let number = |key: &str| written[key].as_f64().unwrap_or(0.0);
    Some(Record {
        simulated_s: span,
        rows: number("rows") as u64,
        cpu_per_interval_us: number("cpu_per_interval_us"),
        store_bytes: number("file_bytes") as u64,
        query_ms: best.as_secs_f64() * 1e3,
    })
}

/// Issue 16's targets.
pub fn targets(r: &Results) -> Vec<Target> {
    let Some(rec) = &r.record else {
        return [
            "recording adds (10,000 connections, 1 % active)",
            "store growth per day",
            "report --since 24h --by process",
        ]
        .into_iter()
        .map(|what| target(what, "", "not run".into(), Verdict::NotMeasured))
        .collect();
    };
    let verdict = |ok: bool| if ok { Verdict::Met } else { Verdict::NotMet };
    let share = rec.cpu_per_interval_us / 1e6 * 100.0;
    let mut t = vec![target(
        "recording adds (10,000 connections, 1 % active, 1 s interval)",
        "≤ 0.3 % of a core",
        format!(
            "{share:.3} % ({:.0} µs of writer CPU per interval)",
            rec.cpu_per_interval_us
        ),
        verdict(share <= 0.3),
    )];
    let mib = rec.store_bytes as f64 / (1024.0 * 1024.0);
    let day = rec.simulated_s >= 86_400;
    t.push(target(
        "store growth per day at that load (default tiers)",
        "≤ 50 MiB",
        if day {
            format!("{mib:.1} MiB after a simulated day")
        } else {
            format!(
                "{mib:.1} MiB after {} s (quick: not judged)",
                rec.simulated_s
            )
        },
        if day {
            verdict(mib <= 50.0)
        } else {
            Verdict::NotMeasured
        },
    ));
    t.push(target(
        if day {
            "report --since 24h --by process over that day"
        } else {
            "report --by process over the simulated span"
        },
        "≤ 1 s",
        format!("{:.0} ms ({} rows written)", rec.query_ms, rec.rows),
        verdict(rec.query_ms <= 1000.0),
    ));
    t
}
