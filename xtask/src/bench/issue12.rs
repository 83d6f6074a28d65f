//! The targets of issue 12 (idle sockets cost nothing), one summary line each: scale at
//! 10,000 and 100,000 connections judged on the worst of `flow history`, `serve` and `top`
//! (the line says which), memory per tracked connection, the start-up peak, churn over several
//! runs, and no regression against the last full report.

use super::{
    baseline::{NS_SLACK, RATIO_SLACK, STARTUP_SLACK_MS},
    report::{flow_row, target, Target, Verdict},
    results::{Cost, Results, Scale},
    stats::Summary,
};

const MIB: f64 = 1024.0;

/// The parts of one summary line: met only if every part is; one missed part misses the line.
#[derive(Default)]
struct Parts {
    texts: Vec<String>,
    verdicts: Vec<Verdict>,
}

impl Parts {
    fn judge(&mut self, text: String, ok: bool) {
        self.texts
            .push(if ok { text } else { format!("{text} (missed)") });
        self.verdicts
            .push(if ok { Verdict::Met } else { Verdict::NotMet });
    }

    fn missing(&mut self, text: String) {
        self.texts.push(text);
        self.verdicts.push(Verdict::NotMeasured);
    }

    fn target(self, what: String, goal: String) -> Target {
        let verdict = if self.verdicts.contains(&Verdict::NotMet) {
            Verdict::NotMet
        } else if self.verdicts.is_empty() || self.verdicts.contains(&Verdict::NotMeasured) {
            Verdict::NotMeasured
        } else {
            Verdict::Met
        };
        target(what, goal, self.texts.join("; "), verdict)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / MIB
}

fn scale_at(r: &Results, connections: u64) -> Option<&Scale> {
    r.scale
        .iter()
        .find(|s| s.connections == connections && s.error.is_none())
}

/// CPU and peak RSS (and, at 100,000, read per poll and dropped samples) on the worst run.
fn scale_line(r: &Results, connections: u64, cpu_pct: f64, rss_mib: u64, big: bool) -> Target {
    let what = format!(
        "{} connections, 1 % active, 1 s interval (worst of history, serve, top)",
        thousands(connections)
    );
    let mut goal = format!("≤ {cpu_pct} % of a core, peak RSS ≤ {rss_mib} MiB");
    if big {
        goal.push_str(", read per poll ≤ 20 ms, 0 history samples dropped");
    } else {
        goal.push_str(" (start-up included)");
    }
    let mut parts = Parts::default();
    let Some(s) = scale_at(r, connections) else {
        parts.missing(format!("no run at {} connections", thousands(connections)));
        return parts.target(what, goal);
    };
    for run in s.runs.iter().filter(|run| run.error.is_some()) {
        parts.missing(format!("flow {} failed", run.command));
    }
    match s.worst(|run| run.cores) {
        Some((run, c)) => parts.judge(
            format!("CPU {:.2} % ({})", c * 100.0, run.command),
            c * 100.0 <= cpu_pct,
        ),
        None => parts.missing("CPU not measured".into()),
    }
    match s.worst(|run| run.peak_rss_kib) {
        Some((run, kib)) => parts.judge(
            format!("peak RSS {:.1} MiB ({})", mib(kib), run.command),
            kib <= rss_mib * 1024,
        ),
        None => parts.missing("peak RSS not measured".into()),
    }
    if big {
        match s.worst(|run| Summary::of(&run.read_ms).map(|s| s.max)) {
            Some((run, max)) => {
                let median = Summary::of(&run.read_ms).map_or(0.0, |s| s.median);
                parts.judge(
                    format!(
                        "read per poll max {max:.1} ms, median {median:.1} ms ({})",
                        run.command
                    ),
                    max <= 20.0,
                );
            }
            None => parts.missing("flow -v printed no read time".into()),
        }
        match s.worst(|run| Some(run.dropped_samples)) {
            Some((run, d)) if d > 0 => parts.judge(
                format!("{d} history samples dropped ({})", run.command),
                false,
            ),
            Some(_) => parts.judge("0 history samples dropped".into(), true),
            None => parts.missing("no run finished".into()),
        }
    }
    parts.target(what, goal)
}

/// `100000` → `100,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// (peak RSS of `flow serve` at 100,000 − the idle start's) / sockets live, in bytes.
pub fn bytes_per_socket(r: &Results) -> Option<(f64, u64, u64, u64)> {
    let serve = scale_at(r, 100_000)?.run("serve")?;
    let peak = serve.peak_rss_kib?;
    let idle = r.idle.as_ref()?.peak_rss_kib?;
    let live = serve.live.filter(|l| *l > 0)?;
    Some((
        peak.saturating_sub(idle) as f64 * 1024.0 / live as f64,
        peak,
        idle,
        live,
    ))
}

pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = vec![
        scale_line(r, 10_000, 0.5, 40, false),
        scale_line(r, 100_000, 3.0, 120, true),
    ];

    let what = "memory per tracked connection at 100,000 (flow serve)".to_string();
    let goal = "≤ 600 B (serve keeps 1 history sample)".to_string();
    t.push(match bytes_per_socket(r) {
        Some((bytes, peak, idle, live)) => target(
            what,
            goal,
            format!(
                "{bytes:.0} B: (peak {:.1} − idle {:.1} MiB) / {live} sockets live",
                mib(peak),
                mib(idle)
            ),
            if bytes <= 600.0 {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
        ),
        None => target(
            what,
            goal,
            "no flow serve run at 100,000 with its live sockets, or no idle start".into(),
            Verdict::NotMeasured,
        ),
    });

    let what = "start-up peak: flow serve with nothing to watch (informative)".to_string();
    let goal = "≤ 40 MiB".to_string();
    t.push(
        match r.idle.as_ref().and_then(|i| Some((i, i.peak_rss_kib?))) {
            Some((idle, kib)) => target(
                what,
                goal,
                format!("{:.1} MiB after {:.0} s", mib(kib), idle.after_s),
                if kib <= 40 * 1024 {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
            ),
            None => target(what, goal, "no idle start".into(), Verdict::NotMeasured),
        },
    );

    t.push(churn_line(r));
    t.push(no_regression(r));
    t
}

fn churn_line(r: &Results) -> Target {
    let n = r.churn.len();
    let (what, goal) = match r.churn.first() {
        Some(c) => (
            format!(
                "churn: {} connections/s opened and closed for {} s, {n} run(s)",
                thousands(c.rate),
                c.seconds
            ),
            format!("bytes exact, 0 losses in {n} of {n}; ≤ 5 % of a core, peak RSS ≤ 60 MiB, RSS back within 10 MiB of its start a minute after"),
        ),
        None => (
            "churn".to_string(),
            "bytes exact, 0 losses in every run; ≤ 5 % of a core, peak RSS ≤ 60 MiB, RSS back within 10 MiB a minute after".to_string(),
        ),
    };
    let mut parts = Parts::default();
    if n == 0 {
        parts.missing("no churn run".into());
        return parts.target(what, goal);
    }
    let failed: Vec<String> = r
        .churn
        .iter()
        .enumerate()
        .filter(|(_, c)| c.error.is_some())
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    if !failed.is_empty() {
        parts.missing(format!("run(s) {} failed", failed.join(", ")));
    }
    let measured: Vec<_> = r.churn.iter().filter(|c| c.error.is_none()).collect();
    let clean = measured.iter().filter(|c| c.clean()).count();
    if !measured.is_empty() {
        parts.judge(format!("exact, no loss in {clean} of {n}"), clean == n);
    }
    let worst = |key: &dyn Fn(&super::results::Churn) -> Option<f64>| {
        measured
            .iter()
            .filter_map(|c| key(c))
            .max_by(f64::total_cmp)
    };
    // Judged on the `flow serve` beside each run: what people leave running.
    match worst(&|c| c.serve.cores) {
        Some(c) => parts.judge(
            format!("flow serve CPU {:.2} % (worst run)", c * 100.0),
            c <= 0.05,
        ),
        None => parts.missing("CPU not measured".into()),
    }
    match worst(&|c| c.serve.peak_rss_kib.map(mib)) {
        Some(m) => parts.judge(format!("peak RSS {m:.1} MiB"), m <= 60.0),
        None => parts.missing("peak RSS not measured".into()),
    }
    let after = measured
        .iter()
        .filter_map(|c| {
            let s = &c.serve;
            Some((c, mib(s.rss_after_kib?) - mib(s.rss_before_kib?)))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match after {
        Some((c, grew)) => parts.judge(
            format!("RSS {grew:+.1} MiB {:.0} s after (worst run)", c.after_s),
            grew <= 10.0,
        ),
        None if r.quick => parts.missing("RSS a minute after not read (quick)".into()),
        None => parts.missing("RSS a minute after not read".into()),
    }
    parts.target(what, goal)
}

fn no_regression(r: &Results) -> Target {
    let b = &r.before;
    let mut stamps: Vec<&str> = [
        b.ratio64.as_ref().map(|x| x.stamp.as_str()),
        b.count_ns.as_ref().map(|x| x.stamp.as_str()),
        b.churn_exact.as_ref().map(|x| x.stamp.as_str()),
        b.attached_ms.as_ref().map(|x| x.stamp.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    stamps.sort_unstable();
    stamps.dedup();
    let what = "no regression: -l 64 ratio, ns per event, churn exactness, start-up".to_string();
    let goal = format!(
        "each at least as in {} (noise allowed: ratio −{RATIO_SLACK}, ns ×{NS_SLACK}, start-up +{STARTUP_SLACK_MS} ms)",
        if stamps.is_empty() {
            "the last full report".to_string()
        } else {
            stamps.join(", ")
        }
    );
    let mut parts = Parts::default();
    let ratio = flow_row(r, "64").and_then(|o| Summary::of(&o.ratios));
    match (ratio, &b.ratio64) {
        (Some(now), Some(before)) => parts.judge(
            format!("ratio {:.3} vs {:.3}", now.median, before.value),
            now.median >= before.value - RATIO_SLACK,
        ),
        (None, _) => parts.missing("ratio not measured".into()),
        (_, None) => parts.missing("no earlier ratio".into()),
    }
    let ns = r
        .costs
        .iter()
        .find(|c| c.tool == "flow" && c.size == "64")
        .and_then(Cost::count_ns);
    match (ns, &b.count_ns) {
        (Some(now), Some(before)) => parts.judge(
            format!("{now:.1} ns vs {:.1} ns", before.value),
            now <= before.value * NS_SLACK,
        ),
        (None, _) => parts.missing("ns per event not measured".into()),
        (_, None) => parts.missing("no earlier ns per event".into()),
    }
    let exact = (!r.churn.is_empty() && r.churn.iter().all(|c| c.error.is_none()))
        .then(|| r.churn.iter().all(|c| c.clean()));
    let word = |e: bool| if e { "exact" } else { "not exact" };
    match (exact, &b.churn_exact) {
        (Some(now), Some(before)) => parts.judge(
            format!("churn {} vs {}", word(now), word(before.value)),
            now || !before.value,
        ),
        (None, _) => parts.missing("churn not measured".into()),
        (_, None) => parts.missing("no earlier churn".into()),
    }
    let attached = r.startup.as_ref().and_then(|s| Summary::of(&s.attached_ms));
    match (attached, &b.attached_ms) {
        (Some(now), Some(before)) => parts.judge(
            format!("attached in {:.0} ms vs {:.0} ms", now.median, before.value),
            now.median <= before.value + STARTUP_SLACK_MS,
        ),
        (None, _) => parts.missing("start-up not measured".into()),
        (_, None) => parts.missing("no earlier start-up".into()),
    }
    parts.target(what, goal)
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(500), "500");
        assert_eq!(super::thousands(10_000), "10,000");
        assert_eq!(super::thousands(100_000), "100,000");
        assert_eq!(super::thousands(1_000_000), "1,000,000");
    }
}
