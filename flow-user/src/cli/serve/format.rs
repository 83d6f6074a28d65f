//! The two text formats a scraper may ask for. prometheus-client writes OpenMetrics only; the
//! Prometheus text format (0.0.4) that `promtool`, older Prometheus servers and most ad-hoc
//! scripts read differs from it in three small ways, handled here instead of keeping a second
//! metrics library: counters are named with their `_total` suffix in `# HELP`/`# TYPE`, and
//! there is no `# UNIT` line and no `# EOF`.

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the scraper's `Accept` header asks for OpenMetrics (Prometheus servers do).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Rewrites an OpenMetrics exposition (as prometheus-client writes it) as Prometheus text.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's `# HELP` comes before its `# TYPE`, which says whether the name needs `_total`.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some((name, kind)) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_once(' '))
        {
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gain_total_and_openmetrics_only_lines_go() {
        let om = "# HELP flow_process_bytes Bytes moved.\n\
                  # TYPE flow_process_bytes counter\n\
                  # UNIT flow_process_bytes bytes\n\
                  flow_process_bytes_total{process=\"a\"} 3\n\
                  # HELP flow_map_entries Entries.\n\
                  # TYPE flow_map_entries gauge\n\
                  flow_map_entries 2\n\
                  # EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP flow_process_bytes_total Bytes moved.\n\
             # TYPE flow_process_bytes_total counter\n\
             flow_process_bytes_total{process=\"a\"} 3\n\
             # HELP flow_map_entries Entries.\n\
             # TYPE flow_map_entries gauge\n\
             flow_map_entries 2\n"
        );
    }

    #[test]
    fn negotiation_follows_the_accept_header() {
        let prometheus_server = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert!(wants_openmetrics(Some(prometheus_server)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
