//! "No regression" needs a before: the newest earlier full report (`bench/results/*.json`,
//! committed) that measured each figure. Reports that skipped a section (a scale-only re-run)
//! are passed over for that figure only.

use super::json::{self, Value};
use std::{fs, path::Path};

/// A figure and the report (timestamp) it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Before<T> {
    pub stamp: String,
    pub value: T,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Baseline {
    /// Median throughput ratio of plain `flow` at `iperf3 -l 64`.
    pub ratio64: Option<Before<f64>>,
    /// ns per counted event of plain `flow` at `-l 64`.
    pub count_ns: Option<Before<f64>>,
    /// Whether every churn run was exact with no loss.
    pub churn_exact: Option<Before<bool>>,
    /// Median spawn → "attached", ms.
    pub attached_ms: Option<Before<f64>>,
}

/// Tolerances of the no-regression line: what one run's noise moves by on these machines
/// (the -l 64 ratio's pairs spread over ±0.06, start-up over ±20 ms).
pub const RATIO_SLACK: f64 = 0.03;
pub const NS_SLACK: f64 = 1.10;
pub const STARTUP_SLACK_MS: f64 = 15.0;

/// The newest full reports in `dir` older than `now` (a timestamp), figure by figure.
pub fn load(dir: &Path, now: &str) -> Baseline {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    // Timestamps sort as text; newest first.
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut base = Baseline::default();
    for name in names {
        let stamp = name.trim_end_matches(".json");
        if stamp >= now {
            continue;
        }
        let Some(report) = fs::read_to_string(dir.join(&name))
            .ok()
            .and_then(|t| json::parse(&t).ok())
        else {
            continue;
        };
        fill(&mut base, stamp, &report);
    }
    base
}

/// Fills what `base` still lacks from one report.
pub fn fill(base: &mut Baseline, stamp: &str, report: &Value) {
    if report.get("mode").and_then(Value::as_str) != Some("full") {
        return;
    }
    fn at<T>(stamp: &str, value: T) -> Option<Before<T>> {
        Some(Before {
            stamp: stamp.to_string(),
            value,
        })
    }
    let flow64 = |section: &str| {
        json::elements(report.get(section)?)
            .iter()
            .find(|o| {
                o.get("monitor").and_then(Value::as_str) == Some("flow")
                    && o.get("size").and_then(Value::as_str) == Some("64")
            })
            .cloned()
    };
    if base.ratio64.is_none() {
        if let Some(v) = flow64("overhead").and_then(|o| o.pointer("/ratio/median")?.as_f64()) {
            base.ratio64 = at(stamp, v);
        }
    }
    if base.count_ns.is_none() {
        if let Some(v) = flow64("costs").and_then(|c| c.get("count_ns_per_event")?.as_f64()) {
            base.count_ns = at(stamp, v);
        }
    }
    if base.churn_exact.is_none() {
        // One object before --churn-runs, an array of runs since.
        let runs: Vec<&Value> = match report.get("churn") {
            Some(Value::Array(runs)) => runs.iter().collect(),
            Some(run @ Value::Object(_)) => vec![run],
            _ => Vec::new(),
        };
        let exact = |r: &&Value| {
            r.get("exact").and_then(Value::as_bool) == Some(true)
                && json::elements(r.get("warnings").unwrap_or(&Value::Null)).is_empty()
        };
        if !runs.is_empty()
            && runs
                .iter()
                .all(|r| r.get("error").is_none_or(Value::is_null))
        {
            base.churn_exact = at(stamp, runs.iter().all(exact));
        }
    }
    if base.attached_ms.is_none() {
        if let Some(v) = report
            .pointer("/startup/attached_ms/median")
            .and_then(Value::as_f64)
        {
            base.attached_ms = at(stamp, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_newest_full_report_that_has_them() {
        let newer = json::parse(
            r#"{"mode":"full","overhead":[],"costs":[],"churn":null,"startup":{"attached_ms":{"median":100.0}}}"#,
        )
        .unwrap();
        let quick =
            json::parse(r#"{"mode":"quick","startup":{"attached_ms":{"median":1.0}}}"#).unwrap();
        let older = json::parse(
            r#"{"mode":"full",
               "overhead":[{"monitor":"flow --no-payload","size":"64","ratio":{"median":0.5}},
                           {"monitor":"flow","size":"64","ratio":{"median":0.94}}],
               "costs":[{"monitor":"flow","size":"64","count_ns_per_event":130.8}],
               "churn":{"exact":true,"warnings":[],"error":null},
               "startup":{"attached_ms":{"median":111.0}}}"#,
        )
        .unwrap();
        let mut base = Baseline::default();
        fill(&mut base, "3", &quick);
        fill(&mut base, "2", &newer);
        fill(&mut base, "1", &older);
        assert_eq!(
            base.attached_ms
                .as_ref()
                .map(|b| (b.stamp.as_str(), b.value)),
            Some(("2", 100.0))
        );
        assert_eq!(base.ratio64.as_ref().map(|b| b.value), Some(0.94));
        assert_eq!(base.count_ns.as_ref().map(|b| b.stamp.as_str()), Some("1"));
        assert_eq!(base.churn_exact.as_ref().map(|b| b.value), Some(true));
        let runs = json::parse(r#"{"mode":"full","churn":[{"exact":true,"warnings":[]},{"exact":true,"warnings":["1 close events lost"]}]}"#).unwrap();
        let mut base = Baseline::default();
        fill(&mut base, "4", &runs);
        assert_eq!(base.churn_exact.map(|b| b.value), Some(false));
    }
}
