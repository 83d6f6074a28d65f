//! The JSON report: every result of [`Results`] and the judged targets, for tools and for
//! comparing runs.

use super::{
    bpf::prog_json,
    json::{obj, Value},
    report::targets,
    results::Results,
    stats::{json_of, Summary},
};

pub fn json(r: &Results) -> Value {
    let list = |items: Vec<Value>| Value::Array(items);
    let strings = |v: &[String]| list(v.iter().map(|s| s.as_str().into()).collect());
    obj([
        ("timestamp", r.timestamp.as_str().into()),
        ("mode", (if r.quick { "quick" } else { "full" }).into()),
        ("rung", r.rung.clone().into()),
        (
            "versions",
            Value::Object(
                r.versions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().into()))
                    .collect(),
            ),
        ),
        (
            "targets",
            list(
                targets(r)
                    .iter()
                    .map(|t| {
                        obj([
                            ("target", t.what.into()),
                            ("goal", t.goal.into()),
                            ("measured", t.measured.as_str().into()),
                            ("verdict", t.verdict.text().into()),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "overhead",
            list(
                r.overhead
                    .iter()
                    .map(|o| {
                        obj([
                            ("monitor", o.tool.as_str().into()),
                            ("size", o.size.as_str().into()),
                            ("ratio", json_of(Summary::of(&o.ratios))),
                            ("monitor_cores", json_of(Summary::of(&o.cores))),
                            ("baseline_gbps", json_of(Summary::of(&o.baseline_gbps))),
                            (
                                "ratios",
                                list(o.ratios.iter().map(|x| (*x).into()).collect()),
                            ),
                            ("warnings", strings(&o.warnings)),
                            ("error", o.error.clone().into()),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "costs",
            list(
                r.costs
                    .iter()
                    .map(|c| {
                        obj([
                            ("monitor", c.tool.as_str().into()),
                            ("size", c.size.as_str().into()),
                            ("seconds", c.seconds.into()),
                            ("events", c.events().into()),
                            ("count_ns_per_event", c.count_ns().into()),
                            ("total_ns_per_event", c.total_ns().into()),
                            ("kernel_cores", c.kernel_cores().into()),
                            ("programs", list(c.programs.iter().map(prog_json).collect())),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "scale",
            list(
                r.scale
                    .iter()
                    .map(|s| {
                        obj([
                            ("connections", s.connections.into()),
                            ("active", s.active.into()),
                            ("holders", (s.holders as u64).into()),
                            ("setup_s", s.setup_s.into()),
                            ("measured_s", s.measured_s.into()),
                            ("flow_cores", s.cores.into()),
                            ("peak_rss_kib", s.peak_rss_kib.into()),
                            ("map_entries", s.map_entries.into()),
                            ("drain_ms", json_of(Summary::of(&s.drain_ms))),
                            ("owners_ms", json_of(Summary::of(&s.owners_ms))),
                            ("profile", strings(&s.profile)),
                            ("warnings", strings(&s.warnings)),
                            ("error", s.error.clone().into()),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "churn",
            r.churn.as_ref().map_or(Value::Null, |c| {
                obj([
                    ("rate", c.rate.into()),
                    ("seconds", c.seconds.into()),
                    ("planned", c.planned.into()),
                    ("done", c.done.into()),
                    ("failed", c.failed.into()),
                    ("achieved_rate", c.achieved_rate.into()),
                    ("bytes_per_connection", c.bytes_per_connection.into()),
                    ("written", c.written.into()),
                    ("moved", c.moved.into()),
                    ("reported_tx", c.reported_tx.into()),
                    ("reported_rx", c.reported_rx.into()),
                    ("reported_other", c.reported_other.into()),
                    ("client_rows", c.client_rows.into()),
                    ("server_rows", c.server_rows.into()),
                    ("repeated_tuples", c.repeated_tuples.into()),
                    ("exact", c.exact().into()),
                    ("warnings", strings(&c.warnings)),
                    ("map_before", c.map_before.into()),
                    ("map_after", c.map_after.into()),
                    ("error", c.error.clone().into()),
                ])
            }),
        ),
        (
            "startup",
            r.startup.as_ref().map_or(Value::Null, |s| {
                obj([
                    ("attached_ms", json_of(Summary::of(&s.attached_ms))),
                    ("first_sample_ms", json_of(Summary::of(&s.sample_ms))),
                    ("exit_ms", json_of(Summary::of(&s.exit_ms))),
                    ("error", s.error.clone().into()),
                ])
            }),
        ),
        ("notes", strings(&r.notes)),
    ])
}
