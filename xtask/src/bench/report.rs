//! The report: targets from issue 7 judged met / not met, and the Markdown file for people
//! (`report_json` writes the same results for tools).

use super::{
    churn::MAP_SLACK,
    results::{Churn, Cost, Overhead, Results, Role, Scale},
    startup::WINDOW_MS,
    stats::Summary,
};
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    NotMeasured,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
            Verdict::NotMeasured => "not measured",
        }
    }

    fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }
}

pub struct Target {
    pub what: &'static str,
    pub goal: &'static str,
    pub measured: String,
    pub verdict: Verdict,
}

fn target(what: &'static str, goal: &'static str, measured: String, verdict: Verdict) -> Target {
    Target {
        what,
        goal,
        measured,
        verdict,
    }
}

fn not_measured(what: &'static str, goal: &'static str, why: &str) -> Target {
    target(what, goal, why.to_string(), Verdict::NotMeasured)
}

/// The flow row at `-l 64` (plain `flow`, i.e. the default configuration).
fn flow_row<'a>(r: &'a Results, size: &str) -> Option<&'a Overhead> {
    r.overhead
        .iter()
        .find(|o| o.tool == "flow" && o.size == size)
}

fn scale_at(r: &Results, connections: u64) -> Option<&Scale> {
    r.scale
        .iter()
        .find(|s| s.connections == connections && s.error.is_none())
}

/// Every target of the issue, judged on what was measured.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let flow64 = flow_row(r, "64").and_then(|o| Summary::of(&o.ratios));
    let what = "iperf3 -l 64 throughput ratio with flow";
    t.push(match flow64 {
        Some(s) => target(what, "≥ 0.97", s.show(3), Verdict::of(s.median >= 0.97)),
        None => not_measured(what, "≥ 0.97", "no flow run at -l 64"),
    });
    let peers: Vec<(String, f64)> = r
        .overhead
        .iter()
        .filter(|o| o.size == "64" && !o.tool.starts_with("flow"))
        .filter_map(|o| Some((o.tool.clone(), Summary::of(&o.ratios)?.median)))
        .collect();
    let what = "… and higher than every peer's";
    t.push(
        match (flow64, peers.iter().max_by(|a, b| a.1.total_cmp(&b.1))) {
            (Some(f), Some((best, ratio))) => target(
                what,
                "above the best peer",
                format!("flow {:.3} vs {best} {ratio:.3}", f.median),
                Verdict::of(f.median > *ratio),
            ),
            _ => not_measured(what, "above the best peer", "no peer measured"),
        },
    );
    let what = "BPF cost per event (bpf_stats on)";
    let goal = "≤ 30 ns";
    let cost = r.costs.iter().find(|c| c.tool == "flow" && c.size == "64");
    t.push(
        match cost.and_then(|c| Some((c.count_ns()?, c.total_ns()?))) {
            Some((count, total)) => target(
                what,
                goal,
                format!("{count:.1} ns counting; {total:.1} ns with every program"),
                Verdict::of(count <= 30.0),
            ),
            None => not_measured(what, goal, "no bpf_stats run of flow"),
        },
    );
    // The 30 ns goal is half of what bpftrace cost on the machine the issue measured; machines
    // of this kind differ severalfold in absolute cost, so the ratio in the same run is the
    // comparison that carries over.
    let what = "… relative to bpftrace's per-socket counter, same run";
    let goal = "≤ 0.50";
    let bpftrace = r
        .costs
        .iter()
        .find(|c| c.tool == "bpftrace" && c.size == "64");
    t.push(
        match (
            cost.and_then(Cost::count_ns),
            bpftrace.and_then(Cost::count_ns),
        ) {
            (Some(ours), Some(theirs)) => target(
                what,
                goal,
                format!("{:.2} ({ours:.1} ns vs {theirs:.1} ns)", ours / theirs),
                Verdict::of(ours <= 0.5 * theirs),
            ),
            _ => not_measured(what, goal, "no bpf_stats run of flow and bpftrace"),
        },
    );
    let at10k = scale_at(r, 10_000);
    let why = "no run at 10,000 connections";
    t.push(match at10k.and_then(|s| s.cores) {
        Some(c) => target(
            "flow CPU at 10,000 connections",
            "≤ 1 % of a core",
            format!("{:.2} %", c * 100.0),
            Verdict::of(c <= 0.01),
        ),
        None => not_measured("flow CPU at 10,000 connections", "≤ 1 % of a core", why),
    });
    t.push(match at10k.and_then(|s| s.peak_rss_kib) {
        Some(kib) => target(
            "flow peak RSS at 10,000 connections",
            "≤ 50 MiB",
            format!("{:.1} MiB", kib as f64 / 1024.0),
            Verdict::of(kib <= 50 * 1024),
        ),
        None => not_measured("flow peak RSS at 10,000 connections", "≤ 50 MiB", why),
    });
    let what = "map drain of 100,000 entries per poll";
    let big = r
        .scale
        .iter()
        .filter(|s| s.error.is_none() && s.map_entries.unwrap_or(0) >= 100_000)
        .max_by_key(|s| s.connections);
    t.push(match big.map(|s| (s, Summary::of(&s.drain_ms))) {
        Some((_, Some(d))) => target(
            what,
            "≤ 20 ms",
            format!("{} ms", d.show(1)),
            Verdict::of(d.median <= 20.0),
        ),
        Some((s, None)) => not_measured(
            what,
            "≤ 20 ms",
            &format!(
                "flow -v prints no drain time ({} entries in the map)",
                s.map_entries.unwrap_or(0)
            ),
        ),
        None => not_measured(what, "≤ 20 ms", "no run with ≥ 100,000 map entries"),
    });
    let startup = r.startup.as_ref();
    let what = "start-up: spawn to attached";
    t.push(match startup.and_then(|s| Summary::of(&s.attached_ms)) {
        Some(s) => target(
            what,
            "≤ 150 ms",
            format!("{} ms", s.show(0)),
            Verdict::of(s.median <= 150.0),
        ),
        None => not_measured(what, "≤ 150 ms", "no start-up run"),
    });
    let what = "start-up: spawn to first sample (minus the 100 ms window)";
    let first: Vec<f64> = startup.map_or(Vec::new(), |s| {
        s.sample_ms.iter().map(|ms| ms - WINDOW_MS).collect()
    });
    t.push(match Summary::of(&first) {
        Some(s) => target(
            what,
            "≤ 150 ms",
            format!("{} ms", s.show(0)),
            Verdict::of(s.median <= 150.0),
        ),
        None => not_measured(what, "≤ 150 ms", "no start-up run"),
    });
    let what = "churn: bytes exact, 0 losses";
    t.push(match &r.churn {
        Some(c) if c.error.is_none() => target(
            what,
            "reported = moved, no loss",
            format!(
                "{} of {} bytes sent, {} received; {} loss line(s)",
                c.reported_tx,
                c.moved,
                c.reported_rx,
                c.warnings.len()
            ),
            Verdict::of(c.exact() && c.warnings.is_empty()),
        ),
        Some(c) => not_measured(
            what,
            "reported = moved, no loss",
            c.error.as_deref().unwrap_or(""),
        ),
        None => not_measured(what, "reported = moved, no loss", "no churn run"),
    });
    let what = "churn: map entries back at baseline";
    let goal = "after ≤ before (+16 for others' traffic)";
    t.push(
        match r
            .churn
            .as_ref()
            .and_then(|c| Some((c.map_before?, c.map_after?)))
        {
            Some((before, after)) => target(
                what,
                goal,
                format!("{before} before, {after} after"),
                Verdict::of(after <= before + MAP_SLACK),
            ),
            None => not_measured(what, goal, "map not read"),
        },
    );
    t
}

/// The summary table (also printed to stdout).
pub fn summary_table(targets: &[Target]) -> String {
    let mut out =
        String::from("| target | goal | measured | verdict |\n| --- | --- | --- | --- |\n");
    for t in targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.what,
            t.goal,
            t.measured,
            t.verdict.text()
        );
    }
    out
}

fn show(s: Option<Summary>, decimals: usize) -> String {
    s.map_or("–".into(), |s| s.show(decimals))
}

/// `|`-free text for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "/").replace('\n', " ")
}

pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let mode = if r.quick { "quick" } else { "full" };
    let _ = writeln!(md, "# flow benchmark {} ({mode})\n", r.timestamp);
    let _ = writeln!(
        md,
        "Loopback only. Rung: {}.\n",
        r.rung.as_deref().unwrap_or("unknown")
    );
    md.push_str("## Summary\n\n");
    md.push_str(&summary_table(&targets(r)));
    md.push_str("\n## Versions\n\n| tool | version |\n| --- | --- |\n");
    for (tool, version) in &r.versions {
        let _ = writeln!(md, "| {tool} | {} |", cell(version));
    }
    if !r.overhead.is_empty() {
        md.push_str("\n## Overhead\n\nThroughput with the monitor / the adjacent baseline, and the monitor's own CPU seconds per second; median (min–max) over the pairs. flow runs `flow bandwidth --window <run + 2 s>`, which samples at the start and the end of its window: its CPU at a 1 s interval is in Scale, its in-kernel cost in Cost per event.\n\n");
        md.push_str("| monitor | -l | ratio | monitor CPU (cores) | baseline Gbit/s | pairs | notes |\n| --- | --- | --- | --- | --- | --- | --- |\n");
        for o in &r.overhead {
            let mut notes: Vec<String> = o.warnings.clone();
            notes.extend(o.error.clone());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                o.tool,
                o.size,
                show(Summary::of(&o.ratios), 3),
                show(Summary::of(&o.cores), 3),
                show(Summary::of(&o.baseline_gbps), 2),
                o.ratios.len(),
                cell(&notes.join("; "))
            );
        }
    }
    if !r.costs.is_empty() {
        md.push_str("\n## Cost per event\n\n`kernel.bpf_stats_enabled=1` during one extra run per monitor and size (set back afterwards).\n\n");
        md.push_str("| monitor | -l | program | role | runs | ns per run |\n| --- | --- | --- | --- | --- | --- |\n");
        for c in &r.costs {
            for p in &c.programs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    c.tool,
                    c.size,
                    p.name,
                    role_name(super::results::role(&c.tool, &p.name)),
                    p.run_cnt,
                    p.ns_per_event().map_or("–".into(), |n| format!("{n:.1}"))
                );
            }
        }
        md.push('\n');
        for c in &r.costs {
            let _ = writeln!(md, "- {}", cost_line(c));
        }
    }
    if !r.scale.is_empty() {
        md.push_str("\n## Scale\n\nIdle loopback connections, 1 in 100 moving 1 KiB each way per second; `flow history --interval 1s -v`; CPU over the measured seconds once every socket had moved a byte, peak RSS over flow's whole run.\n\n");
        md.push_str("| connections | active | holders | setup s | measured s | flow CPU (cores) | peak RSS MiB | map entries | drain ms/poll | owners ms/poll | notes |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for s in &r.scale {
            let mut notes = s.warnings.clone();
            notes.extend(s.error.clone());
            if s.drain_ms.is_empty() && s.error.is_none() {
                notes.push("flow -v prints no per-poll timings".into());
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
                s.connections,
                s.active,
                s.holders,
                s.setup_s,
                s.measured_s,
                s.cores.map_or("–".into(), |c| format!("{c:.3}")),
                s.peak_rss_kib
                    .map_or("–".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                s.map_entries.map_or("–".into(), |e| e.to_string()),
                show(Summary::of(&s.drain_ms), 1),
                show(Summary::of(&s.owners_ms), 1),
                cell(&notes.join("; "))
            );
        }
    }
    for s in r.scale.iter().filter(|s| !s.profile.is_empty()) {
        let _ = writeln!(
            md,
            "\nWhere flow's time goes at {} connections (`perf record -e cpu-clock -g`, top symbols, self time):\n\n```",
            s.connections
        );
        for line in &s.profile {
            let _ = writeln!(md, "{line}");
        }
        md.push_str("```\n");
    }
    if let Some(c) = &r.churn {
        md.push_str("\n## Churn\n\n");
        md.push_str(&churn_lines(c));
    }
    if let Some(s) = &r.startup {
        md.push_str("\n## Start-up\n\n`flow bandwidth --window 100ms`, from spawn; the table on stdout is the first sample, the exit includes detaching.\n\n| to \"attached\" ms | to first sample ms | to exit ms | runs |\n| --- | --- | --- | --- |\n");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            show(Summary::of(&s.attached_ms), 0),
            show(Summary::of(&s.sample_ms), 0),
            show(Summary::of(&s.exit_ms), 0),
            s.attached_ms.len()
        );
        if let Some(err) = &s.error {
            let _ = writeln!(md, "\nerror: {err}");
        }
    }
    if !r.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Count => "count",
        Role::Lifecycle => "lifecycle",
        Role::ReadOut => "read-out",
    }
}

fn cost_line(c: &Cost) -> String {
    let ns = |v: Option<f64>| v.map_or("–".into(), |n| format!("{n:.1}"));
    format!(
        "{} -l {}: {} events, {} ns per event counting, {} ns per event with every program, {:.1} % of a core in the kernel",
        c.tool,
        c.size,
        c.events(),
        ns(c.count_ns()),
        ns(c.total_ns()),
        c.kernel_cores() * 100.0
    )
}

fn churn_lines(c: &Churn) -> String {
    let mut md = String::from("| | |\n| --- | --- |\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    };
    row(
        "target",
        format!(
            "{} connections/s for {} s ({} planned), {} bytes each",
            c.rate, c.seconds, c.planned, c.bytes_per_connection
        ),
    );
    row(
        "done",
        format!(
            "{} ({:.0} connections/s achieved), {} failed or not started",
            c.done, c.achieved_rate, c.failed
        ),
    );
    row(
        "bytes written / read by the server",
        format!("{} / {}", c.written, c.moved),
    );
    row("flow: client ends sent", c.reported_tx.to_string());
    row("flow: server ends received", c.reported_rx.to_string());
    row(
        "flow: other direction (must be 0)",
        c.reported_other.to_string(),
    );
    row(
        "flow: rows (client ends / server ends; 2 × done expected)",
        format!("{} / {}", c.client_rows, c.server_rows),
    );
    row(
        "flow: 4-tuples listed more than once",
        c.repeated_tuples.to_string(),
    );
    row(
        "loss warnings",
        if c.warnings.is_empty() {
            "none".into()
        } else {
            c.warnings.join("; ")
        },
    );
    row(
        "map entries before / after",
        format!(
            "{} / {}",
            c.map_before.map_or("–".into(), |v| v.to_string()),
            c.map_after.map_or("–".into(), |v| v.to_string())
        ),
    );
    if let Some(err) = &c.error {
        row("error", err.clone());
    }
    md
}

/// `YYYY-MM-DDTHH-MM-SSZ` for Unix seconds (UTC; dashes in the time keep it a portable file
/// name). Days to civil date after Howard Hinnant's `civil_from_days`.
pub fn utc_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{bpf::ProgStats, json::Value, results::Startup};

    fn prog(name: &str, run_cnt: u64, run_time_ns: u64) -> ProgStats {
        ProgStats {
            id: 1,
            name: name.into(),
            run_cnt,
            run_time_ns,
        }
    }

    fn known() -> Results {
        Results {
            timestamp: "2026-05-20T10-00-00Z".into(),
            quick: false,
            versions: vec![("iperf3".into(), "iperf 3.12".into())],
            rung: Some("tracepoint".into()),
            overhead: vec![
                Overhead {
                    tool: "flow".into(),
                    size: "64".into(),
                    ratios: vec![0.98, 0.97, 0.99],
                    cores: vec![0.001, 0.002, 0.003],
                    baseline_gbps: vec![1.0, 1.1, 0.9],
                    ..Overhead::default()
                },
                Overhead {
                    tool: "bpftrace".into(),
                    size: "64".into(),
                    ratios: vec![0.91],
                    cores: vec![0.01],
                    baseline_gbps: vec![1.0],
                    ..Overhead::default()
                },
            ],
            costs: vec![Cost {
                tool: "flow".into(),
                size: "64".into(),
                seconds: 1.0,
                programs: vec![
                    prog("flow_tx_tp", 100, 2000),
                    prog("flow_rx_tp", 100, 2000),
                    prog("flow_destroy_tp", 200, 4000),
                ],
            }],
            scale: vec![Scale {
                connections: 10_000,
                active: 100,
                holders: 1,
                setup_s: 1.5,
                measured_s: 10.0,
                cores: Some(0.02),
                peak_rss_kib: Some(40 * 1024),
                map_entries: Some(20_000),
                ..Scale::default()
            }],
            churn: Some(Churn {
                rate: 200,
                seconds: 2,
                planned: 400,
                done: 400,
                bytes_per_connection: 10,
                written: 4000,
                moved: 4000,
                reported_tx: 4000,
                reported_rx: 4000,
                map_before: Some(10),
                map_after: Some(12),
                ..Churn::default()
            }),
            startup: Some(Startup {
                attached_ms: vec![900.0, 1000.0, 1100.0],
                sample_ms: vec![240.0, 250.0, 260.0],
                exit_ms: vec![1200.0, 1200.0, 1200.0],
                error: None,
            }),
            notes: vec!["numbers taken on a busy machine".into()],
        }
    }

    #[test]
    fn known_results_give_known_markdown() {
        let md = markdown(&known());
        let expected = [
            "# flow benchmark 2026-05-20T10-00-00Z (full)",
            "| iperf3 -l 64 throughput ratio with flow | ≥ 0.97 | 0.980 (0.970–0.990) | met |",
            "| … and higher than every peer's | above the best peer | flow 0.980 vs bpftrace 0.910 | met |",
            "| BPF cost per event (bpf_stats on) | ≤ 30 ns | 20.0 ns counting; 40.0 ns with every program | met |",
            "| flow CPU at 10,000 connections | ≤ 1 % of a core | 2.00 % | not met |",
            "| flow peak RSS at 10,000 connections | ≤ 50 MiB | 40.0 MiB | met |",
            "| map drain of 100,000 entries per poll | ≤ 20 ms | no run with ≥ 100,000 map entries | not measured |",
            "| start-up: spawn to attached | ≤ 150 ms | 1000 (900–1100) ms | not met |",
            "| churn: bytes exact, 0 losses | reported = moved, no loss | 4000 of 4000 bytes sent, 4000 received; 0 loss line(s) | met |",
            "| churn: map entries back at baseline | after ≤ before (+16 for others' traffic) | 10 before, 12 after | met |",
            "| iperf3 | iperf 3.12 |",
            "| flow | 64 | 0.980 (0.970–0.990) | 0.002 (0.001–0.003) | 1.00 (0.90–1.10) | 3 |  |",
            "| flow | 64 | flow_destroy_tp | lifecycle | 200 | 20.0 |",
            "- flow -l 64: 200 events, 20.0 ns per event counting, 40.0 ns per event with every program, 0.0 % of a core in the kernel",
            "| 10000 | 100 | 1 | 1.50 | 10.0 | 0.020 | 40.0 | 20000 | – | – | flow -v prints no per-poll timings |",
            "| flow: other direction (must be 0) | 0 |",
            "| start-up: spawn to first sample (minus the 100 ms window) | ≤ 150 ms | 150 (140–160) ms | met |",
            "| 1000 (900–1100) | 250 (240–260) | 1200 (1200–1200) | 3 |",
            "- numbers taken on a busy machine",
        ];
        for line in expected {
            assert!(
                md.lines().any(|l| l == line),
                "missing line:\n{line}\nin:\n{md}"
            );
        }
    }

    #[test]
    fn json_report_parses_back() {
        let text = crate::bench::json::pretty(&crate::bench::report_json::json(&known()));
        let v = crate::bench::json::parse(&text).unwrap();
        assert_eq!(v.get("rung").and_then(Value::as_str), Some("tracepoint"));
        let targets = crate::bench::json::elements(v.get("targets").unwrap());
        assert_eq!(targets.len(), 11);
        assert_eq!(
            targets[0].get("verdict").and_then(Value::as_str),
            Some("met")
        );
        assert_eq!(v.pointer("/churn/exact"), Some(&Value::Bool(true)));
    }

    #[test]
    fn missing_sections_are_not_measured() {
        let empty = Results {
            quick: true,
            ..Results::default()
        };
        assert!(targets(&empty)
            .iter()
            .all(|t| t.verdict == Verdict::NotMeasured));
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970-01-01T00-00-00Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T00-00-00Z");
        assert_eq!(utc_stamp(1_795_592_963), "2026-11-25T07-49-23Z");
    }
}
