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
    let (udp_rows, udp_costs) = super::udp_report::json(r);
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
                            ("target", t.what.as_str().into()),
                            ("goal", t.goal.as_str().into()),
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
        ("udp", udp_rows),
        ("udp_costs", udp_costs),
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
                            (
                                "runs",
                                list(
                                    s.runs
                                        .iter()
                                        .map(|run| {
                                            let rows: Vec<f64> =
                                                run.rows.iter().map(|r| *r as f64).collect();
                                            obj([
                                                ("command", run.command.as_str().into()),
                                                ("measured_s", run.measured_s.into()),
                                                ("flow_cores", run.cores.into()),
                                                ("peak_rss_kib", run.peak_rss_kib.into()),
                                                ("sockets_live", run.live.into()),
                                                ("rows_per_poll", json_of(Summary::of(&rows))),
                                                ("read_ms", json_of(Summary::of(&run.read_ms))),
                                                ("owners_ms", json_of(Summary::of(&run.owners_ms))),
                                                ("dropped_samples", run.dropped_samples.into()),
                                                ("scrapes", u64::from(run.scrapes).into()),
                                                ("scrapes_ok", u64::from(run.scrapes_ok).into()),
                                                ("profile", strings(&run.profile)),
                                                (
                                                    "walk",
                                                    run.walk.as_ref().map_or(Value::Null, |w| {
                                                        obj([
                                                            ("program", w.program.as_str().into()),
                                                            ("seconds", w.seconds.into()),
                                                            ("runs", w.runs.into()),
                                                            ("run_time_ns", w.run_time_ns.into()),
                                                            (
                                                                "ns_per_socket",
                                                                w.ns_per_run().into(),
                                                            ),
                                                        ])
                                                    }),
                                                ),
                                                ("warnings", strings(&run.warnings)),
                                                ("error", run.error.clone().into()),
                                            ])
                                        })
                                        .collect(),
                                ),
                            ),
                            ("error", s.error.clone().into()),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "churn",
            list(
                r.churn
                    .iter()
                    .map(|c| {
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
                            ("sockets_live_before", c.map_before.into()),
                            ("sockets_live_after", c.map_after.into()),
                            ("flow_cores", c.cores.into()),
                            ("peak_rss_kib", c.peak_rss_kib.into()),
                            ("rss_before_kib", c.rss_before_kib.into()),
                            ("rss_after_kib", c.rss_after_kib.into()),
                            ("rss_after_s", c.after_s.into()),
                            ("serve_cores", c.serve.cores.into()),
                            ("serve_peak_rss_kib", c.serve.peak_rss_kib.into()),
                            ("serve_rss_before_kib", c.serve.rss_before_kib.into()),
                            ("serve_rss_after_kib", c.serve.rss_after_kib.into()),
                            ("error", c.error.clone().into()),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "idle",
            r.idle.as_ref().map_or(Value::Null, |i| {
                obj([
                    ("after_s", i.after_s.into()),
                    ("peak_rss_kib", i.peak_rss_kib.into()),
                    ("sockets_live", i.live.into()),
                    ("error", i.error.clone().into()),
                ])
            }),
        ),
        (
            "bytes_per_socket",
            super::issue12::bytes_per_socket(r).map(|b| b.0).into(),
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
